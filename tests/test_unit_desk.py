"""A responsible unit's liaison (role unit) through the HTTP API of a running app, with real
PostgreSQL, Redis and WebSocket clients: it sees its unit's tickets and those of the units under
it and nothing else, on every endpoint (404 for the others', phones masked; its live feed:
tests/test_live_scoping.py); and its workflow, each step an audit event: 交办 → 受理 → 办理结果反馈
(photos, the leader's signature for a complaint) → the center's callback; 退单 approved, re-routed and refused; 延期
approved (the resolution deadline moves) and refused; a station hands a repair to its own crews."""
from __future__ import annotations

import contextlib
from datetime import timedelta
from types import SimpleNamespace
from typing import AsyncIterator

import geopandas as gpd
import pytest
import orjson
import tornado.httpclient
import tornado.httpserver
from shapely.geometry import Point

from command import accounts
from servers.embedded import free_port
from store.live import Store
from store.accounts import AccountStore
from store.tickets import TicketStore
from store.units import UnitStore
from gis.units import nodes_from_frame
from services.tickets import TicketManager
from services.worker import build
from tests.conftest import Clock, test_settings
from tests.test_dispatch_service import PASSWORD, T0, ll, river_city
from tests.test_live_scoping import LiveApi
from web import app as webapp
from web.live import LiveFeed

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
PHONE = "13812341234"
UNITS = [  # unit_id, parent (None: under the center), level, category
    ("PWR00", None, 2, "power"), ("PWR01", "PWR00", 3, "power"), ("PWR02", "PWR00", 3, "power"),
    ("WAT00", None, 2, "water"), ("WAT01", "WAT00", 3, "water"),
]
CREWS = [("C11", "V11", "PWR01"), ("C21", "V21", "PWR02")]  # crew, vehicle, station
LIAISONS = {"unit-pwr00": "PWR00", "unit-pwr01": "PWR01", "unit-pwr02": "PWR02", "unit-wat00": "WAT00"}
# what each liaison sees of the tickets assigned to these units
SCOPE = {"unit-pwr00": {"PWR00", "PWR01", "PWR02"}, "unit-pwr01": {"PWR01"}, "unit-pwr02": {"PWR02"},
         "unit-wat00": {"WAT01"}}


def field(reply: dict) -> str:
    """The field a 400 names: the API's own ``field``, or the domain's "field: message"."""
    error = reply["error"]
    assert error["code"] in ("validation_error", "unknown_unit", "unit_other_trade"), error
    return error.get("field") or error["message"].split(":", 1)[0]


def unit_city() -> SimpleNamespace:
    """The river city's roads with two stations' crews."""
    city = river_city()
    city.crews = gpd.GeoDataFrame(
        {"vehicle_id": [c[1] for c in CREWS], "crew_id": [c[0] for c in CREWS],
         "crew_name": [f"抢修{c[0]}班" for c in CREWS], "unit_id": [c[2] for c in CREWS],
         "station_id": [c[2] for c in CREWS], "skills": [("power",)] * len(CREWS)},
        geometry=[Point(ll(0, 300))] * len(CREWS), crs="EPSG:4326")
    return city


