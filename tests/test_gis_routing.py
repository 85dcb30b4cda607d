"""Road routing on small hand-built graphs near 119.75E 36.38N with known answers.

The square graph, in metres east/north of the origin O (speeds: 10 m/s = 36 km/h):

    D(0,300) ----- 20 m/s both ways ------ C(400,300)
      |  one-way D->A, 5 m/s          /      |
      |                 one-way A->C, 10 m/s  10 m/s both ways
      |                      /               |
    A(0,0) -------- 10 m/s both ways ----- B(400,0)

plus an isolated road from I(1000,0) to J(1100,0). Expected answers are computed from the same
metre function (`gis.crs.to_metres`) the graph uses.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from gis import crs
from gis.road_lines import RoadGraphError, split_at_junctions
from gis.routing import DEFAULT_ACCESS_SPEED_KMH, RoadGraph

ORIGIN = (119.75, 36.38)
EPSG = crs.gk_zone_epsg(ORIGIN[0])
OX, OY = crs.to_metres(*ORIGIN, epsg=EPSG)
ACCESS_MPS = DEFAULT_ACCESS_SPEED_KMH / 3.6

NODES = {"A": (0, 0), "B": (400, 0), "C": (400, 300), "D": (0, 300), "I": (1000, 0), "J": (1100, 0)}
ROADS = [  # from, to, km/h, oneway
    ("A", "B", 36.0, False),
    ("B", "C", 36.0, False),
    ("C", "D", 72.0, False),
    ("D", "A", 18.0, True),
    ("A", "C", 36.0, True),
    ("I", "J", 36.0, False),
]
SPEED_MPS = {frozenset((a, b)): kmh / 3.6 for a, b, kmh, _ in ROADS}


def lonlat(x: float, y: float) -> tuple[float, float]:
    """WGS84 of a point x metres east and y metres north of ORIGIN."""
    return crs.from_metres(OX + x, OY + y, epsg=EPSG)


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Planar metres between two WGS84 points, through the same metre function as the graph."""
    ax, ay = crs.to_metres(*a, epsg=EPSG)
    bx, by = crs.to_metres(*b, epsg=EPSG)
    return math.hypot(bx - ax, by - ay)


def node(name: str) -> tuple[float, float]:
    """WGS84 of a named node."""
    return lonlat(*NODES[name])


def leg(a: str, b: str) -> float:
    """Seconds to drive the road between two named nodes."""
    return metres(node(a), node(b)) / SPEED_MPS[frozenset((a, b))]


def path_seconds(*names: str) -> float:
    """Seconds along consecutive named nodes."""
    return sum(leg(a, b) for a, b in zip(names[:-1], names[1:]))


@pytest.fixture(scope="module")
def square() -> RoadGraph:
    """The square graph of the module docstring."""
    lines = [shapely.LineString([node(a), node(b)]) for a, b, _, _ in ROADS]
    return RoadGraph.from_lines(lines, [r[2] for r in ROADS], [r[3] for r in ROADS])


def route_length(geometry: list[tuple[float, float]]) -> float:
    """Planar metres along a WGS84 polyline."""
    return sum(metres(a, b) for a, b in zip(geometry[:-1], geometry[1:]))


@pytest.mark.parametrize(("origin", "target", "path"), [
    ("A", "C", ("A", "C")),  # the one-way diagonal
    ("C", "A", ("C", "B", "A")),  # the diagonal is closed this way
    ("D", "A", ("D", "A")),  # one-way D->A allowed
    ("A", "D", ("A", "C", "D")),  # one-way D->A forces a detour
    ("B", "D", ("B", "C", "D")),
    ("A", "A", ("A",)),
])
def test_node_to_node_seconds(square, origin, target, path):
    route = square.travel_time(node(origin), node(target))
    assert route is not None
    assert route.seconds == pytest.approx(path_seconds(*path), abs=1e-6)
    expected_m = sum(metres(node(a), node(b)) for a, b in zip(path[:-1], path[1:]))
    assert route.metres == pytest.approx(expected_m, abs=1e-6)


def test_one_way_detour_is_asymmetric(square):
    there = square.travel_time(node("D"), node("A"))
    back = square.travel_time(node("A"), node("D"))
    assert there.seconds == pytest.approx(60.0, abs=1e-3)
    assert back.seconds == pytest.approx(70.0, abs=1e-3)


