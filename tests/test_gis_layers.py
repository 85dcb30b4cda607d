"""Layer loader: formats, CRS declarations and overrides, refusals with file + feature named."""
from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import LineString, Point, Polygon

from gis import crs as gcrs
from gis import layers
from gis.layers import LayerError, load_layer, load_profile
from gis.profile import LayerSpec, ProfileError, read_profile

DATA = Path(__file__).parent / "data" / "gis"

# two districts side by side, WGS84 lon/lat
WEST = Polygon([(119.70, 36.35), (119.75, 36.35), (119.75, 36.40), (119.70, 36.40)])
EAST = Polygon([(119.75, 36.35), (119.80, 36.35), (119.80, 36.40), (119.75, 36.40)])


def _districts(epsg: int) -> gpd.GeoDataFrame:
    frame = gpd.GeoDataFrame({"QHDM": ["D1", "D2"], "QHMC": ["城区片区", "北部片区"]},
                             geometry=[WEST, EAST], crs="EPSG:4326")
    return frame.to_crs(epsg=epsg)


def _spec(path: Path, kind: str = "districts", crs: str | None = None,
          fields: dict[str, str] | None = None, fmt: str | None = None) -> LayerSpec:
    fmt = fmt or {".geojson": "geojson", ".gpkg": "gpkg", ".shp": "shapefile"}[path.suffix]
    return LayerSpec(name=kind, kind=kind, path=path, format=fmt, crs=crs,
                     fields=fields if fields is not None else {"QHDM": "district_id", "QHMC": "name"})


@pytest.mark.parametrize("suffix, driver, epsg", [
    (".geojson", "GeoJSON", 4490),   # CGCS2000 geographic, declared by a crs member
    (".gpkg", "GPKG", 4549),         # CGCS2000 Gauss-Krüger CM 120E, metres
    (".shp", "ESRI Shapefile", 4326),  # WGS84 declared by the .prj
    (".shp", "ESRI Shapefile", 4527),  # CGCS2000 GK zone 39 with zone prefix, metres
])
def test_each_format_and_declared_crs_loads_to_wgs84(tmp_path, suffix, driver, epsg):
    path = tmp_path / f"districts{suffix}"
    _districts(epsg).to_file(path, driver=driver, engine="pyogrio")
    frame = load_layer(_spec(path))
    assert frame.crs.to_epsg() == 4326
    assert list(frame["district_id"]) == ["D1", "D2"]
    assert list(frame["name"]) == ["城区片区", "北部片区"]
    for got, want in zip(frame.geometry, (WEST, EAST)):
        # back in lon/lat within ~1e-7 degree (1 cm) of the original corners
        assert got.hausdorff_distance(want) < 1e-7
        assert len(got.exterior.coords) == len(want.exterior.coords)


def test_shapefile_with_short_field_names_and_text_flags(tmp_path):
    path = tmp_path / "roads.shp"
    gpd.GeoDataFrame({"RD_ID": [7, 8], "RD_NAME": ["人民大街", "文化街"], "RD_CLASS": ["arterial", "local"],
                      "SPEED": [60, 25], "ONEWAY": ["否", "是"]},
                     geometry=[LineString([(119.7, 36.3), (119.8, 36.3)]),
                               LineString([(119.8, 36.3), (119.8, 36.4)])],
                     crs="EPSG:4490").to_file(path, engine="pyogrio")
    fields = {"RD_ID": "road_id", "RD_NAME": "name", "RD_CLASS": "class", "SPEED": "speed_kmh",
              "ONEWAY": "oneway"}
    frame = load_layer(_spec(path, kind="roads", fields=fields))
    assert list(frame["road_id"]) == ["7", "8"]
    assert list(frame["oneway"]) == [False, True]
    assert list(frame["name"]) == ["人民大街", "文化街"]


