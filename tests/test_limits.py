"""Time limits, deadlines and escalation with `now` passed in."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from command.errors import ValidationError
from command.limits import (
    DEFAULT_POLICY, Level, LimitRule, Stage, alarms, deadlines, escalation, policy_from_config,
    queue_key, with_deadlines,
)
from command.tickets import Actor, AreaClass, Category, Role, State, apply, from_dict, new_ticket, to_dict

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
M = timedelta(minutes=1)


def make(number="GD20261122-0001", category="power", type_="repair", urgency="urgent", area="urban", at=T0):
    fields = {"number": number, "channel": "phone", "category": category, "type": type_, "urgency": urgency,
              "description": "停电", "caller_phone": "13800138000", "area_class": area}
    return new_ticket(fields, now=at, actor=Actor("a", Role.AGENT))[0]


def run(ticket, *steps):
    """Apply (minute, action, role, args) steps."""
    for minute, action, role, args in steps:
        ticket = apply(ticket, action, actor=Actor("u", role, "C1" if role is Role.CREW else None),
                       now=T0 + minute * M, **args)[0]
    return ticket


def status(ticket, stage, now, **kw):
    return next(s for s in escalation(ticket, now, **kw) if s.stage is stage)


@pytest.mark.parametrize(("category", "area", "minutes"), [
    ("power", "urban", 45), ("power", "rural", 90), ("power", "remote", 120),
    ("gas", "urban", 30), ("gas", "remote", 90), ("water", "urban", 60), ("water", "rural", 120),
    ("drainage", "remote", 180), ("sanitation", "urban", 120),
])
def test_arrival_defaults(category, area, minutes):
    assert deadlines(make(category=category, area=area))[Stage.ARRIVE] == T0 + minutes * M


@pytest.mark.parametrize(("urgency", "type_", "expected"), [
    ("urgent", "repair", {Stage.DISPATCH: 10, Stage.ARRIVE: 45, Stage.RESOLVE: 24 * 60}),
    ("emergency", "repair", {Stage.DISPATCH: 3, Stage.ARRIVE: 45, Stage.RESOLVE: 8 * 60}),
    ("normal", "complaint", {Stage.DISPATCH: 120, Stage.RESOLVE: 5 * 24 * 60}),
    ("normal", "suggestion", {Stage.DISPATCH: 24 * 60, Stage.RESOLVE: 10 * 24 * 60}),
])
def test_deadlines_of_a_new_ticket(urgency, type_, expected):
    got = deadlines(make(urgency=urgency, type_=type_))
    assert got == {stage: T0 + minutes * M for stage, minutes in expected.items()}


def test_area_class_argument_overrides_the_tickets():
    assert deadlines(make(area="urban"), AreaClass.REMOTE)[Stage.ARRIVE] == T0 + 120 * M


@pytest.mark.parametrize(("minute", "level", "left"), [
    (0, Level.OK, 45), (35, Level.OK, 10), (36, Level.WARNING, 9), (44, Level.WARNING, 1),
    (45, Level.OVERDUE, 0), (50, Level.OVERDUE, -5),
])
def test_arrival_escalation_warning_at_80_overdue_at_100(minute, level, left):
    s = status(make(), Stage.ARRIVE, T0 + minute * M)
    assert (s.level, s.time_left, s.done) == (level, left * M, False)
    assert s.used_share == pytest.approx(minute / 45)


def test_configurable_warn_share():
    assert status(make(), Stage.ARRIVE, T0 + 25 * M).level is Level.OK
    assert status(make(), Stage.ARRIVE, T0 + 25 * M, warn_share=0.5).level is Level.WARNING


ON_SITE = ((2, "dispatch", Role.DISPATCHER, {"crew_id": "C1"}), (3, "accept", Role.CREW, {}),
           (4, "depart", Role.CREW, {}))


@pytest.mark.parametrize(("button", "gps", "level"), [
    (40, None, Level.OK),  # only the button: on time
    (40, 50, Level.OVERDUE),  # pressed "arrived" early, GPS says the van came at 50 min
    (50, 40, Level.OK),  # pressed late, the van was there at 40 min
    (46, None, Level.OVERDUE),
])
def test_arrival_measured_against_gps_when_given(button, gps, level):
    ticket = run(make(), *ON_SITE, (button, "arrive", Role.CREW, {}))
    gps_at = None if gps is None else T0 + gps * M
    s = status(ticket, Stage.ARRIVE, T0 + 60 * M, arrived_at=gps_at)
    assert (s.level, s.done, s.completed_at) == (level, True, gps_at or T0 + button * M)


def test_gps_arrival_completes_the_stage_before_the_button():
    ticket = run(make(), *ON_SITE)
    assert status(ticket, Stage.ARRIVE, T0 + 50 * M).level is Level.OVERDUE
    s = status(ticket, Stage.ARRIVE, T0 + 50 * M, arrived_at=T0 + 30 * M)
    assert (s.level, s.done, s.time_left) == (Level.OK, True, 15 * M)


def test_dispatch_and_accept_stages_follow_the_pool():
    ticket = run(make(), (2, "dispatch", Role.DISPATCHER, {"crew_id": "C1"}))
    s = status(ticket, Stage.DISPATCH, T0 + 9 * M)
    assert (s.done, s.level, s.completed_at) == (True, Level.OK, T0 + 2 * M)
    accept = status(ticket, Stage.ACCEPT, T0 + 6 * M)
    assert (accept.level, accept.deadline) == (Level.WARNING, T0 + 7 * M)
    declined = run(ticket, (8, "decline", Role.CREW, {"reason": "车坏了"}))
    stages = {s.stage: s for s in escalation(declined, T0 + 15 * M)}
    assert Stage.ACCEPT not in stages
    assert (stages[Stage.DISPATCH].started_at, stages[Stage.DISPATCH].level) == (T0 + 8 * M, Level.OK)
    assert status(declined, Stage.DISPATCH, T0 + 18 * M).level is Level.OVERDUE


def test_callback_stage_and_terminal_tickets():
    ticket = run(make(), *ON_SITE, (30, "arrive", Role.CREW, {}),
                 (90, "resolve", Role.CREW, {"resolution": "更换熔断器"}))
    s = status(ticket, Stage.CALLBACK, T0 + 90 * M + 20 * timedelta(hours=1))
    assert (s.level, s.deadline) == (Level.WARNING, T0 + 90 * M + timedelta(hours=24))
    assert status(ticket, Stage.RESOLVE, T0 + 100 * M).done
    closed = run(ticket, (95, "queue_callback", Role.SYSTEM, {}),
                 (100, "close", Role.AGENT, {"satisfaction": "satisfied"}))
    assert escalation(closed, T0 + 200 * M) == []


def test_consultation_has_no_arrival_limit():
    assert Stage.ARRIVE not in {s.stage for s in escalation(make(type_="consultation"), T0)}


def test_reopen_restarts_the_cycle():
    ticket = run(make(), *ON_SITE, (30, "arrive", Role.CREW, {}),
                 (60, "resolve", Role.CREW, {"resolution": "已修复"}),
                 (70, "reopen", Role.AGENT, {"reason": "又停电了"}))
    s = status(ticket, Stage.ARRIVE, T0 + 100 * M)
    assert (s.started_at, s.done, s.level, s.time_left) == (T0 + 70 * M, False, Level.OK, 15 * M)


def test_config_overrides_defaults():
    policy = policy_from_config([{"stage": "arrive", "category": "power", "area_class": "urban", "minutes": 30},
                                 {"stage": "callback", "minutes": 120}], warn_share=0.9)
    ticket = make()
    assert deadlines(ticket, policy=policy)[Stage.ARRIVE] == T0 + 30 * M
    assert deadlines(make(area="rural"), policy=policy)[Stage.ARRIVE] == T0 + 90 * M
    assert status(ticket, Stage.ARRIVE, T0 + 26 * M, policy=policy).level is Level.OK
    assert status(ticket, Stage.ARRIVE, T0 + 27 * M, policy=policy).level is Level.WARNING
    broad = DEFAULT_POLICY.with_rules([LimitRule(Stage.ARRIVE, 20 * M, Category.POWER)])
    assert [broad.limit_for(make(area=a), Stage.ARRIVE, AreaClass(a)) for a in ("urban", "remote")] == [20 * M] * 2
    assert broad.limit_for(make(category="gas"), Stage.ARRIVE, AreaClass.URBAN) == 30 * M


@pytest.mark.parametrize(("entry", "field"), [
    ({"stage": "arrive", "minutes": 0}, "minutes"),
    ({"stage": "arrive", "minutes": 10, "colour": "red"}, "colour"),
    ({"stage": "lunch", "minutes": 10}, "limits"),
    ({"stage": "arrive", "category": "coal", "minutes": 10}, "limits"),
])
def test_bad_config(entry, field):
    with pytest.raises(ValidationError) as err:
        policy_from_config([entry])
    assert err.value.field == field


def test_queue_key_orders_by_share_of_limit_left():
    now = T0 + 40 * M
    gas = make("GD20261122-0001", category="gas", urgency="emergency")  # dispatch 3 min: overdue
    power = make("GD20261122-0002", category="power", at=T0 + 32 * M)  # dispatch 10 min: 80% used
    water = make("GD20261122-0003", category="water", at=T0 + 35 * M)  # 50% used
    done = run(make("GD20261122-0004"), (1, "dispatch", Role.DISPATCHER, {"crew_id": "C1"}),
               (2, "accept", Role.CREW, {}), (3, "arrive", Role.CREW, {}))  # only resolve left: 3%
    order = sorted([water, done, power, gas], key=lambda t: queue_key(t, now))
    assert [t.number[-1] for t in order] == ["1", "2", "3", "4"]
    assert queue_key(gas, now)[0] == pytest.approx(1 - 40 / 3)


def test_alarms_lists_open_warnings_most_pressing_first():
    statuses = escalation(make(), T0 + 9 * M)  # dispatch 90%, arrive 20%
    assert [(s.stage, s.level) for s in alarms(statuses)] == [(Stage.DISPATCH, Level.WARNING)]


def test_with_deadlines_snapshot_round_trips():
    stamped = with_deadlines(make())
    assert stamped.deadlines == {"dispatch": T0 + 10 * M, "arrive": T0 + 45 * M, "resolve": T0 + 24 * 60 * M}
    assert from_dict(to_dict(stamped)) == stamped
    assert dataclasses.replace(stamped, deadlines={}) == make()


def test_naive_now_is_refused():
    with pytest.raises(ValidationError):
        escalation(make(), datetime(2026, 11, 22, 3, 0))
    assert make().state is State.NEW
