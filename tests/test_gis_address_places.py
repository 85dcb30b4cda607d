"""Address search for points of interest and villages (issue #24): village groups (X村3组), the
village committee, aliases, and spoken offsets (往东100米) that move the point."""
from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from simulators import democity
from gis.address import AddressIndex, AddressIndexError
from gis.address_text import ParsedAddress, normalize, offset_text, parse
from gis.crs import distance_m, gk_zone_epsg, to_metres
from gis.layers import load_profile
from web.handlers.desk import AddressBook


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("王家庄村委会", "王家庄村"),
        ("王家庄村民委员会", "王家庄村"),
        ("王家庄村委", "王家庄村"),
        ("王家庄村部门口", "王家庄村门口"),
        ("王家庄三组", "王家庄3组"),
        ("王家庄村第十二小组", "王家庄村第12小组"),
        ("王家庄五队", "王家庄5队"),
        ("人民公园往东一百米", "人民公园往东100米"),
        ("汽车站向北两公里", "汽车站向北2公里"),
    ],
)
def test_normalize_villages_and_distances(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("王家庄村3组", ParsedAddress("王家庄村", group=3)),
        ("王家庄三组", ParsedAddress("王家庄", group=3)),
        ("王家庄村第三小组", ParsedAddress("王家庄村", group=3)),
        ("王家庄村3队", ParsedAddress("王家庄村", group=3)),
        ("王家庄村3组15号", ParsedAddress("王家庄村", number=15, group=3)),
        ("王家庄村委会", ParsedAddress("王家庄村")),
        ("王家庄村3组附近", ParsedAddress("王家庄村", group=3, near=True)),
        ("汽车站旁边往东100米", ParsedAddress("汽车站", near=True, east_m=100.0)),
        ("人民公园东门", ParsedAddress("人民公园", near=True)),
        ("实验小学对面往南五十米", ParsedAddress("实验小学", near=True, north_m=-50.0)),
        ("人民医院往西北约200米", ParsedAddress("人民医院", near=True, east_m=-141.4, north_m=141.4)),
        ("人民医院东边100米", ParsedAddress("人民医院", near=True, east_m=100.0)),
        ("人民医院往北1公里", ParsedAddress("人民医院", near=True, north_m=1000.0)),
        ("人民医院往东100米再往北50米", ParsedAddress("人民医院往东100米再", near=True, north_m=50.0)),
        ("人民医院往东100米往北50米", ParsedAddress("人民医院", near=True, east_m=100.0, north_m=50.0)),
        ("人民医院往东90公里", ParsedAddress("人民医院", near=True)),  # too far to be a walk: near only
        ("3组", ParsedAddress("3组")),  # a group alone is no name
    ],
)
def test_parse_groups_and_offsets(text: str, expected: ParsedAddress) -> None:
    assert parse(normalize(text)) == expected


@pytest.mark.parametrize(
    ("east", "north", "said"),
    [(100, 0, "往东100米"), (-50, 0, "往西50米"), (0, -200, "往南200米"), (0, 30, "往北30米"),
     (70.7, 70.7, "往东北100米"), (-70.7, -70.7, "往西南100米"), (0, 0, "")],
)
def test_offset_text(east: float, north: float, said: str) -> None:
    assert offset_text(east, north) == said


# A village of 4 groups round its centre, a second village one typo away, two POIs with aliases,
# a town bus station and a road with house numbers; ~ 9 m per 0.0001 degree of longitude.
_ENTRIES = [  # (id, text, kind, lon, lat)
    ("V1", "王家庄村", "village", 119.70, 36.30),
    *[(f"V1G{g}", f"王家庄村{g}组", "village", 119.70 + 0.002 * math.cos(g), 36.30 + 0.002 * math.sin(g))
      for g in range(1, 5)],
    ("V2", "杨家疃村", "village", 119.60, 36.25),
    ("V2G1", "杨家疃村1组", "village", 119.601, 36.25),
    ("P1", "高密汽车总站", "poi", 119.75, 36.38),
    ("P2", "柏城镇汽车站", "poi", 119.80, 36.40),
    ("P3", "高密市第一实验小学", "poi", 119.76, 36.39),
    ("P4", "高密市第二实验小学", "poi", 119.77, 36.39),
    ("A1", "人民路1号", "address", 119.74, 36.37),
    ("A2", "人民路3号", "address", 119.7401, 36.37),
]
_ALIASES = {7: ["汽车站", "长途汽车站"], 9: ["实验小学"], 0: ["柏城镇王家庄村"]}


@pytest.fixture(scope="module")
def index() -> AddressIndex:
    ids, texts, kinds, lons, lats = zip(*_ENTRIES)
    return AddressIndex(list(ids), list(texts), np.array(lons), np.array(lats), list(kinds), aliases=_ALIASES)


