"""110 police linkage (110联动): message model, emergency rule, signing and outbox policy.

Everything here is pure: no HTTP, no Redis, no clock. The lead's outbox worker and HTTP
handlers call these functions with ``now`` passed in.

Wire format: one JSON object per HTTP body, UTF-8, with a ``"type"`` member naming the
message (``handover``, ``result_report``, ``police_status``, ``incident_transfer``).
Times are ISO 8601 strings in UTC (``2026-11-22T05:30:00+00:00``); on input any explicit
offset (or ``Z``) is accepted and converted to UTC, a time without an offset is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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
_TOKEN = re.compile(r"[A-Za-z0-9._:~\-]{1,200}")  # nonce and idempotency key characters

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


class SignatureError(CommandError, ValueError):
    """A signed request is refused (HTTP 401 whatever the reason); ``code`` is stable."""

    status = 401

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"  # timestamp not digits, nonce or key not token chars
    EXPIRED = "expired"  # timestamp further than max_skew_s from now, either side
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"  # valid signature but the nonce was seen before

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


# --------------------------------------------------------------------------- messages

POLICE_STATUSES = ("received", "dispatched", "on_scene", "closed")
DISPATCHER_MANUAL = "dispatcher_manual"  # the dispatcher's "转110" button


def _check_time(name: str, value: object) -> None:
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
    if not _TOKEN.fullmatch(key):
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
        _check_time("created_at", self.created_at)


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
        _check_time("resolved_at", self.resolved_at)
        _check_time("created_at", self.created_at)


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
        _check_time("at", self.at)


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
        _check_time("at", self.at)


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


# --------------------------------------------------------------------------- emergency rule
# The table and how it reads a description: `command.emergency` (re-exported here).


# --------------------------------------------------------------------------- signing
#
# Canonical string signed with HMAC-SHA256 and the shared secret (hex digest in X-Signature):
#
#     b"v1\n" + X-Timestamp + b"\n" + X-Nonce + b"\n" + Idempotency-Key + b"\n" + body
#
# X-Timestamp is epoch seconds (decimal digits), X-Nonce and Idempotency-Key are token characters
# (A-Z a-z 0-9 and ._:~-), Idempotency-Key is empty when the header is absent. The body bytes are
# signed exactly as sent: never re-serialise before verifying.

_SIGNATURE = "X-Signature"
_TIMESTAMP = "X-Timestamp"
_NONCE = "X-Nonce"
_IDEMPOTENCY = "Idempotency-Key"
_DIGITS = re.compile(r"[0-9]{1,12}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def canonical_string(body: bytes, timestamp: str, nonce: str, idempotency_key: str = "") -> bytes:
    """The exact bytes that are signed (see the comment above)."""
    return f"v1\n{timestamp}\n{nonce}\n{idempotency_key}\n".encode("ascii") + body


def _digest(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: bytes, now: datetime, nonce: str, *, idempotency_key: str = "") -> dict[str, str]:
    """Headers that sign ``body`` at ``now``; ``nonce`` must be unique per request (uuid4().hex)."""
    _check_time("now", now)
    if not _TOKEN.fullmatch(nonce):
        raise ValueError(f"nonce {nonce!r} must be 1-200 token characters")
    if idempotency_key and not _TOKEN.fullmatch(idempotency_key):
        raise ValueError(f"idempotency key {idempotency_key!r} must be 1-200 token characters")
    timestamp = str(int(now.timestamp()))
    headers = {
        _TIMESTAMP: timestamp,
        _NONCE: nonce,
        _SIGNATURE: _digest(secret, canonical_string(body, timestamp, nonce, idempotency_key)),
    }
    if idempotency_key:
        headers[_IDEMPOTENCY] = idempotency_key
    return headers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lower), None)
    if value is not None and not isinstance(value, str):
        raise SignatureError(SignatureError.MALFORMED_HEADER, f"{name} must be text")
    return value


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: bytes,
    now: datetime,
    *,
    max_skew_s: int = 300,
    seen_nonce: Callable[[str], bool],
) -> None:
    """Accept a signed request or raise SignatureError; headers are looked up case-insensitively.

    ``seen_nonce(nonce)`` must record the nonce and return True when it was already recorded
    (Redis ``SET key 1 NX EX 2*max_skew_s`` returning nil); it is called only once the signature
    is valid and fresh, so forged requests cannot burn nonces.
    """
    values = {}
    for name in (_SIGNATURE, _TIMESTAMP, _NONCE):
        value = _header(headers, name)
        if not value:
            raise SignatureError(SignatureError.MISSING_HEADER, f"{name} header is missing")
        values[name] = value
    key = _header(headers, _IDEMPOTENCY) or ""
    timestamp, nonce, signature = values[_TIMESTAMP], values[_NONCE], values[_SIGNATURE]
    if not _DIGITS.fullmatch(timestamp):
        raise SignatureError(SignatureError.MALFORMED_HEADER, f"{_TIMESTAMP} must be epoch seconds")
    if not _TOKEN.fullmatch(nonce) or (key and not _TOKEN.fullmatch(key)):
        raise SignatureError(SignatureError.MALFORMED_HEADER, "nonce or idempotency key is not a token")
    if abs(now.timestamp() - int(timestamp)) > max_skew_s:
        raise SignatureError(SignatureError.EXPIRED, f"timestamp {timestamp} is more than {max_skew_s} s off")
    expected = _digest(secret, canonical_string(body, timestamp, nonce, key))
    if not _HEX64.fullmatch(signature) or not hmac.compare_digest(expected, signature.lower()):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "signature does not match body")
    if seen_nonce(nonce):
        raise SignatureError(SignatureError.REPLAY, f"nonce {nonce} was already used")


def accept_once(key: str, seen: set[str]) -> bool:
    """Receiver idempotency: True (and remember ``key``) the first time, False for a duplicate."""
    if not key:
        raise ValueError("idempotency key must not be empty")
    if key in seen:
        return False
    seen.add(key)
    return True


# --------------------------------------------------------------------------- outbox policy

OUTBOX_STATES = ("pending", "sent", "acked", "failed_alarmed")


@dataclass(frozen=True)
class OutboxEntry:
    """One outbound message in the persistent outbox, with its delivery state.

    ``sent`` means an attempt is in flight; its ``next_attempt_at`` is the attempt's deadline,
    so after a crash it is simply sent again (the receiver de-duplicates by idempotency key).
    """

    message_id: str
    ticket_number: str
    seq_per_ticket: int
    body: bytes
    next_attempt_at: datetime
    attempts: int = 0
    state: str = "pending"
    first_sent_at: datetime | None = None
    acked_at: datetime | None = None
    alarmed_at: datetime | None = None
    last_error: str = ""

    def __post_init__(self) -> None:
        if self.state not in OUTBOX_STATES:
            raise ValueError(f"outbox state {self.state!r} not in {OUTBOX_STATES}")


def next_attempt(entry: OutboxEntry, now: datetime, *, base_s: float = 2, cap_s: float = 60,
                 jitter: float) -> datetime:
    """When to retry after ``entry.attempts`` failed attempts: base·2^(n-1) capped, equal jitter.

    ``jitter`` in [0, 1] (the worker passes random.random()): the delay is d·(0.5 + 0.5·jitter),
    so for a fixed jitter the schedule is non-decreasing and never above ``cap_s``.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter {jitter} must be within [0, 1]")
    exponent = min(max(entry.attempts - 1, 0), 40)
    delay = min(cap_s, base_s * 2**exponent) * (0.5 + 0.5 * jitter)
    return now + timedelta(seconds=delay)


