"""Sentence-level NMEA 0183 decoder: GGA, RMC, GNS, GLL, VTG, GSA and ZDA from any talker (GP, GN,
GL, GA, BD, GB, ...), parsed by pynmea2.

pynmea2 does the sentence grammar: the framing, the checksum (``check=True``), the sentence type
and the split into its named fields. This module adds what pynmea2 does not do: a count reason for
every line it drops (pynmea2 raises one ParseError for most defects), the Unicore high-precision
variants (``$GNGGAH``, which pynmea2 does not know), and the check of each value we use (pynmea2
gives a field it cannot convert back as text, and checks no range): times, coordinates with their
hemispheres, numbers and dates. A sentence decodes into one `Sentence` whose unused fields stay
None; `ingest.fixes.NmeaStream` assembles sentences into epochs and fixes.

`decode_line(line)` returns ``(sentence, reason)``: ``sentence`` is None when the line is dropped
or ignored, and ``reason`` is the count key (see `REASONS`). It never raises.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

import pynmea2

__all__ = ["REASONS", "Sentence", "checksum", "decode_line", "format_sentence"]

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

_HEX = "0123456789ABCDEFabcdef"
_HEX_PAIRS = frozenset(a + b for a in _HEX for b in _HEX)  # the two checksum digits, either case


def checksum(body: str) -> str:
    """Return the NMEA checksum of `body` (the text between '$' and '*'): two uppercase hex digits."""
    return f"{pynmea2.NMEASentence.checksum(body):02X}"


def format_sentence(body: str) -> str:
    """Frame `body` as a sentence: ``$body*HH`` with its checksum."""
    return f"${body}*{checksum(body)}"


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


# ---------------------------------------------------------------- value checks
@lru_cache(maxsize=4096)  # a fleet's receivers send the same GPS second, in each of their sentences
def _tod(field: str) -> float | None:
    """hhmmss[.sss] -> seconds of the UTC day; empty -> None."""
    if not field:
        return None
    if len(field) < 6 or field[6:7] not in ("", ".") or not field[:6].isdigit():
        raise _FieldError(f"time {field!r}")
    value = float(field)  # one conversion, then split: hhmmss.sss
    hours = value // 10000.0
    minutes = value // 100.0 - hours * 100.0
    seconds = value - hours * 10000.0 - minutes * 100.0
    if hours > 23.0 or minutes > 59.0 or seconds >= 61.0:
        raise _FieldError(f"time {field!r}")
    return hours * 3600.0 + minutes * 60.0 + seconds


@lru_cache(maxsize=256)  # a payload's GGA and RMC carry the same position: the second is a hit
def _coord(value: str, hemi: str, negative: str, positive: str, limit: float) -> tuple[float, int] | None:
    """(d)ddmm.mmmm + hemisphere -> (signed degrees, decimals of the minutes); both empty -> None.

    Read as one number: degrees = value // 100, minutes = the rest, as gpsd does (so a receiver
    that drops leading zeros still decodes). Minutes must be below 60, degrees within `limit`.
    """
    if not value:
        if hemi:
            raise _FieldError("hemisphere without coordinate")
        return None
    number = float(value)
    if not 0.0 <= number <= 18000.0 or value[:1] in ("+", " "):  # rejects NaN, inf, signs
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
    dot = value.find(".")
    return result, (len(value) - dot - 1 if dot >= 0 else 0)


def _position(lat: str, ns: str, lon: str, ew: str) -> tuple[float, int, float] | None:
    """(latitude, decimals of its minutes, longitude) of a sentence's four position fields, None
    when all are empty; one without the other is an error."""
    la = _coord(lat, ns, "S", "N", 90.0)
    lo = _coord(lon, ew, "W", "E", 180.0)
    if la is None or lo is None:
        if la is not None or lo is not None:
            raise _FieldError("latitude without longitude")
        return None
    return la[0], la[1], lo[0]


_NO_POSITION = (None, -1, None)  # a sentence's lat, digits and lon without a position


def _float(field: str) -> float | None:
    """Decimal number or None when empty; NaN/inf are rejected."""
    if not field:
        return None
    value = float(field)
    if not -1e12 < value < 1e12:  # false for NaN and infinities
        raise _FieldError(f"number {field!r}")
    return value


def _int(field: str) -> int | None:
    """Integer or None when empty."""
    return int(field) if field else None


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _valid_ymd(year: int, month: int, day: int) -> bool:
    """True when (year, month, day) is a calendar date (1980..2099)."""
    if not 1980 <= year <= 2099 or not 1 <= month <= 12 or not 1 <= day <= _MONTH_DAYS[month - 1]:
        return False
    return not (month == 2 and day == 29 and (year % 4 or (year % 100 == 0 and year % 400)))


@lru_cache(maxsize=1024)  # a fleet sends one date a day
def _ddmmyy(field: str) -> tuple[int, int, int] | None:
    """RMC date ddmmyy -> (year, month, day); 80..99 -> 19yy, else 20yy. Invalid -> None."""
    if len(field) != 6 or not field.isdigit():
        return None
    day, month, year = int(field[0:2]), int(field[2:4]), int(field[4:6])
    year += 1900 if year >= 80 else 2000
    return (year, month, day) if _valid_ymd(year, month, day) else None


# ---------------------------------------------------------------- sentence types
def _fields(kind: str, *names: str) -> itemgetter:
    """Reads these named fields of a pynmea2 sentence of type `kind` from its (padded) data, in
    the order named: the positions come from pynmea2's own field table."""
    index = pynmea2.TalkerSentence.sentence_types[kind].name_to_idx
    return itemgetter(*(index[name] for name in names))


