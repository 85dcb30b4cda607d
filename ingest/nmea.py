"""Sentence-level NMEA 0183 decoder: checksum, framing and the fields of GGA, RMC, GNS, GLL, VTG,
GSA and ZDA from any talker (GP, GN, GL, GA, BD, GB, ...).

Pure and allocation-light: it works on `bytes` (``float(b"12.5")`` and ``int(b"7")`` accept bytes)
and never builds a datetime. A sentence decodes into one `Sentence` whose unused fields stay None;
`ingest.fixes.NmeaStream` assembles sentences into epochs and fixes.

`decode_line(line)` returns ``(sentence, reason)``: ``sentence`` is None when the line is dropped
or ignored, and ``reason`` is the count key (see `REASONS`). It never raises.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import xor

import cython  # C types where Cython compiles this module (ingest/accel.py); a no-op module otherwise
from cython.cimports.libc.math import floor as _floor, fmod as _fmod

__all__ = [
    "REASONS",
    "Sentence",
    "checksum",
    "decode_line",
    "decode_pair",
    "format_sentence",
    "iter_lines",
]

# Count keys produced by this module (NmeaStream adds epoch-level ones, see ingest.fixes).
REASONS: dict[str, str] = {
    "sentences_ok": "checksum valid and a decoded sentence type parsed",
    "ignored_sentence": "checksum valid, a well-formed sentence of a type we do not decode (GSV, TXT, $P...)",
    "unknown_sentence": "checksum valid but the address field is not a talker+type or proprietary form",
    "bad_checksum": "the two hex digits after '*' differ from the XOR of the body (or are not hex)",
    "no_checksum": "a '$' line without '*HH'",
    "truncated": "a '*' with fewer than two characters after it, or a bare '$'",
    "not_ascii": "the sentence holds bytes outside 7-bit ASCII (garbage, invalid UTF-8)",
    "garbage": "a non-empty line without any '$' (binary noise, comments)",
    "empty": "a line of only blanks",
    "parse_error": "checksum valid but a field is malformed (bad number, hemisphere, time)",
    "bad_date": "an RMC/ZDA date field that is not a valid date (e.g. '2208-1'); the rest is kept",
}


def checksum(body: str) -> str:
    """Return the NMEA checksum of `body` (the text between '$' and '*'): two uppercase hex digits."""
    value = 0
    for char in body.encode("ascii", "replace"):
        value ^= char
    return f"{value:02X}"


def format_sentence(body: str) -> str:
    """Frame `body` as a sentence: ``$body*HH`` with its checksum."""
    return f"${body}*{checksum(body)}"


def _xor_bytes(data: bytes, _from_bytes=int.from_bytes) -> int:
    """XOR of every byte of `data`.

    Without a Python loop per byte: read the bytes as one integer and fold it onto itself
    (n ^= n >> k for k = 512 .. 8 bits); the low byte then holds the XOR of all bytes. Valid for up
    to 128 bytes (NMEA allows 82 characters); longer bodies take the plain loop.
    """
    if len(data) > 128:
        return reduce(xor, data, 0)
    n = _from_bytes(data, "little")
    n ^= n >> 512
    n ^= n >> 256
    n ^= n >> 128
    n ^= n >> 64
    n ^= n >> 32
    n ^= n >> 16
    n ^= n >> 8
    return n & 0xFF


@dataclass(slots=True)
class Sentence:
    """One decoded sentence; fields a sentence type does not carry stay None.

    `tod` is the UTC time of day in seconds (float); `date` is ``(year, month, day)``;
    `lat`/`lon` are signed decimal degrees and `digits` the decimals of the latitude minutes
    (precision, used to keep the most precise coordinates of an epoch); `valid` is the sentence's
    own status (GGA quality > 0, RMC/GLL 'A', GNS mode not all 'N'; None when it has no status).
    """

    kind: str
    talker: str
    tod: float | None = None
    date: tuple[int, int, int] | None = None
    lat: float | None = None
    lon: float | None = None
    digits: int = -1
    valid: bool | None = None
    quality: int | None = None
    mode: str | None = None
    sats: int | None = None
    hdop: float | None = None
    alt: float | None = None
    speed_kn: float | None = None
    course: float | None = None
    simulated: bool = False
    bad_date: bool = False


class _FieldError(ValueError):
    """A field of a checksummed sentence is malformed."""


# ---------------------------------------------------------------- field grammar helpers
def _tod(field: bytes) -> float | None:
    """hhmmss[.sss] -> seconds of the UTC day; empty -> None (one float conversion, then split)."""
    if not field:
        return None
    if len(field) < 6 or field[6:7] not in (b"", b".") or not field[:6].isdigit():
        raise _FieldError(f"time {field!r}")
    value = float(field)
    hours = value // 10000.0
    minutes = value // 100.0 - hours * 100.0
    seconds = value - hours * 10000.0 - minutes * 100.0
    if hours > 23.0 or minutes > 59.0 or seconds >= 61.0:
        raise _FieldError(f"time {field!r}")
    return hours * 3600.0 + minutes * 60.0 + seconds


def _coord(value: bytes, hemi: bytes, negative: bytes, positive: bytes, limit: float) -> tuple[float, int] | None:
    """(d)ddmm.mmmm + hemisphere -> (signed degrees, decimals of the minutes); both empty -> None.

    Read as one number: degrees = value // 100, minutes = the rest, as gpsd does (so a receiver
    that drops leading zeros still decodes). Minutes must be below 60, degrees within `limit`.
    """
    if not value:
        if hemi:
            raise _FieldError("hemisphere without coordinate")
        return None
    number = float(value)
    if not 0.0 <= number <= 18000.0 or value[:1] in (b"+", b" "):  # rejects NaN, inf, signs
        raise _FieldError(f"coordinate {value!r}")
    degrees = number // 100.0
    minutes = number - degrees * 100.0
    if minutes >= 60.0:
        raise _FieldError(f"minutes {value!r}")
    result = degrees + minutes / 60.0
    if result > limit:
        raise _FieldError(f"coordinate {value!r} beyond {limit}")
    if hemi == negative:
        result = -result
    elif hemi != positive:
        raise _FieldError(f"hemisphere {hemi!r}")
    dot = value.find(b".")
    return result, (len(value) - dot - 1 if dot >= 0 else 0)


def _float(field: bytes) -> float | None:
    """Decimal number or None when empty; NaN/inf are rejected."""
    if not field:
        return None
    value = float(field)
    if not -1e12 < value < 1e12:  # false for NaN and infinities
        raise _FieldError(f"number {field!r}")
    return value


def _int(field: bytes) -> int | None:
    """Integer or None when empty."""
    return int(field) if field else None


_DATES: dict[bytes, tuple[int, int, int] | None] = {}


def _date_ddmmyy(field: bytes) -> tuple[int, int, int] | None:
    """RMC date ddmmyy -> (year, month, day) through a small cache (a stream repeats its date)."""
    try:
        return _DATES[field]
    except KeyError:
        pass
    if len(_DATES) >= 1024:
        _DATES.clear()
    date = _DATES[field] = _parse_ddmmyy(field)
    return date


def _parse_ddmmyy(field: bytes) -> tuple[int, int, int] | None:
    """RMC date ddmmyy -> (year, month, day); 80..99 -> 19yy, else 20yy. Invalid -> None."""
    if len(field) != 6 or not field.isdigit():
        return None
    day, month, year = int(field[0:2]), int(field[2:4]), int(field[4:6])
    year += 1900 if year >= 80 else 2000
    return (year, month, day) if _valid_ymd(year, month, day) else None


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _valid_ymd(year: int, month: int, day: int) -> bool:
    """True when (year, month, day) is a calendar date (1980..2099)."""
    if not 1980 <= year <= 2099 or not 1 <= month <= 12 or not 1 <= day <= _MONTH_DAYS[month - 1]:
        return False
    return not (month == 2 and day == 29 and (year % 4 or (year % 100 == 0 and year % 400)))


def _field(fields: list[bytes], index: int) -> bytes:
    """fields[index] or b'' when the sentence is shorter (older NMEA versions omit trailing fields)."""
    return fields[index] if index < len(fields) else b""


# ---------------------------------------------------------------- sentence grammars
def _gga(talker: str, f: list[bytes]) -> Sentence:
    """GGA - fix data.

    1 time hhmmss.ss, 2 lat ddmm.mm, 3 N/S, 4 lon dddmm.mm, 5 E/W,
    6 quality (0 invalid, 1 GPS, 2 DGPS, 3 PPS, 4 RTK, 5 float RTK, 6 dead reckoning, 7 manual,
    8 simulator), 7 satellites used, 8 HDOP, 9 altitude MSL, 10 'M', 11 geoid separation, 12 'M',
    13 DGPS age, 14 DGPS station id.
    """
    if len(f) < 10:
        raise _FieldError("GGA too short")
    lat, lon, digits = _position(_coord(f[2], f[3], b"S", b"N", 90.0), _coord(f[4], f[5], b"W", b"E", 180.0))
    quality = int(f[6]) if f[6] else None
    sats = int(f[7]) if f[7] else None
    # A "fix" with zero satellites used is the receiver coasting on stale data (gpsd: no fix);
    # dead reckoning (6) legitimately has none, e.g. in a tunnel.
    valid = bool(quality) and (sats != 0 or quality == 6)
    return Sentence(
        "GGA", talker, _tod(f[1]), None, lat, lon, digits, valid, quality, None, sats,
        _float(f[8]), _float(f[9]), None, None, quality == 8,
    )


def _rmc(talker: str, f: list[bytes]) -> Sentence:
    """RMC - recommended minimum.

    1 time, 2 status A valid / V void, 3 lat, 4 N/S, 5 lon, 6 E/W, 7 speed over ground (knots),
    8 course over ground (degrees true), 9 date ddmmyy, 10 magnetic variation, 11 E/W,
    12 mode (NMEA 2.3+: A autonomous, D differential, E estimated, F float RTK, M manual,
    N not valid, P precise, R RTK, S simulator), 13 navigational status (NMEA 4.1).
    """
    if len(f) < 10:
        raise _FieldError("RMC too short")
    lat, lon, digits = _position(_coord(f[3], f[4], b"S", b"N", 90.0), _coord(f[5], f[6], b"W", b"E", 180.0))
    date = _date_ddmmyy(f[9]) if f[9] else None
    mode = f[12][:1].decode() or None if len(f) > 12 else None
    return Sentence(
        "RMC", talker, _tod(f[1]), date, lat, lon, digits, f[2] == b"A" and mode != "N", None, mode, None,
        None, None, _float(f[7]), _float(f[8]), mode == "S", date is None and f[9] != b"",
    )


def _gns(talker: str, f: list[bytes]) -> Sentence:
    """GNS - multi-constellation fix data.

    1 time, 2 lat, 3 N/S, 4 lon, 5 E/W, 6 mode, one character per constellation (GPS, GLONASS,
    Galileo, BeiDou, ...; N no fix, A autonomous, D differential, P precise, R RTK, F float RTK,
    E estimated, M manual, S simulator), 7 satellites used, 8 HDOP, 9 altitude MSL,
    10 geoid separation, 11 DGPS age, 12 DGPS station, 13 navigational status (NMEA 4.1, S = safe).
    """
    if len(f) < 10:
        raise _FieldError("GNS too short")
    s = Sentence("GNS", talker, _tod(f[1]))
    pos = _coord(f[2], f[3], b"S", b"N", 90.0), _coord(f[4], f[5], b"W", b"E", 180.0)
    modes = f[6].decode()
    best = modes.replace("N", "")[:1]
    s.mode = best or ("N" if modes else None)
    s.sats = _int(f[7])
    s.hdop = _float(f[8])
    s.alt = _float(f[9])
    s.valid = bool(best)
    s.simulated = "S" in modes
    _set_position(s, pos)
    return s


def _gll(talker: str, f: list[bytes]) -> Sentence:
    """GLL - geographic position.

    1 lat, 2 N/S, 3 lon, 4 E/W, 5 time, 6 status A/V, 7 mode (NMEA 2.3+, as RMC).
    """
    if len(f) < 7:
        raise _FieldError("GLL too short")
    s = Sentence("GLL", talker, _tod(f[5]))
    pos = _coord(f[1], f[2], b"S", b"N", 90.0), _coord(f[3], f[4], b"W", b"E", 180.0)
    mode = _field(f, 7)[:1].decode()
    s.mode = mode or None
    s.valid = f[6] == b"A" and mode != "N"
    s.simulated = mode == "S"
    _set_position(s, pos)
    return s


def _vtg(talker: str, f: list[bytes]) -> Sentence:
    """VTG - course and speed over ground (no time: belongs to the epoch it arrives in).

    NMEA 2.3+: 1 course true, 2 'T', 3 course magnetic, 4 'M', 5 speed knots, 6 'N',
    7 speed km/h, 8 'K', 9 mode (N = not valid).
    Old NMEA 1.5 form without unit letters: 1 course true, 2 course magnetic, 3 knots, 4 km/h.
    """
    s = Sentence("VTG", talker)
    if _field(f, 2) == b"T" or len(f) > 5:
        course, knots, kmh, mode = _field(f, 1), _field(f, 5), _field(f, 7), _field(f, 9)[:1]
    else:
        course, knots, kmh, mode = _field(f, 1), _field(f, 3), _field(f, 4), b""
    if mode == b"N":
        s.valid = False
        return s
    s.course = _float(course)
    speed = _float(knots)
    if speed is None:
        kmh_value = _float(kmh)
        speed = None if kmh_value is None else kmh_value / 1.852
    s.speed_kn = speed
    return s


def _gsa(talker: str, f: list[bytes]) -> Sentence:
    """GSA - DOP and active satellites (no time).

    1 selection A/M, 2 fix type (1 none, 2 2D, 3 3D), 3..14 PRNs used, 15 PDOP, 16 HDOP, 17 VDOP,
    18 system id (NMEA 4.1).
    """
    if len(f) < 3:
        raise _FieldError("GSA too short")
    s = Sentence("GSA", talker)
    fix_type = _int(f[2])
    if fix_type in (2, 3):
        s.mode = "2D" if fix_type == 2 else "3D"
    s.hdop = _float(_field(f, 16))
    s.sats = sum(1 for prn in f[3:15] if prn)
    return s


def _zda(talker: str, f: list[bytes]) -> Sentence:
    """ZDA - time and date: 1 time, 2 day, 3 month, 4 year (4 digits), 5 zone hours, 6 zone minutes."""
    if len(f) < 5:
        raise _FieldError("ZDA too short")
    s = Sentence("ZDA", talker, _tod(f[1]))
    if f[2] or f[3] or f[4]:
        try:
            ymd = (int(f[4]), int(f[3]), int(f[2]))
        except ValueError:
            ymd = (0, 0, 0)
        s.date = ymd if _valid_ymd(*ymd) else None
        s.bad_date = s.date is None
    return s


def _position(lat: tuple[float, int] | None, lon: tuple[float, int] | None) -> tuple:
    """(lat, lon, digits of the latitude) or (None, None, -1); one without the other is an error."""
    if lat is None or lon is None:
        if lat is None and lon is None:
            return None, None, -1
        raise _FieldError("latitude without longitude")
    return lat[0], lon[0], lat[1]


def _set_position(s: Sentence, pos: tuple) -> None:
    """Store lat/lon on a sentence built field by field."""
    s.lat, s.lon, s.digits = _position(*pos)


_DECODERS = {
    b"GGA": _gga,
    b"RMC": _rmc,
    b"GNS": _gns,
    b"GLL": _gll,
    b"VTG": _vtg,
    b"GSA": _gsa,
    b"ZDA": _zda,
    # Unicore high-precision variants ($GNGGAH ...) share the layout of the plain sentence.
    b"GGAH": _gga,
    b"RMCH": _rmc,
    b"GNSH": _gns,
    b"GLLH": _gll,
    b"VTGH": _vtg,
}


def iter_lines(payload: bytes) -> list[bytes]:
    """Split a payload into candidate sentence lines (CR LF, LF or CR separated; blanks removed)."""
    if b"\r" in payload:
        lines = payload.splitlines()
    else:
        lines = payload.split(b"\n")
    return [line for line in lines if line]


def decode_line(line: bytes) -> tuple[Sentence | None, str]:
    """Decode one line. Returns (sentence or None, count reason); never raises."""
    try:
        return _decode_line(line)
    except Exception:  # noqa: BLE001 - defensive: no payload may ever raise out of the decoder
        return None, "parse_error"


# Two hex digits -> value, upper or lower case (int(x, 16) would also accept " 1", "+1", "0x").
_HEX = {f"{a}{b}".encode(): int(f"{a}{b}", 16) for a in "0123456789ABCDEFabcdef" for b in "0123456789ABCDEFabcdef"}

# Address field -> (talker, decoder) or a count reason; filled on first sight, bounded.
_ADDRESSES: dict[bytes, tuple[str, object] | str] = {}
_ADDRESSES_MAX = 4096


def _classify(address: bytes) -> tuple[str, object] | str:
    """Talker and decoder of an address field ('GPGGA' -> ('GP', _gga)), or the count reason."""
    if address[:1] == b"P":
        return "ignored_sentence"  # proprietary: $P + maker + type
    if not (5 <= len(address) <= 6 and address.isalnum() and address.isupper()):
        return "unknown_sentence"
    decoder = _DECODERS.get(address[2:])
    if decoder is None:
        return "ignored_sentence"
    return address[:2].decode(), decoder


def _decode_line(line: bytes) -> tuple[Sentence | None, str]:
    """Framing: '$' address ',' fields '*' HH; then dispatch on the sentence type."""
    if line[:1] != b"$":
        start = line.find(b"$")
        if start < 0:
            return None, ("garbage" if line.strip() else "empty")
        line = line[start:]
    if line[-1:] in b" \t\r\n":
        line = line.rstrip()
    if len(line) > 4 and line[-3] == 42:  # '*' in the common position: $...*HH
        body = line[1:-3]
        digits = line[-2:]
    else:
        star = line.find(b"*")
        if star < 0:
            return None, ("truncated" if len(line) < 2 else "no_checksum")
        body = line[1:star]
        digits = line[star + 1 : star + 3]
        if len(digits) < 2:
            return None, "truncated"
    if not line.isascii():
        return None, "not_ascii"
    if _xor_bytes(body) != _HEX.get(digits) or b"$" in body:
        return None, "bad_checksum"
    fields = body.split(b",")
    address = fields[0]
    kind = _ADDRESSES.get(address)
    if kind is None:
        kind = _classify(address)
        if len(_ADDRESSES) >= _ADDRESSES_MAX:
            _ADDRESSES.clear()
        _ADDRESSES[address] = kind
    if kind.__class__ is str:
        return None, kind
    talker, decoder = kind
    try:
        sentence = decoder(talker, fields)
    except (ValueError, IndexError, TypeError, UnicodeDecodeError):
        return None, "parse_error"
    if sentence.bad_date:
        return sentence, "bad_date"
    return sentence, "sentences_ok"


def _fast_coord(value: bytes, hemi: bytes, negative: bytes, positive: bytes, limit: float) -> tuple | None:
    """`_coord` for the fast path: the same value, or None wherever `_coord` would raise or
    return None (the general path then reports it)."""
    if not value or value[:1] in (b"+", b" "):
        return None
    number = float(value)
    if not 0.0 <= number <= 18000.0:
        return None
    degrees = number // 100.0
    minutes = number - degrees * 100.0
    if minutes >= 60.0:
        return None
    result = degrees + minutes / 60.0
    if result > limit:
        return None
    if hemi == negative:
        result = -result
    elif hemi != positive:
        return None
    dot = value.find(b".")
    return result, (len(value) - dot - 1 if dot >= 0 else 0)


def _fast_tod(field: bytes) -> float | None:
    """`_tod` for the fast path: None wherever `_tod` would raise or return None."""
    if len(field) < 6 or field[6:7] not in (b"", b".") or not field[:6].isdigit():
        return None
    value = float(field)
    hours = value // 10000.0
    minutes = value // 100.0 - hours * 100.0
    seconds = value - hours * 10000.0 - minutes * 100.0
    if hours > 23.0 or minutes > 59.0 or seconds >= 61.0:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds


def decode_pair(gga_line: bytes, rmc_line: bytes) -> tuple | None:
    """Fast path for the most common payload, a GGA line then an RMC line of the same time,
    both clean (checksums valid, fields well-formed), both valid fixes (GGA quality 1..7 with
    satellites, RMC 'A' not mode N/S) with a valid RMC date.

    Returns ``(tod, (y, m, d), lat, lon, speed_kn, course, alt, quality, mode, sats, hdop, talker)``
    merged as `ingest.fixes` merges the two sentences (most decimals win, RMC on a tie), or None
    for anything else (the general `decode_line` path then handles the lines). Compiled, the
    plain shapes are read in C (`_pair_c`); the result is the same.
    """
    if cython.compiled and type(gga_line) is bytes and type(rmc_line) is bytes:
        found = _pair_c(gga_line, rmc_line)
        if found is not None:
            return found
    return _decode_pair(gga_line, rmc_line)


def _decode_pair(gga_line: bytes, rmc_line: bytes) -> tuple | None:
    """`decode_pair` in Python."""
    try:
        if (gga_line[:1] != b"$" or rmc_line[:1] != b"$" or len(gga_line) < 5 or len(rmc_line) < 5
                or gga_line[-3] != 42 or rmc_line[-3] != 42 or not gga_line.isascii() or not rmc_line.isascii()):
            return None
        body = gga_line[1:-3]
        if _xor_bytes(body) != _HEX.get(gga_line[-2:]) or b"$" in body:
            return None
        g = body.split(b",")
        body = rmc_line[1:-3]
        if _xor_bytes(body) != _HEX.get(rmc_line[-2:]) or b"$" in body:
            return None
        r = body.split(b",")
        first = _ADDRESSES.get(g[0])
        second = _ADDRESSES.get(r[0])
        if first is None or second is None or first.__class__ is str or second.__class__ is str:
            return None
        if first[1] is not _gga or second[1] is not _rmc or len(g) < 10 or len(r) < 10 or r[2] != b"A":
            return None
        tod = _fast_tod(g[1])
        if tod is None or g[1] != r[1] and _fast_tod(r[1]) != tod:
            return None
        quality = int(g[6]) if g[6] else None
        sats = int(g[7]) if g[7] else None
        if not quality or quality == 8 or (sats == 0 and quality != 6):
            return None
        mode = r[12][:1].decode() or None if len(r) > 12 else None
        if mode == "N" or mode == "S":
            return None
        date = _date_ddmmyy(r[9]) if r[9] else None
        if date is None:
            return None
        glat = _fast_coord(g[2], g[3], b"S", b"N", 90.0)
        glon = _fast_coord(g[4], g[5], b"W", b"E", 180.0)
        if g[2] == r[3] and g[3] == r[4] and g[4] == r[5] and g[5] == r[6]:
            rlat, rlon = glat, glon  # the usual case: both sentences carry the same text
        else:
            rlat = _fast_coord(r[3], r[4], b"S", b"N", 90.0)
            rlon = _fast_coord(r[5], r[6], b"W", b"E", 180.0)
        if glat is None or glon is None or rlat is None or rlon is None:
            return None
        hdop = _float(g[8])
        alt = _float(g[9])
        speed = _float(r[7])
        course = _float(r[8])
    except Exception:  # noqa: BLE001 - anything unusual goes the general way
        return None
    if rlat[1] >= glat[1]:
        return tod, date, rlat[0], rlon[0], speed, course, alt, quality, mode, sats, hdop, second[0]
    return tod, date, glat[0], glon[0], speed, course, alt, quality, mode, sats, hdop, first[0]


# ---------------------------------------------------------------------- the compiled pair scanner
# Where Cython compiled this module (``cython.compiled``), `decode_pair` first tries `_pair_c`: the
# same fast path read straight from the two lines' bytes, in C (no split, no field objects),
# giving up (None) on anything but the plain shapes of a clean pair; `_decode_pair` then decides,
# so the result is always the Python path's. Numbers are parsed exactly as ``float()`` does: a
# decimal of at most 15 digits is an exact double divided by an exact power of ten, one correctly
# rounded IEEE operation, hence the same double. Floor divisions follow CPython's algorithm.

@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _c_floordiv(a: cython.double, b: cython.double) -> cython.double:
    """``a // b`` for a >= 0 and b > 0, as CPython's float floor division computes it."""
    mod: cython.double = _fmod(a, b)
    div: cython.double = (a - mod) / b
    if div == 0.0:
        return 0.0
    floordiv: cython.double = _floor(div)
    if div - floordiv > 0.5:
        floordiv += 1.0
    return floordiv


