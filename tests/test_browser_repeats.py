"""Browser test of the desk's repeat-call offer (issue #24, `command.repeats`): Debian's chromium
driven by Playwright against the demo started as real processes, without the simulated callers.
The caller of an open power repair calls again: the desk offers to link it as a repeat call
(关联为重复来电) and the ticket turns orange; the same caller about a water problem is offered no
link and becomes a new ticket."""
from __future__ import annotations

from tests.conftest import BROWSER_MARKS, ConsoleWatch, login_page

pytestmark = BROWSER_MARKS

PHONE = "13906661234"


def _call(page, category: str, description: str) -> None:
    """Take a call on the desk by the keyboard: the number, no address, category and description."""
    page.focus("#phone")
    page.keyboard.type(PHONE)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('history').dataset.count >= '1'", timeout=10_000)
    page.select_option("#category", category)
    page.fill("#description", description)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#dup-confirm:not(.hidden)", timeout=10_000)


def test_the_desk_offers_the_callers_repeat_and_no_link_for_a_new_problem(demo, browser):
    token = demo.login("agent")
    # a place of its own: the worker's demo is shared, and other files' calls are at 大街
    place = demo.get("/api/address/search?q=%E4%BA%BA%E6%B0%91%E8%B7%AF103%E5%8F%B7&limit=1", token)["candidates"][0]
    first = demo.post("/api/tickets", token, {
        "channel": "phone", "category": "power", "type": "repair", "description": "家里停电了",
        "caller_phone": PHONE, "address": place["label"], "lon": place["lon"], "lat": place["lat"],
        "link": False})  # its own ticket whatever the demo has open nearby
    number = first["ticket"]["number"]

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "agent", "/desk")
    page.wait_for_selector("#desk-map[data-ready='1']", timeout=20_000)
    _call(page, "power", "还是没电")  # no address: the same caller, category and type is the same problem
    assert page.get_attribute("#link-btn", "data-match") == "repeat"
    assert page.text_content("#link-btn") == f"关联为重复来电 → {number}"
    assert page.is_visible(f"#duplicates li[data-number='{number}'] .badge.repeat")
    page.click("#link-btn")
    page.wait_for_selector("#ticket-number", timeout=10_000)
    assert page.text_content("#ticket-number") == number and "已作为重复来电关联到" in page.text_content("#result")
    ticket = demo.get(f"/api/tickets/{number}", token)
    assert (ticket["repeat_count"], ticket["duplicate_count"], ticket["color"], ticket["calls"]) == (1, 0, "orange", 2)

    _call(page, "water", "小区停水了")  # the same phone about another problem: listed, but no link offered
    assert not page.is_visible("#link-btn")
    page.click("#create-btn")
    page.wait_for_function(f"() => (document.getElementById('result').dataset.number || '{number}') !== '{number}'",
                           timeout=10_000)
    other = page.get_attribute("#result", "data-number")
    assert other != number and "已受理" in page.text_content("#result")
    assert demo.get(f"/api/tickets/{other}", token)["category"] == "water"
    assert demo.get(f"/api/tickets/{number}", token)["color"] == "orange"
    page.close()
    assert watch.errors == []
