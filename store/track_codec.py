"""Packed track records (`ingest.fixpack.TRACK_RECORD`) decoded for readers, vectorised with numpy:
a day of 1 Hz fixes is one call, not 86,400 Python steps. `decode_fixes` gives the fix dicts
`store.live.unpack_track` gives (the same Python values: each field's values are computed once,
by the same expressions, into tables indexed by the packed code); `fixes_json` gives the bytes
orjson writes for those dicts with their ``time``, without making the dicts.
"""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np
import orjson

from ingest.fixpack import NONE8, NONE16, TRACK_RECORD

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


# fixes_json: each fix is written as orjson writes its dict, as a row of fixed-width byte columns:
# the constant key texts and each value's text (t, lat and lon from their integers by groups of
# 4 digits, `_decimal`; the other fields from tables by code), padded with NUL bytes, which JSON
# text never holds and which are then deleted.
_KEYS = (b'{"t":', b',"lat":', b',"lon":', b',"speed_kmh":', b',"course_deg":', b',"alt_m":', b',"quality":',
         b',"sats":', b',"time":"')


@functools.cache
def _token_tables() -> dict[str, np.ndarray]:
    """orjson's text of every value of the table-decoded fields, by code; the minutes and seconds
    of the ISO times by second of the hour, their tails by millisecond (made on first use)."""
    def tokens(values: Iterable[Any]) -> np.ndarray:
        return _texts([orjson.dumps(v) for v in values])

    return {"speed_kmh": tokens(_SPEED.tolist()), "course_deg": tokens(_COURSE.tolist()),
            "alt_m": tokens(_ALT.tolist()), "byte": tokens(_BYTE.tolist()),
            "mmss": _texts([f"{s // 60:02d}:{s % 60:02d}".encode() for s in range(3600)]),
            "tail": _texts([f.encode() + b'"},' for f in _FRACTION])}


def _texts(texts: list[bytes]) -> np.ndarray:
    """A byte-string array of these texts, its items 1, 2, 4, 8 or 16 bytes wide when they fit
    (the sizes `_rows` copies fastest; the padding is NULs)."""
    width = max(map(len, texts), default=1)
    return np.array(texts, dtype=f"S{next((w for w in (1, 2, 4, 8, 16) if w >= width), width)}")


def _float_tokens(values: np.ndarray) -> np.ndarray:
    """orjson's text of each float, as a byte-string array."""
    return np.array(orjson.dumps(values.tolist())[1:-1].split(b","), dtype="S")


@functools.cache
def _digit_tables() -> dict[str, np.ndarray]:
    """The texts of the 4-digit groups of a decimal (S4), indexed by the group's value 0..9999 and,
    plus 10,000, when another digit of the number makes its zeros shown (then all four digits):
    ``lead`` without leading zeros, ``trail`` without trailing zeros, the ``_1`` ones "0" for 0."""
    full = [f"{g:04d}" for g in range(10_000)]

    def table(texts: list[str]) -> np.ndarray:
        return np.array(texts + full, dtype="S4")

    return {"lead": table([f.lstrip("0") for f in full]), "lead_1": table([f.lstrip("0") or "0" for f in full]),
            "trail": table([f.rstrip("0") for f in full]), "trail_1": table([f.rstrip("0") or "0" for f in full])}


