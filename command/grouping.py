"""Trouble-call grouping (故障研判): many calls, one incident, one dispatch (pure).

Repair calls of one category in the same supply area (a transformer 台区 for power; for water the
valve-isolation segment of the main serving the call, `gis.network`, or the DMA when no main is
near) within `window` (30 min) of the incident's first call are grouped into one incident with
the suspected asset (the area's transformer, ...; found by GIS and passed in). A power call in
another 台区 of the same feeder as an open incident within the window joins it: the incident's
scope becomes the feeder (`areas` lists its 台区, `suspected_asset` is the feeder).

DMA. A water incident records its DMA. A pressure point measures its DMA, so a pressure alarm's
ticket joins an unresolved water incident of the same DMA in its time (a member that confirms
it); without one it opens a DMA-scope incident (scope ``dma``), which a burst call of that DMA
joins, taking the primary and narrowing it to the burst's segment. Symptom calls (停水, 水压低,
水发黄) group by segment only, never DMA-wide.

Time: an incident has an onset, the earliest of a sensor alarm on it and of its onset tickets (a
proactive sensor ticket, or a call reporting the failure itself: `ONSET_WORDS`, e.g. 爆管, 冒水).
Once it has one it takes the calls made from `window` before the onset on, whatever their time
while it is unresolved; an onset ticket joins an incident only when all its calls are within the
window before it (else it opens its own). The primary (the ticket the crew is sent on) is the
first onset ticket, else the first call: when an onset ticket joins, the primary moves to it once
(the caller audits the move). A sensor alarm on the asset confirms the incident. One crew is sent
for a dispatch-once incident, on its primary only (`check_dispatch`), and all its calls are
resolved together.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from command.errors import CommandError, ValidationError
from command.tickets import apply
from command.ticket_model import OPEN_STATES, State, Actor, AuditEvent, Category, Channel, Ticket, TicketType, as_utc

DEFAULT_WINDOW = timedelta(minutes=30)
# words of a call that reports the failure itself (the onset), not a symptom of it (停水, 水压低, 水发黄)
ONSET_WORDS: dict[Category, tuple[str, ...]] = {
    Category.WATER: ("爆管", "水管爆", "管子爆", "管道爆", "水管裂", "管道破裂", "爆裂", "冒水", "喷水", "涌水", "水柱"),
}
_NEGATIONS = ("没有", "没", "不是", "未", "无")  # just before an onset word: 没有冒水 is no onset


class IncidentStatus(str, enum.Enum):
    """single (one call so far), suspected (several calls), confirmed (an alarm on the asset),
    resolved, merged (its calls taken over by another incident: `absorb`)."""

    SINGLE = "single"
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"
    RESOLVED = "resolved"
    MERGED = "merged"


@dataclass(frozen=True)
class AlarmRef:
    """What grouping needs of a sensor alarm: its id, the asset, the supply area and the time."""

    alarm_id: str
    asset_id: str
    supply_area: str
    category: Category
    at: datetime
    dma: str | None = None  # water: the DMA of the sensor (a pressure point measures its DMA)


@dataclass(frozen=True)
class Incident:
    """A group of calls about one fault in one supply area, with its suspected asset."""

    incident_id: str
    category: Category
    supply_area: str
    suspected_asset: str | None
    primary: str  # the ticket the crew is dispatched on
    ticket_numbers: tuple[str, ...]
    first_call_at: datetime
    last_call_at: datetime
    alarm_ids: tuple[str, ...] = ()
    confirmed_at: datetime | None = None
    resolved_at: datetime | None = None
    areas: tuple[str, ...] = ()  # the supply areas of its calls (several 台区: a feeder incident)
    feeder: str | None = None  # power: the 10 kV feeder of its first call's 台区
    onset_at: datetime | None = None  # the earliest alarm or onset ticket
    onset_ticket: str | None = None  # its first onset ticket (the primary from then on)
    # 预计恢复时间 (command.outages.set_etr): the estimated restoration time, its note, who set it and when
    etr: datetime | None = None
    etr_note: str = ""
    etr_by: str | None = None
    etr_set_at: datetime | None = None
    dma: str | None = None  # water: the DMA of its first call (a pressure alarm there joins it)
    dma_wide: bool = False  # water: opened or led by a pressure alarm, no burst call yet (scope ``dma``)
    merged_into: str | None = None  # the incident that took its calls over (`absorb`; resolved_at: when)

    @property
    def status(self) -> IncidentStatus:
        """The incident's status, derived from its calls, alarms and resolution."""
        if self.merged_into is not None:
            return IncidentStatus.MERGED
        if self.resolved_at is not None:
            return IncidentStatus.RESOLVED
        if self.confirmed_at is not None:
            return IncidentStatus.CONFIRMED
        return IncidentStatus.SUSPECTED if len(self.ticket_numbers) > 1 else IncidentStatus.SINGLE

    @property
    def scope(self) -> str:
        """``dma`` while a pressure alarm's ticket is its primary (no burst call yet), ``feeder``
        once calls of several 台区 of one feeder joined it, else ``area``."""
        if self.dma_wide:
            return "dma"
        return "feeder" if self.feeder is not None and len(self.areas) > 1 else "area"

    def covers(self, area: str | None) -> bool:
        """Whether a supply area is one of the incident's."""
        return area is not None and (area == self.supply_area or area in self.areas)


