"""The JT/T 808 location report (0x0200 body, also each item of a 0x0704 batch): its alarm and
status bits as named flags, its fixed fields, and the common additional items. Pure, no I/O;
`ingest.jt808` frames the messages and calls `decode_location` for their bodies.

Body of 0x0200 (JT/T 808-2013 8.18 / -2019 8.20), big-endian:
  DWORD alarm flags, DWORD status, DWORD latitude 1e-6 deg, DWORD longitude 1e-6 deg (the status
  bits 2 and 3 carry the south and west signs), WORD altitude m, WORD speed 1/10 km/h, WORD
  direction 0-359, BCD[6] time YYMMDDhhmmss in GMT+8, then additional items: BYTE id, BYTE
  length, the value.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

__all__ = ["ALARM_BITS", "BodyError", "FixFields", "IO_BITS", "Location", "SIGNAL_BITS", "STATUS_BITS",
           "as_fix", "bcd_time", "decode_location", "flag_names"]

# Alarm flag bits (2013 table 24, 2019 table 25). Bits 15-17 are reserved in 2013 and named as in
# 2019; bits 29 and 30 are the 2013 names.
ALARM_BITS = (
    "emergency", "overspeed", "fatigue_driving", "danger_warning", "gnss_fault", "gnss_antenna_cut",
    "gnss_antenna_short", "power_undervoltage", "power_off", "display_fault", "tts_fault", "camera_fault",
    "ic_card_fault", "overspeed_warning", "fatigue_warning", "illegal_driving", "tyre_pressure_warning",
    "right_turn_blind_spot", "driving_time_exceeded", "overtime_parking", "area_in_out", "route_in_out",
    "route_time_abnormal", "route_deviation", "vss_fault", "fuel_abnormal", "stolen", "illegal_ignition",
    "illegal_displacement", "collision_warning", "rollover_warning", "illegal_door_open",
)
# Status bits (2013 table 25, 2019 table 24); None: reserved, or part of a multi-bit field (bits
# 8-9 are the load, see `Location.load`). Bit 22 (driving) is new in 2019.
STATUS_BITS = (
    "acc_on", "positioned", "south", "west", "out_of_service", "coordinates_encrypted", None, None,
    None, None, "fuel_cut", "power_cut", "doors_locked", "door1_open", "door2_open", "door3_open",
    "door4_open", "door5_open", "gps", "beidou", "glonass", "galileo", "driving",
)
# Additional item 0x25, extended vehicle signals (2013 table 28 / 2019 table 31).
SIGNAL_BITS = (
    "low_beam", "high_beam", "right_turn_signal", "left_turn_signal", "brake", "reverse", "fog_lamp",
    "clearance_lamps", "horn", "air_conditioning", "neutral", "retarder", "abs", "heater", "clutch",
)
# Additional item 0x2A, IO status (2013 table 29 / 2019 table 32).
IO_BITS = ("deep_sleep", "sleep")
_LOADS = ("empty", "half", None, "full")  # status bits 8-9; 0b10 is reserved

_BEIJING = timedelta(hours=8)
_UTC = timezone.utc


class BodyError(ValueError):
    """A message body that does not decode; `reason` is the count key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@lru_cache(maxsize=1024)  # a fleet's terminals send few distinct alarm and status words
def flag_names(value: int, names: tuple[str | None, ...]) -> frozenset[str]:
    """The names of the set bits of `value` (bit 0 is names[0]); unnamed bits are left out."""
    return frozenset(name for bit, name in enumerate(names) if name and value >> bit & 1)


@dataclass(frozen=True, slots=True)
class Location:
    """One location report. `lat`/`lon` are signed decimal degrees (south and west negative),
    `time` is aware UTC; `alarms`, `status` and `signals` are the names of the set bits (the raw
    words stay in `alarm_word`/`status_word`). The additional items we know fill their fields
    (None when absent); every other item is kept raw in `extra` as (id, value). `item_errors`
    counts the items that could not be read: a known item of the wrong length (kept raw in
    `extra`) and an item that overruns the body (it and the rest of the body are dropped)."""

    alarm_word: int
    status_word: int
    alarms: frozenset[str]
    status: frozenset[str]
    load: str | None
    lat: float
    lon: float
    alt_m: int
    speed_kmh: float
    course_deg: int
    time: datetime
    mileage_km: float | None = None
    fuel_l: float | None = None
    recorder_speed_kmh: float | None = None
    signals: frozenset[str] | None = None
    io: frozenset[str] | None = None
    signal_strength: int | None = None
    satellites: int | None = None
    extra: tuple[tuple[int, bytes], ...] = ()
    item_errors: int = 0

    @property
    def positioned(self) -> bool:
        """True when the terminal says its position is a fix (status bit 1)."""
        return self.status_word & 2 != 0


