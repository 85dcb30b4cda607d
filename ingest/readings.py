"""Sensor readings: the plain JSON SCADA decoder and unit checks against the registry.

Wire format (one reading per MQTT message)::

    topic    scada/<sensor_id>/<quantity>
    payload  {"value": 0.21, "unit": "MPa", "ts": "2024-05-01T08:00:00+08:00"}

    value    required; a JSON number (int or float), finite. Strings, booleans, null,
             NaN / Infinity (the literal tokens too) are rejected.
    unit     optional; a string. Absent or "" means "the sensor's registered unit".
    ts       optional; ISO 8601 with a UTC offset (or "Z"), or epoch seconds as a
             JSON number. Absent: the time the message was received. Naive
             timestamps are rejected because their zone cannot be known.
    other keys are ignored.

The decoder is pure: no clock, no I/O. Every failure is a ``RejectedPayload`` whose
``reason`` is one of the stable codes in ``REASONS`` so the subscriber can count
rejections per reason; no other exception escapes ``decode_json_reading`` for any bytes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import orjson

__all__ = [
    "CANONICAL_UNITS",
    "REASONS",
    "Reading",
    "RejectedPayload",
    "check_unit",
    "decode_json_reading",
    "parse_scada_topic",
]

DEFAULT_MAX_BYTES = 65536
_MAX_ID_CHARS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Stable reason codes (counted per reason at /api/ingest/stats).
REASONS: dict[str, str] = {
    "too_large": "payload above the configured byte limit",
    "invalid_utf8": "payload is not valid UTF-8",
    "not_json": "payload is not JSON",
    "not_object": "JSON payload is not an object",
    "value_missing": "no value (absent or null)",
    "value_not_number": "value is a string, boolean, list or object instead of a number",
    "value_not_finite": "value is NaN or infinite",
    "bad_unit": "unit is not a string",
    "bad_ts": "timestamp unparsable, without a UTC offset, or out of range",
    "bad_topic": "topic breaks scada/<sensor_id>/<quantity>",
    "unit_mismatch": "unit cannot be converted to the sensor's registered unit",
    "sparkplug_topic": "topic breaks the Sparkplug B namespace",
    "sparkplug_payload": "payload is not a Sparkplug B protobuf",
}

# Canonical unit per known quantity; any other quantity is a generic numeric reading.
CANONICAL_UNITS: dict[str, str] = {
    "pressure": "MPa",   # water network pressure
    "load": "%",         # transformer load, % of rated kVA
    "flow": "m3/h",      # water flow
}


class RejectedPayload(ValueError):
    """A message that cannot become a reading; ``reason`` is a stable code from REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        message = REASONS.get(reason, reason)
        super().__init__(f"{reason}: {message}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True, slots=True)
class Reading:
    """One decoded sensor value; ``ts`` is an aware UTC datetime."""

    sensor_id: str
    quantity: str
    value: float
    unit: str
    ts: datetime
    source: str  # 'json' | 'sparkplug'


def parse_scada_topic(topic: str) -> tuple[str, str]:
    """Split ``scada/<sensor_id>/<quantity>`` into (sensor_id, quantity) or raise bad_topic."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "scada":
        raise RejectedPayload("bad_topic", "expected scada/<sensor_id>/<quantity>")
    sensor_id, quantity = parts[1], parts[2]
    for part in (sensor_id, quantity):
        if not part or len(part) > _MAX_ID_CHARS:
            raise RejectedPayload("bad_topic", "empty or overlong level")
        if "+" in part or "#" in part or "\x00" in part:
            raise RejectedPayload("bad_topic", "wildcard or NUL in a topic level")
    return sensor_id, quantity


class _NonFinite(Exception):
    """Raised inside the stdlib fallback parser when it meets NaN/Infinity."""


def _refuse_constant(token: str) -> float:
    raise _NonFinite(token)


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _NonFinite(text)
    return number


def _classify_bad_json(payload: bytes) -> RejectedPayload:
    """Explain why orjson refused ``payload`` (error path only, so it may be slower)."""
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        return RejectedPayload("invalid_utf8")
    try:
        json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite:
        return RejectedPayload("value_not_finite")
    except (ValueError, RecursionError):
        return RejectedPayload("not_json")
    # The stdlib accepted what orjson refused (e.g. lone surrogates): still refuse it.
    return RejectedPayload("not_json", "not strict JSON")


def _parse_ts(raw: object, received_at: datetime) -> datetime:
    if raw is None:
        return received_at
    if isinstance(raw, bool):
        raise RejectedPayload("bad_ts", "boolean timestamp")
    if isinstance(raw, (int, float)):
        try:
            return _EPOCH + timedelta(seconds=raw)
        except (OverflowError, ValueError):  # huge, or NaN/inf from a non-JSON caller
            raise RejectedPayload("bad_ts", "epoch out of range") from None
    if isinstance(raw, str) and len(raw) <= 64:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError as exc:
            raise RejectedPayload("bad_ts", "not ISO 8601") from exc
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise RejectedPayload("bad_ts", "no UTC offset")
        try:
            return parsed.astimezone(timezone.utc)
        except (OverflowError, ValueError) as exc:
            raise RejectedPayload("bad_ts", "out of range") from exc
    raise RejectedPayload("bad_ts", "neither ISO 8601 string nor epoch seconds")


def decode_json_reading(
    topic: str, payload: bytes, received_at: datetime, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> Reading:
    """Decode one JSON reading; raise RejectedPayload (and nothing else) on bad input."""
    sensor_id, quantity = parse_scada_topic(topic)
    if len(payload) > max_bytes:
        raise RejectedPayload("too_large", f"{len(payload)} > {max_bytes} bytes")
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _classify_bad_json(payload) from None
    if not isinstance(document, dict):
        raise RejectedPayload("not_object")

    value = document.get("value")
    if value is None:
        raise RejectedPayload("value_missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RejectedPayload("value_not_number", type(value).__name__)
    try:
        value = float(value)
    except OverflowError:
        raise RejectedPayload("value_not_finite") from None
    if not math.isfinite(value):
        raise RejectedPayload("value_not_finite")

    unit = document.get("unit")
    if unit is None:
        unit = ""
    elif not isinstance(unit, str) or len(unit) > 32:
        raise RejectedPayload("bad_unit")

    ts = _parse_ts(document.get("ts"), received_at)
    return Reading(sensor_id, quantity, value, unit, ts, "json")


# Linear conversions: unit -> (dimension, factor to the dimension's base unit).
_LINEAR: dict[str, tuple[str, float]] = {
    "Pa": ("pressure", 1e-6),
    "kPa": ("pressure", 1e-3),
    "MPa": ("pressure", 1.0),
    "bar": ("pressure", 0.1),
    "m3/h": ("flow", 1.0),
    "m3/s": ("flow", 3600.0),
    "L/s": ("flow", 3.6),
    "kW": ("power", 1.0),
    "MW": ("power", 1000.0),
    "kVA": ("apparent_power", 1.0),
    "MVA": ("apparent_power", 1000.0),
    "%": ("ratio", 1.0),
}
_ALIASES = {"m³/h": "m3/h", "m^3/h": "m3/h", "l/s": "L/s", "percent": "%"}


def _normal_unit(unit: str) -> str:
    return _ALIASES.get(unit, unit)


def check_unit(reading: Reading, registry_unit: str, *, rated_kva: float | None = None) -> Reading:
    """Return ``reading`` expressed in ``registry_unit`` or raise RejectedPayload('unit_mismatch').

    Linear conversions within a dimension (Pa/kPa/MPa/bar, m3/h / m3/s / L/s,
    kW/MW, kVA/MVA) are applied. A registry unit of ``%`` (transformer load) accepts
    kVA/MVA, and kW/MW taken at unity power factor, given ``rated_kva``; a registry unit
    of kVA accepts ``%`` the same way. An empty reading unit adopts the registry unit.
    """
    source = _normal_unit(reading.unit)
    target = _normal_unit(registry_unit)
    if not source or source == target:
        return reading if reading.unit == registry_unit else replace(reading, unit=registry_unit)
    src = _LINEAR.get(source)
    dst = _LINEAR.get(target)
    if src is None or dst is None:
        raise RejectedPayload("unit_mismatch", f"{reading.unit!r} vs {registry_unit!r}")
    value: float | None = None
    if src[0] == dst[0]:
        value = reading.value * src[1] / dst[1]
    elif rated_kva is not None and rated_kva > 0:
        if dst[0] == "ratio" and src[0] in ("power", "apparent_power"):
            value = reading.value * src[1] / rated_kva * 100.0
        elif src[0] == "ratio" and dst[0] == "apparent_power":
            value = reading.value / 100.0 * rated_kva / dst[1]
    if value is None or not math.isfinite(value):
        raise RejectedPayload("unit_mismatch", f"{reading.unit!r} vs {registry_unit!r}")
    return replace(reading, value=value, unit=registry_unit)
