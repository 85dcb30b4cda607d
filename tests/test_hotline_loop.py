"""Tier 3, issue #23's scenario: every ticket type through its loop, through the HTTP API of the
demo started as real processes, each step taken by the real role with its own demo account.

No simulated callers, crews, callbacks, unit bots, sensors or scenario run (the only tickets are the
test's); three vehicles drive so that the crews of the first power stations have live positions.
The places come from the demo city's own units layer (a point inside a station's area), so the
unit each ticket reaches is known without asking the application:

1. 咨询 answered on the call: closed at once, no unit, no crew.
2. 服务 to the 三级 station (交办), which accepts and hands it to one of its crews; the crew works
   and resolves; the agent's callback closes it.
3. 抢修 dispatched by the dispatcher to the top crew of the road recommendation; accepted, on site,
   resolved, closed by the callback.
4. 投诉 through its review chain (sent back once by the team leader, resubmitted, then team leader,
   coordinator, director; neither the agent nor the team leader who took a call reviews it) to the
   二级 department; returned (退单) and the return refused; accepted; an extension approved by the
   supervisor (the deadline moves); a 督办 issued and answered; feedback; a dissatisfied callback
   sends it back to the same unit (rework counted per unit); feedback again; satisfied: closed.
5. 建议 through its coordinator's step to the department, feedback, callback, closed.
6. 表扬 to the department, which returns it; the center re-routes it to the station, which (a praise
   never reaches a field crew) cannot hand it to a crew, feeds back; callback, closed.

After each office ticket: no field crew has it (its crew field, its timeline, every crew
account's own ticket list and field assignments), and dispatching it is refused.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.procs import DemoClient, start_demo

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

FIELD_ACTIONS = {"dispatch", "hand_to_crew", "accept", "depart", "arrive", "resolve"}


class Api(DemoClient):
    """A logged-in JSON client of the demo, as one account, with the loop's steps."""

    def ticket(self, number: str) -> dict:
        """The ticket as this account sees it."""
        return self.get(f"/api/tickets/{number}")

    def act(self, number: str, action: str, **args) -> tuple[int, dict]:
        """An action on the ticket at the version this account reads now."""
        version = self.ticket(number)["version"]
        return self.call("POST", f"/api/tickets/{number}/actions/{action}", {"expected_version": version, **args})

    def ok(self, number: str, action: str, **args) -> dict:
        """An action that must succeed; the ticket after it."""
        status, body = self.act(number, action, **args)
        assert status == 200, f"{self.user} {action} on {number}: {status} {body}"
        return body["ticket"]


class People(dict):
    """The demo's accounts, each logged in once, by name."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def __missing__(self, user: str) -> Api:
        self[user] = Api(self.base, user)
        return self[user]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hotline-loop")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=3, SIM_CALLERS="0", SIM_CREWS="0",
                         SIM_CALLBACKS="0", SIM_SENSORS="0", SIM_SCENARIO="")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def people(demo) -> People:
    return People(demo.base)


@pytest.fixture(scope="module")
def places(demo) -> dict[str, tuple[float, float]]:
    """A point inside each 三级 station's area, from the demo city's units layer."""
    from gis.layers import load_layer, read_profile

    profile = read_profile(demo.data_dir / "city" / "democity" / "profile.toml")
    frame = load_layer(next(s for s in profile.layers if s.kind == "units"))
    frame = frame[frame["level"] == 3]
    return {str(u): (round(g.representative_point().x, 6), round(g.representative_point().y, 6))
            for u, g in zip(frame["unit_id"], frame.geometry)}


def _call(people: People, place: tuple[float, float], user: str = "agent", **fields) -> dict:
    """A call taken on the desk: the new ticket (201)."""
    body = {"channel": "phone", "urgency": "normal", "caller_name": "测试 市民", "lon": place[0], "lat": place[1],
            "link": False, **fields}
    status, reply = people[user].call("POST", "/api/tickets", body)
    assert status == 201, reply
    return reply["ticket"]


def _steps(people: People, number: str) -> list[tuple[str, str, str | None, str | None]]:
    """(action, actor, from state, to state) of every audit event but notes and incident links."""
    events = people["supervisor"].get(f"/api/tickets/{number}/timeline")["events"]
    return [(e["action"], e["actor_id"], e["from_state"], e["to_state"]) for e in events
            if e["action"] not in ("note", "link_incident")]


def _notes(people: People, number: str) -> list[dict]:
    return [e for e in people["supervisor"].get(f"/api/tickets/{number}/timeline")["events"] if e["action"] == "note"]


def _callback(people: People, number: str, satisfaction: str, **body) -> dict:
    """The agent's callback (回访) from the callback queue."""
    agent = people["agent"]
    assert number in [t["number"] for t in agent.get("/api/callbacks?limit=500")["tickets"]]
    status, reply = agent.call("POST", f"/api/tickets/{number}/callback",
                               {"expected_version": agent.ticket(number)["version"], "satisfaction": satisfaction,
                                **body})
    assert status == 200, reply
    return reply["ticket"]