@cython.cfunc
@cython.exceptval(check=False)
def _c_decimal(p: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t,
               out: cython.p_double) -> cython.int:
    """Parse ``[-]digits[.digits]`` in p[start:end] into out[0]: the number of decimals, or -1
    for anything else (empty, other characters, more than 15 digits)."""
    i: cython.Py_ssize_t = start
    negative: cython.bint = False
    if i < end and p[i] == 45:  # '-'
        negative = True
        i += 1
    mantissa: cython.longlong = 0
    digits: cython.int = 0
    decimals: cython.int = -1
    c: cython.uchar
    if i >= end or p[i] < 48 or p[i] > 57:
        return -1
    while i < end:
        c = p[i]
        if 48 <= c <= 57:
            mantissa = mantissa * 10 + (c - 48)
            digits += 1
            if decimals >= 0:
                decimals += 1
        elif c == 46 and decimals < 0:  # '.'
            decimals = 0
        else:
            return -1
        i += 1
    if digits > 15:
        return -1
    if decimals < 0:
        decimals = 0
    scale: cython.double = 1.0
    k: cython.int
    for k in range(decimals):  # 10**decimals, exact (below 2**53)
        scale *= 10.0
    value: cython.double = cython.cast(cython.double, mantissa) / scale
    out[0] = -value if negative else value
    return decimals


