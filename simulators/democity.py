"""Demo city generator: a seeded, reproducible county-level city around 119.75°E 36.38°N.

`generate(out_dir)` writes every layer the dispatch side understands, modelled on 高密市
(Gaomi, Shandong): districts → streets → community grids tiling the city, a noded road network
(arterials, collectors, local streets, a few one-way), the tree of responsible units (the hotline
center → a department per trade, 二级 → stations with service areas covering the city for every
trade, 三级; see `gis.units`), 19 power supply stations and ~10 water stations, 21 repair vehicles with crews,
200+ transformers with their 台区 supply areas, water mains with DMAs, valves and 50+ pressure
points, a sensor registry, a few thousand addresses and POIs, parks, lakes and a river for the
street base map; plus `profile.toml` naming them.
Same seed, same bytes.

Geometry is built in metres (CGCS2000 Gauss-Krüger CM 120E, EPSG:4549) and written as CGCS2000
lon/lat (EPSG:4490) with 7 decimals (~1 cm). Formats are mixed on purpose to exercise the
loader: GeoJSON with a declared crs, the addresses as a GeoPackage, and the POIs as GCJ-02
GeoJSON with no crs member (as AMap/DataV exports are), overridden by `crs = "gcj02"`.

CLI: ``python -m simulators.democity --out DIR [--seed N]``.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import tomllib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from shapely.geometry import mapping

from config.city import DEMO_SUBDIR
from gis import crs
from simulators import democity_names as names
from simulators.democity_areas import (CENTER_LAT, CENTER_LON, DECIMALS, Layer, Model, blob,
                                admin_layers, build_admin, build_roads, make_frame)
from simulators.democity_assets import (build_crews, build_sensors, build_transformers, build_utilities,
                                 build_water)
from simulators.democity_landuse import build_landuse
from simulators.democity_places import build_places

__all__ = ["generate", "ensure_city", "main", "DEFAULT_SEED", "GENERATOR_VERSION", "LAYER_FILES"]

log = logging.getLogger(__name__)

DEFAULT_SEED = 20261122
# written into profile.toml as [city] generator; `ensure_city` regenerates a cached
# demo city whose profile names another version. Bump it when the generated layers change.
GENERATOR_VERSION = 4  # 4: the landuse layer (parks, lakes, the river) for the street base map
GPKG_DATE = "2026-01-01T00:00:00Z"  # fixed gpkg_contents.last_change: byte-identical output
CRS_URN = "urn:ogc:def:crs:EPSG::4490"

# layer name -> (file, kind, attribute mapping source -> internal; identity where not renamed)
LAYER_FILES: dict[str, tuple[str, str, dict[str, str]]] = {
    "districts": ("districts.geojson", "districts", {"QHDM": "district_id", "QHMC": "name"}),
    "streets": ("streets.geojson", "streets",
                {"JDDM": "street_id", "JDMC": "name", "QHDM": "district_id"}),
    "grids": ("grids.geojson", "grids", {"WGBM": "grid_id", "WGMC": "name", "JDDM": "street_id",
                                         "QHDM": "district_id", "QYLB": "area_class"}),
    "units": ("units.geojson", "units", {}),
    "stations": ("stations.geojson", "stations", {}),
    "crews": ("crews.geojson", "crews", {}),
    "roads": ("roads.geojson", "roads", {}),
    "transformers": ("transformers.geojson", "transformers",
                     {"SBBM": "asset_id", "SBMC": "name", "EDRL": "rated_kva", "KXMC": "feeder"}),
    "supply_areas": ("supply_areas.geojson", "supply_areas", {}),
    "dmas": ("dmas.geojson", "dmas", {}),
    "mains": ("mains.geojson", "mains", {}),
    "valves": ("valves.geojson", "valves", {}),
    "pressure_points": ("pressure_points.geojson", "pressure_points", {}),
    "sensors": ("sensors.geojson", "sensors", {}),
    "addresses": ("addresses.gpkg", "addresses", {}),
    "pois": ("pois.geojson", "addresses", {}),
    "landuse": ("landuse.geojson", "landuse", {}),
}


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones so json writes them."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _geometry_json(geom: Any) -> str:
    return json.dumps(mapping(geom), separators=(",", ":"))


def write_geojson(path: Path, name: str, rows: list[dict[str, Any]], geoms: Any,
                  *, declare_crs: bool = True) -> None:
    """GeoJSON, one feature per line; a `crs` member for EPSG:4490 unless told not to."""
    header = f'{{"type":"FeatureCollection","name":"{name}",'
    if declare_crs:
        header += f'"crs":{{"type":"name","properties":{{"name":"{CRS_URN}"}}}},'
    lines = []
    for row, geom in zip(rows, geoms):
        props = json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False,
                           separators=(",", ":"))
        lines.append(f'{{"type":"Feature","properties":{props},"geometry":{_geometry_json(geom)}}}')
    path.write_text(header + '"features":[\n' + ",\n".join(lines) + "\n]}\n", encoding="utf-8")


def write_gpkg(path: Path, name: str, rows: list[dict[str, Any]], geoms: Any) -> None:
    """GeoPackage in EPSG:4490 with a fixed timestamp, so that reruns give the same bytes."""
    frame = gpd.GeoDataFrame(rows, geometry=list(geoms), crs="EPSG:4490")
    if "house_number" in frame:
        frame["house_number"] = frame["house_number"].astype("Int32")
    path.unlink(missing_ok=True)
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_DATE})
    try:
        frame.to_file(path, driver="GPKG", layer=name, engine="pyogrio")
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def _to_gcj02(geoms: Any) -> Any:
    def shift(coords: np.ndarray) -> np.ndarray:
        lon, lat = crs.wgs84_to_gcj02_array(coords[:, 0], coords[:, 1])
        return np.round(np.column_stack([lon, lat]), DECIMALS)
    return shapely.transform(geoms, shift)


def _profile_text(seed: int) -> str:
    out = [f"# {names.CITY_NAME} demo city profile, written by `python -m simulators.democity` "
           f"(seed {seed}).",
           "# Every layer: file (relative to this profile), format, crs and the attribute",
           "# mapping source field -> internal name. The POIs are GCJ-02 without a crs member:",
           "# their `crs` line overrides what the file would otherwise be taken to be.", "",
           "[city]", f'name = "{names.CITY_NAME}"', f'code = "{names.CITY_CODE}"',
           f"center = [{CENTER_LON}, {CENTER_LAT}]", f"seed = {seed}",
           f'hotline_center = "{names.HOTLINE_CENTER}"', f"generator = {GENERATOR_VERSION}", ""]
    for layer, (file, kind, fields) in LAYER_FILES.items():
        fmt = "gpkg" if file.endswith(".gpkg") else "geojson"
        crs_name = "gcj02" if layer == "pois" else "EPSG:4490"
        out += [f"[layers.{layer}]", f'kind = "{kind}"', f'file = "{file}"', f'format = "{fmt}"',
                f'crs = "{crs_name}"']
        if fields:
            out.append(f"[layers.{layer}.fields]")
            out += [f'{source} = "{internal}"' for source, internal in fields.items()]
        out.append("")
    return "\n".join(out)


def build_model(seed: int, progress: Callable[[str], None]) -> Model:
    """Generate the whole city in local metres."""
    rng = np.random.default_rng(seed)
    model = Model(rng=rng, city=blob(rng, 9000, 7000, 0.06), urban=blob(rng, 4300, 3700, 0.04))
    progress("administrative areas")
    build_admin(model)
    progress("roads")
    build_roads(model)
    admin_layers(model)
    progress("units, stations and crews")
    build_utilities(model)
    build_crews(model)
    progress("transformers, water network and sensors")
    build_transformers(model)
    build_water(model)
    build_sensors(model)
    progress("addresses and POIs")
    build_places(model)
    build_landuse(model, seed)  # its own random stream: no other layer changes with it
    model.layers["roads"] = model.roads
    return model


def generate(out_dir: Path, *, seed: int = DEFAULT_SEED,
             progress: Callable[[str], None] = lambda message: None) -> Path:
    """Write the demo city into `out_dir` and return the path of its profile.toml."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(seed, progress)
    frame = make_frame()
    for layer, (file, _, _) in LAYER_FILES.items():
        data: Layer = model.layers[layer]
        geoms = frame.lonlat(np.array(data.geoms, dtype=object))
        path = out_dir / file
        progress(f"writing {file} ({len(data.rows)} features)")
        if file.endswith(".gpkg"):
            write_gpkg(path, layer, data.rows, geoms)
        elif layer == "pois":
            write_geojson(path, layer, data.rows, _to_gcj02(geoms), declare_crs=False)
        else:
            write_geojson(path, layer, data.rows, geoms)
    profile = out_dir / "profile.toml"
    profile.write_text(_profile_text(seed), encoding="utf-8")
    return profile