def _crew_ids(people: People) -> list[str]:
    crews = [c["crew_id"] for c in people["dispatcher"].get("/api/crews")["crews"]]
    assert len(crews) == 21, crews
    return crews


def _never_a_crew(people: People, number: str) -> None:
    """No field crew ever had this ticket, and none can get it."""
    dispatcher = people["dispatcher"]
    ticket = dispatcher.ticket(number)
    assert ticket["crew_id"] is None and ticket["route"] != "station", ticket
    assert not FIELD_ACTIONS & {e[0] for e in _steps(people, number)}
    recommendation = dispatcher.get(f"/api/tickets/{number}/recommendation")
    assert recommendation["recommendations"] == [] and "不推荐现场班组" in recommendation["note"]
    if ticket["state"] not in ("closed", "cancelled", "merged"):
        status, reply = dispatcher.call("POST", f"/api/tickets/{number}/assign",
                                        {"crew_id": "C01", "expected_version": ticket["version"]})
        assert status == 409 and reply["error"]["code"] == "route_not_for_crew", reply
    for crew in _crew_ids(people):
        account = people[f"crew-{crew}"]
        for state in ("open", "closed"):
            mine = account.get(f"/api/tickets?state={state}&limit=500")["tickets"]
            assert number not in [t["number"] for t in mine], (crew, state)
        assignments = account.get("/api/field/assignments")
        assert number not in json.dumps(assignments), crew
        assert account.call("GET", f"/api/tickets/{number}")[0] == 404, crew


def _arrive(crew: Api, number: str) -> str:
    """The crew reports on site unless its vehicle's GPS arrival came first (the dispatch worker
    records one within ARRIVAL_RADIUS_M); who recorded the arrival."""
    if crew.ticket(number)["state"] != "on_site":
        status, reply = crew.act(number, "arrive")
        assert status == 200 or (status == 409 and crew.ticket(number)["state"] == "on_site"), reply
    assert crew.ticket(number)["state"] == "on_site"
    [arrival] = [e for e in crew.get(f"/api/tickets/{number}/timeline")["events"] if e["action"] == "arrive"]
    assert arrival["actor_id"] in (crew.user, "system"), arrival
    return arrival["actor_id"]


def _free_power_crews(people: People, timeout: float = 60.0) -> list[dict]:
    """The power crews on the board that are free with a fresh fix (the vehicles report after start)."""
    deadline = time.monotonic() + timeout
    while True:
        crews = [c for c in people["dispatcher"].get("/api/crews")["crews"]
                 if "power" in c["skills"] and c["state"] == "free" and c["lon"] is not None and not c["fix_stale"]]
        if len(crews) >= 2 or time.monotonic() > deadline:
            return crews
        time.sleep(0.5)


