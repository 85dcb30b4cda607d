"""The organisation tree of responsible units: the rules (pure tables), the demo city's tree (every
trade covers every grid of the city with a level-3 unit under a level-2 department), the lookup of
the department above a place's unit, a flat profile still loading, the store on real PostgreSQL
(seed once and idempotently, never over an administrator's edit; chain, children, descendants;
edits audited; refusals), and the API in-process (roles, tree order, refusal codes, OpenAPI)."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import orjson
import pytest
import shapely
import tornado.httpclient
import tornado.httpserver

from config.city import CityLayers
from servers.embedded import free_port
from store.live import Store
from store.units import UnitNotFound, UnitRefused, UnitStore, nodes_of_city
from command.ticket_model import Category
from simulators import democity
from gis.layers import City, load_profile
from gis.lookup import SpatialLookup
from gis.units import CENTER_ID, TreeError, UnitNode, check_tree, move_refusal, nodes_from_frame
from tests.cities import LOOKUP_LAYERS
from tests.conftest import PASSWORD, test_settings
from tests.openapi_check import validate
from tests.river import Api
from web import app as webapp

T0 = 1_790_000_000.0
TREE = {CENTER_ID: (None, 1), "D1": (CENTER_ID, 2), "D2": (CENTER_ID, 2), "S1": ("D1", 3), "S2": ("D2", 3)}


@pytest.mark.parametrize("unit, parent, code", [
    ("S1", "D2", None),                    # a station moves to another department
    ("S1", CENTER_ID, None),               # or straight under the center
    ("D1", CENTER_ID, None),
    (CENTER_ID, None, None),               # only the center has no parent
    ("S1", None, "unknown_parent"),
    ("S1", "NOPE", "unknown_parent"),
    ("S1", "S2", "level_mismatch"),        # a station under a station
    ("D1", "S2", "level_mismatch"),        # a department under a station
    ("D1", "D2", "level_mismatch"),
    ("D1", "S1", "cycle"),                 # under its own station
    ("D1", "D1", "cycle"),
    (CENTER_ID, "D1", "cycle"),
])
def test_move_rules(unit, parent, code):
    refusal = move_refusal(TREE, unit, parent)
    assert (refusal.code if refusal else None) == code


def test_a_flat_profile_is_every_unit_at_level_3_under_the_center(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "g"} for r in LOOKUP_LAYERS["units"][1]]
    nodes = nodes_from_frame(rows, "测试热线中心")
    assert nodes[0] == UnitNode(CENTER_ID, None, 1, "测试热线中心", ("gas", "power", "water"))
    assert {(n.parent_id, n.level) for n in nodes[1:]} == {(CENTER_ID, 3)}
    assert nodes_of_city(None) == [UnitNode(CENTER_ID, None, 1, "热线中心", ())]
    body = ['[city]\nname = "测试市"\n']
    for kind, (_, layer) in LOOKUP_LAYERS.items():  # the spatial lookup tests' city: units without a tree
        frame = gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "g"} for r in layer],
                                 geometry=[r["g"] for r in layer], crs="EPSG:4326")
        frame.to_file(tmp_path / f"{kind}.geojson", driver="GeoJSON", engine="pyogrio")
        body.append(f'[layers.{kind}]\nfile = "{kind}.geojson"\n')
    (tmp_path / "profile.toml").write_text("\n".join(body), encoding="utf-8")
    city = load_profile(tmp_path / "profile.toml")
    assert [n.unit_id for n in nodes_of_city(city)] == [CENTER_ID, "GAS01", "PWR01", "PWR02", "WAT01"]
    assert nodes_of_city(city)[0].name == "测试市热线中心"
    lookup = SpatialLookup(city)
    where = lookup.locate(119.72, 36.36, "power")
    assert (where.unit_id, where.department_id, lookup.department_for("PWR02")) == ("PWR02", None, None)


@pytest.mark.parametrize("rows, code", [
    ([{"unit_id": "A", "name": "a", "category": "power", "parent_id": "B", "level": 3}], "unknown_parent"),
    ([{"unit_id": "A", "name": "a", "category": "power", "parent_id": "B", "level": 2},
      {"unit_id": "B", "name": "b", "category": "power", "level": 3}], "level_mismatch"),
    ([{"unit_id": "A", "name": "a", "category": "power", "parent_id": "B", "level": 3},
      {"unit_id": "B", "name": "b", "category": "power", "parent_id": "A", "level": 3}], "cycle"),
    ([{"unit_id": "A", "name": "a", "category": "power", "level": 4}], "level_mismatch"),
])
def test_a_broken_profile_tree_is_refused(rows, code):
    with pytest.raises(TreeError) as caught:
        nodes_from_frame(rows)
    assert caught.value.code == code


# ---------------------------------------------------------------------------- the demo city

@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> City:
    """The demo city, generated once for the module."""
    return load_profile(democity.generate(tmp_path_factory.mktemp("city")))


def test_the_demo_tree_is_one_tree_with_a_department_per_trade(demo):
    nodes = nodes_of_city(demo)
    check_tree(nodes)
    assert nodes[0].name == "高密市12319城建服务热线中心" and demo.profile.city["generator"] == democity.GENERATOR_VERSION
    departments = {n.unit_id: n for n in nodes if n.level == 2}
    assert {d.parent_id for d in departments.values()} == {CENTER_ID}
    assert sorted(t for d in departments.values() for t in d.trades) == sorted(c.value for c in Category)
    stations = [n for n in nodes if n.level == 3]
    assert all(n.parent_id in departments and n.trades[0] in departments[n.parent_id].trades for n in stations)
    by_id = {n.unit_id: n for n in nodes}
    assert by_id["PWR00"].name == "国网高密市供电公司" and by_id["PWR01"].name.endswith("城区供电所")
    assert [f"PWR{k:02d}" for k in range(1, 20)] == [n.unit_id for n in stations if n.trades == ("power",)]
    assert {"WAT01", "WAT04", "GAS01", "GAS02", "HEAT01", "DRN01", "DRN02"} <= set(by_id)
    units = demo.units.set_index("unit_id")
    for dep in departments:  # a department's polygon is the union of its stations' areas
        children = shapely.union_all(units.loc[[n.unit_id for n in stations if n.parent_id == dep]].geometry.values)
        assert children.symmetric_difference(units.loc[dep].geometry).area < 1e-9


@pytest.mark.parametrize("category", [c.value for c in Category])
def test_every_trade_has_a_station_responsible_for_every_grid(demo, category):
    lookup = SpatialLookup(demo)
    levels = dict(zip(demo.units["unit_id"], demo.units["level"]))
    categories = dict(zip(demo.units["unit_id"], demo.units["category"]))
    missing = []
    for grid in demo.grids.itertuples():
        point = grid.geometry.representative_point()
        where = lookup.locate(point.x, point.y, category)
        if where.unit_id is None or levels[where.unit_id] != 3 or categories[where.unit_id] != category:
            missing.append(grid.grid_id)
        elif where.department_id != lookup.department_for(where.unit_id) or \
                levels[where.department_id] != 2 or categories[where.department_id] != category:
            missing.append(grid.grid_id)
    assert not missing, f"{category}: no level-3 unit (or department) for grids {missing[:5]}"
    metric = demo.units_for(category).to_crs(epsg=4549)  # the stations tile the city: no overlap
    whole = demo.districts.to_crs(epsg=4549).union_all()
    assert metric.area.sum() == pytest.approx(whole.area, rel=1e-6)


def test_the_department_above_a_place(demo):
    lookup = SpatialLookup(demo)
    stations = demo.stations.set_index("station_id")
    ps01 = stations.loc["PS01"].geometry
    assert lookup.unit_for(ps01.x, ps01.y, "power") == "PWR01"
    assert lookup.locate(ps01.x, ps01.y, "power").department_id == "PWR00"
    assert lookup.department_for("SAN01") == "SAN00" and lookup.department_for("PWR00") is None
    assert lookup.department_for(None) is None and lookup.department_for("NOPE") is None


def test_a_cached_demo_city_of_another_generator_is_made_again(tmp_path):
    from simulators.democity import ensure_city

    settings = test_settings(tmp_path)
    profile = ensure_city(settings)
    text = profile.read_text(encoding="utf-8")
    profile.write_text(text.replace(f"generator = {democity.GENERATOR_VERSION}", "generator = 1"), encoding="utf-8")
    assert ensure_city(settings) == profile
    assert f"generator = {democity.GENERATOR_VERSION}" in profile.read_text(encoding="utf-8")
    stamp = profile.stat().st_mtime_ns
    assert ensure_city(settings) == profile and profile.stat().st_mtime_ns == stamp  # same version: kept


# ---------------------------------------------------------------------------- the store

async def audit_rows(store: Store, target: str | None = None) -> list[dict]:
    return await store.db.fetch("SELECT by, role, action, target, changes FROM admin_audit"
                                " WHERE %(t)s::text IS NULL OR target = %(t)s ORDER BY id", {"t": target})


@pytest.fixture
async def store(redis_url, database_url):
    store = Store.from_url(redis_url, database_url)
    yield store
    await store.close()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_store_seeds_once_and_keeps_an_admins_edit(store, demo):
    units = UnitStore(store.db)
    nodes = nodes_of_city(demo)
    changed = await units.seed(nodes, T0)
    assert len(changed) == len(nodes) and changed[0] == f"added:{CENTER_ID}"
    assert await units.seed(nodes, T0 + 1) == []  # idempotent: nothing written, no audit row
    assert [r["action"] for r in await audit_rows(store)] == ["units.seed"]
    tree = await units.tree()
    assert [(r["unit_id"], r["level"]) for r in tree[:2]] == [(CENTER_ID, 1), ("DRN00", 2)]
    assert [r["unit_id"] for r in await units.chain("PWR03")] == ["PWR03", "PWR00", CENTER_ID]
    assert [r["unit_id"] for r in await units.children("HEAT00")] == ["HEAT01", "HEAT02"]
    assert await units.descendants("GAS00") == ["GAS00", "GAS01", "GAS02", "GAS03"]
    assert await units.descendants("GAS00", include_self=False) == ["GAS01", "GAS02", "GAS03"]
    assert len(await units.descendants(CENTER_ID)) == len(nodes)
    assert await units.chain("NOPE") == [] and await units.get("NOPE") is None

    unit, diff = await units.update("WAT01", {"name": "高密市自来水公司城区营业所", "phone": "0536-2200000"},
                                    by="admin", role="admin", at=T0 + 2)
    assert diff == {"name": ["高密市自来水公司", "高密市自来水公司城区营业所"], "phone": ["0536-2212345", "0536-2200000"]}
    assert (unit["source"], unit["updated_by"], unit["version"]) == ("admin", "admin", 2)
    assert await units.update("WAT01", {"name": "高密市自来水公司城区营业所"}, by="admin", role="admin",
                              at=T0 + 3) == (unit, {})  # no change, nothing written
    renamed = [n if n.unit_id not in ("WAT01", "WAT02") else UnitNode(
        n.unit_id, n.parent_id, n.level, n.name + "（新）", n.trades, n.phone) for n in nodes]
    assert await units.seed(renamed, T0 + 4) == ["updated:WAT02"]  # the edited WAT01 is kept
    assert (await units.get("WAT01"))["name"] == "高密市自来水公司城区营业所"
    assert (await units.get("WAT02"))["name"].endswith("（新）")
    entries = await audit_rows(store, "unit:WAT01")
    assert [(e["by"], e["role"], e["action"]) for e in entries] == [("admin", "admin", "unit.update")]
    assert entries[0]["changes"]["phone"] == ["0536-2212345", "0536-2200000"]


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_store_refuses_moves_that_break_the_tree(store, demo):
    units = UnitStore(store.db)
    await units.seed(nodes_of_city(demo), T0)
    before = len(await audit_rows(store))
    for unit_id, parent, code in (("PWR00", "PWR01", "cycle"), ("WAT01", "PWR01", "level_mismatch"),
                                  ("WAT01", "NOPE", "unknown_parent"), ("PWR00", "WAT00", "level_mismatch")):
        with pytest.raises(UnitRefused) as caught:
            await units.update(unit_id, {"parent_id": parent}, by="admin", role="admin", at=T0)
        assert caught.value.code == code
    with pytest.raises(UnitNotFound):
        await units.update("NOPE", {"active": False}, by="admin", role="admin", at=T0)
    assert len(await audit_rows(store)) == before  # nothing written
    moved, diff = await units.update("SAN01", {"parent_id": CENTER_ID, "active": False}, by="boss", role="admin",
                                     at=T0)
    assert diff == {"parent_id": ["SAN00", CENTER_ID], "active": [True, False]} and moved["parent_id"] == CENTER_ID
    assert "SAN01" not in await units.descendants("SAN00")


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_ticket_of_every_category_gets_its_station(store, demo):
    from command.ticket_model import Actor, Role
    from services.tickets import build_manager

    manager = await build_manager(store.db, store.redis, demo)
    where = demo.stations.set_index("station_id").loc["SS01"].geometry  # beside 醴泉街道环卫所
    levels = dict(zip(demo.units["unit_id"], demo.units["level"]))
    for k, category in enumerate(c.value for c in Category):
        # a service request goes to the station (a complaint to the department above it since #23,
        # tests/test_routing.py)
        created = await manager.create({"channel": "phone", "category": category, "type": "service",
                                        "description": "路边垃圾无人清运", "caller_phone": f"1380000{k:04d}",
                                        "lon": where.x, "lat": where.y}, Actor("agent", Role.AGENT), link=False)
        unit_id = created.record.ticket.unit_id
        assert unit_id is not None and levels[unit_id] == 3, (category, unit_id)
        assert demo.units.set_index("unit_id").loc[unit_id, "category"] == category
    assert unit_id == "OTH01"


# ---------------------------------------------------------------------------- the API

@pytest.fixture
async def api(tmp_path, redis_url, database_url, demo):
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    services = webapp.build_services(settings=settings, store=store, city=CityLayers(demo))
    await webapp.seed_city(services)  # the city's crews, vehicles and units, as at start-up
    app = webapp.make_app(services, cookie_secret="test-secret")
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    client = Api(f"http://127.0.0.1:{port}", store, None, None)
    response = await tornado.httpclient.AsyncHTTPClient().fetch(client.base + "/api/openapi.json")
    client.document = orjson.loads(response.body)
    yield client
    server.stop()
    await server.close_all_connections()
    await store.close()


async def call(api, method: str, path: str, user: str, body=None, expect: int = 200) -> dict:
    code, reply = await api.call(method, path, user, body)
    assert code == expect, (method, path, user, code, reply)
    validate(api.document, method, path.split("?")[0], code, reply)
    return reply


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_api_shows_the_tree_and_audits_an_admins_edit(api, demo):
    reply = await call(api, "GET", "/api/units", "agent")
    units = reply["units"]
    assert reply["center_id"] == CENTER_ID and len(units) == len(demo.units) + 1
    assert [(u["unit_id"], u["depth"]) for u in units[:3]] == [(CENTER_ID, 0), ("DRN00", 1), ("DRN01", 2)]
    power = [u["unit_id"] for u in (await call(api, "GET", "/api/units?under=PWR00", "dispatcher"))["units"]]
    assert power == ["PWR00"] + [f"PWR{k:02d}" for k in range(1, 20)]
    await call(api, "GET", "/api/units?under=NOPE", "supervisor", expect=404)
    await call(api, "GET", "/api/units?under=../x", "supervisor", expect=400)
    await call(api, "GET", "/api/units", "crew", expect=403)
    await call(api, "PATCH", "/api/admin/units/PWR01", "supervisor", {"name": "x"}, expect=403)

    reply = await call(api, "PATCH", "/api/admin/units/PWR01", "admin", {"name": " 城区供电所 ", "phone": "95598-1"})
    assert (reply["unit"]["name"], reply["unit"]["depth"], reply["changed"]) == ("城区供电所", 2, ["name", "phone"])
    audit = (await call(api, "GET", "/api/admin/audit?target=unit:PWR01", "admin"))["entries"]
    assert [(e["by"], e["action"]) for e in audit] == [("admin", "unit.update")]
    assert audit[0]["changes"]["name"][1] == "城区供电所" and audit[0]["at"]
    for body, code in (({"parent_id": "PWR02"}, "level_mismatch"), ({"parent_id": "NOPE"}, "unknown_parent"),
                       ({"parent_id": "PWR01"}, "cycle"), ({"name": ""}, "validation_error"),
                       ({"active": "no"}, "validation_error"), ({"phone": "call me"}, "validation_error"),
                       ({}, "validation_error")):
        reply = await call(api, "PATCH", "/api/admin/units/" + ("PWR00" if body.get("parent_id") == "PWR01"
                                                                 else "PWR01"), "admin", body, expect=400)
        assert reply["error"]["code"] == code, body
    await call(api, "PATCH", f"/api/admin/units/{CENTER_ID}", "admin", {"active": False}, expect=400)
    await call(api, "PATCH", "/api/admin/units/NOPE", "admin", {"active": False}, expect=404)
    reply = await call(api, "PATCH", "/api/admin/units/OTH02", "admin", {"parent_id": CENTER_ID, "active": False})
    assert (reply["unit"]["parent_id"], reply["unit"]["active"], reply["unit"]["depth"]) == (CENTER_ID, False, 1)
    assert len(await audit_rows(api.store, "unit:PWR01")) == 1  # the refusals wrote nothing


def test_readme_documents_the_units(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert "`GET /api/units`" in readme and "`PATCH /api/admin/units/<id>`" in readme
