"""KPIs from audit event streams: pure table tests with known answers (command.kpi)."""
from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import numpy as np
import orjson
import pytest

from command.errors import ValidationError
from command.kpi import (
    COLUMNS, EventError, KpiFrame, KpiState, day_period, facts_from_events, group_summary, month_period, named_row,
    period_of, range_period, rebuild, week_period,
)
from config.limit_files import load_calendar, load_limits, load_policy
from command.kpi_events import read_event
from command.kpi_facts import LimitTable, TicketAccumulator
from command.limits import Level, escalation
from command.tickets import apply
from command.ticket_fields import new_ticket
from command.ticket_json import event_to_dict
from command.ticket_model import Actor, Role, ticket_number
from command.ticket_model import CENTER_TZ
from services.kpi_service import KpiService, shipped_policy
from tests.conftest import test_settings

UTC = timezone.utc
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
M = timedelta(minutes=1)
AGENT, DISP, SYS, CREW = Role.AGENT, Role.DISPATCHER, Role.SYSTEM, Role.CREW
CLASSIFY = ("category", "type", "urgency", "district", "grid", "unit_id", "area_class", "lon", "lat")


def make_stream(number, steps, **kw):
    """Run `steps` (minute, action, role, args) through the real ticket state machine; event dicts out."""
    return run_ticket(number, steps, **kw)[1]


def run_ticket(number, steps, *, at=T0, category="power", type_="repair", urgency="urgent",
               channel="phone", district="D1", grid="G1", unit="U1", area="urban",
               lon=116.40, lat=39.90, classify=True):
    """`make_stream`'s run: (the ticket at the end, its event dicts)."""
    fields = {"number": number, "channel": channel, "category": category, "type": type_,
              "urgency": urgency, "description": "停电了", "caller_phone": "13800138000",
              "district": district, "grid": grid, "unit_id": unit, "area_class": area,
              "lon": lon, "lat": lat}
    ticket, event = new_ticket(fields, now=at, actor=Actor("a1", AGENT))
    if classify:  # what new_ticket records with the create event
        assert {k: event.data[k] for k in CLASSIFY} == {k: fields[k] for k in CLASSIFY}
    else:  # an older stream whose create event carried only the channel
        event = dataclasses.replace(event, data={"channel": event.data["channel"]})
    events = [event]
    for minute, action, role, args in steps:
        actor = (Actor("c1", role, ticket.crew_id) if role is CREW else
                 Actor("l1", role, unit_ids=frozenset({ticket.unit_id})) if role is Role.UNIT else Actor("u1", role))
        ticket, event = apply(ticket, action, actor=actor, now=at + minute * M, **args)
        events.append(event)
    return ticket, [event_to_dict(e) for e in events]


def dispatch(minute, crew="C1"):
    return (minute, "dispatch", DISP, {"crew_id": crew})


def field_work(accept, arrive, resolve, *, depart=None, source=None):
    steps = [(accept, "accept", CREW, {})]
    if depart is not None:
        steps.append((depart, "depart", CREW, {}))
    steps.append((arrive, "arrive", SYS if source == "gps" else CREW, {"source": source} if source else {}))
    steps.append((resolve, "resolve", CREW, {"resolution": "已修复"}))
    return steps


def callback(queue, close, satisfaction="satisfied"):
    return [(queue, "queue_callback", SYS, {}), (close, "close", AGENT, {"satisfaction": satisfaction})]


FULL = [dispatch(2), *field_work(3, 30, 90, depart=5), *callback(100, 120)]
REOPENED = [dispatch(2), *field_work(3, 30, 90), (100, "queue_callback", SYS, {}),
            (110, "reopen", AGENT, {"reason": "还是没电"}), dispatch(112, "C2"),
            *field_work(113, 130, 150), *callback(155, 160, "basically_satisfied")]
TRANSFERRED = [(1, "transfer", DISP, {"unit_id": "U2", "reason": "不归我们管"}), dispatch(4),
               *field_work(5, 20, 40), *callback(41, 50)]
DECLINED = [dispatch(2), (4, "decline", CREW, {"reason": "车辆故障"}), dispatch(6, "C2"),
            *field_work(9, 40, 60)]
GPS = [dispatch(2), *field_work(3, 25, 60, source="gps")]
GPS_NOTE = [dispatch(2), *field_work(3, 30, 60)[:2],
            (31, "note", SYS, {"note": "车辆到达", "data": {"gps_arrived_at": (T0 + 26 * M).isoformat()}}),
            (60, "resolve", CREW, {"resolution": "已修复"})]