@cython.cfunc
@cython.exceptval(check=False)
def _c_scan(p: cython.p_uchar, n: cython.Py_ssize_t, starts: cython.p_Py_ssize_t) -> cython.int:
    """Check one line (``$`` body ``*HH``, ASCII, no ``$`` inside, checksum right) and record where
    each field of the body starts (starts[k]; starts[count] is one past the body's end + 1): the
    field count, or -1."""
    if n < 5 or p[0] != 36 or p[n - 3] != 42:
        return -1
    x: cython.int = 0
    count: cython.int = 1
    starts[0] = 1
    i: cython.Py_ssize_t
    c: cython.uchar
    for i in range(1, n - 3):
        c = p[i]
        if c >= 128 or c == 36:
            return -1
        x ^= c
        if c == 44:  # ','
            if count >= 30:
                return -1
            starts[count] = i + 1
            count += 1
    starts[count] = n - 2  # the field k ends at starts[k + 1] - 1
    hi: cython.int = _c_hex(p[n - 2])
    lo: cython.int = _c_hex(p[n - 1])
    if hi < 0 or lo < 0 or hi * 16 + lo != x:
        return -1
    return count


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _c_hex(c: cython.uchar) -> cython.int:
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


@cython.cfunc
@cython.exceptval(check=False)
def _c_same(p: cython.p_uchar, a: cython.Py_ssize_t, a_end: cython.Py_ssize_t,
            q: cython.p_uchar, b: cython.Py_ssize_t, b_end: cython.Py_ssize_t) -> cython.bint:
    if a_end - a != b_end - b:
        return False
    while a < a_end:
        if p[a] != q[b]:
            return False
        a += 1
        b += 1
    return True


