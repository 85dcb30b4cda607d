"""Browser test of the responsible unit's desk (/unit): Debian's chromium driven by Playwright
against the demo started as real processes (no simulated callers, crews, unit bots or scenario, so
the only tickets are the test's). The demo's liaison of the power company (unit-pwr00) sees its inbox in the
queue's order, accepts a complaint and feeds back the result with the leader's signature and a
photo; on a second complaint it requests a return (the center refuses it) and an extension, which a
supervisor approves on the console. A supervisor's 督办 shows on the desk's list and ticket row, the
liaison answers it and the console shows it answered. The desk follows the live feed: a ticket sent
to the unit appears without a reload, the ticket open stays chosen and shows a change made by the
center. The page switches to English. No console errors."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import ARTIFACTS, BROWSER_MARKS, QUIET_DEMO, ConsoleWatch, login_page
from tests.pages import png
from tests.procs import PASSWORD, start_demo

pytestmark = BROWSER_MARKS

CENTER = timezone(timedelta(hours=8))  # the demo's TIME_ZONE, Asia/Shanghai


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_city_profile):
    """A quiet demo of this module's own (not the worker's shared one): the inbox test expects
    unit-pwr00's queue to hold exactly its two complaints."""
    tmp = tmp_path_factory.mktemp("browser-unit-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=2, city=demo_city_profile, **QUIET_DEMO)
    yield running
    running.stop()


def _complaint(demo, agent: str, dispatcher: str, text: str) -> str:
    """A power complaint taken by the agent for the power company PWR00, through its review chain
    (班长初审, 督办协调席, 主任审核), whose last approval sends it (交办) to PWR00."""
    place = demo.get("/api/address/search?q=%E5%A4%A7%E8%A1%97100%E5%8F%B7&limit=1", agent)["candidates"][0]
    created = demo.post("/api/tickets", agent, {
        "channel": "phone", "category": "power", "type": "complaint", "urgency": "normal", "description": text,
        "caller_phone": "13905551234", "lon": place["lon"], "lat": place["lat"], "address": place["label"],
        "link": False, "unit_id": "PWR00", "unit_reason": "供电公司办理"})["ticket"]
    for reviewer in ("team_leader", "coordinator", "director"):
        token = demo.login(reviewer)
        ticket = demo.get(f"/api/tickets/{created['number']}", token)
        sent = demo.post(f"/api/tickets/{ticket['number']}/actions/approve_review", token,
                         {"expected_version": ticket["version"]})["ticket"]
    assert (sent["state"], sent["unit_id"]) == ("assigned", "PWR00")
    return sent["number"]


def _open(page, number: str) -> None:
    """Choose a ticket in the inbox and wait for its detail."""
    page.click(f"#inbox-rows tr[data-number='{number}']")
    page.wait_for_function(f"() => (document.getElementById('unit-detail').dataset.loaded || '').startsWith('{number}@')",
                           timeout=10_000)


def _loaded_after(page, number: str, version: int) -> None:
    """Wait until the detail shows the ticket at a later version than `version`."""
    page.wait_for_function(
        "([n, v]) => { const l = document.getElementById('unit-detail').dataset.loaded || ''; "
        "return l.startsWith(n + '@') && Number(l.split('@')[1]) > v; }", arg=[number, version], timeout=10_000)


def test_the_unit_desk_inbox_accept_return_extension_and_feedback(demo, browser, tmp_path):
    agent, dispatcher, supervisor = demo.login("agent"), demo.login("dispatcher"), demo.login("supervisor")
    first = _complaint(demo, agent, dispatcher, "抄表员态度恶劣")
    second = _complaint(demo, agent, dispatcher, "营业厅排队两小时")
    liaison = demo.login("unit-pwr00")
    queue = [t["number"] for t in demo.get("/api/tickets?sort=time_left", liaison)["tickets"]]
    assert set(queue) == {first, second}

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "unit-pwr00", "/unit")
    assert page.text_content("[data-i18n='unit.title']") == "责任单位工作台"
    page.wait_for_function("() => document.querySelectorAll('#inbox-rows tr[data-number]').length === 2", timeout=10_000)
    shown = page.eval_on_selector_all("#inbox-rows tr[data-number]", "rows => rows.map(r => r.dataset.number)")
    assert shown == queue  # the queue's order: least time left first
    assert page.text_content(f"#inbox-rows tr[data-number='{first}'] td:nth-child(3)") == "已交办"

    # 受理, then the result with the leader's signature and a photo
    _open(page, first)
    assert "13905551234" not in page.text_content("#detail-fields")  # the phone is masked for a unit
    assert page.is_hidden("#act-feedback") and page.is_visible("#act-accept")
    version = demo.get(f"/api/tickets/{first}", liaison)["version"]
    page.click("#act-accept button")
    _loaded_after(page, first, version)  # (the live feed may render the new version before the reply)
    page.wait_for_function("() => document.getElementById('unit-result').textContent === '已受理'", timeout=10_000)
    assert page.is_visible("#act-feedback")
    page.fill("#feedback-text", "已约谈抄表员，向用户当面致歉")
    page.click("#act-feedback button[type=submit]")
    assert page.text_content("#unit-result") == "投诉件须由单位负责人签发"  # checked before sending
    page.fill("#feedback-signed", "张经理")
    photo = tmp_path / "site.png"
    photo.write_bytes(png())
    page.set_input_files("#feedback-photos", str(photo))
    version = demo.get(f"/api/tickets/{first}", liaison)["version"]
    page.click("#act-feedback button[type=submit]")
    page.wait_for_function("() => document.getElementById('unit-result').textContent === '已提交办理结果'",
                           timeout=10_000)
    done = demo.get(f"/api/tickets/{first}", dispatcher)
    assert (done["state"], done["signed_by"], done["resolution"]) == ("resolved", "张经理", "已约谈抄表员，向用户当面致歉")
    assert len(done["attachments"]) == 1 and done["attachments"][0].endswith(".png") and done["version"] > version
    page.wait_for_function(f"() => document.querySelector(\"#inbox-rows tr[data-number='{first}'] td:nth-child(3)\")"
                           ".textContent === '已处理'", timeout=10_000)  # resolved: the center's callback next

    # 退单, refused by the center; then 延期
    _open(page, second)
    version = demo.get(f"/api/tickets/{second}", liaison)["version"]
    page.click("#act-accept button")
    _loaded_after(page, second, version)
    assert page.is_hidden("#act-accept") and page.is_visible("#act-return")
    page.fill("#return-reason", "属开发区供电所辖区")
    page.click("#act-return button[type=submit]")
    page.wait_for_selector("#detail-request:not(.hidden)", timeout=10_000)
    assert "退单" in page.text_content("#detail-request") and page.is_hidden("#act-extension")
    page.wait_for_function(  # the inbox is read again after the detail (the live feed may render that first)
        f"() => (document.querySelector(\"#inbox-rows tr[data-number='{second}'] td.pending\") || {{}})"
        ".textContent === '退单'", timeout=10_000)
    ticket = demo.get(f"/api/tickets/{second}", dispatcher)
    assert ticket["request"]["kind"] == "return" and ticket["request"]["reason"] == "属开发区供电所辖区"
    refused = demo.post(f"/api/tickets/{second}/actions/refuse_return", dispatcher,
                        {"expected_version": ticket["version"], "reason": "经核实属本单位"})["ticket"]
    page.click(f"#inbox-rows tr[data-number='{second}']")
    _loaded_after(page, second, refused["version"] - 1)
    assert page.is_hidden("#detail-request") and page.is_visible("#act-extension")
    until = (datetime.now(CENTER) + timedelta(days=12)).replace(hour=17, minute=30, second=0, microsecond=0)
    page.fill("#extension-reason", "需协调多个部门")
    page.fill("#extension-until", until.strftime("%Y-%m-%dT%H:%M"))
    page.click("#act-extension button[type=submit]")
    page.wait_for_function("() => document.getElementById('unit-result').textContent === '已申请延期'", timeout=10_000)
    ticket = demo.get(f"/api/tickets/{second}", supervisor)
    assert ticket["request"]["kind"] == "extension"
    expected_until = until.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ticket["request"]["until"] == expected_until  # the wall time read in the center's zone

    # the supervisor approves it on the console: the resolution deadline moves
    console = browser.new_page(viewport={"width": 1440, "height": 900})
    console_watch = ConsoleWatch(console)
    login_page(console, demo.base, "supervisor", "/console")
    console.wait_for_selector(f"[data-queue='{second}']", timeout=20_000)
    console.click(f"[data-queue='{second}']")
    console.wait_for_selector("#detail-actions [data-request='extension']", timeout=10_000)
    console.click("#detail-actions button[data-decide='approve_extension']")
    console.wait_for_function(f"() => !document.querySelector(\"#detail-actions [data-request]\") && "
                              f"(document.getElementById('detail').dataset.loaded || '').startsWith('{second}@')",
                              timeout=10_000)
    approved = demo.get(f"/api/tickets/{second}", supervisor)
    assert approved["extended_until"] == expected_until == approved["deadlines"]["resolve"]
    assert approved["request"] is None

    # the English switch
    page.click("[data-lang-toggle]")
    assert page.text_content("[data-i18n='unit.title']") == "Unit desk"
    assert page.text_content("[data-i18n='unit.inbox']") == "Inbox"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "unit-desk.png"))
    assert watch.errors == [] and console_watch.errors == []


