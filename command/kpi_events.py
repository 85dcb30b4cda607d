"""How the KPI fold reads one audit event (pure): its ticket, action, time and data
(`read_event`), the state it moved the ticket to, and the markers its data may carry: the
vehicle's GPS arrival, a 督办 step, the 110 linkage. `command.kpi_facts` folds the events.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from command.errors import ValidationError
from command.ticket_model import AuditEvent

__all__ = ["POLICE_ACK", "POLICE_HANDOVER", "EventError", "epoch_seconds", "event_to_state", "gps_arrival_time",
           "plain_value", "police_marker", "read_event", "supervision_step"]


class EventError(ValidationError):
    """An audit event cannot be read (missing ticket number, action or time)."""


def epoch_seconds(value: Any, name: str) -> float:
    """An event time (aware datetime or ISO-8601 text with an offset) as epoch seconds; EventError otherwise."""
    if isinstance(value, str):  # the common case first: stored events carry ISO strings
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise EventError(name, f"not an ISO-8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise EventError(name, f"time without an offset: {value!r}")
        return parsed.timestamp()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise EventError(name, "must be a timezone-aware time")
        return value.timestamp()
    raise EventError(name, f"must be a datetime or an ISO-8601 string, got {value!r}")


def read_event(event: Mapping[str, Any] | AuditEvent) -> tuple[str, str, float, Mapping[str, Any]]:
    """(ticket number, action, time as epoch seconds, data) of an `AuditEvent` or its dict form."""
    if type(event) is not dict and isinstance(event, AuditEvent):
        return event.ticket_number, event.action, epoch_seconds(event.at, "at"), event.data or {}
    try:
        number, action, at = event["ticket_number"], event["action"], event["at"]
    except (KeyError, TypeError):
        raise EventError("event", "needs ticket_number, action and at") from None
    if type(number) is not str or not number or type(action) is not str:
        raise EventError("event", "ticket_number and action must be non-empty strings")
    return number, action, epoch_seconds(at, "at"), event.get("data") or {}


def plain_value(v: Any) -> Any:
    """An enum member's value, anything else unchanged."""
    return getattr(v, "value", v)


def gps_arrival_time(data: Mapping[str, Any]) -> float | None:
    """The GPS arrival time an event's data carries (top level or its note's "data"), epoch seconds."""
    inner = data.get("data")
    raw = data.get("gps_arrived_at") or (inner.get("gps_arrived_at") if isinstance(inner, Mapping) else None)
    return None if raw is None else epoch_seconds(raw, "gps_arrived_at")


def supervision_step(data: Mapping[str, Any]) -> Any:
    """The 督办 step of a note's data (top level, or its note's "data" as the ticket stores it)."""
    inner = data.get("data")
    return data.get("supervision") or (inner.get("supervision") if isinstance(inner, Mapping) else None)


POLICE_HANDOVER = frozenset({"handover", "handover_queued"})
POLICE_ACK = frozenset({"ack", "acked", "status"})


def police_marker(data: Mapping[str, Any]) -> Any:
    """The 110 linkage marker of an event's data (top level or its note's "data")."""
    inner = data.get("data")
    inner = inner if isinstance(inner, Mapping) else {}
    marker = data.get("police") or inner.get("police")
    if marker is None and ("police_status" in data or "police_status" in inner):
        return "status"
    return marker


def event_to_state(event: Mapping[str, Any] | AuditEvent) -> str | None:
    """The state an event moved the ticket to, as text (None when it did not move it)."""
    value = event.to_state if isinstance(event, AuditEvent) else event.get("to_state")
    return None if value is None else str(plain_value(value))
