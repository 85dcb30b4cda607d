"""Incident grouping glue of the ticket manager (`command.grouping` does the rules): a new call
joined to its supply area's, feeder's or DMA's incident or opening one (`_group`), or to the
incident the agent chose (归入事件, `_attach`); the per-area lock and the early-read bookkeeping;
the note on a former primary's timeline; `promote_primary` after a primary was cancelled or
merged; `resolve_incident` (every open call at once); reading incidents."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from store.ticket_records import GuardFailed, IncidentWrite, TicketWrite
from store.ticket_writes import Extra
from command import grouping
from command.errors import CommandError, Conflict, NotFound, TicketNotFound, ValidationError
from command.ticket_model import (
    FIELD_STATES, OPEN_STATES, POOL_STATES, SYSTEM_ACTOR, Actor, AuditEvent, Category, Role, State, Ticket, center_day,
)
from command.tickets import apply
from services.ticket_core import RETRIES, TicketCore, backoff

log = logging.getLogger(__name__)
# a create's early read of its supply area: (area, its unresolved incidents with revisions, the
# process's counts of incident writes in that area and its feeder when read)
EarlyRead = tuple[str, list[tuple[grouping.Incident, int]], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Grouped:
    """A new call's grouping, not yet written: the call linked, its events, the incident writes,
    its incident (None: not grouped), and the calls of incidents it merged, linked again (`relinks`)."""

    ticket: Ticket
    events: list[AuditEvent]
    incident_writes: list[IncidentWrite]
    incident: grouping.Incident | None
    relinks: list[TicketWrite] = dataclasses.field(default_factory=list)


class IncidentNotFound(NotFound, LookupError):
    """No incident with this id (HTTP 404 ``incident_not_found``, by the one error contract)."""

    def __init__(self, incident_id: str) -> None:
        super().__init__("incident_not_found", f"incident {incident_id!r} not found")
        self.incident_id = incident_id


class TicketIncidents(TicketCore):
    """The ticket manager's incident grouping and incident-wide changes."""

    async def _group(self, ticket: Ticket, asset: str | None, early: EarlyRead | None = None, feeder: str | None = None,
                     dma: str | None = None) -> Grouped:
        """Join the call to its supply area's (or, for power, its `feeder`'s; for a water pressure
        alarm or burst call, its `dma`'s) incident, or open one (not yet written). `early`: (area,
        its incidents and revisions read with the create's reads, before the area lock,
        `_writes_of` the area and feeder or DMA at that time); a stale one is refused by the
        revision guard. An onset ticket that takes over as primary says so on its link event. A
        burst call that places a DMA's pressure drop on its segment merges the incident that
        symptom calls opened there before it (`_absorb`)."""
        if not grouping.groupable(ticket):
            return Grouped(ticket, [], [], None)
        area = ticket.supply_area or ""
        feeder = feeder if ticket.category is Category.POWER else None
        dma = dma if ticket.category is Category.WATER else None
        if early is not None and early[0] == area and early[2] == self._writes_of(area, feeder or dma):
            known = early[1]
        else:
            known = await self.store.area_incidents(area, feeder or dma)  # the column feeder holds a water DMA
        revs = {i.incident_id: rev for i, rev in known}
        found = grouping.find_incident(ticket, [i for i, _ in known], window=self.group_window, feeder=feeder,
                                       dma=dma)
        if found is None:
            day = center_day(ticket.created_at)
            incident_id = f"INC{day:%Y%m%d}-{await self.store.next_incident_seq(day):04d}"
            incident = grouping.open_incident(incident_id, ticket, suspected_asset=asset, feeder=feeder, dma=dma)
            write = IncidentWrite(incident, 1, None, area_seen=(area, feeder or dma,
                                                               tuple(f"{i}@{r}" for i, r in revs.items())))
        else:
            incident = grouping.add_call(found, ticket, window=self.group_window, feeder=feeder, dma=dma,
                                         primary_sent=await self._primary_sent(found, ticket))
        merged, relinks, seen = [], [], None
        if found is not None and found.dma_wide and not incident.dma_wide:  # placed on the burst's segment
            incident, merged, relinks = await self._absorb(incident, known, ticket.updated_at)
            seen = (area, None, tuple(f"{i}@{r}" for i, r in revs.items()))  # what it merged from: the area's
        if found is not None:
            write = IncidentWrite(incident, revs[found.incident_id] + 1, found, area_seen=seen)
        linked, event = grouping.link(ticket, incident, actor=SYSTEM_ACTOR, now=ticket.updated_at)
        if found is not None and incident.primary != found.primary:  # an onset ticket: the primary moves to it
            event = dataclasses.replace(event, note=f"{event.note}，成为主工单（原主工单 {found.primary}）",
                                        data={**event.data, "primary": True, "primary_from": found.primary})
        return Grouped(linked, [event], [write, *merged], incident, relinks)

    async def _absorb(self, incident: grouping.Incident, known: Sequence[tuple[grouping.Incident, int]],
                      now: datetime) -> tuple[grouping.Incident, list[IncidentWrite], list[TicketWrite]]:
        """`incident` with the incidents of its (new) segment merged into it (`grouping.absorb`),
        their writes, and their open calls linked to it again (each a ``link_incident`` event).
        An incident one of whose calls already has a crew out stays as it is: the dispatcher
        decides (归入事件 moves a call by hand)."""
        merged, relinks = [], []
        for other, rev in known:
            if not grouping.absorbable(incident, other):
                continue
            records = [r for r in await self.store.get_many(other.ticket_numbers) if r is not None]
            if any(r.ticket.state in FIELD_STATES for r in records):
                continue
            incident, gone = grouping.absorb(incident, other, now=now)
            merged.append(IncidentWrite(gone, rev + 1, other))
            for record in records:  # waiting for a crew (none is out): link_incident takes these
                if record.ticket.incident_id != other.incident_id or record.ticket.state not in POOL_STATES:
                    continue
                moved, event = grouping.link(record.ticket, incident, actor=SYSTEM_ACTOR, now=now)
                event = dataclasses.replace(event, note=f"{event.note}（原故障事件 {other.incident_id} 已并入）",
                                            data={**event.data, "merged_from": other.incident_id})
                relinks.append(TicketWrite(self._record(moved, record.meta), [event], record))
        return incident, merged, relinks

    async def _primary_sent(self, incident: grouping.Incident, ticket: Ticket) -> bool:
        """Whether an onset ticket that would take the primary (`grouping.add_call`: a burst call
        joining a DMA-scope incident, or the first onset ticket) finds the primary already with a
        crew or done (then that primary stays: its crew is the incident's one); read only then."""
        if not ((incident.dma_wide and grouping.is_burst_call(ticket))
                or (incident.onset_ticket is None and grouping.is_onset(ticket))):
            return False
        try:
            state = (await self.store.get(incident.primary)).ticket.state
            return state in FIELD_STATES or state not in OPEN_STATES
        except TicketNotFound:
            return False

    def _note_incident_writes(self, writes: Sequence[IncidentWrite]) -> None:
        """Count written incidents per supply area and feeder (invalidates early reads of those)."""
        for write in writes:
            incident = write.incident
            for key in {incident.supply_area or "", *incident.areas, *(k for k in (incident.feeder, incident.dma) if k)}:
                self._area_writes[key] = self._area_writes.get(key, 0) + 1

    def _writes_of(self, area: str | None, feeder: str | None) -> tuple[int, int]:
        """This process's incident writes in a supply area and in a feeder so far."""
        return (self._area_writes.get(area, 0) if area else 0, self._area_writes.get(feeder, 0) if feeder else 0)

    async def _note_primary_moved(self, writes: Sequence[IncidentWrite]) -> None:
        """After a save: the former primary of an incident whose primary moved to an onset ticket
        gets a note on its timeline (the new primary's link event says it too). The call is saved
        by then: a note that cannot be written is logged, never the create's failure."""
        for write in writes:
            before, after = write.previous, write.incident
            if before is None or before.primary == after.primary:
                continue
            try:
                await self._change(before.primary, lambda previous, a=after: apply(
                    previous.ticket, "note", actor=SYSTEM_ACTOR, now=self.clock(),
                    note=f"故障事件 {a.incident_id} 的主工单改为 {a.primary}（故障起始工单），本工单不单独派单",
                    data={"incident_id": a.incident_id, "primary": a.primary, "primary_from": before.primary}))
            except CommandError as exc:
                log.warning("incident %s: the note of its former primary %s was not written: %s",
                            after.incident_id, before.primary, exc)

    def _area_lock(self, supply_area: str | None) -> Any:
        """Calls of one supply area are grouped one at a time in this process (the incident's
        revision guard still protects against other processes)."""
        if supply_area is None:
            return contextlib.nullcontext()
        return self._area_locks.setdefault(supply_area, asyncio.Lock())

    async def promote_primary(self, number: str) -> grouping.Incident | None:
        """After a ticket was cancelled or merged: when it was its incident's primary, the incident
        gets a new one (`command.grouping.promote_primary`), saved with a note on the new primary's
        timeline in one transaction; the incident, or None when nothing changed."""
        ticket = (await self.store.get(number)).ticket
        if not ticket.incident_id:
            return None
        for attempt in range(RETRIES):
            found = await self.store.incident(ticket.incident_id)
            if found is None:
                return None
            incident, rev = found
            records = {r.ticket.number: r for r in await self.store.get_many(incident.ticket_numbers) if r is not None}
            promoted = grouping.promote_primary(incident, [r.ticket for r in records.values()])
            if promoted.primary == incident.primary:
                return None
            chosen = records[promoted.primary]
            how = "撤销" if records[incident.primary].ticket.state is State.CANCELLED else "合并"
            noted, event = apply(chosen.ticket, "note", actor=SYSTEM_ACTOR, now=self.clock(),
                                 note=f"原主工单 {incident.primary} 已{how}，本工单成为故障事件 {incident.incident_id} 的主工单",
                                 data={"incident_id": incident.incident_id, "primary": promoted.primary,
                                       "primary_from": incident.primary})
            write = IncidentWrite(promoted, rev + 1, incident)
            try:
                await self.store.save([TicketWrite(self._record(noted, chosen.meta), [event], chosen)], [write])
                self._note_incident_writes([write])
                return promoted
            except (Conflict, GuardFailed):
                if attempt == RETRIES - 1:
                    raise
                await backoff(attempt)
        return None

    async def resolve_incident(self, incident_id: str, resolution: str, actor: Actor, *,
                               extra: Callable[[grouping.Incident], Awaitable[Sequence[Extra]]] | None = None,
                               ) -> grouping.Incident:
        """Resolve every open call of an incident together (one atomic write: each call's
        resolve_with_incident event, which stops its limits and puts it in the callback queue).
        `extra`: the writes of other stores for the resolved incident, in the same transaction
        (`services.incidents`: its notice withdrawn, its audit event)."""
        for attempt in range(RETRIES):
            found = await self.store.incident(incident_id)
            if found is None:
                raise IncidentNotFound(incident_id)
            incident, rev = found
            records = [r for r in await self.store.get_many(incident.ticket_numbers) if r is not None]
            resolved, changes = grouping.resolve_all(incident, [r.ticket for r in records], actor=actor,
                                                     now=self.clock(), resolution=resolution)
            by_number = {r.ticket.number: r for r in records}
            latest: dict[str, tuple[Ticket, list[AuditEvent]]] = {}
            for ticket, event in changes:  # link_incident then resolve: keep the last ticket, all events
                latest[ticket.number] = (ticket, [*latest.get(ticket.number, (ticket, []))[1], event])
            writes, extras = [], []
            for n, (t, events) in latest.items():
                events, decided = await self._outbox(t, events)
                writes.append(TicketWrite(self._record(t, by_number[n].meta), events, by_number[n]))
                extras += decided
            if extra is not None:
                extras += await extra(resolved)
            try:
                await self.store.save(writes, [IncidentWrite(resolved, rev + 1, incident)], extras)
                self._note_incident_writes([IncidentWrite(resolved, rev + 1, incident)])
                return resolved
            except (Conflict, GuardFailed):
                if attempt == RETRIES - 1:
                    raise
                await backoff(attempt)
        raise AssertionError("unreachable")

    async def incidents(self, *, open_only: bool = True, limit: int = 100) -> list[tuple[grouping.Incident, int]]:
        """Incidents, newest first."""
        return await self.store.incidents(await self.store.incident_ids(open_only=open_only, stop=limit - 1))

    async def incident(self, incident_id: str) -> tuple[grouping.Incident, int]:
        """One incident and its revision."""
        found = await self.store.incident(incident_id)
        if found is None:
            raise IncidentNotFound(incident_id)
        return found

    async def _attachable(self, incident_id: Any, draft: Ticket) -> tuple[grouping.Incident, int]:
        """The open incident of the call's category a new call may join (`grouping.attach_call`),
        and its revision; ValidationError (field incident_id) otherwise."""
        if not isinstance(incident_id, str) or not incident_id.strip() or len(incident_id) > 64:
            raise ValidationError("incident_id", "must be an incident id")
        found = await self.store.incident(incident_id.strip())
        if found is None:
            raise ValidationError("incident_id", f"no incident {incident_id}")
        grouping.attach_call(found[0], draft)
        return found

    async def _attach(self, ticket: Ticket, incident_id: str, actor: Actor) -> Grouped:
        """The new call joined to the incident the agent chose (not yet written), as `_group` joins
        one to its area's incident: the ticket linked (``link_incident`` by the agent) and the
        incident's write, guarded by its revision."""
        incident, rev = await self._attachable(incident_id, ticket)
        attached = grouping.attach_call(incident, ticket)
        by = actor if actor.role in (Role.AGENT, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN) else SYSTEM_ACTOR
        linked, event = grouping.link(ticket, attached, actor=by, now=ticket.updated_at)
        return Grouped(linked, [event], [IncidentWrite(attached, rev + 1, incident)], attached)
