"""Valve-isolation segments of water mains (`gis.network`): hand-built networks in metres and
in WGS84, and the demo city's network."""
from __future__ import annotations


import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon

from gis import crs as gcrs
from gis.layers import load_profile
from gis.network import SNAP_TOLERANCE_M, WaterNetwork, feeders, segment_labels

from tests.cities import write_city



def groups(labels):
    """Mains grouped by label, as sorted tuples of indexes (label numbers are arbitrary)."""
    out: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        out.setdefault(int(label), []).append(i)
    return sorted(tuple(v) for v in out.values())


# Mains in metres: 0 (0,0)->(100,0), 1 (100,0)->(200,0), 2 (100,8)->(100,100) [its start 8 m
# from the junction], 3 (300,0)->(400,0) [100 m from main 1's end: not connected].
STARTS = np.array([(0, 0), (100, 0), (100, 8), (300, 0)], float)
ENDS = np.array([(100, 0), (200, 0), (100, 100), (400, 0)], float)


@pytest.mark.parametrize(("cuts", "tolerance", "expected"), [
    ([], SNAP_TOLERANCE_M, [(0, 1, 2), (3,)]),  # no valves: the junction joins 0, 1, 2
    ([], 5.0, [(0, 1), (2,), (3,)]),  # 8 m apart is beyond a 5 m tolerance
    ([(1, 0)], SNAP_TOLERANCE_M, [(0, 2), (1,), (3,)]),  # a valve at main 1's start cuts it off
    ([(1, 0), (2, 0)], SNAP_TOLERANCE_M, [(0,), (1,), (2,), (3,)]),  # every main at the junction cut but 0
    ([(0, 1)], SNAP_TOLERANCE_M, [(0,), (1, 2), (3,)]),  # the valve on 0's end: 1 and 2 stay joined
    ([(0, 0)], SNAP_TOLERANCE_M, [(0, 1, 2), (3,)]),  # a valve at a dead end isolates nothing more
    ([], 120.0, [(0, 1, 2, 3)]),  # 100 m apart: joined by a wide tolerance
])
def test_segment_labels(cuts, tolerance, expected):
    mains, ends = segment_labels(STARTS, ENDS, cuts, tolerance)
    assert groups(mains) == expected
    assert len(ends) == 2 * len(STARTS)


def test_no_mains():
    mains, ends = segment_labels(np.zeros((0, 2)), np.zeros((0, 2)), [])
    assert len(mains) == len(ends) == 0


LON0, LAT0 = 119.75, 36.38


def at(east_m: float, north_m: float) -> tuple[float, float]:
    """A WGS84 point `east_m`, `north_m` metres from (LON0, LAT0) in the city's GK zone."""
    epsg = gcrs.gk_zone_epsg(LON0)
    x0, y0 = gcrs.to_metres(LON0, LAT0, epsg=epsg)
    return gcrs.from_metres(x0 + east_m, y0 + north_m, epsg=epsg)


def line(*points_m):
    return LineString([at(*p) for p in points_m])


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> WaterNetwork:
    """A street main A-B-C east-west with a branch D north of the B junction (drawn 10 m off it,
    as a main along a road would be), a valve at C's start and at D's start, and a main E 1 km
    away; valves given by main_id except VX (no main_id: on the nearest end)."""
    root = tmp_path_factory.mktemp("net")
    city = write_city(root, {
        "mains": [
            {"main_id": "A", "diameter_mm": 300, "g": line((0, 0), (200, 0))},
            {"main_id": "B", "diameter_mm": 300, "g": line((200, 0), (400, 0))},
            {"main_id": "C", "diameter_mm": 300, "g": line((406, 6), (600, 0))},
            {"main_id": "D", "diameter_mm": 150, "g": line((400, 10), (400, 300))},
            {"main_id": "E", "diameter_mm": 150, "g": line((0, 1000), (300, 1000))}],
        "valves": [
            {"valve_id": "V1", "main_id": "C", "g": Point(at(406, 6))},
            {"valve_id": "V2", "main_id": "D", "g": Point(at(400, 10))},
            {"valve_id": "VX", "main_id": None, "g": Point(at(300, 1001))},  # E's end
            {"valve_id": "VF", "main_id": "A", "g": Point(at(100, 0))},  # mid-main: cuts nothing
        ]})
    return WaterNetwork.from_city(city, epsg=gcrs.gk_zone_epsg(LON0))


def test_segments_of_a_hand_built_network(network):
    assert {s.segment_id: s.main_ids for s in network.segments.values()} == {
        "SEG0001": ("A", "B"), "SEG0002": ("C",), "SEG0003": ("D",), "SEG0004": ("E",)}
    # isolating A-B means closing the valves at C's and D's starts; E's valve sits on a dead end
    assert {s.segment_id: s.valve_ids for s in network.segments.values()} == {
        "SEG0001": ("V1", "V2"), "SEG0002": ("V1",), "SEG0003": ("V2",), "SEG0004": ()}
    assert network.loose_valves == 1
    assert network.segments["SEG0001"].length_m == pytest.approx(400, abs=0.5)
    assert network.segment_of_main("D") == "SEG0003" and network.segment_of_main("Z") is None


