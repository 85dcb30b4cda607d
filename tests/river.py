"""The river city of the dispatch tests and its in-process apps (the fixtures `dispatch_api`,
`admin_api` and `unit_api` of tests/conftest.py, the live-scoping tests' app).

A river runs between the south road (y = 0) and the north road (y = 200 m); the only bridge is at
x = 4,000 m. Roads are 36 km/h (10 m/s). Places are local metres (`tests.cities.ll`)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from types import SimpleNamespace
from typing import Any, AsyncIterator, Awaitable, Callable

import geopandas as gpd
import orjson
import tornado.httpclient
import tornado.httpserver
import tornado.websocket
from shapely.geometry import LineString, Point

from command import accounts
from command.review import NO_REVIEW, ReviewTable
from gis.units import nodes_from_frame
from servers.embedded import free_port
from services.tickets import TicketManager
from services.worker import build, watch_changes
from store.accounts import AccountStore
from store.fleet import FleetStore
from store.live import FixRecord, Store
from store.tickets import TicketStore
from store.units import UnitStore
from tests.cities import SENSOR_ROWS, ll
from tests.conftest import PASSWORD, T0, ApiClient, Clock, test_settings, wait_for
from tests.openapi_check import validate
from web import app as webapp
from web.live import LiveFeed

ROADS = [("south", [(0, 0), (4000, 0)]), ("north", [(0, 200), (4000, 200)]), ("bridge", [(4000, 0), (4000, 200)])]
CREWS = [  # crew id, vehicle, skills, position in metres or None (never reported)
    ("C01", "V01", ("power",), (1500, 200)),   # north bank: 1,400 m by road from the ticket
    ("C02", "V02", ("power",), (3000, 200)),   # north bank, farther
    ("C03", "V03", ("power",), (100, 0)),      # south bank: 200 m straight, ~8 km by road
    ("C04", "V04", ("power",), (120, 200)),    # on the ticket's doorstep but off shift
    ("C05", "V05", ("water",), (150, 200)),    # no power skill
    ("C06", "V06", ("power",), None),          # no fix
]
TICKET_XY = (100, 200)


def river_city() -> SimpleNamespace:
    """The city's crews and roads layers (all dispatch needs)."""
    roads = gpd.GeoDataFrame(
        {"road_id": [r[0] for r in ROADS], "name": [r[0] for r in ROADS], "class": ["primary"] * 3,
         "speed_kmh": [36.0] * 3, "oneway": [False] * 3},
        geometry=[LineString([ll(*p) for p in r[1]]) for r in ROADS], crs="EPSG:4326")
    crews = gpd.GeoDataFrame(
        {"vehicle_id": [c[1] for c in CREWS], "crew_id": [c[0] for c in CREWS],
         "crew_name": [f"抢修{c[0]}班" for c in CREWS], "unit_id": ["PWR01"] * len(CREWS),
         "station_id": ["PS01"] * len(CREWS), "skills": [c[2] for c in CREWS]},
        geometry=[Point(ll(0, 300))] * len(CREWS), crs="EPSG:4326")
    return SimpleNamespace(crews=crews, roads=roads)


class Api(ApiClient):
    """The in-process web app with tickets, dispatch and the worker's change watcher."""

    def __init__(self, base: str, store: Store, parts, clock: Clock) -> None:
        super().__init__(base, PASSWORD)
        self.base, self.store, self.parts, self.clock = base, store, parts, clock

    async def call(self, method: str, path: str, user: str | None = "dispatcher", body=None):
        """(status, JSON reply) of a request by `user`."""
        headers = await self.auth(user)
        data = None if body is None else json.dumps(body)
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + path, method=method, headers=headers, body=data), raise_error=False)
        return response.code, orjson.loads(response.body) if response.body else None

    async def create(self, xy=TICKET_XY, **fields) -> str:
        """The number of a new emergency power repair at local metres `xy` (the agent's)."""
        lon, lat = ll(*xy)
        body = {"channel": "phone", "category": "power", "type": "repair", "urgency": "emergency",
                "description": "整条街停电", "caller_phone": "13812341234", "lon": lon, "lat": lat, **fields}
        code, reply = await self.call("POST", "/api/tickets", "agent", body)
        assert code == 201, reply
        return reply["ticket"]["number"]

    async def ticket(self, number: str) -> dict:
        """The ticket as the dispatcher reads it."""
        return (await self.call("GET", f"/api/tickets/{number}"))[1]

    async def fix(self, vehicle_id: str, xy, at: datetime) -> None:
        """A GPS fix of a vehicle at local metres `xy`, written as the ingest writes it."""
        lon, lat = ll(*xy)
        await self.store.write_fixes([FixRecord(vehicle_id, at.timestamp(), lat, lon, 0.0, None, None, 1, "A", 8,
                                                1.0, "GP", True, True)], {}, seen={vehicle_id: at.timestamp()},
                                     retention_s=3600)

    async def dispatched_to(self, number: str) -> str | None:
        """The crew a ticket is dispatched to (None unless dispatched)."""
        ticket = await self.ticket(number)
        return ticket["crew_id"] if ticket["state"] == "dispatched" else None

    async def alarms(self, alarm_id: str) -> list[dict]:
        """The ticket alarms with this id (GET /api/ticket-alarms)."""
        code, body = await self.call("GET", "/api/ticket-alarms")
        return [a for a in body["alarms"] if a["alarm_id"] == alarm_id]