LATE = [dispatch(20), *field_work(22, 60, 100)]
POLICE = [(1, "note", DISP, {"note": "转110", "data": {"police": "handover"}}),
          (3, "note", SYS, {"note": "110已接收", "data": {"police": "ack"}}), dispatch(4)]
# the notes services.police_link writes: handover queued, 110's status report, then its ack
POLICE_LINK = [(1, "note", DISP, {"note": "调度员转110", "data": {"police": "handover_queued", "kind": "manual"}}),
               (4, "note", SYS, {"note": "110已接收", "data": {"police_status": "received"}}),
               (6, "note", SYS, {"note": "110已确认接收转警", "data": {"police": "acked"}}), dispatch(7)]
POLICE_LINK_ACK = [POLICE_LINK[0], POLICE_LINK[2], dispatch(7)]
REPEATS = [(5, "repeat_call", AGENT, {}), (9, "repeat_call", AGENT, {})]
DUPLICATES = [(3, "duplicate_call", AGENT, {"phone": "13900001111"}), (6, "duplicate_call", AGENT, {})]


@pytest.mark.parametrize(("name", "steps", "kw", "expected"), [
    ("full path", FULL, {}, dict(
        dispatch_time_s=120, acceptance_time_s=60, arrival_time_s=28 * 60, repair_time_s=60 * 60,
        resolution_time_s=90 * 60, callback_time_s=30 * 60, reopen_count=0, resolved_count=1,
        callback_result="satisfied", crew_id="C1", arrival_source="button", state="closed",
        limits_met={"dispatch": True, "accept": True, "arrive": True, "resolve": True, "callback": True})),
    ("reopened: dispatch to the first, repair over the last", REOPENED, {}, dict(
        dispatch_time_s=120, arrival_time_s=28 * 60, repair_time_s=20 * 60, resolution_time_s=150 * 60,
        reopen_count=1, resolved_count=2, callback_result="basically_satisfied", callback_time_s=20 * 60,
        crew_id="C2", crew_ids=("C1", "C2"))),
    ("transferred to another unit", TRANSFERRED, {}, dict(
        unit_id="U2", first_unit_id="U1", transfer_count=1, dispatch_time_s=240, resolution_time_s=40 * 60)),
    ("declined, then dispatched again", DECLINED, {}, dict(
        dispatch_time_s=120, acceptance_time_s=180, arrival_time_s=38 * 60, crew_id="C2",
        crew_ids=("C1", "C2"), callback_result=None)),
    ("consultation closed on the call", [(3, "close_direct", AGENT, {"answer": "停电计划见公告"})],
     {"type_": "consultation"}, dict(
        dispatch_time_s=None, acceptance_time_s=None, arrival_time_s=None, repair_time_s=None,
        resolution_time_s=180, closed_on_call=True, callback_result=None, resolved_count=1,
        limits_met={"resolve": True}, state="closed")),
    ("GPS arrival from the vehicle", GPS, {}, dict(arrival_time_s=23 * 60, arrival_source="gps")),
    ("GPS arrival in a note beats the button", GPS_NOTE, {}, dict(
        arrival_time_s=24 * 60, arrival_source="gps", repair_time_s=34 * 60)),
    ("late dispatch and arrival", LATE, {}, dict(
        limits_met={"dispatch": False, "accept": True, "arrive": False, "resolve": True})),
    ("rural arrival limit is longer", LATE, {"area": "rural"}, dict(
        limits_met={"dispatch": False, "accept": True, "arrive": True, "resolve": True})),
    ("110 handover acknowledged", POLICE, {}, dict(police_ack_s=120, dispatch_time_s=240)),
    ("110 linkage as police_link notes it: a status report counts as the ack", POLICE_LINK, {},
     dict(police_ack_s=180)),
    ("110 linkage as police_link notes it: the ack", POLICE_LINK_ACK, {}, dict(police_ack_s=300)),
    ("two repeat calls make it red", REPEATS, {}, dict(repeat_calls=2, color="red", dispatch_time_s=None)),
    ("other callers are counted without colour", DUPLICATES, {}, dict(duplicate_calls=2, repeat_calls=0,
                                                                      color="blue")),
    ("unreachable at callback", [dispatch(2), *field_work(3, 30, 90), *callback(91, 95, "unreachable")],
     {}, dict(callback_result="unreachable", callback_time_s=5 * 60)),
])
def test_facts_from_events(name, steps, kw, expected):
    facts = facts_from_events(make_stream("GD20261122-0001", steps, **kw))
    got = {key: getattr(facts, key) for key in expected}
    assert got == expected, name


