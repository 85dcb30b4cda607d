"""Trouble-call grouping (故障研判): many calls, one incident, one dispatch (pure).

Repair calls of one category in the same supply area (a transformer area for power, a water DMA
for water) within `window` (30 min) of the incident's first call are grouped into one incident
with the suspected asset (the area's transformer, valve, ...; found by GIS and passed in). A
sensor alarm on that asset confirms the incident; a confirmed, unresolved incident keeps absorbing
calls from its area whatever their time. One crew is sent for the incident (its primary ticket)
and all its calls are resolved together.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from command.errors import ValidationError
from command.tickets import (
    OPEN_STATES, State, Actor, AuditEvent, Category, Ticket, TicketType, apply, as_utc,
)

DEFAULT_WINDOW = timedelta(minutes=30)


class IncidentStatus(str, enum.Enum):
    """single (one call so far), suspected (several calls), confirmed (an alarm on the asset), resolved."""

    SINGLE = "single"
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlarmRef:
    """What grouping needs of a sensor alarm: its id, the asset, the supply area and the time."""

    alarm_id: str
    asset_id: str
    supply_area: str
    category: Category
    at: datetime


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
    # 预计恢复时间 (command.outages.set_etr): the estimated restoration time, its note, who set it and when
    etr: datetime | None = None
    etr_note: str = ""
    etr_by: str | None = None
    etr_set_at: datetime | None = None

    @property
    def status(self) -> IncidentStatus:
        """The incident's status, derived from its calls, alarms and resolution."""
        if self.resolved_at is not None:
            return IncidentStatus.RESOLVED
        if self.confirmed_at is not None:
            return IncidentStatus.CONFIRMED
        return IncidentStatus.SUSPECTED if len(self.ticket_numbers) > 1 else IncidentStatus.SINGLE


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


def _accepts(incident: Incident, category: Category, supply_area: str, at: datetime, window: timedelta) -> bool:
    if incident.resolved_at is not None or incident.category is not category:
        return False
    if incident.supply_area != supply_area:
        return False
    return incident.confirmed_at is not None or timedelta(0) <= at - incident.first_call_at <= window


def find_incident(ticket: Ticket, incidents: Sequence[Incident], *,
                  window: timedelta = DEFAULT_WINDOW) -> Incident | None:
    """The open incident this ticket's call belongs to, or None (then it opens its own)."""
    if not groupable(ticket):
        return None
    for incident in incidents:
        if ticket.number in incident.ticket_numbers:
            return incident
    matches = [i for i in incidents if _accepts(i, ticket.category, ticket.supply_area or "",
                                                ticket.created_at, window)]
    return min(matches, key=lambda i: i.first_call_at, default=None)


def open_incident(incident_id: str, ticket: Ticket, *, suspected_asset: str | None = None) -> Incident:
    """A new incident whose first call (and primary ticket) is `ticket`."""
    if not groupable(ticket):
        raise ValidationError("ticket", f"ticket {ticket.number} is not an open repair ticket with a supply area")
    return Incident(incident_id, ticket.category, ticket.supply_area or "", suspected_asset, ticket.number,
                    (ticket.number,), ticket.created_at, ticket.created_at)


def add_call(incident: Incident, ticket: Ticket, *, window: timedelta = DEFAULT_WINDOW) -> Incident:
    """The incident with one more call; ValidationError when the call does not belong to it."""
    if ticket.number in incident.ticket_numbers:
        return incident
    if not groupable(ticket) or not _accepts(incident, ticket.category, ticket.supply_area or "",
                                             ticket.created_at, window):
        raise ValidationError("ticket", f"ticket {ticket.number} does not belong to incident {incident.incident_id}")
    return dataclasses.replace(incident, ticket_numbers=(*incident.ticket_numbers, ticket.number),
                               last_call_at=max(incident.last_call_at, ticket.created_at))


def group_call(ticket: Ticket, incidents: Sequence[Incident], *, new_incident_id: str,
               suspected_asset: str | None = None, window: timedelta = DEFAULT_WINDOW) -> Incident:
    """The incident after this call: an existing one joined, or a new one opened with `new_incident_id`."""
    incident = find_incident(ticket, incidents, window=window)
    if incident is None:
        return open_incident(new_incident_id, ticket, suspected_asset=suspected_asset)
    return add_call(incident, ticket, window=window)


def match_alarm(alarm: AlarmRef, incidents: Sequence[Incident], *,
                window: timedelta = DEFAULT_WINDOW) -> Incident | None:
    """The open incident an alarm confirms: same asset (or same area when no asset is suspected),
    raised within `window` of the incident's first call (before or after)."""
    for incident in sorted(incidents, key=lambda i: i.first_call_at):
        if incident.resolved_at is not None or incident.category is not alarm.category:
            continue
        same = (incident.suspected_asset == alarm.asset_id if incident.suspected_asset
                else incident.supply_area == alarm.supply_area)
        if same and abs(as_utc(alarm.at, "at") - incident.first_call_at) <= window:
            return incident
    return None


def add_alarm(incident: Incident, alarm: AlarmRef) -> Incident:
    """The incident confirmed by a sensor alarm on its suspected asset (adopting the asset if none)."""
    if incident.suspected_asset not in (None, alarm.asset_id):
        raise ValidationError("asset_id", f"alarm is on {alarm.asset_id}, incident suspects {incident.suspected_asset}")
    if incident.suspected_asset is None and alarm.supply_area != incident.supply_area:
        raise ValidationError("supply_area", f"alarm is in {alarm.supply_area}, incident in {incident.supply_area}")
    if alarm.alarm_id in incident.alarm_ids:
        return incident
    at = as_utc(alarm.at, "at")
    return dataclasses.replace(
        incident, suspected_asset=alarm.asset_id, alarm_ids=(*incident.alarm_ids, alarm.alarm_id),
        confirmed_at=at if incident.confirmed_at is None else min(incident.confirmed_at, at))


def decide(incident: Incident, *, min_calls: int = 2) -> Decision:
    """Dispatch once for the incident when it is confirmed or has at least `min_calls` calls."""
    status = incident.status
    once = status is IncidentStatus.CONFIRMED or (status is not IncidentStatus.RESOLVED
                                                  and len(incident.ticket_numbers) >= min_calls)
    return Decision(status, once, incident.primary, incident.suspected_asset, len(incident.ticket_numbers))


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
