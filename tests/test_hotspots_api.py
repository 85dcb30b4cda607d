"""Hotspots and the wall's KPIs in-process on loopback with real Redis: tickets are created and driven
through the ticket API (TicketManager) on a settable clock, the KPI service follows their audit
streams, and the heat map cells, the emerging clusters and today's wall KPIs hold the numbers the
scenario implies; roles are refused where they should be; bad parameters are 400 with a stable
code and counted; every answer validates against the OpenAPI document."""
from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import tornado.httpserver

from config.city import CityLayers
from servers.embedded import free_port
from gis.crs import from_metres, gk_zone_epsg, to_metres
from gis.lookup import SpatialLookup
from services.kpi_service import KpiService
from services.tickets import TicketManager
from services.ticket_alarms import sensor_sites
from tests.apps import TicketApi, ticket_stores
from tests.conftest import T0, Clock
from tests.openapi_check import validate
from web import app as webapp
from web.handlers.openapi import build_document, route_rules

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
EPSG = gk_zone_epsg(119.75)  # the zone of the test city's center
CELL = 250.0


class HotspotApi(TicketApi):
    """The ticket API client, plus the OpenAPI document every answer is checked against."""

    document: dict

    async def get(self, path: str, user: str = "dispatcher", expect: int = 200):
        code, body = await self.call("GET", path, user)
        assert code == expect, (path, code, body)
        validate(self.document, "GET", path.split("?")[0], code, body)
        return body

    async def ticket(self, **fields) -> str:
        """Create a separate ticket (no repeat linking) and return its number."""
        code, body = await self.create(link=False, **fields)
        assert code == 201, body
        return body["ticket"]["number"]

    async def step(self, minutes: float, user: str, number: str, action: str, **args) -> dict:
        """Move the clock to T0 + minutes and apply an action."""
        self.clock.now = T0 + timedelta(minutes=minutes)
        code, body = await self.act(user, number, action, **args)
        assert code == 200, body
        return body["ticket"]


async def _serve(tmp_path: Path, redis_url: str, database_url: str, city, *, kpi: bool = True):
    settings, store, tickets = await ticket_stores(tmp_path, redis_url, database_url)
    lookup = SpatialLookup(city)
    clock = Clock(T0)
    manager = TicketManager(tickets, lookup, sensors=sensor_sites(city, lookup), clock=clock)
    service = KpiService(store.db, store.redis) if kpi else None
    if service is not None:
        await service.start()
    services = webapp.build_services(settings=settings, store=store, city=CityLayers(city), tickets=manager, kpi=service)
    app = webapp.make_app(services, cookie_secret="test-secret")
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    client = HotspotApi(f"http://127.0.0.1:{port}", store, manager, clock)
    client.document = build_document(route_rules(app))
    client.app = app
    return server, client, service


@pytest.fixture
async def api(tmp_path, redis_url, database_url, city):  # noqa: F811
    server, client, service = await _serve(tmp_path, redis_url, database_url, city)
    yield client
    server.stop()
    await server.close_all_connections()
    await service.stop()
    await client.store.close()


def in_cell(lon: float, lat: float, n: int) -> list[tuple[float, float]]:
    """n points well inside the 250 m cell (of the test city's metric grid) holding (lon, lat)."""
    x, y = to_metres(lon, lat, epsg=EPSG)
    cx, cy = (math.floor(x / CELL) + 0.5) * CELL, (math.floor(y / CELL) + 0.5) * CELL
    xs = cx + np.linspace(-60, 60, n)
    ys = cy + np.linspace(40, -40, n)
    lons, lats = from_metres(xs, ys, epsg=EPSG)
    return list(zip(np.atleast_1d(lons).tolist(), np.atleast_1d(lats).tolist()))


def inside(bounds: list[float], lon: float, lat: float) -> bool:
    west, south, east, north = bounds
    return west <= lon <= east and south <= lat <= north


