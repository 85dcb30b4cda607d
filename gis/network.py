"""Network topology (pure): the valve-isolation segments of the water mains, and the feeder of
each transformer.

Water. A main is a line whose two ends are its nodes. The ends of mains are snapped together
when they lie within `SNAP_TOLERANCE_M` (15 m) of each other (transitively: a chain of ends each
within 15 m of the next is one node): mains drawn along roads, as the demo city's are (a road's
line offset 6 m to one side), do not meet exactly, their ends at one junction lie up to ~12 m
apart. Only ends are snapped; a main that passes a junction without ending there does not
connect to it. A valve at a main's end cuts the main from that node (a valve is put on the end
of its ``main_id`` nearer to it, or without a ``main_id`` on the nearest main end; a valve
farther than the tolerance from every end it could sit on cuts nothing and is counted in
`WaterNetwork.loose_valves`). A segment is a connected component of the graph of mains and
nodes without the cut links (`scipy.sparse.csgraph.connected_components`): the mains that stay
connected when every valve is closed. The valves that isolate a segment (the ones a crew closes)
are the valves on the links between the segment and the rest (a valve on a dead end isolates
nothing and is not listed).

Segment ids are ``SEG0001``… numbered in the order of each segment's lowest main id (as text),
so the same layers always give the same ids.

A point belongs to the segment of the nearest main within `MAX_DISTANCE_M` (300 m; equally near
mains: the lowest main id); beyond it to none (the caller falls back to the DMA).

Names. Customers read a segment by the roads its mains lie under, not by its code: each main's
road is the road nearest its midpoint (within `ROAD_NAME_M`, 50 m; the demo's mains are road lines
offset 6 m), and a segment is named from its mains' roads in main order, each once, at most
`NAME_ROADS` (2) then 等: "凤凰大街、人民路段供水管网", "凤凰大街、人民路等路段供水管网" (`segment_name`).
A segment with no named road near has no name ("").
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from gis import crs as gcrs

__all__ = ["SNAP_TOLERANCE_M", "MAX_DISTANCE_M", "Segment", "SegmentHit", "WaterNetwork", "segment_labels",
           "feeders", "segment_name"]

SNAP_TOLERANCE_M = 15.0
MAX_DISTANCE_M = 300.0
ROAD_NAME_M = 50.0  # a main's road: the nearest road to its midpoint within this distance
NAME_ROADS = 2  # road names in a segment's name before 等


@dataclass(frozen=True)
class Segment:
    """A valve-isolation segment: its mains, the valves that isolate it, its length, and the DMA
    it lies in (`dma_id`: the district metered area holding most of its length, by its mains'
    midpoints; None without DMAs)."""

    segment_id: str
    main_ids: tuple[str, ...]
    valve_ids: tuple[str, ...]
    length_m: float
    name: str = ""  # readable, from its roads (`segment_name`): "凤凰大街、人民路段供水管网"
    dma_id: str | None = None


@dataclass(frozen=True)
class SegmentHit:
    """The segment serving a point: the nearest main, its distance and the valves to close."""

    segment_id: str
    main_id: str
    distance_m: float
    valve_ids: tuple[str, ...]


def segment_labels(starts: np.ndarray, ends: np.ndarray, cuts: Sequence[tuple[int, int]],
                   tolerance_m: float = SNAP_TOLERANCE_M) -> tuple[np.ndarray, np.ndarray]:
    """(component of each main, component of each end point) for mains from `starts[i]` to
    `ends[i]` (metres, shape (n, 2)); `cuts`: (main index, 0 for its start or 1 for its end) where
    a valve cuts the main from its node. End point k is main k's start (k < n) or main k - n's end;
    components number mains first, a node with no uncut main gets a component of its own."""
    n = len(starts)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    points = np.vstack([np.asarray(starts, float), np.asarray(ends, float)])
    pairs = cKDTree(points).query_pairs(tolerance_m, output_type="ndarray")
    ones = np.ones(len(pairs))
    snapped = coo_matrix((ones, (pairs[:, 0], pairs[:, 1])), shape=(2 * n, 2 * n))
    _, node_of = connected_components(snapped, directed=False)
    cut = {(int(m), int(e)) for m, e in cuts}
    keep = [k for k in range(2 * n) if (k % n, k // n) not in cut]
    rows = np.array([k % n for k in keep], dtype=np.int64)
    cols = n + node_of[keep]
    size = n + int(node_of.max()) + 1
    graph = coo_matrix((np.ones(len(keep)), (rows, cols)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    return labels[:n], labels[n + node_of]


def segment_name(roads: Sequence[str | None]) -> str:
    """A segment's readable name from its mains' road names (in main order): each name once, at
    most `NAME_ROADS` then 等; "" without any."""
    names = list(dict.fromkeys(r.strip() for r in roads if r and r.strip()))
    if not names:
        return ""
    more = "等路" if len(names) > NAME_ROADS else ""
    return f"{'、'.join(names[:NAME_ROADS])}{more}段供水管网"


def feeders(transformers: Any) -> dict[str, str]:
    """The 10 kV feeder (馈线) of each transformer by asset id, from the transformers layer's
    ``feeder`` (transformers without one are left out)."""
    if transformers is None or not len(transformers) or "feeder" not in transformers.columns:
        return {}
    return {str(a): str(f) for a, f in zip(transformers["asset_id"], transformers["feeder"])
            if f is not None and str(f).strip() and str(f) != "nan"}


def _end_points(geoms: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """First and last coordinate of each line (a multi-line: its first part's first, last part's last)."""
    starts, ends = [], []
    for geom in geoms:
        parts = list(geom.geoms) if geom.geom_type == "MultiLineString" else [geom]
        starts.append(parts[0].coords[0][:2])
        ends.append(parts[-1].coords[-1][:2])
    return np.array(starts, float).reshape(-1, 2), np.array(ends, float).reshape(-1, 2)


class WaterNetwork:
    """The segments of one city's water mains, built once; point lookups from any thread."""

    def __init__(self, mains: Any, valves: Any, *, epsg: int, tolerance_m: float = SNAP_TOLERANCE_M,
                 max_distance_m: float = MAX_DISTANCE_M, roads: Any = None, dmas: Any = None) -> None:
        self.epsg = epsg
        self.tolerance_m = tolerance_m
        self.max_distance_m = max_distance_m
        ids = np.array([str(v) for v in mains["main_id"]], dtype=object) if len(mains) else np.zeros(0, object)
        order = np.argsort(ids, kind="stable")
        self.main_ids = ids[order]
        geoms = np.asarray(mains.geometry.values, dtype=object)[order] if len(mains) else np.zeros(0, object)
        self._lines = shapely.transform(geoms, self._to_metres) if len(geoms) else geoms
        self._tree = shapely.STRtree(self._lines)
        starts, ends = _end_points(self._lines)
        valve_at, self.loose_valves = self._place_valves(valves, starts, ends)
        main_label, end_label = segment_labels(starts, ends, list(valve_at.values()), tolerance_m)
        self.segments, self._segment_of_label = self._number(main_label)
        self._main_segment = np.array([self._segment_of_label[int(label)] for label in main_label], dtype=object)
        isolating: dict[str, list[str]] = {s: [] for s in self.segments}
        n = len(starts)
        ends_at = np.bincount(end_label) if len(end_label) else np.zeros(0, np.int64)
        for valve_id, (m, e) in valve_at.items():
            inside, outside = int(main_label[m]), int(end_label[e * n + m])
            if inside == outside or (outside not in self._segment_of_label and ends_at[outside] == 1):
                continue  # a valve within one segment or on a dead end: closing it isolates nothing
            for label in (inside, outside):
                if label in self._segment_of_label:
                    isolating[self._segment_of_label[label]].append(valve_id)
        road_of = self._roads_of_mains(roads)
        dma_of = self._dmas_of_segments(geoms, dmas)
        self.segments = {sid: Segment(sid, s.main_ids, tuple(sorted(isolating[sid])), s.length_m,
                                      segment_name([road_of.get(m) for m in s.main_ids]), dma_of.get(sid))
                         for sid, s in self.segments.items()}
        self._segment_index = {str(m): str(s) for m, s in zip(self.main_ids, self._main_segment)}

    @classmethod
    def from_city(cls, city: Any, *, epsg: int, **kwargs: Any) -> "WaterNetwork":
        """The network of a loaded `gis.layers.City` (its ``mains`` and ``valves`` layers; its
        ``roads`` name the segments)."""
        return cls(city.mains, city.valves, epsg=epsg, roads=getattr(city, "roads", None),
                   dmas=getattr(city, "dmas", None), **kwargs)

    def _dmas_of_segments(self, geoms: np.ndarray, dmas: Any) -> dict[str, str]:
        """The DMA of each segment: the one whose polygon holds the midpoints of most of its
        mains' length (WGS84 ``geoms`` in main order; a main outside every DMA counts for none)."""
        if dmas is None or not len(dmas) or "dma_id" not in dmas.columns or not len(geoms):
            return {}
        ids = [str(d) for d in dmas["dma_id"]]
        mids = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
        inputs, rows = shapely.STRtree(np.asarray(dmas.geometry.values, dtype=object)).query(mids, predicate="within")
        lengths = shapely.length(self._lines)
        weight: dict[str, dict[str, float]] = {}
        for i, r in zip(inputs, rows):
            by_dma = weight.setdefault(str(self._main_segment[i]), {})
            by_dma[ids[r]] = by_dma.get(ids[r], 0.0) + float(lengths[i])
        return {sid: max(sorted(by_dma), key=by_dma.__getitem__) for sid, by_dma in weight.items()}

    def dma_of(self, segment_id: str | None) -> str | None:
        """The DMA a segment lies in (`Segment.dma_id`), or None."""
        segment = self.segments.get(segment_id or "")
        return None if segment is None else segment.dma_id

    def _roads_of_mains(self, roads: Any) -> dict[str, str]:
        """The name of the road nearest each main's midpoint (within `ROAD_NAME_M`), by main id."""
        if roads is None or not len(roads) or "name" not in roads.columns or not len(self._lines):
            return {}
        lines = shapely.transform(np.asarray(roads.geometry.values, dtype=object), self._to_metres)
        names = np.array([None if n is None or str(n) == "nan" else str(n) for n in roads["name"]], dtype=object)
        mids = shapely.line_interpolate_point(self._lines, 0.5, normalized=True)
        inputs, rows = shapely.STRtree(lines).query_nearest(mids, max_distance=ROAD_NAME_M, all_matches=False)
        return {str(self.main_ids[i]): names[r] for i, r in zip(inputs, rows) if names[r]}

    def segment_name(self, segment_id: str | None) -> str | None:
        """The readable name of a segment, or None for an unknown or unnamed one."""
        segment = self.segments.get(segment_id or "")
        return segment.name or None if segment is not None else None

    def _to_metres(self, xy: np.ndarray) -> np.ndarray:
        x, y = gcrs.to_metres(xy[:, 0], xy[:, 1], epsg=self.epsg)
        return np.column_stack([np.atleast_1d(x), np.atleast_1d(y)])

    def _place_valves(self, valves: Any, starts: np.ndarray, ends: np.ndarray,
                      ) -> tuple[dict[str, tuple[int, int]], int]:
        """Each placed valve's (main index, end) by valve id, by its main_id when known, else on
        the nearest main end; and how many valves could not be placed."""
        n = len(starts)
        if valves is None or not len(valves) or n == 0:
            return {}, 0 if valves is None else len(valves)
        index = {str(m): i for i, m in enumerate(self.main_ids)}
        points = self._to_metres(np.array([[g.x, g.y] for g in valves.geometry], float))
        tree = cKDTree(np.vstack([starts, ends]))
        named = valves["main_id"] if "main_id" in valves.columns else [None] * len(valves)
        placed: dict[str, tuple[int, int]] = {}
        loose = 0
        for valve_id, main_id, (x, y) in zip(valves["valve_id"], named, points):
            m = index.get(str(main_id)) if main_id is not None else None
            if m is not None:
                d = np.hypot(*(np.array([starts[m], ends[m]]) - (x, y)).T)
                e = int(np.argmin(d))
                found = (m, e) if d[e] <= self.tolerance_m else None
            else:
                d, k = tree.query((x, y))
                found = (int(k) % n, int(k) // n) if d <= self.tolerance_m else None
            if found is None:
                loose += 1
            else:
                placed[str(valve_id)] = found
        return placed, loose

    def _number(self, main_label: np.ndarray) -> tuple[dict[str, Segment], dict[int, str]]:
        """Segments numbered by their lowest main id (mains are in id order, so by first main)."""
        members: dict[int, list[int]] = {}
        for i, label in enumerate(main_label):
            members.setdefault(int(label), []).append(i)
        segments, of_label = {}, {}
        for k, (label, mains) in enumerate(sorted(members.items(), key=lambda item: item[1][0]), start=1):
            sid = f"SEG{k:04d}"
            of_label[label] = sid
            length = float(sum(shapely.length(self._lines[mains])))
            segments[sid] = Segment(sid, tuple(str(self.main_ids[i]) for i in mains), (), round(length, 1))
        return segments, of_label

    def segment_of_main(self, main_id: str | None) -> str | None:
        """The segment of a main by its id, or None for an unknown one."""
        return None if main_id is None else self._segment_index.get(str(main_id))

    def locate(self, lon: float, lat: float) -> SegmentHit | None:
        """The segment of the nearest main within `max_distance_m` of a WGS84 point, or None."""
        if not len(self._lines):
            return None
        x, y = gcrs.to_metres(float(lon), float(lat), epsg=self.epsg)
        found, dist = self._tree.query_nearest(shapely.Point(x, y), max_distance=self.max_distance_m,
                                               return_distance=True, all_matches=True)
        if not len(found):
            return None
        i = int(np.min(found))
        sid = str(self._main_segment[i])
        return SegmentHit(sid, str(self.main_ids[i]), float(np.min(dist)), self.segments[sid].valve_ids)

    def locate_many(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        """Vectorised `locate`: the segment id of each point (None beyond `max_distance_m`)."""
        out = np.full(len(lons), None, dtype=object)
        if not len(self._lines) or not len(out):
            return out
        x, y = gcrs.to_metres(np.asarray(lons, float), np.asarray(lats, float), epsg=self.epsg)
        points = shapely.points(np.atleast_1d(x), np.atleast_1d(y))
        (inputs, rows) = self._tree.query_nearest(points, max_distance=self.max_distance_m, all_matches=True)
        best = np.full(len(out), len(self._lines), dtype=np.int64)
        np.minimum.at(best, inputs, rows)
        hit = best < len(self._lines)
        out[hit] = self._main_segment[best[hit]]
        return out

    def summary(self) -> Mapping[str, Any]:
        """Counts for logs and reports: segments, mains, valves placed and loose, sizes."""
        sizes = sorted(len(s.main_ids) for s in self.segments.values())
        return {"segments": len(self.segments), "mains": len(self.main_ids), "loose_valves": self.loose_valves,
                "largest": sizes[-1] if sizes else 0,
                "median": sizes[len(sizes) // 2] if sizes else 0}
