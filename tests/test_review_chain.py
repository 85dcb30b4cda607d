"""Review chains (审核流程) and the callback until satisfied (回访闭环), issue #23.

The table and its settings file (pure), the reviewer rules (pure), then through the HTTP API of a
running app with real PostgreSQL and Redis (the unit desk's harness): a complaint through its three
steps by three people to its department; send back and resubmit; reject (不予受理, told at the
callback); self-review refused; the queue of each reviewing role; a dissatisfied callback sends it
back to the same unit as rework with the count, then satisfied closes it; a supervisor's close."""
from __future__ import annotations

import tomllib

import pytest

from config.review_file import SHIPPED_REVIEW, load_review_file
from command.errors import Forbidden, InvalidTransition, ValidationError
from command.review import DEFAULT_REVIEW, NO_REVIEW, table_from_config, waiting_step
from command.tickets import apply
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Role, State, TicketType
from tests.cities import ll
from tests.conftest import T0
from tests.river import PHONE, error_field, unit_app

AGENT = Actor("agent", Role.AGENT)
LEADER = Actor("leader", Role.TEAM_LEADER)
COORD = Actor("coordinator", Role.COORDINATOR)
DIRECTOR = Actor("director", Role.DIRECTOR)
CHAIN = ["team_leader", "coordinator", "director"]


# ------------------------------------------------------------------------------ the table

@pytest.mark.parametrize("ticket_type, steps", [
    ("complaint", ("team_leader", "coordinator", "director")), ("suggestion", ("coordinator",)),
    ("praise", ("coordinator",)), ("repair", ()), ("service", ()), ("consultation", ()),
])
def test_the_default_chains(ticket_type, steps):
    assert tuple(r.value for r in DEFAULT_REVIEW.chain(TicketType(ticket_type))) == steps


def test_the_shipped_file_is_the_defaults_with_a_line_of_help_per_entry():
    assert load_review_file(SHIPPED_REVIEW) == DEFAULT_REVIEW
    text = SHIPPED_REVIEW.read_text(encoding="utf-8")
    entries = [line for line in text.splitlines() if "= [" in line and not line.startswith("#")]
    assert len(entries) == len(TicketType) and all("#" in line for line in entries)
    assert set(tomllib.loads(text)["chains"]) == {t.value for t in TicketType}


@pytest.mark.parametrize("data, key", [
    ({"chain": {}}, "chain"), ({"chains": {"nope": []}}, "chains.nope"),
    ({"chains": {"repair": ["agent"]}}, "chains.repair"), ({"chains": {"repair": "director"}}, "chains.repair"),
    ({"chains": {"praise": ["director", "director"]}}, "chains.praise"),
])
def test_a_bad_review_file_names_its_key(data, key):
    with pytest.raises(ValidationError) as err:
        table_from_config(data)
    assert err.value.details["field"] == key if "field" in err.value.details else key in err.value.message


def test_a_file_changes_only_the_types_it_names():
    table = table_from_config({"chains": {"repair": ["director"]}})
    assert table.chain(TicketType.REPAIR) == (Role.DIRECTOR,) and table.chain(TicketType.COMPLAINT) == \
        DEFAULT_REVIEW.chain(TicketType.COMPLAINT)
    assert all(NO_REVIEW.chain(t) == () for t in TicketType)


# ------------------------------------------------------------------------------ the rules (pure)

def _submitted(created_by: Actor = AGENT):
    ticket, _ = new_ticket({"number": "GD20261122-0001", "channel": "web", "category": "power",
                            "type": "complaint", "description": "态度差"}, now=T0, actor=created_by)
    return apply(ticket, "submit_review", actor=created_by, now=T0, chain=CHAIN)[0]


def test_each_step_by_its_role_then_reviewed():
    t = _submitted()
    assert (t.state, waiting_step(t)) == (State.IN_REVIEW, {"step": 1, "role": "team_leader", "name": "班长初审", "of": 3})
    with pytest.raises(Forbidden) as err:
        apply(t, "approve_review", actor=COORD, now=T0)
    assert err.value.code == "review_not_your_step"
    with pytest.raises(InvalidTransition):
        apply(t, "assign", actor=Actor("d", Role.DISPATCHER), now=T0, unit_id="PWR00")
    for actor, step in ((LEADER, 2), (COORD, 3)):
        t, event = apply(t, "approve_review", actor=actor, now=T0)
        assert waiting_step(t)["step"] == step and event.data["role"] == actor.role.value
    t, event = apply(t, "approve_review", actor=DIRECTOR, now=T0)
    assert (t.state, t.review_passed, t.reviewers, waiting_step(t)) == (
        State.REVIEWED, True, ("leader", "coordinator", "director"), None)
    assert (event.data["step"], event.data["of"]) == (2, 3)


