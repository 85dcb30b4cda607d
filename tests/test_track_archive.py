"""Track history archived to PostgreSQL: the archiver, the partitions, and reads merging the archive
with the live hours in Redis (the store and the track API)."""
from __future__ import annotations

import asyncio
import gzip
import random
from datetime import date, datetime, timedelta, timezone

import orjson
import psycopg
import pytest
import tornado.httpclient

from store.live import TRACK_RECORD, FixRecord, Store, unpack_track
from store.tracks import TrackStore, merge_records, partition_name
from store.track_codec import decode_fixes, fixes_json
from services.track_archiver import TrackArchiver
from store.db import Database
from servers.embedded import free_port
from tests.conftest import test_settings, wait_for
from web.handlers.vehicles import iso

NOW = datetime(2026, 12, 6, 15, 30, 7, tzinfo=timezone.utc).timestamp()
HOUR = int(NOW // 3600)  # the hour under way: not closed, not archived


def _fix(vid: str, t: float, i: int, **kw) -> FixRecord:
    values = dict(speed_kmh=36.0 + i % 7, course_deg=(i * 7) % 360, alt_m=40.0 + i % 5, quality=1, sats=9)
    values.update(kw)
    return FixRecord(vid, t, 36.38 + i * 1e-5, 119.75 + i * 1e-5, values["speed_kmh"], values["course_deg"],
                     values["alt_m"], values["quality"], "A", values["sats"], 0.9, "GP", True, True)


async def _drive(store: Store, vid: str, start: float, seconds: int, step: float = 1.0, **kw) -> None:
    """Write a vehicle's fixes every `step` s as the ingest does (batches of a minute)."""
    fixes = [_fix(vid, start + i * step, i, **kw) for i in range(int(seconds / step))]
    for at in range(0, len(fixes), 60):
        await store.write_fixes(fixes[at:at + 60], {vid: {"fix_ok": 60}}, seen={vid: fixes[-1].t},
                                retention_s=86_400)


async def _rows(database_url: str) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT vehicle_id, extract(epoch FROM hour)::bigint / 3600, fixes, source_bytes"
                                 " FROM track_hours ORDER BY 1, 2")
        return await cur.fetchall()


@pytest.fixture
async def store(redis_url, database_url):
    """A Store over the test's Redis and PostgreSQL, the archive without partitions (the tables are
    emptied for each test, but partitions made by an earlier one would stay)."""
    store = Store.from_url(redis_url, database_url)
    await TrackStore(store.db, store.redis).drop_partitions(date.max)
    yield store
    await store.close()


# pure ----------------------------------------------------------------------------------------
def _record(rng: random.Random, ms: int) -> bytes:
    return TRACK_RECORD.pack(ms, rng.randint(-900_000_000, 900_000_000), rng.randint(-1_800_000_000, 1_800_000_000),
                             rng.choice([0, 1, 999, 65534, 0xFFFF, rng.randint(0, 0xFFFF)]),
                             rng.choice([0, 35999, 0xFFFF, rng.randint(0, 0xFFFF)]),
                             rng.choice([-32768, -1, 0, 32767, rng.randint(-32768, 32767)]),
                             rng.choice([0, 0xFF, rng.randint(0, 0xFF)]), rng.choice([0, 0xFF, rng.randint(0, 0xFF)]))


