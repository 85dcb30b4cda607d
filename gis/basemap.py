"""The street base map drawn from a city's own layers: raster tiles, pure (layers in, PNG bytes out).

`BaseMap` takes the city's districts, streets (街道), roads, land use (parks and water) and the
villages and POIs of its addresses layer (WGS84 GeoDataFrames, as `gis.layers.City.layer` gives
them) and draws 256-pixel Web Mercator tiles (EPSG:3857, the XYZ grid every web map uses): the
districts' land, parks and water, the streets' boundaries, the roads by class with a casing, and
the Chinese names of roads, streets, districts, lakes and rivers, and places (a dot and the
name), each at the zooms where it reads.
Geometry is drawn at twice the size and scaled down (Pillow's lines have no anti-aliasing);
labels are placed once per zoom over the whole city, so that a name crossing a tile edge is
drawn in both tiles at the same place, and none overlaps another. Tile enumeration and bounds are
mercantile's; drawing and text (FreeType, a CJK font passed in) Pillow's.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import mercantile
import numpy as np
import shapely
from PIL import Image, ImageDraw, ImageFont

__all__ = ["BaseMap", "Label", "TILE_SIZE", "DEFAULT_ZOOMS", "RENDERER_VERSION", "world_pixels"]

TILE_SIZE = 256
DEFAULT_ZOOMS = range(11, 16)  # a county-level city (~20 km): ~700 tiles, seconds to draw
RENDERER_VERSION = 3  # bump when the drawing changes: cached tile sets are drawn again
_SUPER = 2  # geometry is drawn at this many times the tile size, then scaled down
_HALF = 20037508.342789244  # half the Web Mercator world's width in metres
_LABEL_GAP_PX = 6  # least distance between two labels

BACKGROUND = (238, 236, 229)  # outside the city
LAND = (246, 244, 238)  # inside a district
DISTRICT_EDGE = (150, 140, 170)
STREET_EDGE = (196, 190, 208)
TEXT = (60, 60, 60)
PARK = (212, 234, 196)
WATER = (170, 205, 235)
WATER_EDGE = (140, 180, 220)
WATER_TEXT = (40, 90, 160)
WATER_LABELS = range(13, 17)  # zooms at which lakes' and rivers' names are written
HALO = (255, 255, 255)


@dataclass(frozen=True)
class RoadStyle:
    """How a road class is drawn: fill and casing colours, width in pixels by zoom, the first
    zoom it appears at and the first zoom its name is written at."""

    fill: tuple[int, int, int]
    casing: tuple[int, int, int]
    widths: dict[int, float]
    min_zoom: int
    label_zoom: int
    label_size: int


ROADS = {
    "arterial": RoadStyle((250, 214, 120), (200, 150, 60), {11: 1.6, 12: 2.2, 13: 3.5, 14: 5.5, 15: 8.0, 16: 11.0}, 11, 13, 13),
    "collector": RoadStyle((255, 250, 220), (190, 175, 140), {11: 0.8, 12: 1.2, 13: 2.2, 14: 3.5, 15: 5.5, 16: 8.0}, 11, 14, 12),
    "local": RoadStyle((255, 255, 255), (200, 196, 190), {13: 1.0, 14: 1.8, 15: 3.2, 16: 5.0}, 13, 15, 11),
}
ROAD_ORDER = ("local", "collector", "arterial")  # drawn bottom to top; labelled top to bottom
DISTRICT_LABELS = range(11, 14)  # zooms at which district names are written
STREET_LABELS = range(13, 15)  # and the streets' (街道) names
LAYERS = ("districts", "streets", "roads", "addresses", "landuse")  # the city's layers a base map is drawn from
PLACE_KINDS = ("village", "poi")  # the places (of the addresses layer) named on the map, with a dot


@dataclass(frozen=True)
class PlaceStyle:
    """A named place's dot colour and the first zoom it is shown at."""

    colour: tuple[int, int, int]
    min_zoom: int