class CheckedApi(Api):
    """The dispatch tests' client, with every /api/admin response validated against the document."""

    document: dict = {}

    async def call(self, method: str, path: str, user: str | None = "dispatcher", body=None):
        """As `Api.call`, an /api/admin reply checked against the OpenAPI document."""
        code, reply = await super().call(method, path, user, body)
        if path.startswith("/api/admin"):
            validate(self.document, method, path.split("?")[0], code, reply)
        return code, reply

    async def admin(self, method: str, path: str, body=None, expect: int = 200) -> dict:
        """The admin's request, its status asserted."""
        code, reply = await self.call(method, path, "admin", body)
        assert code == expect, (method, path, code, reply)
        return reply

    async def crews(self) -> dict[str, dict]:
        """The registry's crews by id."""
        return {c["crew_id"]: c for c in (await self.admin("GET", "/api/admin/crews"))["crews"]}

    async def vehicles(self) -> dict[str, dict]:
        """The registry's vehicles by id."""
        return {v["vehicle_id"]: v for v in (await self.admin("GET", "/api/admin/vehicles"))["vehicles"]}

    async def recommended(self, number: str) -> tuple[list[str], dict[str, str]]:
        """The recommended crews in order, and the skipped ones with their reasons."""
        code, rec = await self.call("GET", f"/api/tickets/{number}/recommendation")
        assert code == 200, rec
        return [r["crew_id"] for r in rec["recommendations"]], {s["crew_id"]: s["reason"] for s in rec["skipped"]}


