"""Browser tests: Debian's chromium driven by Playwright against the demo started as real processes."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.procs import PASSWORD, ROOT, start_demo

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not (Path(CHROMIUM).exists() or shutil.which("chromium")),
                                 reason=f"Debian chromium not installed at {CHROMIUM} (apt-get install chromium)")]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=6)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                      args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


PHONE_SCREEN = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


class ConsoleWatch:
    """Collects console errors and uncaught page errors, and (in ``failed``) HTTP responses >= 400."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.failed: list[str] = []
        page.on("response", lambda r: self.failed.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400 else None)
        page.on("console", lambda msg: self.errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))


def _login(page, base: str, user: str) -> None:
    page.goto(base + "/console")
    assert "/login" in page.url
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/console")


def test_map_console_shows_moving_vehicles_without_errors(demo, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    _login(page, demo.base, "dispatcher")
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