@dataclass(frozen=True)
class Decision:
    """What to do with an incident: dispatch once on `primary` (or each call on its own)."""

    status: IncidentStatus
    dispatch_once: bool
    primary: str
    suspected_asset: str | None
    calls: int


def groupable(ticket: Ticket) -> bool:
    """Only open repair tickets with a supply area take part in grouping."""
    return ticket.type is TicketType.REPAIR and ticket.supply_area is not None and ticket.state in OPEN_STATES


def is_onset(ticket: Ticket) -> bool:
    """Whether a ticket marks an incident's onset: a proactive sensor ticket, or a call whose
    description reports the failure itself (`ONSET_WORDS` of its category, not just after a negation)."""
    return ticket.channel is Channel.SENSOR or reports_onset(ticket.category, ticket.description)


def reports_onset(category: Category, text: str) -> bool:
    """Whether a caller's words report the failure itself (`ONSET_WORDS` of the category, not just
    after a negation): 路面冒水了 does, 没有冒水 does not."""
    for word in ONSET_WORDS.get(category, ()):
        start = text.find(word)
        while start >= 0:
            if not any(text[:start].endswith(n) for n in _NEGATIONS):
                return True
            start = text.find(word, start + 1)
    return False


def is_pressure_alarm(ticket: Ticket) -> bool:
    """A water sensor's proactive ticket (a pressure drop: the only water alarm that opens one)."""
    return ticket.channel is Channel.SENSOR and ticket.category is Category.WATER


def is_burst_call(ticket: Ticket) -> bool:
    """A call reporting the failure itself (an onset ticket that is not a sensor's)."""
    return ticket.channel is not Channel.SENSOR and is_onset(ticket)


def _dma_join(incident: Incident, ticket: Ticket, dma: str | None) -> bool:
    """Whether the ticket joins the water incident by its DMA rather than by its segment: a
    pressure alarm's ticket joins any water incident of its DMA, a burst call a DMA-scope one."""
    if dma is None or incident.dma != dma or incident.category is not Category.WATER:
        return False
    return is_pressure_alarm(ticket) or (incident.dma_wide and is_burst_call(ticket))


def _in_time(incident: Incident, at: datetime, window: timedelta) -> bool:
    """A call at `at` is in the incident's time: from `window` before its onset (or confirmation)
    on, or without one within `window` after its first call."""
    anchor = incident.onset_at or incident.confirmed_at
    if anchor is not None:
        return at >= anchor - window
    return timedelta(0) <= at - incident.first_call_at <= window


def _accepts(incident: Incident, ticket: Ticket, feeder: str | None, window: timedelta,
             dma: str | None = None) -> bool:
    if incident.resolved_at is not None or incident.category is not ticket.category:
        return False
    if not (incident.covers(ticket.supply_area) or (feeder is not None and incident.feeder == feeder)
            or _dma_join(incident, ticket, dma)):
        return False
    return _in_time(incident, ticket.created_at, window)


def find_incident(ticket: Ticket, incidents: Sequence[Incident], *, window: timedelta = DEFAULT_WINDOW,
                  feeder: str | None = None, dma: str | None = None) -> Incident | None:
    """The open incident this ticket's call belongs to, or None (then it opens its own): one of
    its supply area first, else one of its `feeder` (power) or, for a pressure alarm's ticket, of
    its `dma` (water), the earliest of them; a burst call takes a DMA-scope incident of its `dma`
    (opened by pressure alarms) as readily as one of its segment, the earliest."""
    if not groupable(ticket):
        return None
    for incident in incidents:
        if ticket.number in incident.ticket_numbers:
            return incident
    matches = [i for i in incidents if _accepts(i, ticket, feeder, window, dma)]

    def rank(i: Incident) -> tuple[bool, datetime, str]:
        near = i.covers(ticket.supply_area) or (i.dma_wide and is_burst_call(ticket))
        return not near, i.first_call_at, i.incident_id
    return min(matches, key=rank, default=None)


