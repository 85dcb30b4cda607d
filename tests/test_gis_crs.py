"""Coordinate systems: EPSG control values, Gauss-Krüger zones, GCJ-02/BD-09 both ways, metres."""
from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from pyproj import CRS

from gis import crs

# Public reference values: Tiananmen (WGS84 -> GCJ-02, as published for AMap), and the examples
# in the README of the widely used wandergis/coordtransform library (MIT) for (116.404, 39.915).
TIANANMEN_WGS84 = (116.391349, 39.907375)
TIANANMEN_GCJ02 = (116.397590, 39.908776)
REFERENCE_POINT = (116.404, 39.915)
REFERENCE_WGS84_TO_GCJ02 = (116.41024449916938, 39.91640428150164)
REFERENCE_GCJ02_TO_BD09 = (116.41036949371029, 39.92133699351021)

OUTSIDE_CHINA = {
    "tokyo": (139.6917, 35.6895),
    "london": (-0.1276, 51.5072),
    "sydney": (151.2093, -33.8688),
}

CHINA_GRID = [(float(lon), float(lat))
              for lon in np.arange(75.0, 135.0, 6.5) for lat in np.arange(18.5, 53.5, 5.0)]

SCALAR_PAIRS = [
    (crs.wgs84_to_gcj02, crs.wgs84_to_gcj02_array),
    (crs.gcj02_to_wgs84, crs.gcj02_to_wgs84_array),
    (crs.gcj02_to_bd09, crs.gcj02_to_bd09_array),
    (crs.bd09_to_gcj02, crs.bd09_to_gcj02_array),
    (crs.wgs84_to_bd09, crs.wgs84_to_bd09_array),
    (crs.bd09_to_wgs84, crs.bd09_to_wgs84_array),
]
ROUND_TRIPS = [
    (crs.wgs84_to_gcj02, crs.gcj02_to_wgs84),
    (crs.gcj02_to_bd09, crs.bd09_to_gcj02),
    (crs.wgs84_to_bd09, crs.bd09_to_wgs84),
]
VECTOR_ROUND_TRIPS = [
    (crs.wgs84_to_gcj02_array, crs.gcj02_to_wgs84_array),
    (crs.gcj02_to_bd09_array, crs.bd09_to_gcj02_array),
    (crs.wgs84_to_bd09_array, crs.bd09_to_wgs84_array),
]


@pytest.mark.parametrize(("src", "dst", "expected"), [
    (4490, 4547, (500000.0, 3320113.40)),
    (4490, 4526, (38500000.0, 3320113.40)),  # zone 38 with the zone number prefixed to x
    ("cgcs2000", "EPSG:4547", (500000.0, 3320113.40)),
    ("wgs84", 4547, (500000.0, 3320113.40)),  # WGS84 ~ CGCS2000: PROJ's ballpark datum step
])
def test_gauss_kruger_control_value(src, dst, expected):
    x, y = crs.transform([114.0], [30.0], src, dst)
    assert x[0] == pytest.approx(expected[0], abs=0.01)
    assert y[0] == pytest.approx(expected[1], abs=0.01)


@pytest.mark.parametrize(("lon", "zone", "epsg", "prefixed"), [
    (73.5, 25, 4534, 4513),
    (75.0, 25, 4534, 4513),
    (114.0, 38, 4547, 4526),
    (115.49, 38, 4547, 4526),
    (115.5, 39, 4548, 4527),  # a zone boundary belongs to the eastern zone
    (119.75, 40, 4549, 4528),
    (121.47, 40, 4549, 4528),
    (135.0, 45, 4554, 4533),
])
def test_gk_zone_table(lon, zone, epsg, prefixed):
    assert crs.gk_zone(lon) == zone
    assert crs.gk_zone_epsg(lon) == epsg
    assert crs.gk_zone_epsg(lon, prefix=True) == prefixed
    assert f"CM {3 * zone}E" in CRS.from_epsg(epsg).name
    assert f"zone {zone}" in CRS.from_epsg(prefixed).name