def test_attributes_fill_in_what_the_create_event_lacks():
    events = make_stream("GD20261122-0001", FULL, classify=False)
    bare = facts_from_events(events)
    assert (bare.category, bare.district, bare.limits_met.get("arrive")) == (None, None, None)
    snapshot = {"category": "gas", "type": "repair", "urgency": "urgent", "district": "D9", "area_class": "urban"}
    facts = facts_from_events(events, attributes=snapshot)
    assert (facts.category, facts.district, facts.channel) == ("gas", "D9", "phone")
    assert facts.limits_met["arrive"] is True  # gas urban: 30 min, arrived after 30 min exactly


@pytest.mark.parametrize(("events", "field"), [
    ([], "events"),
    ([{"action": "create", "at": T0.isoformat()}], "event"),
    ([{"ticket_number": "GD20261122-0001", "action": "create", "at": "2026-11-22T10:00:00"}], "at"),
    ([{"ticket_number": "GD20261122-0001", "action": "create", "at": "yesterday"}], "at"),
    ([{"ticket_number": "GD20261122-0001", "action": "create", "at": T0.isoformat()},
      {"ticket_number": "GD20261122-0002", "action": "note", "at": T0.isoformat()}], "ticket_number"),
])
def test_unreadable_events_raise(events, field):
    with pytest.raises(EventError) as caught:
        facts_from_events(events)
    assert caught.value.field == field


# ---------------------------------------------------------------- periods

SH = CENTER_TZ


@pytest.mark.parametrize(("kind", "day", "start", "end"), [
    ("daily", date(2026, 11, 22), datetime(2026, 11, 21, 16, tzinfo=UTC), datetime(2026, 11, 22, 16, tzinfo=UTC)),
    ("weekly", date(2026, 11, 22), datetime(2026, 11, 15, 16, tzinfo=UTC), datetime(2026, 11, 22, 16, tzinfo=UTC)),
    ("weekly", date(2026, 11, 23), datetime(2026, 11, 22, 16, tzinfo=UTC), datetime(2026, 11, 29, 16, tzinfo=UTC)),
    ("monthly", date(2026, 12, 5), datetime(2026, 11, 30, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC)),
    ("monthly", date(2026, 2, 1), datetime(2026, 1, 31, 16, tzinfo=UTC), datetime(2026, 2, 28, 16, tzinfo=UTC)),
    ("yearly", date(2026, 7, 9), datetime(2025, 12, 31, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC)),
])
def test_periods_in_center_time(kind, day, start, end):
    assert period_of(kind, day, SH) == (start, end)


def test_a_range_runs_from_the_first_days_midnight_to_the_midnight_after_the_last():
    assert range_period(date(2026, 11, 20), date(2026, 11, 22), SH) == (
        datetime(2026, 11, 19, 16, tzinfo=UTC), datetime(2026, 11, 22, 16, tzinfo=UTC))
    assert range_period(date(2026, 11, 22), date(2026, 11, 22), SH) == day_period(date(2026, 11, 22), SH)


def test_bad_period_kinds_raise():
    with pytest.raises(ValidationError):
        period_of("hourly", date(2026, 1, 1))
    with pytest.raises(ValidationError):
        range_period(date(2026, 1, 2), date(2026, 1, 1))
    with pytest.raises(ValidationError):
        month_period(2026, 13)
    with pytest.raises(ValidationError):
        KpiState().report(*reversed(day_period(date(2026, 11, 22))))


# ---------------------------------------------------------------- reports

def local(day, hour, minute=0):
    return datetime(2026, 11, day, hour, minute, tzinfo=SH).astimezone(UTC)


def test_ticket_spanning_midnight_counts_on_creation_day_and_resolution_day():
    events = make_stream("GD20261122-0001", [dispatch(2), *field_work(3, 10, 30)], at=local(22, 23, 50))
    state = rebuild(events)
    day22, day23 = state.report(*day_period(date(2026, 11, 22))), state.report(*day_period(date(2026, 11, 23)))
    assert (day22.volume["tickets"], day22.quality["resolved"]) == (1, 0)
    assert (day23.volume["tickets"], day23.quality["resolved"]) == (0, 1)
    assert day22.times["dispatch_time_s_mean"] == 120 and day23.times["dispatch_time_s_count"] == 0
    assert day23.times["resolution_time_s_mean"] == 1800 and day22.times["resolution_time_s_count"] == 0
    assert day22.volume["by_hour"][23] == 1
    week = state.report(*week_period(date(2026, 11, 22)))  # Sunday 22nd ends the week; Monday 23rd starts one
    assert (week.volume["tickets"], week.quality["resolved"]) == (1, 0)


