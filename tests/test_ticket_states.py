"""The ticket lifecycle as tables: every legal and illegal (state, action) pair, roles, versions, audit."""
from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from command.errors import CommandError, Conflict, Forbidden, InvalidTransition, TicketNotFound, ValidationError
from command.tickets import ACTIONS, TRANSITIONS, allowed_actions, apply, visible_to
from command.ticket_fields import new_ticket
from command.ticket_json import event_from_dict, event_to_dict, from_dict, to_dict
from command.ticket_model import (
    Actor, Color, Role, Satisfaction, State, TicketType, center_day, normalize_phone, ticket_number,
)

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
S = State
POOL = (S.NEW, S.REVIEWED, S.DECLINED, S.RETURNED, S.REOPENED, S.TRANSFERRED)
FIELD = (S.DISPATCHED, S.ACCEPTED, S.EN_ROUTE, S.ON_SITE)
OPEN = tuple(s for s in State if s not in (S.CLOSED, S.CANCELLED, S.MERGED))
UNIT = (S.ASSIGNED, S.HANDLING)

# The lifecycle written out by hand, independently of command.tickets.ACTIONS.
EXPECTED: dict[tuple[State, str], State] = {
    (S.NEW, "review"): S.REVIEWED,
    (S.TRANSFERRED, "review"): S.REVIEWED,
    **{(s, "dispatch"): S.DISPATCHED for s in (*POOL, S.DISPATCHED)},
    (S.DISPATCHED, "accept"): S.ACCEPTED,
    (S.DISPATCHED, "decline"): S.DECLINED,
    (S.DISPATCHED, "expire"): S.DECLINED,
    (S.ACCEPTED, "depart"): S.EN_ROUTE,
    (S.ACCEPTED, "arrive"): S.ON_SITE,
    (S.EN_ROUTE, "arrive"): S.ON_SITE,
    (S.ON_SITE, "resolve"): S.RESOLVED,
    **{(s, "return"): S.RETURNED for s in FIELD},
    (S.RESOLVED, "queue_callback"): S.CALLBACK,
    (S.CALLBACK, "close"): S.CLOSED,
    **{(s, "reopen"): S.REOPENED for s in (S.RESOLVED, S.CALLBACK, S.CLOSED)},
    **{(s, "transfer"): S.TRANSFERRED for s in POOL},
    **{(s, "cancel"): S.CANCELLED for s in (*POOL, S.DISPATCHED, S.ACCEPTED, S.EN_ROUTE)},
    **{(s, "merge"): S.MERGED for s in (*POOL, S.DISPATCHED)},
    (S.NEW, "close_direct"): S.CLOSED,
    (S.REVIEWED, "close_direct"): S.CLOSED,
    **{(s, "resolve_with_incident"): S.RESOLVED for s in (*POOL, *FIELD)},
    **{(s, "link_incident"): s for s in (*POOL, *FIELD)},
    **{(s, "repeat_call"): s for s in OPEN},
    **{(s, "duplicate_call"): s for s in OPEN},
    **{(s, "supervise"): s for s in OPEN},
    **{(s, "note"): s for s in State},
    **{(s, "assign"): S.ASSIGNED for s in POOL},
    (S.ASSIGNED, "unit_accept"): S.HANDLING,
    (S.HANDLING, "hand_to_crew"): S.DISPATCHED,
    (S.HANDLING, "feedback"): S.RESOLVED,
    **{(s, "request_return"): s for s in UNIT},
    **{(s, "approve_return"): S.RETURNED for s in UNIT},
    **{(s, "reroute_return"): S.ASSIGNED for s in UNIT},
    **{(s, "refuse_return"): s for s in UNIT},
    **{(s, "request_extension"): s for s in UNIT},
    **{(s, "approve_extension"): s for s in UNIT},
    **{(s, "refuse_extension"): s for s in UNIT},
    **{(s, "submit_review"): S.IN_REVIEW for s in (S.NEW, S.REVIEWED, S.REOPENED, S.RETURNED)},
    (S.IN_REVIEW, "approve_review"): S.IN_REVIEW,  # the last step's approval: reviewed (test_review_chain)
    (S.IN_REVIEW, "send_back_review"): S.NEW,
    (S.IN_REVIEW, "reject_review"): S.RESOLVED,
    (S.RESOLVED, "rework"): S.ASSIGNED,
    (S.CALLBACK, "rework"): S.ASSIGNED,
    **{(s, "supervisor_close"): S.CLOSED for s in (S.RESOLVED, S.CALLBACK, S.ASSIGNED, S.HANDLING, S.REOPENED)},
}

