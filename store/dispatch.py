"""The dispatch area of the store: recommendations, GPS arrivals and ticket alarms. Nobody else
spells these keys. Crews' shifts are in PostgreSQL (``store.fleet.FleetStore.shifts``).

Dispatch (``{n}`` is a ticket number, ``{crew}`` a crew id):

- ``dsp:rec:{n}`` string, JSON of the latest recommendation shown to dispatchers (expires after 7 days).
- ``dsp:arrivals`` hash number → JSON ``{"at", "crew_id", "vehicle_id", "distance_m",
  "dispatched_at"}``: the vehicle's GPS arrival within the radius, valid for that dispatch only.
- ``dsp:alarms`` hash alarm id (``{n}|{what}``; what is a time-limit stage, or ``declined``,
  ``accept_timeout``, ``no_candidate``, ``returned``, ``police_ack``) → JSON of the alarm shown
  on the console; ``dsp:alarm_events`` stream (capped at about 100,000) of ``raised`` /
  ``cleared`` events (fields ``type``, ``alarm_id``, ``data``); pub/sub ``live:ticket_alarms``
  the same events as JSON.
- Consumer group ``dispatch`` on ``tkt:changes`` (stream owned by ``store.ticket_publish``).

The 110 linkage's record (outbox, inbound idempotency and nonces, incident links) is in
PostgreSQL, owned by ``store.police``; only its ``police_ack`` alarms are here.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

CHANGES_GROUP = "dispatch"
LIVE_TICKET_ALARMS = "live:ticket_alarms"
ALARM_EVENTS = "dsp:alarm_events"
ALARM_EVENTS_MAX = 100_000
RECOMMENDATION_TTL_S = 7 * 86400


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class DispatchStore:
    """Typed access to the dispatch keys (same Redis client as the other stores)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

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

