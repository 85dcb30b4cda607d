"""The ingest service end to end on the real broker and Redis: NMEA in, live state and track out."""
from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest

from messaging.mqtt import MqttClient
from servers.embedded import start_broker
from store.live import Store
from ingest import service
from simulators import nmea_out
from tests.conftest import register_vehicles, test_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def _burst(t: datetime, lat: float, lon: float, kmh: float = 36.0, talker: str = "GP") -> bytes:
    return ("\r\n".join([nmea_out.gga(t, lat, lon, talker=talker),
                         nmea_out.rmc(t, lat, lon, speed_kmh=kmh, course_deg=45.0, talker=talker)]) + "\r\n").encode()


async def _running_ingest(tmp_path, redis_url, mqtt_url, **overrides):
    settings = test_settings(tmp_path, REDIS_URL=redis_url, MQTT_URL=mqtt_url, **overrides)
    await register_vehicles(settings.DATABASE_URL, ["T1", "H1", "G1", "W1"])  # the ingest takes only these
    stop = asyncio.Event()
    task = asyncio.create_task(service.serve(settings, redis_url, mqtt_url, stop=stop))
    return settings, stop, task


async def _publisher(mqtt_url, name):
    pub = MqttClient(mqtt_url, name)
    pub.start()
    assert await asyncio.to_thread(pub.wait_connected, 10)
    await asyncio.sleep(0.5)  # let the ingest subscribe
    return pub


async def test_live_nmea_moves_the_vehicle_and_fills_the_track(tmp_path, redis_url, database_url, mqtt_url, caplog):
    caplog.set_level(logging.INFO, logger="ingest.service")
    settings, stop, task = await _running_ingest(tmp_path, redis_url, mqtt_url)
    store = Store.from_url(redis_url, database_url)
    pub = await _publisher(mqtt_url, "test-live-pub")
    try:
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=5)
        for i in range(5):
            pub.publish("fleet/T1/nmea", _burst(start + timedelta(seconds=i), 36.38 + i * 1e-4, 119.75, talker="BD"))
        view = await wait_for(lambda: _fix_count(store, "T1", 5), timeout=10)
        assert view["fix"]["lat"] == pytest.approx(36.3804, abs=1e-7)
        assert view["fix"]["talker"] == "BD" and view["state"] == "online"
        track = await store.track("T1", start.timestamp() - 1, start.timestamp() + 10)
        assert [round(f["lat"], 4) for f in track] == [36.38, 36.3801, 36.3802, 36.3803, 36.3804]
        assert track[0]["speed_kmh"] == pytest.approx(36.0, abs=0.05)
        password = urlsplit(mqtt_url).password
        assert "ingest: subscribed to" in caplog.text and password and password not in caplog.text  # never logged
    finally:
        pub.stop()
        stop.set()
        await task
        await store.close()


async def test_held_track_and_counters_follow_the_live_position_and_are_written_at_shutdown(
        tmp_path, redis_url, database_url, mqtt_url):
    settings, stop, task = await _running_ingest(tmp_path, redis_url, mqtt_url, INGEST_HOLD_S=60.0)
    store = Store.from_url(redis_url, database_url)
    pub = await _publisher(mqtt_url, "test-held-pub")
    try:
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=5)
        for i in range(5):
            pub.publish("fleet/H1/nmea", _burst(start + timedelta(seconds=i), 36.38 + i * 1e-4, 119.75))

        async def moved():
            view = await store.vehicle("H1")
            return view if view and view["fix"] and view["fix"]["lat"] == pytest.approx(36.3804, abs=1e-7) else None

        view = await wait_for(moved, timeout=10)  # the live position at once
        assert view["counters"] == {}  # held: written with the track, within INGEST_HOLD_S
        assert await store.track("H1", start.timestamp() - 1, start.timestamp() + 10) == []
    finally:
        pub.stop()
        stop.set()
        await task
    try:  # stopping wrote what was held
        track = await store.track("H1", start.timestamp() - 1, start.timestamp() + 10)
        assert [round(f["lat"], 4) for f in track] == [36.38, 36.3801, 36.3802, 36.3803, 36.3804]
        assert (await store.vehicle("H1"))["counters"]["fix_ok"] == 5
    finally:
        await store.close()


async def _fix_count(store, vid, n):
    view = await store.vehicle(vid)
    return view if view and view["counters"].get("fix_ok", 0) >= n else None


