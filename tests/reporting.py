"""The reports tests' app and day of tickets (the `reports_app` fixture of tests/conftest.py): a
Driver that walks tickets through the real TicketManager on a settable clock, the story of a day
covering every kind of KPI fact, the web app with a KpiService, and the pure rebuild and the
`python -m center kpi` command to compare with."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import AsyncIterator

import orjson
import tornado.httpclient
import tornado.httpserver

from command.ticket_model import Actor, Role
from config.city import CityLayers
from gis.lookup import SpatialLookup
from servers.embedded import free_port
from services.kpi_query import parse_query, state_payload
from services.kpi_service import KpiService, rebuild_from_db
from services.ticket_alarms import sensor_sites
from services.tickets import TicketManager
from store.live import Store
from store.tickets import TicketStore
from tests.conftest import PASSWORD, ROOT, T0, ApiClient, Clock, test_settings
from web import app as webapp

M = timedelta(minutes=1)
PHONE = "13812341234"
AGENT, DISPATCHER = Actor("agent", Role.AGENT), Actor("dispatcher", Role.DISPATCHER)
SYSTEM = Actor("system", Role.SYSTEM)
WEST, EAST = (119.72, 36.36), (119.78, 36.37)  # district D2 (PWR02, WAT01) and D1 (PWR01, WAT01)


def rounded(value):
    """The value with every float rounded to 9 significant digits (dicts and lists walked)."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def crew(crew_id: str) -> Actor:
    """A crew member of `crew_id`."""
    return Actor(f"crew-{crew_id}", Role.CREW, crew_id)


class Driver:
    """Tickets driven through their lifecycle by the real TicketManager, on a settable clock."""

    def __init__(self, manager: TicketManager, clock: Clock) -> None:
        self.manager, self.clock = manager, clock

    async def step(self, minutes_later: float, number: str, action: str, actor: Actor, **args):
        """`actor` acts on a ticket `minutes_later` on the clock."""
        self.clock.now += minutes_later * M
        return await self.manager.act(number, action, args, actor, expected_version=None)

    async def call(self, at: datetime, where=WEST, *, phone: str = PHONE, link: bool = False, **fields) -> str:
        """The number of a ticket the agent creates at `at` (a power repair unless `fields`)."""
        self.clock.now = at
        answer = fields.pop("answer", None)
        body = {"channel": "phone", "category": "power", "type": "repair", "description": "家里停电了",
                "caller_phone": phone, "lon": where[0], "lat": where[1], **fields}
        result = await self.manager.create(body, AGENT, link=link, answer=answer)
        return result.record.ticket.number

    async def field_work(self, number: str, crew_id: str, *, gps: bool = True, decline_first: bool = False):
        """Dispatch, accept, depart, arrive (by GPS unless told), resolve."""
        await self.step(4, number, "dispatch", DISPATCHER, crew_id=crew_id)
        if decline_first:
            await self.step(2, number, "decline", crew(crew_id), reason="车辆故障")
            await self.step(3, number, "dispatch", DISPATCHER, crew_id=crew_id)
        await self.step(2, number, "accept", crew(crew_id))
        await self.step(1, number, "depart", crew(crew_id))
        if gps:
            await self.step(25, number, "arrive", SYSTEM, source="gps")
        else:
            await self.step(50, number, "arrive", crew(crew_id))
        await self.step(40, number, "resolve", crew(crew_id), resolution="已修复")

    async def callback(self, number: str, satisfaction: str, minutes_later: float = 30):
        """The agent's callback `minutes_later`."""
        self.clock.now += minutes_later * M
        await self.manager.callback(number, satisfaction, AGENT, expected_version=None)


