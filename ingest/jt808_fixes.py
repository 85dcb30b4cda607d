"""The payload of ``fleet/<vehicle_id>/jt808`` (a location report, 0x0200) and
``fleet/<vehicle_id>/jt808/backfill`` (a batch, 0x0704, 盲区补传 or not): what the JT/T 808
gateway publishes for a terminal's vehicle and the ingest turns into the same `Fix` records as the
NMEA path. Both sides are here, so the format is written once. Pure: no I/O.

JSON, one object::

    {"terminal": "13912345678",            the terminal's phone number (leading zeros dropped)
     "fixes": [{"t": 1733558400.0,          UTC epoch seconds (the report's GMT+8 time converted)
                "lat": 36.07, "lon": 120.38,  signed decimal degrees, WGS84 as the terminal sends
                "speed_kmh": 42.5, "course_deg": 90, "alt_m": 12,
                "sats": 9,                  item 0x31, or null
                "valid": true,              status bit 1 (positioned); false: no fix, signal only
                "alarms": ["emergency"],    names of the set alarm bits (`ingest.jt808_items.ALARM_BITS`)
                "status": ["acc_on", "positioned"]}, ...]}

`decode_payload` never raises on content: a payload that is not this shape raises
`RejectedPayload` (the ingest counts it ``rejected:jt808_bad_payload``), a fix with a bad value
is left out and counted.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

import orjson

from ingest.fixes import Fix
from ingest.jt808_items import Location
from ingest.readings import RejectedPayload

__all__ = ["MAX_FIXES", "Jt808Fix", "decode_payload", "encode_payload"]

MAX_FIXES = 2048  # reports in one payload (a 0x0704 batch holds at most 65,535; terminals send tens)
_UTC = timezone.utc


def encode_payload(phone: str, reports: list[Location] | tuple[Location, ...]) -> bytes:
    """The JSON payload of one or more location reports of a terminal."""
    return orjson.dumps({"terminal": phone, "fixes": [
        {"t": r.time.timestamp(), "lat": r.lat, "lon": r.lon, "speed_kmh": r.speed_kmh, "course_deg": r.course_deg,
         "alt_m": r.alt_m, "sats": r.satellites, "valid": r.positioned, "alarms": sorted(r.alarms),
         "status": sorted(r.status)} for r in reports]})


class Jt808Fix:
    """One decoded report: the `Fix` (None when the terminal had no fix) and its alarm names."""

    __slots__ = ("fix", "alarms")

    def __init__(self, fix: Fix | None, alarms: tuple[str, ...]) -> None:
        self.fix = fix
        self.alarms = alarms


def _number(value: object) -> float | None:
    if type(value) in (int, float) and math.isfinite(value):
        return float(value)
    return None


def decode_payload(payload: bytes) -> tuple[list[Jt808Fix], int]:
    """The reports of a payload in order, and how many were left out for a bad value."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise RejectedPayload("jt808_bad_payload") from None
    fixes = data.get("fixes") if isinstance(data, dict) else None
    if not isinstance(fixes, list) or len(fixes) > MAX_FIXES:
        raise RejectedPayload("jt808_bad_payload")
    out: list[Jt808Fix] = []
    bad = 0
    for item in fixes:
        if not isinstance(item, dict):
            bad += 1
            continue
        t, lat, lon = _number(item.get("t")), _number(item.get("lat")), _number(item.get("lon"))
        alarms = item.get("alarms", [])
        if t is None or lat is None or lon is None or not isinstance(alarms, list) \
                or not all(isinstance(a, str) for a in alarms) or not 0 <= t < 1e11:
            bad += 1
            continue
        fix = None
        if item.get("valid") is True:
            sats = item.get("sats")
            fix = Fix(datetime.fromtimestamp(t, _UTC), lat, lon, _number(item.get("speed_kmh")),
                      _number(item.get("course_deg")), _number(item.get("alt_m")), 1, None,
                      sats if type(sats) is int else None)
        out.append(Jt808Fix(fix, tuple(alarms)))
    return out, bad
