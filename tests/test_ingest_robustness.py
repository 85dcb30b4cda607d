"""Ingest under failure, on real servers started by the tests themselves: a broker restart, a
Redis outage with buffering and in-order flush, random garbage on every topic, the robustness
logs, and backfill judged against the vehicle's own sequence (week-rollover repair)."""
from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis.exceptions

from messaging.mqtt import MqttClient
from servers.embedded import free_port, start_broker, start_redis
from store.live import Store
from ingest import service
from ingest.plausibility import GPS_ROLLOVER
from simulators import nmea_out
from tests.conftest import DATA, register_vehicles, test_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
ROBUSTNESS = sorted((DATA / "nmea" / "robustness").glob("*.log"))
VEHICLES = ["B1", "R1", "E1", "X1", "OK1", "K1", "K2"] + [f"rb-{path.stem}" for path in ROBUSTNESS]


def _burst(t: datetime, lat: float, lon: float, kmh: float = 36.0) -> bytes:
    return ("\r\n".join([nmea_out.gga(t, lat, lon), nmea_out.rmc(t, lat, lon, speed_kmh=kmh, course_deg=0.0)])
            + "\r\n").encode()


async def _start(tmp_path, redis_url, mqtt_url, **overrides):
    settings = test_settings(tmp_path, REDIS_URL=redis_url, MQTT_URL=mqtt_url, **overrides)
    await register_vehicles(settings.DATABASE_URL, VEHICLES)  # the ingest takes only registered vehicles
    stop, holder = asyncio.Event(), {}
    task = asyncio.create_task(service.serve(settings, redis_url, mqtt_url, stop=stop,
                                             hook=lambda i: holder.__setitem__("ingest", i)))
    await wait_for(lambda: "ingest" in holder and holder["ingest"].mqtt_ok, timeout=15)
    return stop, task, holder["ingest"]


async def _publisher(mqtt_url, name):
    pub = MqttClient(mqtt_url, name)
    pub.start()
    assert await asyncio.to_thread(pub.wait_connected, 15)
    await asyncio.sleep(0.3)
    return pub


@dataclass
class _Rig:
    ingest: service.Ingest
    task: asyncio.Task
    store: Store
    pub: MqttClient | None = None
    server: Any = None  # a broker or Redis of the test's own: stopped at the end (a restart replaces it)


@contextlib.asynccontextmanager
async def _rig(tmp_path, redis_url, database_url, mqtt_url, name, *, server=None):
    """The ingest on these servers, a store and a publisher named `name`; at the end all stop, and
    so does `server` (or what the test put in `rig.server` when it restarted it)."""
    stop, task, ingest = await _start(tmp_path, redis_url, mqtt_url)
    rig = _Rig(ingest, task, Store.from_url(redis_url, database_url), server=server)
    try:
        rig.pub = await _publisher(mqtt_url, name)
        yield rig
    finally:
        if rig.pub is not None:
            rig.pub.stop()
        stop.set()
        await task
        await rig.store.close()
        if rig.server is not None:
            rig.server.stop()


async def _fix_ok(store, vid, n):
    try:
        view = await store.vehicle(vid)
    except redis.exceptions.ConnectionError:  # the test's own pooled connection from before a restart
        return None
    return view if view and view["counters"].get("fix_ok", 0) >= n else None


@pytest.mark.allow_logged_errors
async def test_broker_restart_reconnects_and_resubscribes(tmp_path, redis_url, database_url):
    port = free_port()
    server = start_broker(tmp_path, port=port)
    mqtt_url = server.url  # the center's account: the same password after the restart (kept in tmp_path)
    t = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=20)
    async with _rig(tmp_path, redis_url, database_url, mqtt_url, "restart-pub", server=server) as rig:
        ingest, store, pub = rig.ingest, rig.store, rig.pub
        pub.publish("fleet/B1/nmea", _burst(t, 36.38, 119.75), qos=1)
        await wait_for(lambda: _fix_ok(store, "B1", 1), timeout=10)
        rig.server.stop()
        await wait_for(lambda: not ingest.mqtt_ok, timeout=10)
        assert ingest.health()["status"] == "degraded"
        rig.server = start_broker(tmp_path, port=port)
        await wait_for(lambda: ingest.mqtt_ok and pub.connected, timeout=60)
        await asyncio.sleep(0.5)  # the replayed SUBSCRIBE is acknowledged
        pub.publish("fleet/B1/nmea", _burst(t + timedelta(seconds=5), 36.3801, 119.75), qos=1)
        pub.publish("scada/Q1/pressure", b'{"value": 0.3}', qos=1)  # sensor topics are back too
        view = await wait_for(lambda: _fix_ok(store, "B1", 2), timeout=20)
        assert view["fix"]["lat"] == pytest.approx(36.3801, abs=1e-7)
        await wait_for(lambda: store.unknown_readings(), timeout=10)
        assert ingest.health()["status"] == "ok"