# ------------------------------------------------------------------------------ 1. 咨询

def test_a_consultation_is_answered_on_the_call_and_archived(people, places):
    ticket = _call(people, places["WAT01"], category="water", type="consultation", caller_phone="13900000001",
                   description="咨询：水费怎么在手机上缴纳", answer="可通过微信公众号“高密供水”或营业厅缴纳水费")
    number = ticket["number"]
    assert (ticket["state"], ticket["route"], ticket["unit_id"], ticket["crew_id"]) == ("closed", "answer", None, None)
    assert ticket["resolution"] == "可通过微信公众号“高密供水”或营业厅缴纳水费"
    assert _steps(people, number) == [("create", "agent", None, "new"), ("close_direct", "agent", "new", "closed")]
    # archived: among the closed tickets, never in the dispatch pool nor the callback queue
    closed = people["dispatcher"].get("/api/tickets?state=closed&limit=500")["tickets"]
    assert number in [t["number"] for t in closed]
    assert number not in [t["number"] for t in people["agent"].get("/api/callbacks?limit=500")["tickets"]]
    _never_a_crew(people, number)


# ------------------------------------------------------------------------------ 2. 服务

def test_a_service_request_goes_to_its_station_whose_own_crew_does_the_work(people, places):
    ticket = _call(people, places["PWR01"], category="power", type="service", caller_phone="13900000002",
                   description="申请更换损坏的电表箱门")
    number = ticket["number"]
    assert (ticket["state"], ticket["route"], ticket["unit_id"], ticket["review"]) == ("new", "station", "PWR01", None)
    sent = people["dispatcher"].ok(number, "assign")  # 交办 to its own station
    assert (sent["state"], sent["unit_id"]) == ("assigned", "PWR01")
    station = people["unit-pwr01"]
    assert number in [t["number"] for t in station.get("/api/tickets")["tickets"]]
    assert people["unit-pwr00"].ticket(number)["unit_id"] == "PWR01"  # the department sees its station's
    assert people["unit-wat01"].call("GET", f"/api/tickets/{number}")[0] == 404
    assert station.ok(number, "unit_accept")["state"] == "handling"
    status, reply = station.act(number, "hand_to_crew", crew_id="C03")  # another station's crew
    error = reply["error"]
    assert status == 400 and error["code"] == "validation_error", reply
    assert (error.get("field") or error["message"].split(":", 1)[0]) == "crew_id", reply
    handed = station.ok(number, "hand_to_crew", crew_id="C02")
    assert (handed["state"], handed["crew_id"], handed["unit_id"]) == ("dispatched", "C02", "PWR01")
    crew = people["crew-C02"]
    assert number in [t["number"] for t in crew.get("/api/tickets?state=open")["tickets"]]
    assert crew.ok(number, "accept")["state"] == "accepted"
    arrived_by = _arrive(crew, number)
    done = crew.ok(number, "resolve", resolution="已更换电表箱门并加锁")
    assert (done["state"], done["resolution"]) == ("resolved", "已更换电表箱门并加锁")
    # the crew's resolution is the station's result: there is no separate unit feedback after it
    assert "feedback" not in station.ticket(number)["allowed_actions"]
    closed = _callback(people, number, "satisfied", words="很及时")
    assert (closed["state"], closed["satisfaction"]) == ("closed", "satisfied")
    assert _steps(people, number) == [
        ("create", "agent", None, "new"), ("assign", "dispatcher", "new", "assigned"),
        ("unit_accept", "unit-pwr01", "assigned", "handling"), ("hand_to_crew", "unit-pwr01", "handling", "dispatched"),
        ("accept", "crew-C02", "dispatched", "accepted"), ("arrive", arrived_by, "accepted", "on_site"),
        ("resolve", "crew-C02", "on_site", "resolved"), ("queue_callback", "agent", "resolved", "callback"),
        ("close", "agent", "callback", "closed")]


