"""Hand-built test cities: layer rows written as GeoJSON files with a profile, then loaded."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd

from gis.layers import City, load_profile


def write_city(root: Path, layers: Mapping[str, Sequence[Mapping[str, Any]]]) -> City:
    """Write each layer's rows (their geometry under ``"g"``, WGS84) as ``<kind>.geojson`` under
    `root` with a ``profile.toml`` naming them, and load that profile."""
    body = ['[city]\nname = "测试市"\n']
    for kind, rows in layers.items():
        frame = gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "g"} for r in rows],
                                 geometry=[r["g"] for r in rows], crs="EPSG:4326")
        frame.to_file(root / f"{kind}.geojson", driver="GeoJSON", engine="pyogrio")
        body.append(f'[layers.{kind}]\nfile = "{kind}.geojson"\ncrs = "EPSG:4326"\n')
    (root / "profile.toml").write_text("\n".join(body), encoding="utf-8")
    return load_profile(root / "profile.toml")
