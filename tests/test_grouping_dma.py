"""A DMA's pressure alarms and its burst are one incident (`command.grouping`, issue #24): a
pressure point measures its DMA, so its alarm's ticket joins a water incident of the same DMA;
alarms first open one DMA-scope incident that the burst call takes over; symptom calls still group
by segment only. Pure: time passed in."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from command.grouping import (
    AlarmRef, add_alarm, add_call, decide, find_incident, group_call, is_symptom_call, match_alarm,
)
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Category, Role

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
M = timedelta(minutes=1)
AGENT = Actor("a", Role.AGENT)
BURST = "路面冒水，水管爆裂"


def ticket(n: int, minute: float, area: str, description: str = "家里停水了", *, channel: str = "phone",
           category: str = "water"):
    fields = {"number": f"GD20261207-{n:04d}", "channel": channel, "category": category, "type": "repair",
              "description": description, "caller_phone": f"1390000{n:04d}", "lon": 119.75, "lat": 36.38,
              "supply_area": area}
    return new_ticket(fields, now=T0 + minute * M, actor=AGENT)[0]


def alarm(n: int, minute: float, area: str):
    """A pressure point's proactive ticket (channel sensor) in the segment of its main."""
    return ticket(n, minute, area, f"管网压力骤降：{n}号压力监测点", channel="sensor")


def run(tickets, dmas):
    """Group the tickets in order (each with its DMA), as TicketManager does: the incidents after."""
    incidents: dict[str, object] = {}
    for k, (t, dma) in enumerate(zip(tickets, dmas), start=1):
        got = group_call(t, list(incidents.values()), new_incident_id=f"INC-{k}", dma=dma)
        incidents[got.incident_id] = got
    return incidents


SIX = [alarm(10 + k, 2 + 0.2 * k, f"SEG00{20 + k}") for k in range(6)]  # 6 points, 6 segments of DMA03


@pytest.mark.parametrize(("name", "tickets", "dmas", "primary", "scope", "supply_area", "members"), [
    # alarms first: one DMA-scope incident led by the first alarm's ticket
    ("alarms only", SIX, ["DMA03"] * 6, SIX[0].number, "dma", "SEG0020", 6),
    # alarms, then the burst call in another segment of the DMA: it takes the primary and narrows the scope
    ("alarms then burst", [*SIX, ticket(1, 5, "SEG0013", BURST)], ["DMA03"] * 7,
     "GD20261207-0001", "area", "SEG0013", 7),
    # the burst call first: the alarms of its DMA join it, the call stays the primary
    ("burst then alarms", [ticket(1, 0, "SEG0013", BURST), *SIX], ["DMA03"] * 7,
     "GD20261207-0001", "area", "SEG0013", 7),
    # a no-water call first (a symptom incident on the burst's segment), then alarms, then the burst
    ("symptom, alarms, burst", [ticket(2, 0, "SEG0013"), *SIX, ticket(1, 5, "SEG0013", BURST)], ["DMA03"] * 8,
     "GD20261207-0001", "area", "SEG0013", 8),
])
def test_a_dmas_alarms_and_its_burst_are_one_incident(name, tickets, dmas, primary, scope, supply_area, members):
    incidents = run(tickets, dmas)
    assert len(incidents) == 1, name
    (incident,) = incidents.values()
    assert (incident.primary, incident.scope, incident.supply_area, len(incident.ticket_numbers)) == (
        primary, scope, supply_area, members)
    assert incident.dma == "DMA03"
    assert decide(incident).dispatch_once and decide(incident).primary == primary
    others = [n for n in incident.ticket_numbers if n != primary]
    assert all(is_symptom_call(n, incident) for n in others)  # no member dispatched by itself


def test_the_alarms_ticket_already_sent_stays_the_primary_when_the_burst_call_joins():
    (incident,) = run([SIX[0], SIX[1]], ["DMA03"] * 2).values()
    burst = ticket(1, 5, "SEG0013", BURST)
    joined = add_call(incident, burst, dma="DMA03", primary_sent=True)  # its crew is on the way: one crew
    assert (joined.primary, joined.onset_ticket, joined.scope, joined.supply_area) == (
        SIX[0].number, SIX[0].number, "area", "SEG0013")
    assert is_symptom_call(burst.number, joined)


def test_narrowing_keeps_the_areas_and_takes_the_bursts_segment():
    incidents = run([SIX[0], ticket(1, 5, "SEG0013", BURST), ticket(3, 9, "SEG0013", "水压很低")],
                    ["DMA03"] * 3)
    (incident,) = incidents.values()
    assert (incident.areas, incident.onset_ticket, incident.onset_at) == (
        ("SEG0020", "SEG0013"), "GD20261207-0001", SIX[0].created_at)
    # the alarms that join later are members: their segments are not the incident's
    later = group_call(SIX[1], [incident], new_incident_id="unused", dma="DMA03")
    assert later.incident_id == incident.incident_id and later.areas == incident.areas
    assert later.primary == "GD20261207-0001"


