"""Browser test of the desk's 归入事件 (issue #24): Debian's chromium driven by Playwright against
the demo started as real processes, without the simulated callers. Two outage calls made one power
incident; the dispatcher set its restoration time and published the 停电通知. A new caller next
door: the desk shows the incident (area, calls, ETR, notice) and the notice list, one key (Alt+G)
attaches the call to the incident, and the desk shows the answer with the ETR to read to the caller."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from command.outages import wall_time
from command.ticket_model import CENTER_TZ
from tests.conftest import ARTIFACTS, BROWSER_MARKS, ConsoleWatch, login_page

pytestmark = BROWSER_MARKS

PHONE = "13907771234"


def test_the_desk_attaches_a_call_near_an_open_incident_with_one_key_and_answers_with_the_etr(demo, browser):
    agent, dispatcher = demo.login("agent"), demo.login("dispatcher")
    places = demo.get("/api/address/search?q=%E5%A4%A7%E8%A1%97100%E5%8F%B7&limit=3", agent)["candidates"]
    place = places[0]
    incident_id = None
    for i, phone in enumerate(("13907770001", "13907770002")):  # two outage calls: one incident
        made = demo.post("/api/tickets", agent, {
            "channel": "phone", "category": "power", "type": "repair", "description": "家里停电了",
            "caller_phone": phone, "address": place["label"], "lon": place["lon"] + 0.0002 * i, "lat": place["lat"],
            "link": False})
        incident_id = incident_id or made["incident_id"]
        assert made["incident_id"] == incident_id
    etr = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(hours=3)
    demo.post(f"/api/incidents/{incident_id}/etr", dispatcher, {"etr": etr.isoformat(), "note": "抢修中"})
    notice = demo.post(f"/api/incidents/{incident_id}/notice", dispatcher, {"area_text": "大街100号一带"})
    assert notice["kind"] == "停电" and wall_time(etr) in notice["text"]

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "agent", "/desk")
    page.wait_for_selector("#desk-map[data-ready='1']", timeout=20_000)
    page.wait_for_selector(f"#notices li[data-incident='{incident_id}']", timeout=10_000)  # the notice list
    assert "大街100号一带" in page.text_content(f"#notices li[data-incident='{incident_id}']")
    page.keyboard.type(PHONE)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('history').dataset.count === '0'", timeout=10_000)
    page.keyboard.press("Enter")  # no name
    page.keyboard.type(place["address"].replace("高密市", ""))
    page.wait_for_selector("#address-candidates li", timeout=10_000)
    page.keyboard.press("Enter")  # the first candidate: the caller's place
    page.select_option("#category", "power")
    page.wait_for_selector("#incident-box:not(.hidden)", timeout=10_000)
    assert page.text_content("#incident-id") == incident_id
    assert page.text_content("#incident-facts [data-fact='area']") == "大街100号一带"
    assert page.text_content("#incident-facts [data-fact='calls']") == "2"
    assert wall_time(etr)[-5:] in page.text_content("#incident-facts [data-fact='etr']")
    assert "停电通知" in page.text_content("#incident-facts [data-fact='notice']")
    page.screenshot(path=str(ARTIFACTS / "desk-incident.png"))

    page.keyboard.press("Alt+g")  # 归入事件: one key
    page.wait_for_selector("#answer-script", timeout=10_000)
    number = page.text_content("#ticket-number")
    assert page.get_attribute("#result", "data-incident") == incident_id
    answer = page.text_content("#answer-script")
    assert answer.startswith("答复来电人：") and f"预计{wall_time(etr)}恢复供电" in answer
    assert page.is_hidden("#incident-box")  # the form is ready for the next call
    ticket = demo.get(f"/api/tickets/{number}", agent)
    assert (ticket["incident_id"], ticket["caller_phone"], ticket["category"]) == (incident_id, PHONE, "power")
    assert ticket["description"] == f"来电反映停电（归入事件 {incident_id}）"
    incident = demo.get(f"/api/incidents/{incident_id}", agent)
    assert incident["calls"] == 3 and number in incident["ticket_numbers"]

    # a call saved the usual way (Ctrl+Enter, a new ticket) that the server groups into the incident: the answer too
    page.keyboard.type("13907771235")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('history').dataset.count === '0'", timeout=10_000)
    page.keyboard.press("Enter")
    page.keyboard.type(place["address"].replace("高密市", ""))
    page.wait_for_selector("#address-candidates li", timeout=10_000)
    page.keyboard.press("Enter")
    page.select_option("#category", "power")
    page.fill("#description", "也停电了")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#dup-confirm:not(.hidden)", timeout=10_000)  # the calls nearby
    page.click("#create-btn")
    page.wait_for_function(f"() => (document.getElementById('result').dataset.number || '{number}') !== '{number}'",
                           timeout=10_000)
    page.wait_for_selector("#answer-script", timeout=10_000)
    grouped = page.get_attribute("#result", "data-number")
    assert demo.get(f"/api/tickets/{grouped}", agent)["incident_id"] == incident_id
    assert f"预计{wall_time(etr)}恢复供电" in page.text_content("#answer-script")
    page.close()
    assert watch.errors == []


def test_the_console_sets_the_etr_publishes_the_notice_and_follows_the_live_feed(demo, browser):
    """The dispatcher opens a call of the incident: the ticket panel shows the incident; the ETR is
    set and the notice published from it; a change made elsewhere arrives by the live feed."""
    agent, dispatcher = demo.login("agent"), demo.login("dispatcher")
    place = demo.get("/api/address/search?q=%E5%A4%A7%E8%A1%97200%E5%8F%B7&limit=1", agent)["candidates"][0]
    numbers, incident_id = [], None
    for i, phone in enumerate(("13907770011", "13907770012")):
        made = demo.post("/api/tickets", agent, {
            "channel": "phone", "category": "water", "type": "repair", "description": "家里停水了",
            "caller_phone": phone, "address": place["label"], "lon": place["lon"] + 0.0002 * i, "lat": place["lat"],
            "link": False})
        numbers.append(made["ticket"]["number"])
        incident_id = incident_id or made["incident_id"]
    assert incident_id is not None

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "dispatcher", "/console")
    page.wait_for_selector(f"[data-queue='{numbers[1]}']", timeout=15_000)
    page.click(f"[data-queue='{numbers[1]}']")
    page.wait_for_selector(f"#detail-incident[data-incident='{incident_id}']", timeout=10_000)
    assert page.get_attribute("#detail-incident [data-etr]", "data-etr") == ""
    etr = (datetime.now(timezone.utc) + timedelta(hours=5)).astimezone(CENTER_TZ)  # typed as the center's wall time
    page.fill("#etr-at", etr.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#etr-note", "关阀抢修")
    page.click("#detail-incident [data-incident-do='etr']")
    page.wait_for_function("() => (document.querySelector('#detail-incident [data-etr]') || {}).dataset.etr",
                           timeout=10_000)
    incident = demo.get(f"/api/incidents/{incident_id}", dispatcher)
    assert (incident["etr_by"], incident["etr_note"]) == ("dispatcher", "关阀抢修")
    assert incident["etr"][:16] == etr.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M")
    page.click("#detail-incident [data-incident-do='notice']")
    page.wait_for_selector("#detail-incident [data-notice='active']", timeout=10_000)
    assert "【停水通知】" in page.text_content("#detail-incident [data-notice='active']")

    later = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(hours=7)
    demo.post(f"/api/incidents/{incident_id}/etr", dispatcher, {"etr": later.isoformat()})  # elsewhere: the live feed
    page.wait_for_function(f"() => document.querySelector('#detail-incident [data-etr]').dataset.etr === "
                           f"'{later.strftime('%Y-%m-%dT%H:%M:%SZ')}'", timeout=10_000)
    assert wall_time(later) in page.text_content("#detail-incident [data-notice='active']")
    page.screenshot(path=str(ARTIFACTS / "console-incident.png"))
    page.fill("#incident-resolution", "管道已修复，恢复供水")
    page.click("#detail-incident [data-incident-do='resolve']")
    page.wait_for_selector("#detail-incident[data-status='resolved']", timeout=10_000)
    for number in numbers:
        assert demo.get(f"/api/tickets/{number}", dispatcher)["state"] == "resolved"
    assert demo.get("/api/notices", agent)["notices"] == [] or all(
        n["incident_id"] != incident_id for n in demo.get("/api/notices", agent)["notices"])
    page.close()
    assert watch.errors == []


def test_the_crew_of_the_primary_ticket_sends_the_etr_from_the_field_page(demo, browser):
    agent, dispatcher, crew = demo.login("agent"), demo.login("dispatcher"), demo.login("crew")
    place = demo.get("/api/address/search?q=%E5%A4%A7%E8%A1%97300%E5%8F%B7&limit=1", agent)["candidates"][0]
    made = [demo.post("/api/tickets", agent, {
        "channel": "phone", "category": "power", "type": "repair", "description": "整栋楼停电",
        "caller_phone": phone, "address": place["label"], "lon": place["lon"] + 0.0002 * i, "lat": place["lat"],
        "link": False}) for i, phone in enumerate(("13907770021", "13907770022"))]
    incident_id = made[0]["incident_id"]
    primary = demo.get(f"/api/incidents/{incident_id}", agent)["primary"]
    version = demo.get(f"/api/tickets/{primary}", dispatcher)["version"]
    demo.post(f"/api/tickets/{primary}/actions/dispatch", dispatcher, {"crew_id": "C01", "expected_version": version})
    version = demo.get(f"/api/tickets/{primary}", crew)["version"]
    demo.post(f"/api/tickets/{primary}/actions/accept", crew, {"expected_version": version})

    page = browser.new_page(viewport={"width": 412, "height": 915})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "crew", "/field")
    page.wait_for_selector(f"article[data-number='{primary}'] input.etr", timeout=15_000)
    etr = (datetime.now(timezone.utc) + timedelta(hours=2)).astimezone(CENTER_TZ)
    page.fill(f"article[data-number='{primary}'] input.etr", etr.strftime("%Y-%m-%dT%H:%M"))
    page.click(f"article[data-number='{primary}'] button[data-action='etr']")
    page.wait_for_selector("body[data-etr='sent']", timeout=10_000)
    incident = demo.get(f"/api/incidents/{incident_id}", dispatcher)
    assert incident["etr_by"] == "crew" and incident["etr"][:16] == etr.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M")
    page.close()
    assert watch.errors == []
