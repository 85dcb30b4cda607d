"""The dispatch timers, run every few seconds by the `dispatch` service with `now` passed in:

- acceptance timeouts: a dispatched ticket not accepted within the timeout is expired (action
  ``expire``, back to the pool), which the change watcher turns into the next candidate;
- GPS arrival: the assigned crew's vehicle within the radius of the ticket, with a fix taken after
  the dispatch, is recorded once per dispatch (``dsp:arrivals`` and a ``note`` with data
  ``gps_arrival``) and used as the arrival time by `command.limits.escalation`;
- escalation: tickets at a warning share or overdue on a time limit are shown as ticket alarms
  (``dsp:alarms``), updated when the level changes and cleared when no longer due.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from command import dispatch as domain
from command.errors import CommandError, Conflict
from command.limit_steps import alarm_text, step_of
from command.limits import alarms as limit_alarms, escalation
from command.ticket_model import SYSTEM_ACTOR, State, Ticket
from gis.crs import distance_m
from services.dispatch import DispatchManager

log = logging.getLogger(__name__)

ARRIVAL_STATES = (State.DISPATCHED, State.ACCEPTED, State.EN_ROUTE)
QUEUE_SCAN = 2000  # earliest deadlines read per limit length


class DispatchTimers:
    """Acceptance timeouts, GPS arrivals and escalation alarms over the stored tickets."""

    def __init__(self, dispatch: DispatchManager, *, arrival_radius_m: float = 100.0) -> None:
        self.dispatch = dispatch
        self.tickets = dispatch.tickets
        self.store = dispatch.store
        self.arrival_radius_m = arrival_radius_m

    async def tick(self, now: datetime | None = None) -> dict[str, int]:
        """One round of every timer; counts of what happened."""
        now = now or self.dispatch.clock()
        return {"expired": await self.check_acceptance(now), "arrived": await self.check_arrivals(now),
                "alarms": await self.check_escalation(now)}

    async def _records(self, states: tuple[State, ...]):
        numbers: list[str] = []
        for state in states:
            numbers += await self.tickets.store.index(f"state:{state.value}")
        return [r for r in await self.tickets.store.get_many(numbers) if r is not None]

    # ------------------------------------------------------------------ acceptance
    async def check_acceptance(self, now: datetime) -> int:
        """Expire dispatched tickets whose crew did not accept in time; how many."""
        expired = 0
        timeout = self.dispatch.accept_timeout_s
        for record in await self._records((State.DISPATCHED,)):
            ticket = record.ticket
            if not domain.acceptance_timed_out(ticket, now, timeout_s=timeout):
                continue
            try:
                await self.tickets.act(ticket.number, "expire", {"note": f"超过 {timeout:.0f} 秒未接单"},
                                       SYSTEM_ACTOR, expected_version=ticket.version)
                expired += 1
            except (Conflict, CommandError) as exc:  # accepted or changed meanwhile
                log.info("acceptance timeout of %s not applied: %s", ticket.number, exc)
        return expired

    # ------------------------------------------------------------------ GPS arrival
    async def check_arrivals(self, now: datetime) -> int:
        """Record GPS arrivals of assigned vehicles within the radius; how many new."""
        records = [r for r in await self._records(ARRIVAL_STATES) if r.ticket.crew_id and r.ticket.lon is not None]
        if not records:
            return 0
        await self.dispatch.crews.refresh()  # a crew's vehicle may have been changed by an admin
        known = await self.store.arrivals([r.ticket.number for r in records])
        count = 0
        for record in records:
            ticket = record.ticket
            previous = known.get(ticket.number)
            if previous is not None and previous.get("dispatched_at") == _ts(ticket.dispatched_at):
                continue
            info = self.dispatch.crews.get(ticket.crew_id or "")
            if info is None:
                continue
            vehicle = await self.dispatch.crews.store.vehicle(info.vehicle_id, now=now.timestamp())
            fix = None if vehicle is None else vehicle.get("fix")
            if fix is None or ticket.dispatched_at is None or fix["t"] < ticket.dispatched_at.timestamp():
                continue
            gap = float(distance_m(fix["lon"], fix["lat"], ticket.lon, ticket.lat))
            if gap > self.arrival_radius_m:
                continue
            at = datetime.fromtimestamp(fix["t"], timezone.utc)
            arrival = {"at": fix["t"], "crew_id": ticket.crew_id, "vehicle_id": info.vehicle_id,
                       "distance_m": round(gap, 1), "dispatched_at": _ts(ticket.dispatched_at)}
            await self.store.put_arrival(ticket.number, arrival)
            try:
                await self.tickets.act(ticket.number, "note", {
                    "note": f"车辆 {info.vehicle_id} GPS 到达现场（距 {gap:.0f} 米）",
                    "data": {"gps_arrival": at.isoformat(), "crew_id": ticket.crew_id,
                             "vehicle_id": info.vehicle_id, "distance_m": round(gap, 1)}},
                    SYSTEM_ACTOR, expected_version=None)
            except Conflict:
                log.info("GPS arrival note of %s not written (concurrent change)", ticket.number)
            count += 1
        return count

    async def gps_arrival(self, ticket: Ticket) -> datetime | None:
        """The vehicle's GPS arrival of the ticket's current dispatch, if recorded."""
        found = (await self.store.arrivals([ticket.number])).get(ticket.number)
        return _arrival_time(found, ticket)

    # ------------------------------------------------------------------ escalation
    async def check_escalation(self, now: datetime) -> int:
        """Raise, update or clear time-limit alarms; the number of alarms shown afterwards."""
        policy = self.tickets.policy
        share = policy.warn_share
        now_s = now.timestamp()
        heads = await self.tickets.store.queue_heads(QUEUE_SCAN)
        due = {number for limit_s, entries in heads.items() for number, _, deadline in entries
               if deadline - now_s <= (1.0 - share) * limit_s}
        numbers = sorted(due)
        records = [r for r in await self.tickets.store.get_many(numbers) if r is not None]
        arrivals = await self.store.arrivals(numbers)
        wanted: dict[str, dict[str, Any]] = {}
        for record in records:
            ticket = record.ticket
            arrived = _arrival_time(arrivals.get(ticket.number), ticket)
            route = self.tickets.routing.kind(ticket.type)
            for status in limit_alarms(escalation(ticket, now, arrived_at=arrived, policy=policy)):
                stage = status.stage.value
                step = step_of(status.stage, route, ticket.state)  # 交办/受理/反馈 for a unit, never a crew
                wanted[f"{ticket.number}|{stage}"] = {
                    "alarm_id": f"{ticket.number}|{stage}", "number": ticket.number, "kind": "limit",
                    "what": stage, "level": status.level.value, "deadline": status.deadline.timestamp(),
                    "limit_s": status.limit.total_seconds(), "used_share": round(status.used_share, 4),
                    "urgency": ticket.urgency.value, "crew_id": ticket.crew_id, "route": route.value,
                    "step": step.value, "unit_id": ticket.unit_id, "text": alarm_text(step, status.level)}
        shown = {k: v for k, v in (await self.store.ticket_alarms()).items() if v.get("kind") == "limit"}
        raise_ = []
        for alarm_id, alarm in wanted.items():
            old = shown.get(alarm_id)
            if old is None or old.get("level") != alarm["level"] or old.get("step") != alarm["step"]:
                raise_.append({**alarm, "raised_at": now_s if old is None else old.get("raised_at", now_s)})
        await self.store.raise_alarms(raise_)
        await self.store.clear_alarms([a for a in shown if a not in wanted], now)
        return len(wanted)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _arrival_time(found: dict[str, Any] | None, ticket: Ticket) -> datetime | None:
    if found is None or found.get("dispatched_at") != _ts(ticket.dispatched_at):
        return None
    return datetime.fromtimestamp(float(found["at"]), timezone.utc)