@pytest.mark.parametrize(("name", "later", "dma", "joins"), [
    ("a no-water call of another segment", ticket(3, 6, "SEG0014"), "DMA03", False),  # never DMA-wide
    ("a low-pressure call of another segment", ticket(3, 6, "SEG0014", "水压低"), "DMA03", False),
    ("a rusty-water call of another segment", ticket(3, 6, "SEG0014", "水发黄"), "DMA03", False),
    ("a symptom call of the alarm's segment", ticket(3, 6, "SEG0020", "停水了"), "DMA03", True),
    ("a burst call of another DMA", ticket(3, 6, "SEG0099", BURST), "DMA04", False),
    ("a burst call of the DMA", ticket(3, 6, "SEG0014", BURST), "DMA03", True),
    ("a burst call more than the window before the onset", ticket(3, 2 - 31, "SEG0014", BURST), "DMA03", False),
    ("a pressure alarm of another DMA", alarm(30, 6, "SEG0099"), "DMA04", False),
    ("a pressure alarm of the DMA", alarm(30, 6, "SEG0099"), "DMA03", True),
    ("a power call", ticket(3, 6, "SEG0014", "停电了", category="power"), "DMA03", False),
])
def test_who_joins_a_dma_scope_incident(name, later, dma, joins):
    (incident,) = run([SIX[0]], ["DMA03"]).values()
    assert (find_incident(later, [incident], dma=dma) is incident) is joins, name


@pytest.mark.parametrize(("name", "minute", "joins"), [
    ("in the window", 20, True),
    ("after the window (no onset)", 31, False),
])
def test_a_pressure_alarm_joins_a_symptom_incident_of_its_dma_in_the_window(name, minute, joins):
    (incident,) = run([ticket(1, 0, "SEG0013")], ["DMA03"]).values()
    later = alarm(30, minute, "SEG0021")
    assert (find_incident(later, [incident], dma="DMA03") is incident) is joins, name


def test_an_alarm_joins_its_own_segments_incident_before_another_of_the_dma():
    older = group_call(ticket(1, 0, "SEG0013", BURST), [], new_incident_id="INC-1", dma="DMA03")
    newer = group_call(ticket(2, 3, "SEG0021"), [older], new_incident_id="INC-2", dma="DMA03")
    assert newer.incident_id == "INC-2"
    assert find_incident(alarm(30, 5, "SEG0021"), [older, newer], dma="DMA03") is newer
    assert find_incident(alarm(31, 5, "SEG0022"), [older, newer], dma="DMA03") is older


def test_a_pressure_alarm_of_the_dma_confirms_the_bursts_incident():
    incident = group_call(ticket(1, 0, "SEG0013", BURST), [], new_incident_id="INC-1", dma="DMA03")
    ref = AlarmRef("P005:low", "WM00088", "SEG0025", Category.WATER, T0 + 2 * M, "DMA03")
    assert match_alarm(ref, [incident]) is incident
    confirmed = add_alarm(incident, ref)
    assert (confirmed.status.value, confirmed.alarm_ids, confirmed.onset_at) == ("confirmed", ("P005:low",), T0)
    second = add_alarm(confirmed, AlarmRef("P006:low", "WM00099", "SEG0026", Category.WATER, T0 + 3 * M, "DMA03"))
    assert second.suspected_asset == confirmed.suspected_asset  # one suspected asset, not the last alarm's main
    assert match_alarm(AlarmRef("P7", "WM1", "SEG0099", Category.WATER, T0, "DMA04"), [incident]) is None


def test_the_burst_takes_over_the_incident_symptom_calls_opened_on_its_segment():
    """Alarms, then a no-water call on the burst's segment (its own incident: a symptom call never
    joins a DMA-wide one), then the burst call, which narrows the alarms' incident to that segment:
    the symptom incident is absorbable and `absorb` merges it (calls, areas, times)."""
    from command.grouping import IncidentStatus, absorb, absorbable

    got = run([*SIX, ticket(2, 4, "SEG0013"), ticket(1, 5, "SEG0013", BURST)], ["DMA03"] * 8)
    alarms, symptom = got["INC-1"], got["INC-7"]
    assert (alarms.supply_area, symptom.supply_area, alarms.dma_wide) == ("SEG0013", "SEG0013", False)
    assert absorbable(alarms, symptom) and not absorbable(symptom, symptom)
    merged, gone = absorb(alarms, symptom, now=T0 + 6 * M)
    assert merged.ticket_numbers == (*alarms.ticket_numbers, "GD20261207-0002")
    assert (merged.primary, merged.supply_area, merged.first_call_at) == ("GD20261207-0001", "SEG0013", alarms.first_call_at)
    assert (gone.status, gone.merged_into, gone.resolved_at) == (IncidentStatus.MERGED, "INC-1", T0 + 6 * M)
    assert not absorbable(merged, gone)  # merged once: no longer open
    wide = run(SIX, ["DMA03"] * 6)["INC-1"]  # still DMA-wide: it covers no segment of its own yet
    assert not absorbable(wide, symptom)
    with pytest.raises(ValueError):
        absorb(wide, symptom, now=T0)