# ------------------------------------------------------------------------------ 3. 抢修

def test_a_repair_goes_to_the_nearest_crew_by_road(people, places):
    crews = _free_power_crews(people)
    assert len(crews) >= 2, crews
    ticket = _call(people, places["PWR01"], category="power", type="repair", urgency="urgent",
                   caller_phone="13900000003", description="整栋楼停电，闻到焦糊味")
    number = ticket["number"]
    assert (ticket["state"], ticket["route"], ticket["unit_id"]) == ("new", "station", "PWR01")
    dispatcher = people["dispatcher"]
    advice = dispatcher.get(f"/api/tickets/{number}/recommendation")
    top = advice["recommendations"]
    assert top and advice["policy"] == "recommend", advice
    assert [r["rank"] for r in top] == list(range(1, len(top) + 1))
    assert top[0]["eta_s"] == min(r["eta_s"] for r in top) and top[0]["route"], top  # nearest by road
    assert {r["crew_id"] for r in top} <= {c["crew_id"] for c in crews}
    crew_id = top[0]["crew_id"]
    status, reply = dispatcher.call("POST", f"/api/tickets/{number}/assign",
                                    {"crew_id": crew_id, "expected_version": dispatcher.ticket(number)["version"]})
    assert status == 200 and (reply["ticket"]["state"], reply["ticket"]["crew_id"]) == ("dispatched", crew_id), reply
    crew = people[f"crew-{crew_id}"]
    assert number in [a["number"] for a in crew.get("/api/field/assignments")["assignments"]]
    assert crew.ok(number, "accept")["state"] == "accepted"
    arrived_by = _arrive(crew, number)
    done = crew.ok(number, "resolve", resolution="更换烧毁的进户线，已恢复供电")
    assert done["state"] == "resolved"
    assert _callback(people, number, "satisfied")["state"] == "closed"
    steps = _steps(people, number)
    assert steps[:3] == [("create", "agent", None, "new"), ("dispatch", "dispatcher", "new", "dispatched"),
                         ("accept", f"crew-{crew_id}", "dispatched", "accepted")]
    assert steps[3] == ("arrive", arrived_by, "accepted", "on_site")
    assert steps[4:] == [("resolve", f"crew-{crew_id}", "on_site", "resolved"),
                         ("queue_callback", "agent", "resolved", "callback"), ("close", "agent", "callback", "closed")]


# ------------------------------------------------------------------------------ 4. 投诉

def _queue(people: People, role: str) -> list[str]:
    return [t["number"] for t in people[role].get(f"/api/tickets?review_role={role}&limit=500")["tickets"]]


