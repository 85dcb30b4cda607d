"""Time limits, deadlines and escalation with `now` passed in."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from config.limit_files import SHIPPED_LIMITS, load_calendar, load_limits, load_policy
from config.settings import SettingsError
from command.errors import ValidationError
from command.limits import (
    DEFAULT_POLICY, Level, LimitRule, Stage, Unit, alarms, deadlines, escalation, policy_from_config,
    queue_key, stamp, with_deadlines,
)
from command.tickets import apply
from command.ticket_fields import new_ticket
from command.ticket_json import from_dict, to_dict
from command.ticket_model import Actor, AreaClass, Category, Role, State, TicketType, Urgency
from tests.conftest import test_settings

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


FRIDAY_CLOSE = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)  # Friday 17:30 in Shanghai


@pytest.mark.parametrize(("urgency", "type_", "expected"), [
    ("urgent", "repair", {Stage.DISPATCH: 10, Stage.ARRIVE: 45, Stage.RESOLVE: 24 * 60}),
    ("emergency", "repair", {Stage.DISPATCH: 3, Stage.ARRIVE: 45, Stage.RESOLVE: 8 * 60}),
    ("normal", "consultation", {Stage.DISPATCH: 120, Stage.RESOLVE: 24 * 60}),
    # T0 is a Sunday (10:00 in Shanghai): working days start on Monday 08:30, 7.5 h each
    ("normal", "complaint", {Stage.DISPATCH: 120, Stage.RESOLVE: FRIDAY_CLOSE}),
    ("normal", "suggestion", {Stage.DISPATCH: 24 * 60, Stage.RESOLVE: FRIDAY_CLOSE + timedelta(days=7)}),
    ("normal", "praise", {Stage.DISPATCH: 24 * 60, Stage.RESOLVE: FRIDAY_CLOSE + timedelta(days=7)}),
    ("normal", "service", {Stage.DISPATCH: 120, Stage.RESOLVE: FRIDAY_CLOSE - timedelta(days=2)}),
])
def test_deadlines_of_a_new_ticket(urgency, type_, expected):
    got = deadlines(make(urgency=urgency, type_=type_))
    assert got == {stage: at if isinstance(at, datetime) else T0 + at * M for stage, at in expected.items()}


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


# ---------------------------------------------------------------- limits on the working calendar
CALENDAR = load_calendar()  # the shipped calendar: 2026's holidays and make-up days
POLICY = load_limits(calendar=CALENDAR)  # the shipped limits file on it
SH = CALENDAR.zone
H = timedelta(hours=1)


def local(text):
    return datetime.fromisoformat(text).replace(tzinfo=SH).astimezone(timezone.utc)


@pytest.mark.parametrize(("created", "due"), [
    ("2026-11-23 10:00", "2026-11-30 10:00"),  # Monday: due next Monday at the same time
    ("2026-11-28 22:00", "2026-12-04 17:30"),  # Saturday night: due Friday at closing time
    ("2026-09-28 10:00", "2026-10-10 10:00"),  # before National Day: due on its make-up Saturday
    ("2026-09-30 17:00", "2026-10-13 17:00"),  # half an hour before, then from 8 October
    ("2026-02-13 09:00", "2026-02-27 09:00"),  # before the Spring Festival (the 14th is worked)
    ("2026-12-30 12:30", "2027-01-07 12:00"),  # in the lunch break, across 2027's New Year's Day
])
def test_complaint_deadline_lands_on_a_working_day(created, due):
    ticket = make(type_="complaint", urgency="normal", at=local(created))
    deadline = deadlines(ticket, policy=POLICY)[Stage.RESOLVE]
    assert deadline == local(due)
    assert CALENDAR.is_working_day(CALENDAR.local_date(deadline))
    assert CALENDAR.between(local(created), deadline) == 5 * 7.5 * H


@pytest.mark.parametrize(("type_", "days"), [("service", 3), ("complaint", 5), ("suggestion", 10), ("praise", 10)])
def test_office_types_resolve_in_working_days(type_, days):
    ticket = make(type_=type_, urgency="normal", at=local("2026-09-21 09:00"))
    rule = POLICY.rule_for(ticket, Stage.RESOLVE, AreaClass.URBAN)
    assert (rule.unit, rule.limit) == (Unit.WORKING_DAYS, timedelta(days=days))
    assert POLICY.limit_for(ticket, Stage.RESOLVE, AreaClass.URBAN) == timedelta(days=days)  # as written
    deadline = deadlines(ticket, policy=POLICY)[Stage.RESOLVE]
    assert CALENDAR.between(ticket.created_at, deadline) == days * CALENDAR.day_length


@pytest.mark.parametrize(("category", "urgency", "area", "created"), [
    ("power", "urgent", "urban", "2026-10-01 03:00"),  # a holiday night
    ("power", "emergency", "rural", "2026-11-28 23:50"),  # a Saturday night
    ("gas", "normal", "remote", "2026-02-16 12:00"),  # the Spring Festival's eve
    ("water", "urgent", "urban", "2026-11-24 10:00"),
])
def test_repairs_stay_on_the_clock_on_the_calendar(category, urgency, area, created):
    ticket = make(category=category, urgency=urgency, area=area, at=local(created))
    assert deadlines(ticket, policy=POLICY) == deadlines(ticket)  # the same as without a calendar
    arrive = next(s for s in escalation(ticket, ticket.created_at + 30 * M, policy=POLICY) if s.stage is Stage.ARRIVE)
    assert arrive.unit is Unit.CLOCK
    assert arrive.used_share == pytest.approx(30 * M / DEFAULT_POLICY.limit_for(ticket, Stage.ARRIVE, AreaClass(area)))


def test_power_arrival_limits_stay_45_90_120_clock_minutes():
    for area, minutes in (("urban", 45), ("rural", 90), ("remote", 120)):
        ticket = make(area=area, at=local("2026-10-03 02:00"))
        rule = POLICY.rule_for(ticket, Stage.ARRIVE, AreaClass(area))
        assert (rule.unit, rule.limit) == (Unit.CLOCK, minutes * M)
        assert deadlines(ticket, policy=POLICY)[Stage.ARRIVE] == ticket.created_at + minutes * M


def complaint_status(now_text, ticket=None):
    ticket = ticket or make(type_="complaint", urgency="normal", at=local("2026-09-28 10:00"))
    return next(s for s in escalation(ticket, local(now_text), policy=POLICY) if s.stage is Stage.RESOLVE)


@pytest.mark.parametrize(("now", "used_hours", "level"), [
    ("2026-09-28 10:00", 0, Level.OK),
    ("2026-09-29 17:30", 7.5 + 7.5 - 1.5, Level.OK),  # Monday 10:00 to Tuesday closing
    ("2026-09-30 17:30", 21.0, Level.OK),
    ("2026-10-05 12:00", 21.0, Level.OK),  # National Day: the clock of a complaint stands still
    ("2026-10-09 14:00", 21.0 + 7.5 + 4.0, Level.WARNING),  # 32.5 / 37.5 = 87%
    ("2026-10-10 10:00", 37.5, Level.OVERDUE),  # the deadline, on the make-up Saturday
    ("2026-10-11 10:00", 43.5, Level.OVERDUE),  # Sunday: the make-up Saturday's 6 h after the deadline
])
def test_complaint_escalation_counts_working_time(now, used_hours, level):
    s = complaint_status(now)
    assert (s.unit, s.limit, s.deadline) == (Unit.WORKING_DAYS, 37.5 * H, local("2026-10-10 10:00"))
    assert s.level is level
    assert s.used_share == pytest.approx(used_hours / 37.5)
    assert s.time_left == (37.5 - used_hours) * H


def test_complaint_resolved_late_by_the_clock_but_in_working_days_is_on_time():
    created = local("2026-09-28 10:00")
    minutes = (local("2026-10-09 16:00") - created) // M  # eleven clock days later, 34.5 working hours
    ticket = run(make(type_="complaint", urgency="normal", at=created),
                 *((m + (created - T0) // M, a, r, args) for m, a, r, args in (
                     (5, "dispatch", Role.DISPATCHER, {"crew_id": "C1"}), (10, "accept", Role.CREW, {}),
                     (15, "depart", Role.CREW, {}), (20, "arrive", Role.CREW, {}),
                     (minutes, "resolve", Role.CREW, {"resolution": "已答复"}))))
    s = complaint_status("2026-10-12 10:00", ticket)
    assert (s.done, s.level, s.time_left) == (True, Level.OK, 3 * H)
    assert s.used_share == pytest.approx(34.5 / 37.5)


def test_alarms_and_queue_mix_clock_and_working_shares():
    now = local("2026-10-09 14:00")
    complaint = make("GD20261009-0001", type_="complaint", urgency="normal", at=local("2026-09-28 10:00"))  # 87%
    repair = make("GD20261009-0002", at=now - 5 * M)  # dispatch 10 min: 50%
    order = sorted([repair, complaint], key=lambda t: queue_key(t, now, policy=POLICY))
    assert [t.number for t in order] == ["GD20261009-0001", "GD20261009-0002"]
    assert [(s.stage, s.level) for s in alarms(escalation(complaint, now, policy=POLICY))] == [
        (Stage.DISPATCH, Level.OVERDUE), (Stage.RESOLVE, Level.WARNING)]


def test_config_in_working_days_and_hours():
    policy = policy_from_config([
        {"stage": "resolve", "type": "complaint", "working_hours": 15, "note": "two working days"},
        {"stage": "accept", "type": "complaint", "working_days": 1}], calendar=CALENDAR)
    ticket = make(type_="complaint", urgency="normal", at=local("2026-09-30 16:00"))
    assert deadlines(ticket, policy=policy)[Stage.RESOLVE] == local("2026-10-09 16:00")
    assert policy.rule_for(ticket, Stage.ACCEPT, AreaClass.URBAN).unit is Unit.WORKING_DAYS
    assert policy.calendar is CALENDAR
    assert policy_from_config([]).calendar is DEFAULT_POLICY.calendar


@pytest.mark.parametrize(("entry", "field"), [
    ({"stage": "resolve", "working_days": 5, "minutes": 10}, "minutes"),  # two amounts
    ({"stage": "resolve"}, "minutes"),  # none
    ({"stage": "resolve", "working_days": 0}, "working_days"),
    ({"stage": "resolve", "working_hours": "8"}, "working_hours"),
    ({"stage": "resolve", "working_days": float("inf")}, "working_days"),
])
def test_bad_working_time_config(entry, field):
    with pytest.raises(ValidationError) as err:
        policy_from_config([entry])
    assert err.value.field == field


def test_shipped_limits_file_is_the_default_table():
    keys = [(stage, category, type_, area, urgency) for stage in Stage for category in Category
            for type_ in TicketType for area in AreaClass for urgency in Urgency]
    for stage, category, type_, area, urgency in keys:
        ticket = make(category=category.value, type_=type_.value, urgency=urgency.value, area=area.value)
        shipped, default = (p.rule_for(ticket, stage, area) for p in (POLICY, DEFAULT_POLICY))
        assert (shipped and (shipped.limit, shipped.unit)) == (default and (default.limit, default.unit)), \
            (stage, category, type_, area, urgency)
    assert POLICY.warn_share == DEFAULT_POLICY.warn_share
    assert "working_days = 5" in SHIPPED_LIMITS.read_text(encoding="utf-8")


def test_policy_from_the_settings_files(tmp_path):
    calendar = tmp_path / "calendar.toml"
    calendar.write_text('hours = ["09:00-17:00"]\n[years.2026]\nholidays = ["2026-11-24"]  # a local holiday\n',
                        encoding="utf-8")
    limits = tmp_path / "limits.toml"
    limits.write_text('warn_share = 0.5\nlimits = [\n  { stage = "resolve", type = "complaint", working_days = 2 },'
                      '  # two days\n]\n', encoding="utf-8")
    policy = load_policy(test_settings(tmp_path, CALENDAR_FILE=str(calendar), LIMITS_FILE=str(limits)))
    ticket = make(type_="complaint", urgency="normal", at=local("2026-11-23 09:00"))
    assert deadlines(ticket, policy=policy)[Stage.RESOLVE] == local("2026-11-25 17:00")  # Tuesday off
    assert policy.warn_share == 0.5
    assert deadlines(make(), policy=policy) == deadlines(make())  # the rest: the defaults
    default = load_policy(test_settings(tmp_path))  # empty settings: the shipped files
    assert default.calendar == CALENDAR and default.rules == POLICY.rules


@pytest.mark.parametrize(("text", "message"), [
    ("limits = [ { stage = \"resolve\", working_days = -1 } ]\n", "working_days"),
    ("limit = []\n", "unknown key 'limit'"),
    ("limits = 5\n", "list of tables"),
    ("warn_share = 2\n", "warn_share"),
    ("warn_share = \"high\"\n", "warn_share"),
    ("limits = [\n", "LIMITS_FILE"),
])
def test_bad_limits_file(tmp_path, text, message):
    path = tmp_path / "limits.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=message):
        load_limits(path, calendar=CALENDAR)


@pytest.mark.parametrize("created", ["2026-09-28 10:00", "2026-11-27 16:00", "2026-02-12 12:45"])
def test_stored_queue_share_turns_warning_and_overdue_when_escalation_does(created):
    """The ticket queue keeps (deadline, clock_limit) and divides clock time (services.ticket_views):
    for a working-day stage that share crosses the warning and the deadline at escalation's instants."""
    from services.ticket_views import left_share

    ticket = make(type_="complaint", urgency="normal", at=local(created))
    ticket = run(ticket, ((local(created) - T0) // M + 1, "dispatch", Role.DISPATCHER, {"crew_id": "C1"}),
                 ((local(created) - T0) // M + 2, "accept", Role.CREW, {}))  # only resolve is left open
    start = next(s for s in escalation(ticket, ticket.created_at, policy=POLICY) if s.stage is Stage.RESOLVE)
    assert start.clock_limit > start.limit and start.used_share == 0
    warn_at = CALENDAR.add(start.started_at, 0.8 * start.limit)
    for at, level in ((warn_at - M, Level.OK), (warn_at, Level.WARNING), (start.deadline - M, Level.WARNING),
                      (start.deadline, Level.OVERDUE)):
        s = next(s for s in escalation(ticket, at, policy=POLICY) if s.stage is Stage.RESOLVE)
        share, _, _ = left_share([[s.stage.value, s.deadline.timestamp(), s.clock_limit.total_seconds()]],
                                 at.timestamp())
        stored = "overdue" if share <= 0 else "warning" if 1 - share >= 0.8 else "ok"
        assert (s.level, stored) == (level, level.value), at


def test_clock_limit_of_a_clock_stage_is_its_limit():
    assert all(s.clock_limit == s.limit for s in escalation(make(), T0 + 5 * M, policy=POLICY))


def _lifecycle():
    """A repair through its states, a declined one, a closed one, a complaint on working days, other areas."""
    repair = make()
    dispatched = run(repair, (2, "dispatch", Role.DISPATCHER, {"crew_id": "C1"}))
    declined = run(dispatched, (8, "decline", Role.CREW, {"reason": "车坏了"}))
    on_site = run(repair, *ON_SITE, (30, "arrive", Role.CREW, {}))
    resolved = run(on_site, (90, "resolve", Role.CREW, {"resolution": "更换熔断器"}))
    closed = run(resolved, (95, "queue_callback", Role.SYSTEM, {}),
                 (100, "close", Role.AGENT, {"satisfaction": "satisfied"}))
    complaint = make(category="water", type_="complaint", urgency="normal", at=local("2026-11-27 16:00"))
    return [repair, dispatched, declined, on_site, resolved, closed, complaint,
            make(type_="consultation", urgency="normal"), make(area="rural"), make(area="remote")]


@pytest.mark.parametrize("index", range(10))
def test_stamp_is_with_deadlines_and_the_open_stages_of_escalation(index):
    ticket = _lifecycle()[index]
    stamped, stages = stamp(ticket)
    assert stamped == with_deadlines(ticket)
    expected = [(s.stage, s.deadline, s.clock_limit) for s in escalation(ticket, ticket.updated_at) if not s.done]
    assert stages == expected
