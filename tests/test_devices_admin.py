"""Device credentials on the admin API, in-process with real Redis and the real broker: an admin
issues, rotates and revokes vehicle and gateway credentials; other roles are refused; bad ids,
unknown vehicles and sensors are refused with stable codes and nothing is saved; the secret is
answered once and never listed; every change is an audit entry with who and when. A device issued
through the API connects with its secret (client id = device id) and publishes its own topic, and
after a revoke or a rotation its old secret is refused within seconds. Last, the demo's seeding
of its simulated devices: once, the secrets in a file of mode 600, rotated when the file is lost.
Every admin response is checked against the OpenAPI document."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import stat
import threading
import time
from datetime import datetime

import orjson
import pytest
import tornado.httpclient
import tornado.httpserver

from servers.broker_credentials import verify_password
from messaging.mqtt import MqttClient, device_url
from servers.embedded import free_port
from store.live import Store
from store.fleet import Audit, FleetStore
from store.devices import DeviceStore
from services.devices import Actor, DeviceService, Wanted, read_secrets, seed_demo_devices, sim_devices_path
from tests.conftest import ApiClient, test_settings, wait_for
from tests.openapi_check import validate
from web import app as webapp

pytestmark = [pytest.mark.integration]
PASSWORD = "test-pass-1234"
VEHICLES = ("V01", "V02", "V:03")
SENSORS = ("P001", "P002", "TR001")


class Api(ApiClient):
    """The in-process web app: log in per user, call, validate /api/admin answers against the document."""

    def __init__(self, base: str) -> None:
        super().__init__(base, PASSWORD)
        self.base = base
        self.document: dict = {}

    async def raw(self, method: str, path: str, user: str | None = "admin", body=None):
        """(status, body text, headers)."""
        headers = await self.auth(user)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        if data is None and method == "POST":
            data = b""
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + path, method=method, headers=headers, body=data), raise_error=False)
        return response.code, response.body.decode(), response.headers

    async def call(self, method: str, path: str, user: str | None = "admin", body=None, expect: int = 200) -> dict:
        code, text, _ = await self.raw(method, path, user, body)
        reply = orjson.loads(text) if text else None
        assert code == expect, (method, path, code, reply)
        if path.startswith("/api/admin"):
            validate(self.document, method, path.split("?")[0], code, reply)
        return reply

    async def devices(self) -> dict[str, dict]:
        return {d["device_id"]: d for d in (await self.call("GET", "/api/admin/devices"))["devices"]}

    async def audit(self, device_id: str) -> list[dict]:
        return (await self.call("GET", f"/api/admin/audit?target=device:{device_id}"))["entries"]


async def register(store: Store, vehicle_ids) -> None:
    """Vehicles in the fleet registry, as the admin API writes them."""
    fleet = FleetStore(store.db, store.redis)
    for vid in vehicle_ids:
        at = time.time()
        await fleet.write_vehicle(vid, "", {"vehicle_id": vid, "plate": "", "kind": "repair", "unit_id": "PWR01",
                                            "active": True, "source": "admin", "updated_at": at,
                                            "updated_by": "test"},
                                  Audit("test", "admin", "vehicle.create", f"vehicle:{vid}", {}, at))


@pytest.fixture
async def api(tmp_path, redis_url, database_url, mqtt_url, servers):
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD, MQTT_URL=mqtt_url,
                             MQTT_DEVICE_URL=servers.device_url)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    await register(store, VEHICLES)
    await store.replace_sensor_registry([{"sensor_id": sid, "name": sid, "kind": "pressure", "unit": "MPa"}
                                         for sid in SENSORS])
    services = webapp.build_services(settings=settings, store=store)
    app = webapp.make_app(services, cookie_secret="test-secret")
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    client = Api(f"http://127.0.0.1:{port}")
    response = await client.http.fetch(client.base + "/api/openapi.json")
    client.document = orjson.loads(response.body)
    client.store, client.settings = store, settings
    yield client
    server.stop()
    await server.close_all_connections()
    await store.close()


async def test_an_admin_issues_rotates_and_revokes_a_vehicle_credential(api):
    issued = await api.call("POST", "/api/admin/devices", body={"kind": "vehicle", "device_id": "V01"}, expect=201)
    secret = issued["secret"]
    assert issued["device"] == {**issued["device"], "device_id": "V01", "kind": "vehicle", "active": True,
                                "sensors": [], "sparkplug": False, "issued_by": "admin"}
    assert issued["username"] == issued["client_id"] == "V01" and len(secret) >= 24
    stored = await DeviceStore(api.store.db).get("V01")
    assert stored.password_hash.startswith("$7$") and secret not in stored.password_hash
    assert verify_password(secret, stored.password_hash)

    code, text, headers = await api.raw("GET", "/api/admin/devices")
    assert code == 200 and secret not in text and "$7$" not in text and "hash" not in text
    assert (await api.devices())["V01"]["active"] is True

    rotated = await api.call("POST", "/api/admin/devices/V01/rotate")
    assert rotated["secret"] != secret and rotated["device"]["active"] is True
    stored = await DeviceStore(api.store.db).get("V01")
    assert verify_password(rotated["secret"], stored.password_hash)
    assert not verify_password(secret, stored.password_hash)

    revoked = await api.call("POST", "/api/admin/devices/V01/revoke")
    assert revoked["device"]["active"] is False and "secret" not in revoked
    assert (await api.devices())["V01"]["active"] is False
    assert (await DeviceStore(api.store.db).get("V01")).active is False
    refused = await api.call("POST", "/api/admin/devices/V01/rotate", expect=409)
    assert refused["error"]["code"] == "device_revoked"
    again = await api.call("POST", "/api/admin/devices", body={"kind": "vehicle", "device_id": "V01"}, expect=201)
    assert again["device"]["active"] is True and again["secret"] not in (secret, rotated["secret"])
    code, text, _ = await api.raw("GET", "/api/admin/devices")
    assert all(s not in text for s in (secret, rotated["secret"], again["secret"]))


async def test_secrets_are_answered_once_and_not_cached(api):
    code, text, headers = await api.raw("POST", "/api/admin/devices", body={"kind": "vehicle", "device_id": "V02"})
    assert code == 201 and headers["Cache-Control"] == "no-store"
    code, text, headers = await api.raw("POST", "/api/admin/devices/V02/rotate")
    assert code == 200 and headers["Cache-Control"] == "no-store"


async def test_a_gateway_credential_names_registered_sensors(api):
    issued = await api.call("POST", "/api/admin/devices", expect=201, body={
        "kind": "gateway", "device_id": "SCADA-GW1", "sensors": ["P001", "P002", "P001"]})
    assert issued["device"]["sensors"] == ["P001", "P002"] and issued["device"]["sparkplug"] is False
    node = await api.call("POST", "/api/admin/devices", expect=201,
                          body={"kind": "gateway", "device_id": "SUB01", "sparkplug": True})
    assert node["device"]["sparkplug"] is True and node["device"]["sensors"] == []
    listed = await api.devices()
    assert listed["SCADA-GW1"]["sensors"] == ["P001", "P002"] and listed["SUB01"]["sparkplug"] is True
    stored = await DeviceStore(api.store.db).get("SCADA-GW1")
    assert stored.kind == "gateway" and stored.sensors == ("P001", "P002")


@pytest.mark.parametrize("user", ["agent", "dispatcher", "supervisor", "crew", None])
async def test_other_roles_may_not_touch_device_credentials(api, user):
    await api.call("POST", "/api/admin/devices", body={"kind": "vehicle", "device_id": "V01"}, expect=201)
    for method, path, body in [("GET", "/api/admin/devices", None),
                               ("POST", "/api/admin/devices", {"kind": "vehicle", "device_id": "V02"}),
                               ("POST", "/api/admin/devices/V01/rotate", None),
                               ("POST", "/api/admin/devices/V01/revoke", None)]:
        code, text, _ = await api.raw(method, path, user, body)
        if user is not None:
            assert (code, orjson.loads(text)["error"]["code"]) == (403, "forbidden")
        else:  # no session: 401, or 403 for a POST without the XSRF cookie a browser session has
            assert code == (401 if method == "GET" else 403), text
    assert set(await api.devices()) == {"V01"} and (await api.devices())["V01"]["active"] is True
    assert [e["action"] for e in await api.audit("V01")] == ["device.issue"]


BAD = [
    ({"kind": "vehicle", "device_id": "."}, 400, "bad_device_id"),
    ({"kind": "vehicle", "device_id": ".."}, 400, "bad_device_id"),
    ({"kind": "vehicle", "device_id": "V:03"}, 400, "bad_device_id"),  # a fleet id, but ":" splits the passwd file
    ({"kind": "gateway", "device_id": "a/b", "sensors": ["P001"]}, 400, "bad_device_id"),
    ({"kind": "gateway", "device_id": "GW#", "sensors": ["P001"]}, 400, "bad_device_id"),
    ({"kind": "gateway", "device_id": "GW+1", "sensors": ["P001"]}, 400, "bad_device_id"),
    ({"kind": "gateway", "device_id": "网关", "sensors": ["P001"]}, 400, "bad_device_id"),
    ({"kind": "gateway", "device_id": "G" * 65, "sensors": ["P001"]}, 400, "bad_device_id"),
    ({"kind": "gateway", "device_id": "", "sensors": ["P001"]}, 400, "bad_device_id"),
    ({"kind": "vehicle", "device_id": 7}, 400, "bad_device_id"),
    ({"kind": "vehicle"}, 400, "bad_device_id"),
    ({"kind": "vehicle", "device_id": "V99"}, 400, "unknown_vehicle"),
    ({"kind": "vehicle", "device_id": "P001"}, 400, "unknown_vehicle"),
    ({"kind": "vehicle", "device_id": "V01", "sensors": ["P001"]}, 400, "bad_sensors"),
    ({"kind": "gateway", "device_id": "GW1", "sensors": ["P001", "P404"]}, 400, "unknown_sensor"),
    ({"kind": "gateway", "device_id": "GW1", "sensors": ["../x"]}, 400, "bad_sensors"),
    ({"kind": "gateway", "device_id": "GW1", "sensors": [1]}, 400, "bad_sensors"),
    ({"kind": "gateway", "device_id": "GW1", "sensors": {"P001": 1}}, 400, "bad_sensors"),
    ({"kind": "gateway", "device_id": "GW1"}, 400, "bad_sensors"),
    ({"kind": "gateway", "device_id": "GW1", "sparkplug": "yes"}, 400, "bad_sensors"),
    ({"kind": "camera", "device_id": "V01"}, 400, "bad_kind"),
    ([1, 2], 400, "bad_json"),
]


@pytest.mark.parametrize("body, status, code", BAD)
async def test_bad_requests_are_refused_with_stable_codes_and_nothing_is_saved(api, body, status, code):
    reply = await api.call("POST", "/api/admin/devices", body=body, expect=status)
    assert reply["error"]["code"] == code
    assert await api.devices() == {}
    assert await DeviceStore(api.store.db).revision() == ""
    assert (await api.call("GET", "/api/admin/audit"))["entries"][0]["action"] == "vehicle.create"


@pytest.mark.parametrize("method, path, status, code", [
    ("POST", "/api/admin/devices/V02/rotate", 404, "device_not_found"),
    ("POST", "/api/admin/devices/V02/revoke", 404, "device_not_found"),
    ("POST", "/api/admin/devices/%2E%2E/rotate", 400, "bad_device_id"),
    ("POST", "/api/admin/devices/a%2Fb/revoke", 400, "bad_device_id"),
    ("POST", "/api/admin/devices/%E7%BD%91/revoke", 400, "bad_device_id"),
])
async def test_rotate_and_revoke_refuse_unknown_and_bad_ids(api, method, path, status, code):
    await api.call("POST", "/api/admin/devices", body={"kind": "vehicle", "device_id": "V01"}, expect=201)
    reply = await api.call(method, path, expect=status)
    assert reply["error"]["code"] == code
    assert set(await api.devices()) == {"V01"}


async def test_issuing_an_active_device_again_is_a_conflict(api):
    first = await api.call("POST", "/api/admin/devices", body={"kind": "vehicle", "device_id": "V01"}, expect=201)
    reply = await api.call("POST", "/api/admin/devices", body={"kind": "vehicle", "device_id": "V01"}, expect=409)
    assert reply["error"]["code"] == "device_exists"
    stored = await DeviceStore(api.store.db).get("V01")
    assert verify_password(first["secret"], stored.password_hash)  # the first secret still works


async def test_every_change_is_in_the_audit_trail_with_who_and_when(api):
    before = time.time()
    issued = await api.call("POST", "/api/admin/devices", expect=201,
                            body={"kind": "gateway", "device_id": "GW1", "sensors": ["TR001"]})
    rotated = await api.call("POST", "/api/admin/devices/GW1/rotate")
    await api.call("POST", "/api/admin/devices/GW1/revoke")
    await api.call("POST", "/api/admin/devices/GW1/revoke")  # already revoked: no second entry
    after = time.time()
    entries = await api.audit("GW1")
    assert [e["action"] for e in entries] == ["device.revoke", "device.rotate", "device.issue"]
    for entry in entries:
        assert entry["by"] == "admin" and entry["role"] == "admin" and entry["target"] == "device:GW1"
        at = datetime.fromisoformat(entry["at"].replace("Z", "+00:00")).timestamp()
        assert before - 1 <= at <= after + 1
    assert entries[2]["changes"]["kind"] == [None, "gateway"] and entries[2]["changes"]["sensors"] == [None, ["TR001"]]
    assert entries[0]["changes"] == {"active": [True, False]}
    text = json.dumps(entries)
    assert issued["secret"] not in text and rotated["secret"] not in text and "$7$" not in text


async def test_the_admin_page_has_the_device_section(api):
    code, text, _ = await api.raw("GET", "/admin")
    assert code == 200
    assert 'id="devices"' in text and "设备凭证" in text and "js/admin_devices.js" in text
    assert "onclick" not in text.lower()


# ---------------------------------------------------------------------------- the broker
class Refusals(logging.Handler):
    """Client ids whose connection the broker refused (messaging.mqtt logs each refusal)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.ids: set[str] = set()
        self.guard = threading.Lock()  # not .lock: logging.Handler holds that one around emit

    def emit(self, record: logging.LogRecord) -> None:
        if "connection refused" in record.getMessage():
            with self.guard:
                self.ids.add(str(record.args[0]))


