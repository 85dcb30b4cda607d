"""The OpenAPI document against the real handlers: every /api route of every handler module is
documented, and real responses of the main endpoints (and their errors) validate against the
document's schemas (jsonschema, after turning OpenAPI 3.0 ``nullable`` into JSON Schema)."""
from __future__ import annotations

import json
import re
import time
from typing import Any

import orjson
import pytest
import tornado.httpclient
import tornado.httpserver
from shapely.geometry import Point

from command import accounts
from config.city import CityLayers
from servers.embedded import free_port
from store.live import FixRecord, Store
from services.tickets import build_manager
from tests.cities import TWO_DISTRICTS, write_city
from tests.conftest import ApiClient, test_settings
from tests.openapi_check import template_of, validate
from web import app as webapp
from web.handlers.openapi import build_document, route_rules, split_pattern

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
PASSWORD = "test-pass-1234"
CREWS = [{"vehicle_id": "V01", "crew_id": "C01", "crew_name": "东供电所抢修班", "unit_id": "PWR01", "station_id": "PS1",
          "skills": "power", "plate": "鲁G12345", "members": 3, "g": Point(119.76, 36.38)},
         {"vehicle_id": "V02", "crew_id": "C02", "crew_name": "自来水抢修班", "unit_id": "WAT01", "station_id": "PS1",
          "skills": "water", "plate": "鲁G54321", "members": 4, "g": Point(119.74, 36.37)}]


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """The two-district city of the ticket API tests, with two crews."""
    root = tmp_path_factory.mktemp("openapicity")
    return CityLayers(write_city(root, {**TWO_DISTRICTS, "crews": CREWS}))


class Client(ApiClient):
    """JSON calls with bearer tokens, each response checked against the document."""

    def __init__(self, base: str, document: dict[str, Any]):
        super().__init__(base, PASSWORD)
        self.base, self.document = base, document
        self.checked: set[tuple[str, str, int]] = set()

    async def call(self, method: str, path: str, user: str | None = "dispatcher", body=None, expect: int = 200):
        headers = await self.auth(user)
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + path, method=method, headers=headers,
            body=None if body is None else json.dumps(body)), raise_error=False)
        assert response.code == expect, (method, path, response.code, response.body[:300])
        data = orjson.loads(response.body)
        validate(self.document, method, path.split("?")[0], response.code, data)
        self.checked.add((method, template_of(self.document, path.split("?")[0]), response.code))
        return data


@pytest.fixture
async def api(tmp_path, redis_url, database_url, city):
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    manager = await build_manager(store.db, store.redis, city.city)
    services = webapp.build_services(settings=settings, store=store, city=city, tickets=manager)
    await webapp.seed_city(services)  # the city's crews, vehicles and units, as at start-up
    app = webapp.make_app(services, cookie_secret="test-secret")
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    response = await tornado.httpclient.AsyncHTTPClient().fetch(base + "/api/openapi.json")
    client = Client(base, orjson.loads(response.body))
    client.app, client.store = app, store
    yield client
    server.stop()
    await server.close_all_connections()
    await store.close()


@pytest.mark.parametrize("pattern, pieces", [
    (r"/api/tickets$", ["/api/tickets"]),
    (r"/api/tickets/(GD\d{8}-\d{4,})/actions/([a-z_]{1,32})$", ["/api/tickets/", None, "/actions/", None]),
    (r"/api/vehicles/([A-Za-z0-9_.:-]{1,64})/track$", ["/api/vehicles/", None, "/track"]),
    (r"/api/openapi\.json$", ["/api/openapi.json"]),
])
async def test_route_patterns_become_path_templates(pattern, pieces):
    assert split_pattern(pattern) == pieces


async def test_every_api_route_of_every_handler_module_is_documented(api):
    document = api.document
    assert document["openapi"].startswith("3.0")
    expected = set()
    for module in webapp.HANDLER_MODULES:
        for route in module.routes:
            pattern = route[0] if isinstance(route, tuple) else route.regex.pattern
            shape = "".join("{}" if p is None else p for p in split_pattern(pattern + "$"))
            if shape.startswith("/api/"):
                expected.add(shape)
    documented = {re.sub(r"\{[^}]+\}", "{}", p) for p in document["paths"]}
    assert expected and expected <= documented
    undocumented = [f"{m.upper()} {p}" for p, item in document["paths"].items() for m, op in item.items()
                    if m != "parameters" and op.get("x-undocumented")]
    assert undocumented == []
    # and the document is exactly what the route table gives (no stale paths)
    assert build_document(route_rules(api.app))["paths"].keys() == document["paths"].keys()
    for template, item in document["paths"].items():
        names = re.findall(r"\{([^}]+)\}", template)
        assert [p["name"] for p in item.get("parameters", [])] == names


