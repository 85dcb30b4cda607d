"""Demo city, part one: the metric frame, shared geometry helpers, roads and administrative areas.

Geometry is built in metres east/north of the centre in CGCS2000 3-degree Gauss-Krüger CM 120E
(EPSG:4549, through `gis.crs`). See `simulators.democity` for the whole generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon
from shapely.ops import nearest_points

from gis import crs
from simulators import democity_names as names

__all__ = ["Frame", "Layer", "Model", "make_frame", "lattice", "voronoi_cells", "group_union",
           "nearest_label", "build_roads", "build_admin", "admin_layers"]

CENTER_LON, CENTER_LAT = 119.75, 36.38
METRIC_EPSG = 4549           # CGCS2000 / 3-degree Gauss-Kruger CM 120E
DECIMALS = 7                 # 1e-7 degree, about 1 cm
ROAD_SPEED = {"arterial": 60, "collector": 40, "local": 25}
CLASS_ORDER = {"arterial": 0, "collector": 1, "local": 2}
ONEWAY_STREETS = 6


# ---------------------------------------------------------------- frame and helpers

@dataclass
class Frame:
    """Local metric frame: metres east/north of the centre, and the way back to lon/lat."""

    x0: float
    y0: float

    def lonlat(self, geoms: Any) -> Any:
        """Local-metre geometries to lon/lat, rounded to `DECIMALS`."""
        def back(coords: np.ndarray) -> np.ndarray:
            lon, lat = crs.from_metres(coords[:, 0] + self.x0, coords[:, 1] + self.y0,
                                       epsg=METRIC_EPSG)
            return np.round(np.column_stack([lon, lat]), DECIMALS)
        return shapely.transform(geoms, back)


def make_frame() -> Frame:
    """The generator's metric frame, centred on (CENTER_LON, CENTER_LAT)."""
    x0, y0 = crs.to_metres(CENTER_LON, CENTER_LAT, epsg=METRIC_EPSG)
    return Frame(float(x0), float(y0))


def _noise(rng: np.random.Generator, t: np.ndarray, amp: float, waves: int = 3) -> np.ndarray:
    """Smooth 1-D noise: a few sines with random phase, total amplitude about `amp`."""
    out = np.zeros_like(t)
    for k in range(waves):
        freq = rng.uniform(0.5, 2.5) * (k + 1)
        out += amp / (k + 1) * np.sin(freq * t + rng.uniform(0, 2 * math.pi))
    return out


def blob(rng: np.random.Generator, a: float, b: float, wobble: float, n: int = 96) -> Polygon:
    """An irregular ellipse-like polygon centred on the origin."""
    theta = np.linspace(0, 2 * math.pi, n, endpoint=False)
    scale = 1.0 + _noise(rng, theta, wobble)
    return Polygon(np.column_stack([a * np.cos(theta) * scale, b * np.sin(theta) * scale]))


def _wobbly(rng: np.random.Generator, p0: tuple[float, float], p1: tuple[float, float],
            amp: float, step: float = 200.0) -> LineString:
    """A street from p0 to p1 that meanders sideways by up to about `amp` metres."""
    (x0, y0), (x1, y1) = p0, p1
    length = math.hypot(x1 - x0, y1 - y0)
    t = np.linspace(0.0, 1.0, max(2, int(length / step) + 1))
    off = _noise(rng, t * length / 1000.0, amp)
    nx_, ny_ = -(y1 - y0) / length, (x1 - x0) / length
    return LineString(np.column_stack([x0 + (x1 - x0) * t + nx_ * off,
                                       y0 + (y1 - y0) * t + ny_ * off]))


def lattice(rng: np.random.Generator, area: Any, spacing: float, jitter: float) -> np.ndarray:
    """Jittered lattice points (N, 2) inside `area`, in row-major order."""
    minx, miny, maxx, maxy = area.bounds
    xs, ys = np.meshgrid(np.arange(minx + spacing / 2, maxx, spacing),
                         np.arange(miny + spacing / 2, maxy, spacing))
    pts = np.column_stack([xs.ravel(), ys.ravel()])
    pts = pts + rng.uniform(-jitter, jitter, pts.shape)
    return pts[shapely.contains_xy(area, pts[:, 0], pts[:, 1])]