@pytest.mark.parametrize(("created", "day"), [
    (local(22, 0, 0), 22), (datetime(2026, 11, 22, 15, 59, 59, tzinfo=UTC), 22),
    (datetime(2026, 11, 22, 16, 0, 0, tzinfo=UTC), 23), (datetime(2026, 11, 21, 15, 59, tzinfo=UTC), 21),
])
def test_day_boundary_is_midnight_in_shanghai(created, day):
    state = rebuild(make_stream("GD20261122-0001", [], at=created))
    counts = {d: state.report(*day_period(date(2026, 11, d))).volume["tickets"] for d in (21, 22, 23)}
    assert counts == {d: int(d == day) for d in (21, 22, 23)}


def satisfaction_fixture():
    n = iter(range(1, 100))
    num = lambda: ticket_number(date(2026, 11, 22), next(n))  # noqa: E731
    work = [dispatch(2), *field_work(3, 30, 90)]
    streams = [
        make_stream(num(), [*work, *callback(95, 100, "satisfied")]),
        make_stream(num(), [*work, *callback(95, 100, "basically_satisfied")], unit="U2"),
        make_stream(num(), [*work, *callback(95, 100, "unreachable")], unit="U2"),
        make_stream(num(), [*work, (95, "queue_callback", SYS, {}), (99, "reopen", AGENT, {"reason": "没修好"})]),
        make_stream(num(), work, category="water"),
        make_stream(num(), [(3, "close_direct", AGENT, {"answer": "已答复"})], type_="consultation", channel="web"),
    ]
    return [e for s in streams for e in s]


def test_satisfaction_callback_first_time_fix_and_reopen_rates():
    state = rebuild(satisfaction_fixture())
    q = state.report(*day_period(date(2026, 11, 22))).quality
    assert {k: q[k] for k in ("resolved", "callback_due", "callback_done", "satisfied", "basically_satisfied",
                              "dissatisfied", "unreachable", "first_time_fix", "reopened")} == {
        "resolved": 6, "callback_due": 5, "callback_done": 3, "satisfied": 1, "basically_satisfied": 1,
        "dissatisfied": 1, "unreachable": 1, "first_time_fix": 5, "reopened": 1}
    assert q["satisfaction_rate"] == pytest.approx(2 / 3)
    assert q["callback_completion_rate"] == pytest.approx(3 / 5)
    assert q["first_time_fix_rate"] == pytest.approx(5 / 6)
    assert q["reopen_rate"] == pytest.approx(1 / 6)


def test_volume_times_and_on_time_of_a_small_day():
    state = rebuild(satisfaction_fixture())
    r = state.report(*day_period(date(2026, 11, 22)))
    assert r.volume["by_channel"] == {"phone": 5, "web": 1, "sms": 0, "police_110": 0, "sensor": 0}
    assert r.volume["by_category"]["water"] == 1 and r.volume["by_unit"] == {"U1": 4, "U2": 2}
    assert r.volume["by_hour"][10] == 6 and sum(r.volume["by_hour"]) == 6
    assert (r.times["arrival_time_s_count"], r.times["arrival_time_s_mean"]) == (5, 28 * 60)
    assert r.times["resolution_time_s_median"] == 90 * 60 and r.times["resolution_time_s_count"] == 6
    assert r.times["resolution_time_s_p90"] == pytest.approx(90 * 60)
    assert (r.on_time["arrive_on_time_due"], r.on_time["arrive_on_time_met"]) == (5, 5)
    assert r.on_time["resolve_on_time_rate"] == 1.0
    assert r.series[0] == {"day": "2026-11-22", "created": 6, "resolved": 6}
    assert r.times_by["unit"]["U2"]["arrival_time_s_count"] == 2