@pytest.mark.parametrize("reviewer, created_by, reviewed, code", [
    (LEADER, LEADER, (), "self_review"),  # the team leader took the call
    (Actor("leader", Role.COORDINATOR), AGENT, ("leader",), "review_twice"),
    (DIRECTOR, Actor("x", Role.AGENT), (), "review_not_your_step"),  # an agent: the role's plain 403
])
def test_no_one_reviews_their_own_ticket_nor_two_steps(reviewer, created_by, reviewed, code):
    t = _submitted(created_by)
    if reviewed:
        t = apply(t, "approve_review", actor=LEADER, now=T0)[0]
    with pytest.raises(Forbidden) as err:
        apply(t, "approve_review", actor=reviewer, now=T0)
    assert err.value.code == code and err.value.to_dict()["error"] == code


def test_an_empty_chain_passes_at_once():
    ticket, _ = new_ticket({"number": "GD20261122-0001", "channel": "web", "category": "power",
                            "type": "repair", "description": "停电"}, now=T0, actor=AGENT)
    t, _ = apply(ticket, "submit_review", actor=AGENT, now=T0, chain=[])
    assert (t.state, t.review_passed) == (State.REVIEWED, True)


# ------------------------------------------------------------------------------ through HTTP

@pytest.fixture
async def api(tmp_path, redis_url, database_url):
    """The unit desk's running app, its ticket manager reading the shipped review file."""
    async with unit_app(tmp_path, redis_url, database_url, review=load_review_file()) as client:
        yield client


async def _complaint(api, user: str = "agent", type: str = "complaint") -> dict:
    lon, lat = ll(100, 200)
    code, reply = await api.call("POST", "/api/tickets", user, {
        "channel": "phone", "category": "power", "type": type, "urgency": "normal",
        "description": "抄表员态度差", "caller_phone": PHONE, "lon": lon, "lat": lat, "link": False,
        "unit_id": "PWR00", "unit_reason": "营业厅属供电公司"})
    assert code == 201, reply
    return reply["ticket"]


async def _queue(api, role: str, user: str) -> list[str]:
    code, reply = await api.call("GET", f"/api/tickets?review_role={role}", user)
    assert code == 200, reply
    return [t["number"] for t in reply["tickets"]]


async def test_a_complaint_through_three_steps_by_three_people_to_its_department(api):
    ticket = await _complaint(api)
    number = ticket["number"]
    assert ticket["state"] == "in_review" and ticket["review"] == {
        "step": 1, "role": "team_leader", "name": "班长初审", "of": 3}
    code, reply = await api.act("dispatcher", number, "assign", unit_id="PWR00")
    assert code == 409 and reply["error"]["code"] == "invalid_transition"  # not before its review
    for role, user in (("team_leader", "team_leader"), ("coordinator", "coordinator"), ("director", "director")):
        assert await _queue(api, role, user) == [number]
        others = {"team_leader", "coordinator", "director"} - {role}
        for other in others:
            assert await _queue(api, other, user) == []
        code, detail = await api.call("GET", f"/api/tickets/{number}", user)
        assert "approve_review" in detail["allowed_actions"]
        code, reply = await api.act(user, number, "approve_review", note="同意")
        assert code == 200, reply
    assert (reply["ticket"]["state"], reply["ticket"]["unit_id"], reply["ticket"]["review"]) == ("assigned", "PWR00", None)
    events = await api.events(number)
    assert [e[:2] for e in events] == [("submit_review", "agent"), ("approve_review", "team_leader"),
                                       ("approve_review", "coordinator"), ("approve_review", "director"),
                                       ("assign", "system")]
    code, listing = await api.call("GET", "/api/tickets", "unit-pwr00")
    assert number in [t["number"] for t in listing["tickets"]]


