"""Checking a ticket's input: the checks of single fields that every action uses (`check_text`,
`check_id`, `check_enum`) and `new_ticket`, a call's fields validated into a ticket in state new
with its ``create`` audit event (pure: time is passed in)."""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from command.errors import Forbidden, ValidationError
from command.ticket_model import (
    NUMBER_RE, Actor, AreaClass, AuditEvent, Category, Channel, Role, State, Ticket, TicketType, Urgency, as_utc,
    normalize_phone,
)

R = Role


def check_text(value: Any, name: str, *, max_len: int, required: bool = True) -> str:
    """A string field, stripped; ValidationError when it is not a string, empty (if required) or too long."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    value = value.strip()
    if required and not value:
        raise ValidationError(name, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(name, f"longer than {max_len} characters")
    return value


def check_id(value: Any, name: str) -> str | None:
    """An optional id field (at most 64 characters)."""
    return None if value is None else check_text(value, name, max_len=64)


def check_enum(cls: type[enum.Enum], value: Any, name: str) -> Any:
    """A field that must be one of an enum's values, as that member."""
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ValidationError(name, f"{value!r} is not one of: {allowed}") from None


def _coord(value: Any, name: str, bound: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(name, "must be a finite number")
    if not -bound <= value <= bound:
        raise ValidationError(name, f"must be within ±{bound:g}, got {value}")
    return float(value)


_CREATE_FIELDS = frozenset({
    "number", "channel", "category", "type", "urgency", "description", "caller_name",
    "caller_phone", "address", "lon", "lat", "district", "grid", "unit_id", "supply_area",
    "area_class", "attachments", "alarm_id",
})
_CREATE_ROLES = frozenset({R.AGENT, R.DISPATCHER, R.SUPERVISOR, R.ADMIN, R.SYSTEM, R.TEAM_LEADER})  # 班长 takes calls too


def new_ticket(fields: Mapping[str, Any], *, now: datetime, actor: Actor) -> tuple[Ticket, AuditEvent]:
    """Validate the input of a new ticket and build it in state `new`, with its `create` audit event.

    `number` comes from the store's daily sequence (`ticket_number`). A phone or SMS ticket needs a
    caller phone; lon and lat come together. ValidationError names the first bad field.
    """
    now = as_utc(now, "now")
    if actor.role not in _CREATE_ROLES:
        raise Forbidden(f"role {actor.role.value} may not create tickets", role=actor.role.value, action="create")
    unknown = sorted(set(fields) - _CREATE_FIELDS)
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    number = fields.get("number")
    if not isinstance(number, str) or not NUMBER_RE.match(number):
        raise ValidationError("number", f"must look like GD20261122-0001, got {number!r}")
    for name in ("channel", "category", "type"):
        if fields.get(name) is None:
            raise ValidationError(name, "is required")
    channel = check_enum(Channel, fields["channel"], "channel")
    phone = fields.get("caller_phone")
    if phone in (None, ""):
        if channel in (Channel.PHONE, Channel.SMS):
            raise ValidationError("caller_phone", f"is required for channel {channel.value}")
        phone = ""
    else:
        phone = normalize_phone(phone)
    lon, lat = fields.get("lon"), fields.get("lat")
    if (lon is None) != (lat is None):
        raise ValidationError("lon" if lon is None else "lat", "lon and lat must be given together")
    attachments = fields.get("attachments") or ()
    if not isinstance(attachments, (list, tuple)) or len(attachments) > 20:
        raise ValidationError("attachments", "must be a list of at most 20 references")
    ticket = Ticket(
        number=number,
        channel=channel,
        category=check_enum(Category, fields["category"], "category"),
        type=check_enum(TicketType, fields["type"], "type"),
        urgency=check_enum(Urgency, fields.get("urgency", "normal"), "urgency"),
        description=check_text(fields.get("description"), "description", max_len=2000),
        caller_name=check_text(fields.get("caller_name"), "caller_name", max_len=50, required=False),
        caller_phone=phone,
        address=check_text(fields.get("address"), "address", max_len=200, required=False),
        lon=None if lon is None else _coord(lon, "lon", 180.0),
        lat=None if lat is None else _coord(lat, "lat", 90.0),
        district=check_id(fields.get("district"), "district"),
        grid=check_id(fields.get("grid"), "grid"),
        unit_id=check_id(fields.get("unit_id"), "unit_id"),
        supply_area=check_id(fields.get("supply_area"), "supply_area"),
        area_class=check_enum(AreaClass, fields.get("area_class", "urban"), "area_class"),
        attachments=tuple(check_text(a, "attachments", max_len=500) for a in attachments),
        alarm_id=check_id(fields.get("alarm_id"), "alarm_id"),
        created_at=now, updated_at=now, pending_since=now, cycle_started_at=now, last_call_at=now,
        created_by=actor.user_id,
    )
    # The create event carries the ticket's classification and place, so that KPIs can be
    # recomputed from the event streams alone (command.kpi), never from mutable fields.
    event = AuditEvent(number, "create", None, State.NEW, actor.user_id, actor.role, now,
                       data={"channel": channel.value, "category": ticket.category.value,
                             "type": ticket.type.value, "urgency": ticket.urgency.value,
                             "district": ticket.district, "grid": ticket.grid, "unit_id": ticket.unit_id,
                             "supply_area": ticket.supply_area, "area_class": ticket.area_class.value,
                             "lon": ticket.lon, "lat": ticket.lat})
    return ticket, event