def _polygonal(geom: Any) -> Any:
    """Only the polygonal part of an overlay result."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts)


def voronoi_cells(points: np.ndarray, clip: Any) -> list[Any]:
    """Voronoi cells of `points`, in input order, clipped to `clip` (they tile it)."""
    cells = shapely.voronoi_polygons(MultiPoint(points), extend_to=clip.buffer(5000), ordered=True)
    return [_polygonal(cell.intersection(clip)) for cell in cells.geoms]


def group_union(cells: list[Any], labels: np.ndarray, count: int) -> list[Any]:
    """Union of the cells carrying each label 0..count-1."""
    return [shapely.union_all([cells[i] for i in np.flatnonzero(labels == k)]) for k in range(count)]


def nearest_label(points: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Index of the nearest seed for each point (Euclidean, metres)."""
    d = ((points[:, None, :] - seeds[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)


# ---------------------------------------------------------------- the city model

@dataclass
class Layer:
    """One output layer: rows of properties and local-metre geometries."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    geoms: list[Any] = field(default_factory=list)

    def add(self, geom: Any, **props: Any) -> None:
        """Append one feature."""
        self.rows.append(props)
        self.geoms.append(geom)


@dataclass
class Model:
    """Everything generated, in local metres, before writing."""

    rng: np.random.Generator
    city: Polygon
    urban: Polygon
    roads: Layer = field(default_factory=Layer)
    road_sources: list[tuple[str, str, LineString]] = field(default_factory=list)
    grid_seeds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    grid_cells: list[Any] = field(default_factory=list)
    grid_urban: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    grid_street: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    street_district: list[int] = field(default_factory=list)
    street_names: list[str] = field(default_factory=list)
    district_names: list[str] = field(default_factory=list)
    village_names: list[str] = field(default_factory=list)
    power_sites: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    power_names: list[str] = field(default_factory=list)
    layers: dict[str, Layer] = field(default_factory=dict)


# ---------------------------------------------------------------- roads

def _road_sources(model: Model) -> list[tuple[str, str, LineString]]:
    """Named source lines before noding: arterials, collectors, county roads, locals, lanes."""
    rng, city, urban = model.rng, model.city, model.urban
    lines: list[tuple[str, str, LineString]] = []
    for name, y in zip(names.ARTERIALS_EW, (-2600.0, -150.0, 2300.0)):
        lines.append((name, "arterial", _wobbly(rng, (-11000, y), (11000, y), 25)))
    for name, x in zip(names.ARTERIALS_NS, (-3100.0, 350.0, 3300.0)):
        lines.append((name, "arterial", _wobbly(rng, (x, -9000), (x, 9000), 25)))
    lines.append((names.ARTERIAL_DIAGONAL, "arterial", _wobbly(rng, (-9500, -6800), (9500, 6200), 250, 300)))
    lines.append((names.ARTERIAL_RING, "arterial", urban.exterior))
    ring = urban.buffer(40)
    for name, y in zip(names.COLLECTORS_EW, (-3300.0, -1400.0, 1050.0, 3150.0)):
        lines.append((name, "collector", _wobbly(rng, (-5000, y), (5000, y), 20).intersection(ring)))
    for name, x in zip(names.COLLECTORS_NS, (-1450.0, 1850.0)):
        lines.append((name, "collector", _wobbly(rng, (x, -4500), (x, 4500), 20).intersection(ring)))
    angles = np.radians([20, 65, 110, 160, 200, 245, 290, 335]) + rng.uniform(-0.1, 0.1, 8)
    for name, angle in zip(names.COUNTY_ROADS[:8], angles):
        end = (12000 * math.cos(angle), 12000 * math.sin(angle))
        start = (3000 * math.cos(angle), 3000 * math.sin(angle))
        lines.append((name, "collector", _wobbly(rng, start, end, 90)))
    cross = (((-10000, -5600), (10000, -5600)), ((-10000, 5000), (10000, 5000)),
             ((-6600, -8000), (-6600, 8000)), ((6800, -8000), (6800, 8000)))
    for name, (p0, p1) in zip(names.COUNTY_ROADS[8:], cross):
        lines.append((name, "collector", _wobbly(rng, p0, p1, 120)))
    words = iter(names.LOCAL_WORDS)
    major_y = [-2600.0, -150.0, 2300.0, -3300.0, -1400.0, 1050.0, 3150.0]
    major_x = [-3100.0, 350.0, 3300.0, -1450.0, 1850.0]
    for y in np.arange(-3700.0, 3700.0, 390.0):
        y = float(y + rng.uniform(-40, 40))
        if min(abs(y - m) for m in major_y) > 150:
            lines.append((next(words) + "街", "local",
                          _wobbly(rng, (-5000, y), (5000, y), 12).intersection(ring)))
    for x in np.arange(-4300.0, 4300.0, 420.0):
        x = float(x + rng.uniform(-40, 40))
        if min(abs(x - m) for m in major_x) > 150:
            lines.append((next(words) + "路", "local",
                          _wobbly(rng, (x, -4500), (x, 4500), 12).intersection(ring)))
    return [(n, c, shapely.intersection(g, city)) for n, c, g in lines if not g.is_empty]


def _village_lanes(model: Model, majors: list[Any]) -> list[tuple[str, str, LineString]]:
    """Each village gets a 600 m main street and a lane to the nearest major road."""
    tree = shapely.STRtree(majors)
    lanes = []
    for village, (x, y) in zip(model.village_names, model.grid_seeds[~model.grid_urban]):
        street = LineString([(x - 300, y), (x + 300, y)])
        lanes.append((village + "村中街", "local", street))
        target = majors[int(tree.query_nearest(Point(x, y))[0])]
        near = nearest_points(Point(x, y), target)[1]
        dx, dy = near.x - x, near.y - y
        dist = math.hypot(dx, dy) or 1.0
        lane = LineString([(x, y), (near.x + dx / dist * 8, near.y + dy / dist * 8)])
        lanes.append((village + "村路", "local", lane))
    return [(n, c, g.intersection(model.city)) for n, c, g in lanes]


def _node_key(x: float, y: float) -> tuple[float, float]:
    return (round(x, 3), round(y, 3))


def _segments(sources: list[tuple[str, str, LineString]]) -> list[tuple[int, LineString]]:
    """Node the source lines at every crossing; each piece oriented like its source line."""
    noded = shapely.node(shapely.MultiLineString(
        [part for _, _, g in sources for part in getattr(g, "geoms", [g]) if not part.is_empty]))
    pieces = list(noded.geoms)
    mids = shapely.line_interpolate_point(pieces, 0.5, normalized=True)
    src_geoms = [g for _, _, g in sources]
    owners = shapely.STRtree(src_geoms).query_nearest(mids, all_matches=False)[1]
    out = []
    for piece, owner in zip(pieces, owners):
        src = src_geoms[owner]
        a, b = Point(piece.coords[0]), Point(piece.coords[-1])
        if src.project(b) < src.project(a) and not src.is_ring:
            piece = piece.reverse()
        out.append((int(owner), piece))
    return out


def _prune(segments: list[tuple[int, LineString]]) -> list[tuple[int, LineString]]:
    """Drop short dead-end stubs and keep the largest connected piece of network."""
    for _ in range(3):
        degree: dict[tuple[float, float], int] = {}
        for _, seg in segments:
            for c in (seg.coords[0], seg.coords[-1]):
                degree[_node_key(*c)] = degree.get(_node_key(*c), 0) + 1
        segments = [(o, s) for o, s in segments if s.length >= 60 or (
            degree[_node_key(*s.coords[0])] > 1 and degree[_node_key(*s.coords[-1])] > 1)]
    graph = nx.Graph()
    for i, (_, seg) in enumerate(segments):
        graph.add_edge(_node_key(*seg.coords[0]), _node_key(*seg.coords[-1]), index=i)
    biggest = max(nx.connected_components(graph), key=len)
    return [s for s in segments if _node_key(*s[1].coords[0]) in biggest]


def _oneway_digraph(edges: list[tuple[tuple, tuple, bool]]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for a, b, oneway in edges:
        graph.add_edge(a, b)
        if not oneway:
            graph.add_edge(b, a)
    return graph


def build_roads(model: Model) -> None:
    """Generate, node, prune and attribute the road network; pick a few one-way streets."""
    sources = _road_sources(model)
    majors = [g for _, c, g in sources if c != "local"]
    sources += _village_lanes(model, majors)
    model.road_sources = sources
    segments = _prune(_segments(sources))
    segments.sort(key=lambda s: (CLASS_ORDER[sources[s[0]][1]], sources[s[0]][0],
                                 sources[s[0]][2].project(Point(s[1].coords[0]))))
    oneway = [False] * len(segments)
    geoms = [s for _, s in segments]
    locals_ = sorted({sources[o][0] for o, _ in segments
                      if sources[o][1] == "local" and model.urban.contains(sources[o][2].centroid)})
    rng_order = model.rng.permutation(len(locals_))
    accepted = 0
    reversed_names: set[str] = set()
    for pick in rng_order:
        if accepted == ONEWAY_STREETS:
            break
        members = [i for i, (o, _) in enumerate(segments) if sources[o][0] == locals_[pick]]
        trial_geoms = list(geoms)
        if accepted % 2:  # alternate directions on neighbouring one-way streets
            for i in members:
                trial_geoms[i] = geoms[i].reverse()
        trial = [oneway[i] or i in members for i in range(len(segments))]
        edges = [(_node_key(*g.coords[0]), _node_key(*g.coords[-1]), w)
                 for g, w in zip(trial_geoms, trial)]
        if nx.is_strongly_connected(_oneway_digraph(edges)):
            if accepted % 2:
                reversed_names.add(locals_[pick])
            geoms, oneway, accepted = trial_geoms, trial, accepted + 1
    # house numbers run along the digitised direction, so turn the source lines too
    model.road_sources = [(n, c, g.reverse() if n in reversed_names else g) for n, c, g in sources]
    for i, ((owner, _), geom) in enumerate(zip(segments, geoms)):
        name, cls, _ = sources[owner]
        model.roads.add(geom, road_id=f"R{i + 1:05d}", name=name, **{"class": cls},
                        speed_kmh=ROAD_SPEED[cls], oneway=oneway[i],
                        length_m=round(geom.length, 1))


# ---------------------------------------------------------------- administrative areas

def _compass(x: float, y: float) -> str:
    sector = int(((math.degrees(math.atan2(y, x)) + 22.5) % 360) // 45)
    return names.COMPASS[sector]


def build_admin(model: Model) -> None:
    """Community grids (Voronoi of jittered seeds), grouped into streets, grouped into districts."""
    rng, city, urban = model.rng, model.city, model.urban
    urban_seeds = lattice(rng, urban, 700.0, 200.0)
    rural_area = city.difference(urban.buffer(400))
    rural_seeds = lattice(rng, rural_area, 2300.0, 600.0)
    seeds = np.vstack([urban_seeds, rural_seeds])
    model.grid_seeds = seeds
    model.grid_urban = np.arange(len(seeds)) < len(urban_seeds)
    model.grid_cells = voronoi_cells(seeds, city)
    angle0 = rng.uniform(0, 2 * math.pi / 7)
    urban_street_seeds = np.array([(0, 0), (-1900, 1300), (1900, 1300), (-1900, -1400),
                                   (1900, -1400)], float)
    rural_street_seeds = np.array([(6500 * math.cos(angle0 + k * 2 * math.pi / 7),
                                    5200 * math.sin(angle0 + k * 2 * math.pi / 7))
                                   for k in range(7)])
    street = np.where(model.grid_urban, nearest_label(seeds, urban_street_seeds),
                      len(urban_street_seeds) + nearest_label(seeds, rural_street_seeds))
    used = sorted(set(street.tolist()))
    remap = {old: new for new, old in enumerate(used)}
    model.grid_street = np.array([remap[s] for s in street])
    all_names = names.STREETS_URBAN + names.STREETS_RURAL
    model.street_names = [all_names[s] for s in used]
    rural_streets = [remap[s] for s in used if s >= len(urban_street_seeds)]
    rural_streets.sort(key=lambda s: math.atan2(*seeds[model.grid_street == s].mean(0)[::-1]))
    groups = [rural_streets[:2], rural_streets[2:4], rural_streets[4:]]
    model.street_district = [0] * len(used)
    model.district_names = [names.DISTRICT_URBAN]
    for d, group in enumerate(groups, start=1):
        for s in group:
            model.street_district[s] = d
        centre = np.vstack([seeds[model.grid_street == s] for s in group]).mean(0)
        model.district_names.append(_compass(*centre) + "片区")
    villages = []
    for i in range(int((~model.grid_urban).sum())):
        surname = names.SURNAMES[(i * 5) % len(names.SURNAMES)]
        villages.append(surname + names.VILLAGE_SUFFIXES[(i * 3) % len(names.VILLAGE_SUFFIXES)])
    model.village_names = villages


def admin_layers(model: Model) -> None:
    """Write districts, streets and grids with hierarchical codes (lower code = earlier)."""
    code = names.CITY_CODE
    districts, streets, grids = Layer(), Layer(), Layer()
    street_ids: dict[int, str] = {}
    for d, dname in enumerate(model.district_names):
        did = f"{code}{d + 1:02d}"
        members = [s for s in range(len(model.street_names)) if model.street_district[s] == d]
        cells = [model.grid_cells[i] for i in np.flatnonzero(np.isin(model.grid_street, members))]
        districts.add(shapely.union_all(cells), QHDM=did, QHMC=dname)
        for k, s in enumerate(members):
            sid = f"{did}{k + 1:02d}"
            street_ids[s] = sid
            streets.add(shapely.union_all([model.grid_cells[i]
                                           for i in np.flatnonzero(model.grid_street == s)]),
                        JDDM=sid, JDMC=model.street_names[s], QHDM=did)
    counters: dict[int, int] = {}
    village = iter(model.village_names)
    words = iter(range(10_000))
    community: dict[int, str] = {}
    centre_radius = np.hypot(model.grid_seeds[:, 0] / 9000, model.grid_seeds[:, 1] / 7000)
    for i, cell in enumerate(model.grid_cells):
        s = int(model.grid_street[i])
        counters[s] = counters.get(s, 0) + 1
        sname = model.street_names[s]
        if model.grid_urban[i]:  # three grids to a community, communities named in turn
            if counters[s] % 3 == 1:
                community[s] = names.COMMUNITY_WORDS[next(words) % len(names.COMMUNITY_WORDS)]
            gname = f"{sname}{community[s]}社区第{(counters[s] - 1) % 3 + 1}网格"
            area_class = "urban"
        else:
            gname = f"{sname}{next(village)}村网格"
            area_class = "remote" if centre_radius[i] > 0.8 else "rural"
        grids.add(cell, WGBM=f"{street_ids[s]}{counters[s]:02d}", WGMC=gname,
                  JDDM=street_ids[s], QHDM=street_ids[s][:8], QYLB=area_class)
    order = sorted(range(len(grids.rows)), key=lambda i: grids.rows[i]["WGBM"])
    grids = Layer([grids.rows[i] for i in order], [grids.geoms[i] for i in order])
    model.layers.update(districts=districts, streets=streets, grids=grids)