def ensure_city(settings, progress: Callable[[str], None] | None = None) -> Path:
    """Path of the city profile TOML; generates the demo city into DATA_DIR when none is set (again
    when the cached one was written by another `GENERATOR_VERSION`)."""
    if settings.CITY_PROFILE:
        path = Path(settings.CITY_PROFILE)
        if not path.is_file():
            raise FileNotFoundError(f"CITY_PROFILE {path} does not exist")
        return path
    out = settings.data_dir / DEMO_SUBDIR
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".generate.lock", "w") as lock:  # one generator at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        profile = out / "profile.toml"
        if not profile.is_file() or _generator_of(profile) != GENERATOR_VERSION:
            (progress or log.info)(f"generating the demo city into {out} ...")
            profile = generate(out, seed=settings.SIM_SEED)
        return profile


def _generator_of(profile: Path) -> int | None:
    """The demo generator version a cached profile was written by (None: older or unreadable)."""
    try:
        with profile.open("rb") as handle:
            version = tomllib.load(handle).get("city", {}).get("generator")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return version if isinstance(version, int) else None


def main(argv: list[str] | None = None) -> int:
    """Command line: generate the demo city into --out."""
    parser = argparse.ArgumentParser(description="Generate the demo city layers and profile.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    args = parser.parse_args(argv)
    profile = generate(args.out, seed=args.seed,
                       progress=lambda message: print(message, file=sys.stderr, flush=True))
    print(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