def test_rankings_and_drill_down_agree():
    state = rebuild(satisfaction_fixture())
    start, end = day_period(date(2026, 11, 22))
    report = state.report(start, end)
    units = {row["unit_id"]: row for row in report.rankings["unit"]}
    assert (units["U1"]["tickets"], units["U2"]["tickets"]) == (4, 2)
    assert units["U2"]["satisfaction_rate"] == 1.0 and units["U1"]["satisfaction_rate"] == 0.5
    assert [row["rank"] for row in report.rankings["unit"]] == [1, 2]
    for row in report.rankings["unit"] + report.rankings["crew"]:
        for field, metric in report.drill_metrics.items():
            if isinstance(row[field], int):
                assert len(state.drill(start, end, metric, **row["drill"])) == row[field], (row, field)
    assert state.drill(start, end, "reopened") == ["GD20261122-0004"]
    assert state.drill(start, end, "created", group_by="hour", group=10) == \
        [ticket_number(date(2026, 11, 22), i) for i in range(1, 7)]
    for key, count in report.quality.items():
        if isinstance(count, int):
            assert len(state.drill(start, end, key)) == count, key
    for key, count in report.on_time.items():
        if key.endswith(("_due", "_met")):
            assert len(state.drill(start, end, key)) == count, key
    for key, count in report.intake.items():
        if key.endswith("_tickets"):
            assert len(state.drill(start, end, key.removesuffix("_tickets"))) == count, key
    for key, by in report.volume.items():
        if key.startswith("by_") and key != "by_hour":
            for group, count in by.items():
                assert len(state.drill(start, end, "created", group_by=key[3:], group=group)) == count


@pytest.mark.parametrize(("filters", "tickets"), [
    ({}, 6), ({"category": "water"}, 1), ({"category": ["water", "power"]}, 6), ({"unit": "U2"}, 2),
    ({"district": "D1"}, 6), ({"district": "nowhere"}, 0), ({"category": "power", "unit": "U1"}, 3),
])
def test_filters(filters, tickets):
    state = rebuild(satisfaction_fixture())
    assert state.report(*day_period(date(2026, 11, 22)), **filters).volume["tickets"] == tickets


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"category": "electricity"}, "category"), ({"metric": "nonsense"}, "metric"),
    ({"metric": "created", "group_by": "weather"}, "group_by"), ({"metric": "created", "group_by": "hour", "group": 24}, "group"),
])
def test_bad_report_arguments(kwargs, field):
    state = rebuild(satisfaction_fixture())
    start, end = day_period(date(2026, 11, 22))
    with pytest.raises(ValidationError) as caught:
        if "metric" in kwargs:
            state.drill(start, end, **kwargs)
        else:
            state.report(start, end, **kwargs)
    assert caught.value.field == field


def test_intake_counts():
    events = (make_stream("GD20261122-0001", REPEATS) + make_stream("GD20261122-0002", POLICE)
              + make_stream("GD20261122-0003", [(1, "repeat_call", AGENT, {})], channel="police_110")
              + make_stream("GD20261122-0004", DUPLICATES))
    r = rebuild(events).report(*day_period(date(2026, 11, 22)))
    i = r.intake
    assert (i["repeat_tickets"], i["repeat_calls"], i["red_tickets"], i["orange_tickets"]) == (2, 3, 1, 1)
    assert (i["duplicate_tickets"], i["duplicate_calls"]) == (1, 2)
    assert i["repeat_call_rate"] == pytest.approx(2 / 4) and i["red_share"] == pytest.approx(1 / 4)
    assert (i["police_handover_tickets"], i["police_transfer_in_tickets"], i["police_linkage_count"]) == (1, 1, 2)
    assert (i["police_ack_s_count"], i["police_ack_s_mean"]) == (1, 120)
    assert i["open_tickets"] == 4


# ---------------------------------------------------------------- two paths agree