@pytest.mark.allow_logged_errors
async def test_redis_outage_buffers_then_flushes_in_order(database_url, tmp_path, mqtt_url):
    port = free_port()
    data = tmp_path / "redis-data"
    redis_url = f"redis://127.0.0.1:{port}/0"
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=120)
    lats = [36.38 + i * 1e-4 for i in range(60)]
    async with _rig(tmp_path, redis_url, database_url, mqtt_url, "outage-pub", server=start_redis(data, port=port)) as rig:
        ingest, store, pub = rig.ingest, rig.store, rig.pub
        for i in range(10):
            pub.publish("fleet/R1/nmea", _burst(t0 + timedelta(seconds=i), lats[i], 119.75), qos=1)
        await wait_for(lambda: _fix_ok(store, "R1", 10), timeout=10)
        rig.server.stop()
        for i in range(10, 60):
            pub.publish("fleet/R1/nmea", _burst(t0 + timedelta(seconds=i), lats[i], 119.75), qos=1)
        await wait_for(lambda: not ingest.redis_ok and ingest.health()["buffered"] > 0, timeout=20)
        health = ingest.health()
        assert health["status"] == "degraded" and health["redis_ok"] is False
        rig.server = start_redis(data, port=port)
        view = await wait_for(lambda: _fix_ok(store, "R1", 60), timeout=30)
        assert view["fix"]["lat"] == pytest.approx(lats[-1], abs=1e-7)
        track = await store.track("R1", t0.timestamp() - 1, t0.timestamp() + 120)
        assert [round(f["lat"], 4) for f in track] == [round(v, 4) for v in lats]
        assert [f["t"] for f in track] == [(t0 + timedelta(seconds=i)).timestamp() for i in range(60)]
        await wait_for(lambda: ingest.health()["status"] == "ok", timeout=10)
        assert ingest.stats["buffer_dropped"] == 0 and ingest.stats["redis_write_failed"] >= 1


@pytest.mark.allow_logged_errors
async def test_a_redis_that_comes_back_empty_gets_the_vehicle_set_and_track_index_again(database_url, tmp_path, mqtt_url):
    """The ingest caches which ids are in veh:ids and which track hours are indexed; a failed write
    clears both, so a Redis restarted without its data is filled in again, not left with holes."""
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=60)
    async with _rig(tmp_path, redis_url, database_url, mqtt_url, "empty-redis-pub",
                    server=start_redis(tmp_path / "redis-a", port=port)) as rig:
        ingest, store, pub = rig.ingest, rig.store, rig.pub
        for i in range(3):
            pub.publish("fleet/E1/nmea", _burst(t0 + timedelta(seconds=i), 36.38 + i * 1e-4, 119.75), qos=1)
        await wait_for(lambda: _fix_ok(store, "E1", 3), timeout=10)
        rig.server.stop()
        pub.publish("fleet/E1/nmea", _burst(t0 + timedelta(seconds=3), 36.3803, 119.75), qos=1)
        await wait_for(lambda: not ingest.redis_ok, timeout=20)
        rig.server = start_redis(tmp_path / "redis-b", port=port)  # a new, empty data directory
        await wait_for(lambda: _fix_ok(store, "E1", 1), timeout=30)
        for i in range(4, 6):
            pub.publish("fleet/E1/nmea", _burst(t0 + timedelta(seconds=i), 36.38 + i * 1e-4, 119.75), qos=1)
        await wait_for(lambda: _fix_ok(store, "E1", 3), timeout=10)
        assert await store.vehicle_ids() == ["E1"]
        track = await store.track("E1", t0.timestamp() - 1, t0.timestamp() + 60)
        assert [f["t"] for f in track] == [(t0 + timedelta(seconds=i)).timestamp() for i in range(3, 6)]


def _random_payloads(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    payloads = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))) for _ in range(40)]
    payloads += [b"\xed\xa0\x80", b"null", b"1e999", b'{"value": Infinity}', b'{"value": [1]}', b"\x00" * 70_000]
    return payloads


TOPICS = ["fleet/X1/nmea", "fleet/X1/nmea/backfill", "fleet/X1/status", "scada/X1/pressure",
          "spBv1.0/g/NBIRTH/n1", "spBv1.0/g/DDATA/n1/d1", "spBv1.0/g/NDEATH/n1", "spBv1.0/STATE/host"]


