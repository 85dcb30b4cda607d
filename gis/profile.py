"""City profile: the TOML file that names each layer's file, format, CRS and attribute mapping.

A profile looks like::

    [city]
    name = "高密市"
    code = "370785"

    [layers.grids]                 # the section name is the layer name
    kind = "grids"                 # optional, defaults to the section name
    file = "grids.geojson"         # relative to the profile's folder
    format = "geojson"             # geojson | gpkg | shapefile (default: from the file suffix)
    layer = "grids"                # optional: the layer inside a GeoPackage (default: the first)
    crs = "EPSG:4490"              # optional: overrides what the file declares ("gcj02", "bd09" too)
    [layers.grids.fields]          # source field name -> internal name
    WGBM = "grid_id"
    WGMC = "name"

Several layers may share a kind (addresses and POIs both have kind "addresses"); the loader
concatenates them. The layer kinds and the internal attributes each must carry are in `KINDS`.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ProfileError", "KindSpec", "KINDS", "LayerSpec", "Profile", "read_profile",
           "FORMATS"]

FORMATS = ("geojson", "gpkg", "shapefile")
_SUFFIX_FORMAT = {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg", ".shp": "shapefile"}


class ProfileError(ValueError):
    """The profile TOML itself is malformed (unknown kind, missing file key, bad format)."""


@dataclass(frozen=True)
class KindSpec:
    """What a layer kind must hold: required internal attributes and the geometry family."""

    required: tuple[str, ...]
    geometry: str  # "polygon" | "line" | "point"


KINDS: dict[str, KindSpec] = {
    "districts": KindSpec(("district_id", "name"), "polygon"),
    "streets": KindSpec(("street_id", "name", "district_id"), "polygon"),
    "grids": KindSpec(("grid_id", "name", "street_id", "district_id", "area_class"), "polygon"),
    # optional: parent_id and level (2 department, 3 station; default 3 under the center): gis.units
    "units": KindSpec(("unit_id", "name", "category"), "polygon"),
    "stations": KindSpec(("station_id", "name", "category", "unit_id"), "point"),
    "crews": KindSpec(("vehicle_id", "crew_id", "crew_name", "unit_id", "station_id", "skills",
                       "plate", "members"), "point"),
    "roads": KindSpec(("road_id", "name", "class", "speed_kmh", "oneway"), "line"),
    "transformers": KindSpec(("asset_id", "name", "rated_kva", "feeder"), "point"),
    "supply_areas": KindSpec(("area_id", "asset_id", "name"), "polygon"),
    "dmas": KindSpec(("dma_id", "name"), "polygon"),
    "mains": KindSpec(("main_id", "diameter_mm"), "line"),
    "valves": KindSpec(("valve_id",), "point"),
    "pressure_points": KindSpec(("sensor_id", "name", "dma_id"), "point"),
    "sensors": KindSpec(("sensor_id", "name", "kind", "quantity", "unit", "asset_id",
                         "period_s"), "point"),
    "addresses": KindSpec(("addr_id", "address", "kind"), "point"),
    # land use drawn on the street base map only (gis.basemap): landuse is water or park
    "landuse": KindSpec(("landuse_id", "name", "landuse"), "polygon"),
}


@dataclass(frozen=True)
class LayerSpec:
    """One `[layers.<name>]` section: where the layer is and how to read it."""

    name: str
    kind: str
    path: Path
    format: str
    crs: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    layer: str | None = None  # the layer inside a multi-layer file (GeoPackage); default: first

    @property
    def id_field(self) -> str:
        """The internal attribute that identifies a feature of this kind (named in errors)."""
        return KINDS[self.kind].required[0]


@dataclass(frozen=True)
class Profile:
    """A parsed city profile: city metadata and its layers, in file order."""

    path: Path
    city: dict[str, Any]
    layers: tuple[LayerSpec, ...]


def _layer(name: str, section: dict[str, Any], root: Path, source: Path) -> LayerSpec:
    if not isinstance(section, dict):
        raise ProfileError(f"{source}: [layers.{name}] must be a table")
    kind = section.get("kind", name)
    if kind not in KINDS:
        raise ProfileError(f"{source}: [layers.{name}] has unknown kind {kind!r}; "
                           f"known kinds: {', '.join(sorted(KINDS))}")
    if not isinstance(section.get("file"), str):
        raise ProfileError(f"{source}: [layers.{name}] needs a `file` string")
    path = (root / section["file"]).resolve()
    fmt = section.get("format") or _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt not in FORMATS:
        raise ProfileError(f"{source}: [layers.{name}] format {fmt!r} is not one of {FORMATS}")
    fields = section.get("fields", {})
    if not isinstance(fields, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise ProfileError(f"{source}: [layers.{name}.fields] must map strings to strings")
    crs = section.get("crs")
    if crs is not None and not isinstance(crs, (str, int)):
        raise ProfileError(f"{source}: [layers.{name}] crs must be a string such as 'EPSG:4490'")
    inner = section.get("layer")
    if inner is not None and not isinstance(inner, str):
        raise ProfileError(f"{source}: [layers.{name}] layer must be a string")
    return LayerSpec(name=name, kind=kind, path=path, format=fmt,
                     crs=None if crs is None else str(crs), fields=dict(fields), layer=inner)


def read_profile(path: Path | str) -> Profile:
    """Parse a profile TOML; file paths are resolved against the profile's folder."""
    source = Path(path)
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{source}: not valid TOML: {error}") from None
    layers = data.get("layers")
    if not isinstance(layers, dict) or not layers:
        raise ProfileError(f"{source}: no [layers.*] sections")
    specs = tuple(_layer(name, section, source.parent, source) for name, section in layers.items())
    return Profile(path=source, city=dict(data.get("city", {})), layers=specs)
