"""Demo city, part three: house-number addresses along the roads, residential compounds, POIs,
villages and their groups.

House numbers run along each named road in its digitised direction: position k (20 + 40k metres
from the start) is number 2k+1 on the left side and 2k+2 on the right, so odd and even never
swap sides and numbers grow along the road. POIs take the number of the spot they stand at and
carry their class (`poi_type`: 医院, 学校, 市场, 交通 ...) and the short names people use (`alias`,
";"-separated). Villages (kind `village`, poi_type 村庄) stand at their grid's seed with groups
1..N (村民小组, kind `village`) on a ring 150-300 m around; their address and alias name the town.
Everything added later is appended after the older rows with random draws after theirs, so the
ids and places of the older rows do not change (the kept address test set names them).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point

from simulators import democity_names as names
from simulators.democity_areas import Layer, Model

__all__ = ["build_places", "NUMBER_STEP_M", "NUMBER_START_M"]

NUMBER_START_M = 20.0
NUMBER_STEP_M = 40.0
SETBACK_M = 18.0
ADDRESS_SHARE = 0.3          # share of number positions that carry a building
VILLAGE_RADIUS_M = 350.0
GROUP_RING_M = (150.0, 300.0)


def _main_part(geom: Any) -> LineString | None:
    """The longest piece of a (possibly multi-part) road line: the one numbers run along."""
    if geom.is_empty:
        return None
    merged = shapely.line_merge(geom) if geom.geom_type == "MultiLineString" else geom
    parts = list(getattr(merged, "geoms", [merged]))
    return max(parts, key=lambda g: g.length)


def _frames(line: LineString, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points on `line` at `dist`, and the unit left normals there."""
    at = shapely.get_coordinates(shapely.line_interpolate_point(line, dist))
    ahead = shapely.get_coordinates(shapely.line_interpolate_point(line, np.minimum(dist + 1, line.length)))
    behind = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(dist - 1, 0)))
    tangent = ahead - behind
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return at, np.column_stack([-tangent[:, 1], tangent[:, 0]])


def _number_spot(line: LineString, k: int, left: bool, setback: float) -> tuple[float, float]:
    at, normal = _frames(line, np.array([NUMBER_START_M + NUMBER_STEP_M * k]))
    side = 1.0 if left else -1.0
    x, y = at[0] + side * setback * normal[0]
    return float(x), float(y)


