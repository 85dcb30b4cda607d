"""KpiService: the live KPI state of one process, rebuilt from the audit streams and kept current.

`start()` rebuilds a `command.kpi.KpiState` from every ticket's audit stream (SCAN + pipelined
XRANGE, progress logged), remembering the ``tkt:changes`` id it started after. A background task
then follows ``tkt:changes`` with XREAD (no consumer group: every web process keeps its own
state) and, for each changed ticket, applies only its events after the last stream id already
applied to that ticket, so nothing is missed or counted twice between the rebuild and the
follow. `current()` catches up with pending changes first, so a report right after a write
includes it.

Redis trouble is logged (a warning), counted in `counters` and retried; while Redis is away
`current()` answers with the state it has. After trouble, when the change stream no longer
holds the last entry seen (trimmed past it, or the database was reset), the state is rebuilt.

`rebuild_from_redis` is the other path: the pure `command.kpi.rebuild` over the streams alone,
read with a blocking client (the ``python -m center kpi`` command).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timezone, tzinfo
from typing import Any, TextIO

import orjson
import redis as redis_sync
import redis.asyncio as aioredis

from center.redis_client import connect_sync
from center.store_kpi import ZERO_ID, Entry, KpiStreams, id_key, iter_all_events, parse_event
from center.streams import REDIS_TROUBLE, pause, stop_if_cancelled
from command.errors import ValidationError
from command.kpi import EventError, KpiState, rebuild
from command.limits import DEFAULT_POLICY, LimitPolicy
from command.ticket_model import CENTER_TZ

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0


class KpiUnavailable(Exception):
    """The KPI state is not built yet (Redis unreachable since start-up)."""

    code = "kpi_unavailable"


class KpiService:
    """Per-process KPI state: rebuilt at start, then fed by the ticket change stream."""

    def __init__(self, client: aioredis.Redis, *, policy: LimitPolicy = DEFAULT_POLICY, tz: tzinfo = CENTER_TZ,
                 batch: int = 500, block_ms: int = 1000, retry_s: float = 1.0, ready_timeout_s: float = 10.0) -> None:
        self.streams = KpiStreams(client)
        self.policy = policy
        self.tz = tz
        self.batch = batch
        self.block_ms = block_ms
        self.retry_s = retry_s
        self.ready_timeout_s = ready_timeout_s
        self.counters: Counter[str] = Counter()
        self._state: KpiState | None = None
        self._applied: dict[str, str] = {}  # ticket number → last audit stream id applied
        self._last_change = ZERO_ID
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._check_gap = False
        self._progress = (0, 0)  # tickets and events read by the rebuild in progress

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, wait: bool = True) -> None:
        """Rebuild from every audit stream, then follow the change stream in the background.
        With ``wait=False`` the rebuild runs in the background too: a web process serves at once,
        and a report asked meanwhile waits up to ``ready_timeout_s``, then gets KpiUnavailable
        naming the rebuild's progress (a year of a big line takes tens of seconds)."""
        self._stop.clear()
        if wait:
            await self._first_build()
            self._task = asyncio.create_task(self._follow(), name="kpi-follow")
        else:
            self._task = asyncio.create_task(self._build_then_follow(), name="kpi-build-follow")

    async def _first_build(self) -> None:
        try:
            await self._rebuild()
        except REDIS_TROUBLE as exc:
            self._trouble("rebuild", exc)

    async def _build_then_follow(self) -> None:
        await self._first_build()
        await self._follow()

    async def stop(self) -> None:
        """Stop following the change stream."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def current(self) -> KpiState:
        """The KPI state including every change written so far (KpiUnavailable before the first
        rebuild succeeded; the last known state while Redis is away)."""
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), self.ready_timeout_s)
            except asyncio.TimeoutError:
                tickets, events = self._progress
                raise KpiUnavailable(f"the KPI state is not built yet: rebuilding from the audit streams, "
                                     f"{tickets} tickets and {events} events read so far" if tickets else
                                     "the KPI state is not built yet (rebuilding, or Redis unreachable)") from None
        try:
            async with self._lock:
                await self._catch_up()
        except REDIS_TROUBLE as exc:
            self._trouble("catch-up", exc)
        assert self._state is not None
        return self._state

    def stats(self) -> dict[str, Any]:
        """Counters (rebuilds, changes_read, events_applied, bad_events, redis_errors) and position."""
        return {**self.counters, "tickets": 0 if self._state is None else len(self._state),
                "last_change": self._last_change, "ready": self._ready.is_set()}

    # ------------------------------------------------------------------ rebuild

    async def _rebuild(self) -> None:
        """Build a fresh state from every audit stream (under the lock: reports wait for it)."""
        async with self._lock:
            started = time.monotonic()
            since = await self.streams.changes_tail()  # first: a write after it is followed later
            state, applied = KpiState(policy=self.policy), {}
            events, last_log = 0, started
            async for numbers in self.streams.ticket_batches(self.batch):
                fresh = {n: None for n in numbers if n not in applied}
                for number, entries in (await self.streams.events_after(fresh)).items():
                    events += self._feed(state, applied, number, entries)
                self._progress = (len(applied), events)
                if time.monotonic() - last_log >= PROGRESS_EVERY_S:
                    last_log = time.monotonic()
                    log.info("kpi rebuild: %d tickets, %d events so far", len(applied), events)
            state.flush()
            self._state, self._applied, self._last_change = state, applied, since
            self._check_gap = False
            self.counters["rebuilds"] += 1
            self._ready.set()
            log.info("kpi rebuild: %d tickets, %d events in %.1f s (changes after %s)",
                     len(applied), events, time.monotonic() - started, since)

    def _feed(self, state: KpiState, applied: dict[str, str], number: str, entries: list[Entry]) -> int:
        """Apply one ticket's new audit entries; an unreadable one is logged, counted and skipped."""
        good = 0
        for stream_id, raw in entries:
            try:
                state.apply(parse_event(raw))
                good += 1
            except (EventError, orjson.JSONDecodeError, TypeError) as exc:
                self.counters["bad_events"] += 1
                log.warning("kpi: audit entry %s of %s skipped: %s", stream_id, number, exc)
            applied[number] = stream_id
        self.counters["events_applied"] += good
        return good

    # ------------------------------------------------------------------ follow

    async def _catch_up(self) -> None:
        """Apply every change after the last one seen (the caller holds the lock)."""
        state = self._state
        if state is None:
            return
        while True:
            changes = await self.streams.changes_after(self._last_change, self.batch)
            if not changes:
                return
            numbers = dict.fromkeys(f["number"] for _, f in changes if f.get("number"))
            found = await self.streams.events_after({n: self._applied.get(n) for n in numbers})
            for number, entries in found.items():
                self._feed(state, self._applied, number, entries)
            self._last_change = changes[-1][0]
            self.counters["changes_read"] += len(changes)
            if len(changes) < self.batch:
                return

    async def _follow(self) -> None:
        """Wait for changes (blocking XREAD) and apply them, until stopped; Redis trouble is retried."""
        while not self._stop.is_set():
            stop_if_cancelled()
            try:
                if not self._ready.is_set() or await self._needs_rebuild():
                    await self._rebuild()
                    continue
                news = await self.streams.changes_after(self._last_change, 1, self.block_ms)
                if news:
                    async with self._lock:
                        await self._catch_up()
            except REDIS_TROUBLE as exc:
                self._trouble("follow", exc)
                await pause(self._stop, self.retry_s)
            except Exception:  # a bug must not stop the live KPIs for good: logged loudly, retried
                self.counters["errors"] += 1
                log.exception("kpi follow failed; retrying")
                await pause(self._stop, self.retry_s)

    async def _needs_rebuild(self) -> bool:
        """After Redis trouble: whether the change stream lost entries we never read (trimmed past
        the last one seen, or the database was reset)."""
        if not self._check_gap:
            return False
        self._check_gap = False
        if self._last_change == ZERO_ID:
            return False
        head, tail = await self.streams.changes_head(), await self.streams.changes_tail()
        last = id_key(self._last_change)
        if head is None or id_key(tail) < last or id_key(head) > last:
            log.warning("kpi: the change stream no longer holds %s (head %s, tail %s); rebuilding",
                        self._last_change, head, tail)
            return True
        return False

    def _trouble(self, what: str, exc: BaseException) -> None:
        self.counters["redis_errors"] += 1
        self._check_gap = True
        log.warning("kpi %s: redis unavailable (%s); retrying", what, exc or type(exc).__name__)


