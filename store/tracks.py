"""Vehicle tracks: the live hours in Redis and the archive in PostgreSQL, read as one track.

Owns the PostgreSQL table ``track_hours`` (migration 0005) and its day partitions
``track_hours_YYYYMMDD``: one row per vehicle per UTC hour, ``records`` the hour's packed 20-byte
track records (`store.track_codec.TRACK_RECORD`) as Redis held them, ``source_bytes`` the length of
the Redis string they were last archived from.

Reads the Redis keys ``trk:{id}:{hour}`` (the packed records of one UTC hour, appended by the
ingest's ``WRITE_FIXES`` script in `store.live`) and ``trkidx:{id}`` (the hours present); both
expire after TRACK_RETENTION_H (plus an hour), and nothing here deletes them.

An hour present in both places is merged (`merge_records`): Redis only appends, so the longer of
two strings that start alike is the whole hour; otherwise (Redis was wiped and the hour written
again) the archived records come first, then the live ones not among them. Archiving stores the
same merge, so an hour archived twice is stored once.
"""
from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

import redis.asyncio as aioredis
from psycopg import sql

from store.db import Database
from store.track_codec import TRACK_RECORD, decode_fixes

RECORD = TRACK_RECORD.size  # 20 bytes a fix
PARENT = "track_hours"
_PARTITION_LOCK = 0x747261636B73  # pg_advisory_xact_lock key of partition changes ("tracks")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def whole(data: bytes | None) -> bytes:
    """The whole records of a packed track (a cut-off tail record dropped)."""
    if not data:
        return b""
    return data[:len(data) - len(data) % RECORD]


def merge_records(archived: bytes | None, live: bytes | None) -> bytes:
    """One hour's records from the archive and from Redis: all of both, those in both once (see
    the module)."""
    archived, live = whole(archived), whole(live)
    if live.startswith(archived):
        return live
    if archived.startswith(live):
        return archived
    known = {archived[i:i + RECORD] for i in range(0, len(archived), RECORD)}
    extra = [live[i:i + RECORD] for i in range(0, len(live), RECORD) if live[i:i + RECORD] not in known]
    return archived + b"".join(extra)


def hour_start(hour: int) -> datetime:
    """The start of a UTC hour (hours since the epoch) as an aware datetime."""
    return _EPOCH + timedelta(hours=hour)


def partition_name(day: date) -> str:
    """The name of the partition holding a UTC day's hours."""
    return f"{PARENT}_{day:%Y%m%d}"


