"""Road routing: a directed road graph with travel times, point snapping and one-to-many queries.

Roads are WGS84 LineStrings, each an edge from its first to its last coordinate: roads are
expected to be split at junctions already (the demo city generator does so;
`gis.road_lines.split_at_junctions` does it for data that shares junction vertices). Endpoints within `snap_tolerance_m` of each other
become one node, so digitised roads that almost meet connect. All geometry work is in metres
(`gis.crs.to_metres`, one Gauss-Krüger zone for the whole graph); an edge costs
length / speed seconds, in both directions unless it is one-way.

A point off the network snaps to the nearest road segment (STRtree); its route adds the straight
access leg from the point to the snapped location at `access_speed_kmh` (default 20 km/h: a crew
walking or driving slowly off-road/in a compound), plus the part of the edge to its end nodes,
respecting one-way.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from gis import crs
from gis.road_lines import RoadGraphError, cluster_points, line_coordinates, normalise_oneway

__all__ = ["DEFAULT_ACCESS_SPEED_KMH", "Route", "RoadGraph"]

DEFAULT_ACCESS_SPEED_KMH = 20.0
_FORMAT_VERSION = 1
_AT_NODE_M = 1e-6  # a snapped point this close to an edge end is at the node
_MIN_ARC_SECONDS = 1e-6  # csgraph must never see a zero weight (it would read "no edge")

LonLat = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Route:
    """A route: travel seconds, metres driven (access legs included) and, when asked for, the
    WGS84 path from the origin point to the target point."""

    seconds: float
    metres: float
    geometry: list[LonLat] | None = None


@dataclass(frozen=True, slots=True)
class _Snap:
    """Points snapped onto edges: edge index, metres along it, access metres, snapped x/y."""

    lonlat: np.ndarray  # (k, 2) the original WGS84 points
    edge: np.ndarray  # (k,) int
    along: np.ndarray  # (k,) metres from the edge's first coordinate
    access: np.ndarray  # (k,) metres from the point to the snapped location
    xy: np.ndarray  # (k, 2) the snapped location in metres
    point_xy: np.ndarray  # (k, 2) the original point in metres

    def pick(self, k: int) -> _Snap:
        """The k-th snapped point alone."""
        return _Snap(self.lonlat[k:k + 1], self.edge[k:k + 1], self.along[k:k + 1],
                     self.access[k:k + 1], self.xy[k:k + 1], self.point_xy[k:k + 1])


class RoadGraph:
    """A directed road graph in metres, answering travel times and routes between WGS84 points."""

    def __init__(
        self, *, epsg: int, node_xy: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray,
        edge_offsets: np.ndarray, edge_coords: np.ndarray, edge_speed_kmh: np.ndarray,
        edge_oneway: np.ndarray, access_speed_kmh: float = DEFAULT_ACCESS_SPEED_KMH,
        snap_tolerance_m: float = 1.0,
    ) -> None:
        """Assemble from metric arrays; use `from_lines` or `load` rather than calling this."""
        if not access_speed_kmh > 0:
            raise RoadGraphError(f"access speed must be positive, got {access_speed_kmh!r}")
        self.epsg = int(epsg)
        self.access_speed_kmh = float(access_speed_kmh)
        self.snap_tolerance_m = float(snap_tolerance_m)
        self.node_xy = np.asarray(node_xy, dtype=np.float64)
        self.edge_u = np.asarray(edge_u, dtype=np.int64)
        self.edge_v = np.asarray(edge_v, dtype=np.int64)
        self.edge_offsets = np.asarray(edge_offsets, dtype=np.int64)
        self.edge_coords = np.asarray(edge_coords, dtype=np.float64)
        self.edge_speed_kmh = np.asarray(edge_speed_kmh, dtype=np.float64)
        self.edge_oneway = np.asarray(edge_oneway, dtype=np.int8)
        edges = len(self.edge_u)
        owner = np.repeat(np.arange(edges), np.diff(self.edge_offsets))
        step = np.zeros(len(self.edge_coords))
        step[1:] = np.hypot(*np.diff(self.edge_coords, axis=0).T)
        step[self.edge_offsets[:-1]] = 0.0  # no step across two edges
        cumulative = np.cumsum(step)
        self._edge_cum = cumulative - cumulative[self.edge_offsets[:-1]][owner]
        self.edge_length = self._edge_cum[self.edge_offsets[1:] - 1]
        self.edge_seconds = self.edge_length / (self.edge_speed_kmh / 3.6)
        self._edge_lines = shapely.linestrings(self.edge_coords, indices=owner)
        self._tree = shapely.STRtree(self._edge_lines)
        self._build_arcs()

    def _build_arcs(self) -> None:
        """Directed arcs (the fastest one per node pair) and the forward and reversed CSR graphs."""
        e = np.arange(len(self.edge_u))
        fwd = self.edge_oneway >= 0
        back = self.edge_oneway <= 0
        u = np.concatenate([self.edge_u[fwd], self.edge_v[back]])
        v = np.concatenate([self.edge_v[fwd], self.edge_u[back]])
        edge = np.concatenate([e[fwd], e[back]])
        along = np.concatenate([np.ones(fwd.sum(), bool), np.zeros(back.sum(), bool)])
        keep = u != v
        u, v, edge, along = u[keep], v[keep], edge[keep], along[keep]
        seconds = self.edge_seconds[edge]
        order = np.lexsort((seconds, v, u))
        u, v, edge, along, seconds = u[order], v[order], edge[order], along[order], seconds[order]
        first = np.ones(len(u), dtype=bool)
        first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
        n = len(self.node_xy)
        self._arc_key = u[first] * n + v[first]  # sorted, for searchsorted lookups
        self._arc_edge = edge[first]
        self._arc_along = along[first]
        weights = np.maximum(seconds[first], _MIN_ARC_SECONDS)
        self._graph = csr_matrix((weights, (u[first], v[first])), shape=(n, n))
        self._reversed = self._graph.T.tocsr()

    # ------------------------------------------------------------------ building and caching

    @classmethod
    def from_lines(
        cls, lines: Sequence[shapely.LineString], speed_kmh: Sequence[float],
        oneway: Sequence[bool | int], *, snap_tolerance_m: float = 1.0,
        access_speed_kmh: float = DEFAULT_ACCESS_SPEED_KMH, epsg: int | None = None,
    ) -> RoadGraph:
        """Build from WGS84 roads split at junctions; oneway 1/True runs along the digitised
        direction, -1 against it, 0/False both ways. The GK zone comes from the mean longitude."""
        if not len(lines) == len(speed_kmh) == len(oneway):
            raise RoadGraphError(
                f"lines ({len(lines)}), speed_kmh ({len(speed_kmh)}) and oneway ({len(oneway)}) "
                f"must have the same length")
        if len(lines) == 0:
            raise RoadGraphError("no roads given")
        speeds = np.asarray(speed_kmh, dtype=np.float64)
        bad = np.flatnonzero(~(np.isfinite(speeds) & (speeds > 0)))
        if len(bad):
            raise RoadGraphError(
                f"road {int(bad[0])}: speed must be positive, got {speeds[bad[0]]}")
        flags = np.array([normalise_oneway(flag, i) for i, flag in enumerate(oneway)], np.int8)
        coords, offsets = line_coordinates(lines)
        x, y = crs.to_metres(coords[:, 0], coords[:, 1], epsg=epsg)
        xy = np.column_stack([x, y])
        starts, ends = offsets[:-1], offsets[1:] - 1
        step = np.r_[np.hypot(*np.diff(xy, axis=0).T), 0.0]
        step[starts[1:] - 1] = 0.0  # the step from one road's last point to the next road
        raw_length = np.add.reduceat(step, starts)
        if np.any(raw_length <= 0):
            raise RoadGraphError(f"road {int(np.flatnonzero(raw_length <= 0)[0])}: zero length")
        labels = cluster_points(np.vstack([xy[starts], xy[ends]]), snap_tolerance_m)
        count = int(labels.max()) + 1
        members = np.bincount(labels, minlength=count)
        ends_xy = np.vstack([xy[starts], xy[ends]])
        node_xy = np.column_stack([np.bincount(labels, ends_xy[:, k], count) / members
                                   for k in (0, 1)])
        edges = len(lines)
        edge_u, edge_v = labels[:edges], labels[edges:]
        xy[starts] = node_xy[edge_u]
        xy[ends] = node_xy[edge_v]
        return cls(
            epsg=crs.gk_zone_epsg(float(coords[:, 0].mean())) if epsg is None else epsg,
            node_xy=node_xy, edge_u=edge_u, edge_v=edge_v, edge_offsets=offsets,
            edge_coords=xy, edge_speed_kmh=speeds, edge_oneway=flags,
            access_speed_kmh=access_speed_kmh, snap_tolerance_m=snap_tolerance_m)

    def save(self, path: str | Path) -> None:
        """Write the graph to a numpy .npz file (no pickle)."""
        with open(path, "wb") as file:
            np.savez(
                file, format_version=_FORMAT_VERSION, epsg=self.epsg,
                access_speed_kmh=self.access_speed_kmh, snap_tolerance_m=self.snap_tolerance_m,
                node_xy=self.node_xy, edge_u=self.edge_u, edge_v=self.edge_v,
                edge_offsets=self.edge_offsets, edge_coords=self.edge_coords,
                edge_speed_kmh=self.edge_speed_kmh, edge_oneway=self.edge_oneway)

    @classmethod
    def load(cls, path: str | Path) -> RoadGraph:
        """Read a graph written by `save`; raises RoadGraphError for a foreign or old file."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as error:
            raise RoadGraphError(f"{path}: not a road graph file ({error})") from None
        version = arrays.pop("format_version", None)
        if version is None or int(version) != _FORMAT_VERSION:
            raise RoadGraphError(f"{path}: road graph format {version}, expected {_FORMAT_VERSION}")
        try:
            return cls(
                epsg=int(arrays.pop("epsg")),
                access_speed_kmh=float(arrays.pop("access_speed_kmh")),
                snap_tolerance_m=float(arrays.pop("snap_tolerance_m")), **arrays)
        except (KeyError, TypeError) as error:
            raise RoadGraphError(f"{path}: incomplete road graph file ({error})") from None

    @property
    def node_count(self) -> int:
        """Number of junction nodes."""
        return len(self.node_xy)

    @property
    def edge_count(self) -> int:
        """Number of road edges (each may carry one or two directed arcs)."""
        return len(self.edge_u)

    # ------------------------------------------------------------------ snapping

    def _snap(self, points: Sequence[LonLat]) -> _Snap:
        """Snap WGS84 points to the nearest road segment."""
        lonlat = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        x, y = crs.to_metres(lonlat[:, 0], lonlat[:, 1], epsg=self.epsg)
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise RoadGraphError("a point to route is not a finite WGS84 lon/lat")
        geoms = shapely.points(x, y)
        found = self._tree.query_nearest(geoms, all_matches=False)
        edge = np.empty(len(lonlat), dtype=np.int64)
        edge[found[0]] = found[1]
        lines = self._edge_lines[edge]
        along = shapely.line_locate_point(lines, geoms)
        snapped = shapely.get_coordinates(shapely.line_interpolate_point(lines, along))
        access = np.hypot(snapped[:, 0] - x, snapped[:, 1] - y)
        return _Snap(lonlat, edge, along, access, snapped, np.column_stack([x, y]))

    def _partials(self, snap: _Snap) -> dict[str, np.ndarray]:
        """Seconds and metres between snapped points and their edge's end nodes, inf if one-way
        forbids: out_u/out_v leave the point towards u/v, in_u/in_v arrive from u/v."""
        e = snap.edge
        length = np.maximum(self.edge_length[e], 1e-9)
        head = np.clip(snap.along / length, 0.0, 1.0)  # fraction from u
        seconds = self.edge_seconds[e]
        at_u = snap.along <= _AT_NODE_M  # at an end node one-way does not matter
        at_v = snap.along >= self.edge_length[e] - _AT_NODE_M
        along_ok = self.edge_oneway[e] >= 0
        against_ok = self.edge_oneway[e] <= 0
        inf = np.inf
        return {
            "out_v": np.where(along_ok | at_v, (1 - head) * seconds, inf),
            "out_u": np.where(against_ok | at_u, head * seconds, inf),
            "in_u": np.where(along_ok | at_u, head * seconds, inf),
            "in_v": np.where(against_ok | at_v, (1 - head) * seconds, inf),
            "m_u": head * self.edge_length[e], "m_v": (1 - head) * self.edge_length[e],
            "access_s": snap.access / (self.access_speed_kmh / 3.6),
        }

    def _direct(self, origin: _Snap, target: _Snap, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Seconds and metres driving along one shared edge from each origin to target `t`."""
        e = int(target.edge[t])
        delta = target.along[t] - origin.along
        allowed = (origin.edge == e) & np.where(delta >= 0, self.edge_oneway[e] >= 0,
                                                 self.edge_oneway[e] <= 0)
        metres = np.abs(delta)
        seconds = metres / max(self.edge_length[e], 1e-9) * self.edge_seconds[e]
        return np.where(allowed, seconds, np.inf), metres

    # ------------------------------------------------------------------ queries

    def travel_time(self, origin: LonLat, dest: LonLat) -> Route | None:
        """Fastest route between two WGS84 points (forward Dijkstra), geometry included."""
        o, t = self._snap([origin]), self._snap([dest])
        po, pt = self._partials(o), self._partials(t)
        sources = [int(self.edge_u[o.edge[0]]), int(self.edge_v[o.edge[0]])]
        leave = [po["out_u"][0], po["out_v"][0]]
        leave_m = [po["m_u"][0], po["m_v"][0]]
        ends = [int(self.edge_u[t.edge[0]]), int(self.edge_v[t.edge[0]])]
        arrive = [pt["in_u"][0], pt["in_v"][0]]
        arrive_m = [pt["m_u"][0], pt["m_v"][0]]
        dist, pred = dijkstra(self._graph, indices=sources, return_predecessors=True)
        best, choice = np.inf, None
        for i in range(2):
            for j in range(2):
                cost = leave[i] + dist[i, ends[j]] + arrive[j]
                if cost < best:
                    best, choice = cost, (i, j)
        direct_s, direct_m = self._direct(o, t, 0)
        access_s = po["access_s"][0] + pt["access_s"][0]
        access_m = o.access[0] + t.access[0]
        if direct_s[0] <= best and np.isfinite(direct_s[0]):
            path = self._edge_part(int(t.edge[0]), o.along[0], t.along[0])
            return Route(float(direct_s[0] + access_s), float(direct_m[0] + access_m),
                         self._finish(o, path, t))
        if choice is None:
            return None
        i, j = choice
        nodes = [ends[j]]
        while nodes[-1] != sources[i]:
            nodes.append(int(pred[i, nodes[-1]]))
        nodes.reverse()
        coords = [self._edge_part(int(o.edge[0]), o.along[0], self._end_along(o.edge[0], i))]
        coords += self._arcs_coords(nodes)
        coords.append(self._edge_part(int(t.edge[0]), self._end_along(t.edge[0], j), t.along[0]))
        metres = leave_m[i] + self._arcs_metres(nodes) + arrive_m[j] + access_m
        return Route(float(best + access_s), float(metres),
                     self._finish(o, np.vstack(coords), t))

    def one_to_many(
        self, target: LonLat, origins: Sequence[LonLat], *, with_geometry: bool = False,
        max_seconds: float | None = None,
    ) -> list[Route | None]:
        """Fastest routes from every origin (crews) to one target (the ticket) in one Dijkstra
        pass over the reversed graph; geometry only when asked; None when unreachable or slower
        than `max_seconds`."""
        if len(origins) == 0:
            return []
        t = self._snap([target])
        seconds, metres, plan = self._to_target(t, self._snap(origins), max_seconds)
        if not with_geometry:
            return [None if s == np.inf else Route(s, m)
                    for s, m in zip(seconds.tolist(), metres.tolist())]
        return [None if s == np.inf else Route(s, m, self._plan_geometry(plan, k))
                for k, (s, m) in enumerate(zip(seconds.tolist(), metres.tolist()))]

    def many_to_many(self, origins: Sequence[LonLat], targets: Sequence[LonLat]) -> np.ndarray:
        """Seconds from each origin (rows) to each target (columns); inf when unreachable."""
        result = np.full((len(origins), len(targets)), np.inf)
        if len(origins) == 0 or len(targets) == 0:
            return result
        o, t = self._snap(origins), self._snap(targets)
        for k in range(len(targets)):
            result[:, k] = self._to_target(t.pick(k), o, None)[0]
        return result

    def _to_target(
        self, t: _Snap, o: _Snap, max_seconds: float | None,
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """Seconds and metres from every snapped origin to one snapped target, with the data
        needed to rebuild each route's geometry later."""
        pt, po = self._partials(t), self._partials(o)
        arrive = np.array([pt["in_u"][0], pt["in_v"][0]])
        end_index = np.flatnonzero(np.isfinite(arrive))  # a one-way edge is reached from one end
        ends = np.array([self.edge_u[t.edge[0]], self.edge_v[t.edge[0]]])[end_index]
        arrive = arrive[end_index]
        arrive_m = np.array([pt["m_u"][0], pt["m_v"][0]])[end_index]
        limit = np.inf if max_seconds is None else float(max_seconds)
        dist, pred = dijkstra(self._reversed, indices=ends, return_predecessors=True, limit=limit)
        total = dist + arrive[:, None]  # (2, n): node -> target via end 0 / end 1
        row = np.argmin(total, axis=0)
        nodes = np.arange(self.node_count)
        node_s = total[row, nodes]
        node_m = self._tree_metres(pred)[row, nodes] + arrive_m[row]
        a, b = self.edge_u[o.edge], self.edge_v[o.edge]
        via_a = po["out_u"] + node_s[a]
        via_b = po["out_v"] + node_s[b]
        use_b = via_b < via_a
        network_s = np.where(use_b, via_b, via_a)
        network_m = np.where(use_b, po["m_v"] + node_m[b], po["m_u"] + node_m[a])
        direct_s, direct_m = self._direct(o, t, 0)
        use_direct = np.isfinite(direct_s) & (direct_s <= network_s)
        access_s = po["access_s"] + pt["access_s"][0]
        seconds = np.where(use_direct, direct_s, network_s) + access_s
        metres = np.where(use_direct, direct_m, network_m) + o.access + t.access[0]
        if max_seconds is not None:
            seconds = np.where(seconds <= max_seconds, seconds, np.inf)
        plan = {"t": t, "o": o, "pred": pred, "row": row, "ends": ends, "end_index": end_index,
                "use_b": use_b,
                "use_direct": use_direct}
        return seconds, metres, plan

    # ------------------------------------------------------------------ geometry helpers

    def _tree_metres(self, pred: np.ndarray) -> np.ndarray:
        """Metres from every node to its tree root along reversed-Dijkstra predecessors
        (pred[n] = p means the forward arc n -> p), by pointer jumping."""
        rows, n = pred.shape
        flat = pred.ravel()
        base = np.repeat(np.arange(rows) * n, n)
        own = np.arange(rows * n)
        has = flat >= 0
        jump = np.where(has, flat + base, own)
        acc = np.zeros(rows * n)
        keys = (own[has] - base[has]) * n + flat[has]
        arc = np.searchsorted(self._arc_key, keys)
        acc[has] = self.edge_length[self._arc_edge[arc]]
        while True:
            nxt = jump[jump]
            if np.array_equal(nxt, jump):
                return acc.reshape(rows, n)
            acc = acc + acc[jump]
            jump = nxt

    def _plan_geometry(self, plan: dict, k: int) -> list[LonLat]:
        """WGS84 path of origin `k` from a `_to_target` plan."""
        t, o = plan["t"], plan["o"]
        edge = int(o.edge[k])
        if plan["use_direct"][k]:
            path = self._edge_part(edge, o.along[k], t.along[0])
            return self._finish(o.pick(k), path, t)
        end_index = 1 if plan["use_b"][k] else 0
        start = int(self.edge_v[edge] if end_index else self.edge_u[edge])
        row = int(plan["row"][start])
        nodes = [start]
        while nodes[-1] != plan["ends"][row]:
            nodes.append(int(plan["pred"][row, nodes[-1]]))
        coords = [self._edge_part(edge, o.along[k], self._end_along(edge, end_index))]
        coords += self._arcs_coords(nodes)
        target_end = self._end_along(t.edge[0], int(plan["end_index"][row]))
        coords.append(self._edge_part(int(t.edge[0]), target_end, t.along[0]))
        return self._finish(o.pick(k), np.vstack(coords), t)

    def _end_along(self, edge: int, end_index: int) -> float:
        """Metres along `edge` of its u end (0) or v end (1)."""
        return 0.0 if end_index == 0 else float(self.edge_length[edge])

    def _edge_part(self, edge: int, start: float, stop: float) -> np.ndarray:
        """Metric coordinates of `edge` between two distances along it, in travel order."""
        first, last = self.edge_offsets[edge], self.edge_offsets[edge + 1]
        coords, cum = self.edge_coords[first:last], self._edge_cum[first:last]
        low, high = min(start, stop), max(start, stop)
        inside = (cum > low) & (cum < high)
        xs = np.interp([low, high], cum, coords[:, 0])
        ys = np.interp([low, high], cum, coords[:, 1])
        part = np.vstack([[xs[0], ys[0]], coords[inside], [xs[1], ys[1]]])
        return part if start <= stop else part[::-1]

    def _arcs_coords(self, nodes: list[int]) -> list[np.ndarray]:
        """Metric coordinates of the arcs joining consecutive nodes."""
        if len(nodes) < 2:
            return []
        path = np.asarray(nodes)
        arcs = np.searchsorted(self._arc_key, path[:-1] * self.node_count + path[1:])
        parts = []
        for arc in arcs:
            edge = self._arc_edge[arc]
            coords = self.edge_coords[self.edge_offsets[edge]:self.edge_offsets[edge + 1]]
            parts.append(coords if self._arc_along[arc] else coords[::-1])
        return parts

    def _arcs_metres(self, nodes: list[int]) -> float:
        """Metres of the arcs joining consecutive nodes."""
        if len(nodes) < 2:
            return 0.0
        path = np.asarray(nodes)
        arcs = np.searchsorted(self._arc_key, path[:-1] * self.node_count + path[1:])
        return float(self.edge_length[self._arc_edge[arcs]].sum())

    def _finish(self, origin: _Snap, path: np.ndarray, target: _Snap) -> list[LonLat]:
        """Join access legs and path, drop repeated points, return WGS84 with the exact origin
        and target points at the ends."""
        coords = np.vstack([origin.point_xy[0], origin.xy[0], path, target.xy[0],
                            target.point_xy[0]])
        keep = np.ones(len(coords), dtype=bool)
        keep[1:] = np.any(np.abs(np.diff(coords, axis=0)) > 1e-6, axis=1)
        keep[-1] = True
        coords = coords[keep]
        if len(coords) > 1 and not np.any(np.abs(coords[-1] - coords[-2]) > 1e-6):
            coords = np.delete(coords, -2, axis=0)
        lon, lat = crs.from_metres(coords[:, 0], coords[:, 1], epsg=self.epsg)
        points = [(float(x), float(y)) for x, y in zip(lon, lat)]
        points[0] = (float(origin.lonlat[0, 0]), float(origin.lonlat[0, 1]))
        if len(points) == 1:
            points.append(points[0])
        points[-1] = (float(target.lonlat[0, 0]), float(target.lonlat[0, 1]))
        return points