VILLAGE = PlaceStyle((150, 120, 90), 13)  # 村: where a rural call comes from
POIS = {"医院": PlaceStyle((200, 50, 50), 14), "学校": PlaceStyle((50, 100, 190), 15),
        "政府机关": PlaceStyle((120, 60, 150), 14), "交通": PlaceStyle((40, 40, 40), 14)}
POI = PlaceStyle((90, 90, 90), 15)  # any other type (小区, 商场, 银行 ...)


def world_pixels(x: np.ndarray, y: np.ndarray, zoom: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Web Mercator metres to pixels of the whole world at a zoom (origin top left)."""
    size = TILE_SIZE * scale * 2 ** zoom
    return (x + _HALF) / (2 * _HALF) * size, (_HALF - y) / (2 * _HALF) * size


@dataclass(frozen=True)
class Label:
    """A name placed on the world's pixels of one zoom: its centre, angle (degrees,
    counter-clockwise) and size, and the box it covers."""

    text: str
    x: float
    y: float
    angle: float
    size: int
    box: tuple[float, float, float, float]  # left, top, right, bottom in world pixels (its dot's too)
    dot: tuple[float, float, tuple[int, int, int]] | None = None  # a place's dot: centre and colour
    colour: tuple[int, int, int] = TEXT


@dataclass
class _Layer:
    geoms: np.ndarray  # shapely geometries in Web Mercator metres
    tree: shapely.STRtree
    rows: list[dict[str, Any]] = field(default_factory=list)


class BaseMap:
    """A city's base map: its layers projected once, its labels placed once per zoom, any tile
    drawn on request (`tile_png`)."""

    @classmethod
    def from_city(cls, city: Any, font_path: str) -> "BaseMap":
        """The base map of a loaded city (`gis.layers.City`: its layers by kind)."""
        return cls({kind: city.layer(kind) for kind in LAYERS}, font_path)

    def __init__(self, layers: dict[str, gpd.GeoDataFrame], font_path: str) -> None:
        self.font_path = font_path
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self._labels: dict[int, tuple[list[Label], shapely.STRtree | None]] = {}
        self._label_images: dict[tuple[int, int], Image.Image] = {}
        self.layers: dict[str, _Layer] = {}
        for kind in ("districts", "streets", "roads", "places", "landuse"):
            frame = layers.get(kind)
            if kind == "places":  # the villages and POIs of the addresses layer, not the house numbers
                frame = layers.get("addresses")
                if frame is not None and "kind" in frame and "name" in frame:
                    frame = frame[frame["kind"].isin(PLACE_KINDS)]
                else:
                    frame = None
            if frame is None or frame.empty:
                continue
            geoms = shapely.transform(np.asarray(frame.geometry.values, dtype=object), _to_mercator)
            rows = frame.drop(columns="geometry").to_dict("records")
            self.layers[kind] = _Layer(geoms, shapely.STRtree(geoms), rows)
        if "districts" not in self.layers and "roads" not in self.layers:
            raise ValueError("a base map needs the city's districts or roads")

    # -- extent ------------------------------------------------------------------------------------

    def bounds(self) -> tuple[float, float, float, float]:
        """The city's extent in WGS84: west, south, east, north."""
        boxes = [shapely.total_bounds(layer.geoms) for layer in self.layers.values()]
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        west, south = mercantile.lnglat(x0, y0)
        east, north = mercantile.lnglat(x1, y1)
        return west, south, east, north

    def tiles(self, zooms: Sequence[int] = DEFAULT_ZOOMS) -> list[mercantile.Tile]:
        """Every tile over the city's extent at these zooms, in zoom order."""
        return list(mercantile.tiles(*self.bounds(), zooms=list(zooms)))

    # -- drawing -----------------------------------------------------------------------------------

    def tile_png(self, z: int, x: int, y: int) -> bytes:
        """One tile as PNG bytes (256 × 256, RGB)."""
        left, bottom, right, top = mercantile.xy_bounds(x, y, z)
        size = TILE_SIZE * _SUPER
        scale = size / (right - left)
        margin = 24 / scale * _SUPER  # a road's width and casing beyond the tile's edge
        query = shapely.box(left - margin, bottom - margin, right + margin, top + margin)
        image = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(image)

        def pixels(geom: Any) -> list[list[tuple[float, float]]]:
            parts = shapely.get_parts(geom)
            out = []
            for part in parts:
                ring = shapely.get_exterior_ring(part) if shapely.get_type_id(part) == 3 else part
                xy = shapely.get_coordinates(ring)
                px = (xy[:, 0] - left) * scale
                py = (top - xy[:, 1]) * scale
                out.append(list(zip(px.tolist(), py.tolist())))
            return out

        def holes(geom: Any) -> list[list[tuple[float, float]]]:
            out = []
            for part in shapely.get_parts(geom):
                for i in range(shapely.get_num_interior_rings(part)):
                    xy = shapely.get_coordinates(shapely.get_interior_ring(part, i))
                    out.append(list(zip(((xy[:, 0] - left) * scale).tolist(), ((top - xy[:, 1]) * scale).tolist())))
            return out

        districts = self.layers.get("districts")
        if districts is not None:
            hits = districts.tree.query(query)
            for i in hits:
                for ring in pixels(districts.geoms[i]):
                    draw.polygon(ring, fill=LAND)
                for ring in holes(districts.geoms[i]):
                    draw.polygon(ring, fill=BACKGROUND)
        landuse = self.layers.get("landuse")
        if landuse is not None:  # parks, then water over them
            hits = sorted(landuse.tree.query(query), key=lambda i: landuse.rows[i].get("landuse") == "water")
            for i in hits:
                water = landuse.rows[i].get("landuse") == "water"
                for ring in pixels(landuse.geoms[i]):
                    draw.polygon(ring, fill=WATER if water else PARK, outline=WATER_EDGE if water else None)
                for ring in holes(landuse.geoms[i]):
                    draw.polygon(ring, fill=LAND)
        streets = self.layers.get("streets")
        if streets is not None and z >= 13:
            for i in streets.tree.query(query):
                for ring in pixels(streets.geoms[i]):
                    draw.line(ring + ring[:1], fill=STREET_EDGE, width=_SUPER)
        if districts is not None:
            for i in districts.tree.query(query):
                for ring in pixels(districts.geoms[i]):
                    draw.line(ring + ring[:1], fill=DISTRICT_EDGE, width=int(2 * _SUPER))
        roads = self.layers.get("roads")
        if roads is not None:
            hits = roads.tree.query(query)
            by_class: dict[str, list[int]] = {}
            for i in hits:
                by_class.setdefault(str(roads.rows[i].get("class")), []).append(int(i))
            drawn = [(c, ROADS[c], by_class.get(c, [])) for c in ROAD_ORDER if z >= ROADS[c].min_zoom]
            for casing in (True, False):
                for _, style, indexes in drawn:
                    width = _width(style, z) * _SUPER + (2 * _SUPER if casing and z >= 13 else 0)
                    colour = style.casing if casing else style.fill
                    if casing and z < 13:
                        continue  # thin lines at small zooms: no casing
                    for i in indexes:
                        for line in pixels(roads.geoms[i]):
                            _thick_line(draw, line, colour, width)
        tile = image.resize((TILE_SIZE, TILE_SIZE), Image.Resampling.LANCZOS)
        self._draw_labels(tile, z, x, y)
        out = io.BytesIO()
        tile.save(out, format="PNG", compress_level=6)
        return out.getvalue()

    def render(self, zooms: Sequence[int] = DEFAULT_ZOOMS,
               progress: Callable[[str], None] | None = None) -> Iterator[tuple[int, int, int, bytes]]:
        """(z, x, y, png) of every tile over the city at these zooms (XYZ numbering, y from the
        north), saying after each zoom how many were drawn."""
        for zoom in zooms:
            tiles = list(mercantile.tiles(*self.bounds(), zooms=[zoom]))
            for tile in tiles:
                yield tile.z, tile.x, tile.y, self.tile_png(tile.z, tile.x, tile.y)
            if progress is not None:
                progress(f"zoom {zoom}: {len(tiles)} tiles")

    # -- labels ------------------------------------------------------------------------------------

    def labels(self, zoom: int) -> list[Label]:
        """The names written at a zoom, placed over the whole city (district and street names
        first, then roads by class), none overlapping another."""
        return self._placed(zoom)[0]

    def _placed(self, zoom: int) -> tuple[list[Label], shapely.STRtree | None]:
        if zoom in self._labels:
            return self._labels[zoom]
        placed: list[Label] = []
        taken: list[Any] = []

        def free(box: tuple[float, float, float, float]) -> bool:
            shape = shapely.box(*box).buffer(_LABEL_GAP_PX)
            return not any(shape.intersects(other) for other in taken)

        def take(label: Label) -> None:
            placed.append(label)
            taken.append(shapely.box(*label.box))

        for kind, zooms, size in (("districts", DISTRICT_LABELS, 16), ("streets", STREET_LABELS, 13)):
            layer = self.layers.get(kind)
            if layer is None or zoom not in zooms:
                continue
            for geom, row in zip(layer.geoms, layer.rows):
                name = str(row.get("name") or "")
                if not name:
                    continue
                point = shapely.point_on_surface(geom)
                px, py = world_pixels(np.array([point.x]), np.array([point.y]), zoom)
                label = self._label(name, float(px[0]), float(py[0]), 0.0, size)
                if free(label.box):
                    take(label)
        landuse = self.layers.get("landuse")
        if landuse is not None and zoom in WATER_LABELS:  # lakes and rivers, named inside them
            for geom, row in zip(landuse.geoms, landuse.rows):
                if row.get("landuse") != "water" or not row.get("name"):
                    continue
                point = shapely.point_on_surface(geom)
                px, py = world_pixels(np.array([point.x]), np.array([point.y]), zoom)
                label = self._label(str(row["name"]), float(px[0]), float(py[0]), 0.0, 12)
                label = Label(label.text, label.x, label.y, 0.0, 12, label.box, None, WATER_TEXT)
                if free(label.box):
                    take(label)
        roads = self.layers.get("roads")
        for cls in reversed(ROAD_ORDER):  # the arterials' names, then the places', then the other roads'
            style = ROADS[cls]
            if roads is not None and zoom >= style.label_zoom:
                for geom, row in zip(roads.geoms, roads.rows):
                    if str(row.get("class")) != cls or not row.get("name"):
                        continue
                    for label in self._along(str(row["name"]), geom, zoom, style.label_size):
                        if free(label.box):
                            take(label)
            if cls == "arterial":
                for label in self._places(zoom):
                    if free(label.box):
                        take(label)
        result = (placed, shapely.STRtree(taken) if taken else None)
        self._labels[zoom] = result
        return result

    def _places(self, zoom: int) -> Iterator[Label]:
        """The named places shown at a zoom: a dot, the name to its right (hospitals, offices and
        stations before the rest, villages from zoom 13)."""
        places = self.layers.get("places")
        if places is None:
            return
        shown = []
        for geom, row in zip(places.geoms, places.rows):
            style = VILLAGE if row.get("kind") == "village" else POIS.get(str(row.get("poi_type")), POI)
            if zoom >= style.min_zoom and row.get("name"):
                shown.append((style.min_zoom, str(row["name"]), geom, style))
        shown.sort(key=lambda item: item[0])  # the types shown from a smaller zoom first
        for _, name, geom, style in shown:
            px, py = world_pixels(np.array([geom.x]), np.array([geom.y]), zoom)
            x, y = float(px[0]), float(py[0])
            width, _ = self._text_size(name, 11)
            label = self._label(name, x + 6 + width / 2, y, 0.0, 11)
            left, top, right, bottom = label.box
            yield Label(name, label.x, label.y, 0.0, 11, (x - 4, min(top, y - 4), right, max(bottom, y + 4)),
                        (x, y, style.colour))

    def _along(self, name: str, geom: Any, zoom: int, size: int) -> Iterator[Label]:
        """Places for a road's name along its line: at the middle of each stretch of ~600 pixels
        long enough for the name, turned along the line's chord there (always upright)."""
        xy = shapely.get_coordinates(geom)
        px, py = world_pixels(xy[:, 0], xy[:, 1], zoom)
        line = shapely.linestrings(np.column_stack([px, py]))
        length = line.length
        width, _ = self._text_size(name, size)
        if length < width + 24:
            return
        count = max(1, int(length // 600))
        for k in range(count):
            middle = length * (k + 0.5) / count
            a = line.interpolate(max(0.0, middle - width / 2))
            b = line.interpolate(min(length, middle + width / 2))
            centre = line.interpolate(middle)
            if a.distance(b) < width * 0.85:  # a sharp bend under the name: skip this place
                continue
            angle = -math.degrees(math.atan2(b.y - a.y, b.x - a.x))
            if angle > 90:
                angle -= 180
            elif angle <= -90:
                angle += 180
            yield self._label(name, centre.x, centre.y, angle, size)

    def _label(self, text: str, x: float, y: float, angle: float, size: int) -> Label:
        w, h = self._text_size(text, size)
        rad = math.radians(angle)
        half_w = (abs(w * math.cos(rad)) + abs(h * math.sin(rad))) / 2
        half_h = (abs(w * math.sin(rad)) + abs(h * math.cos(rad))) / 2
        return Label(text, x, y, angle, size, (x - half_w, y - half_h, x + half_w, y + half_h))

    def _font(self, size: int) -> ImageFont.FreeTypeFont:
        if size not in self._fonts:
            self._fonts[size] = ImageFont.truetype(self.font_path, size)
        return self._fonts[size]

    def _text_size(self, text: str, size: int) -> tuple[int, int]:
        left, top, right, bottom = self._font(size).getbbox(text, stroke_width=2)
        return right - left, bottom - top

    def _label_image(self, zoom: int, index: int, label: Label) -> Image.Image:
        key = (zoom, index)
        image = self._label_images.get(key)
        if image is None:
            font = self._font(label.size)
            left, top, right, bottom = font.getbbox(label.text, stroke_width=2)
            image = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
            ImageDraw.Draw(image).text((-left, -top), label.text, font=font, fill=label.colour + (255,),
                                       stroke_width=2, stroke_fill=HALO + (255,))
            if label.angle:
                image = image.rotate(label.angle, resample=Image.Resampling.BICUBIC, expand=True)
            self._label_images[key] = image
        return image

    def _draw_labels(self, tile: Image.Image, z: int, x: int, y: int) -> None:
        labels, tree = self._placed(z)
        if tree is None:
            return
        x0, y0 = x * TILE_SIZE, y * TILE_SIZE
        for i in sorted(tree.query(shapely.box(x0, y0, x0 + TILE_SIZE, y0 + TILE_SIZE))):
            label = labels[i]
            if label.dot is not None:
                dx, dy, colour = label.dot
                dx, dy = dx - x0, dy - y0
                ImageDraw.Draw(tile).ellipse((dx - 3, dy - 3, dx + 3, dy + 3), fill=colour, outline=HALO)
            image = self._label_image(z, int(i), label)
            left = round(label.x - image.width / 2 - x0)
            top = round(label.y - image.height / 2 - y0)
            tile.paste(image, (left, top), image)


def _width(style: RoadStyle, zoom: int) -> float:
    """A road class's width at a zoom (the nearest zoom given)."""
    known = min(style.widths, key=lambda z: abs(z - zoom))
    return style.widths[known]


def _thick_line(draw: ImageDraw.ImageDraw, line: list[tuple[float, float]], colour: tuple[int, int, int],
                width: float) -> None:
    """A polyline with round joins and ends (Pillow's "curve" joint leaves gaps at the ends)."""
    w = max(1, round(width))
    draw.line(line, fill=colour, width=w, joint="curve")
    if w >= 4:
        r = w / 2
        for px, py in (line[0], line[-1]):
            draw.ellipse((px - r, py - r, px + r, py + r), fill=colour)


def _to_mercator(coords: np.ndarray) -> np.ndarray:
    """WGS84 lon/lat to Web Mercator metres (spherical: the EPSG:3857 formula)."""
    lon = coords[:, 0]
    lat = np.clip(coords[:, 1], -85.051129, 85.051129)
    x = np.radians(lon) * 6378137.0
    y = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * 6378137.0
    return np.column_stack([x, y])
