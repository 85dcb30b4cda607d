"""Text-only tickets are placed by the server (issue #24): `command.geocoding.placement` as a table,
and POST /api/tickets in-process on loopback with real Redis and PostgreSQL, the manager holding the
desk's address book: a compound's building and unit gets its point, district and unit (exact), a
room or 附近 is approximate, a misspelt name, two places of one name and gibberish get no point
(``match: none``), a ticket with lon/lat is not looked up. Also the live feed's compact ticket
carries ``police_suggested`` (the console queue's "110?" tag)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import orjson
import pytest
import tornado.httpclient
import tornado.httpserver
from shapely.geometry import Point

from config.city import CityLayers
from servers.embedded import free_port
from store.live import Store
from store.tickets import TicketStore
from store.ticket_records import TicketRecord
from command.geocoding import MIN_SCORE, placement
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Role
from gis.crs import distance_m
from gis.lookup import SpatialLookup
from services.tickets import TicketManager
from tests.cities import TWO_DISTRICTS, write_city
from tests.conftest import ApiClient, test_settings
from web import app as webapp
from web.handlers.desk import AddressBooks, address_geocoder
from web.live import compact_ticket

PASSWORD = "test-pass-1234"
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def _building(b: int, u: int) -> tuple[float, float]:
    """Where unit u of building b of 幸福家园 stands (east district)."""
    return 119.780 + b * 0.0003 + u * 0.00005, 36.3705


ADDRESSES = (
    [{"addr_id": "P1", "address": "高密市东风路10号", "kind": "poi", "name": "幸福家园", "g": Point(119.780, 36.370)}]
    + [{"addr_id": f"B{b}{u}", "address": f"幸福家园{b}号楼{u}单元", "kind": "address", "name": "幸福家园",
        "g": Point(*_building(b, u))} for b in range(1, 5) for u in range(1, 3)]
    + [{"addr_id": f"R{n}", "address": f"高密市人民路{n}号", "kind": "address", "name": None,
        "g": Point(119.72 + n * 0.0001, 36.37)} for n in (1, 3, 5, 7, 9)]
    + [{"addr_id": "H1", "address": "高密市东风路99号", "kind": "poi", "name": "人民医院", "g": Point(119.79, 36.38)},
       {"addr_id": "H2", "address": "高密市人民路99号", "kind": "poi", "name": "人民医院", "g": Point(119.71, 36.38)}]
)
LAYERS = {  # the two-district test city's areas and power stations, both grids urban, and the address book
    "districts": TWO_DISTRICTS["districts"], "streets": TWO_DISTRICTS["streets"],
    "grids": [{**grid, "area_class": "urban"} for grid in TWO_DISTRICTS["grids"]],
    "units": TWO_DISTRICTS["units"][:2],
    "addresses": ADDRESSES,
}


# ------------------------------------------------------------------------------ the rule, pure
def _cand(score: float, lon: float = 119.78, lat: float = 36.37, match: str = "approximate", label: str = "x"):
    return {"score": score, "lon": lon, "lat": lat, "match": match, "label": label, "address": label}


@pytest.mark.parametrize("candidates, expected, point", [
    ([], {"match": "none"}, None),
    ([_cand(100.0, match="exact", label="幸福家园3号楼2单元")],
     {"match": "exact", "score": 100.0, "address": "幸福家园3号楼2单元"}, (119.78, 36.37)),
    ([_cand(MIN_SCORE)], {"match": "approximate", "score": MIN_SCORE, "address": "x"}, (119.78, 36.37)),
    ([_cand(MIN_SCORE - 0.01)], {"match": "none"}, None),                          # not sure enough: no guess
    ([_cand(97.0), _cand(97.0, lon=119.7801)], {"match": "approximate", "score": 97.0, "address": "x"},
     (119.78, 36.37)),                                                            # two units of one building
    ([_cand(100.0, match="exact"), _cand(100.0, lon=119.71)], {"match": "none"}, None),  # one name, two places
    ([_cand(100.0, match="exact"), _cand(99.0, lon=119.71)], {"match": "exact", "score": 100.0, "address": "x"},
     (119.78, 36.37)),                                                            # a lower one elsewhere is fine
])
def test_placement_takes_only_a_sure_unambiguous_match(candidates, expected, point):
    assert placement(candidates, distance_fn=distance_m) == (expected, point)


def test_compact_ticket_carries_the_police_suggestion():
    ticket, _ = new_ticket({"number": "GD20261122-0008", "channel": "phone", "category": "gas", "type": "repair",
                            "description": "好像有点煤气味", "caller_phone": "13812341234"},
                           now=T0, actor=Actor("a", Role.AGENT))
    view = compact_ticket(TicketRecord(ticket, {"police_suggested": "gas_leak", "police_kind": None}))
    assert view["police_suggested"] == "gas_leak" and view["police_kind"] is None


# ------------------------------------------------------------------------------ the API
@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """A two-district city with a compound, a road and two hospitals of one name, loaded from GeoJSON."""
    root = tmp_path_factory.mktemp("geocodecity")
    return write_city(root, LAYERS)


class Api(ApiClient):
    """The in-process app and a JSON client with bearer tokens."""

    def __init__(self, base: str, looked_up: list[str]) -> None:
        super().__init__(base, PASSWORD)
        self.looked_up = looked_up  # every text the manager asked the address book

    async def call(self, method: str, path: str, user: str, body=None):
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + path, method=method, headers=await self.auth(user),
            body=None if body is None else json.dumps(body)), raise_error=False)
        return response.code, orjson.loads(response.body)

    async def create(self, **fields):
        body = {"channel": "phone", "category": "power", "type": "repair", "description": "家里停电了",
                "caller_phone": "13812341234", "link": False, **fields}
        code, out = await self.call("POST", "/api/tickets", "agent", body)
        assert code == 201, out
        return out["ticket"]

    async def created_event(self, number: str) -> dict:
        code, out = await self.call("GET", f"/api/tickets/{number}/timeline", "agent")
        assert code == 200, out
        return next(e for e in out["events"] if e["action"] == "create")


@pytest.fixture
async def api(tmp_path, redis_url, database_url, city):
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    addresses = AddressBooks(CityLayers(city))
    geocoder, looked_up = address_geocoder(addresses), []

    async def counted(text: str):
        looked_up.append(text)
        return await geocoder(text)

    manager = TicketManager(TicketStore(store.db, store.redis), SpatialLookup(city), clock=lambda: T0, geocoder=counted)
    services = webapp.build_services(settings=settings, store=store, city=CityLayers(city), tickets=manager,
                                     addresses=addresses)
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="test-secret"))
    port = free_port()
    server.listen(port, "127.0.0.1")
    yield Api(f"http://127.0.0.1:{port}", looked_up)
    server.stop()
    await store.close()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_compound_building_and_unit_in_text_gets_its_point_district_and_unit(api):
    ticket = await api.create(address="幸福家园3号楼2单元")
    assert (ticket["lon"], ticket["lat"]) == pytest.approx(_building(3, 2))
    assert ticket["district"] == "D1" and ticket["grid"] == "G1" and ticket["unit_id"] == "PWR01"
    assert ticket["address"] == "幸福家园3号楼2单元"  # the caller's words are kept
    placed = {"match": "exact", "score": 100.0, "address": "幸福家园3号楼2单元"}
    assert ticket["geocode"] == placed
    assert (await api.created_event(ticket["number"]))["data"]["geocode"] == placed
    code, read = await api.call("GET", f"/api/tickets/{ticket['number']}", "dispatcher")
    assert code == 200 and read["geocode"] == placed


@pytest.mark.integration
@pytest.mark.asyncio
@pytest.mark.parametrize("said, entry, district, unit, point", [
    ("幸福家园3号楼2单元502", "幸福家园3号楼2单元", "D1", "PWR01", _building(3, 2)),  # no rooms in the data
    ("人民路3号附近", "高密市人民路3号", "D2", "PWR02", (119.7203, 36.37)),             # near, not at
])
async def test_an_approximate_match_is_placed_and_says_so(api, said, entry, district, unit, point):
    ticket = await api.create(address=said)
    assert ticket["geocode"]["match"] == "approximate" and ticket["geocode"]["address"] == entry
    assert MIN_SCORE <= ticket["geocode"]["score"] < 100
    assert (ticket["lon"], ticket["lat"]) == pytest.approx(point)
    assert ticket["district"] == district and ticket["unit_id"] == unit
    assert (await api.created_event(ticket["number"]))["data"]["geocode"] == ticket["geocode"]


@pytest.mark.integration
@pytest.mark.asyncio
@pytest.mark.parametrize("said", [
    "啊啊啊啊xyz",           # gibberish: nothing found
    "幸福佳园3号楼2单元",     # one wrong character in the name: 75, not sure enough
    "人民医院",              # two places of one name: no guess
    "人民路",               # a road without a number: any point on it
])
async def test_a_weak_ambiguous_or_absent_match_leaves_the_ticket_without_a_point(api, said):
    ticket = await api.create(address=said)
    assert ticket["geocode"] == {"match": "none"}
    assert ticket["lon"] is None and ticket["lat"] is None and ticket["district"] is None
    assert (await api.created_event(ticket["number"]))["data"]["geocode"] == {"match": "none"}


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_ticket_with_a_point_is_not_geocoded(api):
    ticket = await api.create(address="幸福家园3号楼2单元", lon=119.72, lat=36.36)  # the agent's point wins
    assert (ticket["lon"], ticket["lat"]) == (119.72, 36.36) and ticket["district"] == "D2"
    assert ticket["unit_id"] == "PWR02" and ticket["geocode"] is None
    assert "geocode" not in (await api.created_event(ticket["number"]))["data"]
    assert api.looked_up == []


@pytest.mark.integration
@pytest.mark.asyncio
@pytest.mark.parametrize("bad, field", [({"type": "抢修单"}, "type"), ({"description": ""}, "description"),
                                        ({"category": "lava"}, "category")])
async def test_an_invalid_ticket_is_refused_before_its_address_is_looked_up(api, bad, field):
    body = {"channel": "phone", "category": "power", "type": "repair", "description": "家里停电了",
            "caller_phone": "13812341234", "link": False, "address": "幸福家园3号楼2单元", **bad}
    code, out = await api.call("POST", "/api/tickets", "agent", body)
    assert code == 400 and out["error"]["message"].startswith(f"{field}:"), out
    assert api.looked_up == []
    await api.create(address="幸福家园3号楼2单元")
    assert api.looked_up == ["幸福家园3号楼2单元"]