def test_a_complaint_through_review_return_extension_supervision_and_rework(people, places):
    ticket = _call(people, places["PWR01"], category="power", type="complaint", caller_phone="13900000004",
                   description="投诉：抄表员多次估抄，电费明显偏高且态度恶劣")
    number = ticket["number"]
    assert (ticket["state"], ticket["route"], ticket["unit_id"]) == ("in_review", "department", "PWR00")
    assert ticket["review"] == {"step": 1, "role": "team_leader", "name": "班长初审", "of": 3}
    # no one reviews what they recorded: the agent has no review step, the team leader not its own call
    status, reply = people["agent"].act(number, "approve_review")
    assert status == 403 and reply["error"]["code"] == "forbidden", reply
    own = _call(people, places["PWR01"], user="team_leader", category="power", type="complaint",
                caller_phone="13900000014", description="投诉：营业厅排队两小时无人办理")
    status, reply = people["team_leader"].act(own["number"], "approve_review")
    assert status == 403 and reply["error"]["code"] == "self_review", reply
    # and it leaves the center only after its chain
    status, reply = people["dispatcher"].act(number, "assign")
    assert status == 409 and reply["error"]["code"] == "invalid_transition", reply

    # 班长初审 sends it back with a note; the agent completes it and resubmits
    assert number in _queue(people, "team_leader")
    back = people["team_leader"].ok(number, "send_back_review", reason="请补充用户户号和抄表时间")
    assert (back["state"], back["review"]) == ("new", None)
    assert number not in _queue(people, "team_leader")
    again = people["agent"].ok(number, "submit_review", note="已补充户号0537001234，抄表时间每月5日")
    assert (again["state"], again["review"]["step"]) == ("in_review", 1)
    for role in ("team_leader", "coordinator", "director"):
        assert number in _queue(people, role)
        status, reply = people["director" if role != "director" else "coordinator"].act(number, "approve_review")
        assert status == 403 and reply["error"]["code"] == "review_not_your_step", (role, reply)  # the step's role
        reviewed = people[role].ok(number, "approve_review", note="同意")
    assert (reviewed["state"], reviewed["unit_id"], reviewed["review"]) == ("assigned", "PWR00", None)

    # 退单: the department returns it, the center refuses the return
    unit = people["unit-pwr00"]
    assert number in [t["number"] for t in unit.get("/api/tickets")["tickets"]]
    assert people["unit-pwr01"].call("GET", f"/api/tickets/{number}")[0] == 404  # the department's, not the station's
    asked = unit.ok(number, "request_return", reason="抄表属城区供电所，建议转供电所办理")
    assert (asked["state"], asked["request"]["kind"]) == ("assigned", "return")
    refused = people["dispatcher"].ok(number, "refuse_return", reason="投诉件由供电公司办理并督导供电所")
    assert (refused["state"], refused["unit_id"], refused["request"]) == ("assigned", "PWR00", None)
    assert unit.ok(number, "unit_accept")["state"] == "handling"

    # 延期: asked by the unit, approved by the supervisor: the resolution deadline moves
    deadline = unit.ticket(number)["deadlines"]["resolve"]
    until = (datetime.now(timezone.utc) + timedelta(days=20)).replace(microsecond=0)
    until_z = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert until_z > deadline
    asked = unit.ok(number, "request_extension", reason="需调取三个月抄表记录并现场核对电表", until=until_z)
    assert asked["request"] == {**asked["request"], "kind": "extension", "until": until_z}
    assert people["dispatcher"].act(number, "approve_extension")[0] == 403  # a supervisor's decision
    extended = people["supervisor"].ok(number, "approve_extension", reason="同意延期")
    assert extended["deadlines"]["resolve"] == until_z == extended["extended_until"] and extended["request"] is None

    # 督办: issued by the supervisor, on the unit's list, answered by the unit
    status, reply = people["supervisor"].call("POST", f"/api/tickets/{number}/supervision",
                                              {"message": "请三日内联系用户并书面答复"})
    assert status == 201 and reply["step"] == "issue", reply
    order = reply["supervision"]
    assert (order["unit_id"], order["holder"], order["issued_by"], order["state"]) == (
        "PWR00", "PWR00", "supervisor", "open")
    listed = unit.get("/api/supervisions?state=open")["supervisions"]
    assert order["id"] in [s["id"] for s in listed if s["number"] == number]
    status, reply = unit.call("POST", f"/api/supervisions/{order['id']}/answer",
                              {"answer": "已安排专人核查抄表记录，三日内答复用户"})
    assert status == 200 and reply["supervision"]["state"] == "answered", reply
    [row] = people["supervisor"].get(f"/api/tickets/{number}/supervision")["supervisions"]
    assert (row["state"], row["answered_by"]) == ("answered", "unit-pwr00")
    steps = [(e["actor_id"], e["data"]["data"]["supervision"], e["data"]["data"]["supervision_id"])
             for e in _notes(people, number) if "supervision" in (e["data"].get("data") or {})]
    assert steps == [("supervisor", "issue", order["id"]), ("unit-pwr00", "answer", order["id"])], steps
    assert unit.ticket(number)["supervised"] is True

    # 反馈 (signed), then a dissatisfied callback: rework to the same unit, counted per unit
    status, reply = unit.act(number, "feedback", resolution="已核对，系估抄所致，已退还多收电费")
    error = reply["error"]  # a complaint's result is signed by the unit's leader
    assert status == 400 and (error.get("field") or error["message"].split(":", 1)[0]) == "signed_by", reply
    fed = unit.ok(number, "feedback", resolution="已核对，系估抄所致，已退还多收电费", signed_by="王经理")
    assert (fed["state"], fed["signed_by"]) == ("resolved", "王经理")
    assert unit.act(number, "close", satisfaction="satisfied")[0] == 403  # the unit never closes
    rework = _callback(people, number, "dissatisfied", words="只退了一个月的钱，态度问题没有处理")
    assert (rework["state"], rework["unit_id"], rework["rework_count"], rework["rework_units"]) == (
        "assigned", "PWR00", 1, {"PWR00": 1})
    assert rework["extended_until"] is None and rework["signed_by"] == ""
    assert number in [t["number"] for t in unit.get("/api/tickets?state=assigned")["tickets"]]
    assert unit.ok(number, "unit_accept")["state"] == "handling"
    fed = unit.ok(number, "feedback", resolution="已退还三个月多收电费，对抄表员批评教育并上门致歉", signed_by="王经理")
    assert fed["state"] == "resolved"
    closed = _callback(people, number, "satisfied", words="满意")
    assert (closed["state"], closed["rework_count"], closed["rework_units"]) == ("closed", 1, {"PWR00": 1})
    counts = people["supervisor"].get("/api/tickets/counts")
    assert counts["unit_rework"] == {"PWR00": 1}, counts  # the rework counted for the unit it went back to

    rework_event = next(e for e in people["supervisor"].get(f"/api/tickets/{number}/timeline")["events"]
                        if e["action"] == "rework")
    assert rework_event["data"]["instruction"] == "只退了一个月的钱，态度问题没有处理"
    assert _steps(people, number) == [
        ("create", "agent", None, "new"), ("submit_review", "agent", "new", "in_review"),
        ("send_back_review", "team_leader", "in_review", "new"), ("submit_review", "agent", "new", "in_review"),
        ("approve_review", "team_leader", "in_review", "in_review"),
        ("approve_review", "coordinator", "in_review", "in_review"),
        ("approve_review", "director", "in_review", "reviewed"), ("assign", "system", "reviewed", "assigned"),
        ("request_return", "unit-pwr00", "assigned", "assigned"),
        ("refuse_return", "dispatcher", "assigned", "assigned"),
        ("unit_accept", "unit-pwr00", "assigned", "handling"),
        ("request_extension", "unit-pwr00", "handling", "handling"),
        ("approve_extension", "supervisor", "handling", "handling"),
        ("feedback", "unit-pwr00", "handling", "resolved"), ("queue_callback", "agent", "resolved", "callback"),
        ("rework", "agent", "callback", "assigned"), ("unit_accept", "unit-pwr00", "assigned", "handling"),
        ("feedback", "unit-pwr00", "handling", "resolved"), ("queue_callback", "agent", "resolved", "callback"),
        ("close", "agent", "callback", "closed")]
    _never_a_crew(people, number)
    _never_a_crew(people, own["number"])