def random_streams(seed, tickets=80):
    """Random but legal lifecycles through the real state machine, interleaved by time."""
    rng = random.Random(seed)
    events = []
    for k in range(1, tickets + 1):
        start = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        type_ = rng.choice(["repair", "repair", "complaint", "consultation"])
        minute, steps = 0, []
        def step(action, role, **args):
            nonlocal minute
            minute += rng.randrange(1, 90)
            steps.append((minute, action, role, args))
        if type_ == "consultation" and rng.random() < 0.7:
            step("close_direct", AGENT, answer="已答复")
        else:
            if rng.random() < 0.2:
                step("transfer", DISP, unit_id="U9")
            if rng.random() < 0.3:
                step("repeat_call", AGENT)
            for cycle in range(rng.choice([1, 1, 1, 2])):
                step("dispatch", DISP, crew_id=rng.choice(["C1", "C2", "C3"]))
                if rng.random() < 0.2:
                    step("decline", CREW, reason="忙")
                    step("dispatch", DISP, crew_id="C4")
                if rng.random() < 0.1:
                    break
                step("accept", CREW)
                step("arrive", SYS if rng.random() < 0.5 else CREW, **({"source": "gps"} if rng.random() < 0.5 else {}))
                step("resolve", CREW, resolution="修好")
                step("queue_callback", SYS)
                if cycle == 0 and rng.random() < 0.3:
                    step("reopen", AGENT, reason="没修好")
                    continue
                step("close", AGENT, satisfaction=rng.choice(["satisfied", "basically_satisfied", "unreachable"]))
                break
        events += make_stream(ticket_number(date(2026, 11, 22), k), steps, at=start, type_=type_,
                              category=rng.choice(["power", "water", "gas"]), unit=rng.choice(["U1", "U2"]),
                              district=rng.choice(["D1", "D2"]), area=rng.choice(["urban", "rural"]))
    events.sort(key=lambda e: e["at"])  # stable: each ticket's own events stay in order
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_apply_equals_rebuild(seed):
    events = random_streams(seed)
    full = rebuild(events)
    live = KpiState(capacity=4)
    for i, event in enumerate(events):
        live.apply(event)
        if i % 97 == 0:  # reports in between rewrite rows of tickets changed again later
            live.report(*month_period(2026, 11))
    for kind, day in (("monthly", date(2026, 11, 1)), ("weekly", date(2026, 11, 23)), ("daily", date(2026, 11, 23))):
        period = period_of(kind, day)
        assert live.report(*period).to_dict() == full.report(*period).to_dict()
    a, b = full.columns(), live.columns()
    order = [live.numbers(np.arange(len(live))).index(n) for n in full.numbers(np.arange(len(full)))]
    for name in COLUMNS:
        if name not in ("district", "grid", "unit", "crew"):  # codes depend on arrival order
            np.testing.assert_array_equal(a[name], b[name][order], err_msg=name)
    assert full.report(*month_period(2026, 11)).volume["tickets"] == 80


def test_facts_of_the_state_equal_facts_from_events():
    events = random_streams(4, tickets=20)
    state = rebuild(events)
    for number in {e["ticket_number"] for e in events}:
        assert state.facts(number) == facts_from_events([e for e in events if e["ticket_number"] == number])


@pytest.mark.parametrize("seed", [5, 6])
def test_a_fold_kept_as_json_and_continued_equals_the_fold_of_every_event(seed):
    events = random_streams(seed, tickets=30)
    for number in sorted({e["ticket_number"] for e in events}):
        stream = [e for e in events if e["ticket_number"] == number]
        whole = facts_from_events(stream)
        for cut in range(1, len(stream)):
            acc = TicketAccumulator(number)
            for event in stream[:cut]:
                _, action, at, data = read_event(event)
                acc.feed(action, at, data, event["to_state"])
            kept = TicketAccumulator.from_dict(orjson.loads(orjson.dumps(acc.to_dict())))
            for event in stream[cut:]:
                _, action, at, data = read_event(event)
                kept.feed(action, at, data, event["to_state"])
            assert kept.facts() == whole, (number, cut)
    with pytest.raises(EventError):
        TicketAccumulator.from_dict({"number": "X"})  # a fold of another shape: folded again from its events


def test_a_frame_of_a_states_rows_gives_the_states_reports():
    state = rebuild(random_streams(7))
    cols = state.columns()
    frame = KpiFrame(cols, state.codes, np.arange(len(state)), state.numbers(np.arange(len(state))))
    for kind, day in (("monthly", date(2026, 11, 1)), ("daily", date(2026, 11, 23)), ("yearly", date(2026, 1, 1))):
        period = period_of(kind, day)
        assert frame.report(*period).to_dict() == state.report(*period).to_dict()
        assert frame.drill(*period, "resolved", group_by="unit", group="U1") == \
            state.drill(*period, "resolved", group_by="unit", group="U1")
    rows = frame.newest_first(np.arange(len(frame)))
    created = cols["created"][rows]
    assert (np.diff(created) <= 0).all()
    assert len(named_row(TicketAccumulator("T"), LimitTable())) == len(COLUMNS)


# ---------------------------------------------------------------- statistics

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_summary_matches_numpy_per_group(seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-1, 6, 500)
    values = rng.exponential(100, 500)
    values[rng.random(500) < 0.1] = np.nan
    count, mean, median, p90 = group_summary(codes, values, 7)
    for g in range(7):
        v = values[(codes == g) & np.isfinite(values)]
        assert count[g] == v.size
        if v.size:
            assert (mean[g], median[g], p90[g]) == pytest.approx((v.mean(), np.median(v), np.percentile(v, 90)))
        else:
            assert math.isnan(mean[g]) and math.isnan(p90[g])


# ---------------------------------------------------------------- limits on the working calendar

