"""110 police linkage (110联动): the messages both ways (model, JSON, parsing) and the emergency
rule's public names (from `command.emergency`). Requests are signed by `command.police_signing`;
the outbox's delivery policy is `command.police_outbox`.

Everything here is pure: no HTTP, no Redis, no clock. The outbox worker and the HTTP handlers
call these functions with ``now`` passed in.

Wire format: one JSON object per HTTP body, UTF-8, with a ``"type"`` member naming the
message (``handover``, ``result_report``, ``police_status``, ``incident_transfer``).
Times are ISO 8601 strings in UTC (``2026-11-22T05:30:00+00:00``); on input any explicit
offset (or ``Z``) is accepted and converted to UTC, a time without an offset is refused.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union

from command.coordinates import CoordinateError, check_optional_point
from command.errors import CommandError
from command.emergency import (  # noqa: F401 (re-exported: the 110 rule's public names)
    AMBIGUOUS,
    DEFAULT_EMERGENCY_RULES,
    EXCLUDED_TICKET_TYPES,
    HIGH,
    EmergencyRule,
    PoliceCall,
    assess_police,
    needs_police,
)

UTC = timezone.utc
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._:~\-]{1,200}")  # nonce and idempotency key characters

# --------------------------------------------------------------------------- errors


class PoliceMessageError(CommandError, ValueError):
    """A police-linkage message is malformed (HTTP 400); ``code`` is stable, ``field`` names the culprit."""

    MALFORMED_BODY = "malformed_body"  # not UTF-8, not JSON, or not a JSON object
    UNKNOWN_TYPE = "unknown_type"  # "type" is not one this direction accepts
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"  # e.g. a number where a string belongs
    BAD_VALUE = "bad_value"  # right type, impossible value (bad time, bad status)
    BAD_COORDINATES = "bad_coordinates"  # a point the shared rule refuses (lat 89, NaN, half a point)

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}", **({"field": field} if field else {}))
        self.code = code
        self.field = field


# --------------------------------------------------------------------------- messages

POLICE_STATUSES = ("received", "dispatched", "on_scene", "closed")
DISPATCHER_MANUAL = "dispatcher_manual"  # the dispatcher's "转110" button


def check_time(name: str, value: object) -> None:
    """Refuse (PoliceMessageError) a value that is not a timezone-aware datetime."""
    if not isinstance(value, datetime):
        raise PoliceMessageError(PoliceMessageError.WRONG_TYPE, f"{name} must be a datetime", name)
    if value.tzinfo is None or value.utcoffset() is None:
        raise PoliceMessageError(PoliceMessageError.BAD_VALUE, f"{name} must be timezone-aware", name)


def _check_point(lon: float | None, lat: float | None) -> None:
    """The shared coordinate rule (`command.coordinates`), without the service area (the ticket
    manager applies that): a bad point is ``bad_coordinates``."""
    try:
        check_optional_point(lon, lat)
    except CoordinateError as exc:
        raise PoliceMessageError(PoliceMessageError.BAD_COORDINATES, exc.message, exc.field) from None


def _require(msg: object, *names: str) -> None:
    for name in names:
        if not getattr(msg, name).strip():
            raise PoliceMessageError(PoliceMessageError.BAD_VALUE, f"{name} must not be empty", name)


def _check_key(key: str) -> None:
    if not TOKEN_PATTERN.fullmatch(key):
        raise PoliceMessageError(PoliceMessageError.BAD_VALUE, f"idempotency key {key!r} is not a token", "idempotency_key")


@dataclass(frozen=True)
class Handover:
    """Outbound: a ticket handed over to 110 (我方→110)."""

    message_id: str
    idempotency_key: str
    ticket_number: str
    kind: str  # an emergency kind from the rule table, or DISPATCHER_MANUAL
    summary: str
    address: str
    lon: float | None
    lat: float | None
    caller: str  # masked phone, see mask_phone
    urgency: str
    created_at: datetime

    def __post_init__(self) -> None:
        _require(self, "message_id", "ticket_number", "kind")
        _check_key(self.idempotency_key)
        _check_point(self.lon, self.lat)
        check_time("created_at", self.created_at)


@dataclass(frozen=True)
class ResultReport:
    """Outbound: the result of an incident 110 transferred to us (办结反馈)."""

    message_id: str
    idempotency_key: str
    police_incident_id: str
    ticket_number: str
    category: str  # our ticket category (water, power, gas, ...)
    outcome: str  # what was done, user-facing text
    unit: str  # responsible unit that resolved it
    resolved_at: datetime
    created_at: datetime

    def __post_init__(self) -> None:
        _require(self, "message_id", "police_incident_id", "ticket_number")
        _check_key(self.idempotency_key)
        check_time("resolved_at", self.resolved_at)
        check_time("created_at", self.created_at)


@dataclass(frozen=True)
class PoliceStatus:
    """Inbound: 110's progress on a handover (received, dispatched, on_scene, closed)."""

    message_id: str
    ticket_number: str | None
    police_incident_id: str | None
    status: str
    at: datetime
    note: str = ""

    def __post_init__(self) -> None:
        _require(self, "message_id")
        if not (self.ticket_number or self.police_incident_id):
            raise PoliceMessageError(
                PoliceMessageError.MISSING_FIELD,
                "one of ticket_number, police_incident_id is required",
                "ticket_number",
            )
        if self.status not in POLICE_STATUSES:
            raise PoliceMessageError(
                PoliceMessageError.BAD_VALUE, f"status {self.status!r} not in {POLICE_STATUSES}", "status"
            )
        check_time("at", self.at)


