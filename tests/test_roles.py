"""Roles per route, table-driven, in-process with real Redis: every role logs in and calls every
/api route; a role the table does not name gets 403, a role it names gets the route's answer
(for POSTs, an empty body, refused by validation: nothing is written). The table is the README's
"Roles per route" table; a route the application has and the table does not fails the test, so
code, table and README cannot drift apart."""
from __future__ import annotations

from pathlib import Path

import pytest
import tornado.httpclient
import tornado.httpserver

from command import accounts
from servers.embedded import free_port
from store.live import Store
from store.accounts import AccountStore
from store.units import UnitStore
from store.mbtiles import write_mbtiles
from store.tickets import TicketStore
from services.basemap import mbtiles_path
from services.kpi_service import KpiService
from services.tickets import TicketManager
from services.worker import build
from gis.units import nodes_from_frame
from tests.conftest import PASSWORD, T0, Clock, test_settings
from tests.river import Api, river_city
from web import app as webapp
from web.handlers.openapi import handler_methods, route_rules, split_pattern

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ROLES = ("agent", "dispatcher", "supervisor", "crew", "admin", "unit", "team_leader", "coordinator", "director")
ANY = frozenset(ROLES)
OFFICE = frozenset({"agent", "dispatcher", "supervisor", "admin"})
DESK = OFFICE  # the call desk's reads: agents, and the dispatchers who take calls too
DISPATCH = frozenset({"dispatcher", "supervisor", "admin"})
READERS = OFFICE | {"crew"}
REVIEWERS = frozenset({"team_leader", "coordinator", "director"})  # the review chains' steps
TICKETS = READERS | {"unit"} | REVIEWERS  # the ticket reads and actions: a unit's liaison, its units' tickets (the test's)
UNIT_READS = OFFICE | {"unit"}  # 督办: a unit's liaison sees and answers its units'
ADMIN = frozenset({"admin"})
NONE = frozenset()  # no login: the document, or the 110 gateway's HMAC-signed endpoints
T = "{ticket}"  # the crew's own ticket

