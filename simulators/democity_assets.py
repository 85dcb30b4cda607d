"""Demo city, part two: the responsible units' tree, stations, crews, transformers, water network,
sensors.

Everything here works in the generator's local metres on a `simulators.democity_areas.Model` whose roads and
administrative areas are already built. Service areas are unions of community grids, so unit
boundaries follow the administrative ones, as they do in practice.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point

from simulators import democity_names as names
from simulators.democity_areas import Layer, Model, group_union, lattice, nearest_label, voronoi_cells

__all__ = ["build_utilities", "build_crews", "build_transformers", "build_water", "build_sensors"]

CN_DIGITS = "一二三四五六七八九十"


def _on_road(model: Model, x: float, y: float, offset: float = 12.0) -> Point:
    """The point `offset` metres from the nearest road towards (x, y): where a depot's gate is."""
    tree = shapely.STRtree(model.roads.geoms)
    road = model.roads.geoms[int(tree.query_nearest(Point(x, y))[0])]
    near = road.interpolate(road.project(Point(x, y)))
    dx, dy = x - near.x, y - near.y
    dist = math.hypot(dx, dy) or 1.0
    return Point(near.x + dx / dist * offset, near.y + dy / dist * offset)


def _streets_of(model: Model, district: int) -> list[int]:
    return [s for s, d in enumerate(model.street_district) if d == district]


def _grids_of(model: Model, street: int) -> np.ndarray:
    return np.flatnonzero(model.grid_street == street)


def _grid_district(model: Model) -> np.ndarray:
    return np.array([model.street_district[s] for s in model.grid_street])


def _centre_grid(model: Model, street: int) -> int:
    grids = _grids_of(model, street)
    centre = model.grid_seeds[grids].mean(0)
    return int(grids[np.argmin(((model.grid_seeds[grids] - centre) ** 2).sum(1))])


def _far_grid(model: Model, street: int, from_grid: int) -> int:
    grids = _grids_of(model, street)
    d = ((model.grid_seeds[grids] - model.grid_seeds[from_grid]) ** 2).sum(1)
    return int(grids[np.argmax(d)])


def _station_unit(units: Layer, area: Any, unit_id: str, name: str, category: str, phone: str) -> None:
    """A level-3 unit (三级网络单位) under its trade's department (see names.DEPARTMENTS)."""
    parent = next(d[0] for d in names.DEPARTMENTS if d[2] == category)
    units.add(area, unit_id=unit_id, name=name, category=category, phone=phone, level=3, parent_id=parent)


def build_utilities(model: Model) -> None:
    """The organisation: level-3 units with service areas covering the city for every trade,
    their stations/depots, and the level-2 departments above them (area: their units' union)."""
    units, stations = Layer(), Layer()
    _power(model, units, stations)
    _water(model, units, stations)
    _gas_and_heating(model, units, stations)
    _drainage_sanitation_other(model, units, stations)
    for unit_id, name, category, phone in names.DEPARTMENTS:
        children = [g for row, g in zip(units.rows, units.geoms) if row["parent_id"] == unit_id]
        units.add(shapely.union_all(children), unit_id=unit_id, name=name, category=category, phone=phone,
                  level=2, parent_id=None)
    model.layers.update(units=units, stations=stations)


def _power(model: Model, units: Layer, stations: Layer) -> None:
    """One 供电所 per urban street, two per town; service area = grids nearest the station."""
    sites: list[tuple[str, int]] = []
    for k, s in enumerate(_streets_of(model, 0)):
        sites.append((names.POWER_URBAN[k], _centre_grid(model, s)))
    for k, s in enumerate(s for d in (1, 2, 3) for s in _streets_of(model, d)):
        first = _centre_grid(model, s)
        sites.append((model.street_names[s].removesuffix("镇"), first))
        sites.append((names.POWER_RURAL_SECOND[k % len(names.POWER_RURAL_SECOND)],
                      _far_grid(model, s, first)))
    site_xy = model.grid_seeds[[g for _, g in sites]]
    areas = group_union(model.grid_cells, nearest_label(model.grid_seeds, site_xy), len(sites))
    model.power_sites = site_xy
    model.power_names = [base for base, _ in sites]
    for k, ((base, _), area) in enumerate(zip(sites, areas)):
        uid = f"PWR{k + 1:02d}"
        _station_unit(units, area, uid, f"{names.POWER_COMPANY}{base}供电所", "power", "95598")
        stations.add(_on_road(model, *site_xy[k]), station_id=f"PS{k + 1:02d}",
                     name=f"{base}供电所", category="power", unit_id=uid)