class Socket:
    """A console on /ws/live: keeps every frame it receives, decoded, and the raw text."""

    def __init__(self, ws: tornado.websocket.WebSocketClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.raw: list[str] = []

    async def until(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> None:
        """Read frames until ``predicate(frames)`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.frames):
            message = await asyncio.wait_for(self.ws.read_message(), max(0.1, deadline - time.monotonic()))
            assert message is not None, "the server closed the socket"
            self.raw.append(message)
            self.frames.append(orjson.loads(message))

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The frames of one type."""
        return [f for f in self.frames if f["type"] == kind]

    def tickets(self) -> dict[str, dict[str, Any]]:
        """The newest view of every ticket seen, snapshot and deltas."""
        out: dict[str, dict[str, Any]] = {}
        for frame in self.frames:
            for ticket in frame.get("tickets", []) if frame["type"] in ("snapshot", "tickets") else []:
                out[ticket["number"]] = ticket
        return out

    def vehicle_ids(self) -> set[str]:
        """Every vehicle a frame showed."""
        return {v["id"] for f in self.frames if f["type"] in ("snapshot", "vehicles") for v in f["vehicles"]}


class LiveApi(Api):
    """The dispatch tests' client, with the live feed running and WebSocket consoles."""

    feed: LiveFeed

    async def socket(self, user: str, query: str = "") -> Socket:
        """A console of `user` on /ws/live."""
        request = tornado.httpclient.HTTPRequest(self.base.replace("http", "ws") + "/ws/live" + query,
                                                 headers={"Authorization": f"Bearer {await self.token(user)}"})
        return Socket(await tornado.websocket.websocket_connect(request))

    async def assign(self, number: str, crew_id: str) -> None:
        """The dispatcher assigns a ticket to a crew."""
        code, reply = await self.call("POST", f"/api/tickets/{number}/assign", "dispatcher",
                                      {"crew_id": crew_id, "expected_version": (await self.ticket(number))["version"]})
        assert code == 200, reply


@contextlib.asynccontextmanager
async def river_app(tmp_path, redis_url: str, database_url: str, *, client: type[Api] = Api,
                    city: SimpleNamespace | None = None, live: bool = False, watch: bool = False,
                    review: ReviewTable = NO_REVIEW,
                    seed: Callable[[Store], Awaitable[None]] | None = None,
                    setup: Callable[[Any], Awaitable[None]] | None = None, **overrides) -> AsyncIterator[Any]:
    """The web app in process on loopback over `city` (the river city unless given), with the demo
    accounts, tickets (with the `review` chains) and the dispatch side: ``seed(store)`` runs before the services are built,
    ``setup(app)`` once the app listens; `live`: the live feed, and the city seeded as at start-up;
    `watch`: the worker's change watcher. The client (of class `client`) carries settings, city, feed."""
    clock = Clock(T0)
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD, **overrides)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    if seed is not None:
        await seed(store)
    manager = TicketManager(TicketStore(store.db, store.redis), None, clock=clock, review=review)
    city = city or river_city()
    parts = await build(store, settings, city, tickets=manager, clock=clock)
    await parts.dispatch.crews.refresh()  # the city's crews into the fleet registry (PostgreSQL)
    feed = LiveFeed(store, batch_ms=50) if live else None
    services = webapp.build_services(settings=settings, store=store, tickets=manager, dispatch=parts.dispatch,
                                     police=parts.police, **({"city": city, "live": feed} if live else {}))
    if live:
        await webapp.seed_city(services)  # the city's crews, vehicles and units, as at start-up
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="test-secret"))
    port = free_port()
    server.listen(port, "127.0.0.1")
    app = client(f"http://127.0.0.1:{port}", store, parts, clock)
    app.settings, app.city, app.feed = settings, city, feed
    if setup is not None:
        await setup(app)
    if feed is not None:
        feed.start()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_changes(parts, stop, block_ms=50)) if watch else None
    try:
        yield app
    finally:
        stop.set()
        if watcher is not None:
            await watcher
        if feed is not None:
            await feed.stop()
        server.stop()
        await server.close_all_connections()
        await store.close()


async def place_crews(app: Api, off_shift: bool = True) -> None:
    """Every crew's vehicle at its place in `CREWS` (C06's never reported), C04 off shift."""
    for _, vehicle_id, _, xy in CREWS:
        if xy is not None:
            await app.fix(vehicle_id, xy, T0)
    if off_shift:
        await FleetStore(app.store.db, app.store.redis).set_shift("C04", False, None, "test", T0)


def dispatch_app(tmp_path, redis_url: str, database_url: str):
    """The dispatch tests' app: the crews placed, C04 off shift, the change watcher running."""
    return river_app(tmp_path, redis_url, database_url, watch=True, setup=place_crews, ACCEPT_TIMEOUT_S=180.0)


async def _admin_setup(app: CheckedApi) -> None:
    response = await tornado.httpclient.AsyncHTTPClient().fetch(app.base + "/api/openapi.json")
    app.document = orjson.loads(response.body)
    await place_crews(app)


def admin_app(tmp_path, redis_url: str, database_url: str):
    """The fleet administration tests' app: the live feed, the city seeded, the crews placed, C04
    off shift, every /api/admin reply checked against the OpenAPI document."""
    return river_app(tmp_path, redis_url, database_url, client=CheckedApi, live=True, setup=_admin_setup)


async def _live_seed(store: Store) -> None:
    await AccountStore(store.db).put("crew2", {"role": "crew", "display": "抢修二班", "crew_id": "C02", "active": "1",
                                              "hash": accounts.hash_password(PASSWORD)})
    await store.replace_sensor_registry(SENSOR_ROWS)


@contextlib.asynccontextmanager
async def live_app(tmp_path, redis_url: str, database_url: str) -> AsyncIterator[LiveApi]:
    """The live-scoping tests' app: a second crew account (crew2 of C02), the sensors, the crews
    placed, the live feed knowing every vehicle's crew."""
    async with river_app(tmp_path, redis_url, database_url, client=LiveApi, live=True, seed=_live_seed,
                         setup=lambda app: place_crews(app, off_shift=False)) as app:
        await wait_for(lambda: len(app.feed.vehicle_crews) == len(CREWS), timeout=5)
        yield app