@pytest.mark.parametrize("lon", [70.0, 137.0, -0.12, float("nan")])
def test_gk_zone_outside_china_is_refused(lon):
    with pytest.raises(crs.CRSError):
        crs.gk_zone_epsg(lon)


@pytest.mark.parametrize("bad", ["utm", "epsg:", True, 4326.0])
def test_unknown_crs_is_refused(bad):
    with pytest.raises(crs.CRSError, match="unknown coordinate system"):
        crs.transform([0.0], [0.0], bad, 4326)


def test_web_mercator():
    x, y = crs.transform([180.0, 0.0], [0.0, 0.0], "wgs84", "webmercator")
    assert x == pytest.approx([20037508.342789244, 0.0], abs=1e-6)
    assert y == pytest.approx([0.0, 0.0], abs=1e-6)
    lon, lat = crs.transform(x, y, 3857, "wgs84")
    assert lon == pytest.approx([180.0, 0.0], abs=1e-9)


@pytest.mark.parametrize(("func", "point", "expected", "tolerance"), [
    (crs.wgs84_to_gcj02, TIANANMEN_WGS84, TIANANMEN_GCJ02, 1e-5),
    (crs.gcj02_to_wgs84, TIANANMEN_GCJ02, TIANANMEN_WGS84, 1e-5),
    (crs.wgs84_to_gcj02, REFERENCE_POINT, REFERENCE_WGS84_TO_GCJ02, 1e-9),
    (crs.gcj02_to_bd09, REFERENCE_POINT, REFERENCE_GCJ02_TO_BD09, 1e-9),
    (crs.bd09_to_gcj02, REFERENCE_GCJ02_TO_BD09, REFERENCE_POINT, 1e-9),
    (crs.gcj02_to_wgs84, REFERENCE_WGS84_TO_GCJ02, REFERENCE_POINT, 1e-9),
])
def test_gcj02_bd09_known_values(func, point, expected, tolerance):
    lon, lat = func(*point)
    assert lon == pytest.approx(expected[0], abs=tolerance)
    assert lat == pytest.approx(expected[1], abs=tolerance)


@pytest.mark.parametrize(("forward", "inverse"), ROUND_TRIPS)
@pytest.mark.parametrize("point", CHINA_GRID)
def test_round_trip_across_china_under_half_a_metre(forward, inverse, point):
    shifted = forward(*point)
    assert crs.distance_m(*point, *shifted) > 50.0  # the shift is real: hundreds of metres
    back = inverse(*shifted)
    assert crs.distance_m(*point, *back) < 0.5
    assert crs.distance_m(*point, *back) < 1e-3  # iterated far beyond the requirement


@pytest.mark.parametrize(("forward", "inverse"), VECTOR_ROUND_TRIPS)
def test_vectorised_round_trip_across_china(forward, inverse):
    lon, lat = np.array(CHINA_GRID).T
    back = inverse(*forward(lon, lat))
    assert np.max(crs.distance_m(lon, lat, *back)) < 0.5


@pytest.mark.parametrize(("scalar", "vector"), SCALAR_PAIRS)
@pytest.mark.parametrize("place", sorted(OUTSIDE_CHINA))
def test_no_shift_outside_china(scalar, vector, place):
    lon, lat = OUTSIDE_CHINA[place]
    assert scalar(lon, lat) == (lon, lat)
    out_lon, out_lat = vector(np.array([lon]), np.array([lat]))
    assert (out_lon[0], out_lat[0]) == (lon, lat)


@pytest.mark.parametrize(("scalar", "vector"), SCALAR_PAIRS)
def test_vectorised_equals_scalar(scalar, vector):
    rng = np.random.default_rng(7)
    lon = np.r_[rng.uniform(74.0, 134.0, 200), [139.6917, -0.1276]]
    lat = np.r_[rng.uniform(19.0, 53.0, 200), [35.6895, 51.5072]]
    out_lon, out_lat = vector(lon, lat)
    expected = np.array([scalar(x, y) for x, y in zip(lon, lat)])
    assert np.max(np.abs(out_lon - expected[:, 0])) < 1e-9
    assert np.max(np.abs(out_lat - expected[:, 1])) < 1e-9