def on_attempt(entry: OutboxEntry, now: datetime, *, timeout_s: float = 10) -> OutboxEntry:
    """The worker is about to send ``entry``: count the attempt and lease it until the timeout."""
    return dataclasses.replace(
        entry,
        state="sent",
        attempts=entry.attempts + 1,
        first_sent_at=entry.first_sent_at or now,
        next_attempt_at=now + timedelta(seconds=timeout_s),
    )


def needs_alarm(entry: OutboxEntry, now: datetime, ack_deadline_s: float = 60) -> bool:
    """True once an entry sent first ``ack_deadline_s`` ago is still not acknowledged and not yet alarmed."""
    if entry.state in ("acked", "failed_alarmed") or entry.first_sent_at is None or entry.alarmed_at:
        return False
    return now - entry.first_sent_at >= timedelta(seconds=ack_deadline_s)


def mark_alarmed(entry: OutboxEntry, now: datetime) -> OutboxEntry:
    """Record that the dispatcher was alarmed about ``entry`` (it keeps being retried)."""
    return dataclasses.replace(entry, alarmed_at=now)


def on_response(entry: OutboxEntry, status_code: int | None, body: bytes, now: datetime, *,
                jitter: float = 1.0, base_s: float = 2, cap_s: float = 60) -> OutboxEntry:
    """Outcome of one attempt; ``status_code`` None means timeout or connection error.

    2xx, and 409 (the receiver already holds this idempotency key), → acked. 408, 429, 5xx,
    1xx and None → pending with a backed-off ``next_attempt_at``. Any other 4xx and 3xx are
    permanent → failed_alarmed (the dispatcher must act; the ticket's later messages wait).
    """
    if status_code is not None and (200 <= status_code < 300 or status_code == 409):
        return dataclasses.replace(entry, state="acked", acked_at=now, last_error="")
    detail = body[:200].decode("utf-8", "replace")
    if status_code is not None and (300 <= status_code < 400 or (400 <= status_code < 500 and status_code not in (408, 429))):
        return dataclasses.replace(entry, state="failed_alarmed", alarmed_at=entry.alarmed_at or now,
                                   last_error=f"HTTP {status_code}: {detail}")
    error = "timeout or connection error" if status_code is None else f"HTTP {status_code}: {detail}"
    retry_at = next_attempt(entry, now, base_s=base_s, cap_s=cap_s, jitter=jitter)
    return dataclasses.replace(entry, state="pending", next_attempt_at=retry_at, last_error=error)


def requeue(entry: OutboxEntry, now: datetime) -> OutboxEntry:
    """The dispatcher retries a failed_alarmed entry: pending again, due now."""
    if entry.state != "failed_alarmed":
        raise ValueError(f"only failed_alarmed entries are requeued, not {entry.state}")
    return dataclasses.replace(entry, state="pending", next_attempt_at=now)


def deliverable(entries: Iterable[OutboxEntry], now: datetime | None = None) -> list[OutboxEntry]:
    """Entries to send now: per ticket only the lowest-seq unacknowledged one, tickets independent.

    A ticket whose head is failed_alarmed sends nothing until it is requeued; with ``now`` given,
    heads not yet due (``next_attempt_at > now``) are left out too. Sorted by due time.
    """
    heads: dict[str, OutboxEntry] = {}
    for entry in entries:
        if entry.state == "acked":
            continue
        head = heads.get(entry.ticket_number)
        if head is None or (entry.seq_per_ticket, entry.message_id) < (head.seq_per_ticket, head.message_id):
            heads[entry.ticket_number] = entry
    due = [e for e in heads.values() if e.state != "failed_alarmed" and (now is None or e.next_attempt_at <= now)]
    return sorted(due, key=lambda e: (e.next_attempt_at, e.ticket_number, e.seq_per_ticket))
