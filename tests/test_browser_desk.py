"""Browser tests of the call desk and the field page: Debian's chromium driven by Playwright against
the demo started as real processes. The agent creates a ticket by address search with the keyboard;
the crew, on a phone-size viewport, accepts it, loses the connection, goes en route and on site
(queued, shown as 待发送 2), gets the connection back (sent in order) and resolves with a note and
a photo. No console errors on any page. The phone reaches the demo through a relay the test cuts
while it is offline (tests/netcut.py)."""
from __future__ import annotations

import re

import pytest

from tests.conftest import ARTIFACTS, BROWSER_MARKS, PHONE_SCREEN, ConsoleWatch, login_page
from tests.netcut import go_offline, go_online
from tests.pages import dispatch_to_c01, png
from tests.procs import start_demo

pytestmark = BROWSER_MARKS

PHONE = "13907771234"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_city_profile):
    tmp = tmp_path_factory.mktemp("browser-desk-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=4, city=demo_city_profile, SIM_CREWS="0")  # the crew is us
    yield running
    running.stop()



@pytest.fixture(scope="module")
def created(demo, browser):
    """The agent's ticket, created on the desk by keyboard (number, address)."""
    token = demo.login("agent")
    road = demo.get("/api/address/search?q=%E5%A4%A7%E8%A1%97100%E5%8F%B7&limit=1", token)["candidates"][0]
    typed = road["address"].replace("高密市", "")  # what a caller says: the road and number, no city

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "agent", "/desk")
    assert page.text_content(".topbar strong") == "调度指挥中心"
    page.wait_for_selector("#desk-map[data-ready='1']", timeout=20_000)
    assert page.evaluate("document.activeElement.id") == "phone"
    page.keyboard.type(PHONE)
    page.keyboard.press("Enter")                       # shows the caller's history, moves on
    page.wait_for_function("() => document.getElementById('history').dataset.count === '0'", timeout=10_000)
    page.keyboard.type("李先生")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "address"
    page.keyboard.type(typed)
    page.wait_for_selector("#address-candidates li", timeout=10_000)
    assert page.locator("#address-candidates li").count() >= 2
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    assert page.get_attribute("#address", "aria-activedescendant") == "cand-0"
    first = page.text_content("#cand-0")
    assert first.startswith(road["label"])
    page.keyboard.press("Enter")                       # picks the first candidate, on to the category
    assert page.evaluate("document.activeElement.id") == "category"
    assert page.input_value("#address") == road["label"]
    assert "已定位" in page.text_content("#location")
    page.select_option("#category", "power")
    page.select_option("#urgency", "urgent")
    page.focus("#description")
    page.keyboard.type("整栋楼停电，电梯停运")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("() => document.getElementById('result').dataset.number || "
                           "!document.getElementById('dup-confirm').classList.contains('hidden')", timeout=10_000)
    if page.is_visible("#dup-confirm"):               # the demo's simulated callers may have reported nearby
        page.click("#create-btn")
    page.wait_for_selector("#ticket-number", timeout=10_000)
    number = page.text_content("#ticket-number")
    assert re.fullmatch(r"GD\d{8}-\d{4,}", number)
    assert "已受理" in page.text_content("#result")
    assert page.evaluate("document.activeElement.id") == "phone", page.text_content("#form-error")  # next call
    ticket = demo.get(f"/api/tickets/{number}", token)
    assert (ticket["caller_phone"], ticket["address"], ticket["category"], ticket["urgency"], ticket["lon"]) == \
        (PHONE, road["label"], "power", "urgent", road["lon"])
    page.click("#tab-callbacks")
    page.wait_for_selector("#callback-rows tr")
    page.click("[data-lang-toggle]")
    assert page.text_content("#tab-intake") == "Intake"
    page.click("[data-lang-toggle]")
    page.click("#tab-intake")
    page.screenshot(path=str(ARTIFACTS / "desk.png"))
    page.close()
    assert watch.errors == []
    return number, road


def test_agent_creates_a_ticket_by_address_search_with_the_keyboard(created):
    number, road = created
    assert number.startswith("GD")


