"""Readable area names (issue #24): a water segment is named from the roads its mains lie under
(`gis.network`), a 台区 and a DMA by their layers' ``name`` (`gis.lookup.SpatialLookup.area_name`),
and the customer-facing texts (the notice, the answer) use the name, not the code."""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone

import geopandas as gpd
import pytest
from shapely.geometry import LineString, Point

from command.grouping import Incident
from command.outages import answer_text, default_area_text, notice_kind, notice_text
from command.ticket_model import Category
from gis import crs as gcrs
from gis.network import WaterNetwork, segment_name

LON0, LAT0 = 120.0, 36.0
M_LON = 111_320.0 * math.cos(math.radians(LAT0))
M_LAT = 110_574.0
T0 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
CODE = re.compile(r"(SEG|TA|DMA)\d+")


def ll(x: float, y: float) -> tuple[float, float]:
    return LON0 + x / M_LON, LAT0 + y / M_LAT


def frame(rows):
    return gpd.GeoDataFrame(rows, geometry="g", crs="EPSG:4326")


@pytest.mark.parametrize(("roads", "name"), [
    (["凤凰大街", "人民路"], "凤凰大街、人民路段供水管网"),
    (["凤凰大街", "凤凰大街", "人民路"], "凤凰大街、人民路段供水管网"),  # each road once
    (["凤凰大街", None, " ", "人民路", "凤凰大街"], "凤凰大街、人民路段供水管网"),
    (["凤凰大街", "人民路", "海棠路"], "凤凰大街、人民路等路段供水管网"),  # at most 2, then 等
    (["人民路"], "人民路段供水管网"),
    ([None], ""),
    ([], ""),
])
def test_segment_name_from_its_roads(roads, name):
    assert segment_name(roads) == name


def network(with_roads: bool = True) -> WaterNetwork:
    """Mains drawn along roads offset 6 m (as the demo's): A and B along 凤凰大街 then 人民路 (one
    segment, no valve between), C along 海棠路 behind a valve, D far from any road."""
    mains = frame([{"main_id": "A", "g": LineString([ll(0, 6), ll(500, 6)])},
                   {"main_id": "B", "g": LineString([ll(506, 6), ll(506, 800)])},
                   {"main_id": "C", "g": LineString([ll(506, 806), ll(1200, 806)])},
                   {"main_id": "D", "g": LineString([ll(0, 3000), ll(400, 3000)])}])
    valves = frame([{"valve_id": "V1", "main_id": "C", "g": Point(ll(506, 806))}])
    roads = frame([{"road_id": "R1", "name": "凤凰大街", "g": LineString([ll(0, 0), ll(500, 0)])},
                   {"road_id": "R2", "name": "人民路", "g": LineString([ll(500, 0), ll(500, 800)])},
                   {"road_id": "R3", "name": "海棠路", "g": LineString([ll(500, 800), ll(1200, 800)])}])
    return WaterNetwork(mains, valves, epsg=gcrs.gk_zone_epsg(LON0), roads=roads if with_roads else None)


def test_a_hand_built_network_names_its_segments_from_their_roads():
    net = network()
    by_mains = {s.main_ids: s for s in net.segments.values()}
    assert set(by_mains) == {("A", "B"), ("C",), ("D",)}
    assert by_mains[("A", "B")].name == "凤凰大街、人民路段供水管网"
    assert by_mains[("C",)].name == "海棠路段供水管网"
    assert by_mains[("D",)].name == ""  # 3 km from any road: no name, the code stays
    assert net.segment_name(by_mains[("C",)].segment_id) == "海棠路段供水管网"
    assert net.segment_name(by_mains[("D",)].segment_id) is None and net.segment_name("SEG9999") is None
    assert all(s.name == "" for s in network(with_roads=False).segments.values())


def incident(area: str) -> Incident:
    return Incident("INC20261207-0001", Category.WATER, area, None, "GD20261207-0001", ("GD20261207-0001",),
                    T0, T0)


def test_the_texts_use_the_name_and_fall_back_to_the_code():
    named = default_area_text(incident("SEG0013"), ["人民大街12号"], "人民大街、夷安大道段供水管网")
    assert named == "人民大街、夷安大道段供水管网（人民大街12号等）"
    assert default_area_text(incident("SEG0013"), []) == "SEG0013片区"  # no name known
    assert "人民大街、夷安大道段供水管网" in answer_text(incident("SEG0013"), None, "人民大街、夷安大道段供水管网")
    assert not CODE.search(answer_text(incident("SEG0013"), None, "人民大街、夷安大道段供水管网"))


def test_the_notice_of_a_demo_city_segment_names_roads_not_codes(demo_city_profile):
    from gis.layers import load_profile
    from gis.lookup import SpatialLookup

    lookup = SpatialLookup(load_profile(demo_city_profile))
    assert all(s.name.endswith("段供水管网") for s in lookup.water.segments.values())  # every segment has roads
    name = lookup.area_name("SEG0013")  # main_burst's burst segment
    assert name and "SEG" not in name
    text = notice_text(notice_kind(Category.WATER), default_area_text(incident("SEG0013"), ["人民大街88号"], name),
                       T0, None)
    assert name in text and not CODE.search(text), text
    assert not CODE.search(answer_text(incident("SEG0013"), None, name))
    taiqu = lookup.area_name("TA0001")
    assert taiqu and not CODE.search(taiqu) and lookup.area_name("DMA03") and lookup.area_name("NOPE") is None
