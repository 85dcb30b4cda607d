"""Repeat calls and duplicate calls (红橙蓝单), pure: distances and time are passed in.

A new call matches an open ticket of the same category whose latest call is at most `window`
before it:

* a REPEAT when it comes from the ticket's caller (same phone) about the same problem: the call's
  point is within `radius_m` of the ticket's, or, when the call or the ticket has no point, the
  ticket type is the same (the documented measure of "the same problem" without a place). A
  repeat counts toward the colour: the ticket turns orange at the caller's second call and red at
  the third (`command.ticket_model.color_for`), and red tickets go in front of a supervisor (督办);
* a DUPLICATE when another phone (or no phone) calls from within `radius_m` of the ticket's point:
  it joins the ticket's call count (`duplicate_count`, event `duplicate_call`) without changing
  its colour. Never into a sensor's proactive ticket (a citizen brings a place and words the
  sensor has not), and a call reporting the failure itself (a burst: `grouping.reports_onset`)
  never into a ticket that does not (it becomes a ticket, which its incident makes the primary).

Anything else is a new problem and gets a new ticket: the same phone about another category, or
about the same category farther than `radius_m`. Repeats win over duplicates, then the nearest,
then the latest call. Closed, cancelled and merged tickets never match.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from command.errors import ValidationError
from command.grouping import is_onset, reports_onset
from command.tickets import apply
from command.ticket_model import (
    OPEN_STATES, SYSTEM_ACTOR, Actor, AuditEvent, Category, Channel, Color, Ticket, TicketType, as_utc,
    normalize_phone,
)

DistanceFn = Callable[[float, float, float, float], float]
"""distance_fn(lon1, lat1, lon2, lat2) -> metres (on the ground; the GIS layer provides it)."""

DEFAULT_RADIUS_M = 100.0
DEFAULT_WINDOW = timedelta(hours=72)


class MatchKind(str, enum.Enum):
    """How a call matches an open ticket: the same caller again, or another caller."""

    REPEAT = "repeat"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Match:
    """The open ticket a call matches, how, and how far its point is (None: no point to compare)."""

    ticket: Ticket
    kind: MatchKind
    distance_m: float | None = None


def _call_fields(call: Mapping[str, Any]) -> tuple[str, float | None, float | None, Category | None,
                                                    TicketType | None, datetime]:
    phone = call.get("phone")
    phone = normalize_phone(phone) if phone not in (None, "") else ""
    lon, lat = call.get("lon"), call.get("lat")
    if (lon is None) != (lat is None):
        raise ValidationError("lon" if lon is None else "lat", "lon and lat must be given together")
    category, type_ = call.get("category"), call.get("type")
    try:
        category = None if category is None else Category(category)
    except ValueError:
        raise ValidationError("category", f"unknown category {category!r}") from None
    try:
        type_ = None if type_ is None else TicketType(type_)
    except ValueError:
        raise ValidationError("type", f"unknown type {type_!r}") from None
    return phone, lon, lat, category, type_, as_utc(call.get("at"), "at")


def find_repeat(
    call: Mapping[str, Any],
    open_tickets: Sequence[Ticket],
    *,
    radius_m: float = DEFAULT_RADIUS_M,
    window: timedelta = DEFAULT_WINDOW,
    distance_fn: DistanceFn,
) -> Match | None:
    """The open ticket a new call repeats or duplicates (the module's rule), or None: a new ticket.

    `call` has phone, lon, lat, category, type (optional), description (optional) and at (aware
    datetime).
    """
    phone, lon, lat, category, type_, at = _call_fields(call)
    onset = category is not None and reports_onset(category, str(call.get("description") or ""))
    best: tuple[int, float, float] | None = None
    found: Match | None = None
    for ticket in open_tickets:
        if ticket.state not in OPEN_STATES or category is not ticket.category:
            continue
        last = ticket.last_call_at or ticket.created_at
        if not timedelta(0) <= at - last <= window:
            continue
        distance = None
        if lon is not None and ticket.lon is not None and ticket.lat is not None:
            distance = distance_fn(lon, lat, ticket.lon, ticket.lat)
        near = distance is not None and distance <= radius_m
        if bool(phone) and phone == ticket.caller_phone:
            same_problem = near if distance is not None else type_ is ticket.type
            kind = MatchKind.REPEAT if same_problem else None
        else:
            kind = MatchKind.DUPLICATE if near and ticket.channel is not Channel.SENSOR and (
                not onset or is_onset(ticket)) else None
        if kind is None:
            continue
        key = (0 if kind is MatchKind.REPEAT else 1, math.inf if distance is None else distance, -last.timestamp())
        if best is None or key < best:
            best, found = key, Match(ticket, kind, distance)
    return found


def register_repeat(ticket: Ticket, now: datetime, *, actor: Actor = SYSTEM_ACTOR) -> Ticket:
    """The ticket after one more call of its caller: repeat_count + 1, colour blue → orange → red."""
    return link_repeat(ticket, now=now, actor=actor)[0]


def link_repeat(ticket: Ticket, *, now: datetime, actor: Actor = SYSTEM_ACTOR,
                phone: str | None = None, note: str = "") -> tuple[Ticket, AuditEvent]:
    """Record a repeat call on the ticket, with its audit event (what the store persists)."""
    args: dict[str, Any] = {"note": note}
    if phone:
        args["phone"] = phone
    return apply(ticket, "repeat_call", actor=actor, now=now, **args)


def link_duplicate(ticket: Ticket, *, now: datetime, actor: Actor = SYSTEM_ACTOR,
                   phone: str | None = None, note: str = "") -> tuple[Ticket, AuditEvent]:
    """Record another caller's call about the ticket's problem: duplicate_count + 1, the colour
    unchanged, with its audit event."""
    args: dict[str, Any] = {"note": note}
    if phone:
        args["phone"] = phone
    return apply(ticket, "duplicate_call", actor=actor, now=now, **args)


def link_call(ticket: Ticket, kind: MatchKind, *, now: datetime, actor: Actor = SYSTEM_ACTOR,
              phone: str | None = None, note: str = "") -> tuple[Ticket, AuditEvent]:
    """Record the call on the ticket it matched (`find_repeat`): a repeat or a duplicate call."""
    link = link_repeat if kind is MatchKind.REPEAT else link_duplicate
    return link(ticket, now=now, actor=actor, phone=phone, note=note)


def needs_supervision(ticket: Ticket) -> bool:
    """Whether the ticket must be put in front of a supervisor (督办): red, or flagged by one."""
    return ticket.color is Color.RED or ticket.supervised
