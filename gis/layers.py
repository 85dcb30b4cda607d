"""Layer loader: read a city profile's layers into GeoDataFrames in WGS84 lon/lat, once.

Each layer comes from GeoJSON, GeoPackage or Shapefile in whatever CRS it declares; the
profile's `crs` overrides the declaration for files that lie. A GeoJSON file without a `crs`
member is taken as declaring nothing: RFC 7946 says WGS84, but Chinese web-map exports
(AMap/DataV) without one are GCJ-02, so the profile must say which. Attributes are renamed by
the profile's mapping (source -> internal) and checked against the kind's required attributes.

A layer with invalid or missing geometry, a missing attribute, or an unknown or missing CRS is
refused with `LayerError`, whose message names the file, the feature and the problem.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError as PyprojCRSError

from gis import crs as gcrs
from gis.profile import KINDS, LayerSpec, Profile, read_profile

__all__ = ["LayerError", "City", "load_profile", "load_layer", "INTERNAL_CRS", "BATCH_FEATURES"]

INTERNAL_CRS = "EPSG:4326"
BATCH_FEATURES = 50_000       # layers larger than this are read in batches, reporting progress
_NON_EPSG = {"gcj02": gcrs.GCJ02, "bd09": gcrs.BD09}
_GEOMETRY_TYPES = {"polygon": ("Polygon", "MultiPolygon"),
                   "line": ("LineString", "MultiLineString"),
                   "point": ("Point",)}
_CRS_MEMBER = re.compile(rb'"crs"\s*:\s*\{')
_TRUE = {"1", "true", "t", "yes", "y", "是"}
_FALSE = {"0", "false", "f", "no", "n", "否", ""}

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress callback: say nothing."""


class LayerError(ValueError):
    """A layer is refused; the message names the file, the feature (if one) and the problem."""

    def __init__(self, path: Path | str, problem: str, *, feature: int | None = None,
                 feature_id: Any = None) -> None:
        self.path, self.problem, self.feature, self.feature_id = Path(path), problem, feature, feature_id
        where = ""
        if feature is not None:
            where = f" feature {feature}" + (f" (id {feature_id!r})" if feature_id is not None else "")
        super().__init__(f"{self.path}:{where} {problem}")


# ---------------------------------------------------------------- reading

def _read(spec: LayerSpec, progress: Progress) -> gpd.GeoDataFrame:
    """Read the file, in batches for large layers so that progress can be shown."""
    if not spec.path.exists():
        raise LayerError(spec.path, "file not found")
    # GDAL's GeoJSON driver guesses dates and times from strings: an asset id "T0001" would
    # come back as the time 00:01. Attributes are read as the text the file holds.
    options = {"DATE_AS_STRING": "YES"} if spec.format == "geojson" else {}
    try:
        info = pyogrio.read_info(spec.path, layer=spec.layer)
        total = int(info["features"])
        if total <= BATCH_FEATURES:
            return pyogrio.read_dataframe(spec.path, layer=spec.layer, **options)
        parts = []
        for start in range(0, total, BATCH_FEATURES):
            parts.append(pyogrio.read_dataframe(spec.path, layer=spec.layer, skip_features=start,
                                                max_features=BATCH_FEATURES, **options))
            progress(f"{spec.name}: {min(start + BATCH_FEATURES, total)}/{total} features")
        return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=parts[0].crs)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as error:
        raise LayerError(spec.path, f"cannot read as {spec.format}: {error}") from None


def _declared_crs(spec: LayerSpec, frame: gpd.GeoDataFrame) -> CRS | None:
    """The CRS the file itself declares, None when it declares none."""
    if spec.format == "geojson" and not _CRS_MEMBER.search(spec.path.read_bytes()):
        return None  # GDAL would assume WGS84; we do not guess
    return None if frame.crs is None else CRS.from_user_input(frame.crs)


def _source_crs(spec: LayerSpec, declared: CRS | None, progress: Progress) -> CRS | str:
    """The CRS the coordinates are really in: the profile's override, else the declaration."""
    if spec.crs is None:
        if declared is None:
            raise LayerError(spec.path, "no CRS: the file declares none and the profile gives no "
                                        f"`crs` for [layers.{spec.name}]")
        source: CRS | str = declared
    else:
        key = spec.crs.strip().lower().replace("-", "").replace("_", "")
        if key in _NON_EPSG:
            source = _NON_EPSG[key]
        else:
            try:
                source = CRS.from_user_input(spec.crs)
            except PyprojCRSError:
                raise LayerError(spec.path, f"unknown CRS {spec.crs!r} in the profile") from None
        if declared is not None and not (isinstance(source, CRS) and source.equals(declared)):
            progress(f"{spec.name}: file declares {declared.to_string()}, "
                     f"profile overrides with {spec.crs}")
    if isinstance(source, CRS) and not (source.is_geographic or source.is_projected):
        raise LayerError(spec.path, f"unknown CRS {source.name!r}: neither geographic nor projected")
    return source


