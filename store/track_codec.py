"""Packed track records: `pack_fix` writes one (the ingest's write path), numpy reads them back
(a day of 1 Hz fixes is one call, not 86,400 Python steps). `decode_fixes` gives the fix dicts
`store.live.unpack_track` gives (the same Python values: each field's values are computed once,
by the same expressions, into tables indexed by the packed code); `fixes_json` gives orjson's
bytes of those dicts with their ``time``.

Packed track record (TRACK_RECORD): ms since the hour (uint32), lat and lon in 1e-7 degrees
(int32), speed in cm/s (uint16), course in 0.01 degree (uint16), altitude in m (int16), fix quality
(uint8), satellites (uint8): 20 bytes a fix; 0xFFFF / 0xFF / -32768 for unknown. The format of
every track in Redis and in the PostgreSQL archive: never change it.
"""
from __future__ import annotations

import struct
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np
import orjson

TRACK_RECORD = struct.Struct("<IiiHHhBB")
NONE16 = 0xFFFF
NONE8 = 0xFF
RECORD = TRACK_RECORD.size  # 20 bytes a fix
_DTYPE = np.dtype([("ms", "<u4"), ("lat", "<i4"), ("lon", "<i4"), ("cms", "<u2"),
                   ("crs", "<u2"), ("alt", "<i2"), ("q", "u1"), ("sats", "u1")])


def _clamp(value: float | int | None, low: int, high: int, none: int, unit: float = 1.0) -> int:
    """A field's packed code: ``none`` for None, else the value in ``unit`` s, rounded, in [low, high]."""
    if value is None:
        return none
    return min(max(round(value / unit), low), high)  # (round of a float: an int)


def pack_fix(fix: Any) -> tuple[int, bytes]:
    """(UTC hour, 20-byte record) of a `store.fix_writes.FixRecord` for its track."""
    hour, ms = divmod(int(round(fix.t * 1000)), 3_600_000)
    course = None if fix.course_deg is None else fix.course_deg % 360.0
    return hour, TRACK_RECORD.pack(
        ms, round(fix.lat * 1e7), round(fix.lon * 1e7),
        _clamp(fix.speed_kmh, 0, NONE16 - 1, NONE16, 0.036),
        NONE16 if course is None else round(course * 100) % 36000,
        _clamp(fix.alt_m, -32767, 32767, -32768), _clamp(fix.quality, 0, NONE8 - 1, NONE8),
        _clamp(fix.sats, 0, NONE8 - 1, NONE8))


def _table(values: Iterable[Any]) -> np.ndarray:
    """An object array of Python values, indexed by a packed field's code."""
    values = list(values)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# The values of each packed field by code, computed once with the very expressions of
# `store.live.unpack_track`, so that a vectorised read gives the same Python values.
_SPEED = _table(None if c == NONE16 else round(c * 0.036, 4) for c in range(65536))
_COURSE = _table(None if c == NONE16 else c / 100.0 for c in range(65536))
_ALT = _table(None if a == -32768 else float(a) for a in range(-32768, 32768))  # index: alt + 32768
_BYTE = _table(None if b == NONE8 else b for b in range(256))
_FRACTION = ["Z"] + [f".{ms:03d}000Z" for ms in range(1, 1000)]  # ISO 8601 tail by ms of the second
_FAST_ISO_LIMIT = 2 ** 32  # below, a float epoch second is exact to the microsecond (see _times)


def _iso(t: float) -> str:
    """UTC epoch seconds as ISO 8601 UTC, as `web.handlers.vehicles.iso` spells it."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def _times(t: np.ndarray, base: np.ndarray, ms: np.ndarray) -> list[str]:
    """ISO 8601 UTC of each fix time, spelt as `_iso` does: the whole seconds by numpy, then the
    millisecond tail. A track time is the hour start plus whole milliseconds, which a float holds
    to well under a microsecond below 2**32 s (year 2106); later times take `_iso` itself."""
    if len(t) and float(base.max()) >= _FAST_ISO_LIMIT:
        return [_iso(v) for v in t.tolist()]
    seconds = (base.astype(np.int64) + (ms // 1000).astype(np.int64)).astype("datetime64[s]")
    tails = [_FRACTION[f] for f in (ms % 1000).tolist()]
    return [s + tail for s, tail in zip(np.datetime_as_string(seconds, unit="s").tolist(), tails)]


def select(hours: Iterable[tuple[int, bytes]], since: float,
           until: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The records of (hour, packed records) pairs with since <= t <= until in time order (stable:
    equal times keep their hour and record order, as a sort of `unpack_track`'s fixes does), as
    (records, hour start of each in s, t of each in UTC epoch s)."""
    parts, bases = [], []
    for hour, data in hours:
        arr = np.frombuffer(data, dtype=_DTYPE, count=len(data) // RECORD)
        parts.append(arr)
        bases.append(np.full(len(arr), hour * 3600.0))
    if not parts:
        return np.empty(0, dtype=_DTYPE), np.empty(0), np.empty(0)
    rec, base = np.concatenate(parts), np.concatenate(bases)
    t = base + rec["ms"].astype(np.float64) / 1000.0  # the float `unpack_track` computes
    if bool((t[1:] >= t[:-1]).all()):  # written in time order, as the ingest writes: the range is a slice
        keep = slice(int(np.searchsorted(t, since, "left")), int(np.searchsorted(t, until, "right")))
        return rec[keep], base[keep], t[keep]
    keep = np.flatnonzero((since <= t) & (t <= until))
    keep = keep[np.argsort(t[keep], kind="stable")]
    return rec[keep], base[keep], t[keep]


def columns(rec: np.ndarray) -> dict[str, np.ndarray]:
    """The fix fields but ``t`` of selected records: lat and lon as float arrays, the others as
    object arrays of the Python values `unpack_track` gives (None where unknown)."""
    return {"lat": rec["lat"].astype(np.float64) / 1e7, "lon": rec["lon"].astype(np.float64) / 1e7,
            "speed_kmh": _SPEED[rec["cms"]], "course_deg": _COURSE[rec["crs"]],
            "alt_m": _ALT[rec["alt"].astype(np.int32) + 32768], "quality": _BYTE[rec["q"]],
            "sats": _BYTE[rec["sats"]]}


def decode_fixes(hours: Iterable[tuple[int, bytes]], since: float, until: float, *,
                 with_time: bool = False) -> list[dict[str, Any]]:
    """The fixes of (hour, packed records) pairs with since <= t <= until, in time order, as
    `store.live.unpack_track` gives them; with_time adds each fix's ``time`` (ISO 8601 UTC)."""
    rec, base, t = select(hours, since, until)
    values = [t.tolist()] + [column.tolist() for column in columns(rec).values()]
    if not with_time:
        return [{"t": a, "lat": b, "lon": c, "speed_kmh": d, "course_deg": e, "alt_m": f, "quality": g,
                 "sats": h} for a, b, c, d, e, f, g, h in zip(*values)]
    values.append(_times(t, base, rec["ms"]))
    return [{"t": a, "lat": b, "lon": c, "speed_kmh": d, "course_deg": e, "alt_m": f, "quality": g,
             "sats": h, "time": i} for a, b, c, d, e, f, g, h, i in zip(*values)]


def fixes_json(hours: Iterable[tuple[int, bytes]], since: float, until: float) -> tuple[int, bytes]:
    """(count, JSON array) of the fixes `decode_fixes` gives with their ``time`` (orjson's text)."""
    fixes = decode_fixes(hours, since, until, with_time=True)
    return len(fixes), orjson.dumps(fixes)
