"""The ingest benchmark's simulated fleet (bench.ingest): what it publishes is what a real fleet
sends, so every message is a fix the ingest accepts, at any publishing rate of the ramp."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from bench.ingest import saturated_steps
from bench.ingest_fleet import FixClock, Fleet, register_fleet
from messaging.mqtt import ReceivedMessage
from store.live import Store
from ingest.service import Ingest
from ingest.tally import Tally
from ingest.vehicles import VehicleBatch, VehicleIngest
from tests.conftest import test_settings

NOW = 1_796_000_000.0  # 2026-12-01 UTC, a wall clock reading


def test_the_fix_clock_follows_the_wall_clock_in_hundredths_and_never_repeats():
    clock = FixClock(-60.0)
    assert clock.next(NOW) == datetime.fromtimestamp(NOW - 60, timezone.utc)
    # rounds faster than a hundredth apart: each still a hundredth after the one before
    assert clock.next(NOW + 0.001) == datetime.fromtimestamp(NOW - 60 + 0.01, timezone.utc)
    assert clock.next(NOW + 0.002) == datetime.fromtimestamp(NOW - 60 + 0.02, timezone.utc)
    # then the wall clock again, whatever was sent before
    assert clock.next(NOW + 10.257) == datetime.fromtimestamp(NOW - 60 + 10.25, timezone.utc)


@pytest.mark.parametrize("rate", [5_000.0, 52_000.0, 88_000.0])
def test_every_message_of_a_fast_ramp_is_a_fix_the_ingest_accepts(rate):
    """Vehicles of a 5,000-vehicle fleet reporting ``rate / 5000`` times a second for a simulated
    ramp long enough that one round a second of fix time would run more than 5 minutes ahead of
    the clock: every message is a live fix, none rejected (the earlier fleet's fixes turned
    ``time_in_future`` after about 2.2 million messages, and the measured rate fell to nothing)."""
    vehicles, period = 20, 5_000 / rate  # a sample of the fleet; seconds between its rounds
    rounds = int(400 * rate / 5_000)  # 400 s of fix time at a round a second
    fleet = Fleet(vehicles)
    ingest, batch, stats = VehicleIngest(), VehicleBatch(), Tally()
    clock = FixClock(-60.0)
    for k in range(rounds):
        now = NOW + k * period
        for vid, payload in zip(fleet.ids, fleet.round(clock.next(now), k)):
            ingest.handle(vid, payload, now, False, batch, stats)
    assert stats["fix_ok"] == vehicles * rounds
    assert not [name for name in stats if name.startswith(("fix_rejected", "nmea:bad", "nmea:rejected"))], stats
    assert len(batch.fixes) == vehicles * rounds
    last = max(record.t for record in batch.fixes)
    assert NOW + (rounds - 1) * period - 61 <= last <= NOW + (rounds - 1) * period - 59


@pytest.mark.parametrize("rates, saturated", [
    ([], 0),
    ([(10_000, 9_990)], 0),  # kept up
    ([(10_000, 5_000)], 0),  # behind in the first step: nothing before to climb from
    ([(36_000, 36_100), (44_000, 41_000), (52_000, 47_500)], 0),  # behind, still climbing
    ([(36_000, 36_100), (44_000, 41_000), (52_000, 41_500)], 1),  # behind, within 3 % of its best
    ([(44_000, 43_900), (52_000, 45_000), (62_000, 44_000)], 2),  # two in a row: the ramp ends
    ([(44_000, 43_900), (52_000, 45_000), (62_000, 60_500)], 0),  # a dip, then climbing again
    ([(52_000, 61_000), (62_000, 53_000)], 1),  # a catch-up counts at most at its offered rate
    ([(52_000, 61_000), (62_000, 54_000)], 0),
    ([(44_000, 43_900), (74_000, 30_000), (88_000, 0)], 2),  # a consumer that stopped counting
])
def test_a_ramp_ends_after_two_saturated_steps_in_a_row(rates, saturated):
    """Saturated: behind the offered rate and writing no more than 3 % above the best step
    before (each step counted at most at its offered rate)."""
    assert saturated_steps(rates) == saturated


@pytest.mark.integration
async def test_the_bench_registers_its_fleet_so_the_ingest_takes_every_message(tmp_path, redis_url, database_url):
    """The ingest keeps aside the messages of vehicles not in the fleet registry: the benchmark
    registers its fleet first (`register_fleet`), so every one of its messages is a fix again."""
    await asyncio.to_thread(register_fleet, database_url, 50)
    store = Store.from_url(redis_url, database_url)
    try:
        ingest = Ingest(test_settings(tmp_path), store)
        assert await ingest.load_fleet()
    finally:
        await store.close()
    fleet = Fleet(50)
    payloads = fleet.round(FixClock(-60.0).next(time.time()), 0)
    ingest.on_messages([ReceivedMessage(f"fleet/{vid}/nmea", payload, 0, False, time.time())
                        for vid, payload in zip(fleet.ids, payloads)])
    assert ingest.stats["fix_ok"] == 50 and len(ingest.fleet.batch.vehicles.fixes) == 50
    assert not [name for name in ingest.stats if name.startswith("rejected:")], ingest.stats