_GGA = _fields("GGA", "timestamp", "lat", "lat_dir", "lon", "lon_dir", "gps_qual", "num_sats", "horizontal_dil",
               "altitude")
_RMC = _fields("RMC", "timestamp", "status", "lat", "lat_dir", "lon", "lon_dir", "spd_over_grnd", "true_course",
               "datestamp", "mode_indicator")
_GNS = _fields("GNS", "timestamp", "lat", "lat_dir", "lon", "lon_dir", "mode_indicator", "num_sats", "hdop",
               "altitude")
_GLL = _fields("GLL", "lat", "lat_dir", "lon", "lon_dir", "timestamp", "status", "faa_mode")
_VTG = _fields("VTG", "true_track", "true_track_sym", "mag_track", "mag_track_sym", "spd_over_grnd_kts",
               "spd_over_grnd_kts_sym", "spd_over_grnd_kmph", "faa_mode")
_GSA = _fields("GSA", "mode_fix_type", "hdop", *(f"sv_id{k:02d}" for k in range(1, 13)))
_ZDA = _fields("ZDA", "timestamp", "day", "month", "year")


def _gga(s: Sentence, data: list[str]) -> None:
    """GGA - fix data: quality 0 invalid, 1 GPS, 2 DGPS, 3 PPS, 4 RTK, 5 float RTK, 6 dead
    reckoning, 7 manual, 8 simulator."""
    time, lat, ns, lon, ew, quality, sats, hdop, alt = _GGA(data)
    s.lat, s.digits, s.lon = _position(lat, ns, lon, ew) or _NO_POSITION
    s.tod = _tod(time)
    s.quality, s.sats = _int(quality), _int(sats)
    # A "fix" with zero satellites used is the receiver coasting on stale data (gpsd: no fix);
    # dead reckoning (6) legitimately has none, e.g. in a tunnel.
    s.valid = bool(s.quality) and (s.sats != 0 or s.quality == 6)
    s.hdop, s.alt = _float(hdop), _float(alt)
    s.simulated = s.quality == 8


def _rmc(s: Sentence, data: list[str]) -> None:
    """RMC - recommended minimum: status A valid / V void; mode (NMEA 2.3+) A autonomous,
    D differential, E estimated, F float RTK, M manual, N not valid, P precise, R RTK, S simulator."""
    time, status, lat, ns, lon, ew, speed, course, date, mode = _RMC(data)
    s.lat, s.digits, s.lon = _position(lat, ns, lon, ew) or _NO_POSITION
    s.tod = _tod(time)
    s.date = _ddmmyy(date) if date else None
    s.bad_date = s.date is None and date != ""
    s.mode = mode[:1] or None
    s.valid = status == "A" and s.mode != "N"
    s.speed_kn, s.course = _float(speed), _float(course)
    s.simulated = s.mode == "S"


def _gns(s: Sentence, data: list[str]) -> None:
    """GNS - multi-constellation fix data: one mode character per constellation (N no fix, else
    as RMC); the best one is the sentence's mode."""
    time, lat, ns, lon, ew, modes, sats, hdop, alt = _GNS(data)
    s.lat, s.digits, s.lon = _position(lat, ns, lon, ew) or _NO_POSITION
    s.tod = _tod(time)
    best = modes.replace("N", "")[:1]
    s.mode = best or ("N" if modes else None)
    s.valid = bool(best)
    s.simulated = "S" in modes
    s.sats, s.hdop, s.alt = _int(sats), _float(hdop), _float(alt)


def _gll(s: Sentence, data: list[str]) -> None:
    """GLL - geographic position: status A/V, mode (NMEA 2.3+) as RMC."""
    lat, ns, lon, ew, time, status, mode = _GLL(data)
    s.lat, s.digits, s.lon = _position(lat, ns, lon, ew) or _NO_POSITION
    s.tod = _tod(time)
    s.mode = mode[:1] or None
    s.valid = status == "A" and s.mode != "N"
    s.simulated = s.mode == "S"