@pytest.mark.parametrize(("origin_xy", "target_xy", "expected"), [
    # 30 m south of A-B: snaps to (200, 0), drives 200 m east to B, then B->C.
    ((200, -30), (400, 300), lambda: 30 / ACCESS_MPS + 200 / 10 + path_seconds("B", "C")),
    # target 20 m east of B-C: snaps to (400, 150), A->B then half of B->C.
    ((0, 0), (420, 150), lambda: path_seconds("A", "B") + 150 / 10 + 20 / ACCESS_MPS),
    # both on A-B: straight along the shared edge.
    ((100, 5), (300, -5), lambda: 200 / 10 + 10 / ACCESS_MPS),
    # both on one-way D->A, along its direction.
    ((-4, 200), (0, 100), lambda: 100 / 5 + 4 / ACCESS_MPS),
    # both on one-way D->A, against it: out at A, round by C and D, back down D->A.
    ((0, 100), (-4, 200), lambda: 100 / 5 + path_seconds("A", "C", "D") + 100 / 5 + 4 / ACCESS_MPS),
])
def test_snapped_points_add_access_and_partial_edges(square, origin_xy, target_xy, expected):
    route = square.travel_time(lonlat(*origin_xy), lonlat(*target_xy))
    assert route.seconds == pytest.approx(expected(), abs=1e-6)
    assert route.geometry[0] == lonlat(*origin_xy)
    assert route.geometry[-1] == lonlat(*target_xy)
    assert route_length(route.geometry) == pytest.approx(route.metres, abs=1e-3)


def test_unreachable_is_none_and_inf(square):
    assert square.travel_time(node("A"), node("J")) is None
    assert square.one_to_many(node("J"), [node("A"), node("I")])[0] is None
    seconds = square.many_to_many([node("A"), node("I")], [node("C"), node("J")])
    assert seconds.shape == (2, 2)
    assert np.isinf(seconds[0, 1]) and np.isinf(seconds[1, 0])
    assert seconds[0, 0] == pytest.approx(path_seconds("A", "C"), abs=1e-6)
    assert seconds[1, 1] == pytest.approx(path_seconds("I", "J"), abs=1e-6)


ORIGINS = [(200, -30), (0, 0), (400, 300), (-4, 200), (0, 100), (380, 150), (130, 280), (1050, 3)]


@pytest.mark.parametrize("target_xy", [(400, 300), (0, 0), (-4, 200), (420, 150), (200, 10)])
def test_one_to_many_equals_repeated_travel_time(square, target_xy):
    target = lonlat(*target_xy)
    origins = [lonlat(*xy) for xy in ORIGINS]
    fast = square.one_to_many(target, origins)
    full = square.one_to_many(target, origins, with_geometry=True)
    for origin, quick, route in zip(origins, fast, full):
        single = square.travel_time(origin, target)
        if single is None:
            assert quick is None and route is None
            continue
        assert quick.geometry is None
        assert quick.seconds == pytest.approx(single.seconds, abs=1e-6)
        assert quick.metres == pytest.approx(single.metres, abs=1e-6)
        assert route.seconds == quick.seconds and route.metres == quick.metres
        assert route.geometry[0] == origin and route.geometry[-1] == target
        assert route_length(route.geometry) == pytest.approx(single.metres, abs=1e-3)
    matrix = square.many_to_many(origins, [target])
    np.testing.assert_allclose(
        matrix[:, 0], [np.inf if r is None else r.seconds for r in fast], atol=1e-9)


def test_max_seconds_drops_far_origins(square):
    routes = square.one_to_many(node("C"), [node("B"), node("D"), node("A")], max_seconds=40.0)
    assert routes[0].seconds == pytest.approx(path_seconds("B", "C"), abs=1e-6)
    assert routes[1].seconds == pytest.approx(path_seconds("D", "C"), abs=1e-6)
    assert routes[2] is None  # 50 s away