class UnitApi(LiveApi):
    """The live-scoping client with helpers for the unit's path."""

    async def call(self, method: str, path: str, user: str | None = "dispatcher", body=None):
        """A JSON request, or raw bytes (a photo) when the body is bytes."""
        if not isinstance(body, bytes):
            return await super().call(method, path, user, body)
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + path, method=method, body=body,
            headers={"Authorization": f"Bearer {await self.token(user)}"}), raise_error=False)
        return response.code, orjson.loads(response.body) if response.body else None

    async def new(self, category: str = "power", type: str = "complaint", unit: str | None = None) -> str:
        lon, lat = ll(100, 200)
        code, reply = await self.call("POST", "/api/tickets", "agent", {
            "channel": "phone", "category": category, "type": type, "urgency": "normal",
            "description": "抄表员态度差" if type == "complaint" else "家里停电", "caller_phone": PHONE,
            "lon": lon, "lat": lat, "link": False})
        assert code == 201, reply
        number = reply["ticket"]["number"]
        if unit is not None:
            code, reply = await self.act("dispatcher", number, "assign", unit_id=unit)
            assert code == 200 and reply["ticket"]["state"] == "assigned", reply
        return number

    async def act(self, user: str, number: str, action: str, **args):
        code, body = await self.call("GET", f"/api/tickets/{number}", "dispatcher")
        assert code == 200, body
        return await self.call("POST", f"/api/tickets/{number}/actions/{action}", user,
                               {"expected_version": body["version"], **args})

    async def events(self, number: str) -> list[tuple[str, str, str | None, str]]:
        """(action, actor, from state, to state) of every audit event after the create."""
        code, body = await self.call("GET", f"/api/tickets/{number}/timeline", "supervisor")
        assert code == 200
        return [(e["action"], e["actor_id"], e["from_state"], e["to_state"]) for e in body["events"][1:]]


@contextlib.asynccontextmanager
async def unit_app(tmp_path, redis_url: str, database_url: str) -> AsyncIterator[UnitApi]:
    """A running app (live feed included) over the unit tree UNITS with a liaison per LIAISONS."""
    clock = Clock(T0)
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    rows = [{"unit_id": u, "parent_id": p, "level": lvl, "name": f"{u}单位", "category": c} for u, p, lvl, c in UNITS]
    await UnitStore(store.db).seed(nodes_from_frame(rows, "测试热线中心"), T0.timestamp())
    tree = {u["unit_id"]: u for u in await UnitStore(store.db).tree()}
    created = await AccountStore(store.db).unit_liaisons([tree[u] for u in LIAISONS.values()],
                                                          accounts.hash_password(PASSWORD))
    assert sorted(created) == sorted(LIAISONS)
    tickets = TicketStore(store.db, store.redis)
    manager = TicketManager(tickets, None, clock=clock)
    city = unit_city()
    parts = await build(store, settings, city, tickets=manager, clock=clock)
    await parts.dispatch.crews.refresh()
    feed = LiveFeed(store, batch_ms=50)
    services = webapp.build_services(settings=settings, store=store, city=city, live=feed,
                                     tickets=manager, dispatch=parts.dispatch, police=parts.police)
    await webapp.seed_city(services)  # the city's crews, vehicles and units, as at start-up
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="test-secret"))
    port = free_port()
    server.listen(port, "127.0.0.1")
    client = UnitApi(f"http://127.0.0.1:{port}", store, parts, clock)
    client.feed = feed
    feed.start()
    try:
        yield client
    finally:
        await feed.stop()
        server.stop()
        await server.close_all_connections()
        await store.close()


@pytest.fixture
async def api(tmp_path, redis_url, database_url):
    async with unit_app(tmp_path, redis_url, database_url) as client:
        yield client


async def _spread(api: UnitApi) -> dict[str, str]:
    """A ticket assigned to each unit but WAT00 (a water one to WAT01), and one still in the pool."""
    numbers = {unit: await api.new("water" if unit.startswith("WAT") else "power", unit=unit)
               for unit in ("PWR00", "PWR01", "PWR02", "WAT01")}
    numbers["pool"] = await api.new()
    return numbers


# ------------------------------------------------------------------------------ scoping

