"""The sensor and alarm part of the store (keys listed in store/live.py's docstring):
registry, latest readings and history, unknown readings, alarms, their event stream and
acknowledgement requests. Mixed into ``store.live.Store``; nobody else spells these keys."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import orjson

LIVE_ALARMS = "live:alarms"
ALARM_EVENTS = "alarms:events"
ALARM_EVENTS_MAX = 100_000
ALARM_ACKS = "alarms:acks"
REGISTRY_FIELDS = ("name", "kind", "quantity", "unit", "asset_id", "period_s", "low_critical",
                   "low_warning", "high_warning", "high_critical", "deadband", "min_duration_s",
                   "lon", "lat", "rated_kva", "sparkplug")


def _opt(raw: Mapping[str, str], key: str) -> float | None:
    value = raw.get(key)
    return None if value in (None, "") else float(value)


def sensor_view(row: Mapping[str, str], raw: Mapping[str, str]) -> dict[str, Any]:
    """The API shape of a sensor: registry values (typed) and its latest reading, if any."""
    view: dict[str, Any] = {"id": row.get("sensor_id"), **{k: row.get(k) or None for k in
                            ("name", "kind", "quantity", "unit", "asset_id", "sparkplug")}}
    for key in ("period_s", "low_critical", "low_warning", "high_warning", "high_critical",
                "deadband", "min_duration_s", "lon", "lat", "rated_kva"):
        view[key] = _opt(row, key)
    reading = None
    if raw.get("value") not in (None, ""):
        reading = {"value": float(raw["value"]), "unit": raw.get("unit") or None,
                   "quantity": raw.get("quantity") or None, "ts": _opt(raw, "ts"),
                   "received_at": _opt(raw, "received_at"), "source": raw.get("source") or None}
    view["reading"] = reading
    view["link"] = raw.get("link") or None
    view["link_at"] = _opt(raw, "link_at")
    return view


def alarm_fields(alarm: Any) -> dict[str, Any]:
    """Flat fields of an alarm snapshot (``ingest.alarms.Alarm``), times as UTC epoch seconds."""
    def ts(value: Any) -> float | None:
        return None if value is None else value.timestamp()
    return {"alarm_id": alarm.alarm_id, "sensor_id": alarm.sensor_id, "kind": alarm.kind,
            "severity": alarm.severity, "state": alarm.state, "raised_at": ts(alarm.raised_at),
            "acked_at": ts(alarm.acked_at), "acked_by": alarm.acked_by,
            "cleared_at": ts(alarm.cleared_at), "value": alarm.value, "threshold": alarm.threshold}


def alarm_view(raw: Mapping[str, str]) -> dict[str, Any]:
    """The API shape of a stored alarm hash."""
    return {"alarm_id": raw.get("alarm_id"), "sensor_id": raw.get("sensor_id"), "kind": raw.get("kind"),
            "severity": raw.get("severity"), "state": raw.get("state"),
            "raised_at": _opt(raw, "raised_at"), "acked_at": _opt(raw, "acked_at"),
            "acked_by": raw.get("acked_by") or None, "cleared_at": _opt(raw, "cleared_at"),
            "value": _opt(raw, "value"), "threshold": _opt(raw, "threshold")}


class SensorStoreMixin:
    """Sensor registry, readings and alarms; needs ``self.redis`` (a decoding redis.asyncio client)."""

    async def replace_sensor_registry(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Replace the sensor registry with ``rows`` (dicts with ``sensor_id`` and REGISTRY_FIELDS)."""
        rows = list(rows)
        old = await self.redis.smembers("sensor:ids")
        new = {str(r["sensor_id"]) for r in rows}
        pipe = self.redis.pipeline(transaction=True)
        for sid in old - new:
            pipe.delete(f"sensor:{sid}")
        for row in rows:
            sid = str(row["sensor_id"])
            pipe.delete(f"sensor:{sid}")
            pipe.hset(f"sensor:{sid}", mapping={"sensor_id": sid, **{
                k: "" if row.get(k) is None else str(row[k]) for k in REGISTRY_FIELDS}})
        pipe.delete("sensor:ids")
        if new:
            pipe.sadd("sensor:ids", *new)
        await pipe.execute()
        return len(new)

    async def sensor_registry(self) -> list[dict[str, str]]:
        """The registry rows as stored (strings; empty string for a missing value), by id."""
        ids = sorted(await self.redis.smembers("sensor:ids"))
        pipe = self.redis.pipeline(transaction=False)
        for sid in ids:
            pipe.hgetall(f"sensor:{sid}")
        return [raw for raw in await pipe.execute() if raw]

    async def write_sensor_batch(self, *, latest: Mapping[str, Mapping[str, Any]],
                                 history: Iterable[tuple[str, float, float]],
                                 unknown: Iterable[Mapping[str, Any]],
                                 links: Mapping[str, tuple[str, float]],
                                 events: Iterable[Mapping[str, Any]],
                                 history_max: int, unknown_max: int) -> None:
        """Write one batch of sensor output in a single pipeline, events in their order.

        ``latest``: sensor id -> latest reading fields; ``history``: (sensor id, ts, value);
        ``unknown``: readings of unregistered sensors; ``links``: sensor id -> (online|offline, at);
        ``events``: alarm events as from ``alarm_fields`` plus ``type`` and ``at``.
        """
        pipe = self.redis.pipeline(transaction=False)
        for sid, fields in latest.items():
            pipe.hset(f"sensorval:{sid}", mapping={k: "" if v is None else str(v) for k, v in fields.items()})
        for sid, ts, value in history:
            pipe.xadd(f"sensorhist:{sid}", {"ts": repr(ts), "v": repr(value)}, maxlen=history_max,
                      approximate=True)
        unknown = list(unknown)
        if unknown:
            pipe.lpush("sensor:unknown", *[orjson.dumps(dict(u)) for u in unknown])
            pipe.ltrim("sensor:unknown", 0, unknown_max - 1)
            for u in unknown:
                pipe.hincrby("sensor:unknown_ids", str(u["sensor_id"]), 1)
        for sid, (link, at) in links.items():
            pipe.hset(f"sensorval:{sid}", mapping={"link": link, "link_at": repr(at)})
        for event in events:
            aid = event["alarm_id"]
            data = orjson.dumps(dict(event))
            fields = {k: "" if v is None else str(v) for k, v in event.items() if k not in ("type", "at")}
            pipe.hset(f"alarm:{aid}", mapping=fields)
            if event["state"] == "cleared" and event.get("acked_at") is not None:
                pipe.zrem("alarms:shown", aid)
            else:
                pipe.zadd("alarms:shown", {aid: float(event["raised_at"])})
            pipe.xadd(ALARM_EVENTS, {"type": event["type"], "alarm_id": aid, "at": repr(event["at"]),
                                     "alarm": data}, maxlen=ALARM_EVENTS_MAX, approximate=True)
            pipe.publish(LIVE_ALARMS, data)
        if len(pipe):
            await pipe.execute()

    async def sensors(self) -> list[dict[str, Any]]:
        """Every registered sensor with its latest reading and link state."""
        rows = await self.sensor_registry()
        pipe = self.redis.pipeline(transaction=False)
        for row in rows:
            pipe.hgetall(f"sensorval:{row['sensor_id']}")
        return [sensor_view(row, raw) for row, raw in zip(rows, await pipe.execute())]

    async def sensor(self, sensor_id: str, history: int = 50) -> dict[str, Any] | None:
        """One sensor: registry, latest reading, recent readings (newest first), shown alarms."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(f"sensor:{sensor_id}")
        pipe.hgetall(f"sensorval:{sensor_id}")
        pipe.xrevrange(f"sensorhist:{sensor_id}", count=history)
        for kind in ("high", "low", "no_data"):
            pipe.hgetall(f"alarm:{sensor_id}:{kind}")
        row, raw, hist, *alarms = await pipe.execute()
        if not row:
            return None
        view = sensor_view(row, raw)
        view["history"] = [{"ts": float(f["ts"]), "value": float(f["v"])} for _id, f in hist]
        view["alarms"] = [alarm_view(a) for a in alarms if a]
        return view

    async def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        """One alarm (its latest incarnation), or None."""
        raw = await self.redis.hgetall(f"alarm:{alarm_id}")
        return alarm_view(raw) if raw else None

    async def alarms(self, state: str | None = None) -> list[dict[str, Any]]:
        """Alarms still shown, oldest first; ``state`` 'active' keeps raised/acknowledged ones,
        any other state name keeps that state only."""
        ids = await self.redis.zrange("alarms:shown", 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for aid in ids:
            pipe.hgetall(f"alarm:{aid}")
        views = [alarm_view(raw) for raw in await pipe.execute() if raw]
        if state == "active":
            return [v for v in views if v["state"] != "cleared"]
        return [v for v in views if state in (None, "", v["state"])]

    async def request_alarm_ack(self, alarm_id: str, user: str, at: float) -> str:
        """Queue an acknowledgement for the ingest that owns the alarm state; return its id."""
        return await self.redis.xadd(ALARM_ACKS, {"alarm_id": alarm_id, "user": user, "at": repr(at)},
                                     maxlen=10_000, approximate=True)

    async def read_alarm_acks(self, after: str, block_ms: int = 1000) -> list[tuple[str, dict[str, str]]]:
        """Acknowledgement requests after stream id ``after`` (blocking up to block_ms)."""
        reply = await self.redis.xread({ALARM_ACKS: after}, count=100, block=block_ms)
        return [(entry_id, fields) for _stream, entries in reply for entry_id, fields in entries]

    async def acks_cursor(self) -> str:
        """The id of the last acknowledgement request applied ("0-0" before any)."""
        return await self.redis.get("ingest:acks_cursor") or "0-0"

    async def set_acks_cursor(self, entry_id: str) -> None:
        """Remember the last applied acknowledgement request."""
        await self.redis.set("ingest:acks_cursor", entry_id)

    async def alarm_events(self, count: int = 100) -> list[dict[str, Any]]:
        """The latest alarm events, oldest first (the command side uses a consumer group instead)."""
        entries = await self.redis.xrevrange(ALARM_EVENTS, count=count)
        return [{"id": eid, **orjson.loads(f["alarm"])} for eid, f in reversed(entries)]

    async def unknown_readings(self, limit: int = 100) -> dict[str, Any]:
        """Readings kept aside from sensors not in the registry: latest first, and counts per id."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange("sensor:unknown", 0, limit - 1)
        pipe.hgetall("sensor:unknown_ids")
        recent, counts = await pipe.execute()
        return {"readings": [orjson.loads(r) for r in recent],
                "counts": {k: int(v) for k, v in sorted(counts.items())}}
