"""The vehicle simulator's NMEA is valid for the protocol, and tunnels look like real signal loss."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pynmea2
import pytest

from ingest.fixes import NmeaStream
from simulators.roads import RoadNet
from simulators.vehicles import make_fleet

LINES = [[(119.750, 36.380), (119.760, 36.380)], [(119.760, 36.380), (119.760, 36.390)],
         [(119.760, 36.390), (119.750, 36.390)], [(119.750, 36.390), (119.750, 36.380)]]
T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=timezone.utc)


def _fleet(seed: int, n: int = 3):
    net = RoadNet(LINES, [40.0] * 4, [False] * 4)
    rng = random.Random(seed)
    return net, make_fleet(net, [f"V{i}" for i in range(n)], rng, beidou_share=0.6), rng


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reports_are_valid_nmea_that_both_parsers_read_to_the_same_position(seed):
    net, fleet, rng = _fleet(seed)
    stream = NmeaStream()
    for second in range(30):
        t = T0 + timedelta(seconds=second)
        for vehicle in fleet:
            vehicle.step(net, rng, 1.0)
            payload = vehicle.report(net, rng, t)
            lines = payload.decode("ascii").split("\r\n")
            assert lines[-1] == "" and len(lines) == 5
            for line in lines[:-1]:
                sentence = pynmea2.parse(line, check=True)  # raises on a bad checksum
                assert sentence.talker in ("GP", "GN", "BD")
            result = stream.feed(payload, t)
            (fix,) = result.fixes
            gga = pynmea2.parse(lines[0], check=True)
            assert fix.lat == pytest.approx(gga.latitude, abs=1e-7)
            assert fix.lon == pytest.approx(gga.longitude, abs=1e-7)
            assert fix.time == t and 119.749 < fix.lon < 119.761
            stream = NmeaStream()  # one stream per vehicle; a fresh one keeps the test simple


def test_a_tunnel_sends_no_fix_for_a_while_then_fixes_again():
    net, fleet, rng = _fleet(7, n=1)
    vehicle = fleet[0]
    stream = NmeaStream()
    kinds = []
    for second in range(60):
        t = T0 + timedelta(seconds=second)
        vehicle.step(net, rng, 1.0)
        payload = vehicle.report(net, rng, t, tunnel_rate=1.0 if second == 5 else 0.0)
        for line in payload.decode("ascii").split("\r\n")[:-1]:
            pynmea2.parse(line, check=True)
        result = stream.feed(payload, t)
        kinds.append("fix" if result.fixes else "signal" if result.signal else "none")
    assert kinds[:5] == ["fix"] * 5
    lost = kinds[5:].index("fix")
    assert 10 <= lost <= 40 and set(kinds[5:5 + lost]) == {"signal"}
    assert set(kinds[5 + lost:]) == {"fix"}


def test_same_seed_same_messages():
    def messages(seed):
        net, fleet, rng = _fleet(seed)
        out = []
        for second in range(10):
            for vehicle in fleet:
                vehicle.step(net, rng, 1.0)
                out.append(vehicle.report(net, rng, T0 + timedelta(seconds=second), tunnel_rate=0.05))
        return out

    assert messages(11) == messages(11)
    assert messages(11) != messages(12)
