"""Track replay computations over one vehicle's day at 1 Hz (86,400 fix dicts, as the track API's
store read gives them): a summary with its stops, a line thinned to 2,000 points, a play-back of
3,600 positions, and the GPX and KML exports.

Figures (medians of the runs): track_replay_day_ms (as_track + summarize + thin over the fix
dicts, what a replay request computes before its answer), track_replay_positions_us (one
`position_at` on a prepared Track), track_export_gpx_ms, track_export_kml_ms.

`python -m bench.track_replay [--runs N]`; not part of `make bench`.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

from bench.common import emit, progress
from gis import replay
from gis.track_export import to_gpx, to_kml

T0 = 1_800_000_000.0


def day() -> list[dict]:
    """A day of fixes: two hours of driving a 2 km circle at 36 km/h, then an hour parked with
    5 m of jitter, over and over."""
    fixes = []
    for s in range(86_400):
        parked = (s // 3600) % 3 == 2
        angle = (s % 628) / 100.0
        if parked:
            north, east = 0.00004 * math.sin(s * 1.7), 0.0106
        else:
            north, east = 0.009 * math.sin(angle), 0.0106 * math.cos(angle)
        fixes.append({"t": T0 + s, "lat": 32.0 + north, "lon": 117.0 + east,
                      "speed_kmh": 0.0 if parked else 36.0, "course_deg": None if parked else (angle * 57.3 + 90) % 360,
                      "alt_m": 20.0, "quality": 1, "sats": 9})
    return fixes


def main() -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    fixes = day()
    progress(f"{len(fixes)} fixes")
    summaries, gpx, kml = [], [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        track = replay.as_track(fixes)
        summary = replay.summarize(track)
        replay.thin(track, 2000, replay=summary)
        summaries.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        to_gpx(track, name="B01", replay=summary)
        gpx.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        to_kml(track, name="B01", replay=summary)
        kml.append((time.perf_counter() - start) * 1000)
    progress(f"{len(summary.stops)} stops, {summary.distance_m / 1000:.1f} km")
    start = time.perf_counter()
    for k in range(3600):
        replay.position_at(track, T0 + k * 24.0 + 0.5)
    emit("track_replay_day_ms", statistics.median(summaries), "ms")
    emit("track_replay_positions_us", (time.perf_counter() - start) / 3600 * 1e6, "us")
    emit("track_export_gpx_ms", statistics.median(gpx), "ms")
    emit("track_export_kml_ms", statistics.median(kml), "ms")


if __name__ == "__main__":
    main()
