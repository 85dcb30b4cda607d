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
    general = NmeaStream._feed_pair
    taken = [0]

    def counted(self, lines, result):
        used = general(self, lines, result)
        taken[0] += bool(used)
        return used

    clock = datetime(2026, 11, 22, 8, 15, tzinfo=timezone.utc)
    for _ in range(1500):
        sequence = [source.payload() for _ in range(source.rng.randint(1, 4))]
        fast, slow = NmeaStream(), NmeaStream()
        for payload in sequence:
            monkeypatch.setattr(NmeaStream, "_feed_pair", counted)
            got = fast.feed(payload, clock)
            monkeypatch.setattr(NmeaStream, "_feed_pair", lambda self, lines, result: False)
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
