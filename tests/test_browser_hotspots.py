"""Browser tests of the hotspots on the console and today's KPIs on the wall: Debian's chromium driven
by Playwright against the demo started as real processes (background callers and the automatic
scenario off, so that the tickets are the test's own). Six drainage calls in one community grid
make an emerging cluster; the dispatcher turns the heat map on in the layer control and sees it
drawn (the cells the API returns, with a legend), changes its period, clicks the cluster (the map
zooms to the grid and lists its tickets; one opens); the wall shows today's KPIs, each with its
unit. No console errors; screenshots in test-artifacts/."""
from __future__ import annotations

import json
import urllib.request

import pytest
from shapely.geometry import Point, shape

from tests.conftest import ARTIFACTS, BROWSER_MARKS, ConsoleWatch, login_page
from tests.procs import start_demo

pytestmark = BROWSER_MARKS
CATEGORY = "drainage"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_city_profile):
    tmp = tmp_path_factory.mktemp("hotspots-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=3, city=demo_city_profile, SIM_CALLERS="false", SIM_SENSORS="false",
                         SIM_SCENARIO="")
    yield running
    running.stop()


def _layer(demo, kind: str, token: str) -> dict:
    request = urllib.request.Request(f"{demo.base}/api/layers/{kind}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def _points_in(polygon, n: int) -> list[tuple[float, float]]:
    """n distinct points inside a polygon, around its representative point (about 20 m apart)."""
    center = polygon.representative_point()
    out = []
    for step in range(200):
        p = Point(center.x + 0.0002 * (step % 5 - 2), center.y + 0.0002 * (step // 5 - 2))
        if polygon.contains(p):
            out.append((p.x, p.y))
        if len(out) == n:
            return out
    raise AssertionError("the grid is too small for the test's points")


@pytest.fixture(scope="module")
def cluster(demo):
    """Six drainage calls in one grid (a fresh demo has no history: an emerging cluster)."""
    agent = demo.login("agent")
    grid = next(f for f in _layer(demo, "grids", agent)["features"] if shape(f["geometry"]).area > 1e-6)
    grid_id = grid["properties"]["grid_id"]
    numbers = []
    for k, (lon, lat) in enumerate(_points_in(shape(grid["geometry"]), 6)):
        created = demo.post("/api/tickets", agent, {
            "channel": "phone", "category": CATEGORY, "type": "repair", "description": "下水道堵塞，污水外溢",
            "caller_phone": f"1390000{k:04d}", "lon": lon, "lat": lat, "link": False})
        assert created["ticket"]["grid"] == grid_id
        numbers.append(created["ticket"]["number"])
    return {"grid_id": grid_id, "numbers": numbers}


def test_dispatcher_turns_the_heat_map_on_and_opens_an_emerging_cluster(demo, browser, cluster):
    ARTIFACTS.mkdir(exist_ok=True)
    token = demo.login("dispatcher")
    heat = demo.get("/api/hotspots/heat?period=week", token)
    assert heat["tickets"] >= 6 and heat["cells"]
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "dispatcher")
    page.wait_for_function("() => document.body.dataset.live === 'up'", timeout=30_000)
    assert page.text_content("#hs-summary") == "在地图图层控件中打开“热力图”查看分布"

    # the heat map: switched on in the layer control, drawn as the API's cells, with a legend
    page.hover(".leaflet-control-layers")
    page.locator(".leaflet-control-layers-overlays label", has_text="热力图").click()
    page.wait_for_function("() => Number(document.getElementById('map').dataset.heatCells || 0) > 0", timeout=15_000)
    drawn = page.evaluate("window.Console.hotspots.heatLayer.getLayers().length")
    assert drawn == len(heat["cells"]) == int(page.get_attribute("#map", "data-heat-cells"))
    assert "件" in page.text_content("#heat-legend") and "本周" in page.text_content("#hs-summary")
    page.mouse.move(700, 500)
    page.screenshot(path=str(ARTIFACTS / "console-heat.png"))
    before = page.get_attribute("#map", "data-heat-at")
    page.select_option("#hs-period", "day")
    page.wait_for_function(f"() => document.getElementById('map').dataset.heatAt !== '{before}'", timeout=15_000)
    day = demo.get("/api/hotspots/heat?period=day", token)
    assert int(page.get_attribute("#map", "data-heat-cells")) == len(day["cells"])
    assert "今日" in page.text_content("#hs-summary")

    # the emerging cluster: listed, and a click zooms to the grid and lists its tickets
    row = f"#cluster-rows tr[data-cluster='{cluster['grid_id']}:{CATEGORY}']"
    page.wait_for_selector(row, timeout=20_000)
    assert "6 件" in page.text_content(row) and "新出现" in page.text_content(row)
    zoom = page.evaluate("window.Console.map.getZoom()")
    page.click(row)
    page.wait_for_function(f"() => document.getElementById('clusters').dataset.selected === '{cluster['grid_id']}:{CATEGORY}'",
                           timeout=10_000)
    page.wait_for_function(f"() => window.Console.map.getZoom() > {zoom}", timeout=10_000)
    listed = page.eval_on_selector_all("#cluster-tickets [data-cluster-ticket]", "els => els.map(e => e.dataset.clusterTicket)")
    assert sorted(listed) == sorted(cluster["numbers"])
    assert page.evaluate("window.Console.hotspots.clusterLayer.getLayers().length") == 1 + 6  # outline + tickets
    page.click(f"#cluster-tickets [data-cluster-ticket='{cluster['numbers'][0]}']")
    page.wait_for_function(f"() => (document.getElementById('detail').dataset.loaded || '').startsWith('{cluster['numbers'][0]}@')",
                           timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "console-cluster.png"))

    page.click("[data-lang-toggle]")
    assert page.text_content("[data-i18n='clusters.title']") == "Emerging clusters"
    assert "6 / 0 tickets" in page.text_content(row)
    page.hover(".leaflet-control-layers")
    page.locator(".leaflet-control-layers-overlays label", has_text="热力图").click()  # off again
    page.wait_for_selector("#heat-legend", state="detached", timeout=5_000)
    page.close()
    assert watch.errors == []


def test_wall_shows_today_s_kpis_with_units(demo, browser, cluster):
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "supervisor", "/wall")
    page.wait_for_function("() => document.getElementById('w-kpis').dataset.at", timeout=20_000)
    wall = demo.get("/api/wall/kpis", demo.login("supervisor"))
    assert wall["kpis"]["tickets"] >= len(cluster["numbers"])
    page.wait_for_function(f"() => Number(document.querySelector(\"[data-kpi='tickets'] .kpi-value\").textContent) >= "
                           f"{wall['kpis']['tickets']}", timeout=20_000)
    cells = page.eval_on_selector_all("#w-kpis [data-kpi]", "els => els.map(e => [e.dataset.kpi, "
                                      "e.querySelector('.kpi-value').textContent, e.querySelector('.kpi-unit').textContent])")
    assert len(cells) == 12 and all(unit for _, _, unit in cells)
    units = {key: unit for key, _, unit in cells}
    assert (units["tickets"], units["arrival_min_mean"], units["satisfaction_pct"]) == ("件", "分钟", "%")
    values = {key: value for key, value, _ in cells}
    assert values["open"] == str(wall["kpis"]["open"]) and values["red"] == str(wall["kpis"]["red"])
    assert page.text_content("[data-i18n='kpi.title']") == "今日指标"
    page.wait_for_function("() => document.getElementById('w-open').textContent !== '—'", timeout=20_000)  # the live feed
    page.screenshot(path=str(ARTIFACTS / "wall-kpis.png"))
    page.click("[data-lang-toggle]")
    assert page.text_content("[data-kpi='tickets'] .kpi-unit") == "tickets"
    assert page.text_content("[data-i18n='kpi.title']") == "Today's KPIs"
    page.close()
    assert watch.errors == []