@cython.cfunc
@cython.exceptval(check=False)
def _c_tod(p: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t,
           out: cython.p_double) -> cython.bint:
    """`_fast_tod` for ``hhmmss[.s...]``: False for any other shape or a time out of range."""
    value: cython.double
    if end - start < 6 or (end - start > 6 and p[start + 6] != 46):
        return False
    if _c_decimal(p, start, end, cython.address(value)) < 0 or p[start] == 45:
        return False
    hours: cython.double = _c_floordiv(value, 10000.0)
    minutes: cython.double = _c_floordiv(value, 100.0) - hours * 100.0
    seconds: cython.double = value - hours * 10000.0 - minutes * 100.0
    if hours > 23.0 or minutes > 59.0 or seconds >= 61.0:
        return False
    out[0] = hours * 3600.0 + minutes * 60.0 + seconds
    return True


@cython.cfunc
@cython.exceptval(check=False)
def _c_coord(p: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t, hemi: cython.Py_ssize_t,
             hemi_end: cython.Py_ssize_t, negative: cython.uchar, positive: cython.uchar, limit: cython.double,
             out: cython.p_double) -> cython.int:
    """`_fast_coord` for ``dddmm.mmm`` and a one-letter hemisphere: the decimals, or -1."""
    number: cython.double
    if start < end and p[start] == 45:
        return -1
    decimals: cython.int = _c_decimal(p, start, end, cython.address(number))
    if decimals < 0 or number > 18000.0 or hemi_end - hemi != 1:
        return -1
    degrees: cython.double = _c_floordiv(number, 100.0)
    minutes: cython.double = number - degrees * 100.0
    if minutes >= 60.0:
        return -1
    result: cython.double = degrees + minutes / 60.0
    if result > limit:
        return -1
    if p[hemi] == negative:
        result = -result
    elif p[hemi] != positive:
        return -1
    out[0] = result
    return decimals


