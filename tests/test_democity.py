"""Demo city: reproducible, the promised counts, tiling areas, a connected road network."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import shapely

from gis import crs as gcrs
from simulators.democity import generate, main
from gis.layers import City, load_profile

SEED = 20261122


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """The demo city generated once for the module."""
    out = tmp_path_factory.mktemp("demo")
    generate(out, seed=SEED)
    return out


@pytest.fixture(scope="module")
def city(demo_dir) -> City:
    """The demo city loaded through its profile."""
    return load_profile(demo_dir / "profile.toml")


def _metric(frame):
    return frame.to_crs(epsg=gcrs.gk_zone_epsg(119.75))


def test_same_seed_same_bytes_and_the_cli(demo_dir, tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--seed", str(SEED)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "profile.toml")
    first = sorted(p.name for p in demo_dir.iterdir())
    assert first == sorted(p.name for p in tmp_path.iterdir())
    for name in first:
        assert (demo_dir / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_another_seed_another_city(demo_dir, tmp_path):
    generate(tmp_path, seed=7)
    assert (tmp_path / "roads.geojson").read_bytes() != (demo_dir / "roads.geojson").read_bytes()


def test_output_is_small_and_formats_are_mixed(demo_dir):
    assert sum(p.stat().st_size for p in demo_dir.iterdir()) < 10_000_000
    assert (demo_dir / "addresses.gpkg").exists()
    assert b'"crs"' not in (demo_dir / "pois.geojson").read_bytes()
    assert b"EPSG::4490" in (demo_dir / "roads.geojson").read_bytes()


def test_counts(city):
    stations = city.stations["category"].value_counts().to_dict()
    assert stations["power"] == 19
    assert 8 <= stations["water"] <= 12
    assert all(stations[c] >= 1 for c in ("gas", "heating", "drainage"))
    assert len(city.crews) == 21 and city.crews["plate"].is_unique
    assert set(city.crews["station_id"]) <= set(city.stations["station_id"])
    assert all(set(skills) <= {"power", "water", "gas", "heating", "drainage"} and skills
               for skills in city.crews["skills"])
    assert len(city.transformers) >= 200
    assert set(city.transformers["rated_kva"]) <= {100, 200, 315, 400, 630, 800}
    assert len(city.pressure_points) >= 50
    kinds = city.sensors["kind"].value_counts().to_dict()
    assert kinds["pressure"] == len(city.pressure_points)
    assert kinds["transformer_load"] >= 0.9 * len(city.transformers) and kinds["flow"] >= 5
    addresses = city.addresses["kind"].value_counts().to_dict()
    assert addresses["address"] >= 2000 and addresses["poi"] >= 100
    assert city.addresses["addr_id"].is_unique
    assert 3 <= len(city.districts) <= 4
    km = _metric(city.roads).length.sum() / 1000
    assert 200 <= km <= 600


@pytest.mark.parametrize("kind", ["grids", "streets", "districts", "supply_areas", "dmas"])
def test_areas_tile_the_city(city, kind):
    metric = _metric(city.layer(kind))
    whole = shapely.union_all(_metric(city.districts).geometry.values)
    union = shapely.union_all(metric.geometry.values)
    assert metric.area.sum() == pytest.approx(whole.area, rel=1e-6)   # no overlaps
    assert union.symmetric_difference(whole).area < 1e-6 * whole.area  # no gaps


@pytest.mark.parametrize("category", ["power", "water", "drainage"])
def test_service_areas_tile_the_city(city, category):
    metric = _metric(city.units_for(category))
    whole = shapely.union_all(_metric(city.districts).geometry.values)
    assert metric.area.sum() == pytest.approx(whole.area, rel=1e-6)


def test_grid_hierarchy_is_consistent(city):
    streets = city.streets.set_index("street_id")
    for grid in city.grids.itertuples():
        assert grid.street_id.startswith(grid.district_id)
        assert streets.loc[grid.street_id, "district_id"] == grid.district_id
        assert streets.loc[grid.street_id].geometry.contains(grid.geometry.representative_point())
    assert set(city.grids["area_class"]) == {"urban", "rural", "remote"}


def test_roads_strongly_connected_with_one_ways_and_noded(city):
    roads = city.roads
    graph = nx.DiGraph()
    for geom, oneway in zip(roads.geometry, roads["oneway"]):
        a, b = geom.coords[0], geom.coords[-1]
        graph.add_edge(a, b)
        if not oneway:
            graph.add_edge(b, a)
    assert nx.is_strongly_connected(graph)
    assert roads["oneway"].sum() > 0
    assert set(roads.loc[roads["oneway"], "class"]) == {"local"}
    assert set(roads["class"]) == {"arterial", "collector", "local"}
    # junction to junction: noding the network again splits nothing (GEOS may emit a
    # zero-length piece where three rounded lines meet in one point; that is no split)
    noded = shapely.node(shapely.MultiLineString(list(roads.geometry)))
    assert sum(piece.length > 0 for piece in noded.geoms) == len(roads)


def test_house_numbers_odd_left_even_right(city):
    roads = _metric(city.roads)
    addresses = _metric(city.addresses)
    numbered = addresses[(addresses["kind"] == "address") & (addresses["road"] != "")]
    by_name = {name: group for name, group in roads.groupby("name")}
    wrong = 0
    for row in numbered.itertuples():
        segments = by_name[row.road]
        seg = segments.geometry.iloc[int(np.argmin(segments.distance(row.geometry)))]
        d = seg.project(row.geometry)
        a, b = seg.interpolate(max(d - 1, 0)), seg.interpolate(min(d + 1, seg.length))
        cross = (b.x - a.x) * (row.geometry.y - a.y) - (b.y - a.y) * (row.geometry.x - a.x)
        wrong += (cross > 0) != (row.house_number % 2 == 1)
    assert wrong <= 0.01 * len(numbered)


def test_gcj02_pois_land_beside_their_roads(city):
    pois = _metric(city.addresses[city.addresses["kind"] == "poi"])
    pois = pois[pois["road"] != ""]
    roads = _metric(city.roads)
    tree = shapely.STRtree(roads.geometry.values)
    _, dist = tree.query_nearest(pois.geometry.values, return_distance=True, all_matches=False)
    assert np.median(dist) < 40.0  # un-shifted GCJ-02 would sit hundreds of metres away