@pytest.mark.allow_logged_errors
async def test_garbage_is_counted_and_the_subscriber_goes_on(tmp_path, redis_url, database_url, mqtt_url):
    settings, stop, task = await _running_ingest(tmp_path, redis_url, mqtt_url, INGEST_MAX_PAYLOAD=1000)
    store = Store.from_url(redis_url, database_url)
    pub = await _publisher(mqtt_url, "test-garbage-pub")
    try:
        t = datetime.now(timezone.utc).replace(microsecond=0)
        pub.publish("fleet/G1/nmea", b"\xff\xfe\x00garbage\r\n$GPGGA,bad*00\r\n")
        pub.publish("fleet/G1/nmea", b"$" + b"A" * 5000)  # above the payload limit
        pub.publish("fleet/G1/status", b"\xff")
        pub.publish("fleet/bad id/nmea", b"x")  # not a vehicle id
        pub.publish("fleet/G2/nmea", _burst(t, 36.39, 119.76))  # not a registered vehicle
        pub.publish("fleet/G1/nmea", _burst(t, 36.39, 119.76))
        view = await wait_for(lambda: _fix_count(store, "G1", 1), timeout=10)
        assert view["counters"]["bad_checksum"] >= 1
        stats = await wait_for(lambda: _stats_with(store, "rejected:payload_too_large"), timeout=10)
        assert stats["rejected:status_not_ascii"] == 1
        assert stats["rejected:bad_vehicle_id"] == 1
        assert stats["rejected:unknown_vehicle"] == 1 and await store.vehicle("G2") is None
        assert not task.done()
    finally:
        pub.stop()
        stop.set()
        await task
        await store.close()


async def _stats_with(store, key):
    stats = await store.ingest_stats()
    return stats if key in stats else None


async def test_last_will_marks_the_vehicle_offline(tmp_path, redis_url, database_url, mqtt_url):
    settings, stop, task = await _running_ingest(tmp_path, redis_url, mqtt_url)
    store = Store.from_url(redis_url, database_url)
    pub = await _publisher(mqtt_url, "test-status-pub")
    try:
        pub.publish("fleet/W1/nmea", _burst(datetime.now(timezone.utc), 36.38, 119.75))
        pub.publish("fleet/W1/status", b"offline", qos=1)
        view = await wait_for(lambda: _link(store, "W1", "offline"), timeout=10)
        assert view["state"] == "offline"
    finally:
        pub.stop()
        stop.set()
        await task
        await store.close()


async def _link(store, vid, link):
    view = await store.vehicle(vid)
    return view if view and view["link"] == link else None


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="shared subscriptions need mosquitto (amqtt has none)")
async def test_two_ingests_on_a_shared_subscription_split_the_messages_and_write_each_once(
        tmp_path, redis_url, database_url):
    """MQTT_SHARED_GROUP on mosquitto: two ingest processes' subscriptions ($share/ingest/...)
    each take part of the messages, none is taken twice, and every vehicle's fixes are written."""
    broker = start_broker(tmp_path / "broker", kind="mosquitto")
    settings = test_settings(tmp_path, REDIS_URL=redis_url, MQTT_URL=broker.url, MQTT_SHARED_GROUP="ingest")
    ids = [f"S{i:02d}" for i in range(20)]
    await register_vehicles(settings.DATABASE_URL, ids)
    stop, ingests = asyncio.Event(), []
    tasks = [asyncio.create_task(service.serve(settings, redis_url, broker.url, stop=stop, hook=ingests.append))
             for _ in range(2)]
    store = Store.from_url(redis_url, database_url)
    try:
        await wait_for(lambda: _all_connected(ingests), timeout=15)
        pub = await _publisher(broker.url, "test-shared-pub")
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=10)
        for i in range(5):
            for n, vid in enumerate(ids):
                pub.publish(f"fleet/{vid}/nmea", _burst(start + timedelta(seconds=i), 36.38 + n * 1e-3, 119.75 + i * 1e-4))
        await wait_for(lambda: _messages(ingests, 100), timeout=15)
        counts = [ingest.stats["messages"] for ingest in ingests]
        assert sum(counts) == 100 and min(counts) > 0, counts
        for vid in ids:  # each vehicle's five fixes, whichever process took them
            await wait_for(lambda: _fix_count(store, vid, 5), timeout=15)
        pub.stop()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await store.close()
        broker.stop()


async def _all_connected(ingests):
    return len(ingests) == 2 and all(ingest.mqtt_ok for ingest in ingests)


async def _messages(ingests, n):
    await asyncio.sleep(0.3)  # a message taken twice would arrive meanwhile
    return sum(ingest.stats["messages"] for ingest in ingests) >= n