async def test_real_responses_of_the_main_endpoints_match_the_document(api):
    now = time.time()
    await api.store.write_fixes([FixRecord("V01", now - 5, 36.38, 119.76, 20.0, 90.0, 30.0, 1, "A", 9, 0.9, "GN",
                                           True, True)], {"V01": {"fix_ok": 1}}, seen={"V01": now}, retention_s=3600)
    await api.store.replace_sensor_registry([{"sensor_id": "P001", "name": "压力点", "kind": "pressure",
                                              "quantity": "pressure", "unit": "MPa", "asset_id": "M1",
                                              "high_critical": 0.6, "lon": 119.78, "lat": 36.36}])
    await api.store.write_sensor_batch(
        latest={"P001": {"value": 0.7, "unit": "MPa", "quantity": "pressure", "ts": now, "received_at": now,
                         "source": "json"}}, history=[("P001", now, 0.7)], unknown=[], links={},
        events=[{"type": "raised", "at": now, "alarm_id": "P001:high", "sensor_id": "P001", "kind": "high",
                 "severity": "critical", "state": "raised", "raised_at": now, "acked_at": None, "acked_by": None,
                 "cleared_at": None, "value": 0.7, "threshold": 0.6}], history_max=10, unknown_max=10)

    me = await api.call("GET", "/api/me")
    assert me["role"] == "dispatcher"
    assert [v["id"] for v in (await api.call("GET", "/api/vehicles"))["vehicles"]] == ["V01"]
    await api.call("GET", "/api/vehicles/V01")
    assert (await api.call("GET", f"/api/vehicles/V01/track?since={now - 60}"))["count"] == 1
    assert {"districts", "crews"} & {x["kind"] for x in (await api.call("GET", "/api/layers"))["layers"]} == {"districts"}
    await api.call("GET", "/api/layers/districts")
    sensors = await api.call("GET", "/api/sensors")
    assert sensors["sensors"][0]["reading"]["value"] == 0.7
    await api.call("GET", "/api/sensors/P001")
    assert [a["alarm_id"] for a in (await api.call("GET", "/api/alarms"))["alarms"]] == ["P001:high"]
    await api.call("GET", "/api/ingest/stats")

    created = await api.call("POST", "/api/tickets", "agent", {
        "channel": "phone", "category": "power", "type": "repair", "urgency": "urgent", "description": "整栋楼停电",
        "caller_phone": "13812341234", "lon": 119.78, "lat": 36.37}, expect=201)
    number = created["ticket"]["number"]
    queue = await api.call("GET", "/api/tickets?state=open&sort=time_left")
    assert [t["number"] for t in queue["tickets"]] == [number] and queue["tickets"][0]["time_left_s"] > 0
    ticket = await api.call("GET", f"/api/tickets/{number}")
    await api.call("GET", f"/api/tickets/duplicates?lon=119.78&lat=36.37&category=power", "agent")
    dispatched = await api.call("POST", f"/api/tickets/{number}/actions/dispatch", body={
        "expected_version": ticket["version"], "crew_id": "C01"})
    assert dispatched["ticket"]["state"] == "dispatched"
    conflict = await api.call("POST", f"/api/tickets/{number}/actions/dispatch", body={
        "expected_version": ticket["version"], "crew_id": "C02"}, expect=409)
    assert conflict["error"]["code"]
    timeline = await api.call("GET", f"/api/tickets/{number}/timeline")
    assert [e["action"] for e in timeline["events"]][0] == "create" and timeline["events"][-1]["action"] == "dispatch"
    assert (await api.call("GET", "/api/tickets/counts"))["open"] == 1
    incidents = await api.call("GET", "/api/incidents")
    if incidents["incidents"]:
        await api.call("GET", f"/api/incidents/{incidents['incidents'][0]['incident_id']}")
    await api.call("GET", "/api/callbacks", "agent")

    users = await api.call("GET", "/api/admin/users", "admin")
    assert {"admin", "dispatcher", "crew"} <= {u["name"] for u in users["users"]}
    made = await api.call("POST", "/api/admin/users", "admin", {"name": "crew3", "role": "crew", "crew_id": "C02",
                                                                 "display": "抢修三班"}, expect=201)
    assert made["user"] == {"name": "crew3", "role": "crew", "display": "抢修三班", "crew_id": "C02", "unit_id": None,
                            "active": True}
    assert len(made["password"]) == 19
    await api.call("PATCH", "/api/admin/users/crew3", "admin", {"active": False})
    await api.call("POST", "/api/admin/users/crew3/password", "admin", {})
    crews = await api.call("GET", "/api/admin/crews", "supervisor")
    assert [(c["crew_id"], c["vehicle_id"], c["on_shift"], c["vehicle_state"]) for c in crews["crews"]] == [
        ("C01", "V01", True, "online"), ("C02", "V02", True, None)]
    await api.call("PUT", "/api/admin/crews/C02/shift", "supervisor", {"on_shift": False})

    # errors share one documented shape
    await api.call("GET", "/api/tickets/GD20990101-0001", expect=404)
    await api.call("GET", "/api/vehicles", user=None, expect=401)
    await api.call("GET", "/api/admin/users", "dispatcher", expect=403)
    await api.call("POST", "/api/admin/users", "admin", {"name": "x", "role": "agent"}, expect=400)
    assert len(api.checked) >= 30