async def test_a_liaison_sees_its_units_tickets_and_nothing_else_on_every_endpoint(api):
    numbers = await _spread(api)
    for user, units in SCOPE.items():
        mine = {numbers[u] for u in units}
        code, listing = await api.call("GET", "/api/tickets", user)
        assert code == 200 and {t["number"] for t in listing["tickets"]} == mine and listing["total"] == len(mine)
        for query in ("state=assigned", "sort=created", "state=open&sort=created", f"phone={PHONE}", "color=blue"):
            code, listing = await api.call("GET", f"/api/tickets?{query}", user)
            assert code == 200 and {t["number"] for t in listing["tickets"]} == mine, (user, query)
        for key, number in numbers.items():
            visible = number in mine
            code, detail = await api.call("GET", f"/api/tickets/{number}", user)
            assert code == (200 if visible else 404), (user, key)
            if visible:
                assert detail["caller_phone"] == "138****1234" and detail["allowed_actions"] == [
                    "note", "unit_accept", "request_return", "request_extension"]
            code, timeline = await api.call("GET", f"/api/tickets/{number}/timeline", user)
            assert code == (200 if visible else 404)
            if visible:
                assert PHONE not in str(timeline)
            code, reply = await api.act(user, number, "note", note="已知悉")
            assert code == (200 if visible else 404), (user, key, reply)
            code, _ = await api.call("POST", f"/api/tickets/{number}/photos", user, b"GIF89a not ours")
            assert code == (415 if visible else 404)  # a visible ticket takes photos, of the accepted types
            code, _ = await api.call("GET", f"/api/tickets/{number}/photos/{'a' * 32}.jpg", user)
            assert code == 404
    # what is the office's, not a unit's
    for method, path in (("POST", "/api/tickets"), ("GET", "/api/callbacks"), ("GET", "/api/tickets/counts"),
                         ("GET", "/api/incidents"), ("GET", "/api/vehicles"), ("GET", "/api/crews"),
                         ("GET", "/api/reports/kpi"), ("GET", "/api/admin/users"),
                         ("GET", f"/api/tickets/{numbers['PWR01']}/recommendation")):
        code, _ = await api.call(method, path, "unit-pwr01", {} if method == "POST" else None)
        assert code == 403, (method, path)


async def test_an_admin_binds_a_liaison_to_an_active_unit_and_the_login_carries_its_scope(api):
    code, reply = await api.call("POST", "/api/admin/users", "admin", {"name": "li.wat", "role": "unit",
                                                                         "password": PASSWORD})
    assert code == 400 and field(reply) == "unit_id"
    code, reply = await api.call("POST", "/api/admin/users", "admin", {"name": "li.wat", "role": "unit",
                                                                         "unit_id": "NOPE", "password": PASSWORD})
    assert code == 400 and field(reply) == "unit_id"
    code, reply = await api.call("POST", "/api/admin/users", "admin", {"name": "li.wat", "role": "unit",
                                                                         "unit_id": "WAT01", "password": PASSWORD})
    assert code == 201 and reply["user"]["unit_id"] == "WAT01" and reply["user"]["role"] == "unit"
    code, me = await api.call("GET", "/api/me", "li.wat")
    assert code == 200 and (me["role"], me["unit_id"]) == ("unit", "WAT01")
    code, reply = await api.call("PATCH", "/api/admin/users/li.wat", "admin", {"role": "agent"})
    assert code == 200 and reply["user"]["unit_id"] is None and reply["sessions_ended"] == 1
    rows = await api.store.db.fetch("SELECT action, by, changes FROM admin_audit WHERE target = 'user:li.wat'"
                                    " ORDER BY id")
    assert [(r["action"], r["by"]) for r in rows] == [("user.create", "admin"), ("user.update", "admin")]
    assert rows[0]["changes"]["unit_id"] == [None, "WAT01"] and rows[1]["changes"]["unit_id"] == ["WAT01", ""]


# ------------------------------------------------------------------------------ workflow

