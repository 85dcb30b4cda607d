"""Sparkplug B payloads: the DataType numbers and the encoder the simulators, the ingest's
rebirth request and the tests use (the decoder is `ingest.sparkplug`)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from ingest import sparkplug_b_pb2 as pb

__all__ = ["BOOLEAN", "DATA_TYPES", "FLOATS", "SIGNED_BITS", "UNSIGNED", "encode_death", "encode_payload"]

# Sparkplug DataType enum, by name (values as in sparkplug_b.proto).
DATA_TYPES: dict[str, int] = {name: number for name, number in pb.DataType.items()}
SIGNED_BITS = {DATA_TYPES["Int8"]: 8, DATA_TYPES["Int16"]: 16, DATA_TYPES["Int32"]: 32, DATA_TYPES["Int64"]: 64}
UNSIGNED = frozenset({DATA_TYPES["UInt8"], DATA_TYPES["UInt16"], DATA_TYPES["UInt32"], DATA_TYPES["UInt64"]})
FLOATS = frozenset({DATA_TYPES["Float"], DATA_TYPES["Double"]})
BOOLEAN = DATA_TYPES["Boolean"]


def _datatype_number(datatype: int | str) -> int:
    return DATA_TYPES[datatype] if isinstance(datatype, str) else int(datatype)


def _set_value(metric: pb.Payload.Metric, value: object, datatype: int) -> None:
    if value is None:
        metric.is_null = True
    elif datatype in SIGNED_BITS:
        bits = SIGNED_BITS[datatype]
        raw = int(value) & ((1 << bits) - 1)  # two's complement at the type's width
        if bits == 64:
            metric.long_value = raw
        else:
            metric.int_value = raw
    elif datatype in (DATA_TYPES["UInt64"], DATA_TYPES["DateTime"]):
        metric.long_value = int(value)
    elif datatype in UNSIGNED:
        metric.int_value = int(value)
    elif datatype == DATA_TYPES["Float"]:
        metric.float_value = float(value)
    elif datatype == DATA_TYPES["Double"]:
        metric.double_value = float(value)
    elif datatype == BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype in (DATA_TYPES["String"], DATA_TYPES["Text"], DATA_TYPES["UUID"]):
        metric.string_value = str(value)
    elif datatype in (DATA_TYPES["Bytes"], DATA_TYPES["File"]):
        metric.bytes_value = bytes(value)  # type: ignore[call-overload]
    else:
        raise ValueError(f"encoding Sparkplug datatype {datatype} is not supported")


def encode_payload(
    metrics: Iterable[tuple[str | None, int | None, object, int | str]],
    seq: int | None,
    timestamp_ms: int,
    *,
    units: Mapping[str, str] | None = None,
) -> bytes:
    """Encode a Sparkplug B payload from (name, alias, value, datatype) tuples.

    ``datatype`` is a DataType name ("Double") or number; ``None`` as value sets is_null.
    ``units`` (metric name -> unit) adds an ``engUnit`` property, for birth messages.
    ``seq`` None leaves the sequence out (as NDEATH does).
    """
    payload = pb.Payload(timestamp=timestamp_ms)
    if seq is not None:
        payload.seq = seq
    for name, alias, value, datatype in metrics:
        metric = payload.metrics.add()
        number = _datatype_number(datatype)
        if name is not None:
            metric.name = name
        if alias is not None:
            metric.alias = alias
        metric.datatype = number
        _set_value(metric, value, number)
        if units and name in units:
            metric.properties.keys.append("engUnit")
            prop = metric.properties.values.add()
            prop.type = DATA_TYPES["String"]
            prop.string_value = units[name]
    return payload.SerializeToString()


def encode_death(bdseq: int, timestamp_ms: int | None = None) -> bytes:
    """Encode an NDEATH payload (the edge node's MQTT Will) carrying its bdSeq."""
    payload = pb.Payload()
    if timestamp_ms is not None:
        payload.timestamp = timestamp_ms
    metric = payload.metrics.add(name="bdSeq", datatype=DATA_TYPES["Int64"])
    metric.long_value = bdseq & ((1 << 64) - 1)
    return payload.SerializeToString()
