"""The records of a Redis-only installation (the key layout of commit f2cb00e) as rows of the
PostgreSQL tables: pure functions, one per kind of record, used by `store.migrate_redis`.

Each ``*_row`` takes what Redis held (decoded text, JSON already parsed where the old store kept
JSON) and returns the row's values in the order of its table's ``COLUMNS`` entry. Tickets and
incidents go through the record's own row builders (`store.ticket_records`). Times were epoch
seconds (text, '' for none) and become aware UTC datetimes.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson

from store.devices import Device
from store.ticket_records import TicketRecord, stage_rows, ticket_fields, ticket_row

# table -> its columns written by the migration, in the order of the ``*_row`` values
COLUMNS: dict[str, tuple[str, ...]] = {
    "vehicles": ("vehicle_id", "plate", "kind", "unit_id", "active", "source", "updated_at", "updated_by"),
    "crews": ("crew_id", "crew_name", "unit_id", "station_id", "skills", "vehicle_id", "active", "source",
              "updated_at", "updated_by"),
    "crew_shifts": ("crew_id", "on_shift", "ends_at", "set_by", "set_at"),
    "accounts": ("name", "role", "display", "crew_id", "active", "password_hash"),
    "devices": ("device_id", "kind", "password_hash", "sensors", "sparkplug", "active", "issued_at", "issued_by"),
    "admin_audit": ("at", "by", "role", "action", "target", "changes"),
    "alarm_tickets": ("alarm_key", "number"),
    "client_actions": ("action_id", "applied_to", "expires_at"),
    "police_outbox": ("message_id", "ticket_number", "seq", "body", "idempotency_key", "kind", "state", "attempts",
                      "next_attempt_at", "created_at", "first_sent_at", "acked_at", "alarmed_at", "last_error",
                      "police_incident_id"),
    "police_inbound": ("idempotency_key", "state", "reply_status", "reply_body", "expires_at"),
    "police_nonces": ("nonce", "expires_at"),
    "police_incidents": ("police_incident_id", "ticket_number"),
    "police_tickets": ("ticket_number", "police_incident_id", "direction", "message_id"),
    "police_last_messages": ("ticket_number", "direction", "body"),
}
_NUMBER = re.compile(r"^GD(\d{8})-(\d+)$")
_SEQUENCE_KEY = re.compile(r"^(tkt|inc):seq:(\d{8})$")


def utc(epoch: Any) -> datetime | None:
    """An epoch time (number or text; '' or None for none) as an aware UTC datetime."""
    if epoch is None or epoch == "":
        return None
    return datetime.fromtimestamp(float(epoch), timezone.utc)


def _expires(now: datetime, ttl_s: int, default_s: int) -> datetime:
    """When a key with ttl_s left expires (Redis: -1 no expiry, -2 gone): now + ttl, else default."""
    return now + timedelta(seconds=ttl_s if ttl_s > 0 else default_s)


def vehicle_row(vehicle_id: str, v: Mapping[str, Any], now: datetime) -> tuple[Any, ...]:
    """``fleet:vehicles`` JSON of a vehicle."""
    return (vehicle_id, v.get("plate") or "", v.get("kind") or "repair", v.get("unit_id"), bool(v.get("active", True)),
            v.get("source") or "admin", utc(v.get("updated_at")) or now, v.get("updated_by") or "")


def crew_row(crew_id: str, c: Mapping[str, Any], now: datetime) -> tuple[Any, ...]:
    """``fleet:crews`` JSON of a crew (its vehicle as it holds it)."""
    return (crew_id, c.get("crew_name") or crew_id, c.get("unit_id"), c.get("station_id"), list(c.get("skills") or ()),
            c.get("vehicle_id") or None, bool(c.get("active", True)), c.get("source") or "admin",
            utc(c.get("updated_at")) or now, c.get("updated_by") or "")


def shift_row(crew_id: str, s: Mapping[str, Any], now: datetime) -> tuple[Any, ...]:
    """``crews:shift`` JSON of a crew: on_shift, ends_at, by, at."""
    return crew_id, bool(s.get("on_shift", True)), utc(s.get("ends_at")), s.get("by") or "", utc(s.get("at")) or now


def account_row(name: str, u: Mapping[str, str]) -> tuple[Any, ...]:
    """``user:{name}`` hash: role, display, crew_id, active ('1'/'0'), hash (scrypt, kept as is)."""
    return (name, u["role"], u.get("display") or "", u.get("crew_id") or None, u.get("active", "1") in ("1", "true"),
            u.get("hash") or "")


def device_row(device_id: str, d: Mapping[str, Any]) -> tuple[Any, ...]:
    """``dev:all`` JSON of a device (a `Device`: its MQTT password as a ``$7$`` hash), checked as
    the new code checks it (ValueError for an id, kind or sensor it would refuse)."""
    fields = {k: (tuple(v) if k == "sensors" else v) for k, v in d.items() if k in Device.__dataclass_fields__}
    device = Device(**{**fields, "device_id": device_id})
    return (device.device_id, device.kind, device.password_hash, list(device.sensors), bool(device.sparkplug),
            bool(device.active), float(device.issued_at), device.issued_by)


def audit_row(f: Mapping[str, str]) -> tuple[Any, ...]:
    """An ``admin:audit`` entry: at (epoch s), by, role, action, target, changes (JSON)."""
    return (utc(f["at"]), f.get("by", ""), f.get("role", ""), f.get("action", ""), f.get("target", ""),
            orjson.loads(f.get("changes") or "{}"))


def outbox_row(f: Mapping[str, str]) -> tuple[Any, ...]:
    """A ``p110:out:{message_id}`` hash (times epoch s, '' for none; body the signed JSON as is)."""
    return (f["message_id"], f["ticket_number"], int(f["seq"]), f["body"], f["idempotency_key"],
            f.get("kind") or "handover", f.get("state") or "pending", int(f.get("attempts") or 0),
            utc(f.get("next_attempt_at")) or utc(f["created_at"]), utc(f["created_at"]),
            utc(f.get("first_sent_at")), utc(f.get("acked_at")), utc(f.get("alarmed_at")), f.get("last_error", ""),
            f.get("police_incident_id") or None)


def inbound_row(key: str, value: str, ttl_s: int, now: datetime) -> tuple[Any, ...] | None:
    """``p110:in:{key}``: the JSON reply ``{status, body}`` of a finished request (kept as long as
    the key had left, 7 days when it had no expiry); None for one still ``processing``."""
    if value == "processing":
        return None
    reply = orjson.loads(value)
    return key, "done", int(reply["status"]), reply.get("body"), _expires(now, ttl_s, 7 * 86400)


def nonce_row(nonce: str, ttl_s: int, now: datetime) -> tuple[Any, ...]:
    """``p110:nonce:{nonce}``, kept as long as its key had left."""
    return nonce, _expires(now, ttl_s, 1)


def client_action_row(action_id: str, applied_to: str, ttl_s: int, now: datetime) -> tuple[Any, ...]:
    """``tkt:cid:{action_id}`` -> ``<number>/<action>``, kept what is left of its day."""
    return action_id, applied_to, _expires(now, ttl_s, 86400)


def police_incident_row(police_incident_id: str, value: str) -> tuple[Any, ...]:
    """``p110:incident:{id}`` -> a ticket number, or a claim marker while the ticket was made (NULL)."""
    return police_incident_id, value if _NUMBER.match(value) else None


def police_ticket_row(number: str, f: Mapping[str, str]) -> tuple[Any, ...]:
    """``p110:ticket:{number}`` hash: police_incident_id, direction, message_id."""
    return number, f["police_incident_id"], f.get("direction") or "out", f.get("message_id") or ""


def last_message_row(number: str, value: str) -> tuple[Any, ...]:
    """``p110:last:{number}`` JSON ``{dir, body}``."""
    message = orjson.loads(value)
    return number, message["dir"], message["body"]


def ticket_item(raw: str, events: Iterable[str]) -> tuple[tuple[Any, ...], bytes]:
    """A ``tkt:{number}`` JSON and its audit stream's ``e`` fields (oldest first): the ``tickets``
    row (`ticket_row`) and the JSON item that `store.migrate_redis` inserts, ``{"row": the row
    by column name, "events": the events as stored, "stages": stage_rows}``. ValueError (or
    KeyError, TypeError) for a record the new code could not read."""
    events_json = b"[" + b",".join(e.encode() for e in events) + b"]"
    orjson.loads(events_json)  # every event is JSON
    record = TicketRecord.from_json(raw)
    return ticket_row(record), orjson.dumps({"row": ticket_fields(record), "events": orjson.Fragment(events_json),
                                             "stages": stage_rows(record)})


def ticket_sort_key(number: str) -> tuple[str, int]:
    """Tickets in the order they were numbered: day, then sequence."""
    match = _NUMBER.match(number)
    return (match.group(1), int(match.group(2))) if match else (number, 0)


def day_sequences(sequences: Mapping[str, str], numbers: Iterable[str]) -> dict[tuple[str, date], int]:
    """(kind, day) -> the last number drawn: ``tkt:seq:{YYYYMMDD}`` ('ticket') and
    ``inc:seq:{YYYYMMDD}`` ('incident') values, a ticket day's raised to its highest number."""
    last: dict[tuple[str, date], int] = {}
    for key, value in sequences.items():
        match = _SEQUENCE_KEY.match(key)
        if match:
            kind = "ticket" if match.group(1) == "tkt" else "incident"
            last[(kind, datetime.strptime(match.group(2), "%Y%m%d").date())] = int(value or 0)
    for number in numbers:
        match = _NUMBER.match(number)
        if match:
            day = ("ticket", datetime.strptime(match.group(1), "%Y%m%d").date())
            last[day] = max(last.get(day, 0), int(match.group(2)))
    return last