async def test_heat_map_counts_tickets_per_cell_by_period_and_category(api):
    power = in_cell(119.72, 36.36, 3)
    water = in_cell(119.78, 36.37, 2)
    gas = in_cell(119.71, 36.39, 1)
    phone = 13800000100
    placed: list[tuple[str, float, float]] = []
    for category, points in (("power", power), ("water", water), ("gas", gas)):
        for lon, lat in points:
            phone += 1
            await api.ticket(category=category, lon=lon, lat=lat, caller_phone=str(phone))
            placed.append((category, lon, lat))
    await api.ticket(channel="web", category="water", lon=None, lat=None, caller_phone=None)  # no place
    api.clock.now = T0 - timedelta(days=1)  # Saturday: in the week and month, not the day
    await api.ticket(category="power", lon=power[0][0], lat=power[0][1], caller_phone="13800000201")
    api.clock.now = T0 - timedelta(days=30)  # October: in no period of 2026-11-22
    await api.ticket(category="power", lon=power[0][0], lat=power[0][1], caller_phone="13800000202")

    day = await api.get("/api/hotspots/heat?period=day&date=2026-11-22")
    assert day["epsg"] == EPSG and day["cell_m"] == 250 and day["period"]["kind"] == "day"
    assert (day["period"]["start"], day["period"]["end"]) == ("2026-11-21T16:00:00Z", "2026-11-22T16:00:00Z")
    assert [c["count"] for c in day["cells"]] == [3, 2, 1]
    assert (day["tickets"], day["max_count"]) == (6, 3)
    for cell in day["cells"]:  # each cell holds exactly the tickets placed inside its bounds
        assert sum(inside(cell["bounds"], lon, lat) for _, lon, lat in placed) == cell["count"]
        assert inside(cell["bounds"], cell["lon"], cell["lat"])
    week = await api.get("/api/hotspots/heat?period=week&date=2026-11-22")
    assert [c["count"] for c in week["cells"]] == [4, 2, 1]
    month = await api.get("/api/hotspots/heat?period=month&date=2026-11-22", user="agent")
    assert [c["count"] for c in month["cells"]] == [4, 2, 1]
    october = await api.get("/api/hotspots/heat?period=month&date=2026-10-23")
    assert [c["count"] for c in october["cells"]] == [1]
    only = await api.get("/api/hotspots/heat?period=day&date=2026-11-22&category=water,gas")
    assert [c["count"] for c in only["cells"]] == [2, 1] and only["category"] == ["water", "gas"]
    coarse = await api.get("/api/hotspots/heat?period=week&date=2026-11-22&cell_m=5000")
    assert sum(c["count"] for c in coarse["cells"]) == 7 and len(coarse["cells"]) <= 3
    api.clock.now = T0
    default = await api.get("/api/hotspots/heat")  # the week of the clock's day
    assert default["period"]["kind"] == "week" and default["period"]["date"] == "2026-11-22"
    assert [c["count"] for c in default["cells"]] == [4, 2, 1]


async def test_emerging_clusters_against_each_area_s_own_history(api):
    """Daily windows: east grid G1's water calls jump from 1 a day to 6 today, west grid G2's gas
    from none to 5; G2's power stays at its usual 1 or 2 a day."""
    east, west = in_cell(119.78, 36.37, 8), in_cell(119.72, 36.36, 8)
    history = {("water", "G1"): ([1] * 8, 6, east), ("power", "G2"): ([1] * 8, 2, west),
               ("gas", "G2"): ([0] * 8, 5, west)}
    today: dict[tuple[str, str], set[str]] = {}
    phone = 13900000000
    for day in range(8, -1, -1):  # 8 days ago .. today, oldest first
        for (category, grid), (past, now, points) in history.items():
            count = now if day == 0 else past[8 - day]
            for k in range(count):
                phone += 1
                api.clock.now = T0 - timedelta(days=day) + timedelta(minutes=k)
                number = await api.ticket(category=category, lon=points[k][0], lat=points[k][1],
                                          caller_phone=str(phone))
                if day == 0:
                    today.setdefault((category, grid), set()).add(number)

    found = await api.get("/api/hotspots/clusters?date=2026-11-22&window_days=1")
    assert found["window"] == {"date": "2026-11-22", "days": 1, "start": "2026-11-21T16:00:00Z",
                               "end": "2026-11-22T16:00:00Z", "tz": "Asia/Shanghai"}
    clusters = found["clusters"]
    assert [(c["area_id"], c["category"]) for c in clusters] == [("G2", "gas"), ("G1", "water")]  # by p-value
    gas, water = clusters
    assert (gas["area_name"], gas["count"], gas["history"], gas["baseline_mean"], gas["rise_ratio"]) == \
        ("西网格", 5, [0] * 8, 0.0, None)
    assert (water["area_name"], water["count"], water["history"], water["baseline_mean"], water["rise_ratio"]) == \
        ("东网格", 6, [1] * 8, 1.0, 6.0)
    assert water["rise_tickets"] == 5.0 and water["p_value"] < 0.001 and water["z"] >= 3
    assert water["bounds"] == [119.75, 36.35, 119.8, 36.4] and water["geometry"]["type"] == "Polygon"
    for c in clusters:
        assert set(c["numbers"]) == today[(c["category"], c["area_id"])]
        assert {t["number"] for t in c["tickets"]} == set(c["numbers"])
        assert all(inside(c["bounds"], t["lon"], t["lat"]) for t in c["tickets"])

    by_district = await api.get("/api/hotspots/clusters?date=2026-11-22&window_days=1&area=district")
    assert [(c["area_id"], c["area_name"], c["category"]) for c in by_district["clusters"]] == \
        [("D2", "西区", "gas"), ("D1", "东区", "water")]
    water_only = await api.get("/api/hotspots/clusters?date=2026-11-22&window_days=1&category=water", user="agent")
    assert [c["area_id"] for c in water_only["clusters"]] == ["G1"]
    week = await api.get("/api/hotspots/clusters?date=2026-11-22")  # 7-day windows: nearly no history before
    assert week["window"]["days"] == 7
    assert {(c["area_id"], c["category"]): (c["count"], c["history"]) for c in week["clusters"]} == {
        ("G1", "water"): (12, [0] * 7 + [2]), ("G2", "power"): (8, [0] * 7 + [2]), ("G2", "gas"): (5, [0] * 8)}
    yesterday = await api.get("/api/hotspots/clusters?date=2026-11-21&window_days=1")
    assert yesterday["clusters"] == []


