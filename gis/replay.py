"""Track replay (轨迹回放) computations over one vehicle's fixes: the summary of a day (distance and
time driven, time stopped, speeds, the stops 停留点), a thinned line for drawing, the interpolated
position at any time, and the tickets worked on the way.

Pure: no I/O and no clock; numpy over whole arrays, so a day at 1 Hz (86,400 fixes) is a few calls,
not 86,400 Python steps. Fixes are those `store.track_codec.decode_fixes` gives (``t`` in UTC epoch
seconds, ``lat``, ``lon`` in WGS84 degrees, ``speed_kmh``, ``course_deg``, ``alt_m``; None where
unknown), in time order; `as_track` turns them into a `Track` of arrays once, and every function
takes either (pass the `Track` when calling many times, e.g. `position_at` during play-back).

The rules:
- Metres come from `gis.crs.to_metres` (the track's Gauss-Krüger zone), once per track.
- A spike is a fix that no vehicle could reach from both its neighbours (more than max_speed_kmh
  each way, the ingest's jump rule, ``MAX_JUMP_SPEED_KMH``); it is left out of everything.
- A stop is the usual stay-point rule (Li et al. 2008, "Mining user similarity based on location
  history"): from an anchor fix, the run of fixes that stay within stop_radius_m of it; when the
  run, less the fixes at either end that report moving (still_kmh or faster: the approach and the
  departure), lasts at least stop_min_s it is a stop from its first fix's time to its last's. A gap in
  the data inside such a run (parked, terminal asleep) is stopped time; a gap across which the
  vehicle moved more than the radius ends the run. Stops that follow each other with no fix
  between and centres within the radius are one stop (the anchor sat at the edge of the jitter).
- Every step between consecutive kept fixes is one of: inside a stop (stopped), a gap (longer than
  max_gap_s), a jump (a faster step than max_speed_kmh: a teleport, counted as a gap), or driven.
  Driven steps count their time; their distance counts unless both fixes report less than
  still_kmh (GPS jitter at a red light: the receiver's Doppler speed tells it from creeping).
  So driving_s + stopped_s + gap_s is the track's whole time span.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gis.crs import CRSError, distance_m, to_metres

__all__ = ["ReplayError", "Track", "Stop", "Replay", "Position", "TicketPlace", "WorkedTicket",
           "as_track", "without_spikes", "summarize", "thin", "window", "position_at",
           "tickets_on_the_way"]

MAX_SPEED_KMH = 200.0  # the ingest's jump limit (MAX_JUMP_SPEED_KMH's default)
_COLUMNS = ("speed_kmh", "course_deg", "alt_m")


class ReplayError(ValueError):
    """Fixes that cannot be replayed: ``code`` is bad_fix (a missing or out-of-range value),
    not_in_order (a fix earlier than the one before it) or outside_zones (a track whose mean
    longitude lies outside CGCS2000's Gauss-Krüger zones, 73.5°E to 136.5°E, so no metres)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, eq=False)
class Track:
    """A vehicle's fixes as float arrays (NaN where unknown) and their metres (x east, y north)."""

    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    speed_kmh: np.ndarray
    course_deg: np.ndarray
    alt_m: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.t)


@dataclass(frozen=True)
class Stop:
    """One stop (停留点): its first and last fix (index and time), duration, centre and fix count."""

    first: int
    last: int
    start: float
    end: float
    duration_s: float
    lon: float
    lat: float
    fixes: int


@dataclass(frozen=True)
class Replay:
    """The summary of a track (see the module for the rules). Indices are the fixes' own.

    ``segments`` are the (first, last) index ranges drawn as one line: the track split at gaps and
    jumps. ``spikes`` are the fixes left out."""

    start: float | None
    end: float | None
    fixes: int  # the fixes counted (spikes left out)
    distance_m: float
    driving_s: float
    stopped_s: float
    gap_s: float
    max_speed_kmh: float
    avg_speed_kmh: float
    stops: tuple[Stop, ...]
    segments: tuple[tuple[int, int], ...]
    spikes: tuple[int, ...]


@dataclass(frozen=True)
class Position:
    """Where the vehicle was at time t: interpolated between the fixes around it, or held at the
    last fix before a gap (in_gap: no data for longer than max_gap_s)."""

    t: float
    lat: float
    lon: float
    course_deg: float | None
    speed_kmh: float | None
    in_gap: bool


