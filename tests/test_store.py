"""The Redis store: packed track records, batched fix writes, vehicle views."""
from __future__ import annotations

import pytest

from center.store import TRACK_RECORD, FixRecord, Store, pack_fix, unpack_track, vehicle_view


def _fix(vid="V1", t=1_700_000_000.25, lat=36.3812345, lon=119.7512345, live=True, track=True, **kw):
    values = dict(speed_kmh=36.0, course_deg=90.5, alt_m=45.0, quality=1, mode="A", sats=10, hdop=0.9, talker="GP")
    values.update(kw)
    return FixRecord(vid, t, lat, lon, values["speed_kmh"], values["course_deg"], values["alt_m"],
                     values["quality"], values["mode"], values["sats"], values["hdop"], values["talker"], live, track)


@pytest.mark.parametrize("lat, lon", [(36.38123456, 119.75123456), (-33.8688197, 151.2092955), (0.0000001, -0.0000001),
                                      (89.9999999, 179.9999999)])
def test_track_record_round_trip_within_1e7_degrees(lat, lon):
    hour, record = pack_fix(_fix(lat=lat, lon=lon))
    assert len(record) == TRACK_RECORD.size == 20
    (back,) = unpack_track(hour, record)
    assert abs(back["lat"] - lat) <= 0.6e-7 and abs(back["lon"] - lon) <= 0.6e-7
    assert back["t"] == pytest.approx(1_700_000_000.25, abs=0.001)
    assert back["speed_kmh"] == pytest.approx(36.0, abs=0.036)
    assert back["course_deg"] == pytest.approx(90.5, abs=0.01)


def test_track_record_keeps_missing_values_missing():
    hour, record = pack_fix(_fix(speed_kmh=None, course_deg=None, alt_m=None, quality=None, sats=None))
    (back,) = unpack_track(hour, record)
    assert back["speed_kmh"] is None and back["course_deg"] is None and back["alt_m"] is None
    assert back["quality"] is None and back["sats"] is None


@pytest.mark.parametrize("age, link, state", [(5, None, "online"), (31, None, "stale"), (301, None, "offline"),
                                              (5, "offline", "offline"), (None, None, "offline")])
def test_vehicle_state_from_fix_age_and_link(age, link, state):
    now = 1_700_000_000.0
    raw = {} if age is None else {"t": str(now - age), "lat": "36.0", "lon": "119.0"}
    if link:
        raw["link"] = link
    assert vehicle_view("V1", raw, now, 30, 300)["state"] == state


@pytest.mark.integration
@pytest.mark.asyncio
async def test_write_fixes_then_read_latest_track_and_nearest(redis_url):
    store = Store.from_url(redis_url)
    try:
        t0 = 1_700_000_000.0
        fixes = [_fix(t=t0 + i, lon=119.75 + i * 1e-4) for i in range(5)]
        fixes.append(_fix(t=t0 - 100, live=False))  # out of order: track only
        fixes.append(_fix(vid="V2", t=t0, lat=36.40, lon=119.80))
        updates = await store.write_fixes(fixes, {"V1": {"fix_ok": 5}}, seen={"V1": t0 + 5, "V2": t0},
                                          retention_s=86400)
        assert {u["id"] for u in updates} == {"V1", "V2"}
        v1 = await store.vehicle("V1", now=t0 + 10)
        assert v1["fix"]["lon"] == pytest.approx(119.7504) and v1["state"] == "online"
        assert v1["counters"] == {"fix_ok": 5}
        track = await store.track("V1", t0 - 1000, t0 + 1000)
        assert [round(f["t"]) for f in track] == [round(t0 - 100)] + [round(t0 + i) for i in range(5)]
        assert await store.track("V1", t0 + 1, t0 + 2) == track[2:4]
        nearest = await store.nearest_vehicles(119.75, 36.3812, 10_000)
        assert [vid for vid, _ in nearest] == ["V1", "V2"]
        assert await store.vehicle("nope") is None
    finally:
        await store.close()