ARGS = {
    "review": {}, "dispatch": {"crew_id": "C2"}, "accept": {}, "decline": {"reason": "车辆故障"},
    "expire": {}, "depart": {}, "arrive": {}, "resolve": {"resolution": "更换熔断器"},
    "return": {"reason": "非本单位辖区"}, "queue_callback": {}, "close": {"satisfaction": "satisfied"},
    "reopen": {"reason": "仍然停水"}, "transfer": {"unit_id": "U2"}, "cancel": {"reason": "来电人撤销"},
    "merge": {"into": "GD20261122-0002"}, "close_direct": {"answer": "停水通知已告知"},
    "resolve_with_incident": {"resolution": "变压器已修复"}, "link_incident": {"incident_id": "INC-9"},
    "repeat_call": {}, "duplicate_call": {}, "supervise": {}, "note": {"note": "来电人补充情况"},
    "assign": {}, "unit_accept": {}, "hand_to_crew": {"crew_id": "C2"}, "feedback": {"resolution": "已答复"},
    "request_return": {"reason": "非本单位职责"}, "approve_return": {}, "reroute_return": {"unit_id": "U2"},
    "refuse_return": {"reason": "属本单位辖区"}, "request_extension": {"reason": "需协调", "until": "2026-11-30T09:00:00Z"},
    "approve_extension": {}, "refuse_extension": {"reason": "无需延期"},
    "submit_review": {"chain": ["team_leader", "director"]}, "approve_review": {},
    "send_back_review": {"reason": "请补充地址"}, "reject_review": {"reason": "不属于受理范围"},
    "rework": {"words": "没有人联系过我"}, "supervisor_close": {"reason": "诉求超出政策，已解释"},
}
# what a review step needs: a chain with its first step waiting
REVIEWING = {a: {"review_chain": ("team_leader", "director"), "review_step": 0}
             for a in ("approve_review", "send_back_review", "reject_review")}
# what a decision on a unit's request needs: the request pending
PENDING = {
    **{a: {"kind": "return", "reason": "非本单位职责", "at": "2026-11-22T02:01:00+00:00"}
       for a in ("approve_return", "reroute_return", "refuse_return")},
    **{a: {"kind": "extension", "reason": "需协调", "at": "2026-11-22T02:01:00+00:00",
           "until": "2026-11-30T09:00:00+00:00"} for a in ("approve_extension", "refuse_extension")},
}
ROLE_PREFERENCE = (Role.DISPATCHER, Role.AGENT, Role.SUPERVISOR, Role.SYSTEM, Role.CREW, Role.ADMIN, Role.UNIT,
                   Role.TEAM_LEADER, Role.COORDINATOR, Role.DIRECTOR)


def make_ticket(**overrides):
    fields = {
        "number": "GD20261122-0001", "channel": "phone", "category": "water", "type": "repair",
        "urgency": "urgent", "description": "小区停水", "caller_name": "张三",
        "caller_phone": "138 0013 8000", "address": "人民路1号", "lon": 116.4, "lat": 39.9,
        "unit_id": "U1", "supply_area": "DMA-7",
    }
    fields.update(overrides)
    return new_ticket(fields, now=T0, actor=Actor("a1", Role.AGENT))[0]


