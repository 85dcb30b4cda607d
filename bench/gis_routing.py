"""Road routing benchmark: one ticket to 500 crews on a synthetic grid city near 119.75E 36.38N.

The grid is 60 x 60 junctions with ~150 m blocks (about 1,060 km of road): every 10th street an
arterial at 60 km/h, every 5th a collector at 40 km/h, the rest local streets at 30 km/h, and
every 4th remaining local street one-way (alternating direction). Crews are at fresh random
positions for every ticket, so snapping them is part of the timed call.
"""
from __future__ import annotations

import time

import numpy as np
import shapely

from bench.common import emit, percentile, progress
from gis import crs
from gis.routing import RoadGraph

CENTRE = (119.75, 36.38)
GRID = 60
BLOCK_M = 150.0
CREWS = 500
TICKETS = 200
SEED = 4


def grid_roads(rng: np.random.Generator) -> tuple[list[shapely.LineString], list[float], list[int]]:
    """A jittered grid city split at junctions, with road classes and one-way streets."""
    epsg = crs.gk_zone_epsg(CENTRE[0])
    cx, cy = crs.to_metres(*CENTRE, epsg=epsg)
    half = (GRID - 1) * BLOCK_M / 2.0
    jitter = rng.uniform(-15.0, 15.0, size=(GRID, GRID, 2))
    xs = cx - half + np.arange(GRID) * BLOCK_M
    ys = cy - half + np.arange(GRID) * BLOCK_M
    mx = xs[:, None] + jitter[:, :, 0]
    my = ys[None, :] + jitter[:, :, 1]
    lon, lat = crs.from_metres(mx, my, epsg=epsg)
    lines, speeds, oneway = [], [], []

    def street(index: int) -> tuple[float, int]:
        """Speed and one-way flag of the index-th street in each direction."""
        if index % 10 == 0:
            return 60.0, 0
        if index % 5 == 0:
            return 40.0, 0
        if index % 4 == 1:
            return 30.0, 1 if (index // 4) % 2 == 0 else -1
        return 30.0, 0

    for i in range(GRID):
        speed, flag = street(i)
        for j in range(GRID - 1):
            lines.append(shapely.LineString([(lon[i, j], lat[i, j]),
                                             (lon[i, j + 1], lat[i, j + 1])]))
            speeds.append(speed)
            oneway.append(flag)
            lines.append(shapely.LineString([(lon[j, i], lat[j, i]),
                                             (lon[j + 1, i], lat[j + 1, i])]))
            speeds.append(speed)
            oneway.append(flag)
    return lines, speeds, oneway


def random_points(rng: np.random.Generator, bounds: tuple[float, ...], count: int) -> np.ndarray:
    """Uniform random lon/lat points inside bounds (min_lon, min_lat, max_lon, max_lat)."""
    return np.column_stack([rng.uniform(bounds[0], bounds[2], count),
                            rng.uniform(bounds[1], bounds[3], count)])


def main() -> None:
    """Build the grid graph, then time one_to_many for random tickets."""
    rng = np.random.default_rng(SEED)
    lines, speeds, oneway = grid_roads(rng)
    started = time.perf_counter()
    graph = RoadGraph.from_lines(lines, speeds, oneway)
    build_s = time.perf_counter() - started
    km = float(graph.edge_length.sum()) / 1000.0
    progress(f"graph: {graph.node_count} nodes, {graph.edge_count} edges, {km:.0f} km")
    bounds = shapely.MultiLineString(lines).bounds
    graph.one_to_many(tuple(random_points(rng, bounds, 1)[0]), random_points(rng, bounds, CREWS))
    timings = []
    reached = 0
    for _ in range(TICKETS):
        ticket = tuple(random_points(rng, bounds, 1)[0])
        crews = random_points(rng, bounds, CREWS)
        started = time.perf_counter()
        routes = graph.one_to_many(ticket, crews)
        timings.append((time.perf_counter() - started) * 1000.0)
        reached += sum(route is not None for route in routes)
    progress(f"{reached} of {TICKETS * CREWS} crew routes reachable")
    emit("gis_route_build_s", build_s, "s")
    emit("gis_route_one_to_many_ms_p50", percentile(timings, 50), "ms")
    emit("gis_route_one_to_many_ms_p99", percentile(timings, 99), "ms")


if __name__ == "__main__":
    main()