@pytest.fixture
def refusals():
    handler = Refusals()
    logger = logging.getLogger("messaging.mqtt")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def login(url: str, client_id: str, refusals: Refusals, timeout: float = 8.0) -> MqttClient | None:
    """Connect as a device: the connected client, or None when the broker refused the login."""
    with refusals.guard:
        refusals.ids.discard(client_id)
    client = MqttClient(url, client_id)
    client.start()
    outcome = await wait_for(lambda: "up" if client.connected else ("refused" if client_id in refusals.ids else None),
                             timeout=timeout)
    if outcome == "refused":
        await asyncio.to_thread(client.stop)
        return None
    return client


async def test_a_device_issued_through_the_api_connects_and_is_refused_after_revoke_and_rotate(api, mqtt_url,
                                                                                              refusals):
    received: list[str] = []
    watcher = MqttClient(mqtt_url, f"test-watch-{os.getpid()}", on_messages=lambda ms: received.extend(
        m.topic for m in ms))
    watcher.subscribe("fleet/#")
    watcher.start()
    clients: list[MqttClient] = [watcher]
    try:
        assert await asyncio.to_thread(watcher.wait_connected, 10)
        issued = await api.call("POST", "/api/admin/devices", body={"kind": "vehicle", "device_id": "V01"},
                                expect=201)
        url = device_url(api.settings, "V01", issued["secret"])
        device = await wait_for(lambda: login(url, "V01", refusals), timeout=15)  # the broker follows within seconds
        clients.append(device)
        await wait_for(lambda: device.publish("fleet/V01/status", b"online", qos=1) and "fleet/V01/status" in received)

        rotated = await api.call("POST", "/api/admin/devices/V01/rotate")
        device.stop()

        async def old_refused() -> bool:
            client = await login(url, "V01", refusals)
            if client is not None:
                client.stop()
            return client is None
        await wait_for(old_refused, timeout=15)
        fresh = await login(device_url(api.settings, "V01", rotated["secret"]), "V01", refusals)
        assert fresh is not None
        clients.append(fresh)

        await api.call("POST", "/api/admin/devices/V01/revoke")
        fresh.stop()

        async def new_refused() -> bool:
            client = await login(device_url(api.settings, "V01", rotated["secret"]), "V01", refusals)
            if client is not None:
                client.stop()
            return client is None
        await wait_for(new_refused, timeout=15)
    finally:
        for client in clients:
            await asyncio.to_thread(client.stop)