@pytest.mark.parametrize(("src", "dst", "reference"), [
    ("wgs84", "gcj02", lambda x, y: crs.wgs84_to_gcj02_array(x, y)),
    ("gcj02", "bd09", lambda x, y: crs.gcj02_to_bd09_array(x, y)),
    ("bd09", "gcj02", lambda x, y: crs.bd09_to_gcj02_array(x, y)),
    ("bd09", 4326, lambda x, y: crs.bd09_to_wgs84_array(x, y)),
    ("gcj02", 4549, lambda x, y: crs.to_metres(*crs.gcj02_to_wgs84_array(x, y), epsg=4549)),
    (4549, "bd09", lambda x, y: crs.wgs84_to_bd09_array(*crs.from_metres(x, y, epsg=4549))),
])
def test_transform_routes_through_wgs84(src, dst, reference):
    if src == 4549:
        xs, ys = crs.to_metres(np.array([119.70, 119.75, 119.80]), np.array([36.3, 36.38, 36.4]))
    else:
        xs, ys = np.array([119.70, 119.75, 119.80]), np.array([36.3, 36.38, 36.4])
    got = crs.transform(xs, ys, src, dst)
    want = reference(xs, ys)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-9)


def test_to_metres_picks_zone_from_mean_longitude_and_round_trips():
    lon, lat = np.array([119.7, 119.8]), np.array([36.3, 36.4])
    x, y = crs.to_metres(lon, lat)
    ex, ey = crs.transform(lon, lat, 4326, 4549)
    np.testing.assert_allclose(x, ex, atol=1e-9)
    np.testing.assert_allclose(y, ey, atol=1e-9)
    back = crs.from_metres(x, y, epsg=4549)
    np.testing.assert_allclose(back[0], lon, atol=1e-10)
    np.testing.assert_allclose(back[1], lat, atol=1e-10)
    sx, sy = crs.to_metres(119.7, 36.3)
    assert isinstance(sx, float) and (sx, sy) == pytest.approx((x[0], y[0]), abs=1e-9)
    forced_x, _ = crs.to_metres(117.0, 36.3, epsg=4549)
    assert forced_x == pytest.approx(crs.transform([117.0], [36.3], 4326, 4549)[0][0], abs=1e-9)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((0.0, 0.0), (1.0, 0.0), 111319.49079327357),  # one degree along the equator (WGS84 a)
    ((119.75, 36.38), (119.75, 36.38), 0.0),
])
def test_distance_known_values(a, b, expected):
    assert crs.distance_m(*a, *b) == pytest.approx(expected, abs=1e-6)


def test_distance_agrees_with_gauss_kruger_plane():
    lon = np.array([119.70, 119.75, 119.80, 118.6])
    lat = np.array([36.30, 36.38, 36.45, 36.2])
    geodesic = crs.distance_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
    x, y = crs.to_metres(lon, lat, epsg=4549)
    planar = np.hypot(np.diff(x), np.diff(y))
    np.testing.assert_allclose(geodesic, planar, rtol=3e-4)
    assert isinstance(crs.distance_m(119.7, 36.3, 119.8, 36.4), float)


def test_buffer_in_metres():
    centre = shapely.Point(119.75, 36.38)
    zone = crs.gk_zone_epsg(119.75)
    cx, cy = crs.to_metres(119.75, 36.38)
    ring = crs.buffer_m(centre, 100.0)
    metric = shapely.transform(
        ring, lambda c: np.column_stack(crs.to_metres(c[:, 0], c[:, 1], epsg=zone)))
    assert metric.area == pytest.approx(math.pi * 100.0**2, rel=0.01)
    for offset, inside in [(99.0, True), (101.0, False)]:
        for dx, dy in [(offset, 0.0), (0.0, -offset), (-offset * 0.7071, offset * 0.7071)]:
            point = shapely.Point(crs.from_metres(cx + dx, cy + dy, epsg=zone))
            assert ring.contains(point) is inside