# ------------------------------------------------------------------------------ 5. 建议, 6. 表扬

def test_a_suggestion_goes_through_its_coordinator_to_the_department(people, places):
    ticket = _call(people, places["WAT01"], category="water", type="suggestion", caller_phone="13900000005",
                   description="建议：停水通知提前一天短信告知用户")
    number = ticket["number"]
    assert (ticket["state"], ticket["route"], ticket["unit_id"]) == ("in_review", "department", "WAT00")
    assert ticket["review"]["role"] == "coordinator" and ticket["review"]["of"] == 1
    sent = people["coordinator"].ok(number, "approve_review")
    assert (sent["state"], sent["unit_id"]) == ("assigned", "WAT00")
    unit = people["unit-wat00"]
    assert unit.ok(number, "unit_accept")["state"] == "handling"
    fed = unit.ok(number, "feedback", resolution="已采纳，计划停水前24小时短信通知")
    assert fed["state"] == "resolved"
    assert _callback(people, number, "satisfied")["state"] == "closed"
    assert _steps(people, number) == [
        ("create", "agent", None, "new"), ("submit_review", "agent", "new", "in_review"),
        ("approve_review", "coordinator", "in_review", "reviewed"), ("assign", "system", "reviewed", "assigned"),
        ("unit_accept", "unit-wat00", "assigned", "handling"), ("feedback", "unit-wat00", "handling", "resolved"),
        ("queue_callback", "agent", "resolved", "callback"), ("close", "agent", "callback", "closed")]
    _never_a_crew(people, number)


