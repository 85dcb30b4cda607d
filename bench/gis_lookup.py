"""Benchmark: point → district + responsible unit + supply area on the demo city.

Figures:
- gis_point_to_unit_per_s: vectorised `SpatialLookup.locate_many` over 200,000 random points in
  the city (all levels, the power unit, the transformer 台区 and the DMA); target ≥ 50,000/s.
- gis_point_to_unit_single_us: mean time of one `SpatialLookup.locate` call.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

from bench.common import emit, progress
from simulators.democity import generate
from gis.layers import load_profile
from gis.lookup import SpatialLookup

POINTS = 200_000
SINGLE_CALLS = 5_000
CATEGORY = "power"


def _random_points(city_area: shapely.Geometry, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random points inside the city polygon."""
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = city_area.bounds
    lons, lats = np.empty(0), np.empty(0)
    while len(lons) < count:
        x, y = rng.uniform(minx, maxx, count), rng.uniform(miny, maxy, count)
        inside = shapely.contains_xy(city_area, x, y)
        lons, lats = np.concatenate([lons, x[inside]]), np.concatenate([lats, y[inside]])
    return lons[:count], lats[:count]


def main() -> None:
    """Generate the demo city in a temporary folder, index it, and time the lookups."""
    with tempfile.TemporaryDirectory() as folder:
        progress("generating the demo city")
        profile = generate(Path(folder), progress=lambda message: None)
        city = load_profile(profile)
    lookup = SpatialLookup(city)
    city_area = shapely.union_all(city.districts.geometry.values)
    lons, lats = _random_points(city_area, POINTS, seed=1)
    lookup.locate_many(lons[:1000], lats[:1000], CATEGORY)  # warm up
    progress(f"locate_many over {POINTS} points")
    started = time.perf_counter()
    found = lookup.locate_many(lons, lats, CATEGORY)
    elapsed = time.perf_counter() - started
    assert all(v is not None for v in found.unit_id[:1000])
    emit("gis_point_to_unit_per_s", POINTS / elapsed, "points/s")
    progress(f"locate, {SINGLE_CALLS} single calls")
    started = time.perf_counter()
    for lon, lat in zip(lons[:SINGLE_CALLS].tolist(), lats[:SINGLE_CALLS].tolist()):
        lookup.locate(lon, lat, CATEGORY)
    elapsed = time.perf_counter() - started
    emit("gis_point_to_unit_single_us", elapsed / SINGLE_CALLS * 1e6, "us")


if __name__ == "__main__":
    main()