# ---------------------------------------------------------------------------- the demo's devices
async def test_the_demo_seeds_its_simulated_devices_once(tmp_path, redis_url, database_url):
    store = Store.from_url(redis_url, database_url)
    try:
        await register(store, ["V01", "V02"])
        await store.replace_sensor_registry([{"sensor_id": s} for s in SENSORS])
        service = DeviceService(store.redis, store.db)
        wanted = [Wanted("vehicle", "V01"), Wanted("vehicle", "V02"), Wanted("vehicle", "V77"),
                  Wanted("gateway", "SCADA-GW1", ("P001", "P002")), Wanted("gateway", "SUB01", (), True)]
        path = tmp_path / "run" / "sim-devices.json"
        done = await seed_demo_devices(service, wanted, path)
        assert done == {"V01": "issued", "V02": "issued", "SCADA-GW1": "issued", "SUB01": "issued",
                        "V77": "refused: unknown_vehicle"}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secrets = read_secrets(path)
        assert set(secrets) == {"V01", "V02", "SCADA-GW1", "SUB01"}
        devices = DeviceStore(store.db)
        for device_id, secret in secrets.items():
            assert verify_password(secret, (await devices.get(device_id)).password_hash)
        entries = await FleetStore(store.db).audit_log(20, target="device:SUB01")
        assert [(e["by"], e["role"], e["action"]) for e in entries] == [("system", "system", "device.issue")]

        revision = await devices.revision()
        assert await seed_demo_devices(service, wanted, path) == {"V77": "refused: unknown_vehicle"}
        assert read_secrets(path) == secrets and await devices.revision() == revision

        await service.revoke("V02", by=Actor("admin"))
        path.unlink()
        done = await seed_demo_devices(service, wanted, path)
        assert done == {"V01": "rotated", "V02": "revoked", "SCADA-GW1": "rotated", "SUB01": "rotated",
                        "V77": "refused: unknown_vehicle"}
        again = read_secrets(path)
        assert set(again) == {"V01", "SCADA-GW1", "SUB01"} and again["V01"] != secrets["V01"]
        assert verify_password(again["V01"], (await devices.get("V01")).password_hash)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        await store.close()