def open_incident(incident_id: str, ticket: Ticket, *, suspected_asset: str | None = None,
                  feeder: str | None = None, dma: str | None = None) -> Incident:
    """A new incident whose first call (and primary ticket) is `ticket`; an onset ticket sets its
    onset; a water incident records its `dma`, and a pressure alarm's ticket opens it DMA-wide."""
    if not groupable(ticket):
        raise ValidationError("ticket", f"ticket {ticket.number} is not an open repair ticket with a supply area")
    onset = is_onset(ticket)
    return Incident(incident_id, ticket.category, ticket.supply_area or "", suspected_asset, ticket.number,
                    (ticket.number,), ticket.created_at, ticket.created_at, areas=(ticket.supply_area or "",),
                    feeder=feeder, onset_at=ticket.created_at if onset else None,
                    onset_ticket=ticket.number if onset else None,
                    dma=dma if ticket.category is Category.WATER else None,
                    dma_wide=dma is not None and is_pressure_alarm(ticket))


def add_call(incident: Incident, ticket: Ticket, *, window: timedelta = DEFAULT_WINDOW,
             feeder: str | None = None, dma: str | None = None, primary_sent: bool = False) -> Incident:
    """The incident with one more call; ValidationError when the call does not belong to it. A
    call of another 台区 of the incident's feeder makes it a feeder incident; the first onset
    ticket becomes the primary (`primary` changes: the caller audits it). A pressure alarm's
    ticket of the incident's `dma` is a member (its segment is not added to `areas`); the first one
    to become the primary makes the incident DMA-wide, and the burst call that joins it then takes
    the primary and narrows it to its segment (`supply_area`; `areas` keeps what it had), unless
    the alarm's ticket already has a crew (`primary_sent`: that crew stays the incident's one; so
    does any primary with a crew, or done, when the first onset ticket joins)."""
    if ticket.number in incident.ticket_numbers:
        return incident
    if not groupable(ticket) or not _accepts(incident, ticket, feeder, window, dma):
        raise ValidationError("ticket", f"ticket {ticket.number} does not belong to incident {incident.incident_id}")
    areas = incident.areas or (incident.supply_area,)
    changes: dict[str, Any] = {"ticket_numbers": (*incident.ticket_numbers, ticket.number),
                               "last_call_at": max(incident.last_call_at, ticket.created_at)}
    by_dma = not incident.covers(ticket.supply_area) and _dma_join(incident, ticket, dma)
    if incident.dma_wide and is_burst_call(ticket):  # the burst found: the scope narrows, the primary moves
        changes.update(dma_wide=False, supply_area=ticket.supply_area or incident.supply_area)
        if not primary_sent:
            changes.update(primary=ticket.number, onset_ticket=ticket.number)
        by_dma = False
    if ticket.supply_area not in areas and not by_dma:
        changes["areas"] = (*areas, ticket.supply_area)
        if incident.feeder is not None:
            changes["suspected_asset"] = incident.feeder  # several 台区 out: the feeder is suspected
    if is_onset(ticket):
        at = ticket.created_at
        changes["onset_at"] = at if incident.onset_at is None else min(incident.onset_at, at)
        if incident.onset_ticket is None:
            changes["onset_ticket"] = ticket.number
            if not primary_sent:  # a primary with a crew (or done) stays the incident's one
                changes["primary"] = ticket.number
            if is_pressure_alarm(ticket) and incident.dma is not None:
                changes["dma_wide"] = True  # a pressure drop is DMA-wide until a burst call places it
    return dataclasses.replace(incident, **changes)


def group_call(ticket: Ticket, incidents: Sequence[Incident], *, new_incident_id: str,
               suspected_asset: str | None = None, window: timedelta = DEFAULT_WINDOW,
               feeder: str | None = None, dma: str | None = None) -> Incident:
    """The incident after this call: an existing one joined, or a new one opened with `new_incident_id`."""
    incident = find_incident(ticket, incidents, window=window, feeder=feeder, dma=dma)
    if incident is None:
        return open_incident(new_incident_id, ticket, suspected_asset=suspected_asset, feeder=feeder, dma=dma)
    return add_call(incident, ticket, window=window, feeder=feeder, dma=dma)


def _alarm_fits(incident: Incident, alarm: AlarmRef) -> bool:
    """Same asset, or same area when no asset is suspected, or a 台区 of a feeder incident, or
    (water) the incident's DMA."""
    if incident.scope == "feeder" and incident.covers(alarm.supply_area):
        return True
    if _dma_alarm(incident, alarm):
        return True
    if incident.suspected_asset:
        return incident.suspected_asset == alarm.asset_id
    return incident.covers(alarm.supply_area)


