"""Sensor alarms → proactive repair tickets (主动抢修): where a sensor is, which alarms open a
ticket, the ticket manager's part that opens, notes and confirms them (`AlarmTickets`), and the
consumer of the alarm event stream.

An alarm event (from the sensor ingest, stream ``alarms:events``) has the fields ``type``
(raised | escalated | acknowledged | cleared) and ``alarm`` (JSON of ``ingest.alarms.Alarm``:
alarm_id, sensor_id, kind high|low|no_data, severity, value, threshold, raised_at, ...). A
critical raised or escalated alarm of these sensor kinds opens a ticket:

=================  ===========  ===================  ========
sensor kind        alarm kind   proactive kind       category
=================  ===========  ===================  ========
pressure           low          pressure_drop        water
transformer_load   high         transformer_overload power
transformer_load   low, or a    zero_load            power
                   value ≤ 0
=================  ===========  ===================  ========
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import redis.asyncio as aioredis

from store.sensors import ALARM_EVENTS
from store.streams import consume_group
from store.ticket_records import GuardFailed, IncidentWrite, TicketRecord
from command import grouping
from command.errors import CommandError, ValidationError
from command.ticket_model import SYSTEM_ACTOR, Category, Channel, TicketType
from command.tickets import apply
from services.ticket_core import RETRIES, backoff
from services.ticket_intake import ProactiveRef, TicketIntake

log = logging.getLogger(__name__)

CONSUMER_GROUP = "tickets"
PROACTIVE_TITLES = {"pressure_drop": "管网压力骤降", "transformer_overload": "配变过载", "zero_load": "配变零负荷（疑似停电）"}
_SENSOR_CATEGORY = {"pressure": Category.WATER, "flow": Category.WATER, "transformer_load": Category.POWER}


class AlarmEventError(ValueError):
    """An alarm event that cannot be read (missing or malformed fields)."""


@dataclass(frozen=True)
class SensorSite:
    """Where a sensor is and what it watches: its asset, category and supply area (the 台区, or for
    water the segment of its main, as a call there is grouped: `sensor_sites`)."""

    sensor_id: str
    name: str
    kind: str
    asset_id: str | None
    lon: float
    lat: float
    category: Category | None
    supply_area: str | None
    dma: str | None = None  # water: the DMA covering the sensor (a pressure point measures its DMA)
    unit: str = ""  # of its readings and limits (MPa, %, m³/h)


def sensor_sites(city: Any, lookup: Any) -> dict[str, SensorSite]:
    """The sensor registry of a loaded City, located: a transformer's 台区 by its asset, else the
    台区 covering the sensor's point; a water sensor (pressure, flow) in the valve-isolation
    segment of its main (its asset, `gis.network`), else of the main nearest its point, else in
    the DMA covering it: the supply area a water call there gets (`TicketManager._resolve`)."""
    sensors = city.sensors
    area_of_asset = dict(zip(city.supply_areas["asset_id"], city.supply_areas["area_id"]))
    out: dict[str, SensorSite] = {}
    for row, geom in zip(sensors.to_dict("records"), sensors.geometry):
        if geom is None or geom.is_empty:
            continue
        point = geom.representative_point()
        category = _SENSOR_CATEGORY.get(str(row.get("kind")))
        asset = None if row.get("asset_id") is None else str(row["asset_id"])
        area = dma = None
        if category is Category.POWER:
            area = area_of_asset.get(asset)
            if area is None and lookup is not None:
                area = lookup.locate(point.x, point.y).supply_area_id
        elif category is Category.WATER and lookup is not None:
            where = lookup.locate(point.x, point.y, "water")
            area = lookup.water.segment_of_main(asset) or where.segment_id or where.dma_id
            dma = where.dma_id
        out[str(row["sensor_id"])] = SensorSite(str(row["sensor_id"]), str(row.get("name") or ""),
                                                str(row.get("kind")), asset, float(point.x),
                                                float(point.y), category, area, dma,
                                                "" if row.get("unit") is None else str(row["unit"]))
    return out


def _with_unit(value: Any, unit: str) -> str:
    """A reading or limit with its unit, as a proactive ticket's description writes it: 0.063 MPa."""
    return f"{value} {unit}" if unit and value is not None else str(value)


def proactive_kind(site: SensorSite, alarm: Mapping[str, Any]) -> str | None:
    """The proactive repair kind of a critical alarm on this sensor, or None (no ticket)."""
    if alarm.get("severity") != "critical":
        return None
    kind, value = alarm.get("kind"), alarm.get("value")
    if site.kind == "pressure" and kind == "low":
        return "pressure_drop"
    if site.kind == "transformer_load":
        if kind == "low" or (kind == "high" and isinstance(value, (int, float)) and value <= 0):
            return "zero_load"
        if kind == "high":
            return "transformer_overload"
    return None


