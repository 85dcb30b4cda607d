"""The street base map in the browser: basemap.js's WGS84 -> GCJ-02 transform against gis/crs.py
on a table of points (chromium, no server), and the console of a demo that drew the demo city's
tiles at its start (as `make demo` does) with BASEMAP_DATUM=gcj02: the tiles come from /tiles/...,
and a vehicle's marker stands where its fix shifted to GCJ-02 falls on Web Mercator, not at the fix."""
from __future__ import annotations

import math

import pytest

from gis import crs
from store.mbtiles import read_metadata
from tests.conftest import ARTIFACTS, BROWSER_MARKS, QUIET_DEMO, ROOT, ConsoleWatch, login_page
from tests.procs import start_demo

pytestmark = BROWSER_MARKS

STATIC = ROOT / "web" / "static"
POINTS = [  # lon, lat: the demo city, Beijing, Shanghai, Urumqi, Guangzhou, Sanya, Harbin; outside China
    (119.75, 36.38), (116.391, 39.907), (121.4737, 31.2304), (87.6168, 43.8256), (113.2644, 23.1291),
    (109.5119, 18.2528), (126.535, 45.8038), (139.6917, 35.6895), (2.3522, 48.8566), (-74.006, 40.7128),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_city_profile):
    """A quiet demo of the demo city that draws its base map at start as `make demo` does
    (DEMO_BASEMAP), its tiles declared GCJ-02."""
    tmp = tmp_path_factory.mktemp("basemap-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=3, city=demo_city_profile, **QUIET_DEMO,
                         DEMO_BASEMAP="1", BASEMAP_DATUM="gcj02")
    yield running
    running.stop()


def test_the_pages_gcj02_transform_is_gis_crs(browser):
    page = browser.new_page()
    page.set_content("<html><body data-basemap='{\"datum\": \"gcj02\"}'><div id='m'></div></body></html>")
    page.add_script_tag(path=str(STATIC / "vendor" / "leaflet" / "leaflet.js"))
    page.add_script_tag(path=str(STATIC / "js" / "basemap.js"))
    results = page.evaluate("""points => { var crs = L.map("m", Basemap.mapOptions({})).options.crs;
      return points.map(p => {  // crs: the map's CRS on a GCJ-02 base map
        var g = Basemap.toGcj02(p[0], p[1]), w = Basemap.fromGcj02(g[0], g[1]);
        var back = crs.pointToLatLng(crs.latLngToPoint(L.latLng(p[1], p[0]), 15), 15);
        var plain = L.CRS.EPSG3857.latLngToPoint(L.latLng(g[1], g[0]), 15), ours = crs.latLngToPoint(L.latLng(p[1], p[0]), 15);
        return {gcj: g, wgs: w, back: [back.lng, back.lat], dx: ours.x - plain.x, dy: ours.y - plain.y};
    }); }""", POINTS)
    page.close()
    for (lon, lat), got in zip(POINTS, results):
        glon, glat = crs.wgs84_to_gcj02(lon, lat)
        assert got["gcj"] == pytest.approx([glon, glat], abs=1e-11), (lon, lat)
        assert got["wgs"] == pytest.approx(list(crs.gcj02_to_wgs84(glon, glat)), abs=1e-9), (lon, lat)
        assert got["wgs"] == pytest.approx([lon, lat], abs=1e-9)
        assert got["back"] == pytest.approx([lon, lat], abs=1e-8)  # a click lands where it was drawn
        assert abs(got["dx"]) < 1e-6 and abs(got["dy"]) < 1e-6  # a point drawn = Web Mercator of its GCJ-02
        if not crs.in_china(lon, lat):
            assert got["gcj"] == [lon, lat]


def mercator_pixel(lon: float, lat: float, zoom: int) -> tuple[float, float]:
    """Web Mercator world pixels of a point (256-pixel tiles), the plain formula."""
    size = 256 * 2 ** zoom
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return (lon + 180) / 360 * size, (1 - y / math.pi) / 2 * size


def test_the_demo_drew_the_citys_tile_set(demo):
    meta = read_metadata(demo.data_dir / "basemap" / "city.mbtiles")  # DATA_DIR/basemap, as make demo
    assert (meta["minzoom"], meta["maxzoom"], meta["format"]) == ("11", "15", "png")
    assert "base map: zoom 15:" in demo.log() and "tiles written" in demo.log()


def test_the_console_shows_the_base_map_and_shifts_markers_onto_gcj02(demo, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "dispatcher")
    page.wait_for_function("""() => Array.from(document.querySelectorAll('.leaflet-tile-pane img.leaflet-tile'))
        .some(i => i.src.indexOf('/tiles/') >= 0 && i.complete && i.naturalWidth === 256)""", timeout=30000)
    assert not watch.errors, watch.errors
    page.wait_for_function("() => document.querySelectorAll('[data-vehicle]').length >= 1", timeout=30_000)
    # zoom 16 on the first vehicle, set again until it holds: the console's own fit to the districts
    # (when their layer arrives) may come after a first setView and undo it
    page.wait_for_function("""() => { if (window.__zoomSet && Console.map.getZoom() === 16) { return true; }
        var id = Object.keys(Console.state.vehicles)[0], fix = Console.state.vehicles[id].data.fix;
        Console.map.setView([fix.lat, fix.lon], 16, {animate: false}); window.__zoomSet = true; return false; }""",
                           polling=1000, timeout=30_000)  # true once a view set a second earlier still holds
    page.wait_for_function("""() => Array.from(document.querySelectorAll('img.leaflet-tile'))
        .some(i => i.src.indexOf('/tiles/15/') >= 0 && i.complete && i.naturalWidth === 256)""", timeout=30000)
    seen = page.evaluate("""() => { var id = Object.keys(Console.state.vehicles)[0], v = Console.state.vehicles[id];
        var pos = L.DomUtil.getPosition(v.marker.getElement()), origin = Console.map.getPixelOrigin();
        return {lon: v.data.fix.lon, lat: v.data.fix.lat, x: pos.x + origin.x, y: pos.y + origin.y,
                zoom: Console.map.getZoom()}; }""")  # one synchronous read: the fix and where it is drawn
    assert seen["zoom"] == 16
    expected = mercator_pixel(*crs.wgs84_to_gcj02(seen["lon"], seen["lat"]), 16)
    unshifted = mercator_pixel(seen["lon"], seen["lat"], 16)
    assert abs(seen["x"] - expected[0]) <= 1 and abs(seen["y"] - expected[1]) <= 1, (seen, expected)
    assert math.dist(unshifted, expected) > 100  # ~500 m of GCJ-02 offset at zoom 16: far from the fix
    page.screenshot(path=str(ARTIFACTS / "console-basemap-gcj02.png"))
    tiles = page.evaluate("() => Array.from(document.querySelectorAll('img.leaflet-tile')).map(i => i.src)")
    assert tiles and all("/tiles/" in src for src in tiles)
    assert not [f for f in watch.failed if "/tiles/" in f], watch.failed  # none asked outside the set
    assert not watch.errors, watch.errors
    page.close()