def in_state(state: State, **changes):
    """A ticket in `state` with a crew, an incident and (for direct close) the consultation type."""
    base = make_ticket(type="consultation")
    return dataclasses.replace(base, state=state, crew_id="C1", incident_id="INC-1",
                               dispatched_at=T0, **changes)


def actor_for(action: str) -> Actor:
    role = next(r for r in ROLE_PREFERENCE if r in ACTIONS[action].roles)
    return Actor("u1", role, "C1" if role is Role.CREW else None,
                 frozenset({"U1"}) if role is Role.UNIT else frozenset())


def test_table_matches_the_lifecycle_written_by_hand():
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "action"), sorted(EXPECTED), ids=lambda v: getattr(v, "value", v))
def test_legal_transition_gives_expected_state(state, action):
    ticket = in_state(state, request=PENDING.get(action), **REVIEWING.get(action, {}))
    new, event = apply(ticket, action, actor=actor_for(action), now=T0 + timedelta(minutes=5), **ARGS[action])
    assert new.state is EXPECTED[(state, action)]
    assert new.version == ticket.version + 1
    assert (event.from_state, event.to_state, event.action) == (state, new.state, action)


ILLEGAL = sorted((s, a) for s in State for a in ACTIONS if (s, a) not in EXPECTED)


@pytest.mark.parametrize(("state", "action"), ILLEGAL, ids=lambda v: getattr(v, "value", v))
def test_illegal_transition_is_refused(state, action):
    ticket = in_state(state)
    with pytest.raises(InvalidTransition) as err:
        apply(ticket, action, actor=actor_for(action), now=T0, **ARGS[action])
    assert (err.value.from_state, err.value.action) == (state.value, action)
    assert err.value.to_dict()["error"] == "invalid_transition"


def test_illegal_pairs_cover_the_rest_of_the_grid():
    assert len(ILLEGAL) + len(EXPECTED) == len(State) * len(ACTIONS)
    assert len(ILLEGAL) > 150


@pytest.mark.parametrize(("action", "state", "actor", "allowed"), [
    ("dispatch", S.NEW, Actor("d", Role.DISPATCHER), True),
    ("dispatch", S.NEW, Actor("s", Role.SYSTEM), True),
    ("dispatch", S.NEW, Actor("a", Role.AGENT), False),
    ("dispatch", S.NEW, Actor("c", Role.CREW, "C1"), False),
    ("accept", S.DISPATCHED, Actor("c", Role.CREW, "C1"), True),
    ("accept", S.DISPATCHED, Actor("c", Role.CREW, "C9"), False),  # another crew's ticket
    ("accept", S.DISPATCHED, Actor("c", Role.CREW, None), False),
    ("accept", S.DISPATCHED, Actor("a", Role.AGENT), False),
    ("expire", S.DISPATCHED, Actor("s", Role.SYSTEM), True),
    ("expire", S.DISPATCHED, Actor("d", Role.DISPATCHER), False),
    ("arrive", S.EN_ROUTE, Actor("s", Role.SYSTEM), True),
    ("resolve", S.ON_SITE, Actor("c", Role.CREW, "C1"), True),
    ("resolve", S.ON_SITE, Actor("a", Role.AGENT), False),
    ("close", S.CALLBACK, Actor("a", Role.AGENT), True),
    ("close", S.CALLBACK, Actor("d", Role.DISPATCHER), False),
    ("reopen", S.CLOSED, Actor("c", Role.CREW, "C1"), False),
    ("supervise", S.NEW, Actor("s", Role.SUPERVISOR), True),
    ("supervise", S.NEW, Actor("d", Role.DISPATCHER), False),
    ("transfer", S.NEW, Actor("a", Role.AGENT), False),
    ("note", S.CLOSED, Actor("c", Role.CREW, "C9"), False),
    ("note", S.CLOSED, Actor("c", Role.CREW, "C1"), True),
])
def test_roles(action, state, actor, allowed):
    ticket = in_state(state)
    if allowed:
        assert apply(ticket, action, actor=actor, now=T0, **ARGS[action])[0].version == 2
    else:
        with pytest.raises(Forbidden) as err:
            apply(ticket, action, actor=actor, now=T0, **ARGS[action])
        assert err.value.details == {"role": actor.role.value, "action": action}