def test_self_intersecting_polygon_is_refused_naming_file_and_feature():
    with pytest.raises(LayerError) as caught:
        load_layer(_spec(DATA / "bowtie.geojson"))
    message = str(caught.value)
    assert "bowtie.geojson" in message
    assert "feature 1" in message and "37078502" in message
    assert "Self-intersection" in message
    assert caught.value.feature == 1


@pytest.mark.parametrize("fields, problem", [
    ({"QHDM": "district_id", "MC": "name"}, "attribute 'MC' (mapped to 'name') is missing"),
    ({"QHDM": "district_id"}, "attribute 'name' is missing"),
])
def test_missing_attribute_is_refused(tmp_path, fields, problem):
    path = tmp_path / "districts.geojson"
    _districts(4490).to_file(path, driver="GeoJSON", engine="pyogrio")
    with pytest.raises(LayerError, match="districts.geojson") as caught:
        load_layer(_spec(path, fields=fields))
    assert problem in str(caught.value)


def test_empty_required_attribute_names_the_feature(tmp_path):
    path = tmp_path / "districts.geojson"
    frame = _districts(4490)
    frame.loc[1, "QHMC"] = None
    frame.to_file(path, driver="GeoJSON", engine="pyogrio")
    with pytest.raises(LayerError) as caught:
        load_layer(_spec(path))
    assert "feature 1 (id 'D2')" in str(caught.value)
    assert "attribute 'name' (source 'QHMC') is empty" in str(caught.value)


def test_wrong_geometry_family_is_refused(tmp_path):
    path = tmp_path / "districts.geojson"
    gpd.GeoDataFrame({"QHDM": ["D1"], "QHMC": ["x"]}, geometry=[Point(119.7, 36.3)],
                     crs="EPSG:4490").to_file(path, driver="GeoJSON", engine="pyogrio")
    with pytest.raises(LayerError, match="feature 0 .*geometry is Point"):
        load_layer(_spec(path))


@pytest.mark.parametrize("suffix, driver", [(".geojson", "GeoJSON"), (".shp", "ESRI Shapefile")])
def test_layer_without_crs_and_without_override_is_refused(tmp_path, suffix, driver):
    path = tmp_path / f"districts{suffix}"
    with pytest.warns(UserWarning, match="'crs' was not provided"):  # the point of the test
        _districts(4326).set_crs(None, allow_override=True).to_file(path, driver=driver,
                                                                    engine="pyogrio")
    assert not path.with_suffix(".prj").exists()
    with pytest.raises(LayerError, match=rf"districts{suffix}: no CRS"):
        load_layer(_spec(path))
    # the same file with an explicit declaration in the profile loads
    frame = load_layer(_spec(path, crs="EPSG:4326"))
    assert frame.geometry.iloc[0].hausdorff_distance(WEST) < 1e-9


def test_geojson_without_crs_member_is_not_assumed_wgs84():
    with pytest.raises(LayerError, match="gcj02_pois.geojson: no CRS"):
        load_layer(_spec(DATA / "gcj02_pois.geojson", kind="addresses", fields={}))


def test_unknown_crs_in_profile_is_refused(tmp_path):
    path = tmp_path / "districts.geojson"
    _districts(4490).to_file(path, driver="GeoJSON", engine="pyogrio")
    with pytest.raises(LayerError, match="unknown CRS 'EPSG:999999'"):
        load_layer(_spec(path, crs="EPSG:999999"))


def test_gcj02_layer_with_override_lands_within_a_metre_of_the_truth():
    messages: list[str] = []
    frame = load_layer(_spec(DATA / "gcj02_pois.geojson", kind="addresses", crs="gcj02", fields={}),
                       progress=messages.append)
    dist = gcrs.distance_m(frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy(),
                           frame["true_lon"].to_numpy(), frame["true_lat"].to_numpy())
    assert dist.max() < 1.0
    raw = gpd.read_file(DATA / "gcj02_pois.geojson")  # read naively, the shift is hundreds of m
    naive = gcrs.distance_m(raw.geometry.x.to_numpy(), raw.geometry.y.to_numpy(),
                            frame["true_lon"].to_numpy(), frame["true_lat"].to_numpy())
    assert naive.min() > 100.0


