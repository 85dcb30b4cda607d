"""The street base map: tiles drawn from a hand-built city's layers (gis.basemap), the MBTiles file
(store.mbtiles, the MBTiles 1.3 spec: metadata, tiles, TMS rows) and the demo's cached tile set
(services.basemap)."""
from __future__ import annotations

import io
import sqlite3

import mercantile
import numpy as np
import pytest
from PIL import Image
from shapely.geometry import LineString, Point

from gis.basemap import BACKGROUND, LAND, PARK, POIS, ROADS, TILE_SIZE, WATER, WATER_TEXT, BaseMap, world_pixels
from services.basemap import BasemapService, ensure_demo_tiles, font_path, mbtiles_path, parse_zooms, render_city
from store.mbtiles import MBTiles, MBTilesError, read_metadata, tms_row, write_mbtiles
from tests.cities import area, ll, write_city
from tests.conftest import test_settings

# one district 4 km square, an arterial across it west to east at y = 1000 m, a local road north to
# south at x = 3000 m; the street (街道) the same square
DISTRICT = area(0, 0, 4000, 4000)
ARTERIAL = LineString([ll(0, 1000), ll(4000, 1000)])
LOCAL = LineString([ll(3000, 0), ll(3000, 4000)])
CITY = {
    "districts": [{"district_id": "D1", "name": "测试区", "g": DISTRICT}],
    "streets": [{"street_id": "S1", "name": "测试街道", "district_id": "D1", "g": DISTRICT}],
    "roads": [{"road_id": "R1", "name": "人民大街", "class": "arterial", "speed_kmh": 60, "oneway": False, "g": ARTERIAL},
              {"road_id": "R2", "name": "", "class": "local", "speed_kmh": 30, "oneway": False, "g": LOCAL}],
    # a lake in a park, both left of the local road
    "landuse": [{"landuse_id": "LU1", "name": "测试公园", "landuse": "park", "g": area(1500, 2500, 2600, 3600)},
                {"landuse_id": "LU2", "name": "镜湖", "landuse": "water", "g": area(1800, 2800, 2300, 3300)}],
    # places named on the map: a hospital (from zoom 14), a village (13); a house number never
    "addresses": [{"addr_id": "P1", "address": "测试市人民大街1号", "kind": "poi", "name": "人民医院", "poi_type": "医院",
                   "g": Point(ll(1000, 2000))},
                  {"addr_id": "V1", "address": "测试区王家庄", "kind": "village", "name": "王家庄", "poi_type": "",
                   "g": Point(ll(1000, 3200))},
                  {"addr_id": "A1", "address": "测试市人民大街2号", "kind": "address", "name": "", "poi_type": "",
                   "g": Point(ll(2500, 2500))}],
}


@pytest.fixture(scope="module")
def city_profile(tmp_path_factory):
    root = tmp_path_factory.mktemp("basemap-city")
    write_city(root, CITY)
    return root / "profile.toml"


@pytest.fixture(scope="module")
def basemap(city_profile):
    from gis.layers import load_profile

    city = load_profile(city_profile)
    font = font_path(test_settings(city_profile.parent))  # the shipped font (BASEMAP_FONT empty)
    return BaseMap.from_city(city, font)


def image(png: bytes) -> np.ndarray:
    """A PNG tile as an RGB array (checks it is a 256-pixel PNG)."""
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.size == (TILE_SIZE, TILE_SIZE)
    return np.asarray(picture.convert("RGB")).astype(int)