async def test_assign_accept_feedback_then_the_centers_callback(api):
    number = await api.new(unit="PWR00")
    code, reply = await api.act("unit-pwr00", number, "close", satisfaction="satisfied")
    assert code == 403  # the unit never closes a ticket
    code, reply = await api.act("unit-pwr00", number, "unit_accept")
    assert code == 200 and reply["ticket"]["state"] == "handling" and reply["ticket"]["accepted_at"]
    code, reply = await api.act("unit-pwr00", number, "feedback", resolution="已约谈抄表员并致歉")
    assert code == 400 and field(reply) == "signed_by"  # a complaint's result is signed
    code, photo = await api.call("POST", f"/api/tickets/{number}/photos", "unit-pwr00",
                                 b"\xff\xd8\xff\xe0" + b"\0" * 64 + b"\xff\xd9")
    assert code == 201, photo
    photo_id = photo["id"]
    got = await api.http.fetch(api.base + photo["url"], raise_error=False,
                               headers={"Authorization": f"Bearer {await api.token('unit-pwr00')}"})
    assert got.code == 200 and got.body.startswith(b"\xff\xd8\xff")
    args = {"resolution": "已约谈抄表员并致歉", "signed_by": "张主任", "attachments": [photo_id]}
    api.clock.now = T0 + timedelta(hours=2)
    code, reply = await api.act("unit-pwr00", number, "feedback", **args)
    assert code == 200, reply
    ticket = reply["ticket"]
    assert (ticket["state"], ticket["signed_by"], ticket["resolution"]) == ("resolved", "张主任", "已约谈抄表员并致歉")
    assert ticket["resolved_at"] == "2026-11-22T04:00:00Z"
    assert photo_id in ticket["attachments"]
    assert (await api.act("unit-pwr00", number, "queue_callback"))[0] == 403
    code, reply = await api.act("agent", number, "queue_callback")
    assert code == 200 and reply["ticket"]["state"] == "callback"
    code, reply = await api.act("agent", number, "close", satisfaction="satisfied")
    assert code == 200 and reply["ticket"]["state"] == "closed"
    events = await api.events(number)
    assert [e for e in events if e[0] not in ("note", "link_incident")] == [
        ("assign", "dispatcher", "new", "assigned"),
        ("unit_accept", "unit-pwr00", "assigned", "handling"),
        ("feedback", "unit-pwr00", "handling", "resolved"),
        ("queue_callback", "agent", "resolved", "callback"),
        ("close", "agent", "callback", "closed"),
    ]


async def test_a_return_approved_goes_back_to_the_pool(api):
    number = await api.new(unit="PWR01")
    code, reply = await api.act("unit-pwr01", number, "request_return")
    assert code == 400 and field(reply) == "reason"
    code, reply = await api.act("dispatcher", number, "approve_return")
    assert code == 409  # nothing pending
    code, reply = await api.act("unit-pwr01", number, "request_return", reason="非本所辖区")
    assert code == 200 and reply["ticket"]["state"] == "assigned"
    assert reply["ticket"]["request"]["kind"] == "return" and reply["ticket"]["request"]["reason"] == "非本所辖区"
    assert (await api.act("unit-pwr01", number, "request_extension", reason="x",
                          until="2026-11-30T09:00:00Z"))[0] == 409  # one request at a time
    assert (await api.act("unit-pwr01", number, "approve_return"))[0] == 403  # the center decides
    code, reply = await api.act("dispatcher", number, "approve_return", reason="同意退回")
    assert code == 200 and reply["ticket"]["state"] == "returned" and reply["ticket"]["request"] is None
    code, _ = await api.call("GET", f"/api/tickets/{number}", "unit-pwr01")
    assert code == 200  # still its unit's until the center assigns it again
    assert [e[:2] for e in await api.events(number)][-2:] == [("request_return", "unit-pwr01"),
                                                             ("approve_return", "dispatcher")]


async def test_a_return_rerouted_goes_to_the_other_unit(api):
    number = await api.new(unit="PWR01")
    await api.act("unit-pwr01", number, "unit_accept")
    await api.act("unit-pwr01", number, "request_return", reason="属开发区供电所")
    code, reply = await api.act("dispatcher", number, "reroute_return", unit_id="WAT01")
    assert code == 400 and field(reply) == "unit_id"  # another trade
    code, reply = await api.act("dispatcher", number, "reroute_return", unit_id="PWR02", reason="改派开发区")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["unit_id"]) == ("assigned", "PWR02")
    assert (await api.call("GET", f"/api/tickets/{number}", "unit-pwr01"))[0] == 404
    code, reply = await api.act("unit-pwr02", number, "unit_accept")
    assert code == 200 and reply["ticket"]["state"] == "handling"
    assert [e[:2] for e in await api.events(number)][-3:] == [
        ("request_return", "unit-pwr01"), ("reroute_return", "dispatcher"), ("unit_accept", "unit-pwr02")]


