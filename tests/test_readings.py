"""Plain JSON SCADA readings: valid forms, every rejection reason, unit checks, fuzzing."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.readings import REASONS, Reading, RejectedPayload, check_unit, decode_json_reading

RECEIVED = datetime(2024, 5, 1, 0, 0, 5, tzinfo=timezone.utc)
TOPIC = "scada/PS-017/pressure"


@pytest.mark.parametrize(
    ("payload", "value", "unit", "ts"),
    [
        # ISO 8601 with a +08:00 offset (Beijing time) is converted to UTC.
        (b'{"value": 0.21, "unit": "MPa", "ts": "2024-05-01T08:00:00+08:00"}',
         0.21, "MPa", datetime(2024, 5, 1, 0, 0, tzinfo=timezone.utc)),
        (b'{"value": 0.21, "unit": "MPa", "ts": "2024-05-01T00:00:00Z"}',
         0.21, "MPa", datetime(2024, 5, 1, 0, 0, tzinfo=timezone.utc)),
        (b'{"value": 0.21, "unit": "MPa", "ts": "2024-05-01T08:00:00.250+08:00"}',
         0.21, "MPa", datetime(2024, 5, 1, 0, 0, 0, 250000, tzinfo=timezone.utc)),
        # Epoch seconds, integer and fractional: 1714521600 is 2024-05-01T00:00:00Z.
        (b'{"value": 3, "unit": "MPa", "ts": 1714521600}',
         3.0, "MPa", datetime(2024, 5, 1, 0, 0, tzinfo=timezone.utc)),
        (b'{"value": -1.5e-3, "unit": "kPa", "ts": 1714521600.5}',
         -0.0015, "kPa", datetime(2024, 5, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)),
        # No ts: the receive time; no unit: "" (the registered unit); extra keys ignored.
        (b'{"value": 0.2}', 0.2, "", RECEIVED),
        (b'{"value": 0, "unit": "MPa", "ts": null, "quality": "good"}', 0.0, "MPa", RECEIVED),
        (b' \r\n{"value": 17}\n', 17.0, "", RECEIVED),
        ('{"value": 1, "unit": "m³/h"}'.encode(), 1.0, "m³/h", RECEIVED),
    ],
)
def test_valid_readings(payload: bytes, value: float, unit: str, ts: datetime) -> None:
    reading = decode_json_reading(TOPIC, payload, RECEIVED)
    assert reading == Reading("PS-017", "pressure", value, unit, ts, "json")
    assert reading.ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPIC, b'{"value": 1}' + b" " * 70000, "too_large"),
        (TOPIC, b'{"value": 1, "unit": "\xff\xfe"}', "invalid_utf8"),
        (TOPIC, b"\xc3\x28", "invalid_utf8"),
        (TOPIC, b"", "not_json"),
        (TOPIC, b"value=0.21", "not_json"),
        (TOPIC, b'{"value": 0.21', "not_json"),
        (TOPIC, b"\xef\xbb\xbf{\"value\": 1}", "not_json"),
        (TOPIC, b'{"value": 1, "unit": "\\ud800"}', "not_json"),
        (TOPIC, b"[" * 60000, "not_json"),
        (TOPIC, b"[0.21]", "not_object"),
        (TOPIC, b"0.21", "not_object"),
        (TOPIC, b'"0.21"', "not_object"),
        (TOPIC, b"null", "not_object"),
        (TOPIC, b'{"unit": "MPa"}', "value_missing"),
        (TOPIC, b'{"value": null}', "value_missing"),
        (TOPIC, b'{"value": NaN}', "value_not_finite"),
        (TOPIC, b'{"value": Infinity}', "value_not_finite"),
        (TOPIC, b'{"value": -Infinity}', "value_not_finite"),
        (TOPIC, b'{"value": 1e400}', "value_not_finite"),
        (TOPIC, b'{"value": "0.21"}', "value_not_number"),
        (TOPIC, b'{"value": true}', "value_not_number"),
        (TOPIC, b'{"value": [0.21]}', "value_not_number"),
        (TOPIC, b'{"value": {"v": 1}}', "value_not_number"),
        (TOPIC, b'{"value": 1, "unit": 5}', "bad_unit"),
        (TOPIC, b'{"value": 1, "ts": "yesterday"}', "bad_ts"),
        (TOPIC, b'{"value": 1, "ts": "2024-05-01T08:00:00"}', "bad_ts"),  # naive
        (TOPIC, b'{"value": 1, "ts": "2024-05-01"}', "bad_ts"),
        (TOPIC, b'{"value": 1, "ts": true}', "bad_ts"),
        (TOPIC, b'{"value": 1, "ts": 1e300}', "bad_ts"),
        (TOPIC, b'{"value": 1, "ts": 1714521600000000}', "bad_ts"),  # microseconds
        (TOPIC, b'{"value": 1, "ts": ["2024"]}', "bad_ts"),
        (TOPIC, b'{"value": 1, "ts": "0001-01-01T00:00:00+08:00"}', "bad_ts"),
        ("scada/PS-017", b'{"value": 1}', "bad_topic"),
        ("scada/PS-017/pressure/extra", b'{"value": 1}', "bad_topic"),
        ("scada//pressure", b'{"value": 1}', "bad_topic"),
        ("scada/PS-017/", b'{"value": 1}', "bad_topic"),
        ("scada/+/pressure", b'{"value": 1}', "bad_topic"),
        ("scada/PS-017/#", b'{"value": 1}', "bad_topic"),
        ("fleet/PS-017/pressure", b'{"value": 1}', "bad_topic"),
        ("/scada/PS-017/pressure", b'{"value": 1}', "bad_topic"),
    ],
)
def test_rejections(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(RejectedPayload) as caught:
        decode_json_reading(topic, payload, RECEIVED)
    assert caught.value.reason == reason
    assert reason in REASONS
    assert str(caught.value).startswith(reason)


def test_size_limit_is_configurable() -> None:
    payload = b'{"value": 1, "unit": "MPa"}'
    assert decode_json_reading(TOPIC, payload, RECEIVED, max_bytes=len(payload)).value == 1.0
    with pytest.raises(RejectedPayload) as caught:
        decode_json_reading(TOPIC, payload, RECEIVED, max_bytes=len(payload) - 1)
    assert caught.value.reason == "too_large"


def _reading(value: float, unit: str, quantity: str = "pressure") -> Reading:
    return Reading("S1", quantity, value, unit, RECEIVED, "json")


@pytest.mark.parametrize(
    ("value", "unit", "registry_unit", "rated_kva", "expected"),
    [
        (0.21, "MPa", "MPa", None, 0.21),
        (210.0, "kPa", "MPa", None, 0.21),
        (0.21, "MPa", "kPa", None, 210.0),
        (2.1, "bar", "MPa", None, 0.21),
        (210000.0, "Pa", "MPa", None, 0.21),
        (0.5, "", "MPa", None, 0.5),               # no unit: the registered one
        (10.0, "L/s", "m3/h", None, 36.0),
        (12.0, "m³/h", "m3/h", None, 12.0),
        (400.0, "kW", "%", 800.0, 50.0),            # 400 kW on an 800 kVA transformer
        (0.4, "MW", "%", 800.0, 50.0),
        (600.0, "kVA", "%", 800.0, 75.0),
        (75.0, "%", "kVA", 800.0, 600.0),
        (75.0, "%", "%", None, 75.0),
        (42.0, "", "", None, 42.0),                 # generic numeric
    ],
)
def test_check_unit_converts(
    value: float, unit: str, registry_unit: str, rated_kva: float | None, expected: float
) -> None:
    checked = check_unit(_reading(value, unit), registry_unit, rated_kva=rated_kva)
    assert checked.value == pytest.approx(expected, rel=1e-12)
    assert checked.unit == registry_unit


@pytest.mark.parametrize(
    ("unit", "registry_unit", "rated_kva"),
    [
        ("MPa", "m3/h", None),
        ("kW", "%", None),          # kW needs the rating to become % load
        ("kW", "%", 0.0),
        ("kW", "kVA", 800.0),       # real power is not apparent power
        ("mPa", "MPa", None),       # unit symbols are case-sensitive
        ("furlongs", "MPa", None),
        ("MPa", "psi?", None),
    ],
)
def test_check_unit_mismatch(unit: str, registry_unit: str, rated_kva: float | None) -> None:
    with pytest.raises(RejectedPayload) as caught:
        check_unit(_reading(1.0, unit), registry_unit, rated_kva=rated_kva)
    assert caught.value.reason == "unit_mismatch"


def _only_rejected(payload: bytes, topic: str = TOPIC) -> None:
    try:
        reading = decode_json_reading(topic, payload, RECEIVED, max_bytes=4096)
    except RejectedPayload as exc:
        assert exc.reason in REASONS
    else:
        assert isinstance(reading.value, float)
        assert reading.ts.tzinfo is not None


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=5000))
def test_arbitrary_bytes_only_raise_rejected(payload: bytes) -> None:
    _only_rejected(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=1500, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["value", "unit", "ts", "x"]),
        json_values | st.datetimes().map(lambda d: d.isoformat()),
        max_size=4,
    ),
    st.text(max_size=40),
)
def test_json_shaped_payloads_only_raise_rejected(document: dict, topic: str) -> None:
    _only_rejected(json.dumps(document).encode("utf-8", "surrogatepass"), topic)
    _only_rejected(json.dumps(document).encode("utf-8", "surrogatepass"))