@dataclass(frozen=True)
class TicketPlace:
    """A ticket's place and its field time (crew arrival to resolution, epoch s; None: open)."""

    ticket_id: str
    lon: float
    lat: float
    start: float | None
    end: float | None


@dataclass(frozen=True)
class WorkedTicket:
    """A ticket the vehicle worked on the way: the stops (indices into Replay.stops) within the
    radius during its field time, the seconds stopped there within that time, the nearest stop
    centre's distance (m)."""

    ticket_id: str
    stops: tuple[int, ...]
    on_site_s: float
    distance_m: float


# ------------------------------------------------------------------------------------- input

def _floats(values: Any, n: int) -> np.ndarray:
    """A column as floats, NaN for None (object arrays and lists of Python values alike)."""
    arr = np.asarray(values)
    if arr.dtype != object and np.issubdtype(arr.dtype, np.number):
        return arr.astype(np.float64)
    return np.fromiter((math.nan if v is None else v for v in arr.tolist()), np.float64, count=n)


def as_track(fixes: Track | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Track:
    """A `Track` of a list of fix dicts, or of a mapping of columns (``t``, ``lat``, ``lon`` and
    any of speed_kmh, course_deg, alt_m), checked: finite t, lat, lon in range, t in order."""
    if isinstance(fixes, Track):
        return fixes
    if isinstance(fixes, Mapping):
        columns = fixes
        n = len(np.asarray(columns["t"]))
    else:
        n = len(fixes)
        columns = {key: [f.get(key) for f in fixes] for key in ("t", "lat", "lon") + _COLUMNS}
    t, lat, lon = (_floats(columns[key], n) for key in ("t", "lat", "lon"))
    rest = [_floats(columns[key], n) if key in columns else np.full(n, math.nan) for key in _COLUMNS]
    if not (np.isfinite(t).all() and np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise ReplayError("bad_fix", "every fix needs a finite t, lat and lon")
    if (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
        raise ReplayError("bad_fix", "latitude must be within ±90 and longitude within ±180")
    if (np.diff(t) < 0).any():
        raise ReplayError("not_in_order", "fixes must be in time order")
    try:
        x, y = to_metres(lon, lat) if n else (np.empty(0), np.empty(0))
    except CRSError as error:
        raise ReplayError("outside_zones", str(error)) from error
    return Track(t, lat, lon, *rest, np.asarray(x, np.float64), np.asarray(y, np.float64))


def _subset(track: Track, keep: np.ndarray) -> Track:
    """The fixes of a track at the indices keep."""
    return Track(*(getattr(track, name)[keep] for name in Track.__dataclass_fields__))


def _kept(n: int, spikes: Sequence[int] | np.ndarray) -> np.ndarray:
    """The indices 0..n-1 but the spikes."""
    keep = np.ones(n, bool)
    keep[np.asarray(spikes, np.int64)] = False
    return np.flatnonzero(keep)


def without_spikes(track: Track, replay: Replay) -> Track:
    """The track less its replay's spikes: the one to play back (`position_at`), made once."""
    return _subset(track, _kept(len(track), replay.spikes))


# ----------------------------------------------------------------------------------- summary

def _step_kmh(track: Track) -> np.ndarray:
    """Each step's speed (km/h) over at least a second, as the ingest's jump rule counts it."""
    metres = np.hypot(np.diff(track.x), np.diff(track.y))
    return metres / np.maximum(np.diff(track.t), 1.0) * 3.6


def _spikes(track: Track, max_speed_kmh: float) -> np.ndarray:
    """Indices of fixes too fast to reach from both neighbours."""
    fast = _step_kmh(track) > max_speed_kmh
    return np.flatnonzero(fast[:-1] & fast[1:]) + 1


def _run_end(track: Track, i: int, r2: float) -> int:
    """The last index of the run of fixes from i that stay within the radius (squared r2) of i."""
    n, step = len(track), 64
    start = i + 1
    while start < n:
        stop = min(n, start + step)
        d2 = (track.x[start:stop] - track.x[i]) ** 2 + (track.y[start:stop] - track.y[i]) ** 2
        out = np.flatnonzero(d2 > r2)
        if out.size:
            return start + int(out[0]) - 1
        start, step = stop, step * 2
    return n - 1


def _stop_runs(track: Track, stop_min_s: float, stop_radius_m: float,
               still_kmh: float) -> list[tuple[int, int]]:
    """(first, last) of each stop, by the stay-point rule (see the module).

    An anchor needs its fix stop_min_s later within the radius, so only those anchors are tried:
    driving costs one vectorised test, a parked hour a few array slices."""
    n, r2 = len(track), stop_radius_m ** 2
    later = np.searchsorted(track.t, track.t + stop_min_s, "left")
    has = later < n
    idx = np.minimum(later, n - 1)
    near = (track.x[idx] - track.x) ** 2 + (track.y[idx] - track.y) ** 2 <= r2
    moving = track.speed_kmh >= still_kmh  # NaN (unknown): not moving
    runs: list[tuple[int, int]] = []
    free = 0
    for i in np.flatnonzero(has & near).tolist():
        if i < free:
            continue
        first, last = i, _run_end(track, i, r2)
        while first < last and moving[first]:
            first += 1
        while last > first and moving[last]:
            last -= 1
        if track.t[last] - track.t[first] >= stop_min_s:
            runs.append((first, last))
            free = last + 1
    return _merge_runs(track, runs, r2)


def _centre(track: Track, first: int, last: int) -> tuple[float, float]:
    """Mean x, y of the fixes first..last."""
    return float(track.x[first:last + 1].mean()), float(track.y[first:last + 1].mean())


def _merge_runs(track: Track, runs: list[tuple[int, int]], r2: float) -> list[tuple[int, int]]:
    """Adjacent runs (no fix between) with centres within the radius joined into one."""
    merged: list[tuple[int, int]] = []
    for first, last in runs:
        if merged and merged[-1][1] + 1 == first:
            (ax, ay), (bx, by) = _centre(track, *merged[-1]), _centre(track, first, last)
            if (ax - bx) ** 2 + (ay - by) ** 2 <= r2:
                merged[-1] = (merged[-1][0], last)
                continue
        merged.append((first, last))
    return merged


def _segments(breaks: np.ndarray, n: int) -> list[tuple[int, int]]:
    """(first, last) ranges of 0..n-1 split after each step index in breaks."""
    starts = [0] + (breaks + 1).tolist()
    ends = breaks.tolist() + [n - 1]
    return list(zip(starts, ends)) if n else []


def summarize(fixes: Track | Sequence[Mapping[str, Any]] | Mapping[str, Any], *,
              stop_min_s: float = 120.0, stop_radius_m: float = 50.0, max_gap_s: float = 120.0,
              max_speed_kmh: float = MAX_SPEED_KMH, still_kmh: float = 3.0) -> Replay:
    """The `Replay` of a time-ordered track (see the module for the rules); ReplayError for fixes
    that are not a track. max_gap_s 120: a terminal reporting every 30 s while driving (as #26's JT/T 808
    terminals do) still draws one line; max_speed_kmh: MAX_JUMP_SPEED_KMH's default."""
    full = as_track(fixes)
    spikes = _spikes(full, max_speed_kmh) if len(full) > 2 else np.empty(0, np.int64)
    kept = _kept(len(full), spikes)
    track = _subset(full, kept)
    n = len(track)
    if n == 0:
        return Replay(None, None, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (), (), ())
    runs = _stop_runs(track, stop_min_s, stop_radius_m, still_kmh)
    dt = np.diff(track.t)
    in_stop = np.zeros(max(n - 1, 0), bool)
    for first, last in runs:
        in_stop[first:last] = True
    step_kmh = _step_kmh(track)
    broken = ~in_stop & ((dt > max_gap_s) | (step_kmh > max_speed_kmh))
    driven = ~in_stop & ~broken
    still = (track.speed_kmh[:-1] < still_kmh) & (track.speed_kmh[1:] < still_kmh)
    metres = np.hypot(np.diff(track.x), np.diff(track.y))
    distance = float(metres[driven & ~still].sum())
    driving = float(dt[driven].sum())
    reported = track.speed_kmh[1:]
    speeds = np.where(np.isnan(reported), step_kmh, reported)[driven]
    stops = tuple(_stop(track, kept, first, last) for first, last in runs)
    segments = tuple((int(kept[a]), int(kept[b])) for a, b in _segments(np.flatnonzero(broken), n))
    return Replay(
        start=float(track.t[0]), end=float(track.t[-1]), fixes=n, distance_m=distance,
        driving_s=driving, stopped_s=float(sum(s.duration_s for s in stops)),
        gap_s=float(dt[broken].sum()), max_speed_kmh=float(speeds.max()) if speeds.size else 0.0,
        avg_speed_kmh=distance / driving * 3.6 if driving > 0 else 0.0, stops=stops,
        segments=segments, spikes=tuple(spikes.tolist()))


def _stop(track: Track, kept: np.ndarray, first: int, last: int) -> Stop:
    """The `Stop` of the kept fixes first..last (indices reported as the input's)."""
    return Stop(first=int(kept[first]), last=int(kept[last]), start=float(track.t[first]),
                end=float(track.t[last]), duration_s=float(track.t[last] - track.t[first]),
                lon=float(track.lon[first:last + 1].mean()), lat=float(track.lat[first:last + 1].mean()),
                fixes=last - first + 1)


# ------------------------------------------------------------------------------------ drawing

def _deviation(x: np.ndarray, y: np.ndarray, a: int, b: int) -> tuple[float, int]:
    """The largest distance of the fixes strictly between a and b from the segment a-b, and where."""
    if b - a < 2:
        return 0.0, -1
    px, py = x[a + 1:b] - x[a], y[a + 1:b] - y[a]
    dx, dy = x[b] - x[a], y[b] - y[a]
    length2 = dx * dx + dy * dy
    u = np.clip((px * dx + py * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    d = np.hypot(px - u * dx, py - u * dy)
    k = int(np.argmax(d))
    return float(d[k]), a + 1 + k


def thin(fixes: Track | Sequence[Mapping[str, Any]] | Mapping[str, Any], max_points: int, *,
         replay: Replay | None = None, min_deviation_m: float = 1.0) -> np.ndarray:
    """Sorted indices of at most max_points fixes to draw the track with (max_points >= 2), the
    replay's spikes never among them (a summary with the defaults is made when none is given).

    Always kept: the first and last fix, each stop's first and last, and both ends of every break
    (``replay.segments``), unless they alone exceed max_points. The rest are chosen by
    Douglas-Peucker ranked by deviation: the segment whose farthest fix lies farthest from it (in
    metres) is split first, so the budget goes to turns and a straight road costs two points; a
    parked hour's jitter (within the stop radius) loses to any real turn. A fix less than
    min_deviation_m off its segment is never added (a metre is below a pixel at street zoom), so a
    straight day may come back shorter. Chosen over a fixed step (every k-th fix), which cuts
    corners and keeps a thousand copies of a parked position, and over a tolerance in metres, which
    gives no bound on the count. The full resolution of a play-back window comes from `window`."""
    if max_points < 2:
        raise ReplayError("bad_max_points", "max_points must be at least 2")
    track = as_track(fixes)
    replay = replay or summarize(track)
    idx = _kept(len(track), replay.spikes)
    if len(idx) <= max_points:
        return idx
    x, y = track.x[idx], track.y[idx]
    ends = [i for s in replay.stops for i in (s.first, s.last)] + [i for seg in replay.segments for i in seg]
    forced = {0, len(idx) - 1} | set(np.searchsorted(idx, ends).tolist())
    if len(forced) > max_points:
        forced = {0, len(idx) - 1}
    kept = sorted(forced)
    heap = []
    for a, b in zip(kept, kept[1:]):
        d, k = _deviation(x, y, a, b)
        if k >= 0:
            heap.append((-d, a, b, k))
    heapq.heapify(heap)
    chosen = set(kept)
    while heap and len(chosen) < max_points:
        negative, a, b, k = heapq.heappop(heap)
        if -negative < min_deviation_m:
            break
        chosen.add(k)
        for lo, hi in ((a, k), (k, b)):
            d, j = _deviation(x, y, lo, hi)
            if j >= 0:
                heapq.heappush(heap, (-d, lo, hi, j))
    return idx[sorted(chosen)]


def window(fixes: Track | Sequence[Mapping[str, Any]] | Mapping[str, Any], since: float,
           until: float) -> slice:
    """The slice of the fixes with since <= t <= until (play-back's full resolution of a window)."""
    track = as_track(fixes)
    return slice(int(np.searchsorted(track.t, since, "left")),
                 int(np.searchsorted(track.t, until, "right")))


# ---------------------------------------------------------------------------------- play-back

def _between(a: float, b: float, f: float) -> float | None:
    """Linear interpolation of two values, None when either is unknown."""
    if math.isnan(a) or math.isnan(b):
        return None
    return float(a + (b - a) * f)


def _course(track: Track, i: int, f: float) -> float | None:
    """The course between fixes i and i+1: the reported courses turned the short way round, else
    the bearing of the step (None for a step that does not move and reports none)."""
    a, b = track.course_deg[i], track.course_deg[i + 1]
    if not (math.isnan(a) or math.isnan(b)):
        return float((a + ((b - a + 180.0) % 360.0 - 180.0) * f) % 360.0)
    dx, dy = track.x[i + 1] - track.x[i], track.y[i + 1] - track.y[i]
    if dx == 0 and dy == 0:
        return None if math.isnan(a) else float(a)
    return float(math.degrees(math.atan2(dx, dy)) % 360.0)


def position_at(fixes: Track | Sequence[Mapping[str, Any]] | Mapping[str, Any], t: float, *,
                max_gap_s: float = 120.0) -> Position | None:
    """The `Position` at time t (epoch s), None before the first fix or after the last. Between
    two fixes less than max_gap_s apart: linear in lon/lat (a second at 1 Hz is a few metres);
    across a longer gap: held at the fix before it. Every fix counts: play back
    `without_spikes(track, replay)`, made once, to pass a spike by."""
    track = as_track(fixes)
    n = len(track)
    if n == 0 or t < track.t[0] or t > track.t[-1]:
        return None
    if n == 1:
        course, speed = track.course_deg[0], track.speed_kmh[0]
        return Position(float(t), float(track.lat[0]), float(track.lon[0]),
                        None if math.isnan(course) else float(course),
                        None if math.isnan(speed) else float(speed), False)
    i = min(int(np.searchsorted(track.t, t, "right")) - 1, n - 2)
    span = track.t[i + 1] - track.t[i]
    f = (t - track.t[i]) / span if span > 0 else 1.0
    if span > max_gap_s and 0 < f < 1:
        return Position(float(t), float(track.lat[i]), float(track.lon[i]), None, None, True)
    return Position(float(t), float(track.lat[i] + (track.lat[i + 1] - track.lat[i]) * f),
                    float(track.lon[i] + (track.lon[i + 1] - track.lon[i]) * f),
                    _course(track, i, f), _between(track.speed_kmh[i], track.speed_kmh[i + 1], f), False)


# ------------------------------------------------------------------------------------ tickets

def _place(ticket: TicketPlace | Mapping[str, Any]) -> TicketPlace:
    """A TicketPlace of a mapping with id, lon, lat, start and end (or a TicketPlace)."""
    if isinstance(ticket, TicketPlace):
        return ticket
    return TicketPlace(str(ticket["id"]), float(ticket["lon"]), float(ticket["lat"]),
                       ticket.get("start"), ticket.get("end"))


def tickets_on_the_way(track_or_replay: Replay | Track | Sequence[Mapping[str, Any]],
                       tickets: Iterable[TicketPlace | Mapping[str, Any]],
                       radius_m: float = 100.0) -> list[WorkedTicket]:
    """The tickets the vehicle worked on the way, in the order given: those with a stop whose
    centre lies within radius_m of the ticket's place (geodesic) and whose time overlaps the
    ticket's field time (an open end: unbounded that way). A list of fixes or a Track is summarised
    with the defaults first."""
    replay = track_or_replay if isinstance(track_or_replay, Replay) else summarize(track_or_replay)
    stops = replay.stops
    out: list[WorkedTicket] = []
    places = [_place(ticket) for ticket in tickets]
    if not stops or not places:
        return out
    stop_lon = np.array([s.lon for s in stops])
    stop_lat = np.array([s.lat for s in stops])
    for place in places:
        start = -math.inf if place.start is None else float(place.start)
        end = math.inf if place.end is None else float(place.end)
        metres = distance_m(stop_lon, stop_lat, place.lon, place.lat)
        hits, overlap, nearest = [], 0.0, math.inf
        for k, stop in enumerate(stops):
            seconds = min(stop.end, end) - max(stop.start, start)
            if metres[k] <= radius_m and seconds >= 0:
                hits.append(k)
                overlap += seconds
                nearest = min(nearest, float(metres[k]))
        if hits:
            out.append(WorkedTicket(place.ticket_id, tuple(hits), overlap, nearest))
    return out