@pytest.mark.parametrize(
    ("query", "expected_id", "match"),
    [
        ("王家庄村3组", "V1G3", "exact"),
        ("王家庄三组", "V1G3", "exact"),  # 王家庄 is 王家庄村
        ("王家庄村三组", "V1G3", "exact"),
        ("王家庄3组", "V1G3", "exact"),
        ("王家庄村第三小组", "V1G3", "exact"),
        ("王家庄村委会", "V1", "exact"),
        ("王家庄", "V1", "exact"),
        ("柏城镇王家庄村", "V1", "exact"),  # an alias naming the town
        ("王家庄村9组", "V1", "approximate"),  # no such group: the village
        ("王家桩村3组", "V1G3", "approximate"),  # one wrong character
        ("王庄村3组", "V1G3", "approximate"),  # one missing
        ("王家庄村3组附近", "V1G3", "approximate"),
        ("汽车站", "P1", "exact"),  # the alias, not the town's station that contains the words
        ("长途汽车站门口", "P1", "approximate"),
        ("柏城镇汽车站", "P2", "exact"),
        ("实验小学对面", "P3", "approximate"),
        ("第二实验小学", "P4", "exact"),  # 高密市 is a prefix
        ("人民路3号", "A2", "exact"),
    ],
)
def test_village_and_poi_search(index: AddressIndex, query: str, expected_id: str, match: str) -> None:
    found = index.search(query, limit=3)
    assert found, query
    assert (found[0].id, found[0].match) == (expected_id, match)


def test_a_row_found_by_name_and_alias_is_listed_once(index: AddressIndex) -> None:
    ids = [c.id for c in index.search("汽车站", limit=10)]
    assert len(ids) == len(set(ids)) and ids[:2] == ["P1", "P2"]


def test_village_lists_itself_then_its_groups(index: AddressIndex) -> None:
    found = index.search("王家庄村", limit=5)
    assert [c.id for c in found] == ["V1", "V1G1", "V1G2", "V1G3", "V1G4"]
    assert found[0].score == 100.0 > found[1].score


def _metres_moved(before, after) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    epsg = gk_zone_epsg(119.7)
    x0, y0 = to_metres(before.lon, before.lat, epsg=epsg)
    x1, y1 = to_metres(after.lon, after.lat, epsg=epsg)
    return x1 - x0, y1 - y0


@pytest.mark.parametrize(
    ("query", "base", "east", "north", "said"),
    [
        ("汽车站旁边往东100米", "汽车站", 100.0, 0.0, "往东100米"),
        ("高密汽车总站往西五十米", "高密汽车总站", -50.0, 0.0, "往西50米"),
        ("王家庄村3组往北200米", "王家庄村3组", 0.0, 200.0, "往北200米"),
        ("人民路1号往东南100米", "人民路1号", 70.7, -70.7, "往东南100米"),
        ("汽车站往东100米往北100米", "汽车站", 100.0, 100.0, "往东北141米"),
    ],
)
def test_spoken_offset_moves_the_point(index: AddressIndex, query: str, base: str, east: float,
                                       north: float, said: str) -> None:
    at, moved = index.search(base)[0], index.search(query)[0]
    assert moved.id == at.id and moved.offset == said and at.offset == ""
    assert moved.score == pytest.approx(at.score * 0.9) and moved.match == "approximate"
    dx, dy = _metres_moved(at, moved)
    assert (dx, dy) == (pytest.approx(east, abs=0.5), pytest.approx(north, abs=0.5))


def test_offset_moves_a_crossing_too() -> None:
    crossings = [("人民路", "光明街", 119.76, 36.38)]
    index = AddressIndex(["a"], ["人民路1号"], np.array([119.75]), np.array([36.38]), crossings=crossings)
    at, moved = index.search("人民路与光明街交叉口")[0], index.search("人民路与光明街交叉口往南100米")[0]
    assert (moved.id, moved.kind, moved.offset) == (at.id, "crossing", "往南100米")
    assert distance_m(at.lon, at.lat, moved.lon, moved.lat) == pytest.approx(100.0, abs=0.5)
    assert moved.lat < at.lat


def test_alias_of_a_missing_row_is_refused() -> None:
    with pytest.raises(AddressIndexError):
        AddressIndex(["a"], ["人民路1号"], np.array([119.75]), np.array([36.38]), aliases={3: ["x"]})


