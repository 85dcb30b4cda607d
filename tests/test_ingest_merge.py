"""Merged and held writes. Merged: when the ingest's writes fall behind it writes several queued batches as one
(VehicleBatch.merged). Writing the merge must leave Redis as writing the batches one after the
other does: counters, tracks, signals and the GEO set exactly; latest fixes and seen times as the
vehicles read back (a vehicle's seen time goes with its fix in ``veh:fix``, or to ``veh:seen`` in
a write without its fix, so a merge may store the same last message in the other place).
Held: the ingest holds each vehicle's track records and counters back (HeldWrites) and writes them
later, together; once everything held is written, Redis holds what writing at once leaves."""
from __future__ import annotations

import collections
import random
from datetime import datetime, timedelta, timezone

import pytest
import redis.asyncio as aioredis

from store.live import Store
from ingest.vehicles import HeldWrites, VehicleBatch, VehicleIngest
from simulators import nmea_out

pytestmark = pytest.mark.asyncio


def _batches(seed: int) -> list[VehicleBatch]:
    """Consecutive batches from a real VehicleIngest: fixes, void epochs (signals), garbage, a
    vehicle going into a tunnel and out again within one batch, cut at random points."""
    rng = random.Random(seed)
    vi = VehicleIngest()
    stats: collections.Counter = collections.Counter()
    start = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
    batches, batch = [], VehicleBatch()
    for k in range(400):
        vid = f"V{rng.randrange(6)}"
        t = start + timedelta(seconds=k)
        lat, lon = 36.38 + k * 1e-5, 119.75 + rng.randrange(6) * 1e-3
        kind = rng.random()
        if kind < 0.7:
            lines = [nmea_out.gga(t, lat, lon), nmea_out.rmc(t, lat, lon, speed_kmh=30.0, course_deg=90.0)]
        elif kind < 0.9:
            lines = [nmea_out.gga_no_fix(t), nmea_out.rmc_void(t)]
        else:
            lines = ["$GPGGA,garbage*00"]
        vi.handle(vid, ("\r\n".join(lines) + "\r\n").encode(), t.timestamp() + 0.3, False, batch, stats)
        if rng.random() < 0.15:
            batches.append(batch)
            batch = VehicleBatch()
    batches.append(batch)
    return batches


async def _dump(client: aioredis.Redis) -> dict:
    out = {}
    for key in await client.keys("*"):
        kind = await client.type(key)
        if kind == b"hash":
            out[key] = await client.hgetall(key)
        elif kind == b"string":
            out[key] = await client.get(key)
        elif kind == b"zset":
            out[key] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = sorted(await client.smembers(key))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_writing_merged_batches_equals_writing_them_in_turn(redis_url, seed):
    await _same_as_in_turn(redis_url, seed, held=None)


@pytest.mark.parametrize("seed", [1, 2])
async def test_held_tracks_and_counters_end_as_written_at_once(redis_url, seed):
    await _same_as_in_turn(redis_url, seed, held=HeldWrites(3.0))


async def _same_as_in_turn(redis_url, seed, held: HeldWrites | None):
    """Write seed's batches one by one to db 3, and to db 4 merged by fives (through ``held``,
    cut one second apart and flushed at the end, when given); compare."""
    one_by_one = Store(aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/3", decode_responses=False))
    merged = Store(aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/4", decode_responses=False))
    try:
        await one_by_one.redis.flushdb()
        await merged.redis.flushdb()
        batches = _batches(seed)
        assert any(b.signals for b in batches) and sum(len(b.fixes) for b in batches) > 200
        for b in batches:
            await one_by_one.write_fixes(b.fixes, b.counters, seen=b.seen, signals=b.signals, retention_s=3600)
        cut = _batches(seed)  # the same again: cutting takes a batch's counters
        if held is not None:
            for k, b in enumerate(cut):
                held.cut(b, float(k))
                assert {f.vehicle_id for f in b.track} <= b.counters.keys()  # a track goes with its counters
            cut.append(VehicleBatch())
            held.cut(cut[-1], float(len(cut)), flush=True)  # at shutdown
            assert not held.tracks and not held.counters and not held.order
            assert not any(b.track or b.counters for b in cut[:3])  # the first due at 3 s
            assert any(b.track for b in cut[3:-1]) and cut[-1].track
            assert sum(len(b.track) for b in cut) == sum(len([f for f in b.fixes if f.track]) for b in batches)
        for i in range(0, len(cut), 5):  # merges of up to five batches, as the writer makes them
            m = VehicleBatch.merged(cut[i:i + 5])
            await merged.write_fixes(m.fixes, m.counters, seen=m.seen, signals=m.signals, retention_s=3600,
                                     track=m.track)
        want, got = await _dump(one_by_one.redis), await _dump(merged.redis)
        placed = {b"veh:fix", b"veh:seen"}  # compared as read back, below
        assert want.keys() - placed == got.keys() - placed and len(want) > 10
        for key in want.keys() - placed:
            assert got[key] == want[key], key
        now = batches[-1].fixes[-1].t if batches[-1].fixes else 1_795_334_800.0
        views = []
        for db in (3, 4):
            reader = Store.from_url(redis_url.rsplit("/", 1)[0] + f"/{db}")
            try:
                views.append(await reader.vehicles(now=now))
            finally:
                await reader.close()
        assert views[0] == views[1] and len(views[0]) == 6
        assert all(v["fix"] is not None and v["last_seen"] is not None for v in views[0])
        # the orders a merge must get right both occur: a signal then a fix, a fix then a signal
        orders = set()
        for i in range(0, len(batches), 5):
            events = []
            for b in batches[i:i + 5]:  # per batch: its live fixes, then the signals still standing
                events += [(f.vehicle_id, "fix") for f in b.fixes if f.live] + [(vid, "signal") for vid in b.signals]
            for vid in {v for v, _ in events}:
                kinds = [k for v, k in events if v == vid]
                orders.add(tuple(dict.fromkeys(kinds)))
        assert ("signal", "fix") in orders and ("fix", "signal") in orders
    finally:
        await one_by_one.redis.flushdb()
        await merged.redis.flushdb()
        await one_by_one.close()
        await merged.close()