@pytest.mark.parametrize(("tolerance", "connected"), [(1.0, True), (0.1, False)])
def test_endpoints_within_tolerance_become_one_node(tolerance, connected):
    x_end, gap_end, z_end = lonlat(0, 0), lonlat(100, 0), lonlat(200, 0)
    almost = lonlat(100.5, 0.3)  # 0.58 m from the first road's end
    lines = [shapely.LineString([x_end, gap_end]), shapely.LineString([almost, z_end])]
    graph = RoadGraph.from_lines(lines, [36.0, 36.0], [False, False], snap_tolerance_m=tolerance)
    assert graph.node_count == (3 if connected else 4)
    route = graph.travel_time(x_end, z_end)
    if not connected:
        assert route is None
        return
    joint = lonlat(100.25, 0.15)  # the merged node sits at the mean of the two endpoints
    expected = (metres(x_end, joint) + metres(joint, z_end)) / 10.0
    assert route.seconds == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("oneway", "forward_ok", "backward_ok"), [
    (True, True, False), (1, True, False), (-1, False, True), (0, True, True), (False, True, True),
])
def test_oneway_flags(oneway, forward_ok, backward_ok):
    start, end = lonlat(0, 0), lonlat(300, 0)
    graph = RoadGraph.from_lines([shapely.LineString([start, end])], [36.0], [oneway])
    assert (graph.travel_time(start, end) is not None) is forward_ok
    assert (graph.travel_time(end, start) is not None) is backward_ok


def test_parallel_roads_use_the_faster(square):
    slow = shapely.LineString([lonlat(0, 0), lonlat(200, -100), lonlat(400, 0)])
    fast = shapely.LineString([lonlat(0, 0), lonlat(400, 0)])
    graph = RoadGraph.from_lines([slow, fast], [90.0, 30.0], [False, False])
    route = graph.travel_time(lonlat(0, 0), lonlat(400, 0))
    detour = metres(lonlat(0, 0), lonlat(200, -100)) * 2 / 25.0
    assert route.seconds == pytest.approx(min(detour, 400 / (30 / 3.6)), abs=1e-6)
    assert lonlat(200, -100) in route.geometry


def test_save_and_load_give_the_same_answers(square, tmp_path):
    path = tmp_path / "roads.npz"
    square.save(path)
    loaded = RoadGraph.load(path)
    assert (loaded.node_count, loaded.edge_count, loaded.epsg) == (
        square.node_count, square.edge_count, square.epsg)
    origins = [lonlat(*xy) for xy in ORIGINS]
    np.testing.assert_array_equal(
        loaded.many_to_many(origins, [node("C"), node("A")]),
        square.many_to_many(origins, [node("C"), node("A")]))


def test_load_refuses_foreign_file(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, something=np.arange(3))
    with pytest.raises(RoadGraphError, match="format"):
        RoadGraph.load(path)
    (tmp_path / "text.npz").write_text("not a graph")
    with pytest.raises(RoadGraphError, match="not a road graph"):
        RoadGraph.load(tmp_path / "text.npz")


@pytest.mark.parametrize(("lines", "speeds", "oneway", "message"), [
    ([shapely.LineString([(119.75, 36.38), (119.76, 36.38)])], [36.0, 40.0], [0], "same length"),
    ([], [], [], "no roads"),
    ([shapely.LineString([(119.75, 36.38), (119.76, 36.38)])], [0.0], [0], "must be positive"),
    ([shapely.LineString([(119.75, 36.38), (119.76, 36.38)])], [36.0], [2], "oneway"),
    ([shapely.Point(119.75, 36.38)], [36.0], [0], "expected a LineString"),
    ([shapely.LineString([(119.75, 36.38), (119.75, 36.38)])], [36.0], [0], "zero length"),
    ([shapely.LineString([(419.75, 36.38), (419.76, 36.38)])], [36.0], [0], "not WGS84"),
])
def test_bad_roads_are_refused(lines, speeds, oneway, message):
    with pytest.raises(RoadGraphError, match=message):
        RoadGraph.from_lines(lines, speeds, oneway)


def test_split_at_junctions_splits_shared_vertices_only():
    through = shapely.LineString([lonlat(0, 0), lonlat(100, 0), lonlat(200, 0)])
    side = shapely.LineString([lonlat(100, 0), lonlat(100, 100)])
    bridge = shapely.LineString([lonlat(150, -50), lonlat(150, 50)])  # crosses without a vertex
    lines, speeds, oneway = split_at_junctions([through, side, bridge], [50, 30, 40], [0, 1, 0])
    assert len(lines) == 4
    assert speeds == [50, 50, 30, 40] and oneway == [0, 0, 1, 0]
    assert lines[0].coords[-1] == lonlat(100, 0) and lines[1].coords[0] == lonlat(100, 0)
    graph = RoadGraph.from_lines(lines, speeds, oneway)
    route = graph.travel_time(lonlat(0, 0), lonlat(100, 100))
    assert route.seconds == pytest.approx(100 / (50 / 3.6) + 100 / (30 / 3.6), abs=1e-6)