class _Addresser:
    """Finds the road, number and spot for a point: the numbering shared by addresses and POIs."""

    def __init__(self, model: Model) -> None:
        self.lines: list[tuple[str, LineString]] = []
        in_network = {row["name"] for row in model.roads.rows}
        for name, _, geom in model.road_sources:
            if name not in in_network:  # pruned away as a stub or a detached piece
                continue
            part = _main_part(geom)
            if part is not None and part.length > NUMBER_START_M + NUMBER_STEP_M and not part.is_ring:
                self.lines.append((name, part))
        self.tree = shapely.STRtree([g for _, g in self.lines])

    def number_at(self, x: float, y: float, setback: float) -> tuple[str, int, tuple[float, float]]:
        """Road name, house number and the numbered spot nearest (x, y)."""
        name, line = self.lines[int(self.tree.query_nearest(Point(x, y))[0])]
        d = line.project(Point(x, y))
        k = int(max(0, min(round((d - NUMBER_START_M) / NUMBER_STEP_M),
                           (line.length - NUMBER_START_M) // NUMBER_STEP_M)))
        at, normal = _frames(line, np.array([NUMBER_START_M + NUMBER_STEP_M * k]))
        left = float(np.dot(np.array([x, y]) - at[0], normal[0])) >= 0
        return name, (2 * k + 1 if left else 2 * k + 2), _number_spot(line, k, left, setback)


def _street_addresses(model: Model, addresser: _Addresser, out: Layer) -> None:
    rng = model.rng
    villages = model.grid_seeds[~model.grid_urban]
    road_tree = shapely.STRtree(model.roads.geoms)
    for name, line in addresser.lines:
        count = int((line.length - NUMBER_START_M) // NUMBER_STEP_M) + 1
        dist = NUMBER_START_M + NUMBER_STEP_M * np.arange(count)
        at, normal = _frames(line, dist)
        for side, parity in ((1.0, 1), (-1.0, 2)):
            pts = at + side * SETBACK_M * normal
            keep = rng.random(count) < ADDRESS_SHARE
            inside = shapely.contains_xy(model.urban, pts[:, 0], pts[:, 1])
            near_village = (np.hypot(pts[:, None, 0] - villages[None, :, 0],
                                     pts[:, None, 1] - villages[None, :, 1]).min(1)
                            < VILLAGE_RADIUS_M) if len(villages) else np.zeros(count, bool)
            in_city = shapely.contains_xy(model.city, pts[:, 0], pts[:, 1])
            geoms = shapely.points(pts)
            _, gap = road_tree.query_nearest(geoms, return_distance=True, all_matches=False)
            ok = keep & in_city & (inside | near_village) & (gap >= 12.0)
            for k in np.flatnonzero(ok):
                number = 2 * int(k) + parity
                out.add(geoms[k], addr_id="", address=f"{names.CITY_NAME}{name}{number}号",
                        road=name, house_number=number, kind="address", name="", poi_type="")


def _random_urban_point(model: Model) -> tuple[float, float]:
    minx, miny, maxx, maxy = model.urban.bounds
    while True:
        x, y = model.rng.uniform(minx, maxx), model.rng.uniform(miny, maxy)
        if model.urban.contains(Point(x, y)):
            return float(x), float(y)


def _poi(pois: Layer, addresser: _Addresser, x: float, y: float, name: str, poi_type: str) -> tuple:
    road, number, (px, py) = addresser.number_at(x, y, 30.0)
    pois.add(Point(px, py), addr_id="", address=f"{names.CITY_NAME}{road}{number}号", road=road,
             house_number=number, kind="poi", name=name, poi_type=poi_type,
             alias=";".join(names.POI_ALIASES.get(name, ())))
    return px, py, road


def _villages(model: Model, pois: Layer) -> None:
    """Each rural grid's village at its seed (村庄), named with its town in the address."""
    rural = np.flatnonzero(~model.grid_urban)
    for village, i in zip(model.village_names, rural):
        x, y = model.grid_seeds[i]
        town = model.street_names[int(model.grid_street[i])]
        name = village if village.endswith("村") else f"{village}村"
        pois.add(Point(x, y), addr_id="", address=f"{names.CITY_NAME}{town}{name}", road="",
                 house_number=None, kind="village", name=name, poi_type="村庄", alias=f"{town}{name}")


def _village_groups(model: Model, pois: Layer) -> None:
    """Groups 1..N (村民小组) of every village, evenly round a ring about its centre."""
    rng = model.rng
    for row, geom in [(r, g) for r, g in zip(pois.rows, pois.geoms) if r["poi_type"] == "村庄"]:
        count = int(rng.integers(*names.VILLAGE_GROUPS))
        start = rng.uniform(0, 2 * math.pi)
        for g in range(1, count + 1):
            angle = start + 2 * math.pi * (g - 1) / count + rng.uniform(-0.2, 0.2)
            radius = rng.uniform(*GROUP_RING_M)
            point = Point(geom.x + radius * math.cos(angle), geom.y + radius * math.sin(angle))
            pois.add(point, addr_id="", address=f"{row['address']}{g}组", road="", house_number=None,
                     kind="village", name=f"{row['name']}{g}组", poi_type="村民小组", alias=f"{row['alias']}{g}组")


def _compounds(model: Model, addresser: _Addresser, pois: Layer, addresses: Layer) -> None:
    rng = model.rng
    for name in names.COMPOUNDS:
        x, y = _random_urban_point(model)
        px, py, _ = _poi(pois, addresser, x, y, name, "小区")
        angle = rng.uniform(0, math.pi / 2)
        ux, uy = math.cos(angle), math.sin(angle)
        for b in range(1, int(rng.integers(6, 15)) + 1):
            bx = px + (b % 4) * 28 * ux - (b // 4) * 28 * uy
            by = py + (b % 4) * 28 * uy + (b // 4) * 28 * ux
            for u in range(1, int(rng.integers(2, 4)) + 1):
                addresses.add(Point(bx + 6 * u * ux, by + 6 * u * uy), addr_id="",
                              address=f"{name}{b}号楼{u}单元", road="", house_number=None,
                              kind="address", name=name, poi_type="")


def build_places(model: Model) -> None:
    """Addresses (house numbers, compound buildings) and POIs (compounds, services, villages)."""
    addresser = _Addresser(model)
    addresses, pois = Layer(), Layer()
    _street_addresses(model, addresser, addresses)
    _compounds(model, addresser, pois, addresses)
    for poi_type, poi_names in names.POI_URBAN:
        for name in poi_names:
            _poi(pois, addresser, *_random_urban_point(model), name, poi_type)
    urban_streets = [s for s, d in enumerate(model.street_district) if d == 0]
    for s in urban_streets:
        gx, gy = model.grid_seeds[model.grid_street == s].mean(0)
        for poi_type, template in names.POI_PER_URBAN_STREET:
            _poi(pois, addresser, gx + model.rng.uniform(-300, 300),
                 gy + model.rng.uniform(-300, 300), template.format(model.street_names[s]), poi_type)
    for s in (s for s, d in enumerate(model.street_district) if d != 0):
        grids = np.flatnonzero(model.grid_street == s)
        gx, gy = model.grid_seeds[grids[0]]
        for poi_type, template in names.POI_PER_TOWN:
            _poi(pois, addresser, gx + model.rng.uniform(-250, 250),
                 gy + model.rng.uniform(-250, 250), template.format(model.street_names[s]), poi_type)
    _villages(model, pois)
    for name in names.POI_MARKETS_URBAN:  # generator 3: appended, drawn after everything above
        _poi(pois, addresser, *_random_urban_point(model), name, "市场")
    for s in (s for s, d in enumerate(model.street_district) if d != 0):
        gx, gy = model.grid_seeds[np.flatnonzero(model.grid_street == s)[0]]
        for poi_type, template in names.POI_PER_TOWN_MORE:
            _poi(pois, addresser, gx + model.rng.uniform(-300, 300),
                 gy + model.rng.uniform(-300, 300), template.format(model.street_names[s]), poi_type)
    _village_groups(model, pois)
    for k, row in enumerate(addresses.rows):
        row["addr_id"] = f"A{k + 1:06d}"
    for k, row in enumerate(pois.rows):
        row["addr_id"] = f"POI{k + 1:05d}"
    model.layers.update(addresses=addresses, pois=pois)