@dataclass(frozen=True)
class IncidentTransfer:
    """Inbound: a non-police incident (非警务警情) 110 transfers to us; it becomes a ticket."""

    message_id: str
    police_incident_id: str
    category_hint: str  # 110's guess: water, power, gas, heating, drainage, sanitation, other
    description: str
    address: str
    lon: float | None
    lat: float | None
    caller_name: str
    caller_phone: str
    at: datetime

    def __post_init__(self) -> None:
        _require(self, "message_id", "police_incident_id", "description")
        _check_point(self.lon, self.lat)
        check_time("at", self.at)


PoliceMessage = Union[Handover, ResultReport, PoliceStatus, IncidentTransfer]

_TYPE_NAMES: dict[type, str] = {
    Handover: "handover",
    ResultReport: "result_report",
    PoliceStatus: "police_status",
    IncidentTransfer: "incident_transfer",
}
_CLASSES = {name: cls for cls, name in _TYPE_NAMES.items()}


def message_key(ticket_number: str, purpose: str, n: int) -> str:
    """Stable idempotency key for the n-th message of a purpose on a ticket: ``T:handover:1``."""
    return f"{ticket_number}:{purpose}:{n}"


def mask_phone(phone: str) -> str:
    """Mask a phone number for 110 as 138****5678: keep the first 3 and last 4 digits."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 8:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def _time_to_json(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def to_json(msg: PoliceMessage) -> bytes:
    """Encode any police-linkage message as compact UTF-8 JSON with a ``"type"`` member."""
    out: dict[str, Any] = {"type": _TYPE_NAMES[type(msg)]}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        out[f.name] = _time_to_json(value) if isinstance(value, datetime) else value
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _field(obj: dict[str, Any], field: dataclasses.Field) -> Any:
    """Read and type-check one member; absent or null is allowed for Optional or defaulted fields."""
    name, annotation = field.name, str(field.type)
    value = obj.get(name)
    if value is None:
        if field.default is not dataclasses.MISSING:
            return field.default
        if "None" in annotation:
            return None
        raise PoliceMessageError(PoliceMessageError.MISSING_FIELD, f"{name} is required", name)
    if "datetime" in annotation:
        if not isinstance(value, str):
            raise PoliceMessageError(PoliceMessageError.WRONG_TYPE, f"{name} must be an ISO 8601 string", name)
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ValueError("no UTC offset")
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError) as exc:  # OverflowError: 9999-12-31T23:59-01:00
            raise PoliceMessageError(PoliceMessageError.BAD_VALUE, f"{name} is not ISO 8601 with offset ({exc})", name) from None
    if "float" in annotation:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PoliceMessageError(PoliceMessageError.WRONG_TYPE, f"{name} must be a number", name)
        try:
            return float(value)
        except OverflowError:
            raise PoliceMessageError(PoliceMessageError.BAD_VALUE, f"{name} is out of range", name) from None
    if not isinstance(value, str):
        raise PoliceMessageError(PoliceMessageError.WRONG_TYPE, f"{name} must be a string", name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PoliceMessageError(PoliceMessageError.BAD_VALUE, f"{name} holds a lone surrogate", name) from None
    return value


def _parse(body: bytes, accepted: tuple[type, ...]) -> PoliceMessage:
    try:
        obj = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise PoliceMessageError(PoliceMessageError.MALFORMED_BODY, f"not UTF-8 JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise PoliceMessageError(PoliceMessageError.MALFORMED_BODY, "body must be a JSON object")
    type_name = obj.get("type")
    if type_name is None:
        raise PoliceMessageError(PoliceMessageError.MISSING_FIELD, "type is required", "type")
    if not isinstance(type_name, str):
        raise PoliceMessageError(PoliceMessageError.WRONG_TYPE, "type must be a string", "type")
    cls = _CLASSES.get(type_name)
    if cls not in accepted:
        raise PoliceMessageError(PoliceMessageError.UNKNOWN_TYPE, f"type {type_name!r} not accepted here", "type")
    values = {f.name: _field(obj, f) for f in dataclasses.fields(cls)}
    return cls(**values)


def parse_inbound(body: bytes) -> PoliceStatus | IncidentTransfer:
    """Decode a body from 110; raises only PoliceMessageError, whatever the bytes."""
    return _parse(body, (PoliceStatus, IncidentTransfer))  # type: ignore[return-value]


def parse_outbound(body: bytes) -> Handover | ResultReport:
    """Decode a body we send to 110 (for the 110 simulator and for outbox re-reads)."""
    return _parse(body, (Handover, ResultReport))  # type: ignore[return-value]
