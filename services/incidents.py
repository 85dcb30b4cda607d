"""IncidentService: an incident handled once (issue #24) over the ticket manager and the record.

- ETR (预计恢复时间): `set_etr` stores it in the incident's record, audits it on the incident
  (`incident_events`) and as a note on the primary ticket's timeline, and makes the active notice
  follow it, all in one transaction (`TicketStore.save`); then announces it on the live feed.
- Outage notice (停水/停电通知): `publish_notice` publishes or changes the incident's one notice
  (`command.outages`); `notices` lists them.
- Near: `near` gives the open incidents of a category whose calls lie within 300 m of a place,
  with their notice and the answer the agent reads to the caller.
- Resolution: `resolve` resolves every open call (`TicketManager.resolve_incident`), withdraws the
  notice and audits the resolution in the same transaction, then announces it; the crew resolving
  the incident's primary ticket resolves the incident with its resolution (`on_resolved`, called by
  the dispatch worker for each ``resolve`` change).

Every change of an incident writes the incident again with its revision + 1, so two changes of one
incident never both pass (the revision guard; a loser reads again and retries).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from store.incidents import IncidentStore
from store.ticket_records import GuardFailed, IncidentWrite, TicketWrite
from store.ticket_writes import Extra
from command import grouping, outages
from command.coordinates import check_point
from command.errors import Conflict, ValidationError
from command.outages import IncidentEvent, Notice
from command.tickets import apply
from command.ticket_model import SYSTEM_ACTOR, Actor, Category, State
from gis.crs import distance_m
from services.tickets import TicketManager
from services.ticket_core import RETRIES as _RETRIES, backoff as _backoff
from services.ticket_incidents import IncidentNotFound

_SCAN = 500  # open incidents looked at for a caller's place (the newest)


def incident_summary(incident: grouping.Incident, rev: int, action: str, notice: Notice | None) -> dict[str, Any]:
    """What the live feed says of a changed incident."""
    return {"incident_id": incident.incident_id, "rev": rev, "action": action, "status": incident.status.value,
            "category": incident.category.value, "calls": len(incident.ticket_numbers),
            "etr": None if incident.etr is None else incident.etr.isoformat().replace("+00:00", "Z"),
            "notice": notice is not None and notice.active}


class IncidentService:
    """ETR, outage notices, incidents near a caller, and the resolution cascade."""

    def __init__(self, tickets: TicketManager, store: IncidentStore | None = None) -> None:
        self.tickets = tickets
        self.store = store or IncidentStore(tickets.store.db, tickets.store.redis)

    async def _incident(self, incident_id: str) -> tuple[grouping.Incident, int]:
        return await self.tickets.incident(incident_id)  # IncidentNotFound (404)

    def area_name(self, incident: grouping.Incident) -> str | None:
        """The readable name of the incident's supply area (a segment's roads, a 台区's name), or
        None without a city or a name (`gis.lookup.SpatialLookup.area_name`)."""
        names = getattr(self.tickets.lookup, "area_name", None)
        return None if names is None else names(incident.supply_area)

    async def _addresses(self, incident: grouping.Incident) -> list[str]:
        records = await self.tickets.store.get_many(incident.ticket_numbers[:20])
        return [r.ticket.address for r in records if r is not None and r.ticket.address]

    # ETR -------------------------------------------------------------------------------------------
    async def set_etr(self, incident_id: str, etr: Any, note: Any, actor: Actor) -> tuple[grouping.Incident, int]:
        """Set or change the incident's ETR (`command.outages.set_etr`): the incident, an audit
        event, a note on the primary ticket and the active notice's new ETR in one transaction."""
        for attempt in range(_RETRIES):
            incident, rev = await self._incident(incident_id)
            primary = await self.tickets.store.get(incident.primary)
            now = self.tickets.clock()
            changed, event = outages.set_etr(incident, etr, note=note, actor=actor, now=now,
                                             primary_crew_id=primary.ticket.crew_id)
            ticket, noted = apply(primary.ticket, "note", actor=actor, now=now, note=event.note,
                                  data={"incident_id": incident.incident_id, "etr": event.data["etr"]})
            extra: list[Extra] = [self.store.event_write(event)]
            notice = await self.store.notice(incident.incident_id)
            if notice is not None and notice.active:
                notice, followed = outages.follow_etr(notice, changed, actor=actor, now=now)
                extra += [self.store.notice_write(notice), self.store.event_write(followed)]
            write = IncidentWrite(changed, rev + 1, incident)
            try:
                await self.tickets.store.save([TicketWrite(self.tickets._record(ticket, primary.meta), [noted], primary)],
                                              [write], extra)
            except (Conflict, GuardFailed):
                if attempt == _RETRIES - 1:
                    raise
                await _backoff(attempt)
                continue
            await self.store.publish([incident_summary(changed, rev + 1, "etr_set", notice)])
            return changed, rev + 1
        raise AssertionError("unreachable")

    # notices ---------------------------------------------------------------------------------------
    async def publish_notice(self, incident_id: str, body: Mapping[str, Any], actor: Actor) -> Notice:
        """Publish the incident's outage notice, or change it (area text, start, text)."""
        for attempt in range(_RETRIES):
            incident, rev = await self._incident(incident_id)
            current = await self.store.notice(incident.incident_id)
            if current is not None and not current.active:
                current = None  # withdrawn: a new one (the incident is open again only by a new call)
            notice, event = outages.publish_notice(incident, current, body, actor=actor, now=self.tickets.clock(),
                                                   addresses=await self._addresses(incident),
                                                   area_name=self.area_name(incident))
            try:
                await self.tickets.store.save([], [IncidentWrite(incident, rev + 1, incident)],
                                              [self.store.notice_write(notice), self.store.event_write(event)])
            except GuardFailed:
                if attempt == _RETRIES - 1:
                    raise
                await _backoff(attempt)
                continue
            await self.store.publish([incident_summary(incident, rev + 1, event.action, notice)])
            return notice
        raise AssertionError("unreachable")

    async def notices(self, *, active_only: bool = True, limit: int = 100) -> list[Notice]:
        """Outage notices, newest first."""
        return await self.store.notices(active_only=active_only, limit=limit)

    # the desk --------------------------------------------------------------------------------------
    async def near(self, lon: Any, lat: Any, category: Any, *, radius_m: float = outages.NEAR_M,
                   ) -> list[dict[str, Any]]:
        """The open incidents of `category` whose calls lie within `radius_m` of the place, nearest
        first: each with its distance, its calls' count, its notice and the answer for the caller."""
        lon, lat = check_point(lon, lat, self.tickets.service_area)
        try:
            wanted = Category(category)
        except ValueError:
            raise ValidationError("category", f"unknown category {category!r}") from None
        if not 0 < radius_m <= outages.MAX_NEAR_M:
            raise ValidationError("radius_m", f"must be within 0..{outages.MAX_NEAR_M:g}")
        candidates = [(i, rev) for i, rev in await self.tickets.incidents(open_only=True, limit=_SCAN)
                      if i.category is wanted]
        numbers = [n for i, _ in candidates for n in i.ticket_numbers]
        points: dict[str, tuple[float, float]] = {}
        for record in await self.tickets.store.get_many(numbers):
            if record is not None and record.ticket.lon is not None and record.ticket.lat is not None:
                points[record.ticket.number] = (record.ticket.lon, record.ticket.lat)
        found = outages.near_incidents(
            lon, lat, wanted, [(i, [points[n] for n in i.ticket_numbers if n in points]) for i, _ in candidates],
            radius_m=radius_m, distance_fn=distance_m)
        revs = dict((i.incident_id, rev) for i, rev in candidates)
        notices = await self.store.notices_of(i.incident_id for i, _ in found)
        return [{"incident": incident, "rev": revs[incident.incident_id], "distance_m": round(d, 1),
                 "notice": notices.get(incident.incident_id), "area_name": self.area_name(incident),
                 "answer": outages.answer_text(incident, notices.get(incident.incident_id), self.area_name(incident))}
                for incident, d in found]

    async def details(self, incident_id: str) -> dict[str, Any]:
        """The incident's notice, audit events and readable area name (for its detail view)."""
        notice = await self.store.notice(incident_id)
        incident, _ = await self._incident(incident_id)
        return {"notice": None if notice is None else outages.notice_to_dict(notice),
                "events": await self.store.events(incident_id), "area_name": self.area_name(incident),
                "answer": outages.answer_text(incident, notice, self.area_name(incident))}

    # resolution ------------------------------------------------------------------------------------
    async def on_resolved(self, number: str) -> grouping.Incident | None:
        """A ticket was resolved: when it is the primary of an unresolved incident (the crew fixed
        the fault), the incident is resolved with the ticket's resolution (by the system); else None."""
        record = await self.tickets.store.get(number)
        ticket = record.ticket
        if ticket.incident_id is None or ticket.state is not State.RESOLVED:
            return None
        found = await self.tickets.store.incident(ticket.incident_id)
        if found is None or found[0].resolved_at is not None or found[0].primary != number:
            return None
        return await self.resolve(ticket.incident_id, f"随主工单 {number} 办结：{ticket.resolution}"[:2000], SYSTEM_ACTOR)

    async def resolve(self, incident_id: str, resolution: Any, actor: Actor) -> grouping.Incident:
        """Resolve every open call of the incident, withdraw its notice and audit the resolution in
        one transaction; then tell the consoles. An incident resolved already is refused (400)."""
        if (await self._incident(incident_id))[0].resolved_at is not None:
            raise ValidationError("incident_id", f"incident {incident_id} is resolved already")
        withdrawn: list[Notice] = []

        async def extra(resolved: grouping.Incident) -> Sequence[Extra]:
            now = resolved.resolved_at or self.tickets.clock()
            writes = [self.store.event_write(IncidentEvent(
                resolved.incident_id, "resolved", actor.user_id, actor.role.value, now, str(resolution or "")[:500],
                {"calls": len(resolved.ticket_numbers)}))]
            withdrawn.clear()
            notice = await self.store.notice(resolved.incident_id)
            if notice is not None and notice.active:
                notice, event = outages.withdraw_notice(notice, actor=actor, now=now)
                withdrawn.append(notice)
                writes += [self.store.notice_write(notice), self.store.event_write(event)]
            return writes

        resolved = await self.tickets.resolve_incident(incident_id, resolution, actor, extra=extra)
        _, rev = await self._incident(incident_id)
        await self.store.publish([incident_summary(resolved, rev, "resolved", withdrawn[0] if withdrawn else None)])
        return resolved


__all__ = ["IncidentNotFound", "IncidentService", "incident_summary"]