async def test_wall_kpis_are_today_s_report(api):
    """Tickets driven through their lifecycle; the wall's figures for today, worked out by hand."""
    api.clock.now = T0 - timedelta(days=1)  # F: created yesterday, resolved today
    f = await api.ticket(category="power", lon=119.705, lat=36.355, caller_phone="13700000006")
    for minute, action, args in ((-1439, "dispatch", {"crew_id": "C01"}), (-1438, "accept", {}),
                                 (-1437, "depart", {}), (-1420, "arrive", {})):
        await api.step(minute, "dispatcher", f, action, **args)
    api.clock.now = T0
    a = await api.ticket(category="power", lon=119.72, lat=36.36, caller_phone="13700000001")
    await api.step(2, "dispatcher", a, "dispatch", crew_id="C02")
    await api.step(3, "crew2", a, "accept")
    await api.step(4, "crew2", a, "depart")
    api.clock.now = T0 + timedelta(minutes=5)
    b = await api.ticket(category="water", lon=119.73, lat=36.37, caller_phone="13700000002")
    await api.step(6, "dispatcher", b, "dispatch", crew_id="C03")
    api.clock.now = T0 + timedelta(minutes=10)
    c = await api.ticket(category="gas", lon=119.71, lat=36.39, caller_phone="13700000003")
    for minute in (11, 12):  # two more calls from the same caller: red
        api.clock.now = T0 + timedelta(minutes=minute)
        code, linked = await api.create(category="gas", lon=119.71, lat=36.39, caller_phone="13700000003")
        assert linked["linked"] is True and linked["ticket"]["number"] == c
    api.clock.now = T0 + timedelta(minutes=13)
    d = await api.ticket(category="drainage", lon=119.74, lat=36.38, caller_phone="13700000004")
    api.clock.now = T0 + timedelta(minutes=14)
    code, linked = await api.create(category="drainage", lon=119.74, lat=36.38, caller_phone="13700000004")
    assert linked["ticket"]["number"] == d and linked["ticket"]["color"] == "orange"
    await api.step(14, "crew2", a, "arrive")  # 12 min after dispatch, 14 after the call: on time (45)
    api.clock.now = T0 + timedelta(minutes=15)
    code, e = await api.create(link=False, type="consultation", category="power", lon=None, lat=None,
                               caller_phone="13700000005", answer="可在网上营业厅缴纳")
    assert e["ticket"]["state"] == "closed"
    await api.step(20, "dispatcher", f, "resolve", resolution="更换熔断器")
    resolved = await api.step(30, "crew2", a, "resolve", resolution="更换熔断器")
    api.clock.now = T0 + timedelta(minutes=40)
    code, closed = await api.call("POST", f"/api/tickets/{a}/callback", "agent",
                                  {"expected_version": resolved["version"], "satisfaction": "satisfied"})
    assert code == 200 and closed["ticket"]["state"] == "closed"
    await api.step(45, "dispatcher", d, "note", note="已转110", data={"police": "handover"})
    for minute, action in ((60, "accept"), (61, "depart"), (68, "arrive")):  # 62 min after dispatch, 63 late
        await api.step(minute, "dispatcher", b, action)

    wall = await api.get("/api/wall/kpis", user="supervisor")
    assert (wall["date"], wall["start"], wall["tz"]) == ("2026-11-22", "2026-11-21T16:00:00Z", "Asia/Shanghai")
    kpis = wall["kpis"]
    assert {k: kpis[k] for k in ("tickets", "open", "dispatched", "resolved", "red", "orange", "police_handovers",
                                 "arrival_count", "arrive_on_time_due", "callbacks_done")} == {
        "tickets": 5, "open": 3, "dispatched": 2, "resolved": 3, "red": 1, "orange": 1, "police_handovers": 1,
        "arrival_count": 2, "arrive_on_time_due": 2, "callbacks_done": 1}
    assert kpis["arrival_min_mean"] == pytest.approx(37.0)
    assert kpis["arrival_min_p90"] == pytest.approx(57.0)  # 12 + 0.9 × (62 − 12)
    assert kpis["arrive_on_time_pct"] == pytest.approx(50.0)
    assert kpis["satisfaction_pct"] == pytest.approx(100.0)
    assert kpis["repeat_call_pct"] == pytest.approx(40.0)
    assert wall["units"]["arrival_min_mean"] == "min" and wall["units"]["satisfaction_pct"] == "%"
    assert wall["units"]["tickets"] == "tickets"
    assert (await api.get("/api/wall/kpis", user="dispatcher"))["kpis"] == kpis
    api.clock.now = T0 + timedelta(days=1)  # tomorrow nothing happened yet
    tomorrow = (await api.get("/api/wall/kpis", user="admin"))["kpis"]
    assert (tomorrow["tickets"], tomorrow["resolved"], tomorrow["arrival_min_mean"], tomorrow["satisfaction_pct"]) == \
        (0, 0, None, None)