def _to_internal(spec: LayerSpec, frame: gpd.GeoDataFrame, source: CRS | str) -> gpd.GeoDataFrame:
    """Transform once to WGS84 lon/lat."""
    if isinstance(source, str):
        def shift(coords: np.ndarray) -> np.ndarray:
            return np.column_stack(gcrs.transform(coords[:, 0], coords[:, 1], source, "wgs84"))
        geoms = shapely.transform(frame.geometry.values, shift)
        out = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index), crs=None)
        return out.set_crs(INTERNAL_CRS, allow_override=True)
    frame = frame.set_crs(source, allow_override=True)
    if source.equals(CRS.from_user_input(INTERNAL_CRS)):
        return frame
    try:
        return frame.to_crs(INTERNAL_CRS)
    except PyprojCRSError as error:
        raise LayerError(spec.path, f"cannot transform {source.name} to WGS84: {error}") from None


# ---------------------------------------------------------------- checks

def _feature_id(frame: gpd.GeoDataFrame, spec: LayerSpec, row: int) -> Any:
    column = spec.id_field
    if column in frame.columns:
        value = frame[column].iloc[row]
        return None if pd.isna(value) else value
    return None


def _check_geometry(spec: LayerSpec, frame: gpd.GeoDataFrame) -> None:
    geoms = frame.geometry.values
    allowed = _GEOMETRY_TYPES[KINDS[spec.kind].geometry]
    missing = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if missing.size:
        row = int(missing[0])
        raise LayerError(spec.path, "has no geometry", feature=row,
                         feature_id=_feature_id(frame, spec, row))
    types = shapely.get_type_id(geoms)
    names = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint",
                      "MultiLineString", "MultiPolygon", "GeometryCollection"])[types]
    wrong = np.flatnonzero(~np.isin(names, allowed))
    if wrong.size:
        row = int(wrong[0])
        raise LayerError(spec.path, f"geometry is {names[row]}, a {spec.kind} layer needs "
                                    f"{' or '.join(allowed)}", feature=row,
                         feature_id=_feature_id(frame, spec, row))
    invalid = np.flatnonzero(~shapely.is_valid(geoms))
    if invalid.size:
        row = int(invalid[0])
        raise LayerError(spec.path, f"invalid geometry: {shapely.is_valid_reason(geoms[row])}",
                         feature=row, feature_id=_feature_id(frame, spec, row))


def _check_finite(spec: LayerSpec, frame: gpd.GeoDataFrame) -> None:
    coords, owner = shapely.get_coordinates(frame.geometry.values, return_index=True)
    bad = ~np.isfinite(coords).all(axis=1) | (np.abs(coords[:, 0]) > 180) | (np.abs(coords[:, 1]) > 90)
    if bad.any():
        row = int(owner[np.argmax(bad)])
        raise LayerError(spec.path, "coordinates fall outside lon/lat range after transforming "
                                    "to WGS84: is the CRS right?", feature=row,
                         feature_id=_feature_id(frame, spec, row))


