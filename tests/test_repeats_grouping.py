"""Repeat calls (红橙蓝单) and trouble-call grouping, with time and distances passed in."""
from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone

import pytest

from command.errors import ValidationError
from command.grouping import (
    AlarmRef, IncidentStatus, add_alarm, add_call, decide, find_incident, group_call, match_alarm,
    open_incident, resolve_all,
)
from command.repeats import (
    MatchKind, find_repeat, link_call, link_duplicate, link_repeat, needs_supervision, register_repeat,
)
from command.tickets import apply
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Category, Color, Role, State

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
M = timedelta(minutes=1)
LON, LAT = 116.40, 39.90
DEG_LAT_M = 111_195.0  # metres per degree of latitude on the mean sphere


def metres_north(m: float) -> float:
    return LAT + m / DEG_LAT_M


def haversine(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres (the GIS layer provides the real one)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def make(number="GD20261122-0001", *, phone="13800138000", category="water", type_="repair",
         at=T0, lat=LAT, supply_area="DMA-7"):
    fields = {"number": number, "channel": "phone", "category": category, "type": type_,
              "description": "停水", "caller_phone": phone, "lon": LON, "lat": lat, "supply_area": supply_area}
    return new_ticket(fields, now=at, actor=Actor("a", Role.AGENT))[0]


def call(phone="13900139000", *, north_m=0.0, category="water", at=T0 + H):
    return {"phone": phone, "lon": LON, "lat": metres_north(north_m), "category": category, "at": at}


@pytest.mark.parametrize(("new_call", "kwargs", "kind"), [
    (call("138-0013-8000", north_m=30), {}, "repeat"),  # the caller again, same category, same place
    (call("13800138000", north_m=30, category="power"), {}, None),  # the caller, another problem: new ticket
    (call("13800138000", north_m=3000), {}, None),  # the caller, same category 3 km away: a new place
    (call("13800138000", north_m=5000, category="gas"), {}, None),  # the old rule swallowed this one
    (call(north_m=80), {}, "duplicate"),  # a neighbour, same problem: joins the count, not the colour
    (call(north_m=80, category="power"), {}, None),  # near, but another problem
    (call(north_m=150), {}, None),
    (call(north_m=150), {"radius_m": 200}, "duplicate"),
    (call("13800138000", at=T0 + 73 * H), {}, None),  # outside 72 h
    (call("13800138000", at=T0 + 73 * H), {"window": 96 * H}, "repeat"),
    (call(north_m=10, at=T0 + 73 * H), {}, None),  # a neighbour outside 72 h
    (call("13800138000", at=T0 - M), {}, None),  # before the ticket
    ({"phone": None, "lon": None, "lat": None, "category": "water", "at": T0 + H}, {}, None),
    ({"phone": None, "lon": LON, "lat": LAT, "category": "water", "at": T0 + H}, {}, "duplicate"),  # no number
    # no point: the caller about the same category and type is the same problem, another type is not
    ({"phone": "13800138000", "lon": None, "lat": None, "category": "water", "type": "repair", "at": T0 + H},
     {}, "repeat"),
    ({"phone": "13800138000", "lon": None, "lat": None, "category": "water", "type": "complaint", "at": T0 + H},
     {}, None),
    ({"phone": "13900139000", "lon": None, "lat": None, "category": "water", "type": "repair", "at": T0 + H},
     {}, None),  # another caller without a place is never a duplicate
])
def test_find_repeat(new_call, kwargs, kind):
    ticket = make()
    found = find_repeat(new_call, [ticket], distance_fn=haversine, **kwargs)
    assert (None if found is None else (found.ticket, found.kind.value)) == (None if kind is None else (ticket, kind))


@pytest.mark.parametrize(("ticket_fields", "words", "kind"), [
    ({"description": "停水"}, "路面冒水了，水管爆了", None),        # a burst report is no symptom's duplicate
    ({"description": "停水"}, "我家也停水了", "duplicate"),
    ({"description": "停水"}, "没有冒水，就是停水", "duplicate"),   # negated: no burst report
    ({"description": "马路上水管爆了"}, "路面冒水了", "duplicate"),  # burst on burst: the same report
    ({"description": "管网压力骤降", "channel": "sensor"}, "我家也停水了", None),  # never into a sensor's ticket
])
def test_a_duplicate_is_the_same_report_and_never_a_sensors_ticket(ticket_fields, words, kind):
    fields = {"number": "GD20261122-0001", "channel": "phone", "category": "water", "type": "repair",
              "caller_phone": "13800138000", "lon": LON, "lat": LAT, **ticket_fields}
    if fields["channel"] == "sensor":
        fields.pop("caller_phone")
    ticket = new_ticket(fields, now=T0, actor=Actor("a", Role.AGENT))[0]
    found = find_repeat({**call(north_m=20), "description": words}, [ticket], distance_fn=haversine)
    assert (None if found is None else found.kind.value) == kind


def test_repeat_prefers_same_phone_then_nearest_and_skips_closed():
    near = make("GD20261122-0001", phone="13700137000", lat=metres_north(10))
    mine = make("GD20261122-0002", phone="13900139000", lat=metres_north(90))
    closed = dataclasses.replace(make("GD20261122-0003", phone="13600136000"), state=State.CLOSED)
    found = find_repeat(call("13900139000"), [near, mine], distance_fn=haversine)
    assert (found.ticket, found.kind) == (mine, MatchKind.REPEAT) and round(found.distance_m) == 90
    found = find_repeat(call("13500135000"), [mine, near], distance_fn=haversine)
    assert (found.ticket, found.kind) == (near, MatchKind.DUPLICATE)
    assert find_repeat(call("13600136000"), [closed], distance_fn=haversine) is None


def test_window_runs_from_the_latest_call():
    ticket = register_repeat(make(), T0 + 70 * H)
    assert find_repeat(call("13800138000", at=T0 + 100 * H), [ticket], distance_fn=haversine).ticket is ticket


def test_the_callers_calls_colour_the_ticket_and_other_callers_only_count():
    """The caller's 2nd call turns it orange, the 3rd red; neighbours' calls join the count only."""
    ticket = make()
    seen = []
    for i, phone in enumerate(("13900139000", "13800138000", "13700137000", "13800138000"), start=1):
        found = find_repeat(call(phone, north_m=20, at=T0 + i * H), [ticket], distance_fn=haversine)
        ticket, event = link_call(found.ticket, found.kind, now=T0 + i * H, phone=phone, note="来电")
        seen.append((event.action, ticket.repeat_count, ticket.duplicate_count, ticket.color))
    assert seen == [("duplicate_call", 0, 1, Color.BLUE), ("repeat_call", 1, 1, Color.ORANGE),
                    ("duplicate_call", 1, 2, Color.ORANGE), ("repeat_call", 2, 2, Color.RED)]
    assert (ticket.last_call_at, needs_supervision(ticket)) == (T0 + 4 * H, True)


def test_bad_call_fields():
    with pytest.raises(ValidationError) as err:
        find_repeat({"phone": "123", "at": T0}, [], distance_fn=haversine)
    assert err.value.field == "caller_phone"
    with pytest.raises(ValidationError) as err:
        find_repeat({"phone": None, "category": "water", "at": datetime(2026, 1, 1)}, [], distance_fn=haversine)
    assert err.value.field == "at"


@pytest.mark.parametrize(("calls", "count", "color", "supervise"), [
    (0, 0, Color.BLUE, False), (1, 1, Color.ORANGE, False), (2, 2, Color.RED, True), (4, 4, Color.RED, True),
])
def test_colour_progression(calls, count, color, supervise):
    ticket = make()
    for i in range(calls):
        ticket = register_repeat(ticket, T0 + (i + 1) * H)
    assert (ticket.repeat_count, ticket.color, needs_supervision(ticket), ticket.version) == (
        count, color, supervise, 1 + calls)


def test_link_repeat_is_audited():
    ticket, event = link_repeat(make(), now=T0 + H, actor=Actor("a9", Role.AGENT), phone="13900139000",
                                note="邻居来电")
    assert (event.action, event.from_state, event.to_state, event.actor_id) == (
        "repeat_call", State.NEW, State.NEW, "a9")
    assert (event.data, event.note, ticket.last_call_at) == ({"phone": "13900139000"}, "邻居来电", T0 + H)


def test_link_duplicate_is_audited_and_keeps_the_colour():
    ticket, event = link_duplicate(make(), now=T0 + H, actor=Actor("a9", Role.AGENT), phone="13900139000",
                                   note="邻居来电")
    assert (event.action, event.from_state, event.to_state, event.actor_id, event.data, event.note) == (
        "duplicate_call", State.NEW, State.NEW, "a9", {"phone": "13900139000"}, "邻居来电")
    assert (ticket.duplicate_count, ticket.repeat_count, ticket.color, ticket.last_call_at) == (
        1, 0, Color.BLUE, T0 + H)


# ---------------------------------------------------------------- grouping

def calls_in(area="TA-1", category="power"):
    return [make(f"GD20261122-{i:04d}", phone=f"1380013800{i}", category=category, at=T0 + minute * M,
                 supply_area=area) for i, minute in enumerate((0, 12, 29), start=1)]


def test_calls_within_30_minutes_form_one_incident():
    a, b, c = calls_in()
    incident = group_call(a, [], new_incident_id="INC-1", suspected_asset="TX-88")
    assert incident.status is IncidentStatus.SINGLE
    assert not decide(incident).dispatch_once
    for ticket in (b, c):
        incident = group_call(ticket, [incident], new_incident_id="unused")
    assert (incident.incident_id, incident.ticket_numbers) == ("INC-1", (a.number, b.number, c.number))
    assert (incident.first_call_at, incident.last_call_at) == (T0, T0 + 29 * M)
    decision = decide(incident)
    assert (decision.status, decision.dispatch_once, decision.primary, decision.suspected_asset, decision.calls) == (
        IncidentStatus.SUSPECTED, True, a.number, "TX-88", 3)


@pytest.mark.parametrize(("ticket", "joins"), [
    (make("GD20261122-0009", category="power", at=T0 + 30 * M, supply_area="TA-1"), True),
    (make("GD20261122-0009", category="power", at=T0 + 31 * M, supply_area="TA-1"), False),
    (make("GD20261122-0009", category="power", at=T0 + 5 * M, supply_area="TA-2"), False),
    (make("GD20261122-0009", category="water", at=T0 + 5 * M, supply_area="TA-1"), False),
    (make("GD20261122-0009", category="power", type_="complaint", at=T0 + 5 * M, supply_area="TA-1"), False),
    (make("GD20261122-0009", category="power", at=T0 + 5 * M, supply_area=None), False),
])
def test_grouping_window_area_and_category(ticket, joins):
    incident = open_incident("INC-1", calls_in()[0], suspected_asset="TX-88")
    assert (find_incident(ticket, [incident]) is incident) == joins
    if not joins:
        with pytest.raises(ValidationError):
            add_call(incident, ticket)


def test_alarm_on_the_suspected_asset_confirms_and_keeps_absorbing_calls():
    a, b, _ = calls_in()
    incident = add_call(open_incident("INC-1", a, suspected_asset="TX-88"), b)
    alarm = AlarmRef("AL-5", "TX-88", "TA-1", Category.POWER, T0 + 15 * M)
    assert match_alarm(alarm, [incident]) is incident
    assert match_alarm(dataclasses.replace(alarm, asset_id="TX-99"), [incident]) is None
    assert match_alarm(dataclasses.replace(alarm, at=T0 + 2 * H), [incident]) is None
    confirmed = add_alarm(incident, alarm)
    assert (confirmed.status, confirmed.confirmed_at, confirmed.alarm_ids) == (
        IncidentStatus.CONFIRMED, T0 + 15 * M, ("AL-5",))
    assert add_alarm(confirmed, alarm) == confirmed
    late = make("GD20261122-0010", category="power", at=T0 + 2 * H, supply_area="TA-1")
    assert find_incident(late, [confirmed]) is confirmed
    assert find_incident(late, [incident]) is None
    with pytest.raises(ValidationError) as err:
        add_alarm(incident, dataclasses.replace(alarm, asset_id="TX-99"))
    assert err.value.field == "asset_id"


def test_alarm_adopts_asset_when_none_suspected_and_single_confirmed_dispatches_once():
    incident = open_incident("INC-1", calls_in()[0])
    confirmed = add_alarm(incident, AlarmRef("AL-1", "TX-7", "TA-1", Category.POWER, T0))
    assert (confirmed.suspected_asset, decide(confirmed).dispatch_once) == ("TX-7", True)
    with pytest.raises(ValidationError):
        add_alarm(incident, AlarmRef("AL-2", "TX-7", "TA-9", Category.POWER, T0))


def test_resolve_all_resolves_every_open_call_together():
    a, b, c = calls_in()
    incident = add_call(add_call(open_incident("INC-1", a, suspected_asset="TX-88"), b), c)
    dispatcher, crew = Actor("d", Role.DISPATCHER), Actor("c", Role.CREW, "C1")
    a = apply(a, "link_incident", actor=dispatcher, now=T0 + 30 * M, incident_id="INC-1")[0]
    a = apply(a, "dispatch", actor=dispatcher, now=T0 + 31 * M, crew_id="C1")[0]
    a = apply(a, "accept", actor=crew, now=T0 + 32 * M)[0]
    a = apply(a, "arrive", actor=crew, now=T0 + 50 * M)[0]
    c = apply(c, "cancel", actor=dispatcher, now=T0 + 33 * M, reason="来电人撤销")[0]
    resolved, changes = resolve_all(incident, [a, b, c], actor=Actor("sys", Role.SYSTEM), now=T0 + H,
                                    resolution="更换变压器熔丝")
    assert resolved.status is IncidentStatus.RESOLVED and resolved.resolved_at == T0 + H
    assert [(t.number, e.action) for t, e in changes] == [
        (a.number, "resolve_with_incident"), (b.number, "link_incident"), (b.number, "resolve_with_incident")]
    final = {t.number: t for t, _ in changes}
    assert {n: (t.state, t.incident_id, t.resolution) for n, t in final.items()} == {
        a.number: (State.RESOLVED, "INC-1", "更换变压器熔丝"), b.number: (State.RESOLVED, "INC-1", "更换变压器熔丝")}
    assert not decide(resolved).dispatch_once
    with pytest.raises(ValidationError):
        resolve_all(incident, [make("GD20261122-0099")], actor=Actor("sys", Role.SYSTEM), now=T0, resolution="x")
