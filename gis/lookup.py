"""Spatial lookups: point → district/street/grid, responsible unit and the department above it,
supply area; nearby things.

Every polygon layer sits in a shapely STRtree (O(log n) candidates, then an exact
point-in-polygon test against prepared geometries). Lookups accept WGS84 lon/lat.

Boundary rule: a point covered by several polygons of one layer (on a shared edge or vertex,
or where polygons overlap) resolves to the polygon with the lowest id, comparing ids as text
("370785010101" < "370785010102", "PWR01" < "PWR02"). Boundaries count as covered, so a point
on the outer edge of the city still resolves.

Distances are in metres, computed in the CGCS2000 Gauss-Krüger zone of the city (`gis.crs`),
never in degrees.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from gis import crs as gcrs
from gis.layers import City
from gis.network import WaterNetwork, feeders
from gis.units import LEVEL_DEPARTMENT, nodes_from_frame

__all__ = ["CATEGORIES", "UnknownCategory", "Location", "Locations", "SpatialLookup",
           "NearbyStation", "OpenTickets", "NearbyTicket", "open_tickets_near"]

CATEGORIES = ("water", "power", "gas", "heating", "drainage", "sanitation", "other")


class UnknownCategory(ValueError):
    """A category that is not one of CATEGORIES."""


def _check_category(category: str | None) -> None:
    if category is not None and category not in CATEGORIES:
        raise UnknownCategory(f"unknown category {category!r}; expected one of {CATEGORIES}")


class _AreaIndex:
    """One polygon layer in an STRtree, rows ordered by id so the lowest id wins."""

    def __init__(self, frame: gpd.GeoDataFrame, id_column: str, *columns: str) -> None:
        ids = np.array([str(v) for v in frame[id_column]], dtype=object)
        order = np.argsort(ids, kind="stable")
        self.geoms = np.asarray(frame.geometry.values, dtype=object)[order]
        shapely.prepare(self.geoms)
        self.tree = shapely.STRtree(self.geoms)
        # one extra None at the end: index -1 means "no polygon covers the point"
        self.values = {name: np.append(np.array(list(frame[name]), dtype=object)[order], None)
                       for name in (id_column, *columns)}
        self.values[id_column] = np.append(ids[order], None)

    def find_one(self, point: shapely.Point) -> int:
        """Row of the lowest-id polygon covering `point`, or -1."""
        hits = self.tree.query(point, predicate="intersects")
        return int(hits.min()) if hits.size else -1

    def find_many(self, points: np.ndarray) -> np.ndarray:
        """Rows (int array, -1 for none) of the lowest-id polygon covering each point."""
        inputs, rows = self.tree.query(points)
        keep = shapely.intersects(self.geoms[rows], points[inputs])
        inputs, rows = inputs[keep], rows[keep]
        out = np.full(len(points), len(self.geoms), dtype=np.int64)
        np.minimum.at(out, inputs, rows)
        out[out == len(self.geoms)] = -1
        return out

    def get(self, column: str, rows: Any) -> Any:
        """Column values at rows (None for -1)."""
        return self.values[column][rows]


class _Layers:
    """Several `_AreaIndex` layers in one STRtree: a point's row in every layer from one query
    (six queries of one tree each cost six times the per-query overhead, which dominates)."""

    def __init__(self, layers: list[_AreaIndex]) -> None:
        sizes = [len(layer.geoms) for layer in layers]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        geoms = np.concatenate([layer.geoms for layer in layers]) if layers else np.empty(0, dtype=object)
        self.tree = shapely.STRtree(geoms)

    def find_all(self, point: shapely.Point) -> list[int]:
        """Per layer, the row of its lowest-id polygon covering `point`, or -1 (as `find_one`)."""
        offsets = self.offsets
        out = [-1] * (len(offsets) - 1)
        for hit in sorted(self.tree.query(point, predicate="intersects").tolist()):
            layer = bisect.bisect_right(offsets, hit) - 1
            if out[layer] == -1:
                out[layer] = hit - offsets[layer]
        return out


@dataclass(frozen=True)
class Location:
    """Everything known about one point: areas at every level, unit, supply area, DMA."""

    lon: float
    lat: float
    district_id: str | None
    district: str | None
    street_id: str | None
    street: str | None
    grid_id: str | None
    grid: str | None
    area_class: str | None
    category: str | None
    unit_id: str | None
    unit: str | None
    supply_area_id: str | None   # transformer 台区 serving the point
    transformer_id: str | None
    transformer: str | None
    dma_id: str | None           # water district metered area
    dma: str | None
    department_id: str | None = None  # the level-2 unit (二级) above the responsible unit
    segment_id: str | None = None  # water: the valve-isolation segment of the nearest main (`gis.network`)
    feeder: str | None = None  # power: the 10 kV feeder of the 台区's transformer


@dataclass(frozen=True)
class Locations:
    """`locate_many` result: object arrays aligned with the input, None where nothing covers."""

    district_id: np.ndarray
    street_id: np.ndarray
    grid_id: np.ndarray
    area_class: np.ndarray
    unit_id: np.ndarray
    supply_area_id: np.ndarray
    transformer_id: np.ndarray
    dma_id: np.ndarray
    segment_id: np.ndarray
    feeder: np.ndarray

    def __len__(self) -> int:
        return len(self.district_id)


@dataclass(frozen=True)
class NearbyStation:
    """A station and its straight-line distance from the query point."""

    station_id: str
    name: str
    category: str
    unit_id: str
    distance_m: float


class SpatialLookup:
    """Point lookups over a loaded City; build once, query from any thread (read-only)."""

    def __init__(self, city: City) -> None:
        self._districts = _AreaIndex(city.districts, "district_id", "name")
        self._streets = _AreaIndex(city.streets, "street_id", "name")
        self._grids = _AreaIndex(city.grids, "grid_id", "name", "area_class")
        self._units = {category: _AreaIndex(city.units_for(category), "unit_id", "name")
                       for category in CATEGORIES}
        transformer_names = dict(zip(city.transformers["asset_id"], city.transformers["name"]))
        supply = city.supply_areas.copy()
        supply["transformer"] = [transformer_names.get(a) for a in supply["asset_id"]]
        feeder_of = feeders(city.transformers)  # the 台区's feeder is its transformer's
        supply["feeder"] = [feeder_of.get(str(a)) for a in supply["asset_id"]]
        self._supply = _AreaIndex(supply, "area_id", "asset_id", "transformer", "feeder")
        self._dmas = _AreaIndex(city.dmas, "dma_id", "name")
        self._layers = _Layers([self._districts, self._streets, self._grids, self._supply, self._dmas,
                                *(self._units[category] for category in CATEGORIES)])
        nodes = nodes_from_frame(city.units.drop(columns="geometry").to_dict("records"))
        levels = {n.unit_id: n.level for n in nodes}
        self._department = {n.unit_id: n.parent_id for n in nodes
                            if n.parent_id is not None and levels.get(n.parent_id) == LEVEL_DEPARTMENT}
        stations = city.stations
        bounds = city.districts.total_bounds if len(city.districts) else stations.total_bounds
        self._epsg = gcrs.gk_zone_epsg(float((bounds[0] + bounds[2]) / 2.0))
        self._stations = stations.reset_index(drop=True)
        if len(stations):
            xs, ys = gcrs.to_metres(stations.geometry.x.to_numpy(), stations.geometry.y.to_numpy(),
                                    epsg=self._epsg)
        else:
            xs = ys = np.zeros(0)
        self._station_xy = np.column_stack([xs, ys])
        self.water = WaterNetwork.from_city(city, epsg=self._epsg)  # the mains' valve-isolation segments
        self._area_names = {str(i): str(n) for frame, column in ((city.supply_areas, "area_id"), (city.dmas, "dma_id"))
                            if "name" in frame.columns for i, n in zip(frame[column], frame["name"])
                            if n is not None and str(n).strip() and str(n) != "nan"}  # 台区 and DMA names

    def area_name(self, area_id: str | None) -> str | None:
        """The readable name of a supply area for customer-facing text: a water segment's (from its
        roads, `gis.network`), a 台区's or a DMA's ``name``; None for an unknown or unnamed one."""
        if not area_id:
            return None
        return self.water.segment_name(area_id) or self._area_names.get(area_id)

    @property
    def metric_epsg(self) -> int:
        """The Gauss-Krüger EPSG code used for distances in this city."""
        return self._epsg

    def locate(self, lon: float, lat: float, category: str | None = None) -> Location:
        """Areas, responsible unit (for `category`), 台区 and its feeder, DMA, and (for water or
        no category) the water segment at one point."""
        _check_category(category)
        rows = self._layers.find_all(shapely.Point(lon, lat))
        d, s, g, a, m = rows[:5]
        units = self._units[category] if category else None
        u = rows[5 + CATEGORIES.index(category)] if category else -1
        return Location(
            lon=lon, lat=lat,
            district_id=self._districts.get("district_id", d), district=self._districts.get("name", d),
            street_id=self._streets.get("street_id", s), street=self._streets.get("name", s),
            grid_id=self._grids.get("grid_id", g), grid=self._grids.get("name", g),
            area_class=self._grids.get("area_class", g), category=category,
            unit_id=units.get("unit_id", u) if units else None,
            unit=units.get("name", u) if units else None,
            supply_area_id=self._supply.get("area_id", a),
            transformer_id=self._supply.get("asset_id", a),
            transformer=self._supply.get("transformer", a),
            dma_id=self._dmas.get("dma_id", m), dma=self._dmas.get("name", m),
            department_id=self.department_for(units.get("unit_id", u)) if units else None,
            segment_id=self._segment(lon, lat) if category in (None, "water") else None,
            feeder=self._supply.get("feeder", a))

    def _segment(self, lon: float, lat: float) -> str | None:
        hit = self.water.locate(lon, lat)
        return None if hit is None else hit.segment_id

    def locate_many(self, lons: np.ndarray, lats: np.ndarray,
                    category: str | None = None) -> Locations:
        """Vectorised `locate` (ids only): one STRtree query per layer for all points."""
        _check_category(category)
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        g = self._grids.find_many(points)
        a = self._supply.find_many(points)
        none = np.full(len(points), None, dtype=object)
        units = self._units[category] if category else None
        return Locations(
            district_id=self._districts.get("district_id", self._districts.find_many(points)),
            street_id=self._streets.get("street_id", self._streets.find_many(points)),
            grid_id=self._grids.get("grid_id", g), area_class=self._grids.get("area_class", g),
            unit_id=units.get("unit_id", units.find_many(points)) if units else none,
            supply_area_id=self._supply.get("area_id", a),
            transformer_id=self._supply.get("asset_id", a),
            dma_id=self._dmas.get("dma_id", self._dmas.find_many(points)),
            segment_id=self.water.locate_many(lons, lats) if category in (None, "water") else none,
            feeder=self._supply.get("feeder", a))

    def unit_for(self, lon: float, lat: float, category: str) -> str | None:
        """The responsible unit id for `category` at a point, or None outside every service area."""
        _check_category(category)
        if category is None:
            raise UnknownCategory("a category is required")
        units = self._units[category]
        return units.get("unit_id", units.find_one(shapely.Point(lon, lat)))

    def department_for(self, unit_id: str | None) -> str | None:
        """The level-2 unit (二级, the department that supervises) directly above a responsible
        unit, from the profile's ``parent_id``; None when the unit hangs under the center."""
        return self._department.get(unit_id) if unit_id is not None else None

    def nearest_stations(self, lon: float, lat: float, category: str | None = None,
                         k: int = 3) -> list[NearbyStation]:
        """The k stations nearest in a straight line (metres), optionally of one category."""
        _check_category(category)
        if not len(self._stations):
            return []
        x, y = gcrs.to_metres(float(lon), float(lat), epsg=self._epsg)
        dist = np.hypot(self._station_xy[:, 0] - x, self._station_xy[:, 1] - y)
        rows = np.arange(len(dist))
        if category is not None:
            rows = rows[(self._stations["category"] == category).to_numpy()]
        rows = rows[np.lexsort((self._stations["station_id"].to_numpy()[rows], dist[rows]))][:k]
        frame = self._stations
        return [NearbyStation(station_id=str(frame.at[r, "station_id"]), name=str(frame.at[r, "name"]),
                              category=str(frame.at[r, "category"]), unit_id=str(frame.at[r, "unit_id"]),
                              distance_m=float(dist[r])) for r in rows]


