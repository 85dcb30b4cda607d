"""The JT/T 808 gateway end to end on the real PostgreSQL, Redis and broker, with the ingest in
process: a terminal bound by the admin service registers, authenticates and reports; its position
reaches the vehicle's live state and track through the ingest (the same plausibility and store
as NMEA), its emergency alarm stands on the vehicle's live state, a 0x0704 盲区补传 batch (cut
into sub-packages) fills the track. Refusals: an unbound terminal, a wrong code, data before
authentication. Malformed bytes never end the connection or the gateway: counted by reason. The
gateway publishes with its own credential (device kind jt808), whose ACL allows only the jt808
topics. Last, the terminal simulator drives a vehicle through the gateway."""
from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from ingest import jt808_gateway, service
from ingest.jt808 import REGISTER_NO_TERMINAL, REGISTER_OK, RESULT_FAILED, RESULT_OK, encode_frame
from services.devices import Actor
from services.jt808_terminals import TerminalService
from simulators import nmea_out
from simulators.jt808_terminal import Terminal, drive_terminal, location_body
from store.db import Database
from store.devices import DeviceStore
from store.live import LIVE_VEHICLES, Store
from tests.conftest import register_vehicles, test_settings, wait_for

pytestmark = [pytest.mark.integration]
PHONE = "013912345678"


@pytest.fixture
async def center(request, tmp_path, redis_url, database_url, mqtt_url, servers):
    """The ingest and the gateway (on a free port) in process; vehicles J1, J2 registered, the
    terminal PHONE bound to J1. Yields (gateway, store). Settings: the test's parameter, if any."""
    settings = test_settings(tmp_path, REDIS_URL=redis_url, MQTT_URL=mqtt_url, MQTT_DEVICE_URL=servers.device_url,
                             JT808_HOST="127.0.0.1", JT808_PORT=0,
                             **{"JT808_IDLE_S": 30.0, **getattr(request, "param", {})})
    await register_vehicles(database_url, ["J1", "J2"])
    db = Database(database_url, max_size=2)
    await TerminalService(db).bind({"phone": PHONE, "vehicle_id": "J1"}, by=Actor("admin"))
    await db.close()
    stop = asyncio.Event()
    gateways: list = []
    tasks = [asyncio.create_task(service.serve(settings, redis_url, mqtt_url, stop=stop)),
             asyncio.create_task(jt808_gateway.serve(settings, redis_url, stop=stop, hook=gateways.append))]
    store = Store.from_url(redis_url, database_url)
    try:
        await wait_for(lambda: gateways, timeout=20)
        await wait_for(lambda: gateways[0].mqtt_ok, timeout=20)  # the broker took its new credential
        yield gateways[0], store
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await store.close()


async def terminal(gateway, phone: str = PHONE) -> Terminal:
    client = Terminal(phone, "T000001")
    await client.connect("127.0.0.1", gateway.settings.JT808_PORT)
    return client


async def position(store, vehicle_id, lat):
    view = await store.vehicle(vehicle_id)
    return view if view and view.get("fix") and abs(view["fix"]["lat"] - lat) < 1e-6 else None