def test_stale_version_conflicts_and_only_one_dispatcher_wins():
    ticket = make_ticket()
    first, _ = apply(ticket, "dispatch", actor=Actor("d1", Role.DISPATCHER), now=T0, expected_version=1, crew_id="C1")
    with pytest.raises(Conflict) as err:
        apply(first, "dispatch", actor=Actor("d2", Role.DISPATCHER), now=T0, expected_version=1, crew_id="C2")
    assert (err.value.expected, err.value.actual) == (1, 2)
    assert err.value.to_dict()["error"] == "conflict"


def test_notes_since_the_version_read_do_not_make_an_action_stale():
    system, dispatcher = Actor("system", Role.SYSTEM), Actor("d1", Role.DISPATCHER)
    read = make_ticket()                                            # the dispatcher reads version 1
    noted, _ = apply(read, "note", actor=system, now=T0, note="110 已接收")
    noted, _ = apply(noted, "note", actor=system, now=T0, note="车辆 V01 GPS 到达现场")
    assert (noted.version, noted.change_version) == (3, 1)
    dispatched, _ = apply(noted, "dispatch", actor=dispatcher, now=T0, expected_version=1, crew_id="C1")
    assert (dispatched.state, dispatched.version, dispatched.change_version) == (S.DISPATCHED, 4, 4)
    # a change that is not a note makes every earlier read stale, notes after it or not
    for stale in (1, 3):
        with pytest.raises(Conflict) as err:
            apply(dispatched, "dispatch", actor=dispatcher, now=T0, expected_version=stale, crew_id="C2")
        assert (err.value.expected, err.value.actual) == (stale, 4)
    after, _ = apply(dispatched, "note", actor=dispatcher, now=T0, note="已电话联系班组")
    for stale in (3, 6):                                           # before the dispatch, or a version not yet there
        with pytest.raises(Conflict):
            apply(after, "dispatch", actor=dispatcher, now=T0, expected_version=stale, crew_id="C2")
    assert apply(after, "dispatch", actor=dispatcher, now=T0, expected_version=4, crew_id="C2")[0].crew_id == "C2"
    # a ticket stored before change_version existed compares strictly, as it always did
    legacy = from_dict({k: v for k, v in to_dict(noted).items() if k != "change_version"})
    assert legacy.change_version == 0
    with pytest.raises(Conflict):
        apply(legacy, "dispatch", actor=dispatcher, now=T0, expected_version=1, crew_id="C1")
    assert apply(legacy, "dispatch", actor=dispatcher, now=T0, expected_version=3, crew_id="C1")[0].version == 4


def test_audit_event_fields():
    ticket = make_ticket()
    at = T0 + timedelta(minutes=2)
    new, event = apply(ticket, "dispatch", actor=Actor("d7", Role.DISPATCHER), now=at, crew_id="C3",
                       mode="auto", eta_s=420.0, note="最近车辆")
    assert event.ticket_number == "GD20261122-0001"
    assert (event.action, event.from_state, event.to_state) == ("dispatch", S.NEW, S.DISPATCHED)
    assert (event.actor_id, event.role, event.at, event.note) == ("d7", Role.DISPATCHER, at, "最近车辆")
    assert event.data == {"crew_id": "C3", "mode": "auto", "eta_s": 420.0}
    assert (new.crew_id, new.dispatched_at, new.updated_at) == ("C3", at, at)
    assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event