@pytest.mark.parametrize(("point_m", "segment", "main"), [
    ((100, 40), "SEG0001", "A"),
    ((300, -250), "SEG0001", "B"),  # 250 m from B
    ((500, 50), "SEG0002", "C"),
    ((420, 200), "SEG0003", "D"),
    ((150, 990), "SEG0004", "E"),
    ((100, 650), None, None),  # 350 m from E and 650 m from A: beyond 300 m
])
def test_a_point_belongs_to_the_segment_of_the_nearest_main(network, point_m, segment, main):
    hit = network.locate(*at(*point_m))
    assert (None if hit is None else (hit.segment_id, hit.main_id)) == (None if segment is None else (segment, main))
    if hit is not None:
        assert hit.valve_ids == network.segments[segment].valve_ids
        assert hit.distance_m <= 300
    lon, lat = at(*point_m)
    assert list(network.locate_many(np.array([lon]), np.array([lat]))) == [segment]


def test_a_segment_lies_in_the_dma_holding_most_of_its_length(tmp_path):
    """A-B (0-400 m east) has A's 200 m and B's 200 m midpoints in D1 (west of 350 m); C's in D2;
    D runs north out of both (no DMA); with no DMA layer, no segment has one."""
    box = lambda x0, x1: Polygon([at(x0, -100), at(x1, -100), at(x1, 100), at(x0, 100)])  # noqa: E731
    mains = [{"main_id": "A", "diameter_mm": 300, "g": line((0, 0), (200, 0))},
             {"main_id": "B", "diameter_mm": 300, "g": line((200, 0), (400, 0))},
             {"main_id": "C", "diameter_mm": 300, "g": line((406, 6), (600, 0))},
             {"main_id": "D", "diameter_mm": 150, "g": line((400, 10), (400, 300))}]
    valves = [{"valve_id": "V1", "main_id": "C", "g": Point(at(406, 6))},
              {"valve_id": "V2", "main_id": "D", "g": Point(at(400, 10))}]
    city = write_city(tmp_path, {"mains": mains, "valves": valves,
                                 "dmas": [{"dma_id": "D1", "name": "一号", "g": box(-50, 350)},
                                          {"dma_id": "D2", "name": "二号", "g": box(350, 700)}]})
    network = WaterNetwork.from_city(city, epsg=gcrs.gk_zone_epsg(LON0))
    assert {s.segment_id: s.dma_id for s in network.segments.values()} == {
        "SEG0001": "D1", "SEG0002": "D2", "SEG0003": None}
    assert (network.dma_of("SEG0002"), network.dma_of("SEG9999"), network.dma_of(None)) == ("D2", None, None)
    bare = WaterNetwork(city.mains, city.valves, epsg=gcrs.gk_zone_epsg(LON0))
    assert {s.dma_id for s in bare.segments.values()} == {None}


def test_feeders_of_transformers(tmp_path):
    city = write_city(tmp_path, {"transformers": [
        {"asset_id": "T1", "name": "一号台变", "rated_kva": 400, "feeder": "10kV东1线", "g": Point(at(0, 0))},
        {"asset_id": "T2", "name": "二号台变", "rated_kva": 400, "feeder": "", "g": Point(at(50, 0))}]})
    assert feeders(city.transformers) == {"T1": "10kV东1线"}


def test_demo_city_segments_are_sane(demo_city_profile):
    """The demo's mains (roads offset 6 m, a valve at the start of every urban main and every
    3rd rural one): every valve placed, hundreds of segments, none spanning the city."""
    city = load_profile(demo_city_profile)
    network = WaterNetwork.from_city(city, epsg=gcrs.gk_zone_epsg(119.75))
    summary = network.summary()
    assert summary["loose_valves"] == 0
    assert 200 <= summary["segments"] <= len(city.mains)
    assert summary["largest"] <= 0.1 * len(city.mains)
    assert sum(len(s.main_ids) for s in network.segments.values()) == len(city.mains)
    # the main_burst point sits on one segment with the valves that isolate it
    hit = network.locate(119.7504597, 36.3783181)
    assert hit is not None and hit.distance_m < 10 and len(hit.valve_ids) >= 2
    # ... in DMA03, whose pressure points the scenario drops; 海棠路182号, a burst caller's address,
    # lies in DMA02's polygon but is supplied by that segment: a call there groups with DMA03
    assert network.dma_of(hit.segment_id) == "DMA03"
    assert network.locate(119.7491115, 36.3785439).segment_id == hit.segment_id
    assert all(s.dma_id is not None for s in network.segments.values())
