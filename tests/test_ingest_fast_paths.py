"""The ingest's fast paths (one GGA+RMC pair decoded at once; live fixes that clearly pass every
plausibility step) give exactly what the general paths give: differential tests on seeded,
deliberately messy inputs."""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from ingest.fixes import Fix, NmeaStream
from ingest.nmea import checksum
from ingest.plausibility import Plausibility

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


class _Payloads:
    """GGA+RMC payloads, mostly clean, sometimes broken in one of many ways."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def payload(self) -> bytes:
        rng = self.rng

        def C(xs):
            return xs[0] if rng.random() < 0.85 else rng.choice(xs)

        def frame(body):
            return f"${body}*{checksum(body)}"

        t = C(["081500.00", "081500", "081501.5", "235959.99", "", "081500.0", "24000", "086000"])
        t2 = t if rng.random() < 0.8 else C(["081500.00", "", "081501"])
        lat = C(["3623.1234567", "3623.12", "3623", "9000.0", "9100.0", "3660.0", "", "+3623.1", " 3623.1", "nan", "0000.000"])
        lat2 = lat if rng.random() < 0.7 else C(["3623.12345", "3623.1", "", "3623.123456789"])
        lon = C(["11945.1234567", "11945.12", "18000.0", "18000.1", "", "0000.000"])
        ns = C(["N", "S", "", "X", "n"]) if rng.random() < 0.3 else "N"
        ew = C(["E", "W", "", "Q"]) if rng.random() < 0.3 else "E"
        q = C(["1", "2", "0", "6", "8", "", "x", "4"])
        sats = C(["10", "0", "", "05", "x"])
        hdop = C(["0.9", "", "nan", "1e13"])
        alt = C(["45.0", "", "-12.5", "inf"])
        talk = C(["GP", "GN", "GL", "BD"])
        talk2 = talk if rng.random() < 0.7 else C(["GP", "GN"])
        status = C(["A", "A", "V", ""])
        spd = C(["21.60", "", "0.0", "x", "5000"])
        crs = C(["0.0", "", "359.9", "400"])
        date = C(["221126", "221126", "290224", "290223", "", "2208-1", "010180", "311299"])
        mode = rng.choice([None, "A", "D", "N", "S", "", "AB"])
        gga = f"{talk}GGA,{t},{lat},{ns},{lon},{ew},{q},{sats},{hdop},{alt},M,6.0,M,,"
        if rng.random() < 0.05:
            gga = gga.replace("GGA", "GGAH")
        rmc = f"{talk2}RMC,{t2},{status},{lat2},{ns},{lon},{ew},{spd},{crs},{date},,"
        rmc += ",A" if mode is None else f",{mode}"
        if rng.random() < 0.1:
            rmc = rmc.rsplit(",", 3)[0]
        lines = [frame(gga), frame(rmc)]
        if rng.random() < 0.1:
            lines.reverse()
        if rng.random() < 0.05:
            lines[0] = lines[0][:-1] + "0"
        if rng.random() < 0.05:
            lines[1] = " " + lines[1]
        if rng.random() < 0.05:
            lines[1] = lines[1] + " "
        sep = C(["\r\n", "\r\n", "\n", "\r"])
        p = sep.join(lines) + (sep if rng.random() < 0.8 else "")
        if rng.random() < 0.05:
            p = p.replace("$", "x$", 1)
        return p.encode()


def _result(r):
    return (r.fixes, r.signal, sorted(r.counts.items()))


def _state(s):
    return (s._pending is None, s._date_ord, s._date_tod, list(s._held))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pair_fast_path_equals_the_general_decoder(seed, monkeypatch):
    source = _Payloads(seed)
    general = NmeaStream._pair_fix
    taken = [0]

    def counted(self, lines):
        fix = general(self, lines)
        taken[0] += fix is not None
        return fix

    clock = datetime(2026, 11, 22, 8, 15, tzinfo=timezone.utc)
    for _ in range(1500):
        sequence = [source.payload() for _ in range(source.rng.randint(1, 4))]
        fast, slow = NmeaStream(), NmeaStream()
        for payload in sequence:
            monkeypatch.setattr(NmeaStream, "_pair_fix", counted)
            got = fast.feed(payload, clock)
            monkeypatch.setattr(NmeaStream, "_pair_fix", lambda self, lines: None)
            want = slow.feed(payload, clock)
            assert (_result(got), _state(fast)) == (_result(want), _state(slow)), payload
    assert taken[0] > 300  # the fast path really ran on the clean payloads


@pytest.mark.parametrize("seed", [1, 2])
def test_plausibility_shortcut_equals_the_full_chain(seed):
    rng = random.Random(seed)

    def C(xs):
        return xs[0] if rng.random() < 0.8 else rng.choice(xs)

    def mk(base_lat, base_lon, t):
        return Fix(t, base_lat, base_lon, C([30.0, None, 250.0, -1.0, 2500.0, float("nan")]), C([90.0, None, 361.0, -0.1]),
                   C([45.0, None, -13000.0, 2e5]), C([1, None]), C(["A", None]), C([10, None]), C([0.9, None]), "GP")

    checks = 0
    for _ in range(3000):
        fast = Plausibility(max_speed_kmh=C([200.0, 120.0, 2500.0]))
        full = Plausibility(max_speed_kmh=fast.max_speed_kmh)
        lat, lon = C([36.4, 0.0, 89.99, -89.99, 91.0, float("nan")]), C([119.7, 0.0, 179.99, -179.99, 181.0])
        t = NOW + timedelta(seconds=C([0, 400, -90000, -86400, 299, 301, -3e8, -86399.5]))
        t = t.replace(tzinfo=C([timezone.utc, timezone(timedelta(0)), timezone(timedelta(hours=8)), None]))
        last = None
        for _ in range(rng.randint(1, 5)):
            fix = mk(lat, lon, t)
            a = fast.check(fix, last, NOW)
            b = full._check_chain(fix, last, NOW, False)
            assert (a.live, a.track, a.reason, a.fix) == (b.live, b.track, b.reason, b.fix), (fix, last)
            assert fast.counts == full.counts
            checks += 1
            if a.live:
                last = a.fix
            elif rng.random() < 0.3:
                last = fix
            dist = rng.choice([0.0, 1e-5, 1e-4, 5e-4, 2e-3, 1e-2]) * rng.random() * 3
            angle = rng.random() * 2 * math.pi
            lat, lon = lat + dist * math.cos(angle), lon + dist * math.sin(angle)
            t = t + timedelta(seconds=C([1.0, 0.0, -1.0, 0.5, 2.0, 10.0]))
    assert checks > 3000


@pytest.mark.parametrize("seed", [1, 2])
def test_accept_live_on_epoch_seconds_agrees_with_the_datetime_chain(seed):
    """accept_live says True only where check() accepts untouched, counting the same; when it says
    False it counts nothing (check then decides). Times are drawn at and around every window edge.
    accept_live takes the records of the fix and of the last one (UTC times, as the decoder's)."""
    from ingest.vehicles import _record

    rng = random.Random(seed)

    def C(xs):
        return xs[0] if rng.random() < 0.75 else rng.choice(xs)

    edges = [0.0, 299.999, 300.0, 300.0005, 299.9995, -86399.9995, -86400.0, -86400.0005, -86399.0, 5.0]
    accepted = 0
    for _ in range(3000):
        fast = Plausibility(max_speed_kmh=C([200.0, 120.0]))
        full = Plausibility(max_speed_kmh=fast.max_speed_kmh)
        now = NOW + timedelta(microseconds=rng.randrange(1_000_000))
        last = None
        lat, lon = C([36.4, 0.0, 91.0, float("nan")]), C([119.7, 0.0, 181.0])
        t = now + timedelta(seconds=C(edges))
        for _ in range(rng.randint(1, 4)):
            fix = Fix(t, lat, lon, C([30.0, None, 250.0, float("nan")]), C([90.0, None, 361.0]), C([45.0, None, 2e5]),
                      1, "A", 10, 0.9, "GP")
            before = fast.counts.copy()
            last_record = None if last is None else _record("V1", last, True, True)
            took = fast.accept_live(_record("V1", fix, True, True), last_record, now.timestamp())
            verdict = full.check(fix, last, now)
            if took:
                accepted += 1
                assert (verdict.live, verdict.track, verdict.reason, verdict.fix) == (True, True, None, fix)
                assert fast.counts == full.counts
            else:
                assert fast.counts == before
                fast.counts = full.counts.copy()
            if verdict.live:
                last = verdict.fix
            dist = rng.choice([0.0, 1e-4, 5e-4, 2e-3]) * rng.random() * 3
            lat, lon = lat + dist, lon + dist * rng.random()
            t = t + timedelta(seconds=C([1.0, 0.0, -1.0, 0.0005, 0.5, 2.0]))
    assert accepted > 1000


def _batch_state(vi, batch, stats):
    streams = {vid: _state(s) for vid, s in vi.live_streams.items()}
    return (batch.fixes, batch.counters, batch.seen, batch.signals, sorted(stats.items()),
            sorted(vi.plausibility.counts.items()), vi.last_live, streams)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_vehicle_fast_lane_leaves_what_the_general_path_leaves(seed, monkeypatch):
    """VehicleIngest.handle's fast lane (feed_pair, accept_live, _take_pair) against the general
    path (the fast lane switched off): the same records, counters, stats, last fixes and stream
    state after every message, over messy payload sequences of several vehicles."""
    import collections

    from ingest.vehicles import VehicleBatch, VehicleIngest

    source = _Payloads(seed)
    fast_vi, slow_vi = VehicleIngest(), VehicleIngest()
    fast_b, slow_b = VehicleBatch(), VehicleBatch()
    fast_s, slow_s = collections.Counter(), collections.Counter()
    real = NmeaStream.feed_pair
    taken = [0]

    def counted(self, payload):
        fix = real(self, payload)
        taken[0] += fix is not None
        return fix

    from simulators import nmea_out

    rng = source.rng
    start = datetime(2026, 11, 22, 8, 15, 1, tzinfo=timezone.utc)
    clocks = {f"V{i}": [start, 36.4, 119.7] for i in range(4)}
    for _ in range(3000):
        vid = f"V{rng.randrange(4)}"
        clock = clocks[vid]
        if rng.random() < 0.3:
            payload = source.payload()  # messy, at 08:15:00
        else:  # a clean pair moving on: mostly +1 s and a few metres, sometimes a repeat, a step back or a jump
            clock[0] += timedelta(seconds=rng.choice([1, 1, 1, 1, 0, -1, 0.5, 30]))
            clock[1] += rng.choice([1e-5, 1e-5, 3e-5])
            t, lat, lon = clock
            lat += 0.05 if rng.random() < 0.05 else 0.0  # a one-off jump
            payload = (nmea_out.gga(t, lat, lon) + "\r\n"
                       + nmea_out.rmc(t, lat, lon, speed_kmh=rng.choice([30.0, 30.0, 250.0]), course_deg=90.0)
                       + "\r\n").encode()
        at = clock[0].timestamp() + rng.choice([0.4, 0.4, 0.4, 300.0, 299.9995, -300.0005, 86400.0, 86400.0005, 3e8])
        monkeypatch.setattr(NmeaStream, "feed_pair", counted)
        fast_vi.handle(vid, payload, at, False, fast_b, fast_s)
        monkeypatch.setattr(NmeaStream, "feed_pair", lambda self, payload: None)
        slow_vi.handle(vid, payload, at, False, slow_b, slow_s)
        assert _batch_state(fast_vi, fast_b, fast_s) == _batch_state(slow_vi, slow_b, slow_s), payload
    assert taken[0] > 500 and fast_s["fix_ok"] > 300
