"""Sensor readings at the ingest edge: registry, topic routing to the decoders, alarm state.

Plain JSON on ``scada/<sensor_id>/<quantity>`` goes to ``ingest.readings``; Sparkplug B on
``spBv1.0/...`` to ``ingest.sparkplug``. A decoded reading is looked up in the registry (the
city's ``sensors`` layer, kept in Redis), converted to the registered unit, remembered as the
sensor's latest reading and history, and judged by the pure alarm rules of ``ingest.alarms``
(``evaluate`` per reading, ``check_silence`` on a timer). Everything produced lands in a
``SensorBatch`` that the service writes to Redis in order with the vehicle fixes.

A reading from a sensor the registry does not know is kept aside (``SensorBatch.unknown``) and
counted ``rejected:unknown_sensor``; every other refusal is counted under its decoder reason.

Run ``python -m ingest.sensors PROFILE.toml`` to print the registry rows of a city profile as
JSON: the service does this in a child process so that the GIS stack (geopandas, pyproj) never
weighs on the long-running ingest process.
"""
from __future__ import annotations

import asyncio
import collections
import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from store.live import alarm_fields
from ingest.alarms import (Alarm, AlarmEvent, InvalidAcknowledgement, InvalidThresholds, SensorAlarmState,
                           Thresholds, acknowledge_sensor_alarm, check_silence, evaluate)
from ingest.readings import Reading, RejectedPayload, check_unit, decode_json_reading
from ingest.sparkplug import SparkplugState, encode_payload

__all__ = ["SensorSpec", "SensorRegistry", "SensorBatch", "SensorIngest", "rows_from_profile",
           "load_profile_rows", "rebirth_command", "MAX_FUTURE_S"]

MAX_FUTURE_S = 300.0  # a reading stamped further in the future than this is refused
_UTC = timezone.utc
_THRESHOLDS = ("low_critical", "low_warning", "high_warning", "high_critical")


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One registry entry: what the sensor measures, in which unit, and its alarm limits."""

    sensor_id: str
    name: str
    kind: str
    quantity: str
    unit: str
    asset_id: str
    period_s: float | None
    thresholds: Thresholds
    rated_kva: float | None = None
    sparkplug: str | None = None


def _number(value: Any) -> float | None:
    """A registry cell as a finite float, or None (empty, NaN, missing)."""
    if value is None or value == "":
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class SensorRegistry:
    """The sensors known to the center, by id, with the Sparkplug name map."""

    def __init__(self, specs: Iterable[SensorSpec] = ()):
        self.specs: dict[str, SensorSpec] = {s.sensor_id: s for s in specs}
        self.sparkplug_map = {s.sparkplug: s.sensor_id for s in self.specs.values() if s.sparkplug}

    def __len__(self) -> int:
        return len(self.specs)

    def get(self, sensor_id: str) -> SensorSpec | None:
        """The sensor's entry, or None when unknown."""
        return self.specs.get(sensor_id)

    def resolve(self, sensor_id: str) -> str:
        """A Sparkplug id ``node[/device]/metric`` as a registry id: an explicit ``sparkplug``
        mapping, else a device (or node) id that is itself a registered sensor id."""
        if sensor_id in self.specs:
            return sensor_id
        parts = sensor_id.split("/")
        if len(parts) == 3 and parts[1] in self.specs:
            return parts[1]
        if len(parts) >= 2 and parts[0] in self.specs:
            return parts[0]
        return sensor_id

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], *, deadband_pct: float = 2.0,
                  min_duration_s: float = 0.0) -> tuple["SensorRegistry", list[str]]:
        """Build the registry from rows (dicts of the sensors layer); return it and the problems of
        rows left out. A row without its own deadband gets ``deadband_pct`` % of its entry limit."""
        specs, problems = [], []
        for row in rows:
            sid = str(row.get("sensor_id") or "").strip()
            try:
                if not sid or "/" in sid:
                    raise ValueError("missing sensor_id or '/' in it")
                limits = {k: _number(row.get(k)) for k in _THRESHOLDS}
                deadband = _number(row.get("deadband"))
                if deadband is None:
                    entries = [w if w is not None else c for w, c in (
                        (limits["high_warning"], limits["high_critical"]),
                        (limits["low_warning"], limits["low_critical"]))]
                    entries = [v for v in entries if v is not None]
                    deadband = min((abs(v) for v in entries), default=0.0) * deadband_pct / 100.0
                duration = _number(row.get("min_duration_s"))
                thresholds = Thresholds(**limits, deadband=deadband,
                                        min_duration_s=min_duration_s if duration is None else duration)
                period = _number(row.get("period_s"))
                specs.append(SensorSpec(sid, str(row.get("name") or sid), str(row.get("kind") or "generic"),
                                        str(row.get("quantity") or ""), str(row.get("unit") or ""),
                                        str(row.get("asset_id") or ""), period if period and period > 0 else None,
                                        thresholds, _number(row.get("rated_kva")),
                                        str(row.get("sparkplug") or "") or None))
            except (InvalidThresholds, ValueError, TypeError) as exc:
                problems.append(f"sensor {sid or '?'}: {exc}")
        return cls(specs), problems