def pixel_of(lon: float, lat: float, z: int) -> tuple[mercantile.Tile, int, int]:
    """The tile holding a point at a zoom and the point's pixel in it."""
    x, y = mercantile.xy(lon, lat)
    px, py = world_pixels(np.array([x]), np.array([y]), z)
    tile = mercantile.Tile(int(px[0] // TILE_SIZE), int(py[0] // TILE_SIZE), z)
    return tile, int(px[0]) - tile.x * TILE_SIZE, int(py[0]) - tile.y * TILE_SIZE


def near(colour, expected, tolerance: int = 12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(colour, expected))


def test_the_tiles_cover_the_citys_bounds(basemap):
    west, south, east, north = basemap.bounds()
    assert (west, south) == pytest.approx(ll(0, 0), abs=1e-6) and (east, north) == pytest.approx(ll(4000, 4000), abs=1e-6)
    for z in (11, 13, 15):
        tiles = set(basemap.tiles([z]))
        for lon, lat in (ll(0, 0), ll(4000, 4000), ll(2000, 2000), ll(0, 4000), ll(4000, 0)):
            assert mercantile.tile(lon, lat, z) in tiles
        for tile in tiles:  # none outside the city's box
            b = mercantile.bounds(tile)
            assert b.west <= east and b.east >= west and b.south <= north and b.north >= south
    assert len(basemap.tiles([15])) > len(basemap.tiles([13])) >= 1


@pytest.mark.parametrize("z", [13, 15])
def test_a_roads_pixels_are_coloured_where_the_road_is(basemap, z):
    tile, px, py = pixel_of(*ll(500, 1000), z)  # on the arterial, away from its name
    picture = image(basemap.tile_png(tile.z, tile.x, tile.y))
    assert near(picture[py, px], ROADS["arterial"].fill, 30), picture[py, px]
    tile, px, py = pixel_of(*ll(500, 2500), z)  # inside the district, no road
    picture = image(basemap.tile_png(tile.z, tile.x, tile.y))
    assert near(picture[py, px], LAND, 4), picture[py, px]
    tile, px, py = pixel_of(*ll(-1500, 2000), z)  # outside the city
    if tile in set(basemap.tiles([z])):
        assert near(image(basemap.tile_png(tile.z, tile.x, tile.y))[py, px], BACKGROUND, 4)


def test_local_roads_appear_only_from_zoom_13(basemap):
    for z, drawn in ((12, False), (13, True), (15, True)):
        tile, px, py = pixel_of(*ll(3000, 3500), z)
        colour = image(basemap.tile_png(tile.z, tile.x, tile.y))[py, px]
        assert (not near(colour, LAND, 4)) is drawn, (z, colour)


def test_road_names_are_written_along_the_road_without_overlaps(basemap):
    assert [label.text for label in basemap.labels(12)] == ["测试区"]  # the district's name, no road's or place's yet
    labels = basemap.labels(15)
    names = [label.text for label in labels if label.text == "人民大街"]
    assert names, [label.text for label in labels]
    road = [label for label in labels if label.text == "人民大街"]
    for label in road:
        assert abs(label.angle) < 1.0  # along the west-east road
        x, y = mercantile.xy(*ll(0, 1000))
        _, road_y = world_pixels(np.array([x]), np.array([y]), 15)
        assert abs(label.y - road_y[0]) < 2  # on it
    for i, a in enumerate(labels):  # no two overlap
        for b in labels[i + 1:]:
            assert a.box[2] <= b.box[0] or b.box[2] <= a.box[0] or a.box[3] <= b.box[1] or b.box[3] <= a.box[1], (a, b)
    # the label's pixels: dark text on the road where the name is
    label = road[0]
    tile = mercantile.Tile(int(label.x // TILE_SIZE), int(label.y // TILE_SIZE), 15)
    picture = image(basemap.tile_png(tile.z, tile.x, tile.y))
    cx, cy = int(label.x) - tile.x * TILE_SIZE, int(label.y) - tile.y * TILE_SIZE
    window = picture[max(0, cy - 6):cy + 6, max(0, cx - 25):cx + 25]
    assert (window.sum(axis=2) < 300).sum() > 20  # dark strokes of the characters


def test_places_are_named_beside_a_dot_from_their_zoom(basemap):
    assert {label.text for label in basemap.labels(13)} >= {"王家庄"} and "人民医院" not in {l.text for l in basemap.labels(13)}
    hospital = [label for label in basemap.labels(14) if label.text == "人民医院"]
    assert len(hospital) == 1 and hospital[0].dot is not None
    x, y, colour = hospital[0].dot
    assert colour == POIS["医院"].colour and hospital[0].x > x  # the name to the right of its dot
    tile, px, py = pixel_of(*ll(1000, 2000), 14)
    assert near(image(basemap.tile_png(tile.z, tile.x, tile.y))[py, px], colour, 40)
    assert not [label for z in (13, 14, 15) for label in basemap.labels(z) if "2号" in label.text]


def test_parks_and_water_are_coloured_and_a_lake_is_named(basemap):
    for z in (12, 15):
        tile, px, py = pixel_of(*ll(1600, 3500), z)  # in the park, off the lake
        assert near(image(basemap.tile_png(tile.z, tile.x, tile.y))[py, px], PARK, 4), z
        tile, px, py = pixel_of(*ll(2000, 2900), z)  # in the lake
        assert near(image(basemap.tile_png(tile.z, tile.x, tile.y))[py, px], WATER, 4), z
    assert "镜湖" not in {label.text for label in basemap.labels(12)}
    lake = [label for label in basemap.labels(14) if label.text == "镜湖"]
    assert len(lake) == 1 and lake[0].colour == WATER_TEXT


def test_the_demo_city_has_parks_lakes_and_a_river(demo_city_profile):
    from gis.layers import load_profile

    city = load_profile(demo_city_profile)
    landuse = city.layer("landuse")
    parks = landuse[landuse["landuse"] == "park"]
    named_parks = set(city.addresses.loc[city.addresses["poi_type"] == "公园", "name"])
    assert set(parks["name"]) == named_parks and len(parks) >= 3  # a park round each park POI
    water = landuse[landuse["landuse"] == "water"].set_index("name")
    assert {"夷安湖", "南湖", "胶河"} <= set(water.index)
    for lake, park in (("夷安湖", "夷安湖公园"), ("南湖", "南湖植物园")):
        assert parks.set_index("name").geometry[park].buffer(1e-9).contains(water.geometry[lake])
    districts = city.districts.union_all()
    assert districts.buffer(1e-6).contains(water.geometry["胶河"])  # the river within the city
    assert water.geometry["胶河"].bounds[3] - water.geometry["胶河"].bounds[1] > 0.08  # across it north to south, ~9 km or more


def test_a_label_across_a_tile_edge_is_drawn_in_both_tiles(basemap):
    z = 16
    crossing = [label for label in basemap.labels(z)
                if int(label.box[1] // TILE_SIZE) != int(label.box[3] // TILE_SIZE)]  # across a row edge
    assert crossing, basemap.labels(z)
    label = crossing[0]
    tx, ty = int(label.x // TILE_SIZE), int(label.box[1] // TILE_SIZE)
    upper, lower = image(basemap.tile_png(z, tx, ty)), image(basemap.tile_png(z, tx, ty + 1))
    both = np.vstack([upper, lower])  # the two tiles as one picture, the seam at row 256
    left, top = int(label.box[0]) - tx * TILE_SIZE, int(label.box[1]) - ty * TILE_SIZE
    right, bottom = int(label.box[2]) - tx * TILE_SIZE, int(label.box[3]) - ty * TILE_SIZE
    dark = both[:, max(0, left):right].sum(axis=2) < 300
    assert dark[top:TILE_SIZE].sum() > 5 and dark[TILE_SIZE:bottom].sum() > 5  # strokes above and below the seam


def test_the_mbtiles_file_follows_the_spec_and_reads_back(basemap, city_profile, tmp_path):
    out = tmp_path / "city.mbtiles"
    report = render_city(city_profile, out, font=basemap.font_path, zooms=range(12, 14),
                         source="test")
    meta = read_metadata(out)
    assert {"name", "format", "bounds", "center", "minzoom", "maxzoom"} <= set(meta)  # MBTiles 1.3 required/should
    assert meta["format"] == "png" and (meta["minzoom"], meta["maxzoom"]) == ("12", "13") and meta["source"] == "test"
    west, south, east, north = (float(v) for v in meta["bounds"].split(","))
    assert (west, south, east, north) == pytest.approx(basemap.bounds(), abs=1e-5)
    with sqlite3.connect(out) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        assert {"metadata", "tiles"} <= tables
        rows = conn.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles").fetchall()
    assert len(rows) == report["tiles"] == len(basemap.tiles(range(12, 14)))
    tiles = MBTiles(out)
    for tile in basemap.tiles(range(12, 14)):  # XYZ y in, TMS row in the file: 2^z - 1 - y
        assert (tile.z, tile.x, tms_row(tile.z, tile.y)) in {(z, x, r) for z, x, r, _ in rows}
        assert tiles.tile(tile.z, tile.x, tile.y) == basemap.tile_png(tile.z, tile.x, tile.y)
    assert tiles.tile(12, 0, 0) is None  # outside the set
    assert tiles.tile(16, 1, 1) is None  # deeper than it
    tiles.close()


def test_tms_rows_flip_the_xyz_rows():
    assert tms_row(0, 0) == 0
    assert tms_row(1, 0) == 1 and tms_row(1, 1) == 0
    assert tms_row(15, 12345) == 2 ** 15 - 1 - 12345
    assert tms_row(15, tms_row(15, 12345)) == 12345


def test_a_replaced_file_is_read_again_and_a_bad_one_is_an_error(tmp_path):
    path = tmp_path / "t.mbtiles"
    write_mbtiles(path, {"name": "a", "format": "png"}, [(0, 0, 0, b"first")])
    tiles = MBTiles(path)
    assert tiles.tile(0, 0, 0) == b"first"
    write_mbtiles(path, {"name": "b", "format": "png"}, [(0, 0, 0, b"second")])  # a new rendering, renamed in
    assert tiles.tile(0, 0, 0) == b"second"
    assert not list(tmp_path.glob("*.partial"))
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(MBTilesError):
        tiles.tile(0, 0, 0)
    with pytest.raises(MBTilesError):
        read_metadata(tmp_path / "absent.mbtiles")
    with pytest.raises(MBTilesError):
        MBTiles(tmp_path / "absent.mbtiles").tile(0, 0, 0)


def test_a_failed_rendering_leaves_the_old_file(tmp_path):
    path = tmp_path / "t.mbtiles"
    write_mbtiles(path, {"name": "a", "format": "png"}, [(0, 0, 0, b"old")])

    def failing():
        yield 1, 0, 0, b"new"
        raise RuntimeError("drawing failed")

    with pytest.raises(RuntimeError):
        write_mbtiles(path, {"name": "b"}, failing())
    assert MBTiles(path).tile(0, 0, 0) == b"old" and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("text, zooms", [("11-15", range(11, 16)), ("14", range(14, 15)), (" 0-3 ", range(0, 4))])
def test_zoom_ranges(text, zooms):
    assert parse_zooms(text) == zooms


@pytest.mark.parametrize("text", ["15-11", "x", "11-21", "-1", ""])
def test_bad_zoom_ranges_are_refused(text):
    with pytest.raises(ValueError):
        parse_zooms(text)


def test_the_demo_tiles_are_drawn_once_per_city(city_profile, tmp_path):
    settings = test_settings(tmp_path)
    out = ensure_demo_tiles(settings, city_profile, zooms=range(12, 13))
    assert out == mbtiles_path(settings) == settings.data_dir / "basemap" / "city.mbtiles"
    first = out.stat().st_mtime_ns
    assert ensure_demo_tiles(settings, city_profile, zooms=range(12, 13)) == out
    assert out.stat().st_mtime_ns == first  # cached
    copy = tmp_path / "other" / "profile.toml"
    copy.parent.mkdir()
    for file in city_profile.parent.iterdir():
        (copy.parent / file.name).write_bytes(file.read_bytes())
    copy.write_text(copy.read_text(encoding="utf-8").replace("测试市", "另一个市"), encoding="utf-8")
    ensure_demo_tiles(settings, copy, zooms=range(12, 13))  # another city (generator version, seed): drawn again
    assert out.stat().st_mtime_ns != first
    assert ensure_demo_tiles(settings.with_values(DEMO_BASEMAP=False), city_profile) is None
    assert ensure_demo_tiles(settings.with_values(BASEMAP_URL="https://t0.example/{z}/{x}/{y}.png"), city_profile) is None


def test_the_pages_tile_source(city_profile, tmp_path):
    settings = test_settings(tmp_path)
    service = BasemapService(settings)
    assert service.page_config() == {}  # no file, no URL: no base map
    ensure_demo_tiles(settings, city_profile, zooms=range(12, 14))
    config = service.page_config()
    assert config["url"] == "/tiles/{z}/{x}/{y}.png" and config["datum"] == "wgs84"
    assert (config["min_native_zoom"], config["max_native_zoom"], config["max_zoom"]) == (12, 13, 18)
    (south, west), (north, east) = config["bounds"]
    assert (west, south) == pytest.approx(ll(0, 0), abs=1e-5)
    outside = BasemapService(settings.with_values(
        BASEMAP_URL="http://10.1.2.3:8080/vec_w/wmts?TILEMATRIX={z}&TILEROW={y}&TILECOL={x}",
        BASEMAP_DATUM="cgcs2000", BASEMAP_ATTRIBUTION="天地图"))
    assert outside.page_config() == {"url": "http://10.1.2.3:8080/vec_w/wmts?TILEMATRIX={z}&TILEROW={y}&TILECOL={x}",
                                     "datum": "wgs84", "attribution": "天地图", "max_zoom": 18, "max_native_zoom": 18}
    assert outside.image_origin() == "http://10.1.2.3:8080" and service.image_origin() == ""
    assert BasemapService(settings.with_values(BASEMAP_DATUM="gcj02")).page_config()["datum"] == "gcj02"


@pytest.mark.parametrize("env, message", [
    ({"BASEMAP_URL": "ftp://tiles/{z}/{x}/{y}.png"}, "http"),
    ({"BASEMAP_URL": "https://tiles.example/{z}/{x}.png"}, "{y}"),
    ({"BASEMAP_URL": "tiles/{z}/{x}/{y}.png"}, "BASEMAP_URL"),
    ({"BASEMAP_DATUM": "bd09"}, "wgs84, cgcs2000, gcj02"),
    ({"BASEMAP_MAX_ZOOM": "0"}, "1..22"), ({"BASEMAP_MAX_ZOOM": "23"}, "BASEMAP_MAX_ZOOM"),
    ({"DEMO_BASEMAP": "perhaps"}, "not a boolean"),
])
def test_bad_base_map_settings_are_refused(tmp_path, env, message):
    from config.settings import SettingsError, load

    with pytest.raises(SettingsError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load({"CONFIG_FILE": str(tmp_path / "none.toml"), **env})


@pytest.mark.parametrize("url", ["https://t0.example/vec_w/wmts?TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=k",
                                 "http://gis.local/tiles/{z}/{x}/{-y}.png", "/tiles/{z}/{x}/{y}.png", ""])
def test_tile_url_templates_are_taken(tmp_path, url):
    from config.settings import load

    assert load({"CONFIG_FILE": str(tmp_path / "none.toml"), "BASEMAP_URL": url}).BASEMAP_URL == url


def test_the_tiles_command_draws_a_citys_set(city_profile, tmp_path, capsys):
    from center.__main__ import _tiles  # `python -m center tiles [file] [--zooms N-M]` after its settings

    settings = test_settings(tmp_path, CITY_PROFILE=str(city_profile))
    assert _tiles(settings, "", "12-13") == 0
    out = tmp_path / "var" / "basemap" / "city.mbtiles"  # BASEMAP_MBTILES empty: DATA_DIR/basemap
    printed = capsys.readouterr().out
    assert "base map: zoom 12:" in printed and "base map: zoom 13:" in printed and str(out) in printed
    assert (read_metadata(out)["minzoom"], read_metadata(out)["maxzoom"]) == ("12", "13")
    assert _tiles(settings, str(tmp_path / "other.mbtiles"), "12") == 0
    tile = mercantile.tile(*ll(2000, 2000), 12)
    assert MBTiles(tmp_path / "other.mbtiles").tile(tile.z, tile.x, tile.y) is not None
    assert _tiles(settings, "", "13-12") == 2 and "zooms must be" in capsys.readouterr().err
