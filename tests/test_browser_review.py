"""Browser test of a review step (审核) on the console: Debian's chromium driven by Playwright
against the demo started as real processes (no simulated callers, crews, unit bots or scenario, so
the only tickets are the test's). A complaint taken by the agent waits for the team leader: the
team leader's console queue lists it, the ticket panel shows the step, 审核通过 moves it to the
coordinator's step; the coordinator sends it back to the agent with a reason, refused without
one. No console errors (a reviewer's console reads only what its role may)."""
from __future__ import annotations

from tests.conftest import BROWSER_MARKS, ConsoleWatch, login_page

pytestmark = BROWSER_MARKS


def _step(page, number: str, label: str) -> None:
    page.wait_for_selector(f"[data-queue='{number}']", timeout=20_000)
    page.click(f"[data-queue='{number}']")
    page.wait_for_selector("#detail-actions button[data-review='approve_review']", timeout=10_000)
    assert label in page.text_content("#detail-body")


def test_a_team_leader_approves_and_a_coordinator_sends_back_on_the_console(demo, browser):
    agent = demo.login("agent")
    created = demo.post("/api/tickets", agent, {
        "channel": "phone", "category": "power", "type": "complaint", "urgency": "normal",
        "description": "营业厅服务态度差", "caller_phone": "13905551234", "link": False})["ticket"]
    number = created["number"]
    assert (created["state"], created["review"]["role"]) == ("in_review", "team_leader")

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "team_leader", "/console")
    _step(page, number, "1/3")
    page.fill("#review-note", "诉求清楚")
    page.click("#detail-actions button[data-review='approve_review']")
    page.wait_for_selector(f"[data-queue='{number}']", state="detached", timeout=10_000)  # left its queue
    ticket = demo.get(f"/api/tickets/{number}", agent)
    assert (ticket["state"], ticket["review"]["step"], ticket["reviewers"]) == ("in_review", 2, ["team_leader"])

    second = browser.new_page(viewport={"width": 1440, "height": 900})
    second_watch = ConsoleWatch(second)
    login_page(second, demo.base, "coordinator", "/console")
    _step(second, number, "2/3")
    second.click("#detail-actions button[data-review='send_back_review']")  # no reason: refused in the page
    assert demo.get(f"/api/tickets/{number}", agent)["state"] == "in_review"
    second.fill("#review-note", "请补充营业厅名称")
    second.click("#detail-actions button[data-review='send_back_review']")
    second.wait_for_selector(f"[data-queue='{number}']", state="detached", timeout=10_000)
    ticket = demo.get(f"/api/tickets/{number}", agent)
    assert (ticket["state"], ticket["review"], ticket["reviewers"]) == ("new", None, [])
    timeline = demo.get(f"/api/tickets/{number}/timeline", agent)["events"]
    assert [(e["action"], e["actor_id"]) for e in timeline[-2:]] == [
        ("approve_review", "team_leader"), ("send_back_review", "coordinator")]
    assert watch.errors == [] and second_watch.errors == []


def test_an_untrue_feedback_at_the_desks_callback_goes_back_to_the_unit(demo, browser):
    """The callback on the agent's desk: the citizen says satisfied but the feedback is not true
    (属实 unticked): the complaint goes back to the same unit as rework (转办督查单)."""
    agent = demo.login("agent")
    number = demo.post("/api/tickets", agent, {
        "channel": "phone", "category": "power", "type": "complaint", "urgency": "normal",
        "description": "抄表员未上门", "caller_phone": "13905554321", "link": False,
        "unit_id": "PWR00", "unit_reason": "供电公司办理"})["ticket"]["number"]
    for user, action, body in (("team_leader", "approve_review", {}), ("coordinator", "approve_review", {}),
                               ("director", "approve_review", {}), ("unit-pwr00", "unit_accept", {}),
                               ("unit-pwr00", "feedback", {"resolution": "已上门核实", "signed_by": "王经理"})):
        token = demo.login(user)
        ticket = demo.get(f"/api/tickets/{number}", token)
        demo.post(f"/api/tickets/{number}/actions/{action}", token, {"expected_version": ticket["version"], **body})
    assert demo.get(f"/api/tickets/{number}", agent)["state"] == "resolved"

    page = browser.new_page(viewport={"width": 1440, "height": 900})
    watch = ConsoleWatch(page)
    login_page(page, demo.base, "agent", "/desk")
    page.click("#tab-callbacks")
    row = f"#callback-rows tr[data-number='{number}']"
    page.wait_for_selector(row, timeout=20_000)
    page.select_option(f"{row} .satisfaction", "satisfied")
    page.uncheck(f"{row} .truthful")
    page.fill(f"{row} .words", "用户说没人上门")
    page.click(f"{row} button.record")
    page.wait_for_function(f"() => document.getElementById('callback-result').dataset.number === '{number}'",
                           timeout=10_000)
    ticket = demo.get(f"/api/tickets/{number}", agent)
    assert (ticket["state"], ticket["unit_id"], ticket["rework_units"]) == ("assigned", "PWR00", {"PWR00": 1})
    assert watch.errors == []