def test_praise_is_returned_rerouted_to_the_station_and_never_reaches_a_crew(people, places):
    ticket = _call(people, places["GAS01"], category="gas", type="praise", caller_phone="13900000006",
                   description="表扬：新奥燃气抢修师傅半夜上门处理漏气，非常负责")
    number = ticket["number"]
    assert (ticket["state"], ticket["route"], ticket["unit_id"]) == ("in_review", "department", "GAS00")
    assert people["coordinator"].ok(number, "approve_review")["unit_id"] == "GAS00"
    department = people["unit-gas00"]
    department.ok(number, "request_return", reason="表扬对象为新奥燃气，请转新奥燃气办理")
    rerouted = people["dispatcher"].ok(number, "reroute_return", unit_id="GAS01", reason="转新奥燃气")
    assert (rerouted["state"], rerouted["unit_id"], rerouted["route"]) == ("assigned", "GAS01", "department")
    station = people["unit-gas01"]
    assert station.ok(number, "unit_accept")["state"] == "handling"
    assert "hand_to_crew" not in station.ticket(number)["allowed_actions"]
    status, reply = station.act(number, "hand_to_crew", crew_id="C15")  # its own crew, but a praise
    assert status == 409 and reply["error"]["code"] == "route_not_for_crew", reply
    fed = station.ok(number, "feedback", resolution="已在班组会上通报表扬并记入考核")
    assert fed["state"] == "resolved"
    assert _callback(people, number, "basically_satisfied")["state"] == "closed"
    assert _steps(people, number) == [
        ("create", "agent", None, "new"), ("submit_review", "agent", "new", "in_review"),
        ("approve_review", "coordinator", "in_review", "reviewed"), ("assign", "system", "reviewed", "assigned"),
        ("request_return", "unit-gas00", "assigned", "assigned"),
        ("reroute_return", "dispatcher", "assigned", "assigned"),
        ("unit_accept", "unit-gas01", "assigned", "handling"), ("feedback", "unit-gas01", "handling", "resolved"),
        ("queue_callback", "agent", "resolved", "callback"), ("close", "agent", "callback", "closed")]
    _never_a_crew(people, number)


# ------------------------------------------------------------------------------ all of them

def test_no_office_ticket_ever_reached_a_field_crew(people):
    """Over every ticket in the system: a consultation, complaint, suggestion or praise has no
    crew and is on no crew's list."""
    dispatcher = people["dispatcher"]
    tickets = [t for state in ("open", "closed")
               for t in dispatcher.get(f"/api/tickets?state={state}&limit=500")["tickets"]]
    office = {t["number"] for t in tickets if t["type"] in ("consultation", "complaint", "suggestion", "praise")}
    assert all(t["crew_id"] is None for t in tickets if t["number"] in office)
    for crew in _crew_ids(people):
        account = people[f"crew-{crew}"]
        seen = {t["number"] for state in ("open", "closed")
                for t in account.get(f"/api/tickets?state={state}&limit=500")["tickets"]}
        assert not seen & office, (crew, seen & office)