def test_create_event_and_defaults():
    ticket, event = new_ticket({"number": "GD20261122-0003", "channel": "sensor", "category": "power",
                                "type": "repair", "description": "配变过载告警", "alarm_id": "AL-1"},
                               now=T0, actor=Actor("sys", Role.SYSTEM))
    assert (event.action, event.from_state, event.to_state, event.role) == ("create", None, S.NEW, Role.SYSTEM)
    assert (ticket.state, ticket.version, ticket.color, ticket.repeat_count) == (S.NEW, 1, Color.BLUE, 0)
    assert ticket.urgency.value == "normal" and ticket.caller_phone == ""
    assert ticket.created_at == ticket.pending_since == ticket.cycle_started_at == T0


@pytest.mark.parametrize(("change", "field"), [
    ({"channel": "fax"}, "channel"),
    ({"category": None}, "category"),
    ({"type": "joke"}, "type"),
    ({"urgency": "asap"}, "urgency"),
    ({"caller_phone": "12345"}, "caller_phone"),
    ({"caller_phone": ""}, "caller_phone"),  # a phone ticket needs a phone
    ({"lon": 181.0}, "lon"),
    ({"lat": -90.5}, "lat"),
    ({"lat": None}, "lat"),
    ({"lon": float("nan")}, "lon"),
    ({"lon": True}, "lon"),
    ({"description": "   "}, "description"),
    ({"number": "GD2026-1"}, "number"),
    ({"area_class": "suburb"}, "area_class"),
    ({"colour": "red"}, "colour"),
    ({"attachments": "photo.jpg"}, "attachments"),
])
def test_new_ticket_validation_names_the_field(change, field):
    with pytest.raises(ValidationError) as err:
        make_ticket(**change)
    assert err.value.field == field


def test_new_ticket_refuses_naive_time_and_crew_role():
    fields = {"number": "GD20261122-0001", "channel": "web", "category": "gas", "type": "repair",
              "description": "闻到燃气味"}
    with pytest.raises(ValidationError):
        new_ticket(fields, now=datetime(2026, 11, 22, 2, 0), actor=Actor("a", Role.AGENT))
    with pytest.raises(Forbidden):
        new_ticket(fields, now=T0, actor=Actor("c", Role.CREW, "C1"))


@pytest.mark.parametrize(("raw", "digits"), [
    ("13800138000", "13800138000"),
    ("+86 138-0013-8000", "13800138000"),
    ("0086 13800138000", "13800138000"),
    ("010-62345678", "01062345678"),
    ("0755 1234567", "07551234567"),
])
def test_phone_normalization(raw, digits):
    assert normalize_phone(raw) == digits


@pytest.mark.parametrize("raw", ["12800138000", "1380013800", "62345678", "abc", "+1 415 555 0100"])
def test_bad_phones(raw):
    with pytest.raises(ValidationError):
        normalize_phone(raw)


@pytest.mark.parametrize(("day", "seq", "number"), [
    (date(2026, 11, 22), 1, "GD20261122-0001"),
    (date(2026, 1, 5), 42, "GD20260105-0042"),
    (date(2026, 11, 22), 12345, "GD20261122-12345"),
])
def test_ticket_number(day, seq, number):
    assert ticket_number(day, seq) == number


@pytest.mark.parametrize("seq", [0, -1, True, 1.0])
def test_ticket_number_refuses_bad_seq(seq):
    with pytest.raises(ValidationError):
        ticket_number(date(2026, 11, 22), seq)


@pytest.mark.parametrize(("utc", "day"), [
    (datetime(2026, 11, 21, 15, 59, tzinfo=timezone.utc), date(2026, 11, 21)),
    (datetime(2026, 11, 21, 16, 0, tzinfo=timezone.utc), date(2026, 11, 22)),
])
def test_center_day_is_beijing_time(utc, day):
    assert center_day(utc) == day


def act(ticket, action, role=Role.DISPATCHER, own_crew=None, **args):
    """One step a minute after the previous one."""
    return apply(ticket, action, actor=Actor("u", role, own_crew), now=ticket.updated_at + timedelta(minutes=1),
                 **args)[0]