async def drive_story(driver: Driver) -> dict[str, str]:
    """A day of tickets covering every kind of KPI fact; returns their numbers by role."""
    n: dict[str, str] = {}
    n["east_fixed"] = await driver.call(T0, EAST, phone="13900001111")
    await driver.field_work(n["east_fixed"], "C01")
    await driver.callback(n["east_fixed"], "satisfied")
    n["west_rework"] = await driver.call(T0 + 5 * M, WEST, phone="13900002222", category="water")
    await driver.field_work(n["west_rework"], "C02", gps=False, decline_first=True)
    await driver.callback(n["west_rework"], "dissatisfied")
    await driver.field_work(n["west_rework"], "C02")
    await driver.callback(n["west_rework"], "basically_satisfied")
    n["answered"] = await driver.call(T0 + 20 * M, EAST, phone="13900003333", type="consultation",
                                      description="电费怎么交", answer="可在网上营业厅缴纳")
    n["repeated"] = await driver.call(T0 + 30 * M, WEST, phone="13900004444")
    await driver.call(T0 + 50 * M, (WEST[0] + 0.0002, WEST[1]), phone="13900004444", link=True, description="还是没电")
    n["yesterday"] = await driver.call(T0 - timedelta(days=1) + 20 * M, EAST, phone="13900005555", category="gas",
                                       urgency="emergency")
    driver.clock.now = T0 + 2 * 60 * M
    await driver.field_work(n["yesterday"], "C01")
    n["transferred"] = await driver.call(T0 + 70 * M, EAST, phone="13900006666")
    await driver.step(3, n["transferred"], "transfer", DISPATCHER, unit_id="PWR02", reason="辖区调整")
    await driver.step(5, n["transferred"], "cancel", DISPATCHER, reason="重复工单")
    n["open"] = await driver.call(T0 + 90 * M, WEST, phone="13900007777", category="drainage")
    return n


class App(ApiClient):
    """The web application in process with the ticket manager and a KpiService, and a client."""

    def __init__(self, base: str, store: Store, manager: TicketManager, kpi: KpiService, clock: Clock) -> None:
        super().__init__(base, PASSWORD)
        self.base, self.store, self.manager, self.kpi, self.clock = base, store, manager, kpi, clock
        self.driver = Driver(manager, clock)

    async def fetch(self, path: str, user: str | None = "supervisor"):
        """The raw response to a GET by `user`."""
        headers = await self.auth(user)
        return await self.http.fetch(tornado.httpclient.HTTPRequest(self.base + path, headers=headers,
                                                                    follow_redirects=False), raise_error=False)

    async def get(self, path: str, user: str | None = "supervisor", expect: int = 200):
        """The JSON reply to a GET by `user`, its status asserted."""
        response = await self.fetch(path, user)
        assert response.code == expect, (path, response.code, response.body[:300])
        return orjson.loads(response.body)


@contextlib.asynccontextmanager
async def kpi_app(tmp_path, redis_url: str, database_url: str, city) -> AsyncIterator[App]:
    """The web app on `city` with the ticket manager and a KpiService started on an empty database
    (everything after is the incremental path), on a settable clock from T0."""
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    tickets = TicketStore(store.db, store.redis)
    clock = Clock(T0)
    lookup = SpatialLookup(city)
    manager = TicketManager(tickets, lookup, sensors=sensor_sites(city, lookup), clock=clock)
    kpi = KpiService(store.db, store.redis, tz=settings.zone, block_ms=100)
    await kpi.start()  # on an empty database: everything after this is the incremental path
    services = webapp.build_services(settings=settings, store=store, city=CityLayers(city), tickets=manager, kpi=kpi)
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="test-secret"))
    port = free_port()
    server.listen(port, "127.0.0.1")
    client = App(f"http://127.0.0.1:{port}", store, manager, kpi, clock)
    client.redis_url, client.database_url = redis_url, database_url
    client.settings, client.web_settings = settings, server.request_callback.settings
    yield client
    server.stop()
    await server.close_all_connections()
    await kpi.stop()
    await store.close()


def rebuilt(database_url: str, query: dict, tz) -> dict:
    """The report of the pure rebuild (`command.kpi.rebuild` over the audit events alone)."""
    return state_payload(rebuild_from_db(database_url), parse_query(query.get, today=T0.date()), tz)



QUERIES = ["period=day&date=2026-11-22", "period=week&date=2026-11-22", "period=month&date=2026-11-22",
           "period=day&date=2026-11-21", "period=month&date=2026-11-22&category=power",
           "period=day&date=2026-11-22&district=D2", "period=month&date=2026-11-22&unit=PWR01,WAT01"]


def kpi_command(database_url: str, redis_url: str, data_dir: Path, *args: str) -> dict:
    """Run ``python -m center kpi ...`` as a real process; its report JSON."""
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "MQTT_URL": "mqtt://127.0.0.1:1",
           "DATA_DIR": str(data_dir), "CONFIG_FILE": str(data_dir / "absent.toml")}
    done = subprocess.run([sys.executable, "-m", "center", "kpi", *args], cwd=ROOT, env=env, capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "kpi rebuild:" in done.stderr.decode()  # progress on stderr, the report alone on stdout
    return orjson.loads(done.stdout)


def as_args(query: str) -> dict[str, str]:
    """A report query string as its arguments."""
    return dict(part.split("=", 1) for part in query.split("&"))
