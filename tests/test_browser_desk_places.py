"""Browser test of the desk's address suggestions for villages and points of interest (issue #24):
Debian's chromium driven by Playwright against the demo started as real processes. A village group
said without 村 and with a Chinese numeral is suggested with its kind (村组 · 村民小组); a station
said by its short name with 旁边往东100米 is suggested as 地点 · 交通 with the offset in its label, and
choosing it places the point 100 m east of the station, to be confirmed on the map."""
from __future__ import annotations

import urllib.parse

import pytest

from gis.crs import distance_m
from tests.conftest import BROWSER_MARKS, ConsoleWatch, login_page

pytestmark = BROWSER_MARKS


def _search(demo, token: str, text: str) -> dict:
    return demo.get("/api/address/search?limit=1&q=" + urllib.parse.quote(text), token)["candidates"][0]


def test_the_desk_shows_village_and_poi_suggestions_with_their_kind(demo, browser):
    token = demo.login("agent")
    village = _search(demo, token, "王家庄村")
    group = _search(demo, token, "王家庄村3组")
    station = _search(demo, token, "高密汽车总站")
    assert (village["kind"], group["kind"], group["poi_type"], station["poi_type"]) == ("village", "village", "村民小组", "交通")

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "agent", "/desk")
    page.wait_for_selector("#desk-map[data-ready='1']", timeout=20_000)
    page.focus("#address")
    page.keyboard.type("王家庄三组")
    page.wait_for_selector("#cand-0[data-kind='village']", timeout=10_000)
    first = page.text_content("#cand-0")
    assert first.startswith(group["label"]) and "村组 · 村民小组" in first and "精确" in first

    page.fill("#address", "")
    page.keyboard.type("汽车站旁边往东100米")
    page.wait_for_selector("#cand-0[data-kind='poi'][data-match='approximate']", timeout=10_000)
    first = page.text_content("#cand-0")
    assert first.startswith(station["label"] + "往东100米") and "地点 · 交通" in first
    page.keyboard.press("Enter")
    assert page.input_value("#address") == station["label"] + "往东100米"
    assert page.is_visible("#place-confirm")  # an approximate point is confirmed on the map
    lon, lat = (float(page.get_attribute("#location", f"data-{k}")) for k in ("lon", "lat"))
    assert distance_m(station["lon"], station["lat"], lon, lat) == pytest.approx(100.0, abs=3.0)
    assert lon > station["lon"]
    assert watch.errors == [] and watch.failed == []