def test_full_closed_loop_with_decline_rework_and_round_trip():
    t = make_ticket()
    t = act(t, "review", Role.AGENT)
    t = act(t, "dispatch", crew_id="C1")
    t = act(t, "decline", Role.CREW, "C1", reason="车辆故障")
    assert (t.state, t.crew_id, t.declined_by) == (S.DECLINED, None, ("C1",))
    t = act(t, "dispatch", crew_id="C2")
    for action in ("accept", "depart", "arrive"):
        t = act(t, action, Role.CREW, "C2")
    t = act(t, "resolve", Role.CREW, "C2", resolution="更换阀门")
    t = act(t, "queue_callback", Role.SYSTEM)
    t = act(t, "reopen", Role.AGENT, reason="仍然漏水", words="还在漏")
    assert (t.state, t.rework_count, t.unit_id, t.crew_id, t.satisfaction) == (
        S.REOPENED, 1, "U1", None, Satisfaction.DISSATISFIED)
    assert t.resolved_at is None and t.cycle_started_at == t.updated_at
    t = act(t, "dispatch", crew_id="C2")
    for action in ("accept", "arrive"):
        t = act(t, action, Role.CREW, "C2")
    t = act(t, "resolve", Role.CREW, "C2", resolution="重新焊接")
    t = act(t, "queue_callback", Role.SYSTEM)
    t = act(t, "close", Role.AGENT, satisfaction="basically_satisfied")
    assert (t.state, t.version, t.satisfaction) == (S.CLOSED, 17, Satisfaction.BASICALLY_SATISFIED)  # 16 actions
    assert from_dict(json.loads(json.dumps(to_dict(t)))) == t


@pytest.mark.parametrize(("state", "action", "args", "error", "field"), [
    (S.CALLBACK, "close", {"satisfaction": "dissatisfied"}, ValidationError, "satisfaction"),
    (S.NEW, "merge", {"into": "GD20261122-0001"}, ValidationError, "into"),
    (S.NEW, "merge", {"into": "x"}, ValidationError, "into"),
    (S.DISPATCHED, "dispatch", {"crew_id": "C1"}, ValidationError, "crew_id"),
    (S.NEW, "dispatch", {}, ValidationError, "crew_id"),
    (S.NEW, "dispatch", {"crew_id": "C2", "speed": 3}, ValidationError, "speed"),
    (S.NEW, "dispatch", {"crew_id": "C2", "eta_s": -1}, ValidationError, "eta_s"),
    (S.DISPATCHED, "decline", {"reason": "  "}, ValidationError, "reason"),
    (S.NEW, "transfer", {"unit_id": "U1"}, ValidationError, "unit_id"),
    (S.NEW, "frobnicate", {}, ValidationError, "action"),
    (S.NEW, "note", {"note": ""}, ValidationError, "note"),
])
def test_bad_action_fields(state, action, args, error, field):
    ticket = dataclasses.replace(make_ticket(), state=state, crew_id="C1")
    with pytest.raises(error) as err:
        apply(ticket, action, actor=Actor("s", Role.SUPERVISOR), now=T0, **args)
    assert err.value.field == field


@pytest.mark.parametrize(("ticket_type", "allowed"), [
    (TicketType.CONSULTATION, True), (TicketType.PRAISE, True), (TicketType.REPAIR, False),
    (TicketType.COMPLAINT, False),
])
def test_direct_close_only_for_answerable_types(ticket_type, allowed):
    ticket = make_ticket(type=ticket_type.value)
    actor = Actor("a", Role.AGENT)
    if allowed:
        closed, event = apply(ticket, "close_direct", actor=actor, now=T0, answer="已答复")
        assert (closed.state, closed.resolution, closed.closed_at, event.data) == (
            S.CLOSED, "已答复", T0, {"answer": "已答复"})
    else:
        with pytest.raises(InvalidTransition) as err:
            apply(ticket, "close_direct", actor=actor, now=T0, answer="已答复")
        assert "consultation" in err.value.reason