def _dma_alarm(incident: Incident, alarm: AlarmRef) -> bool:
    """A water alarm in the incident's DMA (a pressure point measures its DMA)."""
    return alarm.category is Category.WATER and alarm.dma is not None and incident.dma == alarm.dma


def match_alarm(alarm: AlarmRef, incidents: Sequence[Incident], *,
                window: timedelta = DEFAULT_WINDOW) -> Incident | None:
    """The open incident an alarm confirms: same asset (or same area when no asset is suspected,
    or one of a feeder incident's 台区), raised within `window` of the incident's first call
    (before or after)."""
    for incident in sorted(incidents, key=lambda i: i.first_call_at):
        if incident.resolved_at is not None or incident.category is not alarm.category:
            continue
        if _alarm_fits(incident, alarm) and abs(as_utc(alarm.at, "at") - incident.first_call_at) <= window:
            return incident
    return None


def add_alarm(incident: Incident, alarm: AlarmRef) -> Incident:
    """The incident confirmed by a sensor alarm on its suspected asset (adopting the asset if none;
    a feeder incident keeps the feeder); the alarm's time is an onset."""
    if not _alarm_fits(incident, alarm):
        if incident.suspected_asset:
            raise ValidationError("asset_id", f"alarm is on {alarm.asset_id}, incident suspects {incident.suspected_asset}")
        raise ValidationError("supply_area", f"alarm is in {alarm.supply_area}, incident in {incident.supply_area}")
    if alarm.alarm_id in incident.alarm_ids:
        return incident
    at = as_utc(alarm.at, "at")
    keep = incident.scope == "feeder" or (_dma_alarm(incident, alarm) and incident.suspected_asset)
    return dataclasses.replace(
        incident, suspected_asset=incident.suspected_asset if keep else alarm.asset_id,
        alarm_ids=(*incident.alarm_ids, alarm.alarm_id),
        confirmed_at=at if incident.confirmed_at is None else min(incident.confirmed_at, at),
        onset_at=at if incident.onset_at is None else min(incident.onset_at, at))


def decide(incident: Incident, *, min_calls: int = 2) -> Decision:
    """Dispatch once for the incident when it is confirmed or has at least `min_calls` calls."""
    status = incident.status
    once = status is IncidentStatus.CONFIRMED or (status is not IncidentStatus.RESOLVED
                                                  and len(incident.ticket_numbers) >= min_calls)
    return Decision(status, once, incident.primary, incident.suspected_asset, len(incident.ticket_numbers))


class NotThePrimary(CommandError):
    """A crew for a symptom call of a dispatch-once incident (HTTP 409 ``incident_not_primary``):
    only the incident's primary goes to a crew."""

    status = 409
    code = "incident_not_primary"

    def __init__(self, number: str, incident_id: str, primary: str) -> None:
        super().__init__(f"工单 {number} 属于故障事件 {incident_id}，只派主工单 {primary}（请对主工单派单）",
                         number=number, incident_id=incident_id, primary=primary)


def is_symptom_call(number: str, incident: Incident) -> bool:
    """A call of an unresolved dispatch-once incident that is not its primary: never dispatched by itself."""
    return (incident.resolved_at is None and number in incident.ticket_numbers and number != incident.primary
            and decide(incident).dispatch_once)


def check_dispatch(ticket: Ticket, incident: Incident | None) -> None:
    """NotThePrimary when a crew would be sent to a symptom call of a dispatch-once incident."""
    if incident is not None and is_symptom_call(ticket.number, incident):
        raise NotThePrimary(ticket.number, incident.incident_id, incident.primary)


def absorbable(into: Incident, other: Incident) -> bool:
    """Whether `other`, an incident of one supply area, is the same fault as `into` now that `into`
    covers that area: a DMA's pressure drop placed on a segment by its burst call (`add_call`
    narrows it) where symptom calls made before the burst call, which never join a DMA-wide
    incident, opened an incident of their own. Both unresolved, of one category, neither DMA-wide.
    (Whether one of `other`'s calls already has a crew is the caller's to check: then it stays.)"""
    return (other.incident_id != into.incident_id and other.category is into.category
            and into.resolved_at is None and other.resolved_at is None
            and not into.dma_wide and not other.dma_wide and into.covers(other.supply_area))