@pytest.mark.parametrize("first_hour", [0, HOUR - 5, 2 ** 32 // 3600 - 2, 253_402_300_799 // 3600 - 3])
def test_vectorised_decoding_gives_what_unpack_track_and_iso_give(first_hour):
    rng = random.Random(first_hour)
    hours = []
    for hour in range(first_hour, first_hour + 3):
        ms = [0, 1, 999, 1000, 3_599_999] + [rng.randint(0, 3_599_999) for _ in range(400)]
        rng.shuffle(ms)  # appended out of order, with equal times in one hour and across
        hours.append((hour, b"".join(_record(rng, m) for m in ms + ms[:20])))
    since, until = first_hour * 3600 + 0.999, (first_hour + 2) * 3600 + 1800.0
    expected = []
    for hour, data in hours:
        expected.extend(f for f in unpack_track(hour, data) if since <= f["t"] <= until)
    expected.sort(key=lambda f: f["t"])
    assert decode_fixes(hours, since, until) == expected
    for fix in expected:
        fix["time"] = iso(fix["t"])
    got = decode_fixes(hours, since, until, with_time=True)
    assert orjson.dumps(got) == orjson.dumps(expected)
    assert fixes_json(hours, since, until) == (len(expected), orjson.dumps(expected))  # the API's bytes


def test_the_json_of_no_fixes_and_of_a_record_past_its_hour():
    assert fixes_json([], 0.0, 1e9) == (0, b"[]")
    hours = [(HOUR, TRACK_RECORD.pack(3_600_000, 1, 2, 3, 4, 5, 6, 7) + TRACK_RECORD.pack(5, 1, 2, 3, 4, 5, 6, 7))]
    expected = decode_fixes(hours, 0.0, 1e10, with_time=True)
    assert [f["t"] for f in expected] == [HOUR * 3600 + 0.005, HOUR * 3600 + 3600.0]
    assert fixes_json(hours, 0.0, 1e10) == (2, orjson.dumps(expected))


A, B, C = (TRACK_RECORD.pack(ms, 1, 2, 3, 4, 5, 6, 7) for ms in (1, 2, 3))


@pytest.mark.parametrize("archived, live, merged", [
    (None, A + B, A + B),
    (A + B, None, A + B),
    (A, A + B, A + B),  # Redis grew after the archive: the longer string
    (A + B, A, A + B),  # Redis rewritten after a wipe, a part again
    (A + B, C, A + B + C),  # Redis rewritten after a wipe, something new
    (A + B, B + C, A + B + C),
    (A + B + C, C + A, A + B + C),  # archived twice: stored once
    (A + B[:7], A, A),  # a cut-off record is no record
])
def test_merging_an_hour_from_the_archive_and_redis(archived, live, merged):
    assert merge_records(archived, live) == merged
    assert merge_records(merged, live) == merged  # idempotent


# the archive ---------------------------------------------------------------------------------
@pytest.mark.integration
async def test_archive_then_read_gives_what_redis_gave_and_survives_a_flushall(store, database_url):
    start = (HOUR - 4) * 3600 + 1800.0  # 3.5 closed hours, then the hour under way
    await _drive(store, "V1", start, int(NOW - start), step=1.5)
    await _drive(store, "V2", start + 7, 3600, step=2.0)
    since, until = start - 60, NOW
    from_redis = {vid: await store.track(vid, since, until) for vid in ("V1", "V2")}
    assert len(from_redis["V1"]) == int((NOW - start) / 1.5) and len(from_redis["V2"]) == 1800

    archiver = TrackArchiver(store, archive_days=400)
    first = await archiver.run_once(NOW)
    assert (first.hours, first.vehicles) == (4 + 2, 2)  # V1: hours -4..-1; V2: -4, -3
    assert first.fixes == sum(1 for fixes in from_redis.values() for f in fixes if f["t"] < HOUR * 3600)
    rows = await _rows(database_url)
    assert [(vid, h) for vid, h, _, _ in rows] == [("V1", HOUR - i) for i in (4, 3, 2, 1)] + [("V2", HOUR - 4), ("V2", HOUR - 3)]
    for vid in ("V1", "V2"):  # the hours in both places are counted once
        assert await store.track(vid, since, until) == from_redis[vid]

    again = await archiver.run_once(NOW + 600)  # an hour archived twice is stored once
    assert (again.hours, again.fixes) == (0, 0) and await _rows(database_url) == rows

    await store.redis.flushall()  # Redis wiped: the archived hours are all there
    for vid in ("V1", "V2"):
        closed = [f for f in from_redis[vid] if f["t"] < HOUR * 3600]
        assert await store.track(vid, since, until) == closed
        assert await store.track(vid, start + 3000, start + 4000) == [f for f in closed if start + 3000 <= f["t"] <= start + 4000]


@pytest.mark.integration
async def test_an_hour_grown_or_rewritten_after_archiving_is_merged_without_duplicates(store, database_url):
    start = (HOUR - 3) * 3600.0
    await _drive(store, "V1", start, 3600)  # hour -3, whole
    archiver = TrackArchiver(store, archive_days=400)
    assert (await archiver.run_once(NOW)).hours == 1
    # a late fix (the ingest takes a fix up to a day old) lands in the archived hour, still in Redis
    late = _fix("V1", start + 0.5, 0, speed_kmh=5.0)._replace(live=False)
    await store.write_fixes([late], {}, seen={"V1": NOW}, retention_s=86_400)
    track = await store.track("V1", start, start + 3600)
    assert len(track) == 3601 and [f["t"] for f in track[:3]] == [start, start + 0.5, start + 1]
    assert len({(f["t"], f["speed_kmh"]) for f in track}) == 3601  # the boundary hour once
    grown = await archiver.run_once(NOW + 60)
    assert (grown.hours, grown.fixes) == (1, 3601)
    assert [(h, n) for _, h, n, _ in await _rows(database_url)] == [(HOUR - 3, 3601)]
    # Redis wiped, then the hour written again in part, and something new: each fix once
    await store.redis.flushall()
    again = _fix("V1", start + 10, 10)  # the same record as archived
    new = _fix("V1", start + 10.25, 10, sats=4)
    await store.write_fixes([again, new], {}, seen={"V1": NOW}, retention_s=86_400)
    merged = await store.track("V1", start, start + 3600)
    assert merged == sorted(track + await TrackStore(None, store.redis).track("V1", start + 10.1, start + 10.3),
                            key=lambda f: f["t"])
    assert len(merged) == 3602
    assert (await archiver.run_once(NOW + 120)).hours == 1
    await store.redis.flushall()
    assert await store.track("V1", start, start + 3600) == merged


@pytest.mark.integration
async def test_partitions_are_made_ahead_and_dropped_after_track_archive_days(store, database_url):
    today = date(2026, 12, 6)
    tracks = TrackStore(store.db, store.redis)
    archiver = TrackArchiver(store, archive_days=3)
    old = [today - timedelta(days=n) for n in (10, 4, 3)]
    assert await tracks.ensure_partitions(old) == sorted(old)
    for day in old:  # an hour archived on each of those days
        t = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc).timestamp()
        await _drive(store, "V1", t, 60)
    first = await archiver.run_once(NOW)
    assert first.created == [today, today + timedelta(days=1), today + timedelta(days=2)]
    assert first.dropped == [today - timedelta(days=10), today - timedelta(days=4)]
    assert first.hours == 1  # the hour of day -3; those of days -10 and -4 are past the archive's age
    done = await archiver.run_once(NOW)
    assert (done.created, done.dropped, done.hours) == ([], [], 0)
    assert set(await tracks.partitions()) == {today - timedelta(days=3), today, today + timedelta(days=1),
                                              today + timedelta(days=2)}
    assert sorted((await tracks.partitions()).values()) == [partition_name(today + timedelta(days=n)) for n in (-3, 0, 1, 2)]
    assert [h for _, h, _, _ in await _rows(database_url)] == [int(datetime(2026, 12, 3, 12, tzinfo=timezone.utc).timestamp()) // 3600]
    # a day later the oldest day goes, with its hours, and one more day is made ahead
    later = await archiver.run_once(NOW + 86_400)
    assert later.created == [today + timedelta(days=3)] and later.dropped == [today - timedelta(days=3)]
    assert await _rows(database_url) == []
    await store.redis.flushall()
    assert await store.track("V1", NOW - 5 * 86_400, NOW) == []


@pytest.mark.integration
async def test_the_first_pass_on_the_partition_ranges(store):
    tracks = TrackStore(store.db, store.redis)
    created = await TrackArchiver(store, archive_days=400).run_once(NOW)
    assert created.created == [date(2026, 12, 6), date(2026, 12, 7), date(2026, 12, 8)]
    async with store.db.connection() as conn:
        cur = await conn.execute("SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE relname = %s",
                                 (partition_name(date(2026, 12, 7)),))
        (bound,) = await cur.fetchone()
    assert bound == "FOR VALUES FROM ('2026-12-07 00:00:00+00') TO ('2026-12-08 00:00:00+00')"
    assert await tracks.ensure_partitions([date(2026, 12, 7)]) == []


@pytest.mark.integration
@pytest.mark.allow_logged_errors  # the pool logs its failed connection attempts
async def test_a_pass_without_the_database_is_logged_and_retried_and_redis_keeps_the_hours(store, caplog):
    start = (HOUR - 2) * 3600.0
    await _drive(store, "V1", start, 600)
    down = Store(store.redis, Database(f"postgresql://center@127.0.0.1:{free_port()}/center", timeout_s=0.5))
    stop = asyncio.Event()
    task = asyncio.create_task(TrackArchiver(down, archive_days=400).run(stop, interval_s=0.05))
    try:
        await wait_for(lambda: sum("track archive pass failed" in r.getMessage() for r in caplog.records) >= 2)
    finally:
        stop.set()
        await task
        await down.db.close()
    assert len(await store.track("V1", start, start + 600)) == 600  # nothing taken from Redis
    assert (await TrackArchiver(store, archive_days=400).run_once(NOW)).fixes == 600  # the next pass does it


# the API ---------------------------------------------------------------------------------------
PASSWORD = "test-pass-1234"


@pytest.fixture
async def web_api(tmp_path, store, redis_url, mqtt_url):
    """The web service in-process on loopback, and a GET with a dispatcher's token."""
    from web import app as webapp

    port = free_port()
    settings = test_settings(tmp_path, HTTP_PORT=port, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD,
                             DATABASE_URL=store.db.url)
    stop = asyncio.Event()
    task = asyncio.create_task(webapp.serve(settings, redis_url, mqtt_url, demo=True, stop=stop))
    http = tornado.httpclient.AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            return (await http.fetch(base + "/healthz", raise_error=False)).code in (200, 503)
        except OSError:
            return False

    await wait_for(up, timeout=20)
    login = await http.fetch(base + "/api/login", method="POST", raise_error=False,
                             body=orjson.dumps({"username": "dispatcher", "password": PASSWORD}))
    token = orjson.loads(login.body)["token"]

    async def get(path: str, headers: dict | None = None, **kw):
        return await http.fetch(base + path, headers={"Authorization": f"Bearer {token}", **(headers or {})},
                                raise_error=False, **kw)

    yield get
    stop.set()
    await task


@pytest.mark.integration
async def test_the_track_api_reads_the_archive_and_the_live_hours_as_one(store, web_api):
    start = (HOUR - 2) * 3600 + 3000.0  # across two closed hours into the one under way
    await _drive(store, "V7", start, int(NOW - start), step=5.0)
    path = f"/api/vehicles/V7/track?since={start - 1}&until={NOW}"
    before = await web_api(path)
    assert before.code == 200 and orjson.loads(before.body)["count"] == int((NOW - start) / 5)
    assert (await TrackArchiver(store, archive_days=400).run_once(NOW)).hours == 2
    both = await web_api(path)  # archived and still in Redis
    assert both.body == before.body
    for hour in (HOUR - 2, HOUR - 1):  # as if they had expired in Redis
        await store.redis.delete(f"trk:V7:{hour}")
    only_archive = await web_api(path)
    assert only_archive.body == before.body
    plain = await web_api(path, decompress_response=False)  # no Accept-Encoding: the JSON as it is
    assert plain.body == before.body and "Content-Encoding" not in plain.headers
    packed = await web_api(path, headers={"Accept-Encoding": "gzip"}, decompress_response=False)
    assert packed.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed.headers["Vary"]
    assert gzip.decompress(packed.body) == before.body
    too_long = await web_api(f"/api/vehicles/V7/track?since={NOW - 32 * 86_400}&until={NOW}")
    assert too_long.code == 400