def test_an_admin_creates_a_liaison_with_its_unit_on_the_admin_page(demo, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "admin", "/admin")
    page.wait_for_selector("#new-user select[name=unit_id] option[value='PWR01']", state="attached", timeout=20_000)
    offered = page.eval_on_selector_all("#new-user select[name=unit_id] option", "os => os.map(o => o.value)")
    assert "PWR00" in offered and "PWR01" in offered and "CENTER" not in offered  # 二级 and 三级 only
    page.fill("#new-user input[name=name]", "li.pwr01")
    page.select_option("#new-user select[name=role]", "unit")
    page.select_option("#new-user select[name=unit_id]", "PWR01")
    page.fill("#new-user input[name=password]", PASSWORD)
    page.click("#new-user button[type=submit]")
    page.wait_for_selector("#user-rows tr[data-user='li.pwr01']", timeout=10_000)
    assert page.text_content("#user-rows tr[data-user='li.pwr01'] td:nth-child(4)") == "PWR01"
    users = {u["name"]: u for u in demo.get("/api/admin/users", demo.login("admin"))["users"]}
    assert (users["li.pwr01"]["role"], users["li.pwr01"]["unit_id"]) == ("unit", "PWR01")
    assert demo.get("/api/me", demo.login("li.pwr01"))["unit_id"] == "PWR01"
    assert watch.errors == []