@cython.cfunc
@cython.exceptval(check=False)
def _c_small_int(p: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t) -> cython.int:
    """A field of 1..4 digits as a number, -2 when empty, -1 for anything else."""
    if start == end:
        return -2
    if end - start > 4:
        return -1
    value: cython.int = 0
    while start < end:
        if p[start] < 48 or p[start] > 57:
            return -1
        value = value * 10 + (p[start] - 48)
        start += 1
    return value


@cython.cfunc
def _c_float(p: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t, ok: cython.p_bint) -> object:
    """`_float` of a plain decimal field: None when empty; ok[0] = False for any other shape."""
    value: cython.double
    if start == end:
        return None
    if _c_decimal(p, start, end, cython.address(value)) < 0 or not -1e12 < value < 1e12:
        ok[0] = False
        return None
    return value


@cython.ccall
def _pair_c(gga_line: bytes, rmc_line: bytes) -> object:
    """`_decode_pair` of a plain clean pair, from the bytes; None where it does not know (the
    Python path then decides). Compiled only (tests call it to see that the C path is taken)."""
    gs = cython.declare(cython.Py_ssize_t[32])
    rs = cython.declare(cython.Py_ssize_t[32])
    g: cython.p_uchar = cython.cast(cython.p_uchar, cython.cast(cython.p_char, gga_line))
    r: cython.p_uchar = cython.cast(cython.p_uchar, cython.cast(cython.p_char, rmc_line))
    ng: cython.int = _c_scan(g, len(gga_line), gs)
    nr: cython.int = _c_scan(r, len(rmc_line), rs)
    if ng < 10 or nr < 10:
        return None
    first = _ADDRESSES.get(gga_line[gs[0]:gs[1] - 1])
    second = _ADDRESSES.get(rmc_line[rs[0]:rs[1] - 1])
    if first is None or second is None or type(first) is str or type(second) is str:
        return None
    if first[1] is not _gga or second[1] is not _rmc:
        return None
    if rs[3] - rs[2] != 2 or r[rs[2]] != 65:  # RMC status 'A'
        return None
    tod: cython.double
    other: cython.double
    if not _c_tod(g, gs[1], gs[2] - 1, cython.address(tod)):
        return None
    if not _c_same(g, gs[1], gs[2] - 1, r, rs[1], rs[2] - 1):
        if not _c_tod(r, rs[1], rs[2] - 1, cython.address(other)) or other != tod:
            return None
    quality: cython.int = _c_small_int(g, gs[6], gs[7] - 1)
    sats: cython.int = _c_small_int(g, gs[7], gs[8] - 1)
    if quality < 1 or quality == 8 or sats == -1 or (sats == 0 and quality != 6):
        return None
    mode = None
    if nr > 12 and rs[13] - 1 > rs[12]:
        mode = chr(r[rs[12]])
        if mode == "N" or mode == "S":
            return None
    if rs[10] - 1 == rs[9]:
        return None
    date = _date_ddmmyy(rmc_line[rs[9]:rs[10] - 1])
    if date is None:
        return None
    glat: cython.double
    glon: cython.double
    rlat: cython.double
    rlon: cython.double
    g_dec: cython.int = _c_coord(g, gs[2], gs[3] - 1, gs[3], gs[4] - 1, 83, 78, 90.0, cython.address(glat))
    g_dec_lon: cython.int = _c_coord(g, gs[4], gs[5] - 1, gs[5], gs[6] - 1, 87, 69, 180.0, cython.address(glon))
    if g_dec < 0 or g_dec_lon < 0:
        return None
    r_dec: cython.int
    if (_c_same(g, gs[2], gs[3] - 1, r, rs[3], rs[4] - 1) and _c_same(g, gs[3], gs[4] - 1, r, rs[4], rs[5] - 1)
            and _c_same(g, gs[4], gs[5] - 1, r, rs[5], rs[6] - 1) and _c_same(g, gs[5], gs[6] - 1, r, rs[6], rs[7] - 1)):
        rlat, rlon, r_dec = glat, glon, g_dec
    else:
        r_dec = _c_coord(r, rs[3], rs[4] - 1, rs[4], rs[5] - 1, 83, 78, 90.0, cython.address(rlat))
        if r_dec < 0 or _c_coord(r, rs[5], rs[6] - 1, rs[6], rs[7] - 1, 87, 69, 180.0, cython.address(rlon)) < 0:
            return None
    ok: cython.bint = True
    hdop = _c_float(g, gs[8], gs[9] - 1, cython.address(ok))
    alt = _c_float(g, gs[9], gs[10] - 1, cython.address(ok))
    speed = _c_float(r, rs[7], rs[8] - 1, cython.address(ok))
    course = _c_float(r, rs[8], rs[9] - 1, cython.address(ok))
    if not ok:
        return None
    q = quality
    s = None if sats == -2 else sats
    if r_dec >= g_dec:
        return tod, date, rlat, rlon, speed, course, alt, q, mode, s, hdop, second[0]
    return tod, date, glat, glon, speed, course, alt, q, mode, s, hdop, first[0]