def _book() -> AddressBook:
    rows = [
        {"addr_id": "P1", "address": "高密市团结街149号", "kind": "poi", "name": "高密汽车总站", "poi_type": "交通",
         "alias": "汽车站;长途汽车站", "g": Point(119.75, 36.38)},
        {"addr_id": "V1", "address": "高密市阚家镇王家庄村", "kind": "village", "name": "王家庄村",
         "poi_type": "村庄", "alias": "阚家镇王家庄村", "g": Point(119.70, 36.30)},
        {"addr_id": "V1G3", "address": "高密市阚家镇王家庄村3组", "kind": "village", "name": "王家庄村3组",
         "poi_type": "村民小组", "alias": None, "g": Point(119.702, 36.301)},
        {"addr_id": "A1", "address": "高密市人民路1号", "kind": "address", "name": None, "poi_type": None,
         "alias": float("nan"), "g": Point(119.74, 36.37)},
    ]
    frame = gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "g"} for r in rows],
                             geometry=[r["g"] for r in rows], crs="EPSG:4326")
    return AddressBook.from_frame(frame)


@pytest.mark.parametrize(
    ("query", "label", "kind", "poi_type", "offset"),
    [
        ("汽车站旁边往东100米", "高密汽车总站（高密市团结街149号）往东100米", "poi", "交通", "往东100米"),
        ("汽车站对面", "高密汽车总站（高密市团结街149号）", "poi", "交通", None),
        ("王家庄三组", "高密市阚家镇王家庄村3组", "village", "村民小组", None),
        ("阚家镇王家庄村委会", "高密市阚家镇王家庄村", "village", "村庄", None),
        ("人民路1号", "高密市人民路1号", "address", None, None),
    ],
)
def test_address_book_view_of_pois_and_villages(query: str, label: str, kind: str, poi_type: str | None,
                                                offset: str | None) -> None:
    book = _book()
    view = book.view(book.index.search(query)[0])
    assert (view["label"], view["kind"], view["poi_type"], view["offset"]) == (label, kind, poi_type, offset)


# ---------------------------------------------------------------- the demo city's places


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_profile(democity.generate(Path(tmp_path_factory.mktemp("city"))))


def test_demo_city_has_pois_of_every_class(city) -> None:  # type: ignore[no-untyped-def]
    pois = city.addresses[city.addresses["kind"] == "poi"]
    classes = pois["poi_type"].value_counts().to_dict()
    assert all(classes.get(c, 0) >= 3 for c in ("医院", "学校", "市场", "交通", "公园", "银行", "商场"))
    names = set(pois["name"])
    assert {"高密站", "高密汽车总站", "东关农贸市场", "柏城镇汽车站", "柏城镇农贸市场", "高密市第一实验小学"} <= names
    assert pois["addr_id"].is_unique


def test_demo_city_villages_have_groups_round_their_centre(city) -> None:  # type: ignore[no-untyped-def]
    frame = city.addresses
    villages = frame[(frame["kind"] == "village") & (frame["poi_type"] == "村庄")]
    groups = frame[(frame["kind"] == "village") & (frame["poi_type"] == "村民小组")]
    assert len(villages) >= 20 and villages["name"].is_unique
    assert all(name.endswith("村") and not name.endswith("村村") for name in villages["name"])
    for village in villages.itertuples():
        mine = groups[groups["name"].str.startswith(village.name) & groups["name"].str.endswith("组")]
        numbers = sorted(int(n[len(village.name):-1]) for n in mine["name"])
        assert numbers == list(range(1, len(numbers) + 1)) and 3 <= len(numbers) <= 8, village.name
        assert village.address.endswith(village.name) and "镇" in village.address  # the town is named
        for group in mine.itertuples():
            metres = distance_m(village.geometry.x, village.geometry.y, group.geometry.x, group.geometry.y)
            assert 140 <= metres <= 310, (group.name, metres)


def test_demo_city_aliases_find_their_poi(city) -> None:  # type: ignore[no-untyped-def]
    book = AddressBook.from_frame(city.addresses, city.roads)
    with_alias = city.addresses[city.addresses["alias"].fillna("") != ""]
    assert len(with_alias) >= 10
    for row in with_alias.itertuples():
        for alias in row.alias.split(";"):
            assert book.index.search(alias, limit=1)[0].id == row.addr_id, alias


_SPOKEN_ALPHABET = st.sampled_from(list("王家庄村杨疃汽车站实验小学人民路委会组小队第一二三十百0123456789往向东南西北米公里附近旁边门口对面"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_SPOKEN_ALPHABET, max_size=24))
def test_search_of_spoken_places_never_raises(index: AddressIndex, query: str) -> None:
    found = index.search(query, limit=5)
    assert len(found) <= 5 and len({c.id for c in found}) == len(found)
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    assert all(0.0 <= c.score <= 100.0 and math.isfinite(c.lon) and math.isfinite(c.lat) for c in found)
    assert normalize(normalize(query)) == normalize(query)
