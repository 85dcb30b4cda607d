"""Single-core decode rate of typical live payloads (GGA + RMC, one epoch each) through
`NmeaStream.feed` and the `Plausibility` chain, as the ingest hot path runs them.

Timed with process CPU time (the machine is shared), so the figure is the rate of one busy core.
`nmea_decode_float_parse_ns` (one `float(b"45.3")`) is printed to relate the figure to the speed
of the machine it ran on."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from bench.common import emit, progress
from ingest.fixes import NmeaStream
from ingest.nmea import format_sentence
from ingest.plausibility import Plausibility

VEHICLES = 200
SECONDS = 100
DURATION_S = 5.0


def _hms(second: int) -> str:
    """hhmmss.00 for a second of the day."""
    return f"{second // 3600:02d}{second // 60 % 60:02d}{second % 60:02d}.00"


def _coord(value: float, width: int) -> str:
    """Decimal degrees to (d)ddmm.mmmmm."""
    degrees = int(value)
    return f"{degrees:0{width}d}{(value - degrees) * 60:08.5f}"


def make_payloads() -> list[tuple[int, bytes]]:
    """(vehicle, payload) pairs: each vehicle drives east at ~36 km/h, one GGA+RMC payload per second."""
    payloads = []
    start = 8 * 3600
    for second in range(SECONDS):
        for vehicle in range(VEHICLES):
            lat = 39.8 + vehicle * 0.001
            lon = 116.3 + second * 0.0001
            hms = _hms(start + second)
            lat_s, lon_s = _coord(lat, 2), _coord(lon, 3)
            gga = format_sentence(f"GNGGA,{hms},{lat_s},N,{lon_s},E,1,12,0.8,45.3,M,-8.2,M,,")
            rmc = format_sentence(f"GNRMC,{hms},A,{lat_s},N,{lon_s},E,19.4,90.0,010626,,,A")
            payloads.append((vehicle, f"{gga}\r\n{rmc}\r\n".encode()))
    return payloads


def main() -> None:
    """Print nmea_decode_payloads_per_s (and µs per payload)."""
    payloads = make_payloads()
    base = datetime(2026, 6, 1, 8, 0, 0, tzinfo=timezone.utc)
    progress(f"{len(payloads)} payloads of {len(payloads[0][1])} bytes, {VEHICLES} vehicles")
    nows = [base + timedelta(seconds=second + 0.5) for second in range(SECONDS)]
    done = 0
    fixes = 0
    elapsed = 0.0
    while elapsed < DURATION_S:
        streams = [NmeaStream() for _ in range(VEHICLES)]
        last = [None] * VEHICLES
        chain = Plausibility()
        started = time.process_time()
        for index, (vehicle, payload) in enumerate(payloads):
            now = nows[index // VEHICLES]
            result = streams[vehicle].feed(payload, now)
            for fix in result.fixes:
                verdict = chain.check(fix, last[vehicle], now)
                if verdict.live:
                    last[vehicle] = verdict.fix
                    fixes += 1
        elapsed += time.process_time() - started
        done += len(payloads)
    if fixes != done:
        raise SystemExit(f"expected one live fix per payload, got {fixes} of {done}")
    emit("nmea_decode_payloads_per_s", done / elapsed, "payloads/s")
    emit("nmea_decode_us_per_payload", elapsed / done * 1e6, "us")
    started = time.process_time()
    for _ in range(200_000):
        float(b"45.3")
    emit("nmea_decode_float_parse_ns", (time.process_time() - started) / 200_000 * 1e9, "ns")


if __name__ == "__main__":
    main()
