"""The center's one clock (runtime.clock): domain time at a speed-up, and the vehicles driving on it."""
from __future__ import annotations

import collections
import random
from datetime import datetime, timezone

import pytest

from runtime.clock import Clock, ClockError, process_clock
from config.settings import load
from ingest.plausibility import distance_m
from ingest.vehicles import VehicleBatch, VehicleIngest
from simulators.sim_clock import SimClock
from simulators.roads import RoadNet, Trip
from simulators.vehicles import Pace, make_fleet

A = 1_800_000_000.0  # the anchor: 2027-01-15T08:00:00Z


@pytest.mark.parametrize("anchor, speedup, wall, now", [
    (A, 1.0, A, A),
    (A, 1.0, A + 3600.0, A + 3600.0),            # speed-up 1: the wall clock exactly
    (A, 1.0, A - 50.0, A - 50.0),
    (A, 60.0, A, A),                             # at the anchor, domain = wall
    (A, 60.0, A + 1.0, A + 60.0),
    (A, 96.0, A + 900.0, A + 86_400.0),          # 15 wall minutes are a simulated day at x96
    (A, 0.5, A + 10.0, A + 5.0),
    (0.0, 2.0, 10.0, 20.0),
])
def test_now_is_anchor_plus_elapsed_wall_times_speedup(anchor, speedup, wall, now):
    clock = Clock(speedup, anchor, wall=lambda: wall)
    assert clock.now() == pytest.approx(now)
    assert clock.at(wall) == pytest.approx(now)
    assert clock.now_dt() == datetime.fromtimestamp(now, timezone.utc)
    assert clock.span(10.0) == pytest.approx(10.0 * speedup)
    assert clock.wall_delay(clock.span(7.0)) == pytest.approx(7.0)
    assert clock.accelerated is (speedup != 1.0)


def test_speedup_one_is_the_wall_clock_itself():
    walls = iter([123.25, 456.5])
    clock = Clock(1.0, wall=lambda: next(walls))  # the anchor took the first wall reading
    assert clock.anchor == 123.25 and clock.now() == 456.5


@pytest.mark.parametrize("speedup", [0.0, -1.0, float("nan")])
def test_a_speedup_must_be_positive(speedup):
    with pytest.raises(ClockError, match="positive"):
        Clock(speedup, A)


def test_settings_make_the_clock_and_a_speedup_needs_a_shared_anchor(tmp_path, caplog):
    base = {"CONFIG_FILE": str(tmp_path / "none.toml")}
    assert not process_clock(load(base), "web").accelerated
    with pytest.raises(ClockError, match="CLOCK_ANCHOR"):
        process_clock(load({**base, "CLOCK_SPEEDUP": "96"}), "web")
    clock = process_clock(load({**base, "CLOCK_SPEEDUP": "96", "CLOCK_ANCHOR": str(A)}), "ingest")
    assert (clock.speedup, clock.anchor) == (96.0, A)
    assert "CLOCK_SPEEDUP=96" in caplog.text and "demo and bench only" in caplog.text


@pytest.mark.parametrize("text", ["yesterday", "-5", "5000000000"])
def test_a_bad_anchor_is_refused(tmp_path, text):
    from config.settings import SettingsError

    with pytest.raises(SettingsError, match="CLOCK_ANCHOR"):
        load({"CONFIG_FILE": str(tmp_path / "none.toml"), "CLOCK_ANCHOR": text})


def test_the_simulators_clock_follows_the_centers():
    wall = [A + 100.0]
    center = Clock(60.0, A, wall=lambda: wall[0])
    sim = SimClock.following(center)
    assert sim.speedup == 60.0 and sim.now().timestamp() == pytest.approx(center.now(), abs=1.0)


# a square of roads ~900 m x 1.1 km at 40 km/h
LINES = [[(119.750, 36.380), (119.760, 36.380)], [(119.760, 36.380), (119.760, 36.390)],
         [(119.760, 36.390), (119.750, 36.390)], [(119.750, 36.390), (119.750, 36.380)]]


@pytest.mark.parametrize("speedup", [1.0, 20.0, 60.0, 96.0])
def test_fixes_at_speedup_k_are_k_seconds_apart_at_road_speeds_and_pass_the_ingest(speedup):
    """1 Hz in wall time, `speedup` simulated seconds apart, through the ingest's plausibility chain
    with the arrival time on the same clock."""
    net = RoadNet(LINES, [40.0] * 4, [False] * 4)
    rng = random.Random(5)
    fleet = make_fleet(net, ["V1", "V2"], rng)
    fleet[1].drive(Trip([(119.750, 36.380), (119.760, 36.380), (119.760, 36.390)], [40.0, 40.0]))
    wall = [A + 50.0]
    clock = Clock(speedup, A, wall=lambda: wall[0])
    pace = Pace(1.0, clock.speedup)
    ingest, batch, stats = VehicleIngest(max_speed_kmh=200.0), VehicleBatch(), collections.Counter()
    ticks = [1.0] * 40
    if speedup != 1.0:  # on a fast clock: a late tick, then hurried ones (at 1, ticks are as ever)
        ticks[20:25] = [1.6, 0.4, 0.1, 0.1, 1.8]
    for tick in ticks:
        stamp = clock.now_dt()
        span_s = pace.span(stamp)
        for vehicle in fleet:
            ingest.handle(vehicle.vehicle_id, pace.advance(vehicle, net, rng, stamp, span_s),
                          clock.at(wall[0] + 0.05), False, batch, stats)
        wall[0] += tick
    assert stats["fix_ok"] == 80 and not any(key.startswith("rejected") for key in stats), stats
    for vid in ("V1", "V2"):
        fixes = [f for f in batch.fixes if f[0] == vid]
        assert [b[1] - a[1] for a, b in zip(fixes, fixes[1:])] == pytest.approx([t * speedup for t in ticks[:-1]], abs=0.02)
        implied = [distance_m(a[2], a[3], b[2], b[3]) / (b[1] - a[1]) * 3.6 for a, b in zip(fixes, fixes[1:])]
        assert max(implied) <= 40.0 + 12.0 / (0.1 * speedup) * 3.6  # km/h: the road's 40, and 12 m of receiver noise
        assert max(f[4] for f in fixes) <= 40.5  # the reported speed over ground keeps the limit
    trip = fleet[1].trip
    assert trip.done == (speedup * 40 > trip.length / (40 / 3.6))  # the trip took its road time