@pytest.mark.allow_logged_errors
async def test_random_garbage_on_every_topic_is_counted_and_ingest_goes_on(tmp_path, redis_url, database_url, mqtt_url):
    async with _rig(tmp_path, redis_url, database_url, mqtt_url, "garbage-pub") as rig:
        ingest, task, store, pub = rig.ingest, rig.task, rig.store, rig.pub
        sent = 0
        for i, topic in enumerate(TOPICS):
            for payload in _random_payloads(i):
                pub.publish(topic, payload, qos=1)
                sent += 1
        pub.publish("fleet/OK1/nmea", _burst(datetime.now(timezone.utc).replace(microsecond=0), 36.4, 119.8), qos=1)
        await wait_for(lambda: _fix_ok(store, "OK1", 1), timeout=30)
        await wait_for(lambda: ingest.stats["messages"] >= sent + 1, timeout=30)
        assert not task.done()
        assert ingest.stats["rejected:payload_too_large"] == len(TOPICS)
        assert ingest.stats["rejected:invalid_utf8"] > 0 and ingest.stats["rejected:sparkplug_payload"] > 0
        assert not any(k.startswith("rejected:error:") for k in ingest.stats), ingest.stats


@pytest.mark.parametrize("chunk_lines", [1, 25])
async def test_robustness_logs_pass_through_the_live_topic(tmp_path, redis_url, database_url, mqtt_url, chunk_lines):
    async with _rig(tmp_path, redis_url, database_url, mqtt_url, f"robust-pub-{chunk_lines}") as rig:
        ingest, task, store, pub = rig.ingest, rig.task, rig.store, rig.pub
        sent = 0
        for path in ROBUSTNESS:
            lines = path.read_bytes().splitlines(keepends=True)
            for start in range(0, len(lines), chunk_lines):
                pub.publish(f"fleet/rb-{path.stem}/nmea", b"".join(lines[start:start + chunk_lines]), qos=1)
                sent += 1
        await wait_for(lambda: ingest.stats["messages"] >= sent and not ingest.queue
                       and not ingest.fleet.batch.vehicles.counters and not ingest.held.counters,
                       timeout=60)  # counters written too (held up to INGEST_HOLD_S)
        counters = await store.vehicle_counters()
        bad = {vid: {k for k in c if k in ("bad_checksum", "truncated", "garbage", "no_checksum")}
               for vid, c in counters.items()}
        assert bad["rb-pygpsdata-BADHDR"] == {"bad_checksum"}
        assert "truncated" in bad["rb-pygpsdata-badeof"] and "garbage" in bad["rb-pygpsdata-mixed"]
        assert all(c.get("sentences_ok", 0) > 0 and c.get("internal_error", 0) == 0 for c in counters.values()), counters
        assert not task.done() and not any(k.startswith("rejected:error:") for k in ingest.stats)


async def test_backfill_is_judged_against_the_vehicles_own_sequence(tmp_path, redis_url, database_url, mqtt_url):
    async with _rig(tmp_path, redis_url, database_url, mqtt_url, "backfill-pub") as rig:
        store, pub = rig.store, rig.pub
        now = datetime.now(timezone.utc).replace(microsecond=0)
        # K1 is live now; its terminal then uploads fixes of 10 minutes ago with 2006 dates
        # (the week-rollover bug): repaired by 1024 weeks, into the track, not the live position.
        pub.publish("fleet/K1/nmea", _burst(now - timedelta(seconds=2), 36.40, 119.80), qos=1)
        await wait_for(lambda: _fix_ok(store, "K1", 1), timeout=10)
        old = [now - timedelta(minutes=10) + timedelta(seconds=i) for i in range(3)]
        payload = b"".join(_burst(t - GPS_ROLLOVER, 36.39 + i * 1e-4, 119.79) for i, t in enumerate(old))
        pub.publish("fleet/K1/nmea/backfill", payload, qos=1)
        # K2 has never been live: a recorded log of 2019 is accepted as it is (internally consistent).
        drive = [datetime(2019, 4, 7, 8, 0, tzinfo=timezone.utc) + timedelta(seconds=i) for i in range(3)]
        pub.publish("fleet/K2/nmea/backfill", b"".join(_burst(t, 36.2 + i * 1e-4, 120.1) for i, t in enumerate(drive)),
                    qos=1)
        k1 = await wait_for(lambda: _track(store, "K1", 4), timeout=15)
        assert [f["t"] for f in k1[:3]] == [t.timestamp() for t in old]
        view = await store.vehicle("K1")
        assert view["fix"]["lat"] == pytest.approx(36.40, abs=1e-7)  # live position unchanged
        assert view["counters"]["fix_track_only"] == 3
        k2 = await wait_for(lambda: _track(store, "K2", 3, since=drive[0].timestamp() - 1), timeout=15)
        assert [f["t"] for f in k2] == [t.timestamp() for t in drive]


async def _track(store, vid, n, since=None):
    now = datetime.now(timezone.utc).timestamp()
    fixes = await store.track(vid, now - 3600 if since is None else since, now + 60)
    return fixes if len(fixes) >= n else None
