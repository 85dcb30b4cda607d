"""Consumer-group reading of a Redis stream, shared by every service that consumes one.

Entries left pending by a crashed consumer are handled first, then new ones; each entry is
acknowledged (XACK) once handled. An entry the handler refuses with one of the ``skip`` errors is
logged and acknowledged; a Redis or PostgreSQL failure (`SERVERS_AWAY`) is retried after a pause
without acknowledging: the entry and those after it are read again from the consumer's pending
entries. A group that a Redis wipe removed (NOGROUP) is recreated from the start of the
stream as it is now.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, Awaitable, Callable, Mapping

import psycopg
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

REDIS_TROUBLE = (OSError, RedisConnectionError, RedisTimeoutError)
SERVERS_AWAY = REDIS_TROUBLE + (psycopg.OperationalError,)  # a handler's Redis or PostgreSQL is away: retry


def stop_if_cancelled() -> None:
    """Raise CancelledError when the running task has been asked to cancel.

    A retry loop calls it at every turn: a cancellation can be lost on its way (Python 3.11's
    ``wait_for`` may turn one that meets its own timeout into a timeout), and a loop that went on
    would then keep its service from ever stopping. A web process whose port was taken waited
    forever for its KPI task this way (CI, session 6)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for ``seconds`` unless ``stop`` is set first; a cancellation always comes through."""
    if not stop.is_set():
        try:
            async with asyncio.timeout(seconds):
                await stop.wait()
        except TimeoutError:
            pass
    stop_if_cancelled()


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def text_fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A stream entry's fields as text, whatever the client's decoding."""
    return {(k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in raw.items()}


async def consume_group(redis: aioredis.Redis, stream: str, group: str,
                        handle: Callable[[dict[str, str]], Awaitable[None]], stop: asyncio.Event, *,
                        skip: tuple[type[BaseException], ...], what: str, consumer: str | None = None,
                        block_ms: int = 1000, batch: int = 100,
                        on_group_lost: Callable[[], Awaitable[None]] | None = None) -> None:
    """Feed the entries of ``stream`` to ``handle`` through consumer group ``group`` until ``stop``.
    ``on_group_lost`` is awaited after a group a wipe removed was recreated (entries published
    before the wipe and not yet read are gone: the consumer catches up from its record)."""
    consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
    backlog, grouped = True, False
    while not stop.is_set():
        stop_if_cancelled()
        try:
            if not grouped:
                await ensure_group(redis, stream, group)
                grouped = True
            reply = await redis.xreadgroup(group, consumer, {stream: "0" if backlog else ">"},
                                           count=batch, block=None if backlog else block_ms)
        except REDIS_TROUBLE as exc:
            log.warning("%s: redis unavailable (%s); retrying", what, exc)
            await pause(stop, 1.0)
            continue
        except ResponseError as exc:  # Redis was wiped (FLUSHALL, restarted without its AOF)
            if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):  # UNBLOCKED: Redis 7, a blocked read
                raise
            log.warning("%s: consumer group %s of %s is gone (Redis was wiped); recreating it", what, group, stream)
            await ensure_group(redis, stream, group)
            backlog = True
            if on_group_lost is not None:
                try:
                    await on_group_lost()
                except skip + SERVERS_AWAY as exc:
                    log.warning("%s: catching up after the wipe failed: %s", what, exc)
            continue
        entries = reply[0][1] if reply else []
        if backlog and not entries:
            backlog = False
            continue
        for entry_id, fields in entries:
            try:
                await handle(text_fields(fields))
            except skip as exc:
                log.warning("%s: entry %s skipped: %s", what, entry_id, exc)
            except SERVERS_AWAY as exc:  # it and the entries after it stay pending: read again
                log.warning("%s: entry %s not handled yet (%s)", what, entry_id, exc)
                backlog = True
                await pause(stop, 1.0)
                break
            try:
                await redis.xack(stream, group, entry_id)
            except REDIS_TROUBLE as exc:  # handled, not acknowledged: it comes again (consumers skip repeats)
                log.warning("%s: entry %s not acknowledged yet (%s)", what, entry_id, exc)
                backlog = True
                await pause(stop, 1.0)
                break
