"""Browser tests of the wall display (大屏) in zones, in Debian's chromium on the worker's quiet demo:
at 1920x1080 and 3840x2160 the page fills the screen without scrollbars, its counters, KPIs and
ticket bars are not cut off and its text grows with the screen; the map draws the vehicles and a
ticket made through the API; a
reading over a critical limit published on MQTT (by a gateway the admin issues through the API: the
quiet demo simulates no sensors, so it has no SCADA gateway) reaches the alarm ticker
with its unit, the map and the sensor subsystems, and a pressure point's and a transformer's readings
show under their DMA and feeder; the KPI zone has values with units; after the
live socket's network is cut the banner shows, and it goes away by itself once the network is back.
Screenshots in test-artifacts/ (wall-1920.png, wall-3840.png, wall-en.png)."""
from __future__ import annotations

import json
import time
from urllib.parse import urlparse

from shapely.geometry import shape

from tests.conftest import ARTIFACTS, BROWSER_MARKS, ConsoleWatch, login_page

pytestmark = BROWSER_MARKS

NO_SCROLL = ("() => document.scrollingElement.scrollHeight <= innerHeight && "
             "document.scrollingElement.scrollWidth <= innerWidth")
# the zones that must show all they hold (the ticker and the subsystems may clip their tail)
UNCUT = ("() => ['#w-counters', '#w-kpis', '.bars-zone', '.wall-head'].filter(s => {"
         " const e = document.querySelector(s);"
         " return e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1; })")
# the smallest text on the page, as a share of the screen's height
SMALLEST_TEXT = ("() => Math.min(...[...document.querySelectorAll('body *')].filter(e => e.offsetParent !== null &&"
                 " [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))"
                 ".map(e => parseFloat(getComputedStyle(e).fontSize))) / innerHeight")


def _publish_as_new_gateway(demo, sensor_ids: list[str], messages: list[tuple[str, dict]]) -> None:
    """Issue a gateway credential for ``sensor_ids`` (POST /api/admin/devices, as the admin) and
    publish JSON readings with it on the demo's device broker (QoS 1, confirmed); the broker takes
    the new credential within seconds, so the connection is retried until it is accepted."""
    import paho.mqtt.client as mqtt

    device_id = f"WALL-GW{int(time.time() * 1000) % 10**9}"
    issued = demo.post("/api/admin/devices", demo.login("admin"),
                       {"kind": "gateway", "device_id": device_id, "sensors": sensor_ids})
    url = urlparse(json.loads((demo.data_dir / "run" / "servers.json").read_text())["device_url"])
    deadline = time.monotonic() + 20
    while True:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id)
        client.username_pw_set(device_id, issued["secret"])
        try:
            client.connect(url.hostname, url.port or 1883)
            client.loop_start()
            for topic, payload in messages:
                client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)
            return
        except (RuntimeError, ValueError, OSError):
            assert time.monotonic() < deadline, "the broker did not accept the issued gateway credential"
            time.sleep(0.5)
        finally:
            client.disconnect()
            client.loop_stop()


def _check_fits(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / name))
    assert page.evaluate(NO_SCROLL), page.evaluate("() => [document.scrollingElement.scrollWidth, "
                                                   "document.scrollingElement.scrollHeight, innerWidth, innerHeight]")
    assert page.evaluate(UNCUT) == []
    assert page.evaluate(SMALLEST_TEXT) >= 0.0118  # about 13 px at 1080 lines, 26 px at 2160
    box = page.locator("#w-map").bounding_box()
    others = [page.locator(s).bounding_box() for s in (".ticker-zone", ".sensors-zone", "#w-kpis", ".bars-zone")]
    assert all(box["width"] * box["height"] > o["width"] * o["height"] for o in others)  # the map is the largest