def test_crew_works_the_ticket_through_a_lost_connection(demo, browser, created, network):
    number, road = created
    dispatcher = demo.login("dispatcher")
    dispatch_to_c01(demo, number, dispatcher)

    # the dispatcher watches the ticket on the console while the crew works it
    console_context = browser.new_context(viewport={"width": 1600, "height": 1000})
    console = console_context.new_page()
    console_watch = ConsoleWatch(console)
    login_page(console, demo.base, "dispatcher", "/console")
    console.wait_for_selector(f"[data-queue='{number}']", timeout=20_000)
    console.click(f"[data-queue='{number}']")
    console.wait_for_function(f"() => (document.getElementById('detail').dataset.loaded || '').startsWith('{number}@')",
                              timeout=15_000)

    def dispatcher_sees(action: str) -> None:
        console.wait_for_selector(f"#detail-timeline li[data-action='{action}']", state="attached", timeout=20_000)

    context = browser.new_context(**PHONE_SCREEN)
    page = context.new_page()
    watch = ConsoleWatch(page)
    login_page(page, network.base, "crew", "/field")
    card = f"article[data-number='{number}']"
    page.wait_for_selector(card, timeout=15_000)
    assert page.get_attribute(card, "data-state") == "dispatched"
    assert "139****1234" in page.text_content(card)  # the crew sees a masked phone
    nav = page.get_attribute(f"{card} a.nav-link", "href")
    assert nav.startswith("https://uri.amap.com/marker?position=") and "coordinate=gaode" in nav
    page.wait_for_selector("#field-map[data-route]", timeout=10_000)
    page.click(f"{card} [data-action=accept]")
    page.wait_for_selector(f"{card}[data-state='accepted']")
    page.wait_for_selector("#pending.hidden", state="attached", timeout=10_000)
    assert demo.get(f"/api/tickets/{number}", dispatcher)["state"] == "accepted"
    dispatcher_sees("accept")

    go_offline(context, page, network)
    page.click(f"{card} [data-action=depart]")
    page.wait_for_selector(f"{card}[data-state='en_route']")
    page.click(f"{card} [data-action=arrive]")
    page.wait_for_selector(f"{card}[data-state='on_site']")
    assert page.text_content("#pending") == "待发送 2"
    assert page.text_content("#net") == "离线"
    assert demo.get(f"/api/tickets/{number}", dispatcher)["state"] == "accepted"   # nothing sent yet
    page.screenshot(path=str(ARTIFACTS / "field-offline.png"))

    go_online(context, network)
    page.wait_for_selector("#pending.hidden", state="attached", timeout=15_000)
    assert demo.get(f"/api/tickets/{number}", dispatcher)["state"] == "on_site"
    events = demo.get(f"/api/tickets/{number}/timeline", dispatcher)["events"]
    assert [e["action"] for e in events if e["action"] in ("accept", "depart", "arrive")] == ["accept", "depart", "arrive"]
    dispatcher_sees("depart")
    dispatcher_sees("arrive")

    page.click(f"{card} [data-action=resolve]")        # the note is required
    assert page.text_content("#notice") == "请填写处理情况"
    page.fill(f"{card} textarea.resolution", "更换跌落式熔断器，已恢复供电")
    page.set_input_files(f"{card} input.photos", files=[{"name": "site.png", "mimeType": "image/png",
                                                         "buffer": png()}])
    page.click(f"{card} [data-action=resolve]")
    page.wait_for_selector(f"#done li[data-number='{number}']", timeout=15_000)
    page.wait_for_selector("#pending.hidden", state="attached", timeout=15_000)
    final = demo.get(f"/api/tickets/{number}", dispatcher)
    assert (final["state"], final["resolution"]) == ("resolved", "更换跌落式熔断器，已恢复供电")
    events = demo.get(f"/api/tickets/{number}/timeline", dispatcher)["events"]
    photos = [e["data"]["data"]["photo"] for e in events if e["action"] == "note" and "photo" in e["data"].get("data", {})]
    assert len(photos) == 1 and photos[0].endswith(".png")
    page.screenshot(path=str(ARTIFACTS / "field-resolved.png"))
    dispatcher_sees("resolve")
    console.screenshot(path=str(ARTIFACTS / "console-watched-crew.png"))
    console_context.close()
    assert console_watch.errors == []
    context.close()
    assert watch.failed == [] and watch.errors == [], (watch.failed, [(e["action"], e.get("role"), e.get("actor")) for e in events])


def test_an_approximate_address_is_confirmed_on_the_map_before_saving(demo, browser, created):
    """Each suggestion says 精确/近似; an approximate one is saved only once the agent confirms its point."""
    _, road = created
    typed = road["address"].replace("高密市", "") + "附近"  # near, not at: approximate
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "agent", "/desk")
    page.wait_for_selector("#desk-map[data-ready='1']", timeout=20_000)
    page.fill("#phone", "13907775678")
    page.select_option("#type", "complaint")  # no field crew: the crew test's assignments stay as they are
    page.fill("#description", "门口路灯不亮")
    page.focus("#address")
    page.keyboard.type(typed)
    # the answer to the whole text (a slow machine may first show the answer to a part of it, typed
    # while the keys came more than the search's 150 ms apart)
    page.wait_for_function("label => { const c = document.querySelector(\"#cand-0[data-match='approximate']\");"
                           " return c !== null && c.textContent.startsWith(label); }", arg=road["label"], timeout=10_000)
    assert "近似" in page.text_content("#cand-0")
    page.keyboard.press("Enter")                      # picks it: the point waits for a confirmation
    assert page.is_visible("#place-confirm")
    page.keyboard.press("Control+Enter")
    assert page.text_content("#form-error") == "请先在地图上确认近似匹配的位置"
    assert page.evaluate("document.activeElement.id") == "place-confirm-btn"
    assert not page.get_attribute("#result", "data-number")
    page.screenshot(path=str(ARTIFACTS / "desk-approximate.png"))
    page.click("#place-confirm-btn")
    assert not page.is_visible("#place-confirm")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("() => document.getElementById('result').dataset.number || "
                           "!document.getElementById('dup-confirm').classList.contains('hidden')", timeout=10_000)
    if page.is_visible("#dup-confirm"):
        page.click("#create-btn")
    page.wait_for_selector("#ticket-number", timeout=10_000)
    ticket = demo.get(f"/api/tickets/{page.text_content('#ticket-number')}", demo.login("agent"))
    assert (ticket["lon"], ticket["lat"]) == (road["lon"], road["lat"]) and ticket["geocode"] is None
    page.close()
    assert watch.errors == []