# "METHOD /shape" -> (roles, the path called, the allowed roles' status). POSTs carry {}.
TABLE: dict[str, tuple[frozenset, str, int]] = {
    "GET /api/openapi.json": (NONE, "/api/openapi.json", 200),
    "POST /api/login": (NONE, "/api/login", 400),
    "POST /api/logout": (ANY, "", 200),  # not called: it would end the session the test uses
    "GET /api/me": (ANY, "/api/me", 200),
    "GET /api/layers": (ANY, "/api/layers", 200),
    "GET /api/layers/{}": (ANY, "/api/layers/roads", 404),  # no city layers here
    "GET /api/vehicles": (READERS, "/api/vehicles", 200),
    "GET /api/vehicles/{}": (READERS, "/api/vehicles/V01", 200),
    "GET /api/vehicles/{}/track": (DISPATCH, "/api/vehicles/V01/track", 200),
    "GET /api/vehicles/{}/replay": (DISPATCH, "/api/vehicles/V01/replay", 200),
    "GET /api/vehicles/{}/replay.gpx": (DISPATCH, "/api/vehicles/V01/replay.gpx", 200),
    "GET /api/vehicles/{}/replay.kml": (DISPATCH, "/api/vehicles/V01/replay.kml", 200),
    "GET /api/vehicles/unknown": (OFFICE, "/api/vehicles/unknown", 200),
    "GET /api/sensors": (OFFICE, "/api/sensors", 200),
    "GET /api/sensors/{}": (OFFICE, "/api/sensors/NOPE", 404),
    "GET /api/sensors/unknown": (OFFICE, "/api/sensors/unknown", 200),
    "GET /api/alarms": (OFFICE, "/api/alarms", 200),
    "POST /api/alarms/{}/ack": (DISPATCH, "/api/alarms/NOPE:high/ack", 404),
    "GET /api/ingest/stats": (DISPATCH, "/api/ingest/stats", 200),
    "GET /api/tickets": (TICKETS, "/api/tickets", 200),
    "POST /api/tickets": (OFFICE | {"team_leader"}, "/api/tickets", 400),  # the front desk's team leader takes calls
    "GET /api/tickets/duplicates": (DESK, "/api/tickets/duplicates?phone=13812341234", 200),
    "GET /api/tickets/counts": (DISPATCH, "/api/tickets/counts", 200),
    "GET /api/tickets/{}": (TICKETS, f"/api/tickets/{T}", 200),
    "GET /api/tickets/{}/timeline": (TICKETS, f"/api/tickets/{T}/timeline", 200),
    "POST /api/tickets/{}/actions/{}": (TICKETS, f"/api/tickets/{T}/actions/accept", 400),
    "POST /api/tickets/{}/callback": (frozenset({"agent", "supervisor", "admin"}), f"/api/tickets/{T}/callback", 400),
    "GET /api/callbacks": (frozenset({"agent", "supervisor", "admin"}), "/api/callbacks", 200),
    "GET /api/incidents": (DESK, "/api/incidents", 200),
    "GET /api/incidents/{}": (DESK, "/api/incidents/NOPE", 404),
    "POST /api/incidents/{}/resolve": (DISPATCH, "/api/incidents/NOPE/resolve", 404),
    "GET /api/incidents/near": (DESK, "/api/incidents/near?lon=119.75&lat=36.38&category=water", 200),
    "POST /api/incidents/{}/etr": (DISPATCH | {"crew"}, "/api/incidents/NOPE/etr", 404),  # crew: of the primary ticket
    "POST /api/incidents/{}/notice": (DISPATCH, "/api/incidents/NOPE/notice", 404),
    "GET /api/notices": (DESK, "/api/notices", 200),
    "GET /api/tickets/{}/recommendation": (DISPATCH, f"/api/tickets/{T}/recommendation", 200),
    "POST /api/tickets/{}/assign": (DISPATCH | {"unit"}, f"/api/tickets/{T}/assign", 400),  # a station: its crews
    "POST /api/dispatch/joint": (DISPATCH, "/api/dispatch/joint", 400),
    "GET /api/crews": (DISPATCH, "/api/crews", 200),
    "POST /api/crews/{}/shift": (DISPATCH, "/api/crews/C01/shift", 400),
    "GET /api/ticket-alarms": (DISPATCH, "/api/ticket-alarms", 200),
    "POST /api/tickets/{}/police": (DISPATCH, f"/api/tickets/{T}/police", 503),  # no POLICE_URL here
    "GET /api/tickets/{}/cap": (DISPATCH, f"/api/tickets/{T}/cap", 404),  # no police message yet
    "POST /api/police/status": (NONE, "/api/police/status", 401),  # HMAC-signed, no login
    "POST /api/police/incidents": (NONE, "/api/police/incidents", 401),
    "GET /api/address/search": (DESK, "/api/address/search?q=abc", 503),  # no address layer here
    "GET /api/address/reverse": (DESK, "/api/address/reverse?lon=120.001&lat=36.001", 503),
    "GET /api/field/assignments": (frozenset({"crew"}), "/api/field/assignments", 200),  # a crew member's own
    "POST /api/tickets/{}/photos": (frozenset({"crew", "dispatcher", "supervisor", "admin", "unit"}),
                                    f"/api/tickets/{T}/photos", 415),  # {} is no image
    "GET /api/tickets/{}/photos/{}": (TICKETS, f"/api/tickets/{T}/photos/0123456789abcdef.jpg", 404),
    "GET /api/admin/users": (ADMIN, "/api/admin/users", 200),
    "POST /api/admin/users": (ADMIN, "/api/admin/users", 400),
    "PATCH /api/admin/users/{}": (ADMIN, "/api/admin/users/nobody", 404),
    "POST /api/admin/users/{}/password": (ADMIN, "/api/admin/users/nobody/password", 404),
    "GET /api/admin/crews": (DISPATCH, "/api/admin/crews", 200),
    "POST /api/admin/crews": (ADMIN, "/api/admin/crews", 400),
    "PATCH /api/admin/crews/{}": (ADMIN, "/api/admin/crews/NOPE", 404),
    "PUT /api/admin/crews/{}/shift": (frozenset({"supervisor", "admin"}), "/api/admin/crews/C01/shift", 400),
    "GET /api/admin/vehicles": (ADMIN, "/api/admin/vehicles", 200),
    "POST /api/admin/vehicles": (ADMIN, "/api/admin/vehicles", 400),
    "PATCH /api/admin/vehicles/{}": (ADMIN, "/api/admin/vehicles/NOPE", 404),
    "GET /api/admin/audit": (ADMIN, "/api/admin/audit", 200),
    "GET /api/admin/devices": (ADMIN, "/api/admin/devices", 200),
    "POST /api/admin/devices": (ADMIN, "/api/admin/devices", 400),
    "POST /api/admin/devices/{}/rotate": (ADMIN, "/api/admin/devices/NOPE/rotate", 404),
    "POST /api/admin/devices/{}/revoke": (ADMIN, "/api/admin/devices/NOPE/revoke", 404),
    "GET /api/admin/jt808/terminals": (ADMIN, "/api/admin/jt808/terminals", 200),
    "POST /api/admin/jt808/terminals": (ADMIN, "/api/admin/jt808/terminals", 400),
    "POST /api/admin/jt808/terminals/{}/unbind": (ADMIN, "/api/admin/jt808/terminals/123/unbind", 404),
    "GET /api/reports/kpi": (DISPATCH, "/api/reports/kpi?period=day&date=2026-11-22", 200),
    "GET /api/reports/drill": (DISPATCH, "/api/reports/drill?period=day&date=2026-11-22&metric=resolved", 200),
    "GET /api/reports/export": (DISPATCH, "/api/reports/export?period=day&date=2026-11-22&format=csv", 200),
    "GET /api/reports/units": (DISPATCH, "/api/reports/units?period=day&date=2026-11-22", 200),
    "GET /api/reports/units/drill": (DISPATCH, "/api/reports/units/drill?period=day&date=2026-11-22&unit_id=PWR01"
                                               "&metric=tickets", 200),
    "GET /api/hotspots/heat": (OFFICE, "/api/hotspots/heat?period=day&date=2026-11-22", 200),
    "GET /api/hotspots/clusters": (OFFICE, "/api/hotspots/clusters?date=2026-11-22", 200),
    "GET /api/wall/kpis": (DISPATCH, "/api/wall/kpis", 200),
    "GET /api/units": (OFFICE, "/api/units", 200),
    "PATCH /api/admin/units/{}": (ADMIN, "/api/admin/units/NOPE", 400),  # {} changes nothing
    "POST /api/tickets/{}/supervision": (frozenset({"supervisor", "admin"}), f"/api/tickets/{T}/supervision", 400),
    "GET /api/tickets/{}/supervision": (UNIT_READS, f"/api/tickets/{T}/supervision", 200),
    "GET /api/supervisions": (UNIT_READS, "/api/supervisions", 200),
    "POST /api/supervisions/{}/answer": (UNIT_READS, "/api/supervisions/1/answer", 400),  # {}: no answer
}

