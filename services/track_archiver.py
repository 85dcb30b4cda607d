"""The track archiver: every closed hour of every vehicle's track is copied from Redis into the
PostgreSQL archive (`store.tracks`) long before Redis lets it expire, and the archive's
day partitions are made ahead and dropped after TRACK_ARCHIVE_DAYS.

An hour is closed SETTLE_S after its end (the ingest writes a track record within INGEST_HOLD_S
of its fix). Each pass lists the closed hours Redis holds and copies those the archive lacks or
holds from a shorter Redis string (fixes that came late: the ingest accepts a fix up to a day
old), so an hour is archived again when it grew and otherwise never twice. PostgreSQL is written
first and Redis is left to expire the hour by itself: a crash between the two loses nothing, and
the next pass finds the work done.

It runs in the `dispatch` process (`services.worker`): one per installation, restarted by the
supervisor, and not on a hot path (the ingest is scaled out and writes per message; the web
answers users). Two archivers would only repeat each other's idempotent work.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

from store.live import Store
from store.tracks import TrackStore, hour_start
from store.streams import pause

log = logging.getLogger(__name__)

SETTLE_S = 120.0  # an hour is archived this long after its end
AHEAD_DAYS = 2  # partitions made for today and the days after
INTERVAL_S = 60.0  # between two passes
VEHICLES_PER_STEP = 500  # vehicles listed together
HOURS_PER_TRANSACTION = 100  # vehicle-hours (1 Hz: 72 kB each) written in one transaction


@dataclass
class ArchivePass:
    """What one pass did."""

    hours: int = 0
    fixes: int = 0
    vehicles: int = 0
    created: list[date] = field(default_factory=list)
    dropped: list[date] = field(default_factory=list)


def utc_day(t: float) -> date:
    """The UTC day of an epoch time."""
    return datetime.fromtimestamp(t, timezone.utc).date()


class TrackArchiver:
    """Moves closed track hours from Redis to PostgreSQL and keeps the archive's partitions."""

    def __init__(self, store: Store, *, archive_days: int, settle_s: float = SETTLE_S) -> None:
        if store.db is None:
            raise ValueError("the track archiver needs the database (DATABASE_URL)")
        self.store = store
        self.tracks = TrackStore(store.db, store.redis)
        self.archive_days = archive_days
        self.settle_s = settle_s

    async def run_once(self, now: float | None = None) -> ArchivePass:
        """One pass at time `now` (epoch s): partitions, then every vehicle's closed hours."""
        now = self.store.clock.now() if now is None else now  # fix times are on the center's clock
        started = time.monotonic()
        today = utc_day(now)
        oldest = today - timedelta(days=self.archive_days)  # the first day kept
        done = ArchivePass()
        done.created = await self.tracks.ensure_partitions(today + timedelta(days=i) for i in range(AHEAD_DAYS + 1))
        done.dropped = await self.tracks.drop_partitions(oldest)
        if done.created or done.dropped:
            log.info("track archive partitions: created %s, dropped %s", [str(d) for d in done.created],
                     [str(d) for d in done.dropped])
        first = (oldest - date(1970, 1, 1)).days * 24
        last = int((now - self.settle_s) // 3600) - 1  # the last closed hour
        ids = await self.store.vehicle_ids()
        for at in range(0, len(ids), VEHICLES_PER_STEP):
            chunk = ids[at:at + VEHICLES_PER_STEP]
            hours, fixes, vehicles = await self._archive_vehicles(chunk, first, last, done)
            done.hours, done.fixes, done.vehicles = done.hours + hours, done.fixes + fixes, done.vehicles + vehicles
            if hours and len(ids) > VEHICLES_PER_STEP:
                log.info("track archive: %d/%d vehicles looked at, %d hours (%d fixes) archived so far",
                         min(at + VEHICLES_PER_STEP, len(ids)), len(ids), done.hours, done.fixes)
        if done.hours:
            log.info("track archive: %d hours (%d fixes) of %d vehicles archived in %.1f s", done.hours,
                     done.fixes, done.vehicles, time.monotonic() - started)
        return done

    async def _archive_vehicles(self, ids: list[str], first: int, last: int,
                                done: ArchivePass) -> tuple[int, int, int]:
        """Archive the closed hours of these vehicles that the archive lacks or holds shorter."""
        if last < first:
            return 0, 0, 0
        live = await self.tracks.closed_hours(ids, first, last)
        if not live:
            return 0, 0, 0
        have = await self.tracks.archived_sources(ids, min(h for _, h in live), last)
        todo = sorted(key for key, length in live.items() if have.get(key) != length)
        if not todo:
            return 0, 0, 0
        done.created += await self.tracks.ensure_partitions(hour_start(h).date() for _, h in todo)
        hours = fixes = 0
        for at in range(0, len(todo), HOURS_PER_TRANSACTION):
            written, count = await self.tracks.archive(todo[at:at + HOURS_PER_TRANSACTION])
            hours, fixes = hours + written, fixes + count
        return hours, fixes, len({vid for vid, _ in todo})

    async def run(self, stop: asyncio.Event, interval_s: float = INTERVAL_S) -> None:
        """Pass every `interval_s` seconds until `stop`; a pass that fails is logged and retried."""
        while not stop.is_set():
            try:
                await self.run_once()
            except (OSError, psycopg.Error, RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("track archive pass failed (%s); retrying in %.0f s", exc, interval_s)
            await pause(stop, interval_s)
