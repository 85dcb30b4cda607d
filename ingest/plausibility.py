"""Plausibility chain for decoded fixes: small isolated steps, each able to drop, repair or demote.

Steps, in order (each a method `_step_<name>`; one that raises is counted ``step_error:<name>``,
logged at a bounded rate, and the chain goes on):

1. ``sanity``   - `sane(fix)`: lat/lon/speed/course/altitude in range, time not absurd -> drop.
2. ``zero_zero`` - lat 0 and lon 0 (an unset receiver position) -> drop.
3. ``speed``    - reported speed above ``max_speed_kmh`` -> drop.
4. ``time``     - live: later than now + ``max_future_s`` -> drop; earlier than now - ``max_past_s``
   -> GPS week-rollover repair (add 1024-week steps when the result lands in the window) or drop.
   Backfill: judged against the stream (``last``), not the clock: a time more than 512 weeks
   before ``last`` is repaired when 1024-week steps bring it within ``max_past_s`` of ``last``,
   else dropped; without ``last``, a time before ``oldest_plausible`` is repaired with the largest
   step count not landing in the future. Any year after ``oldest_plausible`` is accepted.
   The future limit (now + ``max_future_s``) holds in both modes: a log cannot come from the future.
5. ``jump``     - the distance from ``last`` over the time between them (at least 1 s) implies more
   than ``max_speed_kmh`` -> drop.
6. ``order``    - not newer than ``last`` -> ``live=False`` (track only).

`Plausibility.counts` counts ``accepted``, ``track_only:<reason>``, ``rejected:<reason>``,
``repaired:rollover`` and ``step_error:<name>``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from ingest.fixes import Fix
from ingest.tally import Tally

__all__ = ["GPS_ROLLOVER", "Plausibility", "Verdict", "sane"]

log = logging.getLogger(__name__)

GPS_ROLLOVER = timedelta(weeks=1024)
_HALF_ROLLOVER_S = GPS_ROLLOVER.total_seconds() / 2
_EARTH_RADIUS_M = 6_371_008.8
_MAX_SANE_SPEED_KMH = 2000.0  # above any ground vehicle or airliner: a decoding error
_YEAR_MIN, _YEAR_MAX = 1980, 2099  # GPS epoch .. end of the 2-digit-year window
_ZERO = timedelta(0)


def sane(fix: Fix) -> str | None:
    """Shared sanity check of a decoded fix: None when sane, else the reason (Traccar
    verifyDecodedPosition): lat within ±90, lon within ±180, speed 0..2000 km/h, course 0..360,
    altitude -12 km..100 km, time aware UTC between 1980 and 2099."""
    lat, lon = fix.lat, fix.lon
    if not -90.0 <= lat <= 90.0:  # also false for NaN
        return "lat_out_of_range"
    if not -180.0 <= lon <= 180.0:
        return "lon_out_of_range"
    speed = fix.speed_kmh
    if speed is not None and not 0.0 <= speed <= _MAX_SANE_SPEED_KMH:
        return "speed_out_of_range"
    course = fix.course_deg
    if course is not None and not 0.0 <= course <= 360.0:
        return "course_out_of_range"
    alt = fix.alt_m
    if alt is not None and not -12_000.0 <= alt <= 100_000.0:
        return "alt_out_of_range"
    time = fix.time
    if time.tzinfo is not timezone.utc and (time.tzinfo is None or time.utcoffset() != _ZERO):
        return "time_not_utc"
    if not _YEAR_MIN <= time.year <= _YEAR_MAX:
        return "time_absurd"
    return None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres between two WGS84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat = p2 - p1
    dlon = math.radians(lon2 - lon1)
    a = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlon / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


class Verdict(NamedTuple):
    """Outcome of the chain: the (possibly repaired) fix, whether it may move the live position
    and go into the track, and the reason when either is refused (a named tuple: as immutable as
    a frozen dataclass, and several times cheaper to build, once a message)."""

    fix: Fix
    live: bool
    track: bool
    reason: str | None = None


class _Drop(Exception):
    """Internal: a step refuses the fix."""


class Plausibility:
    """The plausibility chain with its configuration and counters (one per ingest process)."""

    def __init__(
        self,
        *,
        max_speed_kmh: float = 200.0,
        max_future_s: float = 300.0,
        max_past_s: float = 86_400.0,
        rollover_repair: bool = True,
        oldest_plausible: datetime = datetime(2000, 1, 1, tzinfo=timezone.utc),
        log_interval_s: float = 60.0,
    ) -> None:
        """Configure the chain; all limits are in km/h or seconds."""
        self.max_speed_kmh = max_speed_kmh
        self.max_future = timedelta(seconds=max_future_s)
        self.max_past = timedelta(seconds=max_past_s)
        self.rollover_repair = rollover_repair
        self.oldest_plausible = oldest_plausible
        self.log_interval_s = log_interval_s
        self.counts: Tally = Tally()
        self._logged_at: dict[str, datetime] = {}
        self._steps = (
            ("sanity", self._step_sanity),
            ("zero_zero", self._step_zero_zero),
            ("speed", self._step_speed),
            ("time", self._step_time),
            ("jump", self._step_jump),
        )

    def check(self, fix: Fix, last: Fix | None, now: datetime, *, backfill: bool = False) -> Verdict:
        """Run the chain on `fix` given the vehicle's last stored fix and the current time (see
        the module docstring)."""
        counts = self.counts
        for name, step in self._steps:
            try:
                fix = step(fix, last, now, backfill)
            except _Drop as drop:
                reason = str(drop)
                counts["rejected:" + reason] += 1
                return Verdict(fix, False, False, reason)
            except Exception as error:  # noqa: BLE001 - isolation: a broken step must not stop the chain
                self._step_failed(name, error, now)
        try:
            if last is not None and fix.time <= last.time:
                counts["track_only:out_of_order"] += 1
                return Verdict(fix, False, True, "out_of_order")
        except Exception as error:  # noqa: BLE001
            self._step_failed("order", error, now)
        counts["accepted"] += 1
        return Verdict(fix, True, True, None)

    # ------------------------------------------------------------------ steps
    def _step_sanity(self, fix: Fix, last: Fix | None, now: datetime, backfill: bool) -> Fix:
        """Drop a fix that fails the shared sanity check."""
        reason = sane(fix)
        if reason is not None:
            raise _Drop(reason)
        return fix

    def _step_zero_zero(self, fix: Fix, last: Fix | None, now: datetime, backfill: bool) -> Fix:
        """Drop 0°N 0°E, the position of a receiver that has not set one."""
        if fix.lat == 0.0 and fix.lon == 0.0:
            raise _Drop("zero_zero")
        return fix

    def _step_speed(self, fix: Fix, last: Fix | None, now: datetime, backfill: bool) -> Fix:
        """Drop a reported speed above the configured maximum."""
        if fix.speed_kmh is not None and fix.speed_kmh > self.max_speed_kmh:
            raise _Drop("speed_too_high")
        return fix

    def _step_time(self, fix: Fix, last: Fix | None, now: datetime, backfill: bool) -> Fix:
        """Drop times in the future or far in the past; repair GPS week-rollover dates."""
        time = fix.time
        latest = now + self.max_future
        if time > latest:
            raise _Drop("time_in_future")
        if not backfill:
            if time >= now - self.max_past:
                return fix
            return self._repair(fix, now - self.max_past, latest, prefer_latest=False)
        if last is not None:
            if (last.time - time).total_seconds() <= _HALF_ROLLOVER_S:
                return fix
            return self._repair(fix, last.time - self.max_past, min(latest, last.time + self.max_past), False)
        if time >= self.oldest_plausible:
            return fix
        return self._repair(fix, self.oldest_plausible, latest, prefer_latest=True)

    def _repair(self, fix: Fix, earliest: datetime, latest: datetime, prefer_latest: bool) -> Fix:
        """Add 1024-week steps so the time lands in [earliest, latest], or drop."""
        if not self.rollover_repair:
            raise _Drop("time_too_old")
        time = fix.time
        steps = math.ceil((earliest - time) / GPS_ROLLOVER)
        if steps < 1:
            steps = 1
        candidate = time + steps * GPS_ROLLOVER
        if candidate > latest:
            raise _Drop("time_too_old")
        if prefer_latest:
            while candidate + GPS_ROLLOVER <= latest:
                candidate += GPS_ROLLOVER
        self.counts["repaired:rollover"] += 1
        return replace(fix, time=candidate)

    def _step_jump(self, fix: Fix, last: Fix | None, now: datetime, backfill: bool) -> Fix:
        """Drop a fix whose distance from `last` implies more than max_speed_kmh (no check against
        a `last` that is no position: a coordinate out of range, infinite or NaN)."""
        if last is None or not (-90.0 <= last.lat <= 90.0 and -180.0 <= last.lon <= 180.0):
            return fix
        seconds = max(abs((fix.time - last.time).total_seconds()), 1.0)
        metres = distance_m(last.lat, last.lon, fix.lat, fix.lon)
        if metres / seconds * 3.6 > self.max_speed_kmh:
            raise _Drop("jump")
        return fix

    # ------------------------------------------------------------------ errors
    def _step_failed(self, name: str, error: Exception, now: datetime) -> None:
        """Count a step that raised and log it at most once per `log_interval_s` per step."""
        key = "step_error:" + name
        self.counts[key] += 1
        previous = self._logged_at.get(key)
        try:
            due = previous is None or (now - previous).total_seconds() >= self.log_interval_s
        except Exception:  # noqa: BLE001 - `now` itself may be what is broken
            due = previous is None
        if due:
            self._logged_at[key] = now
            log.warning("plausibility step %s failed (%d so far): %r", name, self.counts[key], error)
