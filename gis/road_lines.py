"""Road lines made ready for the road graph (`gis.routing.RoadGraph.from_lines`): each checked
(a WGS84 LineString of at least two finite coordinates, a one-way flag the graph knows), split at
the junctions it shares with other roads, and end points within a tolerance clustered into one node.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from gis import crs

__all__ = ["RoadGraphError", "cluster_points", "line_coordinates", "normalise_oneway", "split_at_junctions"]


class RoadGraphError(ValueError):
    """Roads that cannot form a graph, or a graph file that cannot be read."""


def normalise_oneway(value: bool | int, index: int) -> int:
    """A road's one-way flag as 1 (along), -1 (against) or 0 (both ways); RoadGraphError otherwise."""
    if value is True or value == 1:
        return 1
    if value is False or value == 0:
        return 0
    if value == -1:
        return -1
    raise RoadGraphError(f"road {index}: oneway must be a bool, 0, 1 or -1, got {value!r}")


def line_coordinates(lines: Sequence[shapely.LineString]) -> tuple[np.ndarray, np.ndarray]:
    """All coordinates of the lines (n, 2) and each line's offset into them (len(lines) + 1)."""
    geoms = np.asarray(lines, dtype=object)
    for index, line in enumerate(geoms):
        if not isinstance(line, shapely.LineString):
            raise RoadGraphError(f"road {index}: expected a LineString, got {type(line).__name__}")
        if line.is_empty or len(line.coords) < 2:
            raise RoadGraphError(f"road {index}: a LineString needs at least two coordinates")
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    if not np.all(np.isfinite(coords)):
        bad = int(owner[~np.all(np.isfinite(coords), axis=1)][0])
        raise RoadGraphError(f"road {bad}: coordinates are not finite")
    outside = (np.abs(coords[:, 0]) > 180.0) | (np.abs(coords[:, 1]) > 90.0)
    if np.any(outside):
        raise RoadGraphError(f"road {int(owner[outside][0])}: coordinates are not WGS84 lon/lat")
    offsets = np.zeros(len(geoms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(geoms)), out=offsets[1:])
    return coords, offsets


def cluster_points(points: np.ndarray, tolerance_m: float) -> np.ndarray:
    """Label points so that points within `tolerance_m` (transitively) share a label."""
    pairs = cKDTree(points).query_pairs(max(tolerance_m, 1e-9), output_type="ndarray")
    n = len(points)
    adjacency = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(adjacency, directed=False)[1]


def split_at_junctions(
    lines: Sequence[shapely.LineString], speed_kmh: Sequence[float], oneway: Sequence[bool | int],
    *, tolerance_m: float = 1.0,
) -> tuple[list[shapely.LineString], list[float], list[bool | int]]:
    """Split roads at interior vertices shared (within tolerance) with another road's vertex.

    Crossings without a shared vertex are bridges or tunnels and stay unsplit, as in OSM data.
    Speeds and one-way flags are copied to the pieces.
    """
    if not len(lines) == len(speed_kmh) == len(oneway):
        raise RoadGraphError("lines, speed_kmh and oneway must have the same length")
    if len(lines) == 0:
        return [], [], []
    coords, offsets = line_coordinates(lines)
    owner = np.repeat(np.arange(len(lines)), np.diff(offsets))
    xy = np.column_stack(crs.to_metres(coords[:, 0], coords[:, 1]))
    pairs = cKDTree(xy).query_pairs(max(tolerance_m, 1e-9), output_type="ndarray")
    pairs = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
    junction = np.zeros(len(coords), dtype=bool)
    junction[pairs.ravel()] = True
    out_lines: list[shapely.LineString] = []
    out_speed: list[float] = []
    out_oneway: list[bool | int] = []
    for index in range(len(lines)):
        start, stop = int(offsets[index]), int(offsets[index + 1])
        cuts = [start] + [i for i in range(start + 1, stop - 1) if junction[i]] + [stop - 1]
        for first, last in zip(cuts[:-1], cuts[1:]):
            out_lines.append(shapely.LineString(coords[first:last + 1]))
            out_speed.append(speed_kmh[index])
            out_oneway.append(oneway[index])
    return out_lines, out_speed, out_oneway
