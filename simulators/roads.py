"""The roads the simulated vehicles drive: the city's road segments joined at their end points
(`RoadNet`, with the nearest road to a point), a route to follow at road speeds (`Trip`, braking
ahead of slower segments, sharp turns and its end), and the network of a city profile.

`simulators.vehicles` moves the vehicles over them and publishes their NMEA.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["ACCESS_KMH", "BRAKE", "EARTH_M_PER_DEG", "JUNCTION_KMH", "ON_ROAD_M", "Edge", "RoadNet", "Trip",
           "TripError", "roadnet_from_city", "roadnet_of"]

EARTH_M_PER_DEG = 111_320.0
BRAKE = 2.5       # m/s2
JUNCTION_KMH = 15.0
ACCESS_KMH = 20.0   # off the road: into a yard, up to an address
ON_ROAD_M = 8.0     # a route segment this close to a road runs on it (at its speed)


@dataclass
class Edge:
    """A road segment as a polyline, with cumulative lengths in metres."""

    coords: list[tuple[float, float]]
    cum: list[float]
    speed_kmh: float
    oneway: bool
    start: int = 0
    end: int = 0

    @property
    def length(self) -> float:
        """Length in metres."""
        return self.cum[-1]

    def at(self, distance: float, forward: bool) -> tuple[float, float, float]:
        """(lon, lat, course degrees) at a distance along the edge in the driving direction."""
        d = distance if forward else self.length - distance
        d = min(max(d, 0.0), self.length)
        i = 1
        while i < len(self.cum) - 1 and self.cum[i] < d:
            i += 1
        seg = self.cum[i] - self.cum[i - 1] or 1e-9
        f = (d - self.cum[i - 1]) / seg
        (x0, y0), (x1, y1) = self.coords[i - 1], self.coords[i]
        lon, lat = x0 + (x1 - x0) * f, y0 + (y1 - y0) * f
        dx = (x1 - x0) * math.cos(math.radians(lat))
        dy = y1 - y0
        course = math.degrees(math.atan2(dx, dy)) % 360.0
        if not forward:
            course = (course + 180.0) % 360.0
        return lon, lat, course


def _length_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    # Simulator-only: short road segments, a local flat-earth approximation is accurate to ~0.1%.
    dx = (b[0] - a[0]) * EARTH_M_PER_DEG * math.cos(math.radians((a[1] + b[1]) / 2))
    dy = (b[1] - a[1]) * EARTH_M_PER_DEG
    return math.hypot(dx, dy)


class RoadNet:
    """Road segments joined at shared end points, for the simulated vehicles to drive."""

    def __init__(self, lines: Sequence[Sequence[tuple[float, float]]], speeds: Sequence[float],
                 oneway: Sequence[bool]):
        self.edges: list[Edge] = []
        self.nodes: list[tuple[float, float]] = []
        index: dict[tuple[int, int], int] = {}
        self.out: list[list[tuple[int, bool]]] = []

        def node(pt: tuple[float, float]) -> int:
            key = (round(pt[0] * 1e6), round(pt[1] * 1e6))
            if key not in index:
                index[key] = len(self.nodes)
                self.nodes.append(pt)
                self.out.append([])
            return index[key]

        for coords, speed, one in zip(lines, speeds, oneway):
            coords = [(float(x), float(y)) for x, y in coords]
            if len(coords) < 2:
                continue
            cum = [0.0]
            for a, b in zip(coords, coords[1:]):
                cum.append(cum[-1] + _length_m(a, b))
            if cum[-1] < 1.0:
                continue
            edge = Edge(coords, cum, float(speed), bool(one), node(coords[0]), node(coords[-1]))
            eid = len(self.edges)
            self.edges.append(edge)
            self.out[edge.start].append((eid, True))
            if not edge.oneway:
                self.out[edge.end].append((eid, False))

    def choose_next(self, rng: random.Random, at_node: int, came_from: int) -> tuple[int, bool] | None:
        """A random way on from a junction, avoiding a U-turn unless it is a dead end."""
        options = [o for o in self.out[at_node] if o[0] != came_from] or self.out[at_node]
        return rng.choice(options) if options else None

    def _segments(self) -> dict[str, np.ndarray]:
        """Every polyline segment in local metres (built once): ends, owning edge, start offset."""
        if getattr(self, "_segs", None) is None:
            lat0 = sum(y for _, y in self.nodes) / max(1, len(self.nodes)) if self.nodes else 0.0
            kx = EARTH_M_PER_DEG * math.cos(math.radians(lat0))
            a, b, owner, start = [], [], [], []
            for eid, edge in enumerate(self.edges):
                for i in range(len(edge.coords) - 1):
                    a.append(edge.coords[i])
                    b.append(edge.coords[i + 1])
                    owner.append(eid)
                    start.append(edge.cum[i])
            scale = np.array([kx, EARTH_M_PER_DEG])
            self._segs = {"a": np.asarray(a) * scale, "b": np.asarray(b) * scale, "edge": np.asarray(owner),
                          "start": np.asarray(start), "scale": scale}
        return self._segs

    def locate(self, point: tuple[float, float]) -> tuple[int, float, float]:
        """The road nearest a (lon, lat): (edge index, metres along it, metres away)."""
        segs = self._segments()
        p = np.asarray(point) * segs["scale"]
        ab = segs["b"] - segs["a"]
        length2 = np.maximum((ab ** 2).sum(axis=1), 1e-9)
        t = np.clip(((p - segs["a"]) * ab).sum(axis=1) / length2, 0.0, 1.0)
        gap = np.hypot(*(segs["a"] + ab * t[:, None] - p).T)
        k = int(np.argmin(gap))
        edge = int(segs["edge"][k])
        along = float(segs["start"][k] + t[k] * math.sqrt(length2[k]))
        return edge, min(along, self.edges[edge].length), float(gap[k])

    def trip_along(self, coords: Sequence[tuple[float, float]], *, access_kmh: float = ACCESS_KMH) -> "Trip":
        """A trip over a route polyline (e.g. ``gis.routing.RoadGraph.travel_time(...).geometry``):
        each segment runs at the speed of the road it lies on, off-road legs at ``access_kmh``."""
        points = [(float(x), float(y)) for x, y in coords]
        speeds = []
        for a, b in zip(points, points[1:]):
            edge, _, gap = self.locate(((a[0] + b[0]) / 2, (a[1] + b[1]) / 2))
            speeds.append(self.edges[edge].speed_kmh if gap <= ON_ROAD_M else access_kmh)
        return Trip(points, speeds)


class TripError(ValueError):
    """A route that cannot be driven (fewer than two points, a speed that is not positive)."""


@dataclass
class Trip:
    """A route for one vehicle: a (lon, lat) polyline with a speed limit (km/h) per segment.

    The vehicle accelerates and brakes within the limits (looking ahead to slower segments and
    sharp turns), and stops at the last point."""

    coords: list[tuple[float, float]]
    speeds_kmh: list[float]
    pos: float = 0.0
    cum: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.coords) < 2 or len(self.speeds_kmh) != len(self.coords) - 1:
            raise TripError(f"a trip needs at least two points and one speed per segment, "
                            f"got {len(self.coords)} points and {len(self.speeds_kmh)} speeds")
        if any(not v > 0 for v in self.speeds_kmh):
            raise TripError(f"every segment needs a positive speed, got {self.speeds_kmh}")
        self.cum = [0.0]
        for a, b in zip(self.coords, self.coords[1:]):
            self.cum.append(self.cum[-1] + _length_m(a, b))
        self._turn = [False] + [self._sharp(i) for i in range(1, len(self.coords) - 1)]

    def _sharp(self, i: int) -> bool:
        """Whether the route turns by more than 45 degrees at point i."""
        (x0, y0), (x1, y1), (x2, y2) = self.coords[i - 1], self.coords[i], self.coords[i + 1]
        k = math.cos(math.radians(y1))
        h1, h2 = math.atan2((x1 - x0) * k, y1 - y0), math.atan2((x2 - x1) * k, y2 - y1)
        turn = abs((math.degrees(h2 - h1) + 180.0) % 360.0 - 180.0)
        return turn > 45.0 and self.cum[i + 1] - self.cum[i] > 1.0 and self.cum[i] - self.cum[i - 1] > 1.0

    @property
    def length(self) -> float:
        """Length in metres."""
        return self.cum[-1]

    @property
    def done(self) -> bool:
        """Whether the vehicle has reached the last point."""
        return self.pos >= self.length

    @property
    def end(self) -> tuple[float, float]:
        """The destination (lon, lat)."""
        return self.coords[-1]

    def segment(self, distance: float) -> int:
        """Index of the segment a distance along the trip lies on."""
        i = 0
        while i < len(self.speeds_kmh) - 1 and self.cum[i + 1] <= distance:
            i += 1
        return i

    def limit(self, distance: float) -> float:
        """Speed limit (m/s) at a distance along the trip."""
        return self.speeds_kmh[self.segment(distance)] / 3.6

    def at(self, distance: float) -> tuple[float, float, float]:
        """(lon, lat, course degrees) at a distance along the trip."""
        d = min(max(distance, 0.0), self.length)
        i = self.segment(d)
        seg = self.cum[i + 1] - self.cum[i] or 1e-9
        f = min(1.0, (d - self.cum[i]) / seg)
        (x0, y0), (x1, y1) = self.coords[i], self.coords[i + 1]
        lon, lat = x0 + (x1 - x0) * f, y0 + (y1 - y0) * f
        course = math.degrees(math.atan2((x1 - x0) * math.cos(math.radians(lat)), y1 - y0)) % 360.0
        return lon, lat, course

    def allowed(self, speed: float, dt: float, pace: float = 1.0) -> float:
        """The fastest speed (m/s) from which the vehicle can still keep every limit ahead and stop
        at the end: each limit v at distance d ahead allows sqrt(v^2 + 2 * BRAKE * d) now."""
        margin = speed * dt
        i = self.segment(self.pos)
        best = self.speeds_kmh[i] / 3.6 * pace
        reach = speed * speed / (2 * BRAKE) + margin + 1.0
        for j in range(i + 1, len(self.speeds_kmh) + 1):
            ahead = self.cum[j] - self.pos
            if ahead > reach:
                break
            if j == len(self.speeds_kmh):
                v = 0.0
            else:
                v = min(self.speeds_kmh[j] / 3.6 * pace, JUNCTION_KMH / 3.6 if self._turn[j] else math.inf)
            best = min(best, math.sqrt(v * v + 2 * BRAKE * max(0.0, ahead - margin)))
        return best



def roadnet_from_city(profile_path: str) -> tuple[RoadNet, list[str], list[tuple[float, float]]]:
    """The road network and the vehicles (ids, station positions) of a city profile."""
    from gis.layers import load_profile  # geopandas is only needed when reading a city

    return roadnet_of(load_profile(profile_path))


def roadnet_of(city) -> tuple[RoadNet, list[str], list[tuple[float, float]]]:
    """The road network and the vehicles (ids, station positions) of a loaded ``gis.layers.City``."""
    roads = city.roads
    lines = [list(g.coords) for g in roads.geometry]
    net = RoadNet(lines, roads["speed_kmh"].astype(float).tolist(), roads["oneway"].astype(bool).tolist())
    crews = city.crews
    ids = [str(v) for v in crews["vehicle_id"]]
    starts = [(g.x, g.y) for g in crews.geometry]
    return net, ids, starts