async def test_send_back_then_resubmit_starts_the_chain_again(api):
    number = (await _complaint(api))["number"]
    assert (await api.act("team_leader", number, "approve_review"))[0] == 200
    code, reply = await api.act("coordinator", number, "send_back_review", reason="诉求不清，请补充地址")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["review"]) == ("new", None)
    code, reply = await api.act("coordinator", number, "send_back_review", reason="again")
    assert code == 409
    code, reply = await api.act("agent", number, "submit_review", chain=[])
    assert code == 400 and error_field(reply) == "chain"  # the chain is the settings'
    code, reply = await api.act("agent", number, "submit_review", note="已补充地址")
    assert code == 200 and reply["ticket"]["review"]["step"] == 1 and reply["ticket"]["reviewers"] == []
    assert await _queue(api, "team_leader", "team_leader") == [number]


async def test_reject_is_told_at_the_callback_then_closed(api):
    number = (await _complaint(api))["number"]
    code, reply = await api.act("team_leader", number, "reject_review", reason="不属于受理范围")
    assert code == 200 and reply["ticket"]["state"] == "resolved"
    assert reply["ticket"]["resolution"] == "不予受理：不属于受理范围"
    code, queue = await api.call("GET", "/api/callbacks", "agent")
    assert number in [t["number"] for t in queue["tickets"]]
    code, reply = await api.call("POST", f"/api/tickets/{number}/callback", "agent",
                                 {"expected_version": reply["ticket"]["version"], "satisfaction": "basically_satisfied"})
    assert code == 200 and reply["ticket"]["state"] == "closed"
    assert [e[0] for e in await api.events(number)][-3:] == ["reject_review", "queue_callback", "close"]


async def test_self_review_is_refused_with_its_code(api):
    number = (await _complaint(api, user="team_leader"))["number"]  # the team leader took the call
    code, reply = await api.act("team_leader", number, "approve_review")
    assert code == 403 and reply["error"]["code"] == "self_review"
    code, reply = await api.act("director", number, "approve_review")
    assert code == 403 and reply["error"]["code"] == "review_not_your_step"
    code, reply = await api.call("GET", "/api/tickets?review_role=agent", "team_leader")
    assert code == 400 and error_field(reply) == "review_role"


async def test_a_suggestion_has_one_step_and_a_repair_none(api):
    suggestion = await _complaint(api, type="suggestion")
    assert suggestion["review"] == {"step": 1, "role": "coordinator", "name": "督办协调席审核", "of": 1}
    assert await _queue(api, "coordinator", "coordinator") == [suggestion["number"]]
    repair = await _complaint(api, type="repair")
    assert (repair["state"], repair["review"]) == ("new", None)


async def _fed_back(api) -> str:
    number = (await _complaint(api))["number"]
    for user in ("team_leader", "coordinator", "director"):
        assert (await api.act(user, number, "approve_review"))[0] == 200
    assert (await api.act("unit-pwr00", number, "unit_accept"))[0] == 200
    code, reply = await api.act("unit-pwr00", number, "feedback", resolution="已约谈抄表员并致歉", signed_by="王经理")
    assert code == 200, reply
    return number


async def _callback(api, number: str, **body):
    code, detail = await api.call("GET", f"/api/tickets/{number}", "agent")
    return await api.call("POST", f"/api/tickets/{number}/callback", "agent",
                          {"expected_version": detail["version"], **body})


async def test_a_dissatisfied_callback_is_rework_to_the_same_unit_until_satisfied(api):
    number = await _fed_back(api)
    code, reply = await _callback(api, number, satisfaction="dissatisfied", words="没有人联系过我")
    t = reply["ticket"]
    assert code == 200 and (t["state"], t["unit_id"], t["rework_count"], t["rework_units"]) == (
        "assigned", "PWR00", 1, {"PWR00": 1})
    events = await api.call("GET", f"/api/tickets/{number}/timeline", "supervisor")
    rework = events[1]["events"][-1]
    assert (rework["action"], rework["data"]["instruction"], rework["data"]["unit_rework"]) == (
        "rework", "没有人联系过我", 1)
    # a feedback not true: back again, even when the citizen says satisfied
    assert (await api.act("unit-pwr00", number, "unit_accept"))[0] == 200
    assert (await api.act("unit-pwr00", number, "feedback", resolution="已上门", signed_by="王经理"))[0] == 200
    code, reply = await _callback(api, number, satisfaction="satisfied", truthful=False, words="没人上门")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["rework_units"]) == ("assigned", {"PWR00": 2})
    assert (await api.act("unit-pwr00", number, "unit_accept"))[0] == 200
    assert (await api.act("unit-pwr00", number, "feedback", resolution="已上门致歉", signed_by="王经理"))[0] == 200
    code, reply = await _callback(api, number, satisfaction="satisfied")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["rework_count"]) == ("closed", 2)
    code, counts = await api.call("GET", "/api/tickets/counts", "supervisor")
    assert code == 200 and counts["unit_rework"] == {"PWR00": 2}  # the reworks, counted for their unit
    code, reply = await _callback(api, number, satisfaction="satisfied", truthful="yes")
    assert code == 400 and error_field(reply) == "truthful"