def _water(model: Model, units: Layer, stations: Layer) -> None:
    """The city company in town, a rural supply branch per outer district."""
    water_units = [names.WATER_URBAN_UNIT] + [
        names.WATER_RURAL_UNIT.format(model.district_names[d].removesuffix("片区"))
        for d in (1, 2, 3)]
    for d, (name, area) in enumerate(zip(water_units, group_union(model.grid_cells, _grid_district(model), 4))):
        _station_unit(units, area, f"WAT{d + 1:02d}", name, "water",
                      "0536-2212345" if d == 0 else f"0536-22{d}6789")
    water_sites = [(n, 0, xy) for n, xy in zip(names.WATER_URBAN_STATIONS,
                                               ((-2500, 2500), (2500, -2000), (3500, 0)))]
    for s in (s for d in (1, 2, 3) for s in _streets_of(model, d)):
        gx, gy = model.grid_seeds[_centre_grid(model, s)]
        water_sites.append((model.street_names[s] + "供水站", model.street_district[s],
                            (gx + 220, gy + 160)))
    for k, (name, d, (x, y)) in enumerate(water_sites):
        stations.add(_on_road(model, x, y), station_id=f"WS{k + 1:02d}", name=name,
                     category="water", unit_id=f"WAT{d + 1:02d}")


def _gas_and_heating(model: Model, units: Layer, stations: Layer) -> None:
    """Gas: two piped companies and bottled gas for the remote grids; heating: the city's heat
    company in town, the rural clean-heating service centre elsewhere."""
    cells, grid_district = model.grid_cells, _grid_district(model)
    remote = np.array([_is_remote(model, i) for i in range(len(cells))])
    gas_label = np.where(remote, 2, np.where(grid_district <= 1, 0, 1))
    gas_names = (*names.GAS_UNITS, names.LPG_UNIT)
    for k, (name, area) in enumerate(zip(gas_names, group_union(cells, gas_label, 3))):
        _station_unit(units, area, f"GAS{k + 1:02d}", name, "gas", "96777")
    for k, (suffix, owner) in enumerate(names.GAS_STATIONS):
        x, y = ((-3800, 1200), (1200, -3300), (-4000, -6000))[k]
        stations.add(_on_road(model, x, y), station_id=f"GS{k + 1:02d}",
                     name=names.GAS_UNITS[owner].removesuffix("有限公司") + suffix,
                     category="gas", unit_id=f"GAS{owner + 1:02d}")
    remote_xy = model.grid_seeds[remote].mean(0)
    stations.add(_on_road(model, *remote_xy), station_id="GS04", name=names.LPG_UNIT, category="gas",
                 unit_id="GAS03")
    town = group_union(cells, (grid_district == 0).astype(int), 2)
    for k, name in enumerate((names.HEATING_UNIT, names.RURAL_HEATING_UNIT)):
        _station_unit(units, town[1 - k], f"HEAT{k + 1:02d}", name, "heating",
                      "0536-2366666" if k == 0 else "0536-2366688")
    for k, (name, xy) in enumerate(zip(names.HEATING_STATIONS, ((900, 3000), (-600, -2900)))):
        stations.add(_on_road(model, *xy), station_id=f"HS{k + 1:02d}", name=name,
                     category="heating", unit_id="HEAT01")
    stations.add(_on_road(model, *model.grid_seeds[grid_district != 0].mean(0)), station_id="HS03",
                 name=names.RURAL_HEATING_UNIT, category="heating", unit_id="HEAT02")


