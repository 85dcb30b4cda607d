"""Incidents by network and time (`command.grouping`): the supply area (a water segment, a 台区),
the feeder, the onset and the primary, and who may get a crew. Pure: time passed in."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from command.errors import ValidationError
from command.grouping import (
    AlarmRef, NotThePrimary, add_alarm, add_call, check_dispatch, decide, find_incident, group_call, is_onset,
    is_symptom_call, match_alarm, open_incident, promote_primary,
)
from command.tickets import apply
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Category, Role

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
M = timedelta(minutes=1)
AGENT = Actor("a", Role.AGENT)


def call(n: int, minute: float, *, area="SEG0013", category="water", description="家里停水了", channel="phone"):
    fields = {"number": f"GD20261207-{n:04d}", "channel": channel, "category": category, "type": "repair",
              "description": description, "caller_phone": f"1390000{n:04d}", "lon": 119.75, "lat": 36.38,
              "supply_area": area}
    return new_ticket(fields, now=T0 + minute * M, actor=AGENT)[0]


@pytest.mark.parametrize(("description", "channel", "onset"), [
    ("路面冒水了，水管爆裂，马路上全是积水", "phone", True),
    ("供水管爆了，道路被淹", "phone", True),  # the main_burst scenario's two burst descriptions
    ("小区门口水管爆了", "phone", True),
    ("楼下爆管了，喷水很高", "phone", True),
    ("地面在涌水", "phone", True),
    ("没有冒水，就是水压很低", "phone", False),  # negated
    ("不是爆管，水发黄", "phone", False),
    ("水龙头出水发黄", "phone", False),
    ("家里停水了", "phone", False),
    ("管网压力骤降：1号压力监测点", "sensor", True),  # a proactive sensor ticket
])
def test_onset_tickets(description, channel, onset):
    assert is_onset(call(1, 0, description=description, channel=channel)) is onset


def test_onset_words_are_only_water_words():
    assert not is_onset(call(1, 0, category="power", area="TA0001", description="变压器那边冒水"))


@pytest.mark.parametrize(("ticket", "joins"), [
    (call(2, 10, area="SEG0013"), True),  # same segment, in the window
    (call(2, 10, area="SEG0014"), False),  # the next segment of the same DMA
    (call(2, 10, area="DMA03"), False),  # a call with no main near (the DMA fallback) is not the segment's
    (call(2, 31, area="SEG0013"), False),  # after the window, no onset
])
def test_water_calls_group_by_segment(ticket, joins):
    incident = open_incident("INC-1", call(1, 0))
    assert (find_incident(ticket, [incident]) is incident) is joins


def test_rusty_water_before_a_burst_hands_the_primary_to_the_burst():
    rusty = call(1, 0, description="水龙头出水发黄")
    incident = open_incident("INC-1", rusty)
    assert (incident.primary, incident.onset_at, incident.onset_ticket) == (rusty.number, None, None)
    burst = call(2, 20, description="路面冒水，水管爆裂")
    joined = group_call(burst, [incident], new_incident_id="unused")
    assert (joined.incident_id, joined.primary, joined.onset_ticket, joined.onset_at) == (
        "INC-1", burst.number, burst.number, T0 + 20 * M)
    # a second burst report does not move it again; the onset is the earliest
    again = add_call(joined, call(3, 25, description="这边也在喷水"))
    assert (again.primary, again.onset_ticket, again.onset_at) == (burst.number, burst.number, T0 + 20 * M)
    # after the onset the incident takes the calls of its segment whatever their time
    late = add_call(again, call(4, 240, description="水压很低"))
    assert late.ticket_numbers[-1] == "GD20261207-0004" and late.primary == burst.number
    assert decide(late).dispatch_once and decide(late).primary == burst.number


def test_a_primary_that_already_has_a_crew_keeps_the_incident_when_the_burst_report_comes():
    first = call(1, 0, description="家里停水了")
    incident = add_call(open_incident("INC-1", first), call(2, 5))
    burst = call(3, 10, description="路面冒水，水管爆裂")
    kept = add_call(incident, burst, primary_sent=True)  # the first call's crew is on its way
    assert (kept.primary, kept.onset_ticket, kept.onset_at) == (first.number, burst.number, T0 + 10 * M)
    assert add_call(incident, burst).primary == burst.number  # no crew yet: the burst report takes it


def test_a_call_more_than_the_window_before_the_onset_stays_out():
    old = open_incident("INC-1", call(1, 0, description="水发黄"))
    old = add_call(old, call(2, 25, description="水压低"))
    burst = call(3, 40, description="水管爆了，冒水")  # 40 min after the incident's first call
    assert find_incident(burst, [old]) is None  # opens its own, with the burst as primary
    own = group_call(burst, [old], new_incident_id="INC-2")
    assert (own.incident_id, own.primary, own.onset_at) == ("INC-2", burst.number, T0 + 40 * M)
    # calls from 30 minutes before the onset on join it; earlier calls do not
    assert find_incident(call(4, 45), [own]) is own
    assert not add_call(own, call(5, 45)).resolved_at
    with pytest.raises(ValidationError):
        add_call(own, call(6, 9))  # made 31 minutes before the onset (a late-saved call)


def test_an_alarm_sets_the_onset_and_confirms():
    incident = open_incident("INC-1", call(1, 0, description="停水"))
    alarm = AlarmRef("AL-1", "WM00014", "SEG0013", Category.WATER, T0 - 5 * M)
    assert match_alarm(alarm, [incident]) is incident
    confirmed = add_alarm(incident, alarm)
    assert (confirmed.onset_at, confirmed.confirmed_at, confirmed.suspected_asset) == (T0 - 5 * M, T0 - 5 * M, "WM00014")
    with pytest.raises(ValidationError):
        add_alarm(incident, dataclasses.replace(alarm, supply_area="SEG0014"))


def power(n: int, minute: float, area: str):
    return call(n, minute, area=area, category="power", description="停电了")


def test_power_calls_of_two_areas_of_one_feeder_form_one_feeder_incident():
    first = open_incident("INC-1", power(1, 0, "TA0001"), suspected_asset="T0001", feeder="10kV城区1线")
    assert (first.scope, first.areas, first.feeder) == ("area", ("TA0001",), "10kV城区1线")
    other = power(2, 10, "TA0002")
    assert find_incident(other, [first]) is None  # another 台区 and no feeder given
    assert find_incident(other, [first], feeder="10kV城区2线") is None  # another feeder
    joined = add_call(first, other, feeder="10kV城区1线")
    assert (joined.scope, joined.areas, joined.suspected_asset) == ("feeder", ("TA0001", "TA0002"), "10kV城区1线")
    # a later call of either 台区 finds it by its area
    assert find_incident(power(3, 20, "TA0002"), [joined]) is joined
    assert find_incident(power(4, 45, "TA0002"), [joined], feeder="10kV城区1线") is None  # out of the window
    # a zero-load alarm of the second 台区's transformer confirms the feeder incident, keeping the feeder
    confirmed = add_alarm(joined, AlarmRef("AL-9", "T0002", "TA0002", Category.POWER, T0 + 12 * M))
    assert (confirmed.status.value, confirmed.suspected_asset) == ("confirmed", "10kV城区1线")


def test_an_area_incident_is_preferred_to_a_feeder_one():
    feeder_incident = open_incident("INC-1", power(1, 0, "TA0001"), feeder="F1")
    own = open_incident("INC-2", power(2, 5, "TA0002"), feeder="F1")
    assert find_incident(power(3, 10, "TA0002"), [feeder_incident, own], feeder="F1") is own


def test_only_the_primary_of_a_dispatch_once_incident_gets_a_crew():
    rusty, burst, low = call(1, 0, description="水发黄"), call(2, 5, description="爆管了"), call(3, 6, description="水压很低")
    single = open_incident("INC-1", rusty)
    check_dispatch(rusty, single)  # a single call goes by itself
    incident = add_call(add_call(single, burst), low)
    assert [is_symptom_call(t.number, incident) for t in (rusty, burst, low)] == [True, False, True]
    check_dispatch(burst, incident)
    check_dispatch(low, None)
    with pytest.raises(NotThePrimary) as refused:
        check_dispatch(low, incident)
    assert refused.value.code == "incident_not_primary"
    assert refused.value.details == {"number": low.number, "incident_id": "INC-1", "primary": burst.number}
    resolved = dataclasses.replace(incident, resolved_at=T0 + 60 * M)
    check_dispatch(low, resolved)


DISPATCHER = Actor("d", Role.DISPATCHER)


def test_a_cancelled_or_merged_primary_hands_over_to_the_next_open_call():
    burst, low, rusty = call(1, 0, description="爆管了"), call(2, 3, description="水压很低"), call(3, 4, description="水发黄")
    incident = add_call(add_call(open_incident("INC-1", burst), low), rusty)
    assert promote_primary(incident, [burst, low, rusty]) == incident  # the primary is still open
    cancelled = apply(burst, "cancel", actor=DISPATCHER, now=T0 + 5 * M, reason="误报")[0]
    promoted = promote_primary(incident, [cancelled, low, rusty])
    assert (promoted.primary, promoted.onset_ticket, promoted.onset_at) == (low.number, None, T0)
    # an open onset ticket is preferred to an earlier symptom call; a merged primary counts as gone
    second_burst = call(4, 6, description="路面冒水")
    incident = add_call(incident, second_burst)
    merged = apply(burst, "merge", actor=DISPATCHER, now=T0 + 7 * M, into=low.number)[0]
    assert promote_primary(incident, [merged, low, rusty, second_burst]).primary == second_burst.number
    # nothing open, or the incident resolved: unchanged
    gone = [apply(t, "cancel", actor=DISPATCHER, now=T0 + 8 * M, reason="撤单")[0] for t in (low, rusty, second_burst)]
    assert promote_primary(incident, [cancelled, *gone]) == incident
    resolved = dataclasses.replace(incident, resolved_at=T0 + 9 * M)
    assert promote_primary(resolved, [cancelled, low, rusty]) == resolved