async def test_a_supervisor_closes_the_loop_with_a_reason(api):
    number = await _fed_back(api)
    assert (await _callback(api, number, satisfaction="dissatisfied", words="要求赔偿"))[0] == 200
    code, reply = await api.act("agent", number, "supervisor_close", reason="诉求超出政策")
    assert code == 403
    code, reply = await api.act("supervisor", number, "supervisor_close")
    assert code == 400
    code, reply = await api.act("supervisor", number, "supervisor_close", reason="诉求超出政策，已解释")
    assert code == 200 and reply["ticket"]["state"] == "closed"
    last = (await api.events(number))[-1]
    assert last == ("supervisor_close", "supervisor", "assigned", "closed")


# ------------------------------------------------------------------------------ the KPI fold

async def test_the_kpi_fold_follows_a_rework_a_rejection_and_a_supervisors_close(api):
    from command.kpi_facts import facts_from_events

    async def facts(number):
        code, body = await api.call("GET", f"/api/tickets/{number}/timeline", "supervisor")
        return facts_from_events([{**e, "ticket_number": number} for e in body["events"]])

    reworked = await _fed_back(api)
    assert (await _callback(api, reworked, satisfaction="dissatisfied", words="没人联系"))[0] == 200
    f = await facts(reworked)
    assert (f.state, f.reopen_count, f.callback_result, f.unit_id) == ("assigned", 1, "dissatisfied", "PWR00")
    assert (await api.act("unit-pwr00", reworked, "unit_accept"))[0] == 200
    assert (await api.act("unit-pwr00", reworked, "feedback", resolution="已致歉", signed_by="王经理"))[0] == 200
    assert (await _callback(api, reworked, satisfaction="satisfied"))[0] == 200
    f = await facts(reworked)
    assert (f.state, f.resolved_count, f.reopen_count, f.closed_at is not None) == ("closed", 2, 1, True)
    rejected = (await _complaint(api))["number"]
    assert (await api.act("team_leader", rejected, "reject_review", reason="不属于受理范围"))[0] == 200
    f = await facts(rejected)
    assert (f.state, f.resolved_count, f.first_dispatched_at) == ("resolved", 1, None)
    closed = await _fed_back(api)
    assert (await _callback(api, closed, satisfaction="dissatisfied", words="要求赔偿"))[0] == 200
    assert (await api.act("supervisor", closed, "supervisor_close", reason="超出政策，已解释"))[0] == 200
    f = await facts(closed)
    assert (f.state, f.closed_at is not None) == ("closed", True)


async def test_a_new_need_at_the_callback_is_a_new_ticket_linked_to_the_first(api):
    first = await _fed_back(api)
    lon, lat = ll(100, 200)
    call = {"channel": "phone", "category": "power", "type": "service", "urgency": "normal",
            "description": "回访时提出：申请更换电表", "caller_phone": PHONE, "lon": lon, "lat": lat, "link": False}
    code, reply = await api.call("POST", "/api/tickets", "agent", {**call, "follows": first})
    assert code == 201 and reply["ticket"]["follows"] == first and reply["ticket"]["number"] != first
    code, timeline = await api.call("GET", f"/api/tickets/{reply['ticket']['number']}/timeline", "agent")
    assert timeline["events"][0]["data"]["follows"] == first
    code, reply = await api.call("POST", "/api/tickets", "agent", {**call, "follows": "GD20990101-0001"})
    assert code == 404
    code, reply = await api.call("POST", "/api/tickets", "agent", {**call, "follows": 12})
    assert code == 400 and error_field(reply) == "follows"
