"""Read-only access to the tickets' audit streams for the KPIs (`services.kpi_service`).

The keys are those of `center.store_tickets` (which writes them): ``tkt:{number}:events``, one
stream per ticket whose entries carry field ``e`` = `command.tickets.event_to_dict` JSON, and
``tkt:changes``, one summary entry (number, version, action, state) per ticket write, written by
the same script call as the events. This module only reads them:

- every ticket's events, found by SCAN (streams matching ``tkt:*:events``) and read with
  pipelined XRANGE, for a rebuild (async for a web process, sync for the ``kpi`` command);
- the changes after a given stream id (XREAD), and each changed ticket's events after the last
  stream id already applied (XRANGE with an exclusive start), for the incremental path.

Stream ids are ``"<ms>-<seq>"`` strings; `id_key` orders them.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import orjson
import redis as redis_sync
import redis.asyncio as aioredis

from center.store_tickets import CHANGES_STREAM

EVENTS_MATCH = "tkt:*:events"
_PREFIX, _SUFFIX = "tkt:", ":events"
ZERO_ID = "0-0"

Entry = tuple[str, Any]  # (stream id, raw event JSON)


def events_key(number: str) -> str:
    """The audit stream key of a ticket."""
    return f"{_PREFIX}{number}{_SUFFIX}"


def number_of(key: Any) -> str:
    """The ticket number of an audit stream key."""
    return _text(key)[len(_PREFIX):-len(_SUFFIX)]


def id_key(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable (milliseconds, sequence) pair."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def parse_event(raw: Any) -> dict[str, Any]:
    """The event dict of an entry's ``e`` field (orjson.JSONDecodeError on garbage)."""
    return orjson.loads(raw)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event_field(fields: Mapping[Any, Any]) -> Any:
    return fields.get(b"e", fields.get("e"))


def _entries(rows: list[tuple[Any, Mapping[Any, Any]]]) -> list[Entry]:
    return [(_text(sid), _event_field(fields)) for sid, fields in rows]


class KpiStreams:
    """Async reads of the audit streams and of the change stream."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def changes_tail(self) -> str:
        """The id of the newest ``tkt:changes`` entry ("0-0" when there is none)."""
        rows = await self.redis.xrevrange(CHANGES_STREAM, "+", "-", count=1)
        return _text(rows[0][0]) if rows else ZERO_ID

    async def changes_head(self) -> str | None:
        """The id of the oldest ``tkt:changes`` entry still kept, or None."""
        rows = await self.redis.xrange(CHANGES_STREAM, "-", "+", count=1)
        return _text(rows[0][0]) if rows else None

    async def ticket_batches(self, batch: int) -> AsyncIterator[list[str]]:
        """Ticket numbers that have an audit stream, `batch` at a time (SCAN may repeat one)."""
        numbers: list[str] = []
        async for key in self.redis.scan_iter(match=EVENTS_MATCH, count=batch, _type="stream"):
            numbers.append(number_of(key))
            if len(numbers) >= batch:
                yield numbers
                numbers = []
        if numbers:
            yield numbers

    async def events_after(self, after: Mapping[str, str | None]) -> dict[str, list[Entry]]:
        """For each ticket, its audit entries after the given stream id (all when None), in order."""
        if not after:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for number, last in after.items():
            pipe.xrange(events_key(number), "-" if last is None else f"({last}", "+")
        replies = await pipe.execute()
        return {number: _entries(rows) for number, rows in zip(after, replies)}

    async def changes_after(self, last_id: str, count: int,
                            block_ms: int | None = None) -> list[tuple[str, dict[str, str]]]:
        """``tkt:changes`` entries after `last_id` (at most `count`; waits up to `block_ms` when given)."""
        reply = await self.redis.xread({CHANGES_STREAM: last_id}, count=count, block=block_ms)
        if not reply:
            return []
        return [(_text(sid), {_text(k): _text(v) for k, v in fields.items()}) for sid, fields in reply[0][1]]


def iter_all_events(client: redis_sync.Redis, *, batch: int = 500,
                    progress: Callable[[int, int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every ticket's audit events (dicts, in order per ticket), read with a blocking client: SCAN
    then one pipelined XRANGE per `batch` tickets, so memory holds one batch. `progress(tickets,
    events)` is called after each batch. An unreadable entry raises orjson.JSONDecodeError."""
    seen: set[str] = set()
    tickets = events = 0
    numbers: list[str] = []

    def read(chunk: list[str]) -> Iterator[dict[str, Any]]:
        pipe = client.pipeline(transaction=False)
        for number in chunk:
            pipe.xrange(events_key(number), "-", "+")
        for rows in pipe.execute():
            for _, fields in rows:
                yield parse_event(_event_field(fields))

    for key in client.scan_iter(match=EVENTS_MATCH, count=batch, _type="stream"):
        number = number_of(key)
        if number in seen:
            continue
        seen.add(number)
        numbers.append(number)
        if len(numbers) >= batch:
            for event in read(numbers):
                events += 1
                yield event
            tickets += len(numbers)
            numbers = []
            if progress is not None:
                progress(tickets, events)
    if numbers:
        for event in read(numbers):
            events += 1
            yield event
        tickets += len(numbers)
    if progress is not None:
        progress(tickets, events)