async def test_register_authenticate_report_reaches_the_live_state(center):
    gateway, store = center
    client = await terminal(gateway)
    updates: list[dict] = []  # J1's updates on the live feed's vehicle channel
    live = store.redis.pubsub()
    await live.subscribe(LIVE_VEHICLES)

    async def follow() -> None:
        async for message in live.listen():
            if message["type"] == "message":
                updates.extend(u for u in orjson.loads(message["data"]) if u.get("id") == "J1")

    following = asyncio.create_task(follow())
    try:
        assert await client.register() == REGISTER_OK and len(client.code) == 16
        assert await client.authenticate() == RESULT_OK
        now = datetime.now(timezone.utc).replace(microsecond=0)
        assert await client.report(location_body(36.0712, 120.3801, now - timedelta(seconds=2), speed_kmh=36.0,
                                                 course=90)) == RESULT_OK
        view = await wait_for(lambda: position(store, "J1", 36.0712), timeout=10)
        assert view["fix"]["lon"] == pytest.approx(120.3801, abs=1e-6)
        assert view["fix"]["speed_kmh"] == pytest.approx(36.0, abs=0.05) and view["fix"]["sats"] == 9
        # an emergency (alarm bit 0) stands on the live state until a report without it
        assert await client.report(location_body(36.0713, 120.3801, now - timedelta(seconds=1),
                                                 alarms=("emergency",))) == RESULT_OK
        view = await wait_for(lambda: position(store, "J1", 36.0713), timeout=10)
        assert view["signal"] == "alarm:emergency"
        assert await client.heartbeat() == RESULT_OK
        assert await client.report(location_body(36.0714, 120.3801, now)) == RESULT_OK
        view = await wait_for(lambda: position(store, "J1", 36.0714), timeout=10)
        assert view["signal"] is None
        track = await wait_for(lambda: _track_len(store, "J1", now, 3), timeout=15)  # held INGEST_HOLD_S
        assert [round(f["lat"], 4) for f in track] == [36.0712, 36.0713, 36.0714]
        stats = await wait_for(lambda: _stats(store, "jt808:locations", 3), timeout=10)
        assert stats["jt808:auth_ok"] == 1 and stats["jt808:registered"] == 1 and stats["jt808:alarm_reports"] == 1
        assert stats["jt808_alarm:emergency"] == 1 and stats["jt808_ingest:fix"] == 3 and stats["fix_ok"] == 3
        beat = (await store.services(["jt808"]))["jt808"]
        assert beat["authenticated"] == 1 and beat["status"] == "ok"
        # the live feed's updates carry the alarm with its fix, and the next fix without it
        await wait_for(lambda: [u for u in updates if u.get("lat") == pytest.approx(36.0714)], timeout=10)
        signals = {round(u["lat"], 4): u.get("sig") for u in updates if "lat" in u}
        assert signals == {36.0712: None, 36.0713: "alarm:emergency", 36.0714: None}
    finally:
        following.cancel()
        await live.aclose()
        client.close()


async def _stats(store, key, n):
    stats = await store.ingest_stats()
    return stats if stats.get(key, 0) >= n else None


async def test_a_blind_area_batch_in_sub_packages_fills_the_track(center):
    gateway, store = center
    client = await terminal(gateway)
    try:
        await client.register()
        assert await client.authenticate() == RESULT_OK
        now = datetime.now(timezone.utc).replace(microsecond=0)
        await client.report(location_body(36.1, 120.4, now))
        await wait_for(lambda: position(store, "J1", 36.1), timeout=10)
        gap = [location_body(36.05 + i * 1e-4, 120.4, now - timedelta(seconds=60 - i), speed_kmh=20.0)
               for i in range(40)]  # 40 reports of 31 bytes: 1,323 bytes of body, two sub-packages
        assert await client.batch(gap) == RESULT_OK
        track = await wait_for(lambda: _track_len(store, "J1", now, 41), timeout=15)
        assert round(track[0]["lat"], 4) == 36.05 and round(track[-1]["lat"], 4) == 36.1
        assert (await store.vehicle("J1"))["fix"]["lat"] == pytest.approx(36.1)  # the live position stays
        stats = await wait_for(lambda: _stats(store, "jt808:batches", 1), timeout=10)
        assert stats["jt808:packages_joined"] == 1 and stats["jt808:blind_area_reports"] == 40
    finally:
        client.close()


async def _track_len(store, vid, now, n):
    track = await store.track(vid, now.timestamp() - 120, now.timestamp() + 1)
    return track if len(track) >= n else None


async def test_refusals_unbound_terminal_wrong_code_data_before_auth(center):
    gateway, store = center
    stranger = await terminal(gateway, "013800000000")
    client = await terminal(gateway)
    try:
        assert await stranger.register() == REGISTER_NO_TERMINAL and stranger.code == ""
        assert await client.register() == REGISTER_OK
        assert await client.report(location_body(36.2, 120.4, datetime.now(timezone.utc))) == RESULT_FAILED
        assert await client.authenticate(client.code[::-1]) == RESULT_FAILED
        assert await client.report(location_body(36.2, 120.4, datetime.now(timezone.utc))) == RESULT_FAILED
        assert await client.authenticate() == RESULT_OK
        stats = await wait_for(lambda: _stats(store, "jt808:before_auth", 2), timeout=10)
        assert stats["jt808:auth_refused"] == 1 and stats["jt808:register_refused:4"] == 1
        assert "jt808:locations" not in stats and (await store.vehicle("J1")) is None
    finally:
        stranger.close()
        client.close()