# ---- a unit tree over the river city: PWR00 → PWR01, PWR02 and WAT00 → WAT01, a liaison each ----

PHONE = "13812341234"
UNITS = [  # unit_id, parent (None: under the center), level, category
    ("PWR00", None, 2, "power"), ("PWR01", "PWR00", 3, "power"), ("PWR02", "PWR00", 3, "power"),
    ("WAT00", None, 2, "water"), ("WAT01", "WAT00", 3, "water"),
]
UNIT_CREWS = [("C11", "V11", "PWR01"), ("C21", "V21", "PWR02")]  # crew, vehicle, station
LIAISONS = {"unit-pwr00": "PWR00", "unit-pwr01": "PWR01", "unit-pwr02": "PWR02", "unit-wat00": "WAT00"}
# what each liaison sees of the tickets assigned to these units
SCOPE = {"unit-pwr00": {"PWR00", "PWR01", "PWR02"}, "unit-pwr01": {"PWR01"}, "unit-pwr02": {"PWR02"},
         "unit-wat00": {"WAT01"}}


def error_field(reply: dict) -> str:
    """The field a 400 names: the API's own ``field``, or the domain's "field: message"."""
    error = reply["error"]
    assert error["code"] in ("validation_error", "unknown_unit", "unit_other_trade"), error
    return error.get("field") or error["message"].split(":", 1)[0]


def unit_city() -> SimpleNamespace:
    """The river city's roads with two stations' crews."""
    city = river_city()
    city.crews = gpd.GeoDataFrame(
        {"vehicle_id": [c[1] for c in UNIT_CREWS], "crew_id": [c[0] for c in UNIT_CREWS],
         "crew_name": [f"抢修{c[0]}班" for c in UNIT_CREWS], "unit_id": [c[2] for c in UNIT_CREWS],
         "station_id": [c[2] for c in UNIT_CREWS], "skills": [("power",)] * len(UNIT_CREWS)},
        geometry=[Point(ll(0, 300))] * len(UNIT_CREWS), crs="EPSG:4326")
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
        """The number of a new ticket (a complaint unless `type`), assigned to `unit` when given."""
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
        """A ticket action by `user` at the ticket's current version."""
        code, body = await self.call("GET", f"/api/tickets/{number}", "dispatcher")
        assert code == 200, body
        return await self.call("POST", f"/api/tickets/{number}/actions/{action}", user,
                               {"expected_version": body["version"], **args})

    async def events(self, number: str) -> list[tuple[str, str, str | None, str]]:
        """(action, actor, from state, to state) of every audit event after the create."""
        code, body = await self.call("GET", f"/api/tickets/{number}/timeline", "supervisor")
        assert code == 200
        return [(e["action"], e["actor_id"], e["from_state"], e["to_state"]) for e in body["events"][1:]]

    async def spread(self) -> dict[str, str]:
        """A ticket assigned to each unit but WAT00 (a water one to WAT01), and one still in the pool."""
        numbers = {unit: await self.new("water" if unit.startswith("WAT") else "power", unit=unit)
                   for unit in ("PWR00", "PWR01", "PWR02", "WAT01")}
        numbers["pool"] = await self.new()
        return numbers


async def _unit_seed(store: Store) -> None:
    rows = [{"unit_id": u, "parent_id": p, "level": lvl, "name": f"{u}单位", "category": c} for u, p, lvl, c in UNITS]
    await UnitStore(store.db).seed(nodes_from_frame(rows, "测试热线中心"), T0.timestamp())
    tree = {u["unit_id"]: u for u in await UnitStore(store.db).tree()}
    created = await AccountStore(store.db).unit_liaisons([tree[u] for u in LIAISONS.values()],
                                                          accounts.hash_password(PASSWORD))
    assert sorted(created) == sorted(LIAISONS)


def unit_app(tmp_path, redis_url: str, database_url: str, review: ReviewTable = NO_REVIEW):
    """A running app (live feed included) over the unit tree UNITS with a liaison per LIAISONS."""
    return river_app(tmp_path, redis_url, database_url, client=UnitApi, city=unit_city(), live=True, seed=_unit_seed,
                     review=review)