def test_a_supervisors_supervision_order_on_the_desk_answered_by_the_liaison(demo, browser):
    """督办 on the desk: a supervisor's 督办 (urged once) and a more urgent one show on the unit's
    list, most urgent first, and on their ticket rows; the liaison answers one; it leaves the list
    and the supervisor's console shows it answered."""
    agent, dispatcher, supervisor = demo.login("agent"), demo.login("dispatcher"), demo.login("supervisor")
    later = _complaint(demo, agent, dispatcher, "电费账单多收")
    sooner = _complaint(demo, agent, dispatcher, "停电未提前通知")
    sid = demo.post(f"/api/tickets/{later}/supervision", supervisor, {"message": "请尽快答复用户"})["supervision"]["id"]
    urged = demo.post(f"/api/tickets/{later}/supervision", supervisor, {"message": "再次催办：请今天答复"})["supervision"]
    assert (urged["id"], urged["urgings"]) == (sid, 1)  # a day to answer (the default)
    soon = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
    other = demo.post(f"/api/tickets/{sooner}/supervision", supervisor, {"message": "两小时内答复", "deadline": soon})
    other_id = other["supervision"]["id"]

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "unit-pwr00", "/unit")
    item = f"#sup-rows li[data-supervision='{sid}']"
    page.wait_for_selector(item, timeout=10_000)
    order = page.eval_on_selector_all("#sup-rows li[data-supervision]", "ls => ls.map(l => Number(l.dataset.supervision))")
    assert order.index(other_id) < order.index(sid)  # the earlier deadline first
    text = page.text_content(item)
    assert "再次催办：请今天答复" in text and "催办次数 1" in text and "答复期限" in text and "supervisor" in text
    page.wait_for_selector(f"#inbox-rows tr[data-number='{later}'][data-supervision='{sid}']", timeout=10_000)
    assert "催办次数 1" in page.text_content(f"#inbox-rows tr[data-number='{later}'] td.sup-cell")
    assert page.get_attribute(f"#inbox-rows tr[data-number='{later}'] td.sup-cell", "class") == "sup-cell open"
    _open(page, later)  # the ticket's detail names its 督办 too
    assert "再次催办：请今天答复" in page.text_content("#detail-fields")

    page.click(f"{item} button[type=submit]")
    assert page.text_content("#sup-result") == "请填写答复内容"  # checked before sending
    page.fill(f"{item} input[name=answer]", "已联系用户，明日上门核对电表")
    page.click(f"{item} button[type=submit]")
    page.wait_for_function("() => document.getElementById('sup-result').textContent === '已答复督办'", timeout=10_000)
    page.wait_for_selector(item, state="detached", timeout=10_000)  # answered: off the list
    assert page.get_attribute(f"#inbox-rows tr[data-number='{later}']", "data-supervision") is None
    assert page.is_visible(f"#sup-rows li[data-supervision='{other_id}']")
    [row] = demo.get(f"/api/tickets/{later}/supervision", supervisor)["supervisions"]
    assert (row["state"], row["answered_by"], row["answer"]) == ("answered", "unit-pwr00", "已联系用户，明日上门核对电表")

    # the supervisor's console shows it answered
    console = browser.new_page(viewport={"width": 1600, "height": 1000})
    console_watch = ConsoleWatch(console)
    login_page(console, demo.base, "supervisor", "/console")
    console.wait_for_function("() => window.Console && document.body.dataset.live === 'up'", timeout=30_000)
    console.evaluate("number => window.Console.openTicket(number)", later)
    console.wait_for_selector(f"#detail-supervision [data-supervision='{sid}'][data-state='answered']", timeout=15_000)
    assert "已联系用户，明日上门核对电表" in console.inner_text("#detail-supervision")

    page.click("[data-lang-toggle]")  # English
    assert page.text_content("[data-i18n='unit.sup.title']") == "Supervision orders"
    assert "answer by" in page.text_content(f"#sup-rows li[data-supervision='{other_id}']")
    page.click("[data-lang-toggle]")  # back to Chinese for the next test
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "unit-desk-supervision.png"))
    assert watch.errors == [] and console_watch.errors == []