async def test_malformed_bytes_are_counted_and_the_connection_goes_on(center):
    gateway, store = center
    client = await terminal(gateway)
    try:
        await client.register()
        assert await client.authenticate() == RESULT_OK
        rng = random.Random(808)
        good = encode_frame(0x0200, PHONE, 9, location_body(36.3, 120.4, datetime.now(timezone.utc)))
        junk = [b"\x7e\x02\x00\x7e", b"\x7e" + good[1:-2] + bytes((good[-2] ^ 1,)) + b"\x7e",  # short; bad check
                b"\x7e\x7d\x03\x7e", bytes(rng.randrange(256) for _ in range(5000)), b"\x7e" + b"\x01" * 3000 + b"\x7e"]
        for chunk in junk:
            client.writer.write(chunk)
        client.writer.write(b"\x7e" + good)  # a flag first: the flood's run ends
        assert await client.result() == RESULT_OK
        await wait_for(lambda: position(store, "J1", 36.3), timeout=10)
        stats = await wait_for(lambda: _stats(store, "jt808:bad_checksum", 1), timeout=10)
        assert stats["jt808:too_short"] >= 1 and stats["jt808:bad_escape"] >= 1 and stats["jt808:too_long"] >= 1
        assert gateway.authenticated == 1
    finally:
        client.close()


@pytest.mark.parametrize("center", [{"JT808_IDLE_S": 1.0}], indirect=True)
async def test_an_idle_connection_is_closed_and_a_foreign_phone_refused(center):
    gateway, store = center
    client = await terminal(gateway)
    try:
        await client.register()
        assert await client.authenticate() == RESULT_OK
        report = location_body(36.6, 120.4, datetime.now(timezone.utc))
        client.writer.write(encode_frame(0x0200, "013800000000", 5, report))
        assert await client.result() == RESULT_FAILED  # authenticated as PHONE, not as that one
        assert await client.heartbeat() == RESULT_OK
        assert await asyncio.wait_for(client.reader.read(100), 10) == b""  # closed after 1 s of silence
        stats = await wait_for(lambda: _stats(store, "jt808:idle_closed", 1), timeout=10)
        assert stats["jt808:before_auth"] == 1 and stats["jt808:closed"] == 1 and gateway.authenticated == 0
    finally:
        client.close()


async def test_the_gateway_credential_may_publish_only_jt808_topics(center):
    gateway, store = center
    device = await DeviceStore(store.db).get("JT808-GW")
    assert device.kind == "jt808" and device.active
    t = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert gateway.publish("fleet/J2/nmea", _burst(t, 36.4, 120.4))  # queued; the broker's ACL drops it
    assert gateway.publish("fleet/J2/jt808", orjson.dumps({"terminal": "1", "fixes": [
        {"t": t.timestamp(), "lat": 36.5, "lon": 120.5, "valid": True}]}))
    await wait_for(lambda: position(store, "J2", 36.5), timeout=10)  # after the NMEA, on one connection
    assert not any(key.startswith("nmea:") for key in await store.ingest_stats())


def _burst(t: datetime, lat: float, lon: float) -> bytes:
    sentences = (nmea_out.gga(t, lat, lon), nmea_out.rmc(t, lat, lon, speed_kmh=10.0, course_deg=0.0))
    return ("\r\n".join(sentences) + "\r\n").encode()


async def test_the_simulator_drives_a_vehicle_through_the_gateway(center):
    from simulators.roads import RoadNet
    from simulators.vehicles import make_fleet

    gateway, store = center
    square = [(119.750, 36.380), (119.760, 36.380), (119.760, 36.390), (119.750, 36.390), (119.750, 36.380)]
    net = RoadNet([square[i:i + 2] for i in range(4)], [40.0] * 4, [False] * 4)  # a block of ~1 km a side
    vehicle = make_fleet(net, ["J1"], random.Random(1))[0]
    stop = asyncio.Event()
    task = asyncio.create_task(drive_terminal(Terminal(PHONE), vehicle, net, "127.0.0.1",
                                              gateway.settings.JT808_PORT, stop, every_s=0.2, gap_every=8,
                                              gap_reports=3))
    try:
        await wait_for(lambda: _stats(store, "jt808:batches", 1), timeout=20)
        view = await wait_for(lambda: store.vehicle("J1"), timeout=10)
        assert view["fix"] is not None
    finally:
        stop.set()
        counts = await task
    assert counts["reports"] >= 5 and counts["batches"] >= 1 and counts["refused"] == 0