class TrackStore:
    """Track history of the vehicles: live hours from Redis, archived hours from PostgreSQL
    (None: Redis only), and the archiving itself."""

    def __init__(self, db: Database | None, redis: aioredis.Redis) -> None:
        self.db = db
        self.redis = redis

    # reading ----------------------------------------------------------------------------------
    async def live_hours(self, vehicle_id: str, first: int, last: int) -> dict[int, bytes]:
        """The packed records in Redis of a vehicle's hours first..last (hours since the epoch)."""
        hours = [int(h) for h in await self.redis.zrangebyscore(f"trkidx:{vehicle_id}", first, last)]
        if not hours:
            return {}
        pipe = self.redis.client().pipeline(transaction=False)  # same pool; bytes, not text
        for hour in hours:
            pipe.execute_command("GET", f"trk:{vehicle_id}:{hour}", NEVER_DECODE=True)
        return {hour: blob for hour, blob in zip(hours, await pipe.execute()) if blob}

    async def archived_hours(self, vehicle_id: str, first: int, last: int) -> dict[int, bytes]:
        """The archived records of a vehicle's hours first..last (hours since the epoch)."""
        if self.db is None:
            return {}
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM hour)::bigint / 3600, records FROM track_hours"
                " WHERE vehicle_id = %s AND hour BETWEEN %s AND %s ORDER BY hour",
                (vehicle_id, hour_start(first), hour_start(last)), binary=True)  # bytea as is, not hex
            return {int(hour): bytes(records) for hour, records in await cur.fetchall()}

    async def track(self, vehicle_id: str, since: float, until: float, *,
                    with_time: bool = False) -> list[dict[str, Any]]:
        """Fixes of a vehicle with since <= t <= until (UTC epoch s) in time order, from the archive
        and Redis merged (an hour in both counted once); with_time adds ISO 8601 ``time``."""
        return decode_fixes(await self.hours(vehicle_id, since, until), since, until, with_time=with_time)

    async def hours(self, vehicle_id: str, since: float, until: float) -> list[tuple[int, bytes]]:
        """(hour, packed records) of the hours holding since..until, in hour order, from the
        archive and Redis merged (`merge_records`)."""
        first, last = int(since // 3600), int(until // 3600)
        live, archived = await asyncio.gather(self.live_hours(vehicle_id, first, last),
                                              self.archived_hours(vehicle_id, first, last))
        return [(h, merge_records(archived.get(h), live.get(h))) for h in sorted(set(live) | set(archived))]

    # archiving --------------------------------------------------------------------------------
    async def closed_hours(self, vehicle_ids: list[str], first: int, last: int) -> dict[tuple[str, int], int]:
        """(vehicle, hour) -> length in bytes of each track in Redis of hours first..last."""
        pipe = self.redis.pipeline(transaction=False)
        for vid in vehicle_ids:
            pipe.zrangebyscore(f"trkidx:{vid}", first, last)
        found = [(vid, int(h)) for vid, hours in zip(vehicle_ids, await pipe.execute()) for h in hours]
        if not found:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for vid, hour in found:
            pipe.strlen(f"trk:{vid}:{hour}")
        return {key: int(n) for key, n in zip(found, await pipe.execute()) if n}

    async def archived_sources(self, vehicle_ids: list[str], first: int, last: int) -> dict[tuple[str, int], int]:
        """(vehicle, hour) -> the length of the Redis track each archived hour was taken from."""
        rows = await self.db.fetch(
            "SELECT vehicle_id, extract(epoch FROM hour)::bigint / 3600 AS h, source_bytes FROM track_hours"
            " WHERE vehicle_id = ANY(%s) AND hour BETWEEN %s AND %s",
            (vehicle_ids, hour_start(first), hour_start(last)))
        return {(row["vehicle_id"], int(row["h"])): row["source_bytes"] for row in rows}

    async def archive(self, hours: list[tuple[str, int]]) -> tuple[int, int]:
        """Copy these (vehicle, hour) tracks from Redis into the archive in one transaction,
        merged with what the archive holds (idempotent); their day partitions must exist.
        Returns (hours written, fixes in them)."""
        if not hours:
            return 0, 0
        pipe = self.redis.client().pipeline(transaction=False)
        for vid, hour in hours:
            pipe.execute_command("GET", f"trk:{vid}:{hour}", NEVER_DECODE=True)
        blobs = dict(zip(hours, await pipe.execute()))
        written = fixes = 0
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT vehicle_id, extract(epoch FROM hour)::bigint / 3600, records FROM track_hours"
                " WHERE (vehicle_id, hour) IN (SELECT * FROM unnest(%s::text[], %s::timestamptz[]))"
                " FOR UPDATE",
                ([vid for vid, _ in hours], [hour_start(h) for _, h in hours]), binary=True)
            held = {(vid, int(h)): bytes(records) for vid, h, records in await cur.fetchall()}
            rows = []
            for key in hours:
                live = blobs.get(key)
                if not live:
                    continue  # expired since it was listed: nothing new to keep
                records = merge_records(held.get(key), live)
                rows.append((key[0], hour_start(key[1]), len(records) // RECORD, records, len(live)))
                fixes += len(records) // RECORD
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO track_hours (vehicle_id, hour, fixes, records, source_bytes)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (vehicle_id, hour) DO UPDATE SET"
                    " fixes = EXCLUDED.fixes, records = EXCLUDED.records,"
                    " source_bytes = EXCLUDED.source_bytes, archived_at = now()", rows)
            written = len(rows)
        return written, fixes

    # partitions -------------------------------------------------------------------------------
    async def partitions(self) -> dict[date, str]:
        """The day partitions of the archive: UTC day -> table name."""
        rows = await self.db.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'track_hours'::regclass")
        out = {}
        for row in rows:
            name = row["relname"]
            try:
                out[datetime.strptime(name[len(PARENT) + 1:], "%Y%m%d").date()] = name
            except ValueError:
                continue  # not one of ours (a DBA's): left alone
        return out

    async def ensure_partitions(self, days: Iterable[date]) -> list[date]:
        """Create the missing partitions of these UTC days; the days created."""
        wanted = sorted(set(days))
        if not wanted:
            return []
        have = await self.partitions()
        missing = [d for d in wanted if d not in have]
        if not missing:
            return []
        created = []
        async with self.db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
            cur = await conn.execute("SELECT to_regclass(n) IS NULL FROM unnest(%s::text[]) AS n",
                                     ([partition_name(d) for d in missing],))
            absent = [d for d, (none,) in zip(missing, await cur.fetchall()) if none]
            for day in absent:
                start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
                await conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(partition_name(day)), sql.Identifier(PARENT),
                    sql.Literal(start), sql.Literal(start + timedelta(days=1))))
                created.append(day)
        return created

    async def drop_partitions(self, before: date) -> list[date]:
        """Drop the partitions of the UTC days before `before` (the archive's age limit)."""
        old = {d: name for d, name in (await self.partitions()).items() if d < before}
        if not old:
            return []
        async with self.db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
            for name in old.values():
                await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        return sorted(old)