def rows_from_profile(profile: Path | str) -> list[dict[str, Any]]:
    """Registry rows from a city profile's ``sensors`` layer (lon/lat from the point, rated_kva
    joined from the ``transformers`` layer by asset_id). Loads only those two layers."""
    from gis.layers import load_layer
    from gis.profile import read_profile

    specs = read_profile(profile).layers
    frames = {kind: [load_layer(s) for s in specs if s.kind == kind] for kind in ("sensors", "transformers")}
    rated: dict[str, float] = {}
    for frame in frames["transformers"]:
        for asset, kva in zip(frame["asset_id"], frame["rated_kva"]):
            rated[str(asset)] = kva
    rows = []
    for frame in frames["sensors"]:
        columns = [c for c in frame.columns if c != frame.geometry.name]
        for record, geom in zip(frame[columns].to_dict("records"), frame.geometry):
            row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
            row["lon"], row["lat"] = (round(geom.x, 7), round(geom.y, 7)) if geom is not None else (None, None)
            row["rated_kva"] = row.get("rated_kva") or rated.get(str(row.get("asset_id")))
            rows.append({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return rows


async def load_profile_rows(profile: Path | str, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """``rows_from_profile`` in a child process (keeps the GIS stack out of this process)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "ingest.sensors", str(Path(profile).resolve()),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                cwd=str(Path(__file__).resolve().parent.parent))
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot read the sensors layer of {profile}: {err.decode(errors='replace')[-500:]}")
    return json.loads(out)


@dataclass
class SensorBatch:
    """Sensor output accumulated between two Redis writes (events in order)."""

    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[tuple[str, float, float]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, tuple[str, float]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.history) + len(self.unknown) + len(self.links) + len(self.events)


def event_record(event: AlarmEvent) -> dict[str, Any]:
    """An alarm event as the flat dict the store writes."""
    return {"type": event.type, "at": event.at.timestamp(), **alarm_fields(event.alarm)}


def rebirth_command(now_ms: int) -> bytes:
    """The NCMD payload asking an edge node to send its births again."""
    return encode_payload([("Node Control/Rebirth", None, True, "Boolean")], None, now_ms)


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, _UTC)


class SensorIngest:
    """Per-sensor latest reading and alarm state; feeds a SensorBatch."""

    def __init__(self, registry: SensorRegistry, started: float, *, max_bytes: int = 65536,
                 no_data_factor: float = 3.0):
        self.max_bytes = max_bytes
        self.no_data_factor = no_data_factor
        self.started = started
        self.states: dict[str, SensorAlarmState] = {}
        self.last_ts: dict[str, float] = {}
        self.set_registry(registry)

    def set_registry(self, registry: SensorRegistry) -> None:
        """Use a (re)loaded registry; alarm state of sensors still present is kept."""
        self.registry = registry
        self.sparkplug = getattr(self, "sparkplug", None) or SparkplugState(registry.sparkplug_map,
                                                                            max_bytes=self.max_bytes)
        self.sparkplug._sensor_map = registry.sparkplug_map  # noqa: SLF001 - same object, new map
        watch = _dt(self.started)
        for sid in registry.specs:
            if sid not in self.states:
                self.states[sid] = SensorAlarmState.new(sid, watch)

    def restore(self, alarms: Iterable[Mapping[str, Any]]) -> int:
        """Put back the shown alarms stored in Redis (``alarm_view`` dicts) after a restart."""
        restored = 0
        for a in alarms:
            state = self.states.get(a["sensor_id"])
            if state is None or a["kind"] not in ("high", "low", "no_data"):
                continue
            alarm = Alarm(a["alarm_id"], a["sensor_id"], a["kind"], a["severity"], a["state"],
                          _dt(a["raised_at"]), _dt(a["acked_at"]), a["acked_by"], _dt(a["cleared_at"]),
                          a["value"], a["threshold"] if a["threshold"] is not None else 0.0)
            self.states[a["sensor_id"]] = state._replace(**{a["kind"]: alarm})
            restored += 1
        return restored

    # messages -------------------------------------------------------------------------------
    def handle_scada(self, topic: str, payload: bytes, received_at: float, batch: SensorBatch,
                     stats: collections.Counter) -> None:
        """One plain JSON reading; refusals raise RejectedPayload (counted by the caller)."""
        reading = decode_json_reading(topic, payload, _dt(received_at), max_bytes=self.max_bytes)
        spec = self.registry.get(reading.sensor_id)
        if spec is not None and spec.quantity and reading.quantity != spec.quantity:
            raise RejectedPayload("quantity_mismatch", f"{reading.quantity} vs {spec.quantity}")
        self._take(reading, spec, received_at, topic, batch, stats)

    def handle_sparkplug(self, topic: str, payload: bytes, received_at: float, batch: SensorBatch,
                         stats: collections.Counter) -> tuple[str, str] | None:
        """One Sparkplug B message; returns (group, edge node) when the node must rebirth."""
        result = self.sparkplug.handle(topic, payload, _dt(received_at))
        for name, n in result.counts.items():
            stats["sparkplug:" + name] += n
        for sid in result.offline:
            sid = self.registry.resolve(sid)
            if sid in self.registry.specs:
                batch.links[sid] = ("offline", received_at)
        for sid in result.online:
            sid = self.registry.resolve(sid)
            if sid in self.registry.specs:
                batch.links[sid] = ("online", received_at)
        for reading in result.readings:
            sid = self.registry.resolve(reading.sensor_id)
            if sid != reading.sensor_id:
                reading = Reading(sid, reading.quantity, reading.value, reading.unit, reading.ts, reading.source)
            try:
                self._take(reading, self.registry.get(sid), received_at, topic, batch, stats)
            except RejectedPayload as exc:
                stats["rejected:" + exc.reason] += 1
        if result.rebirth_needed:
            parts = topic.split("/")
            return parts[1], parts[3]
        return None

    def _take(self, reading: Reading, spec: SensorSpec | None, received_at: float, topic: str,
              batch: SensorBatch, stats: collections.Counter) -> None:
        ts = reading.ts.timestamp()
        if ts > received_at + MAX_FUTURE_S:
            raise RejectedPayload("bad_ts", "in the future")
        if spec is None:
            stats["rejected:unknown_sensor"] += 1
            batch.unknown.append({"sensor_id": reading.sensor_id, "quantity": reading.quantity,
                                  "value": reading.value, "unit": reading.unit, "ts": ts,
                                  "received_at": received_at, "source": reading.source, "topic": topic[:200]})
            return
        reading = check_unit(reading, spec.unit, rated_kva=spec.rated_kva) if spec.unit else reading
        stats["readings_ok"] += 1
        sid = spec.sensor_id
        batch.history.append((sid, ts, reading.value))
        if ts >= self.last_ts.get(sid, -math.inf):
            self.last_ts[sid] = ts
            batch.latest[sid] = {"value": reading.value, "unit": reading.unit, "quantity": reading.quantity,
                                 "ts": ts, "received_at": received_at, "source": reading.source}
        state = self.states.get(sid) or SensorAlarmState.new(sid, _dt(self.started))
        state, events = evaluate(state, reading.value, reading.ts, spec.thresholds)
        self.states[sid] = state
        for event in events:
            batch.events.append(event_record(event))
            stats["alarm:" + event.type] += 1

    # timers and operators ---------------------------------------------------------------------
    def check_silence(self, now: float, batch: SensorBatch, stats: collections.Counter) -> None:
        """Raise ``no_data`` alarms for sensors silent past ``no_data_factor`` x their period."""
        when = _dt(now)
        for sid, spec in self.registry.specs.items():
            if spec.period_s is None:
                continue
            state = self.states.get(sid)
            if state is None:
                continue
            state, events = check_silence(state, when, spec.period_s, factor=self.no_data_factor)
            if events:
                self.states[sid] = state
                for event in events:
                    batch.events.append(event_record(event))
                    stats["alarm:no_data"] += 1

    def acknowledge(self, alarm_id: str, user: str, at: float, batch: SensorBatch,
                    stats: collections.Counter) -> bool:
        """Apply an operator's acknowledgement; False when there is no such alarm to acknowledge."""
        sid, _, kind = alarm_id.rpartition(":")
        state = self.states.get(sid)
        if state is None:
            stats["ack_unknown"] += 1
            return False
        try:
            state, events = acknowledge_sensor_alarm(state, kind, user, _dt(at))
        except InvalidAcknowledgement:
            stats["ack_unknown"] += 1
            return False
        self.states[sid] = state
        for event in events:
            batch.events.append(event_record(event))
            stats["alarm:acknowledged"] += 1
        return True


def main(argv: list[str] | None = None) -> int:
    """Print the registry rows of the city profile named on the command line, as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ingest.sensors PROFILE.toml", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(rows_from_profile(args[0]), ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