def test_wall_zones_fill_the_screen_and_show_map_alarms_sensors_and_kpis(demo, browser):
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "supervisor", "/wall")
    token = demo.login("supervisor")
    vehicles = [v for v in demo.get("/api/vehicles", token)["vehicles"] if v.get("fix")]
    assert vehicles
    page.wait_for_function(f"() => Number(document.getElementById('w-map').dataset.vehicles) >= {len(vehicles)}",
                           timeout=30_000)
    district = demo.get("/api/layers/districts", token)["features"][0]
    point = shape(district["geometry"]).representative_point()
    demo.post("/api/tickets", demo.login("agent"), {  # an open ticket placed in the city
        "channel": "phone", "category": "water", "type": "repair", "urgency": "urgent", "description": "水管爆裂",
        "caller_phone": "13900009901", "lon": point.x, "lat": point.y, "link": False})
    page.wait_for_function("() => Number(document.getElementById('w-map').dataset.tickets) >= 1", timeout=15_000)
    page.wait_for_function("() => document.getElementById('w-kpis').dataset.at && "
                           "document.getElementById('w-sensors').dataset.at", timeout=20_000)

    # an alarm: a reading over the critical limit, held past its minimum duration
    sensors = demo.get("/api/sensors", token)["sensors"]
    sensor = next(s for s in sensors if s["high_critical"] is not None and s["quantity"] and s["lon"] is not None)
    value = sensor["high_critical"] * 1.5 + 1
    hold = (sensor.get("min_duration_s") or 0) + 5
    now = time.time()
    topic = f"scada/{sensor['id']}/{sensor['quantity']}"
    # and a pressure point's and a transformer's reading: their DMA and feeder from the city's layers
    dma_of = {f["properties"]["sensor_id"]: f["properties"]["dma_id"]
              for f in demo.get("/api/layers/pressure_points", token)["features"]}
    feeder_of = {f["properties"]["asset_id"]: f["properties"]["feeder"]
                 for f in demo.get("/api/layers/transformers", token)["features"]}
    point = next(s for s in sensors if s["kind"] == "pressure" and s["id"] in dma_of)
    transformer = next(s for s in sensors if s["kind"] == "transformer_load" and s["asset_id"] in feeder_of)
    readings = [(topic, {"value": value, "ts": ts}) for ts in (now - hold, now)]
    readings += [(f"scada/{point['id']}/{point['quantity']}", {"value": 0.31, "ts": now}),
                 (f"scada/{transformer['id']}/{transformer['quantity']}", {"value": 64.0, "ts": now})]
    _publish_as_new_gateway(demo, [sensor["id"], point["id"], transformer["id"]], readings)
    item = f"#w-ticker [data-alarm-id^='{sensor['id']}:']"
    page.wait_for_selector(item, timeout=15_000)
    assert page.get_attribute(item, "data-severity") == "critical"
    newest = page.locator("#w-ticker li").first.get_attribute("data-alarm-id")
    assert newest.startswith(sensor["id"] + ":")  # newest first
    if sensor.get("unit"):
        assert f" {sensor['unit']}" in page.inner_text(item)
    page.wait_for_function("() => Number(document.getElementById('w-map').dataset.alarms) >= 1", timeout=5_000)
    group = f"#w-sensor-list [data-kind='{sensor['kind']}']"
    page.wait_for_selector(f"{group}.alarmed", timeout=5_000)
    page.wait_for_function(f"() => document.querySelector(\"{group} .sub-mean\").textContent !== '—'",
                           timeout=15_000)  # the next read of GET /api/sensors
    assert page.text_content(f"{group} .sub-unit") == (sensor["unit"] or "")
    dma = f"#w-sensor-list [data-kind='pressure'] [data-part='{dma_of[point['id']]}']"
    page.wait_for_selector(dma, timeout=15_000)
    assert "0.31" in page.text_content(f"{dma} .part-figure")
    feeder = f"#w-sensor-list [data-kind='transformer_load'] [data-part='{feeder_of[transformer['asset_id']]}']"
    page.wait_for_selector(f"{feeder} .gauge i", timeout=5_000)
    assert "64" in page.text_content(f"{feeder} .part-figure")

    cells = page.eval_on_selector_all("#w-kpis [data-kpi]", "els => els.map(e => [e.dataset.kpi, "
                                      "e.querySelector('.kpi-value').textContent, "
                                      "e.querySelector('.kpi-unit').textContent])")
    assert len(cells) == 12 and all(unit for _, _, unit in cells)
    assert dict((k, v) for k, v, _ in cells)["tickets"].isdigit()
    assert all(page.text_content(f"#w-counters [data-counter='{c}'] + .unit") for c in
               ("open", "overdue", "alarms", "vehicles", "created", "resolved"))
    page.wait_for_function("() => document.getElementById('w-open').textContent !== '—'", timeout=20_000)
    _check_fits(page, "wall-1920.png")

    page.set_viewport_size({"width": 3840, "height": 2160})
    page.wait_for_function("() => document.getElementById('w-map').dataset.width === '3840'")  # redrawn
    _check_fits(page, "wall-3840.png")

    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_function("() => document.getElementById('w-map').dataset.width === '1920'")
    page.click("[data-lang-toggle]")
    assert page.text_content("[data-i18n='wall.map']") == "Live map"
    english = {"pressure": "Network pressure", "flow": "DMA flow", "transformer_load": "Transformer load"}
    assert page.text_content(f"{group} .sub-name") == english.get(sensor["kind"], sensor["kind"])
    _check_fits(page, "wall-en.png")
    page.click("[data-lang-toggle]")
    page.close()
    assert watch.errors == [], watch.failed


def test_wall_banner_shows_while_the_network_is_cut_and_goes_away_by_itself(demo, network, browser):
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    watch = ConsoleWatch(page)
    login_page(page, network.base, "dispatcher", "/wall")
    page.wait_for_function("() => document.getElementById('w-open').textContent !== '—'", timeout=20_000)
    assert page.locator("#banner").is_hidden()
    network.cut()
    page.wait_for_selector("#banner", state="visible", timeout=10_000)
    assert page.evaluate(NO_SCROLL)  # the banner lies over the page
    page.screenshot(path=str(ARTIFACTS / "wall-cut.png"))
    network.restore()
    page.wait_for_selector("#banner", state="hidden", timeout=20_000)
    page.close()
    # while cut, the page's reconnects and reads failed: only those errors
    assert all("ERR_" in e or "WebSocket" in e or "Failed to load" in e for e in watch.errors), watch.errors