@dataclass(frozen=True, slots=True)
class FixFields:
    """The values of our fix taken from a location report (plain values: the ingest builds its
    own fix from them): `valid` is the terminal's positioned bit."""

    time: datetime
    lat: float
    lon: float
    speed_kmh: float
    course_deg: float
    alt_m: float
    sats: int | None
    valid: bool


def as_fix(report: Location) -> FixFields:
    """The fix fields of a location report: position, speed km/h, course, altitude m, UTC time,
    satellites (item 0x31) and whether the terminal had a fix."""
    return FixFields(report.time, report.lat, report.lon, report.speed_kmh, float(report.course_deg),
                     float(report.alt_m), report.satellites, report.positioned)


def _bcd_digits(data: bytes) -> str | None:
    """The decimal digits of packed BCD bytes, None when a nibble is not 0-9."""
    text = data.hex()
    return text if text.isdigit() else None


def bcd_time(data: bytes) -> datetime:
    """BCD[6] YYMMDDhhmmss in GMT+8 (years 2000-2099) -> aware UTC datetime."""
    digits = _bcd_digits(data)
    if digits is None:
        raise BodyError("bad_bcd_time")
    try:
        local = datetime(2000 + int(digits[0:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6:8]),
                         int(digits[8:10]), int(digits[10:12]), tzinfo=_UTC)
    except ValueError:
        raise BodyError("bad_bcd_time") from None
    return local - _BEIJING


# item id -> (field, the value's length, its scale: None keeps the integer, "signals"/"io" the
# bit names)
_ITEMS: dict[int, tuple[str, int, object]] = {
    0x01: ("mileage_km", 4, 10.0),          # DWORD 1/10 km
    0x02: ("fuel_l", 2, 10.0),              # WORD 1/10 L
    0x03: ("recorder_speed_kmh", 2, 10.0),  # WORD 1/10 km/h, the driving recorder's speed
    0x25: ("signals", 4, SIGNAL_BITS),      # DWORD extended vehicle signals
    0x2A: ("io", 2, IO_BITS),               # WORD IO status
    0x30: ("signal_strength", 1, None),     # BYTE wireless network signal strength
    0x31: ("satellites", 1, None),          # BYTE GNSS satellites in view
}


def _items(data: bytes, start: int) -> dict[str, object]:
    """The additional items from `start` to the end: known ones by field name, the others raw in
    ``extra``, and ``item_errors``."""
    known: dict[str, object] = {}
    extra = []
    errors = 0
    at, end = start, len(data)
    while at < end:
        if at + 2 > end or at + 2 + data[at + 1] > end:  # overruns the body: the rest is unreadable
            errors += 1
            break
        item, size = data[at], data[at + 1]
        value = data[at + 2:at + 2 + size]
        at += 2 + size
        spec = _ITEMS.get(item)
        if spec is None or size != spec[1]:
            errors += spec is not None
            extra.append((item, value))
            continue
        field, _, scale = spec
        number = int.from_bytes(value, "big")
        if scale is None:
            known[field] = number
        elif isinstance(scale, tuple):
            known[field] = flag_names(number, scale)
        else:
            known[field] = number / scale
    known["extra"] = tuple(extra)
    known["item_errors"] = errors
    return known


def decode_location(data: bytes) -> Location:
    """Decode a location report body; raises BodyError with its count reason (a bad additional
    item does not: see `Location.item_errors`)."""
    if len(data) < 28:
        raise BodyError("too_short")
    alarm, status, lat, lon = (int.from_bytes(data[k:k + 4], "big") for k in (0, 4, 8, 12))
    alt, speed, course = (int.from_bytes(data[k:k + 2], "big") for k in (16, 18, 20))
    time = bcd_time(data[22:28])
    known = _items(data, 28)
    return Location(
        alarm_word=alarm, status_word=status,
        alarms=flag_names(alarm, ALARM_BITS), status=flag_names(status, STATUS_BITS),
        load=_LOADS[status >> 8 & 3],
        lat=-lat / 1e6 if status & 4 else lat / 1e6,
        lon=-lon / 1e6 if status & 8 else lon / 1e6,
        alt_m=alt, speed_kmh=speed / 10.0, course_deg=course, time=time, **known)