# the pages: "GET /path" -> roles (the others get 403)
PAGES: dict[str, frozenset] = {
    "GET /console": frozenset({"agent", "dispatcher", "supervisor", "admin"}) | REVIEWERS,  # the agent's map is read-only; reviewers: their queue
    "GET /desk": frozenset({"agent", "supervisor", "admin"}),
    "GET /field": frozenset({"crew", "admin"}),
    "GET /field/sw.js": frozenset({"crew", "admin"}),
    "GET /wall": DISPATCH,
    "GET /reports": DISPATCH,
    "GET /admin": frozenset({"supervisor", "admin"}),
    "GET /unit": frozenset({"unit", "admin"}),
    "GET /tiles/{}/{}/{}.png": ANY,  # the base map's tiles: every page with a map (the fixture writes one)
}
PAGE_PATHS = {"GET /tiles/{}/{}/{}.png": "/tiles/0/0/0.png"}  # the path called for a page shape


@pytest.fixture
async def api(tmp_path, redis_url, database_url):
    clock = Clock(T0)
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    # the river city's crews are of station PWR01; the user "unit" is its liaison
    await UnitStore(store.db).seed(nodes_from_frame([
        {"unit_id": "PWR00", "level": 2, "name": "供电公司", "category": "power"},
        {"unit_id": "PWR01", "parent_id": "PWR00", "level": 3, "name": "城区供电所", "category": "power"}]), 0.0)
    await AccountStore(store.db).put("unit", {"role": "unit", "unit_id": "PWR01", "display": "城区供电所 联络员",
                                              "active": "1", "hash": accounts.hash_password(PASSWORD)}, only_new=True)
    tickets = TicketStore(store.db, store.redis)
    manager = TicketManager(tickets, None, clock=clock)
    parts = await build(store, settings, river_city(), tickets=manager, clock=clock)
    await parts.dispatch.crews.refresh()
    kpi = KpiService(store.db, store.redis, policy=manager.policy, tz=settings.zone)
    await kpi.start(wait=True)
    services = webapp.build_services(settings=settings, store=store,
                                     tickets=manager, dispatch=parts.dispatch, police=parts.police, kpi=kpi)
    await webapp.seed_city(services)  # the city's crews, vehicles and units, as at start-up
    write_mbtiles(mbtiles_path(settings), {"name": "one tile", "format": "png"}, [(0, 0, 0, b"\x89PNG")])
    app = webapp.make_app(services, cookie_secret="test-secret")
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    client = Api(f"http://127.0.0.1:{port}", store, parts, clock)
    client.app = app
    yield client
    await kpi.stop()
    server.stop()
    await server.close_all_connections()
    await store.close()


