"""Sensors and their alarms: registry with latest readings, alarm list and acknowledgement."""
from __future__ import annotations

import asyncio
import time

from web.base import ApiError, BaseHandler
from web.handlers.vehicles import iso

READ_ROLES = ("dispatcher", "supervisor", "agent")
ACK_ROLES = ("dispatcher", "supervisor")
ACK_WAIT_S = 3.0  # how long the request waits for the ingest to apply the acknowledgement
ALARM_STATES = ("", "active", "raised", "acknowledged", "cleared")


class SensorList(BaseHandler):
    """GET /api/sensors: every registered sensor with its latest reading and link state."""

    async def get(self) -> None:
        self.require(*READ_ROLES)
        sensors = await self.store.sensors()
        kind = self.get_argument("kind", "")
        if kind:
            sensors = [s for s in sensors if s["kind"] == kind]
        self.write_json({"sensors": sensors, "count": len(sensors), "now": iso(self.store.clock.now())})


class SensorDetail(BaseHandler):
    """GET /api/sensors/<id>: registry entry, latest reading, recent readings and alarms."""

    async def get(self, sensor_id: str) -> None:
        self.require(*READ_ROLES)
        view = await self.store.sensor(sensor_id)
        if view is None:
            raise ApiError(404, "sensor_not_found", f"no sensor {sensor_id}")
        self.write_json(view)


class UnknownReadings(BaseHandler):
    """GET /api/sensors/unknown: readings kept aside from sensors the registry does not know."""

    async def get(self) -> None:
        self.require(*READ_ROLES)
        raw = self.get_argument("limit", "100")
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 1000):
            raise ApiError(400, "validation_error", "limit must be 1..1000", field="limit")
        self.write_json(await self.store.unknown_readings(int(raw)))


class AlarmList(BaseHandler):
    """GET /api/alarms?state=active|raised|acknowledged|cleared: alarms still shown, oldest first."""

    async def get(self) -> None:
        self.require(*READ_ROLES)
        state = self.get_argument("state", "")
        if state not in ALARM_STATES:
            raise ApiError(400, "bad_state", f"state must be one of {', '.join(s for s in ALARM_STATES if s)}")
        alarms = await self.store.alarms(state or None)
        self.write_json({"alarms": alarms, "count": len(alarms)})


class AlarmAck(BaseHandler):
    """POST /api/alarms/<id>/ack: acknowledge as the logged-in user (recorded with the time).

    The ingest that owns the alarm state applies it; 200 with the alarm once applied, 202 when
    it is still queued after a few seconds (the ingest is busy or down).
    """

    async def post(self, alarm_id: str) -> None:
        account = self.require(*ACK_ROLES)
        alarm = await self.store.alarm(alarm_id)
        if alarm is None:
            raise ApiError(404, "alarm_not_found", f"no alarm {alarm_id}")
        if alarm["acked_at"] is not None:
            self.write_json({"alarm": alarm, "applied": True})
            return
        request_id = await self.store.request_alarm_ack(alarm_id, account.name, self.store.clock.now())
        deadline = time.monotonic() + ACK_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            alarm = await self.store.alarm(alarm_id)
            if alarm is not None and alarm["acked_at"] is not None:
                self.write_json({"alarm": alarm, "applied": True})
                return
        self.write_json({"alarm": alarm, "applied": False, "request_id": request_id}, status=202)


routes = [
    (r"/api/sensors", SensorList),
    (r"/api/sensors/unknown", UnknownReadings),
    (r"/api/sensors/([A-Za-z0-9_.-]{1,64})", SensorDetail),
    (r"/api/alarms", AlarmList),
    (r"/api/alarms/([A-Za-z0-9_.:-]{1,80})/ack", AlarmAck),
]
