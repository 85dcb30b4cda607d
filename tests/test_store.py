"""The Redis store: packed track records, batched fix writes, vehicle views."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from store.live import TRACK_RECORD, FixRecord, Store, fix_text, pack_fix, unpack_track, vehicle_view


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


def test_latest_fix_packed_in_one_field_reads_back_exactly_and_old_hashes_still_read():
    fix = FixRecord("V1", 1_700_000_000.25, 36.123456789, 119.987654321, 21.6, 359.99, -12.5, 1, "A", 10, 0.9,
                    "BD", True, True)
    raw = {"fix": fix_text(fix), "seen": repr(1_700_000_001.0), "signal": ""}
    view = vehicle_view("V1", raw, 1_700_000_002.0, 30, 300)
    assert view["fix"] == {"t": fix.t, "lat": fix.lat, "lon": fix.lon, "speed_kmh": 21.6, "course_deg": 359.99,
                           "alt_m": -12.5, "quality": 1, "mode": "A", "sats": 10, "hdop": 0.9, "talker": "BD"}
    assert view["state"] == "online" and view["last_seen"] == 1_700_000_001.0
    # the text carries when the fix's message came; the vehicle's last message is the later time
    with_seen = {"fix": fix_text(fix, 1_700_000_003.5), "seen": repr(1_700_000_001.0)}
    assert vehicle_view("V1", with_seen, 1_700_000_004.0, 30, 300)["last_seen"] == 1_700_000_003.5
    assert vehicle_view("V1", with_seen, 1_700_000_004.0, 30, 300)["fix"] == view["fix"]
    assert vehicle_view("V1", {"fix": fix_text(fix, 1_700_000_003.5)}, 1_700_000_004.0, 30, 300)["last_seen"] \
        == 1_700_000_003.5
    unknown = FixRecord("V2", 1_700_000_000.0, 36.0, 119.0, None, None, None, None, None, None, None, "GP", True, True)
    fix_view = vehicle_view("V2", {"fix": fix_text(unknown)}, 1_700_000_000.0, 30, 300)["fix"]
    assert fix_view == {"t": 1_700_000_000.0, "lat": 36.0, "lon": 119.0, "speed_kmh": None, "course_deg": None,
                        "alt_m": None, "quality": None, "mode": None, "sats": None, "hdop": None, "talker": "GP"}
    legacy = {"t": "1700000000.0", "lat": "36.5", "lon": "119.5", "spd": "", "crs": "90.0", "alt": "", "q": "1",
              "mode": "", "sats": "7", "hdop": "", "talker": "GN", "seen": "1700000000.0", "signal": ""}
    old = vehicle_view("V3", legacy, 1_700_000_000.0, 30, 300)["fix"]  # a hash written before the packed field
    assert (old["lat"], old["lon"], old["course_deg"], old["sats"], old["talker"]) == (36.5, 119.5, 90.0, 7, "GN")


finite = st.floats(allow_nan=False, allow_infinity=False)
maybe = st.one_of(st.none(), finite)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 4e9), st.floats(-90, 90), st.floats(-180, 180), maybe, maybe, maybe,
       st.one_of(st.none(), st.integers(0, 8)), st.sampled_from([None, "A", "D", "E", "N"]),
       st.one_of(st.none(), st.integers(0, 99)), maybe, st.sampled_from(["GP", "GN", "BD", "GB", "GL", "GA"]))
def test_the_latest_fix_text_round_trips_at_its_stored_precision(t, lat, lon, spd, crs, alt, q, mode, sats, hdop,
                                                                   talker):
    """Every value reads back exactly, but lat and lon (to the nearest 1e-9 degree, 0.1 mm) and the
    speed (0.001 km/h), which the text stores rounded (halves up; a value too large for that to
    be exact stays as it is)."""
    fix = FixRecord("V1", t, lat, lon, spd, crs, alt, q, mode, sats, hdop, talker, True, True)
    view = vehicle_view("V1", {"fix": fix_text(fix), "seen": repr(t)}, t, 30, 300)["fix"]

    def rounded(x, scale):
        return x if x is None or abs(x * scale) >= 4e15 else math.floor(x * scale + 0.5) / scale

    assert view == {"t": t, "lat": rounded(lat, 1e9), "lon": rounded(lon, 1e9), "speed_kmh": rounded(spd, 1e3),
                    "course_deg": crs, "alt_m": alt, "quality": q, "mode": mode, "sats": sats, "hdop": hdop,
                    "talker": talker}
    assert abs(view["lat"] - lat) <= 5.000001e-10 and abs(view["lon"] - lon) <= 5.000001e-10
    assert spd is None or abs(view["speed_kmh"] - spd) <= max(5.000001e-4, abs(spd) * 1e-15)


def test_the_latest_fix_text_is_short_for_what_receivers_send():
    # a latitude in minutes over 60 and a speed in knots times 1.852 have 17 digits as floats
    fix = FixRecord("V1", 1795416064.91, 36 + 13.5768543 / 60, 119 + 35.5565757 / 60, 21.6 * 1.852, 0.0, 45.0,
                    1, "A", 10, 0.9, "GP", True, True)
    text = fix_text(fix, 1795416065.2113416)
    assert text == "1795416064.91,36.226280905,119.592609595,40.003,0.0,45.0,1,A,10,0.9,GP,1795416065.211"


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
async def test_write_fixes_then_read_latest_track_and_nearest(redis_url, database_url):
    store = Store.from_url(redis_url, database_url)
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


@pytest.mark.integration
@pytest.mark.asyncio
async def test_seen_only_vehicles_signals_and_the_hourly_track_index(redis_url, database_url):
    store = Store.from_url(redis_url, database_url)
    try:
        t0 = 1_700_000_000.0
        indexed: dict = {}
        await store.write_fixes([_fix(t=t0)], {"V1": {"fix_ok": 1}}, seen={"V1": t0}, retention_s=3600,
                                indexed=indexed)
        assert list(indexed) == [("V1", int(t0 // 3600))]  # index and expiry set once per hour
        # V1 then sends only void sentences (a tunnel): seen moves, the signal says why, the fix stays
        await store.write_fixes([], {"V1": {"no_fix": 2}, "V3": {"garbage": 1}},
                                seen={"V1": t0 + 5, "V3": t0 + 5}, signals={"V1": "no_fix:void"},
                                retention_s=3600, indexed=indexed)
        v1 = await store.vehicle("V1", now=t0 + 6)
        assert v1["signal"] == "no_fix:void" and v1["last_seen"] == t0 + 5 and v1["fix"]["t"] == t0
        assert v1["counters"] == {"fix_ok": 1, "no_fix": 2}
        v3 = await store.vehicle("V3", now=t0 + 6)
        assert v3["fix"] is None and v3["signal"] is None and v3["last_seen"] == t0 + 5
        await store.write_fixes([_fix(t=t0 + 10)], {}, seen={"V1": t0 + 10}, retention_s=3600, indexed=indexed)
        v1 = await store.vehicle("V1", now=t0 + 11)
        assert v1["signal"] is None and v1["fix"]["t"] == t0 + 10  # a fix clears the signal
        # a fix, then void sentences, within one batch: the position moves and the signal stands
        await store.write_fixes([_fix(t=t0 + 11)], {}, seen={"V1": t0 + 12}, signals={"V1": "no_fix:void"},
                                retention_s=3600, indexed=indexed)
        v1 = await store.vehicle("V1", now=t0 + 12)
        assert v1["signal"] == "no_fix:void" and v1["fix"]["t"] == t0 + 11 and v1["last_seen"] == t0 + 12
        await store.write_fixes([_fix(t=t0 + 13)], {}, seen={"V1": t0 + 13.5}, retention_s=3600, indexed=indexed)
        v1 = await store.vehicle("V1", now=t0 + 14)  # seen with the fix: later than veh:seen's t0 + 12
        assert v1["last_seen"] == t0 + 13.5 and v1["fix"]["t"] == t0 + 13 and v1["signal"] is None
        key = f"trk:V1:{int(t0 // 3600)}"
        assert 0 < await store.redis.ttl(key) <= 7200 and await store.redis.zcard("trkidx:V1") == 1
        assert len(await store.track("V1", t0 - 1, t0 + 13)) == 4
    finally:
        await store.close()


@pytest.mark.integration
@pytest.mark.asyncio
async def test_vehicles_written_in_the_per_vehicle_hash_layout_read_until_the_ingest_writes_them(redis_url, database_url):
    """Vehicle hashes kept fix, seen and signal before the field hashes: they still read, and the
    field hashes take over field by field once the ingest writes the vehicle."""
    store = Store.from_url(redis_url, database_url)
    try:
        t0 = 1_700_000_000.0
        await store.redis.sadd("veh:ids", "V1", "V2")
        for vid in ("V1", "V2"):
            await store.redis.hset(f"veh:{vid}", mapping={"fix": fix_text(_fix(vid=vid, t=t0)), "seen": repr(t0 + 1),
                                                          "signal": "no_fix:void", "link": "online"})
        v1 = await store.vehicle("V1", now=t0 + 2)
        assert v1["fix"]["t"] == t0 and v1["last_seen"] == t0 + 1 and v1["signal"] == "no_fix:void"
        assert v1["link"] == "online" and v1["state"] == "online"
        # V1 only heard from (void sentences): seen moves, the old fix and signal stand
        await store.write_fixes([], {}, seen={"V1": t0 + 5}, retention_s=3600)
        v1 = await store.vehicle("V1", now=t0 + 6)
        assert v1["fix"]["t"] == t0 and v1["last_seen"] == t0 + 5 and v1["signal"] == "no_fix:void"
        # V2 sends a fix: it replaces the old one and clears the old signal; the link stays
        await store.write_fixes([_fix(vid="V2", t=t0 + 7)], {}, seen={"V2": t0 + 7}, retention_s=3600)
        rows = {v["id"]: v for v in await store.vehicles(now=t0 + 8)}
        assert rows["V2"]["fix"]["t"] == t0 + 7 and rows["V2"]["signal"] is None and rows["V2"]["link"] == "online"
        assert rows["V1"]["fix"]["t"] == t0 and rows["V1"]["signal"] == "no_fix:void"
        assert rows["V2"]["last_seen"] == t0 + 7 and rows["V1"]["last_seen"] == t0 + 5
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_known_ids_are_added_to_the_vehicle_set_once_and_again_after_the_cache_is_cleared(redis_url, database_url):
    store = Store.from_url(redis_url, database_url)
    try:
        t0 = 1_700_000_000.0
        known: set = set()
        await store.write_fixes([_fix(t=t0)], {"V1": {"fix_ok": 1}, "V4": {"garbage": 1}}, seen={"V1": t0},
                                retention_s=3600, known=known)
        assert known == {"V1", "V4"} and await store.vehicle_ids() == ["V1", "V4"]
        await store.redis.srem("veh:ids", "V1")  # what a Redis that lost data would hold
        await store.write_fixes([_fix(t=t0 + 1)], {}, seen={"V1": t0 + 1}, retention_s=3600, known=known)
        assert await store.vehicle_ids() == ["V4"]  # known ids are not sent again
        known.clear()  # the ingest clears its caches when a write fails
        await store.write_fixes([_fix(t=t0 + 2)], {}, seen={"V1": t0 + 2}, retention_s=3600, known=known)
        assert await store.vehicle_ids() == ["V1", "V4"] and known == {"V1"}
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_positions_go_into_the_geo_set_by_geoadd_and_one_beyond_its_range_stays_out(redis_url, database_url):
    """The latest positions are GEOADDed (Redis computes the geohash); a latitude beyond GEO's
    Web Mercator limit, which GEOADD refuses, keeps its latest fix but stays out of the GEO set,
    and the rest of the batch is written."""
    store = Store.from_url(redis_url, database_url)
    try:
        t0 = 1_700_000_000.0
        fixes = [_fix("V1", t0, 36.3812345, 119.7512345), _fix("V2", t0, 89.5, 10.0), _fix("V3", t0, 0.0, -180.0)]
        await store.write_fixes(fixes, {}, seen=dict.fromkeys(["V1", "V2", "V3"], t0), retention_s=3600)
        near = dict(await store.nearest_vehicles(119.7512345, 36.3812345, 1000))
        assert list(near) == ["V1"] and near["V1"] < 0.5
        assert [vid for vid, _ in await store.nearest_vehicles(-180.0, 0.0, 1000)] == ["V3"]
        assert {v["id"]: v["fix"]["lat"] for v in await store.vehicles(now=t0)} == {"V1": 36.3812345, "V2": 89.5,
                                                                                   "V3": 0.0}
    finally:
        await store.close()