CALENDAR = load_calendar()  # the shipped calendar: 2026's holidays and make-up working days
POLICY = load_limits(calendar=CALENDAR)  # the shipped limits file on it


def at_local(text):
    return datetime.fromisoformat(text).replace(tzinfo=CALENDAR.zone).astimezone(UTC)


def office_ticket(created, resolved, *, type_="complaint", number="GD20261122-0001"):
    """A complaint (or service, suggestion, praise) handled by a unit's crew, resolved at `resolved`
    (local times): (ticket, events)."""
    minutes = (at_local(resolved) - at_local(created)) // M
    steps = [dispatch(5), *field_work(10, 20, minutes, depart=15)]
    return run_ticket(number, steps, at=at_local(created), type_=type_, category="water", urgency="normal")


def escalation_verdicts(ticket, now):
    """What escalation says of the ticket's completed stages: stage -> on time."""
    return {s.stage.value: s.level is Level.OK for s in escalation(ticket, now, policy=POLICY) if s.done}


@pytest.mark.parametrize(("created", "resolved", "on_time"), [
    ("2026-11-27 10:00", "2026-12-03 16:00", True),  # Friday to Thursday: 6 clock days, 34.5 working hours
    ("2026-09-30 10:00", "2026-10-12 10:00", True),  # across National Day: 12 clock days, 30 working hours
    ("2026-11-23 10:00", "2026-11-30 10:00", True),  # Monday to Monday: at the deadline
    ("2026-11-23 10:00", "2026-11-30 11:00", False),  # an hour after 5 working days
    ("2026-09-28 10:00", "2026-10-10 10:30", False),  # past the deadline on the make-up Saturday
    ("2026-11-28 22:00", "2026-12-04 18:00", False),  # after Friday 17:30, its deadline (no working time since)
])
def test_complaint_judged_in_working_days_in_the_facts_and_the_report(created, resolved, on_time):
    ticket, events = office_ticket(created, resolved)
    facts = facts_from_events(events, limits=LimitTable(POLICY))
    assert facts.limits_met["resolve"] is on_time
    day = CALENDAR.local_date(at_local(resolved))
    r = rebuild(events, policy=POLICY).report(*day_period(day))
    assert (r.on_time["resolve_on_time_due"], r.on_time["resolve_on_time_met"]) == (1, int(on_time))
    assert escalation_verdicts(ticket, at_local(resolved) + M)["resolve"] is on_time


def test_weekend_and_holiday_complaints_were_late_on_the_clock_and_are_on_time_now():
    for created, resolved in (("2026-11-27 10:00", "2026-12-03 16:00"), ("2026-09-30 10:00", "2026-10-12 10:00")):
        assert at_local(resolved) - at_local(created) > timedelta(days=5)  # 5 "days" on the clock: late
        _, events = office_ticket(created, resolved)
        assert facts_from_events(events, limits=LimitTable(POLICY)).limits_met["resolve"] is True


@pytest.mark.parametrize(("created", "area", "arrival", "on_time"), [
    ("2026-11-28 23:50", "urban", 45, True),  # a Saturday night: 45 clock minutes all the same
    ("2026-11-28 23:50", "urban", 46, False),
    ("2026-10-01 03:00", "rural", 90, True),  # a National Day night: 90 clock minutes
    ("2026-10-01 03:00", "rural", 91, False),
    ("2026-11-24 10:00", "remote", 121, False),
])
def test_repair_arrival_stays_on_the_clock(created, area, arrival, on_time):
    ticket, events = run_ticket("GD20261122-0001", [dispatch(2), *field_work(3, arrival, arrival + 30)],
                                at=at_local(created), area=area)
    for limits in (LimitTable(POLICY), LimitTable()):  # the calendar changes nothing for a repair
        assert facts_from_events(events, limits=limits).limits_met["arrive"] is on_time
    assert escalation_verdicts(ticket, ticket.resolved_at + M)["arrive"] is on_time


AGREEMENT_CASES = [
    ("complaint", "2026-11-27 10:00", "2026-12-03 16:00"), ("complaint", "2026-11-28 22:00", "2026-12-04 18:00"),
    ("complaint", "2026-11-28 22:00", "2026-12-04 17:30"), ("complaint", "2026-09-30 17:00", "2026-10-13 17:01"),
    ("service", "2026-09-24 16:00", "2026-09-30 12:00"), ("service", "2026-09-24 16:00", "2026-09-30 14:00"),
    ("suggestion", "2026-02-13 09:00", "2026-03-05 09:00"), ("praise", "2026-12-30 12:30", "2027-01-14 12:00"),
    ("consultation", "2026-10-03 09:00", "2026-10-04 09:00"), ("consultation", "2026-10-03 09:00", "2026-10-04 09:01"),
]