# ---------------------------------------------------------------- duplicate finder support

def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp {moment!r} is naive: give a timezone-aware UTC datetime")
    return moment.timestamp()


@dataclass(frozen=True)
class OpenTickets:
    """Open tickets as parallel arrays: ids, WGS84 positions, opening times (epoch seconds)."""

    ids: np.ndarray
    lons: np.ndarray
    lats: np.ndarray
    opened_at: np.ndarray

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, float, float, datetime]]) -> OpenTickets:
        """Build from (ticket_id, lon, lat, opened_at) rows; opened_at must be tz-aware."""
        items = list(rows)
        return cls(ids=np.array([r[0] for r in items], dtype=object),
                   lons=np.array([r[1] for r in items], dtype=float),
                   lats=np.array([r[2] for r in items], dtype=float),
                   opened_at=np.array([_epoch(r[3]) for r in items], dtype=float))


@dataclass(frozen=True)
class NearbyTicket:
    """An open ticket near the query point."""

    ticket_id: str
    distance_m: float
    opened_at: float  # epoch seconds, UTC


def open_tickets_near(tickets: OpenTickets, lon: float, lat: float, radius_m: float,
                      since: datetime) -> list[NearbyTicket]:
    """Open tickets within `radius_m` metres of (lon, lat) opened at or after `since`, nearest
    first (ties by id). Metres come from the point's Gauss-Krüger zone, never from degrees."""
    cutoff = _epoch(since)
    recent = np.flatnonzero(tickets.opened_at >= cutoff)
    if recent.size == 0:
        return []
    epsg = gcrs.gk_zone_epsg(float(lon))
    x0, y0 = gcrs.to_metres(float(lon), float(lat), epsg=epsg)
    xs, ys = gcrs.to_metres(tickets.lons[recent], tickets.lats[recent], epsg=epsg)
    dist = np.hypot(np.asarray(xs) - x0, np.asarray(ys) - y0)
    inside = dist <= radius_m
    rows, dist = recent[inside], dist[inside]
    order = np.lexsort((tickets.ids[rows].astype(str), dist))
    return [NearbyTicket(ticket_id=str(tickets.ids[rows[i]]), distance_m=float(dist[i]),
                         opened_at=float(tickets.opened_at[rows[i]])) for i in order]