def _map_attributes(spec: LayerSpec, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    for source, internal in spec.fields.items():
        if source not in frame.columns:
            raise LayerError(spec.path, f"attribute {source!r} (mapped to {internal!r}) is missing; "
                                        f"the file has {', '.join(map(str, frame.columns[:-1]))}")
    frame = frame.rename(columns={s: i for s, i in spec.fields.items() if s != i})
    mapped_from = {i: s for s, i in spec.fields.items()}
    for name in KINDS[spec.kind].required:
        label = f"{name!r}" + (f" (source {mapped_from[name]!r})" if name in mapped_from and
                               mapped_from[name] != name else "")
        if name not in frame.columns:
            raise LayerError(spec.path, f"attribute {label} is missing: add it or map a source "
                                        f"field to it in [layers.{spec.name}.fields]")
        empty = frame[name].isna().to_numpy()
        if empty.any():
            row = int(np.argmax(empty))
            raise LayerError(spec.path, f"attribute {label} is empty", feature=row,
                             feature_id=_feature_id(frame, spec, row))
    return frame


def _as_bool(value: Any, spec: LayerSpec, row: int) -> bool:
    text = str(value).strip().lower()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise LayerError(spec.path, f"attribute 'oneway' has {value!r}, not a yes/no value", feature=row)


def _as_skills(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in re.split(r"[,;，、 ]+", value) if part.strip())
    return tuple(str(part) for part in value)


def _normalise(spec: LayerSpec, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Identifiers as text, one-way flags as bool, skills as tuples of categories."""
    for name in KINDS[spec.kind].required:
        if name.endswith("_id") and frame[name].dtype != object and \
                not pd.api.types.is_string_dtype(frame[name]):
            frame[name] = [str(int(v)) if float(v).is_integer() else str(v) for v in frame[name]]
    if "oneway" in frame.columns and spec.kind == "roads":
        frame["oneway"] = [_as_bool(v, spec, i) for i, v in enumerate(frame["oneway"])]
    if "skills" in frame.columns and spec.kind == "crews":
        frame["skills"] = [_as_skills(v) for v in frame["skills"]]
    return frame


def load_layer(spec: LayerSpec, progress: Progress = _quiet) -> gpd.GeoDataFrame:
    """Load one layer: read, check, rename, transform to WGS84; raises LayerError."""
    frame = _read(spec, progress)
    declared = _declared_crs(spec, frame)
    source = _source_crs(spec, declared, progress)
    frame = _map_attributes(spec, frame)
    _check_geometry(spec, frame)
    frame = _to_internal(spec, frame, source)
    _check_finite(spec, frame)
    return _normalise(spec, frame)


# ---------------------------------------------------------------- the city

def _empty(kind: str) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({name: pd.Series(dtype=object) for name in KINDS[kind].required},
                            geometry=gpd.GeoSeries([], crs=INTERNAL_CRS), crs=INTERNAL_CRS)


@dataclass
class City:
    """A loaded city: one WGS84 GeoDataFrame per layer kind (empty when the profile lacks it)."""

    name: str
    profile: Profile
    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)

    def layer(self, kind: str) -> gpd.GeoDataFrame:
        """The layer of `kind`, or an empty frame with the kind's required columns."""
        if kind not in KINDS:
            raise KeyError(f"unknown layer kind {kind!r}")
        found = self.layers.get(kind)
        return _empty(kind) if found is None else found

    def units_for(self, category: str) -> gpd.GeoDataFrame:
        """Responsible units (三级, with service areas) of one category: power, water, gas, ...;
        the departments above them (``level`` 2, see `gis.units`) are left out."""
        units = self.units
        wanted = units["category"] == category
        if "level" in units.columns:
            wanted &= units["level"].isna() | (units["level"] == 3)
        return units[wanted]

    def stations_for(self, category: str) -> gpd.GeoDataFrame:
        """Stations/depots of one category."""
        stations = self.stations
        return stations[stations["category"] == category]

    districts = property(lambda self: self.layer("districts"), doc="区: top-level areas")
    streets = property(lambda self: self.layer("streets"), doc="街道/镇")
    grids = property(lambda self: self.layer("grids"), doc="社区网格, with area_class")
    units = property(lambda self: self.layer("units"), doc="responsible units with service areas")
    stations = property(lambda self: self.layer("stations"), doc="stations and depots")
    crews = property(lambda self: self.layer("crews"), doc="repair vehicles with their crews")
    vehicles = property(lambda self: self.layer("crews"), doc="alias of crews: one row a vehicle")
    roads = property(lambda self: self.layer("roads"), doc="road segments, junction to junction")
    transformers = property(lambda self: self.layer("transformers"), doc="distribution transformers")
    supply_areas = property(lambda self: self.layer("supply_areas"), doc="transformer 台区 areas")
    dmas = property(lambda self: self.layer("dmas"), doc="water district metered areas")
    mains = property(lambda self: self.layer("mains"), doc="water mains")
    valves = property(lambda self: self.layer("valves"), doc="water valves")
    pressure_points = property(lambda self: self.layer("pressure_points"), doc="pressure points")
    sensors = property(lambda self: self.layer("sensors"), doc="sensor registry")
    addresses = property(lambda self: self.layer("addresses"), doc="addresses and POIs")


def load_profile(path: Path | str, progress: Progress = _quiet) -> City:
    """Load every layer named by the profile TOML at `path` into a City (WGS84 lon/lat)."""
    profile = read_profile(path)
    grouped: dict[str, list[gpd.GeoDataFrame]] = {}
    for spec in profile.layers:
        progress(f"loading {spec.name} from {spec.path.name}")
        frame = load_layer(spec, progress)
        progress(f"{spec.name}: {len(frame)} features")
        grouped.setdefault(spec.kind, []).append(frame)
    layers = {kind: frames[0] if len(frames) == 1 else
              gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=INTERNAL_CRS)
              for kind, frames in grouped.items()}
    return City(name=str(profile.city.get("name", profile.path.stem)), profile=profile,
                layers=layers)