def test_override_of_a_declared_crs_is_reported(tmp_path):
    path = tmp_path / "districts.geojson"
    _districts(4490).to_file(path, driver="GeoJSON", engine="pyogrio")
    messages: list[str] = []
    load_layer(_spec(path, crs="EPSG:4326"), progress=messages.append)
    assert any("profile overrides with EPSG:4326" in m for m in messages)


def _write_profile(folder: Path, body: str) -> Path:
    path = folder / "profile.toml"
    path.write_text('[city]\nname = "测试市"\n\n' + body, encoding="utf-8")
    return path


def test_profile_concatenates_layers_of_one_kind_and_reports_progress(tmp_path, monkeypatch):
    shutil.copy(DATA / "gcj02_pois.geojson", tmp_path / "pois.geojson")
    many = gpd.GeoDataFrame({"addr_id": [f"A{i}" for i in range(25)], "address": ["x"] * 25,
                             "kind": ["address"] * 25},
                            geometry=[Point(119.7 + i * 1e-3, 36.38) for i in range(25)],
                            crs="EPSG:4490")
    many.to_file(tmp_path / "addresses.gpkg", driver="GPKG", engine="pyogrio")
    monkeypatch.setattr(layers, "BATCH_FEATURES", 10)
    profile = _write_profile(tmp_path, (
        '[layers.addresses]\nfile = "addresses.gpkg"\n\n'
        '[layers.pois]\nkind = "addresses"\nfile = "pois.geojson"\ncrs = "gcj02"\n'))
    messages: list[str] = []
    city = load_profile(profile, progress=messages.append)
    assert len(city.addresses) == 28
    assert list(city.addresses["addr_id"][:2]) == ["A0", "A1"]
    assert city.addresses["kind"].value_counts().to_dict() == {"address": 25, "poi": 3}
    assert [m for m in messages if "/25 features" in m] == [
        "addresses: 10/25 features", "addresses: 20/25 features", "addresses: 25/25 features"]
    assert city.name == "测试市"
    assert len(city.roads) == 0 and "road_id" in city.roads.columns  # absent layer: empty frame


@pytest.mark.parametrize("body, problem", [
    ('[layers.x]\nkind = "rivers"\nfile = "a.geojson"\n', "unknown kind 'rivers'"),
    ('[layers.roads]\nformat = "geojson"\n', "needs a `file` string"),
    ('[layers.roads]\nfile = "a.csv"\n', "format None is not one of"),
    ('[city]\n', "no [layers.*] sections"),
])
def test_malformed_profile_is_refused(tmp_path, body, problem):
    path = tmp_path / "p.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        read_profile(path)
    assert problem in str(caught.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(LayerError, match="nothere.geojson: file not found"):
        load_layer(_spec(tmp_path / "nothere.geojson"))


@pytest.mark.parametrize("ident", ["T0001", "0800", "2026-11-22", "12:30"])
def test_geojson_ids_that_look_like_dates_or_times_stay_text(tmp_path, ident):
    path = tmp_path / "districts.geojson"
    gpd.GeoDataFrame({"QHDM": [ident], "QHMC": ["城区"]}, geometry=[WEST],
                     crs="EPSG:4490").to_file(path, driver="GeoJSON", engine="pyogrio")
    frame = load_layer(_spec(path))
    assert frame["district_id"].tolist() == [ident]


def test_demo_city_asset_ids_are_text(tmp_path):
    from simulators import democity

    city = load_profile(democity.generate(tmp_path / "city"))
    assert city.transformers["asset_id"].iloc[0] == "T0001"
    assert set(city.supply_areas["asset_id"]) <= set(city.transformers["asset_id"])
