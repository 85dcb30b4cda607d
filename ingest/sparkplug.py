"""Eclipse Sparkplug B: topic namespace, session state per edge node, and metric decoding.

Topic namespace (Sparkplug B 2.2 / 3.0)::

    spBv1.0/<group_id>/<NBIRTH|NDATA|NDEATH|NCMD>/<edge_node_id>
    spBv1.0/<group_id>/<DBIRTH|DDATA|DDEATH|DCMD>/<edge_node_id>/<device_id>
    spBv1.0/STATE/<host_id>                       (host application state)

Payloads are ``org.eclipse.tahu.protobuf.Payload`` (``ingest/sparkplug_b_pb2.py``):
``seq`` (0..255, +1 per message of one edge node, 255 wraps to 0), ``timestamp`` (ms since
the epoch) and ``metrics``; each metric has a ``name`` and optional ``alias`` at birth, and
in DATA messages the name or the alias, a ``datatype`` and one value field.

Session rules applied by ``SparkplugState``:

* NBIRTH starts a session: it resets the node's sequence to its ``seq``, records ``bdSeq``,
  replaces the node's name <-> alias map and forgets its devices (they must rebirth).
* DBIRTH records a device's name <-> alias map; it needs a node session (else no_birth).
* NDATA/DDATA resolve metrics by alias (or name) from the birth. Data without a birth is
  ignored and counted ``no_birth`` with ``rebirth_needed``; an alias or name the birth did not
  declare counts ``unknown_alias`` / ``unknown_metric`` and also asks for a rebirth.
* Every message but NDEATH carries ``seq``: a value other than last+1 (mod 256) counts
  ``seq_gap``; the legal wrap 255 -> 0 counts ``seq_wrap``.
* NDEATH carries the ``bdSeq`` of the session it ends; one that does not match the current
  birth's ``bdSeq`` is stale (a late Will message) and counted ``stale_death``. A valid NDEATH
  marks the node and all its devices offline; DDEATH marks only that device offline.

Sensor ids: a device metric is ``<edge_node>/<device>/<metric name>``, a node metric
``<edge_node>/<metric name>``; either is then looked up in the optional ``sensor_map``
(built from the sensor registry) and kept as is when absent. The group id is not part of
the sensor id, so edge node ids are assumed unique across groups; a registry that needs
otherwise maps the ids explicitly.

Readings are made from numeric and boolean metrics (booleans as 0.0/1.0); the engineering
unit comes from a birth metric property ``engUnit``/``engUnits``/``unit`` when present.
Historical, null, non-numeric and control metrics (``bdSeq``, ``Node Control/*``,
``Device Control/*``) produce no reading and are counted.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from google.protobuf.message import DecodeError

from ingest import sparkplug_b_pb2 as pb
from ingest.readings import DEFAULT_MAX_BYTES, Reading, RejectedPayload
from ingest.sparkplug_payload import (BOOLEAN as _BOOLEAN, DATA_TYPES, FLOATS as _FLOATS,
                                      SIGNED_BITS as _SIGNED_BITS, UNSIGNED as _UNSIGNED, encode_death,
                                      encode_payload)

__all__ = [
    "DATA_TYPES",
    "RejectedPayload",
    "SparkplugResult",
    "SparkplugState",
    "SparkplugTopic",
    "encode_death",
    "encode_payload",
    "parse_topic",
]

NAMESPACE = "spBv1.0"
NODE_TYPES = frozenset({"NBIRTH", "NDATA", "NDEATH", "NCMD"})
DEVICE_TYPES = frozenset({"DBIRTH", "DDATA", "DDEATH", "DCMD"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_UNIT_KEYS = ("engUnit", "engUnits", "unit")


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A parsed Sparkplug topic; for STATE, group is "" and edge_node holds the host id."""

    group: str
    message_type: str
    edge_node: str
    device: str | None


def _valid_id(part: str) -> bool:
    return bool(part) and "+" not in part and "#" not in part and "\x00" not in part


