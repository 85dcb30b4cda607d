"""Browser tests: Debian's chromium driven by Playwright against the demo started as real processes."""
from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, BROWSER_MARKS, ConsoleWatch, login_page
from tests.procs import start_demo

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_city_profile):
    tmp = tmp_path_factory.mktemp("browser-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=6, city=demo_city_profile)
    yield running
    running.stop()


def test_map_console_shows_moving_vehicles_without_errors(demo, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "dispatcher")
    page.wait_for_function("() => (document.getElementById('map').dataset.layers || '').split(',').length >= 2",
                           timeout=30_000)  # the city's base layers (districts, roads) drew
    page.wait_for_function("() => document.querySelectorAll('[data-vehicle]').length >= 3", timeout=30_000)
    first = page.eval_on_selector("[data-vehicle]", "el => [el.dataset.vehicle, el.style.transform]")
    page.wait_for_function(
        "([id, t]) => { const el = document.querySelector(`[data-vehicle='${id}']`); return el && el.style.transform !== t; }",
        arg=first, timeout=30_000)
    assert page.locator("#banner").is_hidden()
    assert int(page.text_content("#count-online")) >= 3
    assert page.text_content(".topbar strong") == "调度指挥中心"  # Simplified Chinese by default
    page.click("[data-lang-toggle]")
    assert page.text_content(".topbar strong") == "Dispatch Command Center"
    page.screenshot(path=str(ARTIFACTS / "console.png"))
    page.close()
    assert watch.errors == []


def test_login_page_rejects_a_wrong_password(demo, browser):
    page = browser.new_page()
    watch = ConsoleWatch(page)
    page.goto(demo.base + "/login")
    page.fill("input[name=username]", "dispatcher")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert page.text_content(".error") == "用户名或密码错误"
    page.close()
    assert [e for e in watch.errors if "401" not in e] == []