def _drainage_sanitation_other(model: Model, units: Layer, stations: Layer) -> None:
    """Drainage in town and countryside; a 环卫所 per street or town; a 便民服务站 (billing and
    other public-utility matters) per district."""
    cells, grid_district = model.grid_cells, _grid_district(model)
    drain_areas = group_union(cells, (grid_district != 0).astype(int), 2)
    for k, (name, area) in enumerate(zip(names.DRAINAGE_UNITS, drain_areas)):
        _station_unit(units, area, f"DRN{k + 1:02d}", name, "drainage", "0536-2377777")
    for k, (name, xy) in enumerate(zip(names.DRAINAGE_STATIONS, ((-1500, -700), (5200, -5400)))):
        stations.add(_on_road(model, *xy), station_id=f"DS{k + 1:02d}", name=name,
                     category="drainage", unit_id=f"DRN{k + 1:02d}")
    street_areas = group_union(cells, np.asarray(model.grid_street), len(model.street_names))
    for s, area in enumerate(street_areas):
        uid, name = f"SAN{s + 1:02d}", names.SANITATION_STATION.format(model.street_names[s])
        _station_unit(units, area, uid, name, "sanitation", f"0536-238{s + 1:04d}")
        gx, gy = model.grid_seeds[_centre_grid(model, s)]
        stations.add(_on_road(model, gx - 180, gy - 140), station_id=f"SS{s + 1:02d}", name=name,
                     category="sanitation", unit_id=uid)
    for d, area in enumerate(group_union(cells, grid_district, len(model.district_names))):
        uid, name = f"OTH{d + 1:02d}", names.OTHER_STATION.format(model.district_names[d])
        _station_unit(units, area, uid, name, "other", f"0536-239{d + 1:04d}")
        gx, gy = model.grid_seeds[_centre_grid(model, _streets_of(model, d)[0])]
        stations.add(_on_road(model, gx + 150, gy - 200), station_id=f"OS{d + 1:02d}", name=name,
                     category="other", unit_id=uid)


def _is_remote(model: Model, grid: int) -> bool:
    x, y = model.grid_seeds[grid]
    return (not model.grid_urban[grid]) and math.hypot(x / 9000, y / 7000) > 0.8


CREWS = (  # (station_id, crew name, skills): 9 power, 5 water, 3 gas, 2 heating, 2 drainage
    ("PS01", "城区供电所抢修一班", ("power",)), ("PS01", "城区供电所抢修二班", ("power",)),
    ("PS02", "开发区供电所抢修班", ("power",)), ("PS03", "醴泉供电所抢修班", ("power",)),
    ("PS04", "密水供电所抢修班", ("power",)), ("PS05", "朝阳供电所抢修班", ("power",)),
    ("PS06", "{}抢修班", ("power",)), ("PS08", "{}抢修班", ("power",)),
    ("PS10", "{}抢修班", ("power",)),
    ("WS01", "自来水公司抢修一班", ("water",)), ("WS02", "自来水公司抢修二班", ("water",)),
    ("WS03", "自来水公司管网抢修班", ("water", "drainage")),
    ("WS04", "{}抢修班", ("water",)), ("WS07", "{}抢修班", ("water",)),
    ("GS02", "新奥燃气抢修一班", ("gas",)), ("GS02", "新奥燃气抢修二班", ("gas",)),
    ("GS03", "港华燃气抢修班", ("gas",)),
    ("HS01", "热力公司抢修一班", ("heating",)), ("HS02", "热力公司抢修二班", ("heating",)),
    ("DS01", "城区排水抢险队", ("drainage", "water")), ("DS02", "农村排水抢险队", ("drainage",)),
)