async def test_a_return_refused_stays_with_the_unit(api):
    number = await api.new(unit="PWR01")
    await api.act("unit-pwr01", number, "unit_accept")
    await api.act("unit-pwr01", number, "request_return", reason="非本所辖区")
    code, reply = await api.act("dispatcher", number, "refuse_return")
    assert code == 400 and field(reply) == "reason"
    code, reply = await api.act("dispatcher", number, "refuse_return", reason="经核实属本所辖区")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["request"]) == ("handling", None)
    code, reply = await api.act("unit-pwr01", number, "feedback", resolution="已回复用户", signed_by="王所长")
    assert code == 200 and reply["ticket"]["state"] == "resolved"
    events = await api.events(number)
    assert ("refuse_return", "dispatcher", "handling", "handling") in events


async def test_an_extension_approved_moves_the_resolution_deadline_and_refused_does_not(api):
    number = await api.new(unit="PWR00")
    await api.act("unit-pwr00", number, "unit_accept")
    code, before = await api.call("GET", f"/api/tickets/{number}", "unit-pwr00")
    deadline = before["deadlines"]["resolve"]
    for bad in ("明天", "2026-11-30T09:00:00", "2026-11-01T09:00:00Z"):
        code, reply = await api.act("unit-pwr00", number, "request_extension", reason="需现场核查", until=bad)
        assert code == 400 and field(reply) == "until", bad
    code, reply = await api.act("unit-pwr00", number, "request_extension", reason="需现场核查",
                                until="2026-12-15T09:00:00Z")
    assert code == 200 and reply["ticket"]["request"]["until"] == "2026-12-15T09:00:00Z"
    assert (await api.act("dispatcher", number, "approve_extension"))[0] == 403  # a supervisor's
    code, reply = await api.act("supervisor", number, "refuse_extension", reason="期限内可办结")
    assert code == 200 and reply["ticket"]["deadlines"]["resolve"] == deadline and reply["ticket"]["request"] is None
    await api.act("unit-pwr00", number, "request_extension", reason="需协调多部门", until="2026-12-15T09:00:00Z")
    code, reply = await api.act("supervisor", number, "approve_extension")
    assert code == 200, reply
    ticket = reply["ticket"]
    assert ticket["deadlines"]["resolve"] == "2026-12-15T09:00:00Z" != deadline
    assert ticket["extended_until"] == "2026-12-15T09:00:00Z" and ticket["request"] is None
    assert ticket["limit_stage"] in ("resolve", "accept", None)
    assert [e[:2] for e in await api.events(number)][-4:] == [
        ("request_extension", "unit-pwr00"), ("refuse_extension", "supervisor"),
        ("request_extension", "unit-pwr00"), ("approve_extension", "supervisor")]


async def test_a_station_hands_a_repair_to_its_own_crews_only(api):
    number = await api.new(type="repair", unit="PWR01")
    code, reply = await api.act("unit-pwr01", number, "hand_to_crew", crew_id="C11")
    assert code == 409  # accepted first
    await api.act("unit-pwr01", number, "unit_accept")
    code, reply = await api.act("unit-pwr01", number, "hand_to_crew", crew_id="C21")
    assert code == 400 and field(reply) == "crew_id"  # another station's crew
    code, reply = await api.act("unit-pwr01", number, "hand_to_crew", crew_id="C11")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["crew_id"]) == ("dispatched", "C11")
    assert (await api.act("unit-pwr01", number, "dispatch", crew_id="C11"))[0] == 403  # the center's action
    assert [e[:2] for e in await api.events(number)][-2:] == [("unit_accept", "unit-pwr01"),
                                                             ("hand_to_crew", "unit-pwr01")]
