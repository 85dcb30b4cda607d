"""Packed track records (`center.fixpack.TRACK_RECORD`) decoded for readers, vectorised with numpy:
a day of 1 Hz fixes is one call, not 86,400 Python steps. `decode_fixes` gives the fix dicts
`center.store.unpack_track` gives (the same Python values: each field's values are computed once,
by the same expressions, into tables indexed by the packed code); `fixes_json` gives the bytes
orjson writes for those dicts with their ``time``, without making the dicts.
"""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np
import orjson

from center.fixpack import NONE8, NONE16, TRACK_RECORD

RECORD = TRACK_RECORD.size  # 20 bytes a fix
_DTYPE = np.dtype([("ms", "<u4"), ("lat", "<i4"), ("lon", "<i4"), ("cms", "<u2"),
                   ("crs", "<u2"), ("alt", "<i2"), ("q", "u1"), ("sats", "u1")])


def _table(values: Iterable[Any]) -> np.ndarray:
    """An object array of Python values, indexed by a packed field's code."""
    values = list(values)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# The values of each packed field by code, computed once with the very expressions of
# `center.store.unpack_track`, so that a vectorised read gives the same Python values.
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
    `center.store.unpack_track` gives them; with_time adds each fix's ``time`` (ISO 8601 UTC)."""
    rec, base, t = select(hours, since, until)
    values = [t.tolist()] + [column.tolist() for column in columns(rec).values()]
    if not with_time:
        return [{"t": a, "lat": b, "lon": c, "speed_kmh": d, "course_deg": e, "alt_m": f, "quality": g,
                 "sats": h} for a, b, c, d, e, f, g, h in zip(*values)]
    values.append(_times(t, base, rec["ms"]))
    return [{"t": a, "lat": b, "lon": c, "speed_kmh": d, "course_deg": e, "alt_m": f, "quality": g,
             "sats": h, "time": i} for a, b, c, d, e, f, g, h, i in zip(*values)]


# fixes_json: each fix is written as orjson writes its dict, as a row of fixed-width byte columns:
# the constant key texts and each value's text (orjson's own: by column for the floats, from
# tables by code for the rest), padded with NUL bytes, which JSON text never holds and which are
# then deleted.
_KEYS = (b'{"t":', b',"lat":', b',"lon":', b',"speed_kmh":', b',"course_deg":', b',"alt_m":', b',"quality":',
         b',"sats":', b',"time":"')


@functools.cache
def _token_tables() -> dict[str, np.ndarray]:
    """orjson's text of every value of the table-decoded fields, by code; the minutes and seconds
    of the ISO times by second of the hour, their tails by millisecond (made on first use)."""
    def tokens(values: Iterable[Any]) -> np.ndarray:
        return np.array([orjson.dumps(v) for v in values], dtype="S")

    return {"speed_kmh": tokens(_SPEED.tolist()), "course_deg": tokens(_COURSE.tolist()),
            "alt_m": tokens(_ALT.tolist()), "byte": tokens(_BYTE.tolist()),
            "mmss": np.array([f"{s // 60:02d}:{s % 60:02d}".encode() for s in range(3600)], dtype="S"),
            "tail": np.array([f.encode() + b'"},' for f in _FRACTION], dtype="S")}


def _float_tokens(values: np.ndarray) -> np.ndarray:
    """orjson's text of each float, as a byte-string array."""
    return np.array(orjson.dumps(values.tolist())[1:-1].split(b","), dtype="S")


def _rows(parts: list[np.ndarray | bytes], n: int) -> bytes:
    """Concatenate, row by row, byte-string arrays of n items and constant bytes, without the
    padding of the arrays' items."""
    widths = [part.dtype.itemsize if isinstance(part, np.ndarray) else len(part) for part in parts]
    matrix = np.empty((n, sum(widths)), dtype=np.uint8)
    at = 0
    for part, width in zip(parts, widths):
        if isinstance(part, np.ndarray):
            matrix[:, at:at + width] = part.view(np.uint8).reshape(n, width)
        else:
            matrix[:, at:at + width] = np.frombuffer(part, dtype=np.uint8)
        at += width
    return matrix.tobytes().translate(None, b"\0")  # one C pass (a boolean mask took longer)


def fixes_json(hours: Iterable[tuple[int, bytes]], since: float, until: float) -> tuple[int, bytes]:
    """(count, JSON array) of the fixes `decode_fixes` gives with their ``time``: the very bytes
    ``orjson.dumps(decode_fixes(..., with_time=True))`` writes, made column by column."""
    hours = list(hours)
    rec, base, t = select(hours, since, until)
    n = len(rec)
    if n == 0:
        return 0, b"[]"
    if float(base.max()) >= _FAST_ISO_LIMIT or int(rec["ms"].max()) >= 3_600_000:
        # far-future times (`_times` takes the slow path anyway), or a record past its hour
        return n, orjson.dumps(decode_fixes(hours, since, until, with_time=True))
    tables = _token_tables()
    hours_present, hour_of = np.unique(base, return_inverse=True)
    prefixes = np.array([_iso(start)[:14].encode() for start in hours_present.tolist()], dtype="S")  # YYYY-MM-DDTHH:
    values = [_float_tokens(t), _float_tokens(rec["lat"].astype(np.float64) / 1e7),
              _float_tokens(rec["lon"].astype(np.float64) / 1e7), tables["speed_kmh"][rec["cms"]],
              tables["course_deg"][rec["crs"]], tables["alt_m"][rec["alt"].astype(np.int32) + 32768],
              tables["byte"][rec["q"]], tables["byte"][rec["sats"]], prefixes[hour_of]]
    parts: list[np.ndarray | bytes] = []
    for key, value in zip(_KEYS, values):
        parts += [key, value]
    parts += [tables["mmss"][rec["ms"] // 1000], tables["tail"][rec["ms"] % 1000]]
    return n, b"[" + _rows(parts, n)[:-1] + b"]"