def build_crews(model: Model) -> None:
    """21 repair vehicles with their crews, parked at their stations."""
    stations = model.layers["stations"]
    by_id = {row["station_id"]: (row, geom) for row, geom in zip(stations.rows, stations.geoms)}
    rng = model.rng
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    plates: set[str] = set()
    crews = Layer()
    for k, (station_id, crew_name, skills) in enumerate(CREWS):
        row, geom = by_id[station_id]
        while True:
            plate = names.PLATE_PREFIX + letters[int(rng.integers(len(letters)))] + \
                f"{int(rng.integers(10000)):04d}"
            if plate not in plates:
                plates.add(plate)
                break
        crews.add(geom, vehicle_id=f"V{k + 1:02d}", crew_id=f"C{k + 1:02d}",
                  crew_name=crew_name.format(row["name"]), unit_id=row["unit_id"],
                  station_id=station_id, skills=",".join(skills), plate=plate,
                  members=int(rng.integers(3, 6)))
    model.layers["crews"] = crews


def build_transformers(model: Model) -> None:
    """Distribution transformers (台区变) and their supply areas (Voronoi, tiling the city)."""
    rng = model.rng
    urban_xy = lattice(rng, model.urban, 480.0, 140.0)
    rural_xy = model.grid_seeds[~model.grid_urban] + np.array([60.0, -40.0])
    xy = np.vstack([urban_xy, rural_xy])
    kva = np.concatenate([rng.choice([200, 315, 400, 630, 800], len(urban_xy),
                                     p=[0.1, 0.25, 0.25, 0.3, 0.1]),
                          rng.choice([100, 200, 315], len(rural_xy), p=[0.3, 0.5, 0.2])])
    road_tree = shapely.STRtree(model.roads.geoms)
    nearest_road = road_tree.query_nearest(shapely.points(xy), all_matches=False)[1]
    station = nearest_label(xy, model.power_sites)
    counters: dict[str, int] = {}
    transformers, supply = Layer(), Layer()
    cells = voronoi_cells(xy, model.city)
    for i, ((x, y), cell) in enumerate(zip(xy, cells)):
        road = model.roads.rows[int(nearest_road[i])]["name"]
        counters[road] = counters.get(road, 0) + 1
        sx, sy = model.power_sites[station[i]]
        quadrant = int(((math.atan2(y - sy, x - sx) + math.pi) / (math.pi / 2)) % 4) + 1
        feeder = f"10kV{model.power_names[station[i]]}{quadrant}线"
        name = f"{road}{counters[road]}号台变"
        aid = f"T{i + 1:04d}"
        transformers.add(Point(x, y), SBBM=aid, SBMC=name, EDRL=int(kva[i]), KXMC=feeder)
        supply.add(cell, area_id=f"TA{i + 1:04d}", asset_id=aid, name=name + "台区",
                   feeder=feeder)
    model.layers.update(transformers=transformers, supply_areas=supply)


def build_water(model: Model) -> None:
    """DMAs (8 in town, one per outer district), mains under major roads, valves, pressure points."""
    grid_district = _grid_district(model)
    urban_seeds = np.array([(x, y) for y in (-1800, 1800) for x in (-3000, -1000, 1000, 3000)], float)
    label = np.where(grid_district == 0, nearest_label(model.grid_seeds, urban_seeds),
                     7 + grid_district)
    areas = group_union(model.grid_cells, label, 11)
    dmas = Layer()
    dma_names = [f"城区{CN_DIGITS[k]}号计量分区" for k in range(8)] + [
        f"{model.district_names[d]}计量分区" for d in (1, 2, 3)]
    for k, (name, area) in enumerate(zip(dma_names, areas)):
        dmas.add(area, dma_id=f"DMA{k + 1:02d}", name=name)
    dma_tree = shapely.STRtree(areas)
    mains, valves = Layer(), Layer()
    for row, geom in zip(model.roads.rows, model.roads.geoms):
        if row["class"] == "local" or geom.length < 30:
            continue
        pipe = geom.offset_curve(6.0)
        if pipe.geom_type != "LineString" or pipe.is_empty:
            pipe = geom
        mid = pipe.interpolate(0.5, normalized=True)
        hits = dma_tree.query(mid, predicate="intersects")
        dma = int(hits.min()) if len(hits) else int(dma_tree.query_nearest(mid)[0])
        urban = model.urban.contains(mid)
        diameter = (500 if row["class"] == "arterial" else 300) if urban else (
            200 if row["class"] == "arterial" else 150)
        mid_id = f"WM{len(mains.rows) + 1:05d}"
        mains.add(pipe, main_id=mid_id, diameter_mm=diameter, dma_id=f"DMA{dma + 1:02d}",
                  material="球墨铸铁" if diameter >= 300 else "PE")
        if urban or len(mains.rows) % 3 == 0:
            valves.add(Point(pipe.coords[0]), valve_id=f"VA{len(valves.rows) + 1:05d}",
                       main_id=mid_id, dma_id=f"DMA{dma + 1:02d}", diameter_mm=diameter,
                       kind="蝶阀" if diameter >= 300 else "闸阀")
    model.layers.update(dmas=dmas, mains=mains, valves=valves)
    _pressure_points(model, dma_names)


