"""The simulated fleet of the ingest benchmarks (`bench.ingest`): its ids and their registration,
the GGA+RMC payloads (`Fleet`), their fix times (`FixClock`) and the publisher process that sends
them (`_publisher`: pre-encoded QoS 0 packets, `bench.mqtt_raw`). A helper module: `python -m
bench` does not run it."""
from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timezone
from functools import reduce
from operator import xor

from bench.mqtt_raw import RawPublisher, topic_prefix

RAMP_STEP_S = 8.0  # long enough for the last 5 s to hold 3 of the ingest's 2-s heartbeats


def _xor(text: str) -> int:
    return reduce(xor, text.encode(), 0)


def _ddmm(value: float, width: int) -> str:
    deg = int(abs(value))
    return f"{deg:0{width}d}{(abs(value) - deg) * 60:010.7f}"


def fleet_ids(count: int) -> list[str]:
    """The vehicle ids of a benchmark fleet of ``count`` vehicles."""
    return [f"V{i:05d}" for i in range(count)]


def register_fleet(database_url: str, count: int) -> None:
    """Register the fleet's vehicles in the fleet registry (PostgreSQL, as an administrator
    would), so the ingest takes their messages (it keeps aside those of vehicles not registered)."""
    from store.db import Database
    from store.fleet import FleetStore

    async def register() -> None:
        db = Database(database_url, max_size=1)
        try:
            await FleetStore(db).register_bare_vehicles(fleet_ids(count), by="bench", at=time.time())
        finally:
            await db.close()
    asyncio.run(register())


class Fleet:
    """GGA+RMC payloads for many vehicles, fast: positions are precomputed, only the time
    changes per round, and checksums are XOR-combined from constant and time parts."""

    def __init__(self, count: int, seed: int = 7):
        import random

        rng = random.Random(seed)
        self.ids = fleet_ids(count)
        self.parts = []
        for _ in range(count):
            lat, lon = 36.0 + rng.random() * 0.6, 119.4 + rng.random() * 0.8
            variants = []
            for k in range(2):  # two positions ~11 m apart, alternating each round
                la, lo = _ddmm(lat + k * 1e-4, 2), _ddmm(lon, 3)
                gga = f",{la},N,{lo},E,1,10,0.9,45.0,M,6.0,M,,"
                rmc = f",A,{la},N,{lo},E,21.60,0.0,"
                variants.append((gga, rmc, _xor("GPGGA,") ^ _xor(gga), _xor("GPRMC,") ^ _xor(rmc) ^ _xor(",,,A")))
            self.parts.append(variants)

    def round(self, t: datetime, k: int) -> list[bytes]:
        """Every vehicle's payload for time t."""
        hms = t.strftime("%H%M%S.") + f"{t.microsecond // 10000:02d}"
        date = t.strftime("%d%m%y")
        xh, xd = _xor(hms), _xor(date)
        out = []
        for variants in self.parts:
            gga, rmc, cg, cr = variants[k % 2]
            out.append(f"$GPGGA,{hms}{gga}*{cg ^ xh:02X}\r\n$GPRMC,{hms}{rmc}{date},,,A*{cr ^ xh ^ xd:02X}\r\n"
                       .encode())
        return out


class FixClock:
    """The fix time of each round: the wall clock shifted by ``offset_s``, in the hundredths of a
    second NMEA carries, and at least a hundredth after the round before (above 5,000 msg/s each
    vehicle reports several times a second). So the fixes keep the wall clock's pace however fast
    the rounds go (up to 100 rounds a second), as real receivers do: a round a second of simulated
    time would run ahead of the clock, and the ingest refuses fixes more than 5 minutes ahead
    (plausibility ``time_in_future``), which capped a fast ingest's measured rate."""

    def __init__(self, offset_s: float):
        self.offset_s = offset_s
        self.last_cs: int | None = None

    def next(self, now: float) -> datetime:
        """The next round's fix time, the wall clock reading ``now``."""
        cs = int((now + self.offset_s) * 100)
        if self.last_cs is not None and cs <= self.last_cs:
            cs = self.last_cs + 1
        self.last_cs = cs
        return datetime.fromtimestamp(cs / 100, timezone.utc)


def _publisher(mqtt_url: str, count: int, rate: float | None, duration_s: float, start: float,
               ready, go, sent, ramp: list[float] | None = None, stop=None) -> None:
    """Publish rounds of the fleet (QoS 0): as fast as possible (rate None), paced at ``rate``, or
    paced along ``ramp`` (a rate per RAMP_STEP_S step; ``duration_s`` is then ignored), until
    ``stop`` is set. The first round's fixes are of time ``start`` (epoch s), the later ones follow
    the wall clock (`FixClock`). Chunks of 250 pre-encoded packets (bench.mqtt_raw: the
    publisher's CPU is not the consumer's)."""
    fleet = Fleet(count)
    prefixes = [topic_prefix(f"fleet/{vid}/nmea") for vid in fleet.ids]
    client = RawPublisher(mqtt_url, f"bench-pub-{os.getpid()}")
    ready.set()
    go.wait()
    clock = FixClock(start - time.time())
    if ramp:
        duration_s = RAMP_STEP_S * len(ramp)
    began = time.monotonic()
    n, k, owed, step_began, step = 0, 0, 0.0, began, -1
    while time.monotonic() - began < duration_s and not (stop is not None and stop.is_set()):
        payloads = fleet.round(clock.next(time.time()), k)
        for i in range(0, count, 250):
            now = time.monotonic()
            if ramp:
                current = min(int((now - began) // RAMP_STEP_S), len(ramp) - 1)
                if current != step:  # a new step: pace from here at its rate
                    owed, step_began, step, rate = n, now, current, ramp[current]
            if rate is not None:
                while n - owed > rate * (time.monotonic() - step_began):
                    time.sleep(0.002)
            n += client.publish_many(zip(prefixes[i:i + 250], payloads[i:i + 250]))
            if time.monotonic() - began >= duration_s:
                break
        k += 1
    sent.value = n
    time.sleep(0.5)
    client.close()


