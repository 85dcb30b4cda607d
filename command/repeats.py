"""Repeat callers and repeat problems (红橙蓝单), pure: distances and time are passed in.

A new call is a repeat of an open ticket when, within `window` of the ticket's latest call, it
comes from the same phone number, or from within `radius_m` of the ticket's point about the same
category. A repeat is linked to the ticket instead of creating a new one; the ticket turns orange
at the second call and red at the third, and red tickets go in front of a supervisor (督办).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from command.errors import ValidationError
from command.tickets import (
    OPEN_STATES, SYSTEM_ACTOR, Actor, AuditEvent, Category, Color, Ticket, apply, as_utc,
    normalize_phone,
)

DistanceFn = Callable[[float, float, float, float], float]
"""distance_fn(lon1, lat1, lon2, lat2) -> metres (on the ground; the GIS layer provides it)."""

DEFAULT_RADIUS_M = 100.0
DEFAULT_WINDOW = timedelta(hours=72)


def _call_fields(call: Mapping[str, Any]) -> tuple[str, float | None, float | None, Category | None, datetime]:
    phone = call.get("phone")
    phone = normalize_phone(phone) if phone not in (None, "") else ""
    lon, lat = call.get("lon"), call.get("lat")
    if (lon is None) != (lat is None):
        raise ValidationError("lon" if lon is None else "lat", "lon and lat must be given together")
    category = call.get("category")
    try:
        category = None if category is None else Category(category)
    except ValueError:
        raise ValidationError("category", f"unknown category {category!r}") from None
    return phone, lon, lat, category, as_utc(call.get("at"), "at")


def find_repeat(
    call: Mapping[str, Any],
    open_tickets: Sequence[Ticket],
    *,
    radius_m: float = DEFAULT_RADIUS_M,
    window: timedelta = DEFAULT_WINDOW,
    distance_fn: DistanceFn,
) -> Ticket | None:
    """The open ticket a new call repeats, or None.

    `call` has phone, lon, lat, category and at (aware datetime). A ticket matches when its latest
    call is at most `window` before the call and either the phone is the same or the call is within
    `radius_m` with the same category. Same-phone matches win, then the nearest, then the latest.
    Closed, cancelled and merged tickets never match.
    """
    phone, lon, lat, category, at = _call_fields(call)
    best: tuple[int, float, float] | None = None
    found: Ticket | None = None
    for ticket in open_tickets:
        if ticket.state not in OPEN_STATES:
            continue
        last = ticket.last_call_at or ticket.created_at
        if not timedelta(0) <= at - last <= window:
            continue
        same_phone = bool(phone) and phone == ticket.caller_phone
        distance = math.inf
        if lon is not None and ticket.lon is not None and ticket.lat is not None:
            distance = distance_fn(lon, lat, ticket.lon, ticket.lat)
        near = category is ticket.category and distance <= radius_m
        if not (same_phone or near):
            continue
        key = (0 if same_phone else 1, distance, -last.timestamp())
        if best is None or key < best:
            best, found = key, ticket
    return found


def register_repeat(ticket: Ticket, now: datetime, *, actor: Actor = SYSTEM_ACTOR) -> Ticket:
    """The ticket after one more call about it: repeat_count + 1, colour blue → orange → red."""
    return link_repeat(ticket, now=now, actor=actor)[0]


def link_repeat(ticket: Ticket, *, now: datetime, actor: Actor = SYSTEM_ACTOR,
                phone: str | None = None, note: str = "") -> tuple[Ticket, AuditEvent]:
    """Record a repeat call on the ticket, with its audit event (what the store persists)."""
    args: dict[str, Any] = {"note": note}
    if phone:
        args["phone"] = phone
    return apply(ticket, "repeat_call", actor=actor, now=now, **args)


def needs_supervision(ticket: Ticket) -> bool:
    """Whether the ticket must be put in front of a supervisor (督办): red, or flagged by one."""
    return ticket.color is Color.RED or ticket.supervised