def _pressure_points(model: Model, dma_names: list[str]) -> None:
    mains = model.layers["mains"]
    points = Layer()
    for k, dma_name in enumerate(dma_names):
        dma_id = f"DMA{k + 1:02d}"
        members = [i for i, row in enumerate(mains.rows) if row["dma_id"] == dma_id]
        wanted = 6 if k < 8 else 4
        for n in range(wanted):
            i = members[(n * len(members)) // wanted]
            where = mains.geoms[i].interpolate(0.3 + 0.4 * (n % 2), normalized=True)
            low = (0.14, 0.20) if k < 8 else (0.10, 0.15)
            points.add(where, sensor_id=f"P{len(points.rows) + 1:03d}",
                       name=f"{dma_name}{n + 1}号压力监测点", dma_id=dma_id,
                       main_id=mains.rows[i]["main_id"], low_critical=low[0],
                       low_warning=low[1], high_warning=0.55, high_critical=0.65)
    model.layers["pressure_points"] = points


def _sensor(layer: Layer, geom: Any, **props: Any) -> None:
    base = dict(low_critical=None, low_warning=None, high_warning=None, high_critical=None)
    base.update(props)
    layer.add(geom, **base)


def build_sensors(model: Model) -> None:
    """Sensor registry: a load sensor on most transformers, the pressure points, DMA flow meters."""
    sensors = Layer()
    transformers = model.layers["transformers"]
    for i, (row, geom) in enumerate(zip(transformers.rows, transformers.geoms)):
        if i % 17 == 16:  # a few transformers have no metering yet
            continue
        _sensor(sensors, geom, sensor_id=f"L{i + 1:04d}", name=f"{row['SBMC']}负载率",
                kind="transformer_load", quantity="load", unit="%", asset_id=row["SBBM"],
                period_s=900, high_warning=80.0, high_critical=100.0)
    for row, geom in zip(model.layers["pressure_points"].rows, model.layers["pressure_points"].geoms):
        _sensor(sensors, geom, sensor_id=row["sensor_id"], name=row["name"], kind="pressure",
                quantity="pressure", unit="MPa", asset_id=row["main_id"], period_s=300,
                low_critical=row["low_critical"], low_warning=row["low_warning"],
                high_warning=row["high_warning"], high_critical=row["high_critical"])
    mains = model.layers["mains"]
    for k, dma in enumerate(model.layers["dmas"].rows):
        i = next(i for i, row in enumerate(mains.rows) if row["dma_id"] == dma["dma_id"])
        _sensor(sensors, mains.geoms[i].interpolate(0.5, normalized=True),
                sensor_id=f"F{k + 1:02d}", name=f"{dma['name']}进水流量计", kind="flow",
                quantity="flow", unit="m3/h", asset_id=mains.rows[i]["main_id"], period_s=300,
                low_warning=5.0, high_warning=600.0, high_critical=900.0)
    model.layers["sensors"] = sensors
