"""Hand-built test cities: layer rows written as GeoJSON files with a profile, then loaded; the
cities several test files share (and a sensor registry's rows)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely.geometry import LineString, Point, box

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


# ---- cities laid out in local metres east and north of (120°E, 36°N) -----------------------------

LON0, LAT0 = 120.0, 36.0
M_LON = 111_320.0 * math.cos(math.radians(LAT0))
M_LAT = 110_574.0


def ll(x: float, y: float) -> tuple[float, float]:
    """Local metres (east, north) to WGS84 lon/lat."""
    return LON0 + x / M_LON, LAT0 + y / M_LAT


def area(x0: float, y0: float, x1: float, y1: float):
    """The box between two corners given in local metres."""
    return box(*ll(x0, y0), *ll(x1, y1))


ALL = area(-500, -500, 4000, 4000)  # the network city (`tests/test_grouping_service.py`):
# Mains: A (0,0)-(1000,0) and B (1000,0)-(2000,0) with a valve at B's start, C (0,3000)-(1000,3000):
# segments SEG0001 (A), SEG0002 (B), SEG0003 (C), all in one DMA. Three 台区 side by side: TA1
# and TA2 on feeder F1, TA3 on F2. A water crew and a power crew on the south road.
NETWORK_CITY = {
    "districts": [{"district_id": "D1", "name": "测试区", "g": ALL}],
    "streets": [{"street_id": "S1", "name": "测试街道", "district_id": "D1", "g": ALL}],
    "grids": [{"grid_id": "G1", "name": "网格", "street_id": "S1", "district_id": "D1", "area_class": "urban", "g": ALL}],
    "units": [{"unit_id": "WAT01", "name": "自来水公司", "category": "water", "g": ALL},
              {"unit_id": "PWR01", "name": "供电所", "category": "power", "g": ALL}],
    "stations": [{"station_id": "WS1", "name": "供水站", "category": "water", "unit_id": "WAT01", "g": Point(ll(0, -10))},
                 {"station_id": "PS1", "name": "供电所", "category": "power", "unit_id": "PWR01", "g": Point(ll(0, -10))}],
    "transformers": [{"asset_id": f"T{k}", "name": f"{k}号台变", "rated_kva": 400, "feeder": feeder,
                      "g": Point(ll(x, 1500))} for k, x, feeder in ((1, 500, "F1"), (2, 1500, "F1"), (3, 3000, "F2"))],
    "supply_areas": [{"area_id": f"TA{k}", "asset_id": f"T{k}", "name": f"{k}号台区", "g": area(x0, -500, x1, 4000)}
                     for k, x0, x1 in ((1, -500, 1000), (2, 1000, 2000), (3, 2000, 4000))],
    "dmas": [{"dma_id": "DMA01", "name": "一号计量分区", "g": ALL}],
    "mains": [{"main_id": "A", "diameter_mm": 300, "g": LineString([ll(0, 0), ll(1000, 0)])},
              {"main_id": "B", "diameter_mm": 300, "g": LineString([ll(1000, 0), ll(2000, 0)])},
              {"main_id": "C", "diameter_mm": 300, "g": LineString([ll(0, 3000), ll(1000, 3000)])}],
    "valves": [{"valve_id": "VB", "main_id": "B", "g": Point(ll(1000, 0))}],
    "sensors": [{"sensor_id": "P001", "name": "1号压力监测点", "kind": "pressure", "quantity": "pressure",
                 "unit": "MPa", "asset_id": "A", "period_s": 300, "g": Point(ll(500, 0))},
                {"sensor_id": "P002", "name": "2号压力监测点", "kind": "pressure", "quantity": "pressure",
                 "unit": "MPa", "asset_id": "C", "period_s": 300, "g": Point(ll(500, 3000))}],
    "roads": [{"road_id": f"R{k}", "name": f"路{k}", "class": "primary", "speed_kmh": 36.0, "oneway": False,
               "g": LineString([ll(*a), ll(*b)])}
              for k, a, b in ((1, (0, -10), (2000, -10)), (2, (0, -10), (0, 3010)), (3, (0, 3010), (1000, 3010)))],
    "crews": [{"vehicle_id": "V01", "crew_id": "C01", "crew_name": "供水抢修班", "unit_id": "WAT01", "station_id": "WS1",
               "skills": "water", "plate": "鲁G00001", "members": 3, "g": Point(ll(100, -10))},
              {"vehicle_id": "V02", "crew_id": "C02", "crew_name": "供电抢修班", "unit_id": "PWR01", "station_id": "PS1",
               "skills": "power", "plate": "鲁G00002", "members": 3, "g": Point(ll(200, -10))}],
}


# the spatial lookup tests' city (`tests/test_gis_lookup.py`): each layer's id column and rows
LOOKUP_LAYERS = {
    "districts": ("district_id", [{"district_id": "D2", "name": "西区", "g": WEST},
                                  {"district_id": "D1", "name": "东区", "g": EAST}]),
    "streets": ("street_id", [{"street_id": "S2", "name": "西街道", "district_id": "D2", "g": WEST},
                              {"street_id": "S1", "name": "东街道", "district_id": "D1", "g": EAST}]),
    "grids": ("grid_id", [
        {"grid_id": "G2", "name": "西南网格", "street_id": "S2", "district_id": "D2",
         "area_class": "urban", "g": box(119.70, 36.35, 119.75, 36.375)},
        {"grid_id": "G4", "name": "西北网格", "street_id": "S2", "district_id": "D2",
         "area_class": "rural", "g": box(119.70, 36.375, 119.75, 36.40)},
        {"grid_id": "G1", "name": "东南网格", "street_id": "S1", "district_id": "D1",
         "area_class": "urban", "g": box(119.75, 36.35, 119.80, 36.375)},
        {"grid_id": "G3", "name": "东北网格", "street_id": "S1", "district_id": "D1",
         "area_class": "remote", "g": box(119.75, 36.375, 119.80, 36.40)}]),
    "units": ("unit_id", [
        {"unit_id": "PWR02", "name": "西供电所", "category": "power", "g": WEST},
        {"unit_id": "PWR01", "name": "东供电所", "category": "power", "g": EAST},
        {"unit_id": "WAT01", "name": "自来水公司", "category": "water", "g": WEST.union(EAST)},
        {"unit_id": "GAS01", "name": "燃气公司", "category": "gas", "g": WEST}]),
    "transformers": ("asset_id", [
        {"asset_id": "T2", "name": "西台变", "rated_kva": 400, "feeder": "10kV西1线",
         "g": Point(119.72, 36.37)},
        {"asset_id": "T1", "name": "东台变", "rated_kva": 630, "feeder": "10kV东1线",
         "g": Point(119.78, 36.37)}]),
    "supply_areas": ("area_id", [{"area_id": "TA2", "asset_id": "T2", "name": "西台区", "g": WEST},
                                 {"area_id": "TA1", "asset_id": "T1", "name": "东台区", "g": EAST}]),
    "dmas": ("dma_id", [{"dma_id": "DMA01", "name": "一号分区", "g": WEST.union(EAST)}]),
    "mains": ("main_id", [  # two mains meeting at (119.74, 36.36), a valve at the second one's start
        {"main_id": "WM1", "diameter_mm": 300, "g": LineString([(119.71, 36.36), (119.74, 36.36)])},
        {"main_id": "WM2", "diameter_mm": 300, "g": LineString([(119.74, 36.36), (119.74, 36.39)])}]),
    "valves": ("valve_id", [{"valve_id": "VA1", "main_id": "WM2", "g": Point(119.74, 36.36)}]),
    "stations": ("station_id", [
        {"station_id": "PS1", "name": "东供电所", "category": "power", "unit_id": "PWR01",
         "g": Point(119.76, 36.38)},
        {"station_id": "PS2", "name": "西供电所", "category": "power", "unit_id": "PWR02",
         "g": Point(119.75, 36.38)},
        {"station_id": "WS1", "name": "水厂", "category": "water", "unit_id": "WAT01",
         "g": Point(119.72, 36.36)}]),
}


# a sensor registry's rows (`store.live.Store.replace_sensor_registry`)
SENSOR_ROWS = [
    {"sensor_id": "P001", "name": "一号压力监测点", "kind": "pressure", "quantity": "pressure", "unit": "MPa",
     "asset_id": "M1", "period_s": 300, "low_critical": 0.1, "low_warning": 0.15, "high_warning": 0.55,
     "high_critical": 0.65, "lon": 119.75, "lat": 36.38},
    {"sensor_id": "L0001", "name": "一号变压器负载率", "kind": "transformer_load", "quantity": "load", "unit": "%",
     "asset_id": "T1", "period_s": 900, "high_warning": 80.0, "high_critical": 100.0, "rated_kva": 400},
    {"sensor_id": "F01", "name": "进水流量计", "kind": "flow", "quantity": "flow", "unit": "m3/h", "asset_id": "M2",
     "period_s": 300, "low_warning": 5.0, "high_warning": 600.0, "sparkplug": "pump7/meter1/Flow"},
]
