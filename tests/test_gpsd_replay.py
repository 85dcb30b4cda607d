"""Issue 3's required test: every gpsd capture replayed through the real broker on the backfill
topic into the real ingest service, then read back through the HTTP track API and compared with
gpsd's own decoding (``.log.chk``).

One vehicle per capture, 20 lines per MQTT message, QoS 1. The comparison rules (which TPVs are
real positions, which speeds are reported ones, why gpsd printed no TPV for an epoch) are those
of ``tests/test_nmea_captures.py``, reused from there.
"""
from __future__ import annotations

import asyncio
import collections
import re

import orjson
import pytest

from messaging.mqtt import MqttClient
from ingest import service
from tests.captures import CAPTURES, CHUNK_LINES, explain, gpsd_positions, replay_backfill
from tests.conftest import register_vehicles, test_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def vehicle_id(path) -> str:
    """One vehicle per capture, named after the file."""
    return "gpsd-" + re.sub(r"[^A-Za-z0-9_.-]", "_", path.name.removesuffix(".log"))


def tod_ms(t: float) -> str:
    """HH:MM:SS.mmm of an epoch time, from whole milliseconds (no float rounding surprises)."""
    ms = int(round(t * 1000)) % 86_400_000
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


async def _counters(store, vid):
    view = await store.vehicle(vid)
    return view["counters"] if view else {}


async def test_gpsd_captures_replayed_through_broker_ingest_and_track_api(tmp_path, redis_url, database_url, mqtt_url,
                                                                          web):  # noqa: F811
    await register_vehicles(database_url, [vehicle_id(path) for path in CAPTURES])  # the ingest takes only these
    settings = test_settings(tmp_path, REDIS_URL=redis_url, MQTT_URL=mqtt_url)
    stop = asyncio.Event()
    ingest_holder: dict = {}
    task = asyncio.create_task(service.serve(settings, redis_url, mqtt_url, stop=stop,
                                             hook=lambda i: ingest_holder.__setitem__("ingest", i)))
    await wait_for(lambda: "ingest" in ingest_holder and ingest_holder["ingest"].mqtt_ok, timeout=15)
    pub = MqttClient(mqtt_url, "gpsd-replay")
    pub.start()
    assert await asyncio.to_thread(pub.wait_connected, 10)
    await asyncio.sleep(0.3)
    expected, windows = {}, {}
    try:
        for path in CAPTURES:
            vid = vehicle_id(path)
            stored, counts, _ = replay_backfill(path)
            expected[vid] = counts["fix"]  # epochs the decoder emits as fixes, whatever the chunking
            times = [fix.time.timestamp() for fix in stored] or [0.0]
            windows[vid] = (max(0, int(min(times)) - 60), int(max(times)) + 60)  # the track API reads a month at most
            lines = path.read_bytes().splitlines(keepends=True)
            for start in range(0, len(lines), CHUNK_LINES):
                pub.publish(f"fleet/{vid}/nmea/backfill", b"".join(lines[start:start + CHUNK_LINES]), qos=1)

        async def all_judged():
            for vid, n in expected.items():
                c = await _counters(web.store, vid)
                judged = c.get("fix_ok", 0) + c.get("fix_track_only", 0) + sum(
                    v for k, v in c.items() if k.startswith("fix_rejected:"))
                if c.get("fix", 0) < n or judged < c.get("fix", 0):
                    return False
            return True

        await wait_for(all_judged, timeout=120, interval=0.25)
        token = await web.login("dispatcher")
        stored_total = matched = distinct_total = produced_total = speed_checked = 0
        exceptions, speed_exceptions, per_file = [], [], {}
        for path in CAPTURES:
            vid = vehicle_id(path)
            since, until = windows[vid]
            response = await web.call("GET", f"/api/vehicles/{vid}/track?since={since}&until={until}", token=token)
            fixes = orjson.loads(response.body)["fixes"] if response.code == 200 else []
            reports = gpsd_positions(path)
            distinct = {(t["lat"], t["lon"]) for t in reports}
            speeds = collections.defaultdict(list)
            for tpv in reports:
                if "time" in tpv and "speed" in tpv and "track" in tpv:
                    speeds[tpv["time"][11:23]].append(tpv["speed"])
            produced = set()
            for fix in fixes:
                hits = {p for p in distinct if abs(p[0] - fix["lat"]) <= 1e-6 and abs(p[1] - fix["lon"]) <= 1e-6}
                if hits:
                    matched += 1
                    produced |= hits
                else:
                    exceptions.append(f"{path.name} {fix['time']} {fix['lat']:.7f},{fix['lon']:.7f}: "
                                      f"{explain(path, _FixTime(fix['t']))}")
                candidates = speeds.get(tod_ms(fix["t"]), [])
                if fix["speed_kmh"] is not None and candidates:
                    speed_checked += 1
                    if not any(abs(c - fix["speed_kmh"] / 3.6) <= 0.01 for c in candidates):
                        speed_exceptions.append(f"{path.name} {fix['time']}: {fix['speed_kmh'] / 3.6:.3f} m/s "
                                                f"vs {candidates}")
            stored_total += len(fixes)
            distinct_total += len(distinct)
            produced_total += len(produced)
            per_file[path.name] = (len(fixes), len(produced), len(distinct))
        report = "\n".join(exceptions)
        assert stored_total > 350, per_file
        assert matched / stored_total >= 0.98, report
        assert len(exceptions) == stored_total - matched
        assert speed_checked > 300 and speed_exceptions == [], speed_exceptions
        assert produced_total / distinct_total >= 0.90, per_file
        assert per_file["GPSmap-76S.log"][0] == 0  # simulation mode: no real fixes
        assert not task.done()
        print(f"\nstored {stored_total}, matched {matched}, distinct {produced_total}/{distinct_total}; "
              f"exceptions:\n{report}")
    finally:
        pub.stop()
        stop.set()
        await task


class _FixTime:
    """The ``time`` attribute `explain` reads, from an epoch time."""

    def __init__(self, t: float):
        from datetime import datetime, timezone

        self.time = datetime.fromtimestamp(t, timezone.utc)