def test_resolve_with_incident_needs_an_incident_and_transfer_moves_unit():
    ticket = make_ticket()
    with pytest.raises(InvalidTransition):
        apply(ticket, "resolve_with_incident", actor=Actor("s", Role.SYSTEM), now=T0, resolution="已修复")
    moved = act(ticket, "transfer", unit_id="U2", reason="跨区")
    assert (moved.state, moved.unit_id) == (S.TRANSFERRED, "U2")


def test_expire_and_merge_record_the_crew():
    ticket = in_state(S.DISPATCHED)
    expired, event = apply(ticket, "expire", actor=Actor("sys", Role.SYSTEM), now=T0)
    assert (expired.state, expired.declined_by, event.data) == (S.DECLINED, ("C1",), {"crew_id": "C1"})
    merged, event = apply(ticket, "merge", actor=Actor("a", Role.AGENT), now=T0, into="GD20261122-0002")
    assert (merged.merged_into, merged.crew_id, event.data["crew_id"]) == ("GD20261122-0002", None, "C1")


@pytest.mark.parametrize(("state", "actor", "actions"), [
    (S.DISPATCHED, Actor("c", Role.CREW, "C1"), ["accept", "decline", "return", "note"]),
    (S.DISPATCHED, Actor("c", Role.CREW, "C2"), []),
    (S.CLOSED, Actor("a", Role.AGENT), ["reopen", "note"]),
    (S.MERGED, Actor("s", Role.SUPERVISOR), ["note"]),
])
def test_allowed_actions(state, actor, actions):
    assert allowed_actions(in_state(state), actor) == actions


@pytest.mark.parametrize(("actor", "unit_id", "crew_id", "visible"), [
    (Actor("u", Role.UNIT, unit_ids=frozenset({"PWR00", "PWR01"})), "PWR01", None, True),   # a unit under its own
    (Actor("u", Role.UNIT, unit_ids=frozenset({"PWR00", "PWR01"})), "PWR00", "C1", True),
    (Actor("u", Role.UNIT, unit_ids=frozenset({"PWR01"})), "PWR00", None, False),           # the unit above
    (Actor("u", Role.UNIT, unit_ids=frozenset({"PWR01"})), None, None, False),              # no unit yet
    (Actor("u", Role.UNIT), "PWR01", None, False),                                          # a liaison without a unit
    (Actor("c", Role.CREW, "C1"), "PWR01", "C1", True),
    (Actor("d", Role.DISPATCHER), None, None, True),
])
def test_visible_to_a_units_liaison_is_its_units_work(actor, unit_id, crew_id, visible):
    assert visible_to(actor, crew_id, unit_id) is visible
    ticket = dataclasses.replace(make_ticket(unit_id=unit_id), state=S.ASSIGNED, crew_id=crew_id)
    assert bool(allowed_actions(ticket, actor)) is visible


LIAISON = Actor("u", Role.UNIT, unit_ids=frozenset({"U1"}))


@pytest.mark.parametrize(("type_", "args", "error"), [
    ("complaint", {"resolution": "已致歉"}, "signed_by"),                     # a complaint's result is signed
    ("complaint", {"resolution": "已致歉", "signed_by": " "}, "signed_by"),
    ("suggestion", {"resolution": "已采纳", "attachments": "a.jpg"}, "attachments"),
    ("suggestion", {"resolution": "已采纳", "attachments": ["a.jpg"] * 21}, "attachments"),
    ("suggestion", {"resolution": " "}, "resolution"),
])
def test_feedback_is_refused_without_what_it_needs(type_, args, error):
    ticket = dataclasses.replace(make_ticket(type=type_), state=S.HANDLING)
    with pytest.raises(ValidationError) as err:
        apply(ticket, "feedback", actor=LIAISON, now=T0, **args)
    assert err.value.field == error


