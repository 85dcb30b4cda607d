"""The dispatch area of the store: crews' shifts, recommendations, GPS arrivals, ticket alarms and
the 110 linkage (outbox, inbound replay and idempotency). Nobody else spells these keys.

Dispatch (``{n}`` is a ticket number, ``{crew}`` a crew id):

- ``crews:shift`` hash crew id → JSON ``{"on_shift": bool, "ends_at": epoch s | null, "by", "at"}``;
  a crew without an entry is on shift (the demo city has no rota).
- ``dsp:rec:{n}`` string, JSON of the latest recommendation shown to dispatchers (expires after 7 days).
- ``dsp:arrivals`` hash number → JSON ``{"at", "crew_id", "vehicle_id", "distance_m",
  "dispatched_at"}``: the vehicle's GPS arrival within the radius, valid for that dispatch only.
- ``dsp:alarms`` hash alarm id (``{n}|{what}``; what is a time-limit stage, or ``declined``,
  ``accept_timeout``, ``no_candidate``, ``returned``, ``police_ack``) → JSON of the alarm shown
  on the console; ``dsp:alarm_events`` stream (capped at about 100,000) of ``raised`` /
  ``cleared`` events (fields ``type``, ``alarm_id``, ``data``); pub/sub ``live:ticket_alarms``
  the same events as JSON.
- Consumer group ``dispatch`` on ``tkt:changes`` (stream owned by ``center.store_tickets``).

110 linkage:

- ``p110:out:{message_id}`` hash: one outbox entry (``command.police.OutboxEntry`` fields, times
  epoch s or empty, ``body`` the exact signed JSON, ``idempotency_key``, ``kind``, ``created_at``,
  ``police_incident_id`` from the ack). Written by OUTBOX_ADD before any attempt to send.
- ``p110:due`` zset of unacknowledged message ids, score created (epoch s).
- ``p110:msgs:{n}`` zset of a ticket's message ids, score its per-ticket sequence;
  ``p110:seq:{n}`` the sequence counter; ``p110:keys`` hash idempotency key → message id (an
  enqueue with a known key returns the existing message).
- ``p110:last:{n}`` string JSON ``{"dir": "out"|"in", "body": ...}``: the ticket's last police
  message (rendered as CAP by the API).
- ``p110:nonce:{nonce}`` string with TTL: nonces of accepted inbound requests (replay store).
- ``p110:in:{idempotency_key}`` string: ``processing`` (TTL 60 s) while an inbound request is
  handled, then JSON ``{"status", "body"}`` of its reply (kept 7 days) for replays.
- ``p110:incident:{police_incident_id}`` string → ticket number (handovers acknowledged with an
  incident id, and incidents 110 transferred to us); ``p110:ticket:{n}`` hash ``police_incident_id``,
  ``direction`` (``in`` transferred to us, ``out`` handed over), ``message_id``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from command.police import OutboxEntry

CHANGES_GROUP = "dispatch"
LIVE_TICKET_ALARMS = "live:ticket_alarms"
ALARM_EVENTS = "dsp:alarm_events"
ALARM_EVENTS_MAX = 100_000
RECOMMENDATION_TTL_S = 7 * 86400
INBOUND_REPLY_TTL_S = 7 * 86400

OUTBOX_ADD = r"""
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing, 0} end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], 'message_id', ARGV[2], 'ticket_number', ARGV[3], 'seq', seq,
  'body', ARGV[4], 'next_attempt_at', ARGV[5], 'attempts', 0, 'state', 'pending',
  'created_at', ARGV[5], 'idempotency_key', ARGV[1], 'kind', ARGV[6], 'first_sent_at', '',
  'acked_at', '', 'alarmed_at', '', 'last_error', '', 'police_incident_id', '')
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[5], seq, ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[6], ARGV[7])
return {1, ARGV[2], seq}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _epoch(value: datetime | None) -> str:
    return "" if value is None else repr(value.timestamp())


def _time(value: Any) -> datetime | None:
    text = "" if value is None else _text(value)
    return None if text == "" else datetime.fromtimestamp(float(text), timezone.utc)


def entry_from_hash(raw: Mapping[Any, Any]) -> tuple[OutboxEntry, dict[str, str]]:
    """An outbox hash as the domain's OutboxEntry, plus the extra fields (key, kind, ...)."""
    f = {_text(k): _text(v) for k, v in raw.items()}
    entry = OutboxEntry(
        message_id=f["message_id"], ticket_number=f["ticket_number"], seq_per_ticket=int(f["seq"]),
        body=f["body"].encode("utf-8"), next_attempt_at=_time(f["next_attempt_at"]),  # type: ignore[arg-type]
        attempts=int(f.get("attempts") or 0), state=f.get("state") or "pending",
        first_sent_at=_time(f.get("first_sent_at")), acked_at=_time(f.get("acked_at")),
        alarmed_at=_time(f.get("alarmed_at")), last_error=f.get("last_error", ""))
    extra = {k: f.get(k, "") for k in ("idempotency_key", "kind", "created_at", "police_incident_id")}
    return entry, extra


