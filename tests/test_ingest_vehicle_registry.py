"""Which vehicles the ingest takes, on the real broker and Redis: ids outside the vehicle id rule
are refused and counted; a vehicle not in the fleet registry is kept aside (a capped list) and
counted, never put on the map; a vehicle registered later is taken from then on, without restart."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from messaging.mqtt import MqttClient, ReceivedMessage
from store.live import Store
from ingest import service
from ingest.vehicles import parse_fleet_topic
from store.fleet import valid_vehicle_id
from simulators import nmea_out
from tests.conftest import register_vehicles, test_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BAD_IDS = [".", "..", "x" * 65, "车1", "véhicule"]


@pytest.mark.parametrize("topic, parsed, valid", [
    ("fleet/V1/nmea", ("V1", "nmea"), True),
    ("fleet/V1/nmea/backfill", ("V1", "backfill"), True),
    ("fleet/V1/status", ("V1", "status"), True),
    ("fleet/a:b-c_d.e/nmea", ("a:b-c_d.e", "nmea"), True),
    ("fleet/" + "x" * 64 + "/nmea", ("x" * 64, "nmea"), True),
    ("fleet/" + "x" * 65 + "/nmea", ("x" * 65, "nmea"), False),
    ("fleet/./nmea", (".", "nmea"), False),
    ("fleet/../status", ("..", "status"), False),
    ("fleet/.../nmea", ("...", "nmea"), True),
    ("fleet/a/b/nmea", ("a/b", "nmea"), False),
    ("fleet//nmea", ("", "nmea"), False),
    ("fleet/V1\n/nmea", ("V1\n", "nmea"), False),
    ("fleet/车1/nmea", ("车1", "nmea"), False),
    ("fleet/V1/other", None, None),
    ("fleet/nmea", None, None),
    ("scada/V1/nmea", None, None),
])
def test_fleet_topics_and_the_vehicle_id_rule(topic, parsed, valid):
    assert parse_fleet_topic(topic) == parsed
    if parsed is not None:
        assert valid_vehicle_id(parsed[0]) is valid


def _burst(t: datetime, lat: float = 36.38, lon: float = 119.75) -> bytes:
    return ("\r\n".join([nmea_out.gga(t, lat, lon), nmea_out.rmc(t, lat, lon, speed_kmh=30.0, course_deg=0.0)])
            + "\r\n").encode()


async def _start(tmp_path, redis_url, mqtt_url, **overrides):
    settings = test_settings(tmp_path, REDIS_URL=redis_url, MQTT_URL=mqtt_url, **overrides)
    stop, holder = asyncio.Event(), {}
    task = asyncio.create_task(service.serve(settings, redis_url, mqtt_url, stop=stop,
                                             hook=lambda i: holder.__setitem__("ingest", i)))
    await wait_for(lambda: "ingest" in holder and holder["ingest"].mqtt_ok, timeout=15)
    pub = MqttClient(mqtt_url, f"registry-pub-{id(holder):x}")
    pub.start()
    assert await asyncio.to_thread(pub.wait_connected, 10)
    await asyncio.sleep(0.3)  # the ingest's subscriptions are acknowledged by now
    return holder["ingest"], stop, task, pub


async def _stop(stop, task, pub):
    pub.stop()
    stop.set()
    await task


async def _stat(store: Store, key: str, n: int):
    stats = await store.ingest_stats()
    return stats if stats.get(key, 0) >= n else None


async def _on_map(store: Store, vehicle_id: str):
    view = await store.vehicle(vehicle_id)
    return view if view and view["fix"] else None


async def test_ids_outside_the_rule_are_refused_and_counted(tmp_path, redis_url, database_url, mqtt_url):
    await register_vehicles(database_url, ["V1"])
    ingest, stop, task, pub = await _start(tmp_path, redis_url, mqtt_url)
    store = Store.from_url(redis_url, database_url)
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        for vid in BAD_IDS:
            pub.publish(f"fleet/{vid}/nmea", _burst(now), qos=1)
            pub.publish(f"fleet/{vid}/nmea/backfill", _burst(now - timedelta(minutes=5)), qos=1)
            pub.publish(f"fleet/{vid}/status", b"online", qos=1)
        # 'a/b': no single-level subscription delivers it; the route refuses it all the same
        ingest.on_messages([ReceivedMessage("fleet/a/b/nmea", _burst(now), 0, False, time.time())])
        pub.publish("fleet/V1/nmea", _burst(now), qos=1)
        stats = await wait_for(lambda: _stat(store, "rejected:bad_vehicle_id", 3 * len(BAD_IDS) + 1))
        assert stats["rejected:bad_vehicle_id"] == 3 * len(BAD_IDS) + 1
        assert "rejected:unknown_vehicle" not in stats  # refused for the id, not kept aside
        await wait_for(lambda: _on_map(store, "V1"))
        assert await store.vehicle_ids() == ["V1"]
        assert (await store.unknown_vehicles())["vehicles"] == []
    finally:
        await _stop(stop, task, pub)
        await store.close()


async def test_phantom_vehicles_are_kept_aside_capped_and_counted(tmp_path, redis_url, database_url, mqtt_url, web):  # noqa: F811
    await register_vehicles(database_url, ["V1"])
    ingest, stop, task, pub = await _start(tmp_path, redis_url, mqtt_url, VEHICLE_UNKNOWN_MAX=100)
    store = web.store
    keys_before = set(await store.redis.keys("*"))
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        for i in range(2000):
            pub.publish(f"fleet/GHOST{i:04d}/nmea", _burst(now, 36.38 + i * 1e-5), qos=1)
        for i in range(1990, 2000):  # the newest: a status message each, after their fix
            pub.publish(f"fleet/GHOST{i:04d}/status", b"offline", qos=1)
        pub.publish("fleet/V1/nmea", _burst(now), qos=1)
        stats = await wait_for(lambda: _stat(store, "rejected:unknown_vehicle", 2010), timeout=60)
        assert stats["rejected:unknown_vehicle"] == 2010
        await wait_for(lambda: _on_map(store, "V1"))

        assert await store.vehicle_ids() == ["V1"]  # not on the map, no live state
        assert set(ingest.vehicles.live_streams) == {"V1"}
        assert await store.nearest_vehicles(119.75, 36.38, 10_000, count=5000) == [("V1", pytest.approx(0, abs=1))]
        new_keys = set(await store.redis.keys("*")) - keys_before
        assert not [k for k in new_keys if "GHOST" in k]
        assert len(new_keys) < 20, sorted(new_keys)  # no Redis growth per phantom id

        kept = await store.unknown_vehicles(limit=1000)
        assert len(kept["vehicles"]) == 100  # VEHICLE_UNKNOWN_MAX, the newest
        assert all(v["vehicle_id"].startswith("GHOST") for v in kept["vehicles"])
        statused = {v["vehicle_id"]: v for v in kept["vehicles"] if v["topic"].endswith("/status")}
        assert sorted(statused) == [f"GHOST{i:04d}" for i in range(1990, 2000)]
        assert {v["count"] for v in statused.values()} == {2}
        assert all(v["at"] >= now.timestamp() - 5 for v in kept["vehicles"])

        token = await web.login("dispatcher")
        response = await web.call("GET", "/api/vehicles/unknown?limit=5", token=token)
        assert response.code == 200
        body = orjson.loads(response.body)
        assert len(body["vehicles"]) == 5 and body["total"] == 100
        first = body["vehicles"][0]
        assert set(first) >= {"vehicle_id", "topic", "time", "count"} and first["time"].endswith("Z")
    finally:
        await _stop(stop, task, pub)


async def test_a_vehicle_registered_later_is_taken_from_then_on(tmp_path, redis_url, database_url, mqtt_url):
    ingest, stop, task, pub = await _start(tmp_path, redis_url, mqtt_url)
    store = Store.from_url(redis_url, database_url)
    try:
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=60)
        pub.publish("fleet/LATE1/nmea", _burst(start), qos=1)
        pub.publish("fleet/LATE1/status", b"online", qos=1)
        await wait_for(lambda: _stat(store, "rejected:unknown_vehicle", 2))
        assert await store.vehicle("LATE1") is None
        assert [v["vehicle_id"] for v in (await store.unknown_vehicles())["vehicles"]] == ["LATE1"]

        await register_vehicles(database_url, ["LATE1"])
        sent = iter(range(1, 60))

        async def taken():
            i = next(sent)
            pub.publish("fleet/LATE1/nmea", _burst(start + timedelta(seconds=i), 36.38 + i * 1e-5), qos=1)
            return await _on_map(store, "LATE1")

        view = await wait_for(taken, timeout=25, interval=0.4)
        assert view["fix"]["lat"] > 36.38
        pub.publish("fleet/LATE1/status", b"offline", qos=1)
        view = await wait_for(lambda: _link(store, "LATE1", "offline"))
        assert view["state"] == "offline"
    finally:
        await _stop(stop, task, pub)
        await store.close()


async def _link(store, vid, link):
    view = await store.vehicle(vid)
    return view if view and view["link"] == link else None


@pytest.mark.parametrize("role, status", [(None, 401), ("crew", 403), ("agent", 200), ("dispatcher", 200),
                                          ("supervisor", 200), ("admin", 200)])
async def test_the_kept_aside_list_is_for_office_roles(web, role, status):  # noqa: F811
    token = await web.login(role) if role else None
    response = await web.call("GET", "/api/vehicles/unknown", token=token)
    assert response.code == status
    if status == 200:
        assert orjson.loads(response.body) == {"vehicles": [], "total": 0}
    else:
        assert orjson.loads(response.body)["error"]["code"] == ("unauthenticated" if status == 401 else "forbidden")


async def test_a_merged_write_retried_after_its_kept_aside_part_failed_writes_each_fix_once(tmp_path, redis_url, database_url):
    """Queued fleet batches are written as one; when the kept-aside part of that write fails after
    the fixes went in, the retry writes what is left of each batch, not the fixes again."""
    await register_vehicles(database_url, ["M1"])
    store = Store.from_url(redis_url, database_url)
    ingest = service.Ingest(test_settings(tmp_path, INGEST_BATCH=2, INGEST_HOLD_S=0.0), store)
    assert await ingest.load_fleet()
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=30)
    for i in range(3):  # three batches queued, each a fix of M1 and a message of a phantom
        ingest.on_messages([ReceivedMessage("fleet/M1/nmea", _burst(t0 + timedelta(seconds=i), 36.38 + i * 1e-4),
                                            0, False, time.time()),
                            ReceivedMessage("fleet/GHOST1/nmea", _burst(t0), 0, False, time.time())])
    assert len(ingest.fleet.queue) == 3
    keep, failed = store.keep_unknown_vehicles, []

    async def fails_once(entries, most):
        if not failed:
            failed.append(entries)
            raise ConnectionError("Redis went away")
        await keep(entries, most)

    store.keep_unknown_vehicles = fails_once
    writer = asyncio.create_task(ingest.writer())
    try:
        await wait_for(lambda: not ingest.fleet.queue)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    try:
        assert failed and failed[0]["GHOST1"][2] == 3  # the merged write held all three
        track = await store.track("M1", t0.timestamp() - 1, t0.timestamp() + 10)
        assert [f["t"] for f in track] == [(t0 + timedelta(seconds=i)).timestamp() for i in range(3)]
        kept = (await store.unknown_vehicles())["vehicles"]
        assert [(v["vehicle_id"], v["count"]) for v in kept] == [("GHOST1", 3)]
        assert ingest.stats["writes_merged"] == 0 and ingest.stats["redis_write_failed"] == 1
    finally:
        await store.close()