def test_a_ticket_sent_to_the_unit_appears_on_the_open_desk_without_a_reload(demo, browser):
    """The desk reads its inbox again when the live feed (the unit's view) says one of its tickets
    changed: a new complaint sent (交办) to the unit appears within seconds, well before the
    fallback poll (15 s, 60 s while the feed is up), with no reload; the ticket chosen stays chosen,
    and a note the center adds to it shows in its detail."""
    agent, dispatcher = demo.login("agent"), demo.login("dispatcher")
    held = _complaint(demo, agent, dispatcher, "营业厅服务态度差")
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "unit-pwr00", "/unit")
    page.wait_for_function("() => document.body.dataset.live === 'up'", timeout=20_000)
    _open(page, held)
    page.evaluate("() => { window.sameDesk = true; }")  # gone if the page reloads
    loaded = page.get_attribute("#unit-detail", "data-loaded")

    fresh = _complaint(demo, agent, dispatcher, "电表走字过快")
    page.wait_for_selector(f"#inbox-rows tr[data-number='{fresh}']", timeout=8_000)
    assert page.evaluate("() => window.sameDesk === true")
    assert page.get_attribute(f"#inbox-rows tr[data-number='{held}']", "class") == "selected"
    assert page.get_attribute("#unit-detail", "data-loaded") == loaded  # the ticket open was not touched

    ticket = demo.get(f"/api/tickets/{held}", dispatcher)
    demo.post(f"/api/tickets/{held}/actions/note", dispatcher,
              {"expected_version": ticket["version"], "note": "请于今日联系用户"})
    _loaded_after(page, held, ticket["version"])
    page.wait_for_selector("#detail-timeline li[data-action='note']", timeout=8_000)
    assert "请于今日联系用户" in page.text_content("#detail-timeline")
    assert page.evaluate("() => window.sameDesk === true")
    assert page.get_attribute(f"#inbox-rows tr[data-number='{held}']", "class") == "selected"
    assert watch.errors == []
