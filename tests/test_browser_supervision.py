"""Browser test of 督办 on the console: a supervisor opens a ticket in Debian's chromium against the
demo started as real processes, issues a 督办 with a deadline and a message, urges it, and sees
its state and count in the ticket panel and the steps on the timeline; the API agrees. No console
errors; screenshots in test-artifacts/."""
from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, BROWSER_MARKS, ConsoleWatch, login_page
from tests.procs import start_demo

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_city_profile):
    tmp = tmp_path_factory.mktemp("supervision-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=3, city=demo_city_profile, DISPATCH_AUTO="0", SIM_CREWS="0")
    yield running
    running.stop()


def test_a_supervisor_issues_and_urges_a_supervision_from_the_console(demo, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "supervisor")
    page.wait_for_function("() => document.body.dataset.live === 'up'", timeout=30_000)

    agent = demo.login("agent")
    placed = next(s for s in demo.get("/api/sensors", agent)["sensors"] if s["lon"] is not None)
    created = demo.post("/api/tickets", agent, {
        "channel": "phone", "category": "water", "type": "repair", "urgency": "urgent", "link": False,
        "description": "小区停水一整天", "caller_phone": "13912340000", "address": "督办路1号",
        "lon": placed["lon"] + 0.001, "lat": placed["lat"] + 0.001})
    number = created["ticket"]["number"]
    assert created["ticket"]["unit_id"]

    page.evaluate("number => window.Console.openTicket(number)", number)
    page.wait_for_function(f"() => (document.getElementById('detail').dataset.loaded || '').startsWith('{number}@')",
                           timeout=15_000)
    page.select_option("#supervise-hours", "4")
    page.fill("#supervise-message", "请今天内恢复供水并答复")
    page.click("#detail-actions [data-do='supervise']")
    page.wait_for_selector("#detail-supervision [data-state='open']", timeout=15_000)
    assert "请今天内恢复供水并答复" in page.inner_text("#detail-supervision")
    page.wait_for_selector("#detail-timeline li[data-action='note']", timeout=15_000)

    page.fill("#supervise-message", "再次催办")
    page.click("#detail-actions [data-do='supervise']")
    page.wait_for_function("() => (document.getElementById('detail-supervision').textContent || '').includes('再次催办')",
                           timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "console-supervision.png"))
    [row] = demo.get(f"/api/tickets/{number}/supervision", agent)["supervisions"]
    assert (row["issued_by"], row["urgings"], row["message"], row["state"]) == ("supervisor", 1, "再次催办", "open")
    assert row["unit_id"] == created["ticket"]["unit_id"]
    assert "催办次数 1" in page.inner_text("#detail-supervision")
    assert demo.get(f"/api/tickets/{number}", agent)["supervised"] is True
    page.close()
    assert watch.errors == [], watch.failed
