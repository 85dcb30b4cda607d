"""The ingest's batch of fixes as the Redis write script takes it: the packed track records, the
latest-fix text and the script's arguments (`prepare`), with no I/O. `store.live.Store.write_fixes`
sends what `prepare` gives; Cython compiles this module with the NMEA hot path (ingest/accel.py).

Packed track record (TRACK_RECORD): ms since the hour (uint32), lat and lon in 1e-7 degrees
(int32), speed in cm/s (uint16), course in 0.01 degree (uint16), altitude in m (int16), fix quality
(uint8), satellites (uint8): 20 bytes a fix; 0xFFFF / 0xFF / -32768 for unknown.
"""
from __future__ import annotations

import struct
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import cython  # C types where Cython compiles this module (ingest/accel.py); a no-op module otherwise
import orjson
from cython.cimports.libc.math import copysign as _copysign, floor as _floor, fmod as _fmod

TRACK_RECORD = struct.Struct("<IiiHHhBB")
_dumps = orjson.dumps
NONE16 = 0xFFFF
NONE8 = 0xFF


# The fields of a `store.live.FixRecord`, read by index: one C step each on a tuple.
_VID, _T, _LAT, _LON, _SPD, _CRS, _ALT, _Q, _MODE, _SATS, _HDOP, _TALKER, _LIVE, _TRACK = range(14)


