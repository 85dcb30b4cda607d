"""Sparkplug B: topic namespace, births, aliases, sequence numbers, deaths, garbage."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import sparkplug_b_pb2 as pb
from ingest.readings import Reading, RejectedPayload
from ingest.sparkplug import (
    DATA_TYPES,
    SparkplugState,
    SparkplugTopic,
    encode_death,
    encode_payload,
    parse_topic,
)

RECEIVED = datetime(2024, 5, 1, 0, 0, 9, tzinfo=timezone.utc)
T0 = 1714521600000  # 2024-05-01T00:00:00Z in ms
AT_T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)

NBIRTH = "spBv1.0/water/NBIRTH/pump-station-3"
NDATA = "spBv1.0/water/NDATA/pump-station-3"
NDEATH = "spBv1.0/water/NDEATH/pump-station-3"
DBIRTH = "spBv1.0/water/DBIRTH/pump-station-3/{}"
DDATA = "spBv1.0/water/DDATA/pump-station-3/{}"
DDEATH = "spBv1.0/water/DDEATH/pump-station-3/{}"


def test_generated_module_matches_the_shipped_proto() -> None:
    proto = Path(__file__).parent / "data" / "sparkplug" / "sparkplug_b.proto"
    text = proto.read_text()
    assert "package org.eclipse.tahu.protobuf;" in text
    assert pb.DESCRIPTOR.package == "org.eclipse.tahu.protobuf"
    # Every DataType of the proto is in the generated enum with the same number.
    for name, number in DATA_TYPES.items():
        assert f"{name} = {number};".replace(" ", "") in text.replace(" ", "")
    assert len(DATA_TYPES) == 35


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("spBv1.0/water/NBIRTH/ps3", SparkplugTopic("water", "NBIRTH", "ps3", None)),
        ("spBv1.0/water/NDATA/ps3", SparkplugTopic("water", "NDATA", "ps3", None)),
        ("spBv1.0/water/NDEATH/ps3", SparkplugTopic("water", "NDEATH", "ps3", None)),
        ("spBv1.0/water/NCMD/ps3", SparkplugTopic("water", "NCMD", "ps3", None)),
        ("spBv1.0/grid/DBIRTH/sub7/tx1", SparkplugTopic("grid", "DBIRTH", "sub7", "tx1")),
        ("spBv1.0/grid/DDATA/sub7/tx1", SparkplugTopic("grid", "DDATA", "sub7", "tx1")),
        ("spBv1.0/grid/DDEATH/sub7/tx1", SparkplugTopic("grid", "DDEATH", "sub7", "tx1")),
        ("spBv1.0/grid/DCMD/sub7/tx1", SparkplugTopic("grid", "DCMD", "sub7", "tx1")),
        ("spBv1.0/STATE/scada-host", SparkplugTopic("", "STATE", "scada-host", None)),
    ],
)
def test_parse_topic(topic: str, expected: SparkplugTopic) -> None:
    assert parse_topic(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "spBv1.0/water/NDATA/ps3/pump1",       # device id on an N* message
        "spBv1.0/water/NBIRTH/ps3/pump1",
        "spBv1.0/water/NDEATH/ps3/pump1",
        "spBv1.0/water/DDATA/ps3",             # D* message without a device id
        "spBv1.0/water/DBIRTH/ps3",
        "spBv1.0/water/NFOO/ps3",              # unknown message type
        "spBv1.0/water/ndata/ps3",
        "spAv1.0/water/NDATA/ps3",             # wrong namespace
        "spBv1.0/water/NDATA",
        "spBv1.0/water/DDATA/ps3/pump1/extra",
        "spBv1.0//NDATA/ps3",                  # empty ids
        "spBv1.0/water/NDATA/",
        "spBv1.0/water/DDATA/ps3/",
        "spBv1.0/+/NDATA/ps3",                 # wildcards
        "spBv1.0/water/DDATA/ps3/#",
        "spBv1.0/STATE",
        "spBv1.0/STATE/host/extra",
        "",
    ],
)
def test_parse_topic_rejects_namespace_violations(topic: str) -> None:
    with pytest.raises(RejectedPayload) as caught:
        parse_topic(topic)
    assert caught.value.reason == "sparkplug_topic"


def _born_state(sensor_map: dict[str, str] | None = None) -> SparkplugState:
    """A node with one node metric and two devices, each born with aliases."""
    state = SparkplugState(sensor_map)
    node_birth = encode_payload(
        [("bdSeq", None, 7, "Int64"), ("Node Control/Rebirth", None, False, "Boolean"),
         ("Supply Voltage", 1, 230.5, "Float")],
        seq=0, timestamp_ms=T0, units={"Supply Voltage": "V"},
    )
    result = state.handle(NBIRTH, node_birth, RECEIVED)
    assert result.online == ["pump-station-3/Supply Voltage"]
    pump_birth = encode_payload(
        [("Outlet Pressure", 10, 0.31, "Double"), ("Flow", 11, 120.0, "Float"),
         ("Status", 12, "running", "String")],
        seq=1, timestamp_ms=T0, units={"Outlet Pressure": "MPa", "Flow": "m3/h"},
    )
    result = state.handle(DBIRTH.format("pump1"), pump_birth, RECEIVED)
    assert sorted(result.online) == ["pump-station-3/pump1/Flow", "pump-station-3/pump1/Outlet Pressure"]
    tank_birth = encode_payload([("Level", 20, 3.5, "Double")], seq=2, timestamp_ms=T0)
    state.handle(DBIRTH.format("tank"), tank_birth, RECEIVED)
    return state


def test_birth_readings_carry_values_units_and_mapped_ids() -> None:
    state = SparkplugState({"pump-station-3/pump1/Outlet Pressure": "PS-017"})
    state.handle(NBIRTH, encode_payload([("bdSeq", None, 0, "Int64")], 0, T0), RECEIVED)
    birth = encode_payload(
        [("Outlet Pressure", 10, 0.31, "Double"), ("Status", 12, "running", "String")],
        seq=1, timestamp_ms=T0, units={"Outlet Pressure": "MPa"},
    )
    result = state.handle(DBIRTH.format("pump1"), birth, RECEIVED)
    assert result.readings == [Reading("PS-017", "Outlet Pressure", 0.31, "MPa", AT_T0, "sparkplug")]
    assert result.online == ["PS-017"]
    assert result.counts["non_numeric"] == 0  # String metric: not a measurement, no reading
    assert state.is_online("water", "pump-station-3", "pump1")


def test_data_resolves_alias_and_name() -> None:
    state = _born_state()
    data = encode_payload(
        [(None, 10, 0.27, "Double"), ("Flow", None, 95.5, "Float")], seq=3, timestamp_ms=T0 + 1000
    )
    result = state.handle(DDATA.format("pump1"), data, RECEIVED)
    at = datetime(2024, 5, 1, 0, 0, 1, tzinfo=timezone.utc)
    assert result.readings == [
        Reading("pump-station-3/pump1/Outlet Pressure", "Outlet Pressure", 0.27, "MPa", at, "sparkplug"),
        Reading("pump-station-3/pump1/Flow", "Flow", 95.5, "m3/h", at, "sparkplug"),
    ]
    assert not result.rebirth_needed
    assert sum(result.counts.values()) == 0
    node = state.handle(NDATA, encode_payload([(None, 1, 229.0, "Float")], 4, T0 + 2000), RECEIVED)
    assert [(r.sensor_id, r.value, r.unit) for r in node.readings] == [
        ("pump-station-3/Supply Voltage", 229.0, "V")
    ]


def test_metric_timestamp_wins_and_received_at_is_the_fallback() -> None:
    state = _born_state()
    payload = pb.Payload(seq=3)  # no payload timestamp
    m1 = payload.metrics.add(alias=10, datatype=DATA_TYPES["Double"], double_value=0.2)
    m1.timestamp = T0 + 5000
    payload.metrics.add(alias=11, datatype=DATA_TYPES["Float"], float_value=1.0)
    result = state.handle(DDATA.format("pump1"), payload.SerializeToString(), RECEIVED)
    assert [r.ts for r in result.readings] == [datetime(2024, 5, 1, 0, 0, 5, tzinfo=timezone.utc), RECEIVED]


@pytest.mark.parametrize(
    ("name", "value", "datatype"),
    [
        ("i8", -5, "Int8"), ("i8max", 127, "Int8"), ("i16", -32768, "Int16"),
        ("i32", -123456, "Int32"), ("i64", -(2**40), "Int64"), ("u8", 255, "UInt8"),
        ("u32", 4_000_000_000, "UInt32"), ("u64", 2**60, "UInt64"),
        ("f", 0.5, "Float"), ("d", 0.1, "Double"), ("on", True, "Boolean"), ("off", False, "Boolean"),
    ],
)
def test_round_trip_encode_then_handle(name: str, value: float, datatype: str) -> None:
    state = SparkplugState()
    birth = encode_payload([("bdSeq", None, 1, "Int64"), (name, 5, value, datatype)], 0, T0)
    born = state.handle(NBIRTH, birth, RECEIVED)
    data = state.handle(NDATA, encode_payload([(None, 5, value, datatype)], 1, T0), RECEIVED)
    for result in (born, data):
        assert [(r.sensor_id, r.value) for r in result.readings] == [(f"pump-station-3/{name}", float(value))]


def test_sign_extended_small_ints_decode_too() -> None:
    """Some edge nodes sign-extend Int8 to 32 bits instead of truncating to 8."""
    state = SparkplugState()
    state.handle(NBIRTH, encode_payload([("t", 1, 0, "Int8")], 0, T0), RECEIVED)
    payload = pb.Payload(seq=1, timestamp=T0)
    payload.metrics.add(alias=1, datatype=DATA_TYPES["Int8"], int_value=0xFFFFFFFB)
    result = state.handle(NDATA, payload.SerializeToString(), RECEIVED)
    assert [r.value for r in result.readings] == [-5.0]


@pytest.mark.parametrize(
    ("seqs", "gaps", "wraps"),
    [
        ([3, 4, 5], 0, 0),
        ([3, 5], 1, 0),                  # 4 lost
        ([3, 3], 1, 0),                  # duplicate
        ([3, 2], 1, 0),                  # out of order
        (list(range(3, 256)) + [0, 1], 0, 1),  # legal wraparound 255 -> 0
        ([3, 255, 0], 1, 1),             # a gap, then a legal wrap
        ([3, 256], 1, 0),                # out of range is a gap, not a wrap
    ],
)
def test_sequence_numbers(seqs: list[int], gaps: int, wraps: int) -> None:
    state = _born_state()  # last seq 2
    total_gaps = total_wraps = 0
    readings = 0
    for seq in seqs:
        result = state.handle(DDATA.format("tank"), encode_payload([(None, 20, 1.0, "Double")], seq, T0), RECEIVED)
        total_gaps += result.counts["seq_gap"]
        total_wraps += result.counts["seq_wrap"]
        readings += len(result.readings)
    assert (total_gaps, total_wraps) == (gaps, wraps)
    assert readings == len(seqs)  # a gap is counted, the data is still used


def test_ndeath_marks_every_sensor_of_the_node_offline() -> None:
    state = _born_state()
    result = state.handle(NDEATH, encode_death(7), RECEIVED)
    assert sorted(result.offline) == [
        "pump-station-3/Supply Voltage",
        "pump-station-3/pump1/Flow",
        "pump-station-3/pump1/Outlet Pressure",
        "pump-station-3/tank/Level",
    ]
    assert not state.is_online("water", "pump-station-3")
    assert not state.is_online("water", "pump-station-3", "tank")
    # Data after the death is not trusted until a new birth.
    after = state.handle(DDATA.format("tank"), encode_payload([(None, 20, 1.0, "Double")], 3, T0), RECEIVED)
    assert (after.readings, after.counts["no_birth"], after.rebirth_needed) == ([], 1, True)


def test_ddeath_marks_only_that_device_offline() -> None:
    state = _born_state()
    result = state.handle(DDEATH.format("tank"), encode_payload([], 3, T0), RECEIVED)
    assert result.offline == ["pump-station-3/tank/Level"]
    assert state.is_online("water", "pump-station-3", "pump1")
    assert not state.is_online("water", "pump-station-3", "tank")
    still = state.handle(DDATA.format("pump1"), encode_payload([(None, 10, 0.3, "Double")], 4, T0), RECEIVED)
    assert len(still.readings) == 1 and sum(still.counts.values()) == 0


def test_stale_ndeath_from_an_old_session_is_ignored() -> None:
    state = _born_state()  # bdSeq 7
    result = state.handle(NDEATH, encode_death(6), RECEIVED)
    assert (result.offline, result.counts["stale_death"]) == ([], 1)
    assert state.is_online("water", "pump-station-3", "pump1")


def test_rebirth_replaces_the_alias_map() -> None:
    state = _born_state()
    state.handle(NDEATH, encode_death(7), RECEIVED)
    reborn = state.handle(
        NBIRTH, encode_payload([("bdSeq", None, 8, "Int64"), ("Supply Voltage", 2, 231.0, "Float")], 0, T0),
        RECEIVED,
    )
    assert reborn.online == ["pump-station-3/Supply Voltage"]
    old_alias = state.handle(NDATA, encode_payload([(None, 1, 1.0, "Float")], 1, T0), RECEIVED)
    assert (old_alias.counts["unknown_alias"], old_alias.rebirth_needed) == (1, True)
    new_alias = state.handle(NDATA, encode_payload([(None, 2, 232.0, "Float")], 2, T0), RECEIVED)
    assert [r.value for r in new_alias.readings] == [232.0]
    # Devices of the previous session must be born again.
    device = state.handle(DDATA.format("pump1"), encode_payload([(None, 10, 0.3, "Double")], 3, T0), RECEIVED)
    assert (device.counts["no_birth"], device.rebirth_needed) == (1, True)


def test_unknown_alias_without_birth_needs_rebirth() -> None:
    state = SparkplugState()
    result = state.handle(NDATA, encode_payload([(None, 42, 1.0, "Double")], 17, T0), RECEIVED)
    assert result.readings == []
    assert result.counts["no_birth"] == 1
    assert result.rebirth_needed
    device = state.handle(DDATA.format("pump1"), encode_payload([(None, 42, 1.0, "Double")], 18, T0), RECEIVED)
    assert (device.counts["no_birth"], device.rebirth_needed) == (1, True)


def test_unknown_alias_and_name_after_birth_are_counted() -> None:
    state = _born_state()
    data = encode_payload(
        [(None, 99, 1.0, "Double"), ("Nope", None, 2.0, "Double"), (None, 10, 0.3, "Double")], 3, T0
    )
    result = state.handle(DDATA.format("pump1"), data, RECEIVED)
    assert (result.counts["unknown_alias"], result.counts["unknown_metric"]) == (1, 1)
    assert result.rebirth_needed
    assert [r.value for r in result.readings] == [0.3]


def test_null_and_historical_metrics_give_no_reading() -> None:
    state = _born_state()
    payload = pb.Payload(seq=3, timestamp=T0)
    payload.metrics.add(alias=10, datatype=DATA_TYPES["Double"], is_null=True)
    payload.metrics.add(alias=11, datatype=DATA_TYPES["Float"], float_value=3.0, is_historical=True)
    result = state.handle(DDATA.format("pump1"), payload.SerializeToString(), RECEIVED)
    assert result.readings == []
    assert (result.counts["null_value"], result.counts["historical"]) == (1, 1)


@pytest.mark.parametrize(
    "payload", [b"\xff\xff\xff\xff", b"\x12\x05\x0a", b'{"value": 1}', b"\x0a\x80"]
)
def test_garbage_payload_is_rejected(payload: bytes) -> None:
    state = _born_state()
    with pytest.raises(RejectedPayload) as caught:
        state.handle(DDATA.format("pump1"), payload, RECEIVED)
    assert caught.value.reason == "sparkplug_payload"
    assert state.is_online("water", "pump-station-3", "pump1")


def test_oversized_payload_is_rejected() -> None:
    state = SparkplugState(max_bytes=100)
    with pytest.raises(RejectedPayload) as caught:
        state.handle(NDATA, b"\x00" * 101, RECEIVED)
    assert caught.value.reason == "too_large"


def test_state_and_commands_give_no_readings() -> None:
    state = SparkplugState()
    result = state.handle("spBv1.0/STATE/scada-host", b'{"online": true, "timestamp": 1}', RECEIVED)
    assert (result.readings, result.counts["state"]) == ([], 1)
    result = state.handle("spBv1.0/water/NCMD/pump-station-3", b"\x00garbage", RECEIVED)
    assert result.counts["command"] == 1


TOPICS = [NBIRTH, NDATA, NDEATH, DBIRTH.format("pump1"), DDATA.format("pump1"), DDEATH.format("pump1")]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TOPICS), st.binary(max_size=300)), min_size=1, max_size=6))
def test_arbitrary_bytes_only_raise_rejected(messages: list[tuple[str, bytes]]) -> None:
    state = _born_state()
    for topic, payload in messages:
        try:
            result = state.handle(topic, payload, RECEIVED)
        except RejectedPayload as exc:
            assert exc.reason == "sparkplug_payload"
        else:
            assert all(isinstance(r.value, float) for r in result.readings)


_VALID = [
    encode_payload([("bdSeq", None, 7, "Int64"), ("Supply Voltage", 1, 230.5, "Float")], 0, T0, units={"Supply Voltage": "V"}),
    encode_payload([("Outlet Pressure", 10, 0.31, "Double"), ("Count", 11, -3, "Int16")], 1, T0),
    encode_payload([(None, 10, 0.3, "Double"), (None, 11, 9, "Int16")], 2, T0),
    encode_death(7),
]


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(TOPICS),
            st.sampled_from(_VALID),
            st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_mutated_valid_payloads_only_raise_rejected(messages: list[tuple[str, bytes, list[tuple[int, int]]]]) -> None:
    state = SparkplugState()
    for topic, payload, edits in messages:
        data = bytearray(payload)
        for position, byte in edits:
            if data:
                data[position % len(data)] = byte
        try:
            state.handle(topic, bytes(data), RECEIVED)
        except RejectedPayload as exc:
            assert exc.reason == "sparkplug_payload"