def parse_alarm_event(fields: Mapping[Any, Any]) -> tuple[str, dict[str, Any]]:
    """(type, alarm dict) of a stream entry; AlarmEventError when it is malformed."""
    text = {(k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
    kind = text.get("type")
    if kind not in ("raised", "escalated", "acknowledged", "cleared"):
        raise AlarmEventError(f"unknown alarm event type {kind!r}")
    try:
        alarm = orjson.loads(text.get("alarm") or "")
    except orjson.JSONDecodeError as exc:
        raise AlarmEventError(f"alarm is not JSON: {exc}") from None
    if not isinstance(alarm, dict) or not alarm.get("alarm_id") or not alarm.get("sensor_id"):
        raise AlarmEventError("alarm needs alarm_id and sensor_id")
    return kind, alarm


def alarm_time(alarm: Mapping[str, Any], name: str = "raised_at") -> datetime:
    """An aware UTC time field of an alarm (ISO-8601 with offset or Z, or epoch seconds)."""
    raw = alarm.get(name)
    try:
        if isinstance(raw, (int, float)):
            return datetime.fromtimestamp(float(raw), timezone.utc)
        parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise AlarmEventError(f"alarm {name} is not a time: {raw!r}") from None
    if parsed.tzinfo is None:
        raise AlarmEventError(f"alarm {name} has no UTC offset: {raw!r}")
    return parsed.astimezone(timezone.utc)


def alarm_key(alarm: Mapping[str, Any]) -> str:
    """Idempotency key of one alarm episode: alarm ids are reused after a clear, raised_at is not."""
    return f"{alarm['alarm_id']}@{int(alarm_time(alarm).timestamp())}"


class AlarmTickets(TicketIntake):
    """The ticket manager's proactive tickets: an alarm event opens, notes or confirms one."""

    async def on_alarm_event(self, event: Mapping[Any, Any]) -> TicketRecord | None:
        """Handle one alarm event: a critical raised/escalated alarm of a watched kind opens one
        proactive ticket at the asset (idempotent per alarm episode) and confirms its incident; a
        cleared alarm is noted on that ticket's timeline but does not close it."""
        kind, alarm = parse_alarm_event(event)
        site = self.sensors.get(str(alarm["sensor_id"]))
        if site is None or site.category is None:
            return None
        key = alarm_key(alarm)
        existing = await self.store.alarm_ticket(key)
        if kind == "cleared":
            if existing is not None:
                return await self._note_alarm(existing, alarm, "cleared")
            return None
        if kind not in ("raised", "escalated") or existing is not None:
            return None if existing is None else await self.store.get(existing)
        what = proactive_kind(site, alarm)
        if what is None:
            return None
        raised = alarm_time(alarm)
        if self.clock() - raised > self.alarm_max_age:
            return None
        fields = {"channel": Channel.SENSOR.value, "category": site.category.value,
                  "type": TicketType.REPAIR.value, "urgency": self.alarm_urgency.value,
                  "description": f"{PROACTIVE_TITLES[what]}：{site.name}（{site.sensor_id}）"
                                 f" 值 {_with_unit(alarm.get('value'), site.unit)}"
                                 f" 阈值 {_with_unit(alarm.get('threshold'), site.unit)}",
                  "address": site.name, "lon": site.lon, "lat": site.lat,
                  "alarm_id": str(alarm["alarm_id"])[:64]}
        try:
            result = await self.create(fields, SYSTEM_ACTOR, link=False,
                                       alarm=ProactiveRef(key, site.asset_id, site.supply_area, site.dma),
                                       tags=[what])
        except GuardFailed:
            return await self.store.get(await self.store.alarm_ticket(key) or "")
        if result.incident_id and site.supply_area:
            await self._confirm_incident(result.incident_id, alarm, site, raised)
        return result.record

    async def _confirm_incident(self, incident_id: str, alarm: Mapping[str, Any], site: SensorSite,
                                raised: datetime) -> None:
        ref = grouping.AlarmRef(str(alarm["alarm_id"]), site.asset_id or "", site.supply_area or "",
                                site.category or Category.OTHER, raised, site.dma)
        for attempt in range(RETRIES):
            incident, rev = await self.incident(incident_id)
            try:
                confirmed = grouping.add_alarm(incident, ref)
            except ValidationError:
                return  # the incident suspects another asset: the ticket stays its own call
            if confirmed == incident:
                return
            try:
                await self.store.save([], [IncidentWrite(confirmed, rev + 1, incident)])
                self._note_incident_writes([IncidentWrite(confirmed, rev + 1, incident)])
                return
            except GuardFailed:
                if attempt == RETRIES - 1:
                    raise
                await backoff(attempt)

    async def _note_alarm(self, number: str, alarm: Mapping[str, Any], what: str) -> TicketRecord:
        return await self._change(number, lambda previous: apply(
            previous.ticket, "note", actor=SYSTEM_ACTOR, now=self.clock(),
            note="传感器告警已恢复" if what == "cleared" else what,
            data={"alarm_id": str(alarm["alarm_id"]), "alarm": what}))


async def consume_alarms(manager: AlarmTickets, store_redis: aioredis.Redis, stop: asyncio.Event, *,
                         consumer: str | None = None, block_ms: int = 1000, batch: int = 100) -> None:
    """Feed alarm events to `manager.on_alarm_event` through the consumer group ``tickets``.

    Entries left pending by a crashed consumer are handled first; each entry is acknowledged
    (XACK) once handled. A malformed event is logged and acknowledged; a Redis failure is
    retried after a pause without acknowledging.
    """
    await consume_group(store_redis, ALARM_EVENTS, CONSUMER_GROUP, manager.on_alarm_event, stop,
                        skip=(AlarmEventError, CommandError), what="alarm consumer", consumer=consumer,
                        block_ms=block_ms, batch=batch)