@pytest.mark.parametrize("user, method, path, body, status, code", [
    ("admin", "POST", "/api/admin/users", {"name": "dispatcher", "role": "agent"}, 409, "user_exists"),
    ("admin", "POST", "/api/admin/users", {"name": "newcrew", "role": "crew", "crew_id": "C99"}, 400, "validation_error"),
    ("admin", "POST", "/api/admin/users", {"name": "weak", "role": "agent", "password": "short"}, 400, "validation_error"),
    ("admin", "PATCH", "/api/admin/users/admin", {"active": False}, 409, "self_lockout"),
    ("admin", "PATCH", "/api/admin/users/nobody", {"active": False}, 404, "user_not_found"),
    ("supervisor", "PUT", "/api/admin/crews/C77/shift", {"on_shift": False}, 404, "crew_not_found"),
    ("supervisor", "PUT", "/api/admin/crews/C01/shift", {"on_shift": "no"}, 400, "validation_error"),
    ("dispatcher", "PUT", "/api/admin/crews/C01/shift", {"on_shift": False}, 403, "forbidden"),
    ("supervisor", "POST", "/api/admin/users", {"name": "sneaky", "role": "admin"}, 403, "forbidden"),
])
async def test_admin_api_refuses_bad_requests_with_stable_codes(api, user, method, path, body, status, code):
    data = await api.call(method, path, user, body, expect=status)
    assert data["error"]["code"] == code


async def test_disabling_a_user_ends_their_sessions_and_refuses_login(api):
    await api.call("POST", "/api/admin/users", "admin", {"name": "agent2", "role": "agent", "password": PASSWORD},
                   expect=201)
    token = await api.token("agent2")
    assert (await api.call("GET", "/api/me", "agent2"))["name"] == "agent2"
    assert (await api.call("PATCH", "/api/admin/users/agent2", "admin", {"active": False}))["sessions_ended"] == 1
    response = await api.http.fetch(tornado.httpclient.HTTPRequest(
        api.base + "/api/me", headers={"Authorization": f"Bearer {token}"}), raise_error=False)
    assert response.code == 401
    response = await api.http.fetch(api.base + "/api/login", method="POST", raise_error=False,
                                    body=json.dumps({"username": "agent2", "password": PASSWORD}))
    assert response.code == 401


async def test_shift_flags_are_stored_per_crew(api):
    await api.call("PUT", "/api/admin/crews/C01/shift", "admin", {"on_shift": False, "ends_at": "2026-11-22T10:00:00Z"})
    crews = {c["crew_id"]: c for c in (await api.call("GET", "/api/admin/crews", "dispatcher"))["crews"]}
    assert (crews["C01"]["on_shift"], crews["C01"]["shift_ends_at"], crews["C01"]["shift_set_by"]) == (
        False, "2026-11-22T10:00:00Z", "admin")
    assert crews["C02"]["on_shift"] is True
    assert accounts.ROLES == tuple(api.document["components"]["schemas"]["User"]["properties"]["role"]["enum"])