def rebuild_from_redis(client: redis_sync.Redis, *, policy: LimitPolicy = DEFAULT_POLICY, batch: int = 500,
                       progress: Callable[[int, int], None] | None = None) -> KpiState:
    """The KPI state recomputed from the audit streams alone with `command.kpi.rebuild`."""
    return rebuild(iter_all_events(client, batch=batch, progress=progress), policy=policy)


def report_command(redis_url: str, args: Mapping[str, Any], *, tz: tzinfo = CENTER_TZ,
                   out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``python -m center kpi``: rebuild from the audit streams alone and print the report JSON
    (the shape of GET /api/reports/kpi) on `out`, progress on `err`. Returns the exit status."""
    from services.kpi_query import parse_query, report_payload

    today = datetime.now(timezone.utc).astimezone(tz).date()
    try:
        query = parse_query(lambda name: args.get(name), today=today)
    except ValidationError as exc:
        print(f"kpi: {exc}", file=err)
        return 2
    client = connect_sync(redis_url)
    started = last = time.monotonic()

    def progress(tickets: int, events: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            print(f"kpi rebuild: {tickets} tickets, {events} events so far", file=err, flush=True)

    try:
        state = rebuild_from_redis(client, progress=progress)
    except REDIS_TROUBLE as exc:
        print(f"kpi: redis unavailable at {redis_url}: {exc}", file=err)
        return 1
    finally:
        client.close()
    print(f"kpi rebuild: {len(state)} tickets in {time.monotonic() - started:.1f} s", file=err, flush=True)
    out.write(orjson.dumps(report_payload(state, query, tz), option=orjson.OPT_INDENT_2).decode() + "\n")
    out.flush()
    return 0