def api_routes(app) -> set[str]:
    """Every "METHOD /shape" the application serves under /api."""
    found = set()
    for pattern, handler in route_rules(app):
        shape = "".join("{}" if p is None else p for p in split_pattern(pattern))
        if shape.startswith("/api/"):
            found.update(f"{method.upper()} {shape}" for method in handler_methods(handler))
    return found


async def test_the_table_names_every_api_route(api):
    assert api_routes(api.app) == set(TABLE)
    assert set(accounts.ROLES) == set(ROLES)  # a new role needs its column in the table


async def test_every_role_gets_exactly_the_routes_the_table_gives_it(api):
    await api.fix("V01", (1500, 200), T0)
    number = await api.create(link=False, unit_id="PWR01", unit_reason="城区供电所辖区")  # the liaison's
    code, reply = await api.call("POST", f"/api/tickets/{number}/assign", "dispatcher",
                                 {"crew_id": "C01", "expected_version": (await api.ticket(number))["version"]})
    assert code == 200, reply
    wrong = []
    for route, (roles, path, ok) in TABLE.items():
        method = route.split()[0]
        if not path:
            continue
        for role in ROLES:
            user = None if not roles else role
            headers = {"Authorization": f"Bearer {await api.token(user)}"} if user else {}
            response = await api.http.fetch(tornado.httpclient.HTTPRequest(
                api.base + path.replace(T, number), method=method, headers=headers,
                body=None if method == "GET" else "{}"), raise_error=False)
            expected = ok if not roles or role in roles else 403
            if response.code != expected:
                wrong.append(f"{route} as {role}: {response.code} (expected {expected}) {response.body[:200]!r}")
    assert not wrong, "\n".join(wrong)


async def test_every_role_opens_exactly_the_pages_the_table_gives_it(api):
    wrong = []
    for page, roles in PAGES.items():
        for role in ROLES:
            response = await api.http.fetch(tornado.httpclient.HTTPRequest(
                api.base + PAGE_PATHS.get(page, page.split()[1]), headers={"Authorization": f"Bearer {await api.token(role)}"},
                follow_redirects=False), raise_error=False)
            expected = 200 if role in roles else 403
            if response.code != expected:
                wrong.append(f"{page} as {role}: {response.code} (expected {expected})")
    assert not wrong, "\n".join(wrong)


def readme_roles() -> dict[str, frozenset]:
    """The README's "Roles per route" table: route -> roles."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- roles:start -->", 1)[1].split("<!-- roles:end -->", 1)[0]
    table = {}
    for line in block.strip().splitlines()[2:]:
        roles_cell, routes_cell = [cell.strip() for cell in line.strip().strip("|").split("|")]
        roles = frozenset(r.strip() for r in roles_cell.split(",") if r.strip() in ROLES)
        for route in routes_cell.split(", "):
            assert route.strip("`") not in table, route
            table[route.strip("`")] = roles
    return table


async def test_the_readme_table_is_the_table():
    assert readme_roles() == {**{route: frozenset(roles) for route, (roles, _, _) in TABLE.items()}, **PAGES}