def parse_topic(topic: str) -> SparkplugTopic:
    """Parse a Sparkplug B topic or raise RejectedPayload('sparkplug_topic')."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE or not all(_valid_id(p) for p in parts[1:]):
        raise RejectedPayload("sparkplug_topic", "wrong namespace or empty/wildcard level")
    if len(parts) == 3 and parts[1] == "STATE":
        return SparkplugTopic("", "STATE", parts[2], None)
    if len(parts) not in (4, 5):
        raise RejectedPayload("sparkplug_topic", "wrong number of levels")
    group, message_type, edge_node = parts[1], parts[2], parts[3]
    if message_type in NODE_TYPES:
        if len(parts) != 4:
            raise RejectedPayload("sparkplug_topic", f"device id on {message_type}")
        return SparkplugTopic(group, message_type, edge_node, None)
    if message_type in DEVICE_TYPES:
        if len(parts) != 5:
            raise RejectedPayload("sparkplug_topic", f"no device id on {message_type}")
        return SparkplugTopic(group, message_type, edge_node, parts[4])
    raise RejectedPayload("sparkplug_topic", "unknown message type")


@dataclass(slots=True)
class _MetricInfo:
    name: str
    sensor_id: str
    datatype: int
    unit: str
    measurement: bool = False  # makes readings; decided once at birth

    def __post_init__(self) -> None:
        self.measurement = _is_measurement(self.name, self.datatype)


@dataclass(slots=True)
class _Metrics:
    """Name <-> alias map of one birth certificate (a node's or a device's)."""

    by_alias: dict[int, _MetricInfo] = field(default_factory=dict)
    by_name: dict[str, _MetricInfo] = field(default_factory=dict)
    online: bool = True

    def sensor_ids(self) -> list[str]:
        return [info.sensor_id for info in self.by_name.values() if info.measurement]


@dataclass(slots=True)
class _Node:
    bdseq: int | None
    seq: int
    metrics: _Metrics
    devices: dict[str, _Metrics] = field(default_factory=dict)
    online: bool = True


@dataclass(slots=True)
class SparkplugResult:
    """What one message did: readings, sensors gone offline/online, counters, rebirth wish."""

    readings: list[Reading] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)
    online: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    rebirth_needed: bool = False


def _is_measurement(name: str, datatype: int) -> bool:
    if name == "bdSeq" or name.startswith(("Node Control/", "Device Control/")):
        return False
    return datatype in _SIGNED_BITS or datatype in _UNSIGNED or (
        datatype in _FLOATS or datatype == _BOOLEAN
    )


def _metric_unit(metric: pb.Payload.Metric) -> str:
    if not metric.HasField("properties"):
        return ""
    props = metric.properties
    for key, value in zip(props.keys, props.values):
        if key in _UNIT_KEYS and value.WhichOneof("value") == "string_value":
            unit = value.string_value
            return unit[:32] if isinstance(unit, str) else ""
    return ""


def _metric_value(metric: pb.Payload.Metric, datatype: int) -> float | None:
    """The metric's value as a float, or None when it is not a number."""
    kind = metric.WhichOneof("value")
    if kind is None:
        return None
    if datatype in _SIGNED_BITS:
        bits = _SIGNED_BITS[datatype]
        raw = metric.long_value if kind == "long_value" else metric.int_value if kind == "int_value" else None
        if raw is None:
            return None
        raw &= (1 << bits) - 1  # accept both sign-extended and width-truncated encodings
        return float(raw - (1 << bits) if raw >> (bits - 1) else raw)
    if datatype in _UNSIGNED:
        if kind in ("int_value", "long_value"):
            return float(getattr(metric, kind))
        return None
    if datatype in _FLOATS:
        if kind in ("float_value", "double_value"):
            return float(getattr(metric, kind))
        return None
    if datatype == _BOOLEAN and kind == "boolean_value":
        return 1.0 if metric.boolean_value else 0.0
    return None


def _ms_to_datetime(ms: int) -> datetime | None:
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return None