def pack_fix(fix: Any, _pack=TRACK_RECORD.pack, _round=round) -> tuple[int, bytes]:
    """Return (UTC hour, 20-byte record) for the track of a `store.live.FixRecord`."""
    if cython.compiled:
        packed = _pack_c(fix)
        if packed is not None:
            return packed
    t = fix[_T]
    hour = int(t // 3600)
    ms = int(_round((t - hour * 3600) * 1000))
    if ms >= 3_600_000:
        hour, ms = hour + 1, ms - 3_600_000
    speed, course, alt, q, sats = fix[_SPD], fix[_CRS], fix[_ALT], fix[_Q], fix[_SATS]
    if speed is None:
        cms = NONE16
    else:
        cms = int(_round(speed / 0.036))
        if cms > NONE16 - 1:
            cms = NONE16 - 1
    crs = NONE16 if course is None else int(_round((course % 360.0) * 100)) % 36000
    if alt is None:
        alt = -32768
    else:
        alt = int(_round(alt))
        alt = -32767 if alt < -32767 else (32767 if alt > 32767 else alt)
    if q is None:
        q = NONE8
    elif q > NONE8 - 1:
        q = NONE8 - 1
    if sats is None:
        sats = NONE8
    elif sats > NONE8 - 1:
        sats = NONE8 - 1
    return hour, _pack(ms, int(_round(fix[_LAT] * 1e7)), int(_round(fix[_LON] * 1e7)), cms, crs, alt, q, sats)


# ---------------------------------------------------------------------- the compiled record packer
# Where Cython compiled this module, `pack_fix` first tries `_pack_c`: the same record computed
# with C doubles and written byte by byte, for the plain values of a fix (finite, t >= 0, no
# negative speed, quality or satellites); anything else gives None and the Python code above
# decides, so the record is always the Python code's. Rounding is Python's ``round`` (half to
# even, on the exact double) and ``t // 3600`` follows CPython's float floor division.

@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _c_round(x: cython.double) -> cython.double:
    """``round(x)`` for a finite x of magnitude below 2**52, half to even as Python rounds."""
    negative: cython.bint = x < 0.0
    if negative:
        x = -x
    f: cython.double = _floor(x)
    diff: cython.double = x - f  # exact: f is x without its fraction
    if diff > 0.5 or (diff == 0.5 and cython.cast(cython.longlong, f) & 1):
        f += 1.0
    return -f if negative else f


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _c_put(out: cython.p_uchar, at: cython.int, value: cython.longlong, size: cython.int) -> cython.void:
    """Write the low ``size`` bytes of value at out[at], little-endian (two's complement)."""
    k: cython.int
    for k in range(size):
        out[at + k] = cython.cast(cython.uchar, (value >> (8 * k)) & 0xFF)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _c_plain_float(value: object, low: cython.double, high: cython.double) -> cython.bint:
    """Whether value is a float in [low, high) (so not NaN nor infinite)."""
    x: cython.double
    if type(value) is not float:
        return False
    x = value
    return low <= x < high


@cython.cfunc
@cython.inline
def _c_plain_count(value: object) -> cython.bint:
    """Whether value is an int (not a bool) from 0 to below 2**40."""
    return type(value) is int and 0 <= value < 1 << 40


@cython.ccall
def _pack_c(record: object) -> object:
    """`pack_fix` of a fix with plain values, in C; None for anything else."""
    if not isinstance(record, tuple) or len(record) < 14:
        return None
    fix: tuple = cython.cast(tuple, record)  # a FixRecord: a tuple that leaves item access alone
    # literal indices (the _T, _LAT ... of the record) are C array reads on a tuple
    if type(fix[1]) is not float or type(fix[2]) is not float or type(fix[3]) is not float:
        return None
    t: cython.double = fix[1]
    lat: cython.double = fix[2]
    lon: cython.double = fix[3]
    if not (0.0 <= t < 4.0e15) or not (-180.0 <= lat <= 180.0) or not (-180.0 <= lon <= 180.0):
        return None
    # t // 3600 in CPython is the exact floor of the real quotient (its fmod and the subtraction
    # are exact): the rounded quotient's floor, corrected by one where the rounding crossed it
    hour_d: cython.double = _floor(t / 3600.0)
    if hour_d * 3600.0 > t:
        hour_d -= 1.0
    elif (hour_d + 1.0) * 3600.0 <= t:
        hour_d += 1.0
    hour: cython.longlong = cython.cast(cython.longlong, hour_d)
    ms: cython.longlong = cython.cast(cython.longlong, _c_round((t - hour_d * 3600.0) * 1000.0))
    if ms >= 3600000:
        hour += 1
        ms -= 3600000
    if ms < 0:
        return None
    cms: cython.longlong = 0xFFFF  # NONE16
    crs: cython.longlong = 0xFFFF
    alt: cython.longlong = -32768
    q: cython.longlong = 0xFF  # NONE8
    sats: cython.longlong = 0xFF
    x: cython.double
    speed, course, altitude, quality, satellites = fix[4], fix[5], fix[6], fix[7], fix[9]
    if speed is not None:
        if not _c_plain_float(speed, 0.0, 1.0e12):
            return None
        x = speed
        x = _c_round(x / 0.036)
        cms = 0xFFFE if x > 0xFFFE else cython.cast(cython.longlong, x)
    if course is not None:
        if not _c_plain_float(course, -1.0e12, 1.0e12):
            return None
        x = course
        x = _fmod(x, 360.0)
        if x != 0.0 and x < 0.0:
            x += 360.0
        crs = cython.cast(cython.longlong, _c_round(x * 100.0)) % 36000
    if altitude is not None:
        if not _c_plain_float(altitude, -1.0e12, 1.0e12):
            return None
        x = altitude
        alt = cython.cast(cython.longlong, _c_round(x))
        alt = -32767 if alt < -32767 else (32767 if alt > 32767 else alt)
    if quality is not None:
        if not _c_plain_count(quality):
            return None
        q = quality
        q = 0xFE if q > 0xFE else q
    if satellites is not None:
        if not _c_plain_count(satellites):
            return None
        sats = satellites
        sats = 0xFE if sats > 0xFE else sats
    buffer: cython.uchar[20]
    out: cython.p_uchar = buffer
    _c_put(out, 0, ms, 4)
    _c_put(out, 4, cython.cast(cython.longlong, _c_round(lat * 1e7)), 4)
    _c_put(out, 8, cython.cast(cython.longlong, _c_round(lon * 1e7)), 4)
    _c_put(out, 12, cms, 2)
    _c_put(out, 14, crs, 2)
    _c_put(out, 16, alt, 2)
    _c_put(out, 18, q, 1)
    _c_put(out, 19, sats, 1)
    return hour, cython.cast(cython.p_char, out)[:20]


# Redis GEO's bounds (geohash.h): GEOADD refuses a latitude beyond the Web Mercator limit.
GEO_LAT_LIMIT = 85.05112878
_GEO_STEPS = 26  # GEO_STEP_MAX: 52-bit scores


def geo_score(lon: float, lat: float) -> str | None:
    """The score GEOADD would give a member at (lon, lat), as the decimal text ZADD takes: Redis's
    52-bit geohash of geohashEncodeWGS84 (26 steps; latitude bits even, longitude bits odd), from
    the same double arithmetic. None outside GEO's range (GEOADD refuses those). The ingest sends
    ZADD with these, so Redis neither formats nor parses coordinates (measured: a tenth of its
    time on the ingest's writes)."""
    if cython.compiled:
        code = _c_geo_score(lon, lat)
        score = None if code < 0 else str(code)
    else:
        score = _py_geo_score(lon, lat)
    return score


def _py_geo_score(lon: float, lat: float) -> str | None:
    """`geo_score` in Python (the module not compiled)."""
    if not (-180.0 <= lon <= 180.0 and -GEO_LAT_LIMIT <= lat <= GEO_LAT_LIMIT):
        return None
    lat_bits = int((lat - -GEO_LAT_LIMIT) / (GEO_LAT_LIMIT - -GEO_LAT_LIMIT) * float(1 << _GEO_STEPS))
    lon_bits = int((lon - -180.0) / (180.0 - -180.0) * float(1 << _GEO_STEPS))
    score = 0
    for bit in range(32):
        score |= ((lat_bits >> bit) & 1) << (2 * bit) | ((lon_bits >> bit) & 1) << (2 * bit + 1)
    return str(score)


# geohash.c's interleave64 masks, as C constants where compiled: Cython makes an integer literal
# beyond 32 bits a Python int, and each `&` with one then a Python operation (measured: 2,250
# instructions a call with the literals in the function, against a few dozen).
_SPREAD16 = cython.declare(cython.ulonglong, 0x0000FFFF0000FFFF)
_SPREAD8 = cython.declare(cython.ulonglong, 0x00FF00FF00FF00FF)
_SPREAD4 = cython.declare(cython.ulonglong, 0x0F0F0F0F0F0F0F0F)
_SPREAD2 = cython.declare(cython.ulonglong, 0x3333333333333333)
_SPREAD1 = cython.declare(cython.ulonglong, 0x5555555555555555)


@cython.cfunc
@cython.exceptval(check=False)
def _c_spread(v: cython.ulonglong) -> cython.ulonglong:
    """The bits of a 32-bit v at the even positions of a 64-bit word (geohash.c's interleave64)."""
    v = (v | (v << 16)) & _SPREAD16
    v = (v | (v << 8)) & _SPREAD8
    v = (v | (v << 4)) & _SPREAD4
    v = (v | (v << 2)) & _SPREAD2
    v = (v | (v << 1)) & _SPREAD1
    return v


@cython.cfunc
@cython.exceptval(check=False)
def _c_geo_score(lon: cython.double, lat: cython.double) -> cython.longlong:
    """`geo_score` in C, -1 outside the range (NaN included)."""
    limit: cython.double = GEO_LAT_LIMIT
    if not (-180.0 <= lon <= 180.0 and -limit <= lat <= limit):
        return -1
    steps: cython.double = 67108864.0  # 1 << 26
    lat_off: cython.double = (lat - -limit) / (limit - -limit) * steps
    lon_off: cython.double = (lon - -180.0) / (180.0 - -180.0) * steps
    lat_bits: cython.ulonglong = cython.cast(cython.uint, lat_off)
    lon_bits: cython.ulonglong = cython.cast(cython.uint, lon_off)
    return cython.cast(cython.longlong, _c_spread(lat_bits) | (_c_spread(lon_bits) << 1))


def utc_seconds(secs: float) -> float:
    """``datetime.fromtimestamp(secs, timezone.utc).timestamp()``: ``secs`` at the microsecond a
    datetime keeps, the ``t`` of a `store.live.FixRecord` (``fix.time.timestamp()``). In C
    where compiled, for 0 <= secs < 8e9 (an exact microsecond count): the same value without
    the datetime."""
    if cython.compiled:
        t = _c_utc_seconds(secs)
        if t >= 0.0:
            return t
    return datetime.fromtimestamp(secs, timezone.utc).timestamp()


@cython.cfunc
@cython.exceptval(check=False)
def _c_utc_seconds(x: cython.double) -> cython.double:
    """`utc_seconds` for 0 <= x < 8e9, else -1.0. CPython's fromtimestamp splits x into whole
    seconds and microseconds rounded half to even (_PyTime_DoubleToDenominator); timestamp()
    divides the microseconds since the epoch, an integer below 2**53 here, by 10**6: one
    correctly rounded division, as C's."""
    if not 0.0 <= x < 8.0e9:
        return -1.0
    whole: cython.double = _floor(x)
    us: cython.double = _c_round((x - whole) * 1.0e6)  # x - whole is exact
    if us >= 1.0e6:
        us -= 1.0e6
        whole += 1.0
    n: cython.longlong = cython.cast(cython.longlong, whole) * 1000000 + cython.cast(cython.longlong, us)
    return cython.cast(cython.double, n) / 1.0e6


def fix_text(fix: Any, seen: float | None = None) -> str:
    """A vehicle's value in the ``veh:fix`` hash: `store.live.FIX_FIELDS` joined by commas
    (empty for unknown; ``seen`` left out when None), so the ingest writes one value a fix rather
    than twelve. The text is orjson's (shortest round-trip floats, formatted in C), unquoted and with
    null left empty; lat and lon are rounded to 1e-9 degree, the speed to 0.001 km/h and ``seen``
    to the millisecond (`_rounded`), which keeps the text about 80 characters rather than 117."""
    if not isinstance(fix, tuple):
        raise TypeError(f"a fix record is a tuple, not {type(fix).__name__}")
    return _fix_text(cython.cast(tuple, fix), seen)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _c_rounded(x: cython.double, scale: cython.double) -> cython.double:
    """A float rounded to the nearest 1/scale (halves up); NaN, infinities and magnitudes beyond
    exact integers as they are."""
    y: cython.double = x * scale
    if not -4.0e15 < y < 4.0e15:
        return x
    return _floor(y + 0.5) / scale


@cython.cfunc
@cython.inline
def _rounded(value: object, scale: cython.double) -> object:
    """A plain float rounded to the nearest 1/scale (halves up), as the latest fix stores it;
    anything else (None, NaN, infinities, magnitudes beyond exact integers) as it is."""
    if type(value) is not float:
        return value
    return _c_rounded(value, scale)


# The latest fix's stored precision: a decimal is as long as its digits (orjson writes the
# shortest text that reads back the same float), and a latitude in minutes over 60 or a speed in
# knots times 1.852 has 17 of them. 1e-9 degree is 0.1 mm; 1e-3 km/h is 1 m/h; seen to the ms.
_DEG_SCALE = cython.declare(cython.double, 1e9)
_KMH_SCALE = cython.declare(cython.double, 1e3)
_SEEN_SCALE = cython.declare(cython.double, 1e3)


@cython.cfunc
def _fix_text(row: tuple, seen: object) -> str:
    """`fix_text` of a record read as a tuple (a C call from `prepare`)."""
    if cython.compiled:
        text = _c_fix_text(row, seen)
        if text is not None:
            return text
    values = ((row[1], _rounded(row[2], _DEG_SCALE), _rounded(row[3], _DEG_SCALE), _rounded(row[4], _KMH_SCALE))
              + row[5:12])  # t .. talker (_T:_LIVE)
    if seen is not None:
        values += (_rounded(seen, _SEEN_SCALE),)
    raw = _dumps(values)
    if cython.compiled and len(raw) <= 512:
        text = _c_unjson(raw)
        if text is not None:
            return text
    return raw[1:-1].decode().replace('"', "").replace("null", "")


@cython.cfunc
def _c_unjson(raw: bytes) -> object:
    """``raw[1:-1].decode().replace('"', "").replace("null", "")`` for ASCII ``raw`` of at most
    512 bytes, in one C pass (quotes dropped, then ``null`` removed left to right, as replace
    does: values are comma-separated, so dropping quotes joins no text into a new ``null``); None
    for anything else."""
    n: cython.Py_ssize_t = len(raw)
    if n < 2 or n > 512:
        return None
    src: cython.p_uchar = cython.cast(cython.p_uchar, cython.cast(cython.p_char, raw))
    stripped: cython.uchar[512]
    out: cython.uchar[512]
    i: cython.Py_ssize_t
    m: cython.Py_ssize_t = 0
    c: cython.uchar
    for i in range(1, n - 1):
        c = src[i]
        if c >= 0x80:
            return None
        if c != 0x22:  # '"'
            stripped[m] = c
            m += 1
    k: cython.Py_ssize_t = _c_drop_null(stripped, m, out)
    return cython.cast(cython.p_char, out)[:k].decode("ascii")


@cython.cfunc
@cython.exceptval(check=False)
def _c_drop_null(src: cython.p_uchar, m: cython.Py_ssize_t, out: cython.p_uchar) -> cython.Py_ssize_t:
    """Copy src[:m] to out without its ``null`` texts, left to right as ``str.replace`` removes
    them; return the length written."""
    k: cython.Py_ssize_t = 0
    i: cython.Py_ssize_t = 0
    while i < m:
        if (i + 3 < m and src[i] == 0x6E and src[i + 1] == 0x75 and src[i + 2] == 0x6C
                and src[i + 3] == 0x6C):  # 'null'
            i += 4
            continue
        out[k] = src[i]
        k += 1
        i += 1
    return k


# ------------------------------------------------------------------ the latest-fix text, in C
# `_c_fix_text` writes what ``orjson.dumps`` of the values gives, quotes dropped (the steps of
# `_fix_text`), straight into a buffer: the fields are None, ints, short ASCII strings and floats
# on a decimal grid (NMEA's decimals, the rounding of `_rounded`, microseconds of a time), whose
# shortest round-trip text, orjson's, is that decimal. Any other value gives None (the Python steps).

_TEXT_MAX = cython.declare(cython.Py_ssize_t, 512)


@cython.cfunc
@cython.exceptval(check=False)
def _c_put_digits(out: cython.p_uchar, at: cython.Py_ssize_t, n: cython.ulonglong,
                  width: cython.int) -> cython.Py_ssize_t:
    """Write n in decimal, zero-padded to at least ``width`` digits, at out[at]; return the end."""
    digits: cython.uchar[24]
    count: cython.int = 0
    while n > 0 or count < width or count == 0:
        digits[count] = cython.cast(cython.uchar, 0x30 + n % 10)
        n //= 10
        count += 1
    while count > 0:
        count -= 1
        out[at] = digits[count]
        at += 1
    return at


@cython.cfunc
@cython.exceptval(check=False)
def _c_put_float(out: cython.p_uchar, at: cython.Py_ssize_t, x: cython.double) -> cython.Py_ssize_t:
    """Write x as orjson does, where x is zero or lies on a decimal grid of 10**-d (d <= 9) fine
    enough that the grid's text is its shortest round-trip text: 10**-d above the spacing of
    doubles at x (|x| < 4e9 for up to 6 decimals, < 4e6 for up to 9) and 1e-5 <= |x| (orjson writes
    smaller ones with an exponent). The end, or -1 where x is not such a value."""
    if x == 0.0:
        if _copysign(1.0, x) < 0.0:
            out[at] = 0x2D  # '-'
            at += 1
        out[at] = 0x30
        out[at + 1] = 0x2E
        out[at + 2] = 0x30
        return at + 3
    a: cython.double = -x if x < 0.0 else x
    if not (1e-5 <= a < 4.0e9):  # NaN too
        return -1
    scale: cython.double = 1.0
    n: cython.double
    d: cython.int
    for d in range(10):
        if d > 6 and a >= 4.0e6:
            return -1
        n = _floor(a * scale + 0.5)
        if n / scale == a:  # exactly the decimal n * 10**-d: it reads back as x
            if x < 0.0:
                out[at] = 0x2D
                at += 1
            whole: cython.ulonglong = cython.cast(cython.ulonglong, n)
            unit: cython.ulonglong = cython.cast(cython.ulonglong, scale)
            at = _c_put_digits(out, at, whole // unit, 1)
            out[at] = 0x2E  # '.'
            return _c_put_digits(out, at + 1, whole % unit, d if d > 0 else 1)
        scale *= 10.0
    return -1


@cython.cfunc
@cython.exceptval(check=False)
def _c_put_value(out: cython.p_uchar, at: cython.Py_ssize_t, value: object) -> cython.Py_ssize_t:
    """Write one field as orjson writes it, unquoted (None as ``null``); -1 for a value outside
    `_c_fix_text`'s kinds or one that would not fit the buffer."""
    if at > _TEXT_MAX - 32:
        return -1
    if value is None:
        out[at] = 0x6E
        out[at + 1] = 0x75
        out[at + 2] = 0x6C
        out[at + 3] = 0x6C
        return at + 4
    kind = type(value)
    if kind is float:
        return _c_put_float(out, at, cython.cast(cython.double, value))
    if kind is int:
        if not -(1 << 62) < value < (1 << 62):
            return -1
        n: cython.longlong = value
        if n < 0:
            out[at] = 0x2D
            return _c_put_digits(out, at + 1, cython.cast(cython.ulonglong, -n), 1)
        return _c_put_digits(out, at, cython.cast(cython.ulonglong, n), 1)
    if kind is str:
        text: str = cython.cast(str, value)
        if at + len(text) > _TEXT_MAX - 32:
            return -1
        c: cython.Py_UCS4
        for c in text:
            if c < 0x20 or c > 0x7E or c == 0x22 or c == 0x5C:  # escaped by orjson: '"', '\\'
                return -1
            out[at] = cython.cast(cython.uchar, c)
            at += 1
        return at
    return -1


@cython.cfunc
def _c_fix_text(row: tuple, seen: object) -> object:
    """`_fix_text` written in C for the values of `_c_put_value` (None for any other)."""
    if len(row) < 12:
        return None
    text: cython.uchar[512]
    out: cython.uchar[512]
    at: cython.Py_ssize_t = 0
    i: cython.int
    for i in range(1, 12):  # t .. talker
        if i > 1:
            out[at] = 0x2C  # ','
            at += 1
        value = row[i]
        if 2 <= i <= 4 and type(value) is float:  # lat, lon, speed: `_rounded` in C
            at = _c_put_float(out, at, _c_rounded(value, _KMH_SCALE if i == 4 else _DEG_SCALE))
        else:
            at = _c_put_value(out, at, value)
        if at < 0:
            return None
    if seen is not None:
        out[at] = 0x2C
        if type(seen) is float:
            at = _c_put_float(out, at + 1, _c_rounded(seen, _SEEN_SCALE))
        else:
            at = _c_put_value(out, at + 1, seen)
        if at < 0:
            return None
    k: cython.Py_ssize_t = _c_drop_null(out, at, text)
    return cython.cast(cython.p_char, text)[:k].decode("ascii")


@cython.cfunc
@cython.inline
def _add_track(tracks: dict, fix: Any) -> None:
    """Add a record to its (vehicle, hour) track's packed records (the caller checked that it
    is a tuple)."""
    packed = _pack_c(fix) if cython.compiled else None
    hour, record = pack_fix(fix) if packed is None else packed
    track = (cython.cast(tuple, fix)[0], hour)
    records = tracks.get(track)
    if records is None:
        tracks[track] = [record]
    else:
        records.append(record)


def prepare(fixes: Iterable[Any], counters: Mapping[str, Mapping[str, int]], seen: Mapping[str, float],
            retention_s: float, signals: Mapping[str, str] | None, indexed: dict | None,
            known: set | None, track: Iterable[Any] | None = None
            ) -> tuple[list[dict[str, Any]], list | None, list, set]:
    """One batch as `store.live.WRITE_FIXES` takes it: ``(updates, args, new_hours, ids)`` where
    ``updates`` are the live messages, ``args`` the script's arguments (None when there is nothing
    to write), ``new_hours`` the (vehicle, hour) tracks indexed by this write and ``ids`` the
    vehicle ids it adds to ``veh:ids`` (see `store.live.Store.write_fixes` for the caches).
    The track part of ``fixes`` is written, or, when ``track`` is given, that of ``track``'s."""
    latest: dict[str, Any] = {}
    tracks: dict[tuple[str, int], list[bytes]] = {}
    # Each record is read as a tuple by literal index (0 vehicle_id, 1 t, 2 lat, 3 lon, 4 speed,
    # 5 course, 12 live, 13 track: FixRecord's order), as `_pack_c` reads it: where compiled, a
    # tuple subclass's item slot is CPython's generic one (a method call per item).
    for fix in fixes:
        if not isinstance(fix, tuple):
            raise TypeError(f"a fix record is a tuple, not {type(fix).__name__}")
        row: tuple = cython.cast(tuple, fix)
        vid = row[0]
        if row[12]:
            prev = latest.get(vid)
            if prev is None or row[1] > cython.cast(tuple, prev)[1]:
                latest[vid] = fix
        if track is None and row[13]:
            _add_track(tracks, fix)
    if track is not None:
        for fix in track:
            if not isinstance(fix, tuple):
                raise TypeError(f"a fix record is a tuple, not {type(fix).__name__}")
            if cython.cast(tuple, fix)[13]:
                _add_track(tracks, fix)
    updates = []
    fix_rows: list[str] = []
    seen_rows: list[str] = []
    signal_rows: list[str] = []
    geo: list[Any] = []
    signals = signals or {}
    for vid, fix in latest.items():
        row = cython.cast(tuple, fix)
        when = seen.get(vid)
        fix_rows.append(vid)
        fix_rows.append(_fix_text(row, row[1] if when is None else when))
        if signals:
            signal = signals.get(vid)
            if signal:
                signal_rows.append(vid)
                signal_rows.append(signal)
        if cython.compiled:
            code = _c_geo_score(row[3], row[2])
            score = None if code < 0 else str(code)
        else:
            score = geo_score(row[3], row[2])
        if score is not None:
            geo.append(score)
            geo.append(vid)
        updates.append({"id": vid, "t": row[1], "lat": _rounded(row[2], _DEG_SCALE),
                        "lon": _rounded(row[3], _DEG_SCALE), "spd": _rounded(row[4], _KMH_SCALE), "crs": row[5]})
    for vid, when in seen.items():
        if vid not in latest:
            seen_rows.extend((vid, repr(when)))
            signal = signals.get(vid)
            if signal:
                signal_rows.extend((vid, signal))
    blob: list[bytes] = []
    trk: list[Any] = []
    idx: list[Any] = []
    new_hours = []
    for track, records in tracks.items():
        vid, hour = track
        data = records[0] if len(records) == 1 else b"".join(records)
        key = f"trk:{vid}:{hour}"
        trk.append(key)
        trk.append(len(data))
        blob.append(data)
        if indexed is None or track not in indexed:
            idx.extend((key, vid, str(hour)))
            new_hours.append(track)
    cnt = [x for vid, deltas in counters.items() for name, delta in deltas.items() for x in (vid, name, delta)]
    ids = set(seen)
    ids.update(counters)
    if known is not None:
        ids.difference_update(known)
    if not (fix_rows or seen_rows or trk or cnt or ids):
        return updates, None, new_hours, ids
    doc = {"ttl": int(retention_s) + 3600, "ids": list(ids), "fix": fix_rows, "geo": geo, "seen": seen_rows,
           "sig": signal_rows, "trk": trk, "idx": idx, "cnt": cnt}
    return updates, [orjson.dumps(doc), b"".join(blob), orjson.dumps(updates) if updates else b""], new_hours, ids