def absorb(into: Incident, other: Incident, *, now: datetime) -> tuple[Incident, Incident]:
    """`into` with `other`'s calls, alarms and areas (its own primary stays the incident's), and
    `other` merged into it at `now` (status merged, no longer open). ValidationError unless
    `absorbable`."""
    if not absorbable(into, other):
        raise ValidationError("incident", f"incident {other.incident_id} cannot be merged into {into.incident_id}")
    areas = into.areas or (into.supply_area,)
    onsets = [t for t in (into.onset_at, other.onset_at) if t is not None]
    confirmed = [t for t in (into.confirmed_at, other.confirmed_at) if t is not None]
    merged = dataclasses.replace(
        into, ticket_numbers=(*into.ticket_numbers, *(n for n in other.ticket_numbers if n not in into.ticket_numbers)),
        alarm_ids=(*into.alarm_ids, *(a for a in other.alarm_ids if a not in into.alarm_ids)),
        areas=(*areas, *(a for a in (other.areas or (other.supply_area,)) if a not in areas)),
        first_call_at=min(into.first_call_at, other.first_call_at), last_call_at=max(into.last_call_at, other.last_call_at),
        onset_at=min(onsets) if onsets else None, confirmed_at=min(confirmed) if confirmed else None,
        suspected_asset=into.suspected_asset or other.suspected_asset)
    return merged, dataclasses.replace(other, resolved_at=now, merged_into=into.incident_id)


def promote_primary(incident: Incident, tickets: Sequence[Ticket]) -> Incident:
    """The incident with a new primary when its primary was cancelled or merged (its calls would
    otherwise wait for a crew that never comes): the first open onset ticket of its calls, else its
    first open call; unchanged when the primary is not gone, the incident is resolved or no call is open."""
    by_number = {t.number: t for t in tickets}
    gone = by_number.get(incident.primary)
    if incident.resolved_at is not None or gone is None or gone.state not in (State.CANCELLED, State.MERGED):
        return incident
    waiting = OPEN_STATES - {State.RESOLVED, State.CALLBACK}  # still needing the crew
    calls = [by_number[n] for n in incident.ticket_numbers if n in by_number and by_number[n].state in waiting]
    if not calls:
        return incident
    chosen = next((t for t in calls if is_onset(t)), calls[0])
    return dataclasses.replace(incident, primary=chosen.number, onset_ticket=chosen.number if is_onset(chosen) else None)


def link(ticket: Ticket, incident: Incident, *, actor: Actor, now: datetime) -> tuple[Ticket, AuditEvent]:
    """Mark the ticket as a call of the incident (audited)."""
    return apply(ticket, "link_incident", actor=actor, now=now, incident_id=incident.incident_id,
                 note=f"归入故障事件 {incident.incident_id}")


def resolve_all(incident: Incident, tickets: Sequence[Ticket], *, actor: Actor, now: datetime,
                resolution: str) -> tuple[Incident, list[tuple[Ticket, AuditEvent]]]:
    """Resolve every still-open call of the incident together; already resolved, closed, cancelled
    or merged calls are left alone. The actor is a dispatcher, supervisor or the system."""
    now = as_utc(now, "now")
    done = (State.RESOLVED, State.CALLBACK, State.CLOSED, State.CANCELLED, State.MERGED)
    changes = []
    for ticket in tickets:
        if ticket.number not in incident.ticket_numbers:
            raise ValidationError("tickets", f"ticket {ticket.number} is not a call of {incident.incident_id}")
        if ticket.state in done:
            continue
        if ticket.incident_id != incident.incident_id:
            ticket, event = link(ticket, incident, actor=actor, now=now)
            changes.append((ticket, event))
        changes.append(apply(ticket, "resolve_with_incident", actor=actor, now=now, resolution=resolution))
    return dataclasses.replace(incident, resolved_at=now), changes


def attach_call(incident: Incident, ticket: Ticket) -> Incident:
    """The incident with a call the agent attached to it by hand (the desk's 归入事件): the incident
    must be unresolved and of the call's category and the call open; unlike `add_call` neither the
    supply area nor the time window is asked (the agent saw the caller is inside or near it)."""
    if incident.resolved_at is not None:
        raise ValidationError("incident_id", f"incident {incident.incident_id} is resolved")
    if incident.category is not ticket.category:
        raise ValidationError("incident_id", f"incident {incident.incident_id} is about {incident.category.value}, "
                                             f"the call about {ticket.category.value}")
    if ticket.state not in OPEN_STATES:
        raise ValidationError("incident_id", f"ticket {ticket.number} is not open")
    if ticket.number in incident.ticket_numbers:
        return incident
    return dataclasses.replace(incident, ticket_numbers=(*incident.ticket_numbers, ticket.number),
                               last_call_at=max(incident.last_call_at, ticket.created_at))