@pytest.mark.parametrize(("path", "user", "code"), [
    ("/api/hotspots/heat", None, 401),
    ("/api/hotspots/heat", "crew", 403),
    ("/api/hotspots/clusters", "crew", 403),
    ("/api/wall/kpis", None, 401),
    ("/api/wall/kpis", "crew", 403),
    ("/api/wall/kpis", "agent", 403),
])
async def test_roles_are_refused(api, path, user, code):
    status, body = await api.call("GET", path, user)
    assert status == code and body["error"]["code"] == ("unauthenticated" if code == 401 else "forbidden")


@pytest.mark.parametrize(("query", "code"), [
    ("/api/hotspots/heat?period=year", "bad_period"),
    ("/api/hotspots/heat?date=2026-13-01", "bad_date"),
    ("/api/hotspots/heat?date=yesterday", "bad_date"),
    ("/api/hotspots/heat?category=fire", "bad_category"),
    ("/api/hotspots/heat?category=,", "bad_category"),
    ("/api/hotspots/heat?cell_m=10", "bad_request"),
    ("/api/hotspots/heat?cell_m=abc", "bad_request"),
    ("/api/hotspots/clusters?window_days=0", "bad_request"),
    ("/api/hotspots/clusters?window_days=32", "bad_request"),
    ("/api/hotspots/clusters?history=1", "bad_request"),
    ("/api/hotspots/clusters?area=street", "bad_area"),
    ("/api/hotspots/clusters?category=water,fire", "bad_category"),
])
async def test_bad_parameters_are_400_with_a_stable_code_and_counted(api, query, code):
    status, body = await api.call("GET", query, "dispatcher")
    assert status == 400 and body["error"]["code"] == code, body
    validate(api.document, "GET", query.split("?")[0], status, body)
    rejected = api.app.settings["services"].refused
    handler = "Heat" if "heat" in query else "Clusters"
    assert rejected[f"{handler}:400"] == 1
    status, _ = await api.call("GET", query, "dispatcher")
    assert status == 400 and rejected[f"{handler}:400"] == 2


async def test_without_the_kpi_service_the_answer_is_503(tmp_path, redis_url, database_url, city):  # noqa: F811
    server, client, _ = await _serve(tmp_path, redis_url, database_url, city, kpi=False)
    try:
        for path in ("/api/hotspots/heat", "/api/hotspots/clusters", "/api/wall/kpis"):
            status, body = await client.call("GET", path, "supervisor")
            assert status == 503 and body["error"]["code"] == "kpi_unavailable"
            validate(client.document, "GET", path, status, body)
    finally:
        server.stop()
        await server.close_all_connections()
        await client.store.close()
