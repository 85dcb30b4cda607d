"""The JSON forms of tickets and audit events (pure): `to_dict` / `from_dict` and
`event_to_dict` / `event_from_dict`, with enum values and ISO-8601 UTC times, as the store keeps
them and the audit events carry their data."""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from command.ticket_model import (
    AreaClass, AuditEvent, Category, Channel, Color, Role, Satisfaction, State, Ticket, TicketType, Urgency,
)

_PLAIN = frozenset({str, int, float, bool, type(None)})


def json_safe(value: Any) -> Any:
    """A JSON-safe copy of a value: enum values, ISO-8601 UTC times, lists for tuples."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {k.value if isinstance(k, enum.Enum) else str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def iso_utc(value: datetime) -> str:
    """An aware time as ISO-8601 in UTC."""
    return value.astimezone(timezone.utc).isoformat()


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time (or None) as an aware UTC datetime."""
    return None if value is None else datetime.fromisoformat(value).astimezone(timezone.utc)


_ENUM_FIELDS: dict[str, type[enum.Enum]] = {
    "channel": Channel, "category": Category, "type": TicketType, "urgency": Urgency,
    "area_class": AreaClass, "state": State, "color": Color, "satisfaction": Satisfaction,
}
_TIME_FIELDS = tuple(f.name for f in dataclasses.fields(Ticket) if "datetime" in str(f.type) and
                     f.name != "deadlines")


_TICKET_FIELDS = tuple(f.name for f in dataclasses.fields(Ticket))
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEvent))


def to_dict(ticket: Ticket) -> dict[str, Any]:
    """JSON-safe dict of a ticket (enum values, ISO-8601 UTC times, lists) for storage."""
    return {name: json_safe(getattr(ticket, name)) for name in _TICKET_FIELDS}


def from_dict(data: Mapping[str, Any]) -> Ticket:
    """Rebuild a ticket from `to_dict` output."""
    values: dict[str, Any] = dict(data)
    for name, cls in _ENUM_FIELDS.items():
        if values.get(name) is not None:
            values[name] = cls(values[name])
    for name in _TIME_FIELDS:
        values[name] = parse_time(values.get(name))
    values["attachments"] = tuple(values.get("attachments") or ())
    values["declined_by"] = tuple(values.get("declined_by") or ())
    values["review_chain"] = tuple(values.get("review_chain") or ())
    values["reviewers"] = tuple(values.get("reviewers") or ())
    values["rework_units"] = dict(values.get("rework_units") or {})
    values["deadlines"] = {k: parse_time(v) for k, v in (values.get("deadlines") or {}).items()}
    return Ticket(**values)


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    """JSON-safe dict of an audit event."""
    return {name: json_safe(getattr(event, name)) for name in _EVENT_FIELDS}


def event_from_dict(data: Mapping[str, Any]) -> AuditEvent:
    """Rebuild an audit event from `event_to_dict` output."""
    values = dict(data)
    values["from_state"] = None if values.get("from_state") is None else State(values["from_state"])
    values["to_state"] = State(values["to_state"])
    values["role"] = Role(values["role"])
    values["at"] = parse_time(values["at"])
    values["data"] = dict(values.get("data") or {})
    return AuditEvent(**values)