def _vtg(s: Sentence, data: list[str]) -> None:
    """VTG - course and speed over ground (no time: belongs to the epoch it arrives in). The old
    NMEA 1.5 form has no unit letters: course true, course magnetic, knots, km/h."""
    course, course_sym, magnetic, magnetic_sym, knots, knots_sym, kmh, mode = _VTG(data)
    if course_sym != "T" and not knots_sym:
        knots, kmh, mode = magnetic, magnetic_sym, ""
    if mode[:1] == "N":
        s.valid = False
        return
    s.course = _float(course)
    s.speed_kn = _float(knots)
    if s.speed_kn is None and kmh:
        s.speed_kn = _float(kmh) / 1.852


def _gsa(s: Sentence, data: list[str]) -> None:
    """GSA - DOP and active satellites (no time): fix type 1 none, 2 2D, 3 3D."""
    fix_type, hdop, *satellites = _GSA(data)
    fix_type = _int(fix_type)
    if fix_type in (2, 3):
        s.mode = "2D" if fix_type == 2 else "3D"
    s.hdop = _float(hdop)
    s.sats = sum(1 for prn in satellites if prn)


def _zda(s: Sentence, data: list[str]) -> None:
    """ZDA - time and date (day, month, 4-digit year)."""
    time, day, month, year = _ZDA(data)
    s.tod = _tod(time)
    if day or month or year:
        try:
            ymd = (int(year), int(month), int(day))
        except ValueError:
            ymd = (0, 0, 0)
        s.date = ymd if _valid_ymd(*ymd) else None
        s.bad_date = s.date is None


# sentence type -> (its reader, the least number of fields it needs)
_TYPES = {"GGA": (_gga, 9), "RMC": (_rmc, 9), "GNS": (_gns, 9), "GLL": (_gll, 6), "VTG": (_vtg, 0),
          "GSA": (_gsa, 2), "ZDA": (_zda, 4)}


def _framed(line: bytes) -> tuple[str | None, str]:
    """The sentence text from '$' to its checksum digits, or None and the count reason."""
    start = line.find(b"$")
    if start < 0:
        return None, ("garbage" if line.strip() else "empty")
    line = (line[start:] if start else line).rstrip()
    star = line.find(b"*")
    if star < 0:
        return None, ("truncated" if len(line) < 2 else "no_checksum")
    if len(line) < star + 3:
        return None, "truncated"
    if not line.isascii():
        return None, "not_ascii"
    text = line[:star + 3].decode()
    if text[-2:] not in _HEX_PAIRS or text.find("$", 1) >= 0 or len(line) > star + 3:
        return None, "bad_checksum"
    return text, ""


@lru_cache(maxsize=4096)  # a fleet sends few address fields: each is classified once
def _classify(address: str) -> tuple[str, str, bool] | str:
    """What an address field names: ('GGA', 'GP', False) for 'GPGGA', or the count reason of a
    line that is not ours to decode."""
    if address[:1] == "P":
        return "ignored_sentence"  # proprietary: $P + maker + type
    if not 5 <= len(address) <= 6 or not address.isalnum() or not address.isupper():
        return "unknown_sentence"
    if address[2:5] not in _TYPES or address[5:] not in ("", "H"):
        return "ignored_sentence"
    return address[2:5], address[:2], len(address) == 6


def decode_line(line: bytes) -> tuple[Sentence | None, str]:
    """Decode one line. Returns (sentence or None, count reason); never raises."""
    try:
        return _decode(line)
    except Exception:  # noqa: BLE001 - defensive: no payload may ever raise out of the decoder
        return None, "parse_error"


def _decode(line: bytes) -> tuple[Sentence | None, str]:
    """`decode_line` without its last guard."""
    text, reason = _framed(line)
    if text is None:
        return None, reason
    comma = text.find(",")
    address = text[1:comma] if comma > 0 else text[1:-3]
    found = _classify(address)
    if found.__class__ is str:  # not ours: only its checksum is checked
        return None, (found if checksum(text[1:-3]) == text[-2:].upper() else "bad_checksum")
    kind, talker, variant = found
    if variant:  # Unicore's high-precision variant: the plain sentence's layout, one letter more
        text = f"${address[:5]}{text[7:-3]}*{int(text[-2:], 16) ^ ord('H'):02X}"
    try:
        message = pynmea2.parse(text, check=True)
    except pynmea2.ChecksumError:
        return None, "bad_checksum"
    except pynmea2.ParseError:
        return None, "parse_error"
    reader, least = _TYPES[kind]
    data = message.data
    if len(data) < least:
        return None, "parse_error"
    missing = len(message.fields) - len(data)
    if missing > 0:  # older NMEA versions omit trailing fields
        data = data + [""] * missing
    sentence = Sentence(kind, talker)
    try:
        reader(sentence, data)
    except (ValueError, IndexError, TypeError):
        return None, "parse_error"
    return sentence, ("bad_date" if sentence.bad_date else "sentences_ok")