class DispatchStore:
    """Typed access to the dispatch and 110 keys (same Redis client as the other stores)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._outbox_add = client.register_script(OUTBOX_ADD)

    # shifts -------------------------------------------------------------------------------------
    async def shifts(self) -> dict[str, dict[str, Any]]:
        """Shift entries by crew id (crews without one are on shift)."""
        return {_text(k): orjson.loads(v) for k, v in (await self.redis.hgetall("crews:shift")).items()}

    async def set_shift(self, crew_id: str, on_shift: bool, ends_at: datetime | None, by: str, at: datetime) -> None:
        """Put a crew on or off shift (optionally until `ends_at`)."""
        await self.redis.hset("crews:shift", crew_id, orjson.dumps({
            "on_shift": bool(on_shift), "ends_at": None if ends_at is None else ends_at.timestamp(),
            "by": by, "at": at.timestamp()}))

    # recommendations and arrivals --------------------------------------------------------------------
    async def put_recommendation(self, number: str, view: Mapping[str, Any]) -> None:
        """Store the latest recommendation of a ticket."""
        await self.redis.set(f"dsp:rec:{number}", orjson.dumps(dict(view)), ex=RECOMMENDATION_TTL_S)

    async def recommendation(self, number: str) -> dict[str, Any] | None:
        """The stored recommendation of a ticket, or None."""
        raw = await self.redis.get(f"dsp:rec:{number}")
        return None if raw is None else orjson.loads(raw)

    async def arrivals(self, numbers: Sequence[str]) -> dict[str, dict[str, Any]]:
        """GPS arrivals recorded for these tickets."""
        if not numbers:
            return {}
        raws = await self.redis.hmget("dsp:arrivals", list(numbers))
        return {n: orjson.loads(r) for n, r in zip(numbers, raws) if r is not None}

    async def put_arrival(self, number: str, arrival: Mapping[str, Any]) -> None:
        """Record a ticket's GPS arrival (replaces the arrival of an earlier dispatch)."""
        await self.redis.hset("dsp:arrivals", number, orjson.dumps(dict(arrival)))

    async def drop_arrivals(self, numbers: Iterable[str]) -> None:
        """Forget arrivals of tickets that are closed."""
        numbers = list(numbers)
        if numbers:
            await self.redis.hdel("dsp:arrivals", *numbers)

    # ticket alarms ------------------------------------------------------------------------------
    async def ticket_alarms(self) -> dict[str, dict[str, Any]]:
        """Every ticket alarm shown, by alarm id."""
        return {_text(k): orjson.loads(v) for k, v in (await self.redis.hgetall("dsp:alarms")).items()}

    async def raise_alarms(self, alarms: Sequence[Mapping[str, Any]]) -> None:
        """Show (or update) alarms: hash, event stream and pub/sub in one transaction."""
        if not alarms:
            return
        pipe = self.redis.pipeline(transaction=True)
        for alarm in alarms:
            data = orjson.dumps(dict(alarm))
            pipe.hset("dsp:alarms", alarm["alarm_id"], data)
            pipe.xadd(ALARM_EVENTS, {"type": "raised", "alarm_id": alarm["alarm_id"], "data": data},
                      maxlen=ALARM_EVENTS_MAX, approximate=True)
            pipe.publish(LIVE_TICKET_ALARMS, orjson.dumps({"type": "raised", **alarm}))
        await pipe.execute()

    async def clear_alarms(self, alarm_ids: Sequence[str], at: datetime) -> None:
        """Stop showing alarms (recorded as cleared events)."""
        if not alarm_ids:
            return
        pipe = self.redis.pipeline(transaction=True)
        for alarm_id in alarm_ids:
            data = orjson.dumps({"alarm_id": alarm_id, "cleared_at": at.timestamp()})
            pipe.hdel("dsp:alarms", alarm_id)
            pipe.xadd(ALARM_EVENTS, {"type": "cleared", "alarm_id": alarm_id, "data": data},
                      maxlen=ALARM_EVENTS_MAX, approximate=True)
            pipe.publish(LIVE_TICKET_ALARMS, orjson.dumps({"type": "cleared", "alarm_id": alarm_id,
                                                           "cleared_at": at.timestamp()}))
        await pipe.execute()

    # ticket changes -----------------------------------------------------------------------------
    async def ensure_changes_group(self, stream: str) -> None:
        """Create the ``dispatch`` consumer group on the ticket change stream (from the start)."""
        try:
            await self.redis.xgroup_create(stream, CHANGES_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # 110 outbox -----------------------------------------------------------------------------------
    async def outbox_add(self, *, number: str, key: str, message_id: str, body: bytes, kind: str,
                         at: datetime) -> tuple[str, bool]:
        """Persist a message before sending; (message id, created). A known idempotency key
        returns the existing message id and writes nothing."""
        last = orjson.dumps({"dir": "out", "body": body.decode("utf-8")})
        reply = await self._outbox_add(
            keys=["p110:keys", f"p110:seq:{number}", f"p110:out:{message_id}", "p110:due",
                  f"p110:msgs:{number}", f"p110:last:{number}"],
            args=[key, message_id, number, body, repr(at.timestamp()), kind, last])
        return _text(reply[1]), int(reply[0]) == 1

    async def outbox_save(self, entry: OutboxEntry, *, police_incident_id: str | None = None) -> None:
        """Write an entry's delivery state; an acknowledged entry leaves ``p110:due``."""
        fields = {"state": entry.state, "attempts": str(entry.attempts),
                  "next_attempt_at": _epoch(entry.next_attempt_at), "first_sent_at": _epoch(entry.first_sent_at),
                  "acked_at": _epoch(entry.acked_at), "alarmed_at": _epoch(entry.alarmed_at),
                  "last_error": entry.last_error}
        if police_incident_id:
            fields["police_incident_id"] = police_incident_id
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(f"p110:out:{entry.message_id}", mapping=fields)
        if entry.state == "acked":
            pipe.zrem("p110:due", entry.message_id)
        await pipe.execute()

    async def outbox_pending(self) -> list[tuple[OutboxEntry, dict[str, str]]]:
        """Every unacknowledged entry, oldest first."""
        ids = await self.redis.zrange("p110:due", 0, -1)
        return await self._entries(ids)

    async def outbox_of_ticket(self, number: str) -> list[tuple[OutboxEntry, dict[str, str]]]:
        """Every message of a ticket in its order."""
        return await self._entries(await self.redis.zrange(f"p110:msgs:{number}", 0, -1))

    async def outbox_entry(self, message_id: str) -> tuple[OutboxEntry, dict[str, str]] | None:
        """One entry, or None."""
        found = await self._entries([message_id])
        return found[0] if found else None

    async def _entries(self, ids: Sequence[Any]) -> list[tuple[OutboxEntry, dict[str, str]]]:
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for message_id in ids:
            pipe.hgetall(f"p110:out:{_text(message_id)}")
        return [entry_from_hash(raw) for raw in await pipe.execute() if raw]

    # 110 inbound and mapping ------------------------------------------------------------------------
    async def claim_nonce(self, nonce: str, ttl_s: int) -> bool:
        """Record an inbound nonce; False when it was seen before (a replay)."""
        return bool(await self.redis.set(f"p110:nonce:{nonce}", "1", nx=True, ex=ttl_s))

    async def claim_inbound(self, key: str) -> dict[str, Any] | str | None:
        """Start handling an inbound idempotency key: None when claimed now, ``"processing"``
        when another request holds it, else the stored reply of the first request."""
        if await self.redis.set(f"p110:in:{key}", "processing", nx=True, ex=60):
            return None
        raw = await self.redis.get(f"p110:in:{key}")
        if raw is None or _text(raw) == "processing":
            return "processing"
        return orjson.loads(raw)

    async def finish_inbound(self, key: str, status: int, body: Mapping[str, Any]) -> None:
        """Keep the reply of a handled inbound request for its replays."""
        await self.redis.set(f"p110:in:{key}", orjson.dumps({"status": status, "body": dict(body)}),
                             ex=INBOUND_REPLY_TTL_S)

    async def release_inbound(self, key: str) -> None:
        """Give up a claim after a failure, so a retry is handled afresh."""
        await self.redis.delete(f"p110:in:{key}")

    async def map_incident(self, police_incident_id: str, number: str, direction: str, message_id: str) -> None:
        """Link a 110 incident id and our ticket, both ways."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(f"p110:incident:{police_incident_id}", number)
        pipe.hset(f"p110:ticket:{number}", mapping={"police_incident_id": police_incident_id,
                                                    "direction": direction, "message_id": message_id})
        await pipe.execute()

    async def claim_incident(self, police_incident_id: str, marker: str) -> str | None:
        """Claim a transferred incident id for a new ticket: None when claimed, else its holder."""
        if await self.redis.set(f"p110:incident:{police_incident_id}", marker, nx=True):
            return None
        return _text(await self.redis.get(f"p110:incident:{police_incident_id}") or "")

    async def drop_incident(self, police_incident_id: str) -> None:
        """Forget a claim whose ticket could not be created."""
        await self.redis.delete(f"p110:incident:{police_incident_id}")

    async def ticket_of_incident(self, police_incident_id: str) -> str | None:
        """Our ticket number of a 110 incident id, or None."""
        value = await self.redis.get(f"p110:incident:{police_incident_id}")
        return None if value is None else _text(value)

    async def police_ticket(self, number: str) -> dict[str, str]:
        """The 110 link of a ticket (police_incident_id, direction, message_id), empty if none."""
        return {_text(k): _text(v) for k, v in (await self.redis.hgetall(f"p110:ticket:{number}")).items()}

    async def put_last_message(self, number: str, direction: str, body: bytes) -> None:
        """Remember the ticket's last police message (for CAP)."""
        await self.redis.set(f"p110:last:{number}", orjson.dumps({"dir": direction, "body": body.decode("utf-8")}))

    async def last_message(self, number: str) -> dict[str, str] | None:
        """The ticket's last police message, {"dir", "body"}, or None."""
        raw = await self.redis.get(f"p110:last:{number}")
        return None if raw is None else orjson.loads(raw)