async def test_the_simulators_log_in_as_the_devices_the_demo_issued(tmp_path, redis_url, database_url, mqtt_url, servers, refusals):
    """With the demo's device file, each simulated vehicle, the SCADA gateway and each Sparkplug
    edge node connect as themselves (client id = device id) and publish only their own topics."""
    from simulators.run import SCADA_GATEWAY, device_urls
    from simulators.sensor_mqtt import MqttTransport
    from simulators.roads import RoadNet
    from simulators.vehicles import make_fleet, run_fleet

    settings = test_settings(tmp_path, MQTT_URL=mqtt_url, MQTT_DEVICE_URL=servers.device_url)
    store = Store.from_url(redis_url, database_url)
    received: list[tuple[str, bytes]] = []
    watcher = MqttClient(mqtt_url, f"test-sim-watch-{os.getpid()}",
                         on_messages=lambda ms: received.extend((m.topic, m.payload) for m in ms))
    watcher.subscribe(["fleet/#", "scada/#", "spBv1.0/#"])
    watcher.start()
    transport = None
    try:
        assert device_urls(settings, mqtt_url) == {}  # no file: the simulators use the URL they are given
        await register(store, ["V01", "V02"])
        await store.replace_sensor_registry([{"sensor_id": s} for s in SENSORS])
        await seed_demo_devices(DeviceService(store.redis, store.db), [
            Wanted("vehicle", "V01"), Wanted("gateway", SCADA_GATEWAY, ("P001",)),
            Wanted("gateway", "SUB01", (), True)], sim_devices_path(settings.data_dir))
        urls = device_urls(settings, mqtt_url)
        assert set(urls) == {"V01", SCADA_GATEWAY, "SUB01"}
        assert all(url.startswith("mqtt://") and servers.device_url.split("//")[1] in url for url in urls.values())
        if servers.broker_sync is not None:
            revision = await DeviceStore(store.db).revision()
            await wait_for(lambda: servers.broker_sync.revision == revision)
        assert await asyncio.to_thread(watcher.wait_connected, 10)

        net = RoadNet([[(119.750, 36.380), (119.760, 36.380)]], [40.0], [False])
        fleet = make_fleet(net, ["V01"], random.Random(1))
        stop = asyncio.Event()
        driving = asyncio.create_task(run_fleet(mqtt_url, net, fleet, rate_hz=5.0, stop=stop, device_urls=urls))
        await wait_for(lambda: any(t == "fleet/V01/nmea" for t, _ in received), timeout=20)
        stop.set()
        assert await driving > 0
        assert "V01" not in refusals.ids

        transport = await asyncio.to_thread(lambda: MqttTransport(mqtt_url, "sim-test", device_urls=urls,
                                                                  gateway=SCADA_GATEWAY))
        assert await asyncio.to_thread(transport.wait_connected, 10)
        assert transport.shared.client_id == SCADA_GATEWAY
        transport.publish("scada/P002/pressure", b'{"value": 1}')  # not its sensor: the broker drops it
        transport.publish("scada/P001/pressure", b'{"value": 0.3}')
        await wait_for(lambda: ("scada/P001/pressure", b'{"value": 0.3}') in received)
        node = await asyncio.to_thread(transport.connect_node, "SUB01", "spBv1.0/democity/NDEATH/SUB01", b"x")
        node.publish("spBv1.0/democity/NBIRTH/SUB01", b"birth")
        await wait_for(lambda: ("spBv1.0/democity/NBIRTH/SUB01", b"birth") in received)
        assert not any(t == "scada/P002/pressure" for t, _ in received)
        assert not refusals.ids & {SCADA_GATEWAY, "SUB01"}
    finally:
        if transport is not None:
            await asyncio.to_thread(transport.stop)
        # the fleet left its retained status on the session's broker: clear it for later tests
        watcher.publish("fleet/V01/status", b"", qos=1, retain=True)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(watcher.stop)
        await store.close()