def test_feedback_keeps_the_signature_and_adds_the_photos():
    ticket = dataclasses.replace(make_ticket(type="complaint", attachments=["call.jpg"]), state=S.HANDLING)
    done, event = apply(ticket, "feedback", actor=LIAISON, now=T0, resolution="已约谈致歉", signed_by="张经理",
                        attachments=["a.jpg", "call.jpg"])
    assert (done.state, done.signed_by, done.attachments, done.resolved_at) == \
        (S.RESOLVED, "张经理", ("call.jpg", "a.jpg"), T0)
    assert (event.actor_id, event.role, event.data["signed_by"]) == ("u", Role.UNIT, "张经理")


@pytest.mark.parametrize("until", ["明天", "2026-11-30T09:00:00", "2026-11-22T01:00:00Z", 20261130, None])
def test_an_extension_needs_a_future_time_with_its_zone(until):
    ticket = dataclasses.replace(make_ticket(), state=S.HANDLING)
    with pytest.raises(ValidationError) as err:
        apply(ticket, "request_extension", actor=LIAISON, now=T0, reason="需协调", until=until)
    assert err.value.field == "until"


def test_one_request_at_a_time_and_a_decision_needs_its_request():
    ticket = dataclasses.replace(make_ticket(), state=S.HANDLING)
    asked, _ = apply(ticket, "request_return", actor=LIAISON, now=T0, reason="非本单位")
    assert asked.request == {"kind": "return", "reason": "非本单位", "at": "2026-11-22T02:00:00+00:00"}
    with pytest.raises(InvalidTransition):
        apply(asked, "request_extension", actor=LIAISON, now=T0, reason="x", until="2026-11-30T09:00:00Z")
    with pytest.raises(InvalidTransition):
        apply(asked, "approve_extension", actor=Actor("s", Role.SUPERVISOR), now=T0)
    with pytest.raises(Forbidden):
        apply(asked, "approve_return", actor=LIAISON, now=T0)
    back, _ = apply(asked, "approve_return", actor=Actor("d", Role.DISPATCHER), now=T0 + timedelta(minutes=3))
    assert (back.state, back.request, back.pending_since) == (S.RETURNED, None, T0 + timedelta(minutes=3))


def test_an_approved_extension_is_kept_until_a_reopening():
    ticket = dataclasses.replace(make_ticket(), state=S.HANDLING)
    asked, _ = apply(ticket, "request_extension", actor=LIAISON, now=T0, reason="需协调",
                     until="2026-11-30T17:30:00+08:00")
    extended, _ = apply(asked, "approve_extension", actor=Actor("s", Role.SUPERVISOR), now=T0)
    assert extended.extended_until == datetime(2026, 11, 30, 9, 30, tzinfo=timezone.utc) and extended.request is None
    assert from_dict(json.loads(json.dumps(to_dict(extended)))) == extended
    done, _ = apply(extended, "feedback", actor=LIAISON, now=T0, resolution="已处理")
    reopened, _ = apply(dataclasses.replace(done, state=S.CALLBACK), "reopen", actor=Actor("a", Role.AGENT), now=T0,
                        reason="仍未解决")
    assert (reopened.extended_until, reopened.signed_by, reopened.request) == (None, "", None)


@pytest.mark.parametrize(("error", "code", "base"), [
    (TicketNotFound("GD20261122-0404"), "ticket_not_found", LookupError),
    (ValidationError("lon", "out of range"), "validation_error", ValueError),
    (InvalidTransition("GD20261122-0001", "closed", "dispatch"), "invalid_transition", ValueError),
    (Conflict("GD20261122-0001", 1, 2), "conflict", CommandError),
    (Forbidden("no", role="crew", action="dispatch"), "forbidden", CommandError),
])
def test_error_contract(error, code, base):
    body = error.to_dict()
    assert isinstance(error, base) and isinstance(error, CommandError)
    assert (body["error"], error.code, body["message"]) == (code, code, str(error))
    assert json.loads(json.dumps(body)) == body