class SparkplugState:
    """Host-application view of Sparkplug edge nodes; feed it every message with handle()."""

    def __init__(
        self, sensor_map: Mapping[str, str] | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        """``sensor_map`` maps ``<edge_node>[/<device>]/<metric>`` to registry sensor ids."""
        self._sensor_map: Mapping[str, str] = sensor_map or {}
        self._max_bytes = max_bytes
        self._nodes: dict[tuple[str, str], _Node] = {}

    def is_online(self, group: str, edge_node: str, device: str | None = None) -> bool:
        """Whether a node (or one of its devices) has a live birth."""
        node = self._nodes.get((group, edge_node))
        if node is None or not node.online:
            return False
        if device is None:
            return True
        metrics = node.devices.get(device)
        return metrics is not None and metrics.online

    def handle(self, topic: str, payload: bytes, received_at: datetime) -> SparkplugResult:
        """Apply one message; raise RejectedPayload for a bad topic or undecodable payload."""
        parsed = parse_topic(topic)
        result = SparkplugResult()
        kind = parsed.message_type
        if kind == "STATE" or kind in ("NCMD", "DCMD"):
            result.counts["state" if kind == "STATE" else "command"] += 1
            return result
        if len(payload) > self._max_bytes:
            raise RejectedPayload("too_large", f"{len(payload)} > {self._max_bytes} bytes")
        try:
            message = pb.Payload.FromString(payload)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise RejectedPayload("sparkplug_payload", type(exc).__name__) from None
        sent_at = _ms_to_datetime(message.timestamp) if message.HasField("timestamp") else None
        default_ts = sent_at or received_at
        key = (parsed.group, parsed.edge_node)
        if kind == "NBIRTH":
            self._node_birth(key, parsed, message, default_ts, result)
        elif kind == "NDEATH":
            self._node_death(key, message, result)
        else:
            node = self._nodes.get(key)
            if node is None or not node.online:
                result.counts["no_birth"] += 1
                result.rebirth_needed = True
                return result
            self._check_seq(node, message, result)
            if kind == "NDATA":
                self._data(node.metrics, message, default_ts, result)
            elif kind == "DBIRTH":
                self._device_birth(node, parsed, message, default_ts, result)
            elif kind == "DDATA":
                device = node.devices.get(parsed.device or "")
                if device is None or not device.online:
                    result.counts["no_birth"] += 1
                    result.rebirth_needed = True
                    return result
                self._data(device, message, default_ts, result)
            else:  # DDEATH
                device = node.devices.get(parsed.device or "")
                if device is None or not device.online:
                    result.counts["death_without_birth"] += 1
                else:
                    device.online = False
                    result.offline.extend(device.sensor_ids())
        return result

    # -- births and deaths -------------------------------------------------------------

    def _sensor_id(self, edge_node: str, device: str | None, name: str) -> str:
        raw = f"{edge_node}/{device}/{name}" if device is not None else f"{edge_node}/{name}"
        return self._sensor_map.get(raw, raw)

    def _birth_metrics(
        self,
        parsed: SparkplugTopic,
        message: pb.Payload,
        default_ts: datetime,
        result: SparkplugResult,
    ) -> _Metrics:
        metrics = _Metrics()
        for metric in message.metrics:
            if not metric.name or not isinstance(metric.name, str):
                # proto2 strings are not UTF-8 checked: upb hands back bytes for bad text
                result.counts["bad_birth_metric"] += 1
                continue
            info = _MetricInfo(
                metric.name,
                self._sensor_id(parsed.edge_node, parsed.device, metric.name),
                metric.datatype,
                _metric_unit(metric),
            )
            metrics.by_name[info.name] = info
            if metric.HasField("alias"):
                metrics.by_alias[metric.alias] = info
            self._emit(info, metric, default_ts, result)
        result.online.extend(metrics.sensor_ids())
        return metrics

    def _node_birth(
        self,
        key: tuple[str, str],
        parsed: SparkplugTopic,
        message: pb.Payload,
        default_ts: datetime,
        result: SparkplugResult,
    ) -> None:
        old = self._nodes.get(key)
        if old is not None and old.online:
            result.offline.extend(_all_sensor_ids(old, online_only=True))
        bdseq: int | None = None
        for metric in message.metrics:
            if metric.name == "bdSeq" and metric.WhichOneof("value") in ("long_value", "int_value"):
                bdseq = getattr(metric, metric.WhichOneof("value"))
        if not message.HasField("seq"):
            result.counts["seq_missing"] += 1
        metrics = self._birth_metrics(parsed, message, default_ts, result)
        self._nodes[key] = _Node(bdseq=bdseq, seq=message.seq % 256, metrics=metrics)
        # Sensors both in the old session and the new birth are online, not offline.
        if result.offline:
            reborn = set(result.online)
            result.offline = [s for s in result.offline if s not in reborn]

    def _device_birth(
        self,
        node: _Node,
        parsed: SparkplugTopic,
        message: pb.Payload,
        default_ts: datetime,
        result: SparkplugResult,
    ) -> None:
        metrics = self._birth_metrics(parsed, message, default_ts, result)
        node.devices[parsed.device or ""] = metrics

    def _node_death(self, key: tuple[str, str], message: pb.Payload, result: SparkplugResult) -> None:
        node = self._nodes.get(key)
        if node is None or not node.online:
            result.counts["death_without_birth"] += 1
            return
        bdseq: int | None = None
        for metric in message.metrics:
            if metric.name == "bdSeq" and metric.WhichOneof("value") in ("long_value", "int_value"):
                bdseq = getattr(metric, metric.WhichOneof("value"))
        if bdseq is not None and node.bdseq is not None and bdseq != node.bdseq:
            result.counts["stale_death"] += 1
            return
        result.offline.extend(_all_sensor_ids(node, online_only=True))
        node.online = False
        node.metrics.online = False
        for device in node.devices.values():
            device.online = False

    # -- data --------------------------------------------------------------------------

    @staticmethod
    def _check_seq(node: _Node, message: pb.Payload, result: SparkplugResult) -> None:
        if not message.HasField("seq"):
            result.counts["seq_missing"] += 1
            return
        seq = message.seq
        expected = (node.seq + 1) % 256
        if seq != expected:
            result.counts["seq_gap"] += 1
        elif seq == 0:
            result.counts["seq_wrap"] += 1
        node.seq = seq % 256

    def _data(
        self,
        metrics: _Metrics,
        message: pb.Payload,
        default_ts: datetime,
        result: SparkplugResult,
    ) -> None:
        for metric in message.metrics:
            if metric.HasField("alias"):
                info = metrics.by_alias.get(metric.alias)
                if info is None:
                    result.counts["unknown_alias"] += 1
                    result.rebirth_needed = True
                    continue
            else:
                info = metrics.by_name.get(metric.name)
                if info is None:
                    result.counts["unknown_metric"] += 1
                    result.rebirth_needed = True
                    continue
            self._emit(info, metric, default_ts, result)

    @staticmethod
    def _emit(
        info: _MetricInfo,
        metric: pb.Payload.Metric,
        default_ts: datetime,
        result: SparkplugResult,
    ) -> None:
        if not info.measurement:
            return
        if metric.is_null:
            result.counts["null_value"] += 1
            return
        if metric.is_historical:
            result.counts["historical"] += 1
            return
        datatype = metric.datatype if metric.HasField("datatype") else info.datatype
        value = _metric_value(metric, datatype)
        if value is None or not math.isfinite(value):
            result.counts["non_numeric"] += 1
            return
        ts = default_ts
        if metric.HasField("timestamp"):
            parsed_ts = _ms_to_datetime(metric.timestamp)
            if parsed_ts is None:
                result.counts["bad_timestamp"] += 1
                return
            ts = parsed_ts
        result.readings.append(Reading(info.sensor_id, info.name, value, info.unit, ts, "sparkplug"))


def _all_sensor_ids(node: _Node, *, online_only: bool) -> list[str]:
    ids = node.metrics.sensor_ids() if (node.metrics.online or not online_only) else []
    for device in node.devices.values():
        if device.online or not online_only:
            ids.extend(device.sensor_ids())
    return ids