@pytest.mark.parametrize(("type_", "created", "resolved"), AGREEMENT_CASES)
def test_facts_agree_with_escalation(type_, created, resolved):
    ticket, events = office_ticket(created, resolved, type_=type_)
    facts = facts_from_events(events, limits=LimitTable(POLICY))
    assert facts.limits_met == escalation_verdicts(ticket, ticket.resolved_at + M)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_facts_agree_with_escalation_on_random_tickets(seed):
    """Every completed stage of random tickets around 2026's autumn holidays: the same verdict."""
    rng = random.Random(seed)
    late = Counter()
    for k in range(1, 41):
        created = at_local("2026-09-18 00:00") + timedelta(minutes=rng.randrange(0, 30 * 24 * 60))
        steps, minute = [], 0
        for action, role, args, most in (
                ("dispatch", DISP, {"crew_id": "C1"}, 200), ("accept", CREW, {}, 90), ("arrive", CREW, {}, 200),
                ("resolve", CREW, {"resolution": "已处理"}, 14 * 24 * 60)):
            minute += rng.randrange(1, most)
            steps.append((minute, action, role, args))
        type_ = rng.choice(["repair", "complaint", "service", "suggestion", "praise", "consultation"])
        ticket, events = run_ticket(ticket_number(date(2026, 9, 18), k), steps, at=created, type_=type_,
                                    category=rng.choice(["power", "water", "gas"]), area=rng.choice(["urban", "rural"]),
                                    urgency=rng.choice(["emergency", "urgent", "normal"]))
        facts = facts_from_events(events, limits=LimitTable(POLICY))
        assert facts.limits_met == escalation_verdicts(ticket, ticket.resolved_at + M), ticket.number
        late.update(stage for stage, met in facts.limits_met.items() if not met)
    assert late["resolve"] and late["dispatch"]  # the table has late stages as well as on-time ones


def unit_path(created, fed_back, *extension):
    """A complaint 交办 to its department, 受理, maybe an extension (steps), 反馈 at `fed_back`."""
    minutes = (at_local(fed_back) - at_local(created)) // M
    return run_ticket("GD20261122-0001", [
        (5, "assign", DISP, {}), (30, "unit_accept", Role.UNIT, {}), *extension,
        (minutes, "feedback", Role.UNIT, {"resolution": "已约谈并整改", "signed_by": "王科长"})],
        at=at_local(created), type_="complaint", category="water", urgency="normal")


def extension(until, approve=True):
    return [(60, "request_extension", Role.UNIT, {"reason": "需协调多部门", "until": at_local(until).isoformat()}),
            (90, "approve_extension" if approve else "refuse_extension", Role.SUPERVISOR,
             {} if approve else {"reason": "时限内可办结"})]


@pytest.mark.parametrize(("fed_back", "steps", "on_time"), [
    ("2026-11-27 17:00", [], True),  # Monday to Friday: 5 working days not used up
    ("2026-12-01 11:00", [], False),  # past Monday 10:00, 5 working days
    ("2026-12-01 11:00", extension("2026-12-02 17:30"), True),  # within the extension
    ("2026-12-02 18:00", extension("2026-12-02 17:30"), False),  # past it
    ("2026-12-01 11:00", extension("2026-12-02 17:30", approve=False), False),  # refused: the limit stands
])
def test_a_units_complaint_judged_as_escalation_judges_it(fed_back, steps, on_time):
    ticket, events = unit_path("2026-11-23 10:00", fed_back, *steps)
    facts = facts_from_events(events, limits=LimitTable(POLICY))
    verdicts = escalation_verdicts(ticket, ticket.resolved_at + M)
    assert facts.limits_met == verdicts
    assert (facts.limits_met["resolve"], facts.unit_id, facts.resolved_count) == (on_time, "U1", 1)
    assert facts.limits_met["dispatch"] is facts.limits_met["accept"] is True  # 交办 in 5 min, 受理 in 25


def test_the_kpi_service_judges_on_the_settings_files_policy(tmp_path):
    assert shipped_policy() == load_policy(test_settings(tmp_path))  # empty settings: the shipped files
    assert shipped_policy().calendar.holidays  # not the calendar-less built-in policy
    assert KpiService(None, None).policy is shipped_policy()
    assert KpiService(None, None, policy=POLICY).limits.policy is POLICY
