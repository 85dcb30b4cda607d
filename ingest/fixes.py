"""Epoch assembly: turn a vehicle's stream of NMEA sentences into fixes and signal updates.

Sentences with the same time of day form one epoch; an epoch completes when a sentence with a
different time arrives and, with ``flush=True``, at the end of the payload. Time-less sentences
(VTG, GSA) belong to the epoch they arrive in. Where several sentences of an epoch carry
coordinates, the most precise ones (most decimals of minutes) win, as in gpsd; on a tie the later
sentence wins.

Dates: from RMC or ZDA; an epoch without one takes the last known date of the stream, rolling over
at midnight (a jump of more than 12 h in time of day means the next or previous day). Before any
date is known:

- live (``flush=True``): the date of ``received_at`` (same midnight rule), counted
  ``date_from_clock``;
- backfill (``flush=False``): the epoch is held (at most `MAX_HELD` epochs, the oldest then
  dropped as ``no_date``) until the first dated epoch, then dated backwards from it; held epochs
  still undated at `NmeaStream.flush()` are dropped and counted ``no_date``.

Count keys (besides the sentence-level ones of `ingest.nmea.REASONS`) are in `EPOCH_REASONS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date as Date, datetime, timezone
from functools import lru_cache

from ingest.nmea import Sentence, decode_line
from ingest.tally import Tally

__all__ = ["EPOCH_REASONS", "FeedResult", "Fix", "MAX_HELD", "NmeaStream", "SignalUpdate"]

EPOCH_REASONS: dict[str, str] = {
    "fix": "an epoch produced a Fix",
    "void": "an epoch whose sentences say no fix (GGA quality 0, RMC/GLL 'V', GNS 'N'): signal only",
    "simulated": "receiver in simulation mode (GGA quality 8, RMC/GLL/GNS mode 'S'): nothing emitted",
    "no_position": "the epoch claims a fix but carries no coordinates: signal only",
    "no_time": "coordinates without any time of day: dropped",
    "no_date": "no date could be given to the epoch (backfill, none ever known): dropped",
    "date_from_clock": "live epoch dated from received_at because the stream had no date yet",
    "internal_error": "an unexpected error while assembling an epoch (the epoch is dropped)",
}

MAX_HELD = 600  # undated backfill epochs kept while waiting for a date (10 min at 1 Hz)

_UTC = timezone.utc
_HALF_DAY = 43200.0
_KNOT_KMH = 1.852
_UNIX_DAY0 = Date(1970, 1, 1).toordinal()


@lru_cache(maxsize=1024)  # the fixes a fleet sends in one second share their time
def _utc(seconds: float) -> datetime:
    """The aware UTC datetime of epoch seconds."""
    return datetime.fromtimestamp(seconds, _UTC)


@dataclass(slots=True)
class Fix:
    """One position epoch in WGS84 decimal degrees, time as an aware UTC datetime.

    Not frozen, though nothing changes a fix (the chain's repair makes a new one): a frozen
    dataclass sets each field through ``object.__setattr__``, which made building the fix of each
    message seven times as costly."""

    time: datetime
    lat: float
    lon: float
    speed_kmh: float | None = None
    course_deg: float | None = None
    alt_m: float | None = None
    quality: int | None = None
    mode: str | None = None
    sats: int | None = None
    hdop: float | None = None
    talker: str = ""


@dataclass(frozen=True, slots=True)
class SignalUpdate:
    """An epoch without a usable position: updates the vehicle's signal state only."""

    time: datetime | None
    quality: int | None = None
    mode: str | None = None
    sats: int | None = None
    talker: str = ""


class FeedResult:
    """What one `feed` or `flush` produced: fixes and signal updates in order, and counts (a
    `Tally`: missing names read 0, as a Counter's do)."""

    __slots__ = ("fixes", "signal", "counts")

    def __init__(self) -> None:
        """Empty lists and counts."""
        self.fixes: list[Fix] = []
        self.signal: list[SignalUpdate] = []
        self.counts: Tally = Tally()

    def __repr__(self) -> str:
        return f"FeedResult(fixes={self.fixes!r}, signal={self.signal!r}, counts={self.counts!r})"


class _Epoch:
    """Sentences collected for one time of day."""

    __slots__ = ("tod", "sentences")

    def __init__(self, tod: float | None, sentences: list[Sentence]) -> None:
        self.tod = tod
        self.sentences = sentences


# A built epoch waiting for its date: (is_fix, tod, date ordinal or None, args after `time`).
_Built = tuple[bool, float, int | None, tuple]


def _build(epoch: _Epoch, counts: Tally) -> _Built | None:
    """Merge an epoch's sentences. Returns None when it yields nothing (counted)."""
    best: Sentence | None = None
    speed_kn = course = alt = hdop = gsa_hdop = None
    quality = mode = gsa_mode = None
    date: tuple[int, int, int] | None = None
    rmc_motion = False
    valid = void = simulated = False
    sats_gn = gsa_sats = None
    sats_by_talker: dict[str, int] = {}
    talker = ""
    for s in epoch.sentences:
        kind = s.kind
        if s.simulated:
            simulated = True
        if s.date is not None:
            date = s.date
        if s.valid is True:
            valid = True
            if s.lat is not None and (best is None or s.digits >= best.digits):
                best = s
            if s.mode is not None and kind != "GSA" and mode is None:
                mode = s.mode
        elif s.valid is False and kind != "VTG":
            void = True
            if mode is None and s.mode is not None:
                mode = s.mode
        if not talker:
            talker = s.talker
        if kind == "GGA" or kind == "GNS":
            if s.quality is not None:
                quality = s.quality
            if s.alt is not None:
                alt = s.alt
            if s.hdop is not None:
                hdop = s.hdop
            if s.sats is not None:
                if s.talker == "GN":
                    sats_gn = s.sats
                else:
                    sats_by_talker[s.talker] = s.sats
        elif kind == "RMC":
            if s.valid and (s.speed_kn is not None or s.course is not None):
                speed_kn, course, rmc_motion = s.speed_kn, s.course, True
        elif kind == "VTG":
            if not rmc_motion and s.valid is not False:
                if s.speed_kn is not None:
                    speed_kn = s.speed_kn
                if s.course is not None:
                    course = s.course
        elif kind == "GSA":
            if s.mode is not None:
                gsa_mode = s.mode
            if s.hdop is not None:
                gsa_hdop = s.hdop
            if s.sats:
                gsa_sats = (gsa_sats or 0) + s.sats
    sats = sats_gn if sats_gn is not None else (sum(sats_by_talker.values()) if sats_by_talker else gsa_sats)
    if hdop is None:
        hdop = gsa_hdop
    date_ord = _ordinal(date) if date is not None else None
    tod = epoch.tod
    if simulated:
        counts["simulated"] += 1
        return None
    if mode is None or mode == "N":
        mode = gsa_mode if valid else mode
    if best is not None:
        if tod is None:
            counts["no_time"] += 1
            return None
        speed = speed_kn * _KNOT_KMH if speed_kn is not None else None
        return True, tod, date_ord, (best.lat, best.lon, speed, course, alt, quality, mode, sats, hdop, best.talker)
    if not (valid or void):
        # Only ZDA/VTG/GSA: nothing to report, but the date may still teach the stream.
        return (False, tod, date_ord, ()) if (tod is not None and date_ord is not None) else None
    counts["no_position" if valid else "void"] += 1
    return False, (tod if tod is not None else -1.0), date_ord, (quality, mode, sats, talker)


@lru_cache(maxsize=1024)  # a fleet sends one date a day
def _ordinal(date: tuple[int, int, int]) -> int:
    """The proleptic Gregorian ordinal of a (year, month, day)."""
    return Date(*date).toordinal()


def _day_near(tod: float, ref_ord: int, ref_tod: float) -> int:
    """Date ordinal for `tod` given a reference (date, time of day) close to it (midnight rule)."""
    delta = tod - ref_tod
    if delta < -_HALF_DAY:
        return ref_ord + 1
    if delta > _HALF_DAY:
        return ref_ord - 1
    return ref_ord


class NmeaStream:
    """Decoding state of one vehicle's NMEA stream (pending epoch, last date, held epochs)."""

    __slots__ = ("_pending", "_date_ord", "_date_tod", "_held")

    def __init__(self) -> None:
        self._pending: _Epoch | None = None
        self._date_ord: int | None = None
        self._date_tod = 0.0
        self._held: list[_Built] = []

    def feed(self, payload: bytes, received_at: datetime, *, flush: bool = True) -> FeedResult:
        """Decode one payload. With flush=True (live) the last epoch completes at its end and an
        undated stream takes the date of `received_at`; with flush=False (backfill chunks) the last
        epoch stays pending for the next feed. Never raises on any payload."""
        result = FeedResult()
        counts = result.counts
        clock = received_at if flush else None
        try:
            lines = payload.splitlines() if b"\r" in payload else payload.split(b"\n")
        except Exception:  # noqa: BLE001 - a payload that is not bytes at all
            counts["not_bytes"] += 1
            return result
        for line in lines:
            if not line:
                continue
            sentence, reason = decode_line(line)
            counts[reason] += 1
            if sentence is None:
                continue
            if reason == "bad_date":
                counts["sentences_ok"] += 1
            tod = sentence.tod
            pending = self._pending
            if pending is not None:
                if tod is None or pending.tod == tod:
                    pending.sentences.append(sentence)
                    continue
                if pending.tod is None:
                    pending.tod = tod
                    pending.sentences.append(sentence)
                    continue
                self._finish(pending, result, clock)
            self._pending = _Epoch(tod, [sentence])
        if flush:
            self._close(result, received_at)
        return result

    def flush(self) -> FeedResult:
        """End of a backfill: complete the pending epoch; epochs still without a date are dropped."""
        result = FeedResult()
        self._close(result, None)
        if self._held:
            result.counts["no_date"] += len(self._held)
            self._held.clear()
        return result

    def _close(self, result: FeedResult, clock: datetime | None) -> None:
        """Complete the pending epoch (and, live, date any held epochs from the clock)."""
        pending = self._pending
        self._pending = None
        if pending is not None:
            self._finish(pending, result, clock)
        if clock is not None and self._held:
            self._release_held(result, clock)

    def _finish(self, epoch: _Epoch, result: FeedResult, clock: datetime | None) -> None:
        """Build a completed epoch, date it and append its fix or signal update."""
        counts = result.counts
        try:
            built = _build(epoch, counts)
            if built is None:
                return
            is_fix, tod, date_ord, args = built
            if date_ord is not None:
                if self._held:
                    self._release_held(result, None, date_ord, tod)
            elif tod < 0:
                # Signal without any time of day.
                result.signal.append(SignalUpdate(None, *args))
                return
            elif self._date_ord is not None:
                date_ord = _day_near(tod, self._date_ord, self._date_tod)
            elif clock is not None:
                date_ord = self._clock_day(tod, clock)
                counts["date_from_clock"] += 1
            else:
                if len(self._held) >= MAX_HELD:
                    del self._held[0]
                    counts["no_date"] += 1
                self._held.append(built)
                return
            self._date_ord, self._date_tod = date_ord, tod
            self._emit(result, is_fix, tod, date_ord, args)
        except Exception:  # noqa: BLE001 - isolation: one bad epoch never stops the stream
            counts["internal_error"] += 1

    def _release_held(
        self, result: FeedResult, clock: datetime | None, ref_ord: int | None = None, ref_tod: float = 0.0
    ) -> None:
        """Date the held epochs backwards from a reference (a dated epoch, or the clock) and emit them."""
        held = self._held
        self._held = []
        if ref_ord is None:
            assert clock is not None
            ref_ord = self._clock_day(held[-1][1], clock)
            ref_tod = held[-1][1]
            result.counts["date_from_clock"] += len(held)
        days: list[int] = []
        for _is_fix, tod, _date, _args in reversed(held):
            ref_ord = _day_near(tod, ref_ord, ref_tod)
            ref_tod = tod
            days.append(ref_ord)
        days.reverse()
        for (is_fix, tod, _date, args), day in zip(held, days):
            self._emit(result, is_fix, tod, day, args)
        if self._date_ord is None:
            self._date_ord, self._date_tod = days[-1], held[-1][1]

    def _emit(self, result: FeedResult, is_fix: bool, tod: float, date_ord: int, args: tuple) -> None:
        """Append a dated epoch to the result."""
        if not args:
            return  # a date-only epoch (ZDA) taught the date; nothing to report
        time = _utc((date_ord - _UNIX_DAY0) * 86400 + tod)
        if is_fix:
            result.fixes.append(Fix(time, *args))
            result.counts["fix"] += 1
        else:
            result.signal.append(SignalUpdate(time, *args))

    @staticmethod
    def _clock_day(tod: float, clock: datetime) -> int:
        """Date ordinal for `tod` taken from the receive time (midnight rule around it)."""
        clock = clock.astimezone(_UTC)
        clock_tod = clock.hour * 3600 + clock.minute * 60 + clock.second
        return _day_near(tod, clock.toordinal(), clock_tod)
