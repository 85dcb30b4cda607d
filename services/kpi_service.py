"""KpiService: keeps the KPI facts in PostgreSQL current, and hands reports their period's rows.

The facts (`store.kpi`: one row per ticket, ``kpi_facts``, and the running fold of its
events, ``kpi_folds``) are folded from the audit events in ``ticket_events`` with the pure
`command.kpi_facts.TicketAccumulator`; `command.kpi.named_row` decides what a ticket's row is.

- `start()` remembers the tail of ``tkt:changes``, then SWEEPS: every ticket whose fold is
  missing or behind its version (``tickets.version``) is folded from its events after the fold's
  last event id. On a fresh database this folds every ticket once (progress logged); afterwards
  it finds only what changed while no KPI service ran.
- A background task follows ``tkt:changes`` with XREAD (no consumer group: any process may
  apply a change; the facts' ``last_event_id`` guard keeps one write per event) and folds each
  changed ticket's events after its fold's last event id, so nothing is missed or counted twice.
- `current()` first applies the changes written so far, so a report right after a write
  includes it. While Redis is away (or after it lost the stream: wiped, restarted empty) the
  sweep stands in for the stream: reports still include every committed write, and nothing of
  the KPIs was ever kept only in Redis.
- PostgreSQL down: `frame()` raises `KpiUnavailable` (the API answers 503); the follower logs,
  counts and retries.

`rebuild_from_db` is the other path: the pure `command.kpi.rebuild` over every audit event read
from PostgreSQL alone (``python -m center kpi``, `services.kpi_query.report_command`); tests hold
the two to the same report.

Both judge the stages' limits with the policy of the settings files CALENDAR_FILE and LIMITS_FILE
(`config.limit_files`), the one the web and dispatch processes run on: the web process hands its
ticket manager's policy in, ``python -m center kpi`` loads it from the settings, and without one
(`shipped_policy`) it is the policy of the files shipped in ``config/``, never the
calendar-less built-in `command.limits.DEFAULT_POLICY`. So a complaint resolved within its working
days over a holiday is on time in the reports as it was in the ticket list.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

import orjson
import psycopg
import redis.asyncio as aioredis

from store.db import Database
from config.limit_files import load_calendar, load_limits
from store.kpi import ZERO_ID, FoldRow, KpiChanges, KpiFacts, iter_all_events
from store.streams import REDIS_TROUBLE, pause, stop_if_cancelled
from command.errors import CommandError
from command.kpi import EventError, KpiFrame, KpiState, named_row, rebuild
from command.kpi_events import read_event
from command.kpi_facts import LimitTable, TicketAccumulator
from command.limits import LimitPolicy
from command.ticket_model import CENTER_TZ

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0
DB_TROUBLE = (psycopg.OperationalError, psycopg.errors.AdminShutdown)


@functools.lru_cache(maxsize=1)
def shipped_policy() -> LimitPolicy:
    """The limit policy of the files shipped in ``config/`` (calendar.toml, limits.toml) in
    Asia/Shanghai: what empty CALENDAR_FILE / LIMITS_FILE settings load (read once)."""
    return load_limits(calendar=load_calendar())


class KpiUnavailable(CommandError):
    """The KPIs cannot be read now (not swept yet, or PostgreSQL unreachable): HTTP 503."""

    status = 503
    code = "kpi_unavailable"


class KpiService:
    """Per-process follower of the ticket changes that keeps the KPI facts current."""

    def __init__(self, db: Database, client: aioredis.Redis, *, policy: LimitPolicy | None = None,
                 tz: tzinfo = CENTER_TZ, batch: int = 500, block_ms: int = 1000, retry_s: float = 1.0,
                 ready_timeout_s: float = 10.0) -> None:
        self.facts = KpiFacts(db)
        self.changes = KpiChanges(client)
        self.policy = policy = shipped_policy() if policy is None else policy  # limits judged on it
        self.limits = LimitTable(policy)
        self.tz = tz
        self.batch = batch
        self.block_ms = block_ms
        self.retry_s = retry_s
        self.ready_timeout_s = ready_timeout_s
        self.counters: Counter[str] = Counter()
        self._last_change = ZERO_ID
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._resync = False  # Redis trouble seen: take the stream's tail again and sweep
        self._progress = 0  # tickets folded by the sweep in progress

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, wait: bool = True) -> None:
        """Sweep (fold every ticket whose facts are behind), then follow the change stream in the
        background. With ``wait=False`` the sweep runs in the background too: a web process serves
        at once, and a report asked meanwhile waits up to ``ready_timeout_s``, then gets
        KpiUnavailable naming the sweep's progress (the first sweep of a big archive takes minutes)."""
        self._stop.clear()
        if wait:
            await self._first_sync()
            self._task = asyncio.create_task(self._follow(), name="kpi-follow")
        else:
            self._task = asyncio.create_task(self._sync_then_follow(), name="kpi-sync-follow")

    async def _first_sync(self) -> None:
        try:
            await self._sync()
        except REDIS_TROUBLE as exc:
            self._trouble("sync", exc)
        except DB_TROUBLE as exc:
            self._db_trouble("sync", exc)

    async def _sync_then_follow(self) -> None:
        await self._first_sync()
        await self._follow()

    async def stop(self) -> None:
        """Stop following the change stream."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def current(self) -> KpiFacts:
        """The facts including every change committed so far (KpiUnavailable before the first sweep
        or while PostgreSQL is unreachable)."""
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), self.ready_timeout_s)
            except asyncio.TimeoutError:
                raise KpiUnavailable(
                    f"the KPIs are not ready yet: folding the audit events, {self._progress} tickets so far"
                    if self._progress else "the KPIs are not ready yet (sweeping, or PostgreSQL unreachable)") from None
        try:
            async with self._lock:
                try:
                    if self._resync:
                        await self._sync_locked()
                    else:
                        await self._catch_up()
                except REDIS_TROUBLE as exc:
                    self._trouble("catch-up", exc)
                    await self._sweep()  # without the stream, PostgreSQL says what changed
        except DB_TROUBLE as exc:
            self._db_trouble("catch-up", exc)
            raise KpiUnavailable(f"PostgreSQL unavailable: {exc}") from None
        return self.facts

    async def frame(self, start: datetime, end: datetime, *, category: Sequence[str] = (),
                    district: Sequence[str] = (), unit: Sequence[str] = (), numbers: bool = False,
                    full: bool = True) -> KpiFrame:
        """The KPI rows of the tickets created or resolved in [start, end), current, filtered
        (``full=False``: a report's columns only, `store.kpi.KpiFacts.frame`)."""
        facts = await self.current()
        try:
            return await facts.frame(start, end, category=category, district=district, unit=unit, numbers=numbers,
                                     full=full)
        except DB_TROUBLE as exc:
            self._db_trouble("report", exc)
            raise KpiUnavailable(f"PostgreSQL unavailable: {exc}") from None

    def stats(self) -> dict[str, Any]:
        """Counters (sweeps, tickets_folded, changes_read, events_applied, bad_events, redis_errors,
        db_errors) and the position in the change stream."""
        return {**self.counters, "last_change": self._last_change, "ready": self._ready.is_set()}

    # ------------------------------------------------------------------ folding

    async def fold(self, numbers: Sequence[str], *, fresh: bool = False) -> int:
        """Fold the new events of these tickets into their facts (all their events when `fresh`);
        the number of events applied."""
        rows = await self.facts.pending(list(dict.fromkeys(numbers)), fresh=fresh)
        folded, applied, unreadable = [], 0, []
        for row in rows:
            acc = self._accumulator(row)
            if acc is None:
                unreadable.append(row.number)
                continue
            last = row.last_event_id
            for event_id, raw in row.events:
                try:
                    event = orjson.loads(raw)
                    acc.feed(*_event_args(event))
                    applied += 1
                except (EventError, orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
                    self.counters["bad_events"] += 1
                    log.warning("kpi: audit event %s of %s skipped: %s", event_id, row.number, exc)
                last = event_id
            if acc.created is None and last == 0:
                continue  # no event yet (the ticket's first write is still in flight)
            folded.append((row, acc, last, named_row(acc, self.limits)))
        await self.facts.write(folded, force=fresh)
        self.counters["events_applied"] += applied
        self.counters["tickets_folded"] += len(folded)
        if unreadable:
            applied += await self.fold(unreadable, fresh=True)
        return applied

    def _accumulator(self, row: FoldRow) -> TicketAccumulator | None:
        """The ticket's fold so far (a new one without a fold; None when the kept one is unreadable,
        e.g. written by an older version of the fold: its events are then folded again)."""
        if row.fold is None:
            return TicketAccumulator(row.number)
        try:
            return TicketAccumulator.from_dict(row.fold)
        except EventError as exc:
            log.warning("kpi: fold of %s unreadable (%s); folding its events again", row.number, exc)
            return None

    async def _sweep(self) -> int:
        """Fold every ticket whose fold is missing or behind; the number of tickets folded."""
        started = last_log = time.monotonic()
        after, total = "", 0
        while True:
            numbers = await self.facts.stale(after, self.batch)
            if not numbers:
                break
            await self.fold(numbers)
            total += len(numbers)
            self._progress = total
            after = numbers[-1]
            if time.monotonic() - last_log >= PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log.info("kpi sweep: %d tickets folded so far", total)
        self.counters["sweeps"] += 1
        if total:
            log.info("kpi sweep: %d tickets folded in %.1f s", total, time.monotonic() - started)
        return total

    # ------------------------------------------------------------------ follow

    async def _sync(self) -> None:
        async with self._lock:
            await self._sync_locked()

    async def _sync_locked(self) -> None:
        """Take the change stream's tail, then sweep: a write committed after the sweep read its
        ticket is published after that tail, so the follower sees it."""
        since = await self.changes.tail()
        self._resync = False
        await self._sweep()
        self._last_change = since
        self._ready.set()

    async def _catch_up(self) -> None:
        """Fold every change after the last one seen (the caller holds the lock)."""
        while True:
            changes = await self.changes.after(self._last_change, self.batch)
            if not changes:
                return
            if await self.changes.lost_after(self._last_change):  # a wipe without an error (FLUSHALL)
                log.warning("kpi: the change stream lost entries after %s; sweeping", self._last_change)
                self.counters["stream_lost"] += 1
                await self._sync_locked()
                return
            numbers = [f["number"] for _, f in changes if f.get("number")]
            await self.fold(numbers)
            self._last_change = changes[-1][0]
            self.counters["changes_read"] += len(changes)
            if len(changes) < self.batch:
                return

    async def _follow(self) -> None:
        """Wait for changes (blocking XREAD) and fold them, until stopped; trouble is retried."""
        while not self._stop.is_set():
            stop_if_cancelled()
            try:
                if not self._ready.is_set() or self._resync:
                    await self._sync()
                    continue
                news = await self.changes.after(self._last_change, 1, self.block_ms)
                if news:
                    async with self._lock:
                        await self._catch_up()
            except REDIS_TROUBLE as exc:
                self._trouble("follow", exc)
                await pause(self._stop, self.retry_s)
            except DB_TROUBLE as exc:
                self._db_trouble("follow", exc)
                await pause(self._stop, self.retry_s)
            except Exception:  # a bug must not stop the live KPIs for good: logged loudly, retried
                self.counters["errors"] += 1
                log.exception("kpi follow failed; retrying")
                await pause(self._stop, self.retry_s)

    def _trouble(self, what: str, exc: BaseException) -> None:
        self.counters["redis_errors"] += 1
        self._resync = True
        log.warning("kpi %s: redis unavailable (%s); retrying", what, exc or type(exc).__name__)

    def _db_trouble(self, what: str, exc: BaseException) -> None:
        self.counters["db_errors"] += 1
        log.warning("kpi %s: PostgreSQL unavailable (%s); retrying", what, exc or type(exc).__name__)


def _event_args(event: Mapping[str, Any]) -> tuple[str, float, Mapping[str, Any], str | None]:
    """(action, epoch time, data, to_state) of an event dict, as `TicketAccumulator.feed` takes them."""
    _, action, at, data = read_event(event)
    to_state = event.get("to_state")
    return action, at, data, None if to_state is None else str(to_state)


def rebuild_from_db(url: str, *, policy: LimitPolicy | None = None,
                    progress: Callable[[int], None] | None = None) -> KpiState:
    """The KPI state recomputed from every audit event in PostgreSQL with `command.kpi.rebuild`,
    limits judged on `policy` (default: `shipped_policy`)."""
    return rebuild(iter_all_events(url, progress=progress), policy=shipped_policy() if policy is None else policy)
