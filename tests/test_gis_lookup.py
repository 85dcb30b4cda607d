"""Spatial lookups on a hand-built city: boundaries, units per category, supply areas, nearby."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from gis import crs as gcrs
from gis.lookup import OpenTickets, SpatialLookup, UnknownCategory, open_tickets_near

from tests.cities import LOOKUP_LAYERS, write_city

# West half [119.70, 119.75] and east half [119.75, 119.80] of [36.35, 36.40]; the shared edge
# x = 119.75 and the row split y = 36.375 are exact binary fractions, so points on them are
# exactly on both polygons. Ids are chosen so that "lowest id wins" is not "first in file".
@pytest.fixture(params=["file order", "reversed"])
def lookup(request, tmp_path: Path) -> SpatialLookup:
    """The hand-built city written as GeoJSON + profile, loaded, indexed; both feature orders."""
    step = 1 if request.param == "file order" else -1
    return SpatialLookup(write_city(tmp_path, {kind: rows[::step] for kind, (_, rows) in LOOKUP_LAYERS.items()}))


# lon, lat -> district, street, grid, area_class, power unit, 台区, transformer name
LOCATE_CASES = [
    ((119.72, 36.36), ("D2", "S2", "G2", "urban", "PWR02", "TA2", "西台变")),
    ((119.78, 36.39), ("D1", "S1", "G3", "remote", "PWR01", "TA1", "东台变")),
    ((119.75, 36.36), ("D1", "S1", "G1", "urban", "PWR01", "TA1", "东台变")),    # shared edge
    ((119.72, 36.375), ("D2", "S2", "G2", "urban", "PWR02", "TA2", "西台变")),   # grid edge
    ((119.75, 36.375), ("D1", "S1", "G1", "urban", "PWR01", "TA1", "东台变")),   # four grids meet
    ((119.75, 36.40), ("D1", "S1", "G3", "remote", "PWR01", "TA1", "东台变")),   # shared corner
    ((119.70, 36.37), ("D2", "S2", "G2", "urban", "PWR02", "TA2", "西台变")),    # outer edge
    ((119.69, 36.37), (None, None, None, None, None, None, None)),             # outside
]


@pytest.mark.parametrize("point, expected", LOCATE_CASES)
def test_locate_resolves_every_level_and_boundaries_to_the_lowest_id(lookup, point, expected):
    where = lookup.locate(*point, category="power")
    assert (where.district_id, where.street_id, where.grid_id, where.area_class, where.unit_id,
            where.supply_area_id, where.transformer) == expected
    assert where.transformer_id == (None if expected[5] is None else "T" + expected[5][2:])


@pytest.mark.parametrize("point, category, unit_id, unit", [
    ((119.72, 36.36), "power", "PWR02", "西供电所"),
    ((119.78, 36.36), "power", "PWR01", "东供电所"),
    ((119.78, 36.36), "water", "WAT01", "自来水公司"),
    ((119.72, 36.36), "gas", "GAS01", "燃气公司"),
    ((119.78, 36.36), "gas", None, None),          # outside the gas company's service area
    ((119.78, 36.36), "heating", None, None),      # no heating unit in this city
    ((119.78, 36.36), None, None, None),
])
def test_point_to_responsible_unit_per_category(lookup, point, category, unit_id, unit):
    where = lookup.locate(*point, category=category)
    assert (where.unit_id, where.unit, where.category) == (unit_id, unit, category)
    if category:
        assert lookup.unit_for(*point, category) == unit_id


def test_locate_many_agrees_with_locate(lookup):
    lons = np.array([p[0] for p, _ in LOCATE_CASES])
    lats = np.array([p[1] for p, _ in LOCATE_CASES])
    many = lookup.locate_many(lons, lats, "power")
    assert len(many) == len(LOCATE_CASES)
    for i, (_, expected) in enumerate(LOCATE_CASES):
        assert (many.district_id[i], many.street_id[i], many.grid_id[i], many.area_class[i],
                many.unit_id[i], many.supply_area_id[i]) == expected[:6]
        assert many.dma_id[i] == (None if expected[0] is None else "DMA01")
    assert list(lookup.locate_many(lons[:2], lats[:2]).unit_id) == [None, None]


@pytest.mark.parametrize("category", ["power", "water", "gas", "heating", None])
def test_locate_agrees_with_locate_many_at_random_points(lookup, category):
    rng = np.random.default_rng(7)  # `locate` queries one tree of every layer, `locate_many` one tree each
    lons, lats = rng.uniform(119.68, 119.82, 400), rng.uniform(36.33, 36.42, 400)
    lons[:40], lats[:40] = np.round(lons[:40], 2), np.round(lats[:40], 3)  # on edges and corners too
    many = lookup.locate_many(lons, lats, category)
    for i in range(len(lons)):
        where = lookup.locate(lons[i], lats[i], category)
        assert (where.district_id, where.street_id, where.grid_id, where.area_class, where.unit_id,
                where.supply_area_id, where.dma_id, where.segment_id, where.feeder) == (
            many.district_id[i], many.street_id[i], many.grid_id[i], many.area_class[i], many.unit_id[i],
            many.supply_area_id[i], many.dma_id[i], many.segment_id[i], many.feeder[i])


@pytest.mark.parametrize(("point", "category", "segment", "feeder"), [
    ((119.72, 36.3605), "water", "SEG0001", "10kV西1线"),  # ~55 m from WM1
    ((119.7405, 36.38), None, "SEG0002", "10kV西1线"),  # beside WM2, behind the valve
    ((119.72, 36.3605), "power", None, "10kV西1线"),  # segments only for water (or no category)
    ((119.78, 36.37), "water", None, "10kV东1线"),  # 3.5 km from any main: none (the DMA is the fallback)
])
def test_locate_gives_the_water_segment_and_the_feeder(lookup, point, category, segment, feeder):
    where = lookup.locate(*point, category)
    assert (where.segment_id, where.feeder) == (segment, feeder)
    assert lookup.water.segments["SEG0002"].valve_ids == ("VA1",)


def test_unknown_category_is_refused(lookup):
    with pytest.raises(UnknownCategory, match="'electricity'"):
        lookup.locate(119.72, 36.36, category="electricity")


def test_nearest_stations_in_metres(lookup):
    found = lookup.nearest_stations(119.75, 36.38, k=2)
    assert [s.station_id for s in found] == ["PS2", "PS1"]
    assert found[0].distance_m == pytest.approx(0.0, abs=1e-6)
    # 0.01 degree of longitude at 36.38N: compare with the geodesic distance
    assert found[1].distance_m == pytest.approx(gcrs.distance_m(119.75, 36.38, 119.76, 36.38), abs=1.0)
    water = lookup.nearest_stations(119.75, 36.38, category="water")
    assert [s.station_id for s in water] == ["WS1"]


NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
BASE = (119.75, 36.38)
# ticket id, metres east, metres north, minutes ago
TICKETS = [("T1", 50.0, 0.0, 5), ("T2", 0.0, 150.0, 20), ("T3", -300.0, 0.0, 2), ("T4", 0.0, -120.0, 8)]


def _tickets() -> OpenTickets:
    epsg = gcrs.gk_zone_epsg(BASE[0])
    x0, y0 = gcrs.to_metres(*BASE, epsg=epsg)
    rows = []
    for ticket_id, east, north, minutes in TICKETS:
        lon, lat = gcrs.from_metres(x0 + east, y0 + north, epsg=epsg)
        rows.append((ticket_id, lon, lat, NOW - timedelta(minutes=minutes)))
    return OpenTickets.from_rows(rows)


@pytest.mark.parametrize("radius_m, minutes, expected", [
    (200.0, 10, [("T1", 50.0), ("T4", 120.0)]),
    (200.0, 30, [("T1", 50.0), ("T4", 120.0), ("T2", 150.0)]),
    (400.0, 3, [("T3", 300.0)]),
    (400.0, 30, [("T1", 50.0), ("T4", 120.0), ("T2", 150.0), ("T3", 300.0)]),
    (149.0, 30, [("T1", 50.0), ("T4", 120.0)]),
    (10.0, 30, []),
    (1000.0, 1, []),
])
def test_open_tickets_near_filters_by_metres_and_minutes(radius_m, minutes, expected):
    found = open_tickets_near(_tickets(), *BASE, radius_m=radius_m,
                              since=NOW - timedelta(minutes=minutes))
    assert [t.ticket_id for t in found] == [t for t, _ in expected]
    for ticket, (_, metres) in zip(found, expected):
        assert ticket.distance_m == pytest.approx(metres, abs=0.01)


def test_open_tickets_near_needs_aware_times():
    with pytest.raises(ValueError, match="naive"):
        open_tickets_near(_tickets(), *BASE, radius_m=100.0, since=datetime(2026, 11, 22, 8, 0))
    with pytest.raises(ValueError, match="naive"):
        OpenTickets.from_rows([("T9", 119.75, 36.38, datetime(2026, 11, 22, 8, 0))])
