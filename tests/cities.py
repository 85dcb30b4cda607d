"""Hand-built test cities: layer rows written as GeoJSON files with a profile, then loaded."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely.geometry import Point, box

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


# the two-district test city (`conftest.city`): west D2 and east D1, one DMA over both
WEST, EAST = box(119.70, 36.35, 119.75, 36.40), box(119.75, 36.35, 119.80, 36.40)
TWO_DISTRICTS = {
    "districts": [{"district_id": "D2", "name": "西区", "g": WEST}, {"district_id": "D1", "name": "东区", "g": EAST}],
    "streets": [{"street_id": "S2", "name": "西街道", "district_id": "D2", "g": WEST},
                {"street_id": "S1", "name": "东街道", "district_id": "D1", "g": EAST}],
    "grids": [{"grid_id": "G2", "name": "西网格", "street_id": "S2", "district_id": "D2", "area_class": "urban", "g": WEST},
              {"grid_id": "G1", "name": "东网格", "street_id": "S1", "district_id": "D1", "area_class": "rural", "g": EAST}],
    "units": [{"unit_id": "PWR02", "name": "西供电所", "category": "power", "g": WEST},
              {"unit_id": "PWR01", "name": "东供电所", "category": "power", "g": EAST},
              {"unit_id": "WAT01", "name": "自来水公司", "category": "water", "g": WEST.union(EAST)},
              {"unit_id": "GAS01", "name": "燃气公司", "category": "gas", "g": WEST.union(EAST)}],
    "transformers": [{"asset_id": "T2", "name": "西台变", "rated_kva": 400, "feeder": "西1线", "g": Point(119.72, 36.37)},
                     {"asset_id": "T1", "name": "东台变", "rated_kva": 630, "feeder": "东1线", "g": Point(119.78, 36.37)}],
    "supply_areas": [{"area_id": "TA2", "asset_id": "T2", "name": "西台区", "g": WEST},
                     {"area_id": "TA1", "asset_id": "T1", "name": "东台区", "g": EAST}],
    "dmas": [{"dma_id": "DMA01", "name": "一号分区", "g": WEST.union(EAST)}],
    "stations": [{"station_id": "PS1", "name": "东供电所", "category": "power", "unit_id": "PWR01", "g": Point(119.76, 36.38)}],
    "sensors": [{"sensor_id": "L0002", "name": "西台变负载率", "kind": "transformer_load", "quantity": "load", "unit": "%",
                 "asset_id": "T2", "period_s": 900, "g": Point(119.72, 36.37)},
                {"sensor_id": "P001", "name": "一号分区1号压力监测点", "kind": "pressure", "quantity": "pressure",
                 "unit": "MPa", "asset_id": "M1", "period_s": 300, "g": Point(119.78, 36.36)}],
}