def _decimal(k: np.ndarray, scale: int) -> list[np.ndarray | bytes]:
    """The text of the numbers k / 10**scale (k an int64 array) as orjson writes the float nearest
    to each, as parts for `_rows`: sign, the whole part by groups of 4 digits without leading zeros
    (at least "0"), ".", the fraction by groups of 4 digits without trailing zeros (at least "0").

    That is orjson's text when the decimal has at most 15 significant digits (then it is the
    shortest that reads back as that float) and 1e-4 <= |value| < 1e16 or value == 0 (orjson's
    plain notation, checked by `_plain`)."""
    digits = _digit_tables()
    whole, fraction = np.divmod(np.abs(k), 10 ** scale)
    parts: list[np.ndarray | bytes] = []
    if bool((k < 0).any()):
        parts.append(np.where(k < 0, b"-", b""))
    groups = max(1, -(-len(str(int(whole.max()))) // 4))
    for g in range(groups - 1, -1, -1):  # most significant first
        ahead = whole >= 10 ** (4 * (g + 1))  # a digit before this group: its zeros are shown
        parts.append(digits["lead_1" if g == 0 else "lead"][whole // 10 ** (4 * g) % 10_000 + 10_000 * ahead])
    parts.append(b".")
    groups = -(-scale // 4)
    padded = fraction * 10 ** (4 * groups - scale)
    for g in range(groups - 1, -1, -1):  # most significant first
        after = padded % 10 ** (4 * g) != 0  # a digit after this group: its zeros are shown
        parts.append(digits["trail_1" if g == groups - 1 else "trail"][padded // 10 ** (4 * g) % 10_000 + 10_000 * after])
    return parts


def _number(k: np.ndarray, scale: int, value: np.ndarray | None = None) -> list[np.ndarray | bytes]:
    """orjson's text of the floats k / 10**scale as parts for `_rows`; `value`: the floats to write
    when computed otherwise (written by `_decimal` only if each is the float nearest to its k / 10**scale,
    as a division gives: a time's hour start plus its milliseconds / 1000 is, but below 2**20 s).
    By `_decimal`, or by orjson itself when it would write some otherwise."""
    k = k.astype(np.int64)
    nearest = k / 10 ** scale  # IEEE division: the float nearest to each decimal
    if _plain(k, scale) and (value is None or np.array_equal(nearest, value)):
        return _decimal(k, scale)
    return [_float_tokens(nearest if value is None else value)]


def _plain(k: np.ndarray, scale: int) -> bool:
    """Whether `_decimal` writes these numbers as orjson does (see there)."""
    a = np.abs(k)
    return bool(a.max() < 10 ** 15 and (a[a != 0].min(initial=10 ** scale) >= 10 ** (scale - 4)))


def _rows(parts: list[np.ndarray | bytes], n: int) -> bytes:
    """Concatenate, row by row, byte-string arrays of n items and constant bytes, without the
    padding of the arrays' items.

    The rows are one array of fixed-size records: the constants are written once into a template
    record copied to every row, each array into its field (a copy of items of 1, 2, 4, 8 or 16
    bytes is numpy's fast path, hence the widths of the token tables); then the NULs go."""
    widths = [part.dtype.itemsize if isinstance(part, np.ndarray) else len(part) for part in parts]
    offsets = np.cumsum([0] + widths[:-1]).tolist()
    template = bytearray(sum(widths))
    for part, at in zip(parts, offsets):
        if not isinstance(part, np.ndarray):
            template[at:at + len(part)] = part
    rows = np.full(n, np.void(bytes(template)))
    for part, at in zip(parts, offsets):
        if isinstance(part, np.ndarray):
            field = np.dtype({"names": ["f"], "formats": [part.dtype], "offsets": [at],
                              "itemsize": len(template)})
            rows.view(field)["f"] = part
    return rows.tobytes().translate(None, b"\0")  # one C pass (a boolean mask took longer)


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
    hour = base.astype(np.int64) // 3600  # in time order, as every record is within its hour
    first = int(hour[0])
    prefixes = _texts([_iso(h * 3600)[:14].encode() for h in range(first, int(hour[-1]) + 1)])  # YYYY-MM-DDTHH:
    values = [_number(base.astype(np.int64) * 1000 + rec["ms"], 3, t), _number(rec["lat"], 7),
              _number(rec["lon"], 7), [tables["speed_kmh"][rec["cms"]]], [tables["course_deg"][rec["crs"]]],
              [tables["alt_m"][rec["alt"].astype(np.int32) + 32768]], [tables["byte"][rec["q"]]],
              [tables["byte"][rec["sats"]]], [prefixes[hour - first]]]
    parts: list[np.ndarray | bytes] = []
    for key, value in zip(_KEYS, values):
        parts += [key, *value]
    parts += [tables["mmss"][rec["ms"] // 1000], tables["tail"][rec["ms"] % 1000]]
    return n, b"".join((b"[", memoryview(_rows(parts, n))[:-1], b"]"))  # one copy of the rows, not two
