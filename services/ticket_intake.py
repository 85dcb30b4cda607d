"""Creation and intake of tickets: a call's fields validated (`command.ticket_fields.new_ticket`),
its point checked, its address text placed, its place and unit routed, a repeat or duplicate of an
open ticket linked to it instead (`command.repeats`), a 110 hand-over assessed, the call grouped
into its incident, and the new ticket saved (retried when an incident guard fails)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from store.ticket_records import CreateReads, GuardFailed, TicketRecord, TicketWrite
from store.ticket_writes import Extra
from command import grouping, repeats
from command.coordinates import CoordinateError, check_optional_point, check_point
from command.errors import Conflict, ValidationError
from command.geocoding import NONE as NOT_PLACED, placement
from command.police import assess_police
from command.ticket_fields import new_ticket
from command.ticket_model import (
    DIRECT_CLOSE_TYPES, NUMBER_RE, OPEN_STATES, SYSTEM_ACTOR, Actor, AuditEvent, Channel, Role, State, Ticket,
    TicketType, center_day, ticket_number,
)
from command.tickets import apply
from gis.crs import distance_m
from services.ticket_core import RETRIES, backoff
from services.ticket_incidents import EarlyRead, TicketIncidents

_GEOCODE_CHARS = 100  # the address search's longest query (GET /api/address/search)


@dataclass(frozen=True)
class ProactiveRef:
    """What a proactive ticket takes from its alarm: the episode key, the asset and its supply area."""

    alarm_key: str
    asset_id: str | None
    supply_area: str | None
    dma: str | None = None  # water: the DMA the sensor measures


@dataclass(frozen=True)
class CreateResult:
    """What POST /api/tickets did: a new ticket, or a call linked to an open one (`kind`: the
    match, a repeat of the same caller or a duplicate of another, `command.repeats`)."""

    record: TicketRecord
    linked: bool
    incident_id: str | None = None
    kind: repeats.MatchKind | None = None


class TicketIntake(TicketIncidents):
    """The ticket manager's creation of tickets from calls."""

    async def _repeat_of(self, ticket: Ticket, now: datetime, reads: CreateReads) -> repeats.Match | None:
        """The open ticket this call repeats or duplicates, or None (candidates from
        `TicketStore.create_reads`, of the same route: a repair call is not a repeat of a complaint
        a department handles)."""
        route = self.routing.kind(ticket.type)
        candidates = [r.ticket for r in reads.records.values()
                      if r.ticket.state in OPEN_STATES and self.routing.kind(r.ticket.type) is route]
        if not candidates:
            return None
        call = {"phone": ticket.caller_phone, "lon": ticket.lon, "lat": ticket.lat,
                "category": ticket.category.value, "type": ticket.type.value, "description": ticket.description,
                "at": now}
        return repeats.find_repeat(call, candidates, radius_m=self.repeat_radius_m, window=self.repeat_window,
                                   distance_fn=distance_m)

    async def _link_repeat(self, match: repeats.Match, call: Ticket, actor: Actor) -> TicketRecord:
        """Record the call on the ticket it matched: a repeat_call or a duplicate_call event."""
        by = actor if actor.role in (Role.AGENT, Role.SYSTEM) else SYSTEM_ACTOR
        note = call.description if by is actor else f"{call.description}（受理人 {actor.user_id}）"
        return await self._change(match.ticket.number, lambda previous: repeats.link_call(
            previous.ticket, match.kind, now=self.clock(), actor=by, phone=call.caller_phone or None,
            note=note[:2000]))

    async def create(self, fields: Mapping[str, Any], actor: Actor, *, link: bool = True,
                     answer: str | None = None, tags: Sequence[str] = (),
                     alarm: ProactiveRef | None = None,
                     extra: Callable[[Ticket], Sequence[Extra]] | None = None) -> CreateResult:
        """Create a ticket from a call (validated by `command.ticket_fields.new_ticket`), resolving its
        place through GIS. A call that repeats or duplicates an open ticket (`command.repeats`) is
        linked to it instead, unless `link` is False. `answer` closes a consultation at once
        (直接办结). `alarm` makes it the proactive ticket of an alarm episode: at most one per alarm key (GuardFailed otherwise). A point is
        checked first (`command.coordinates.check_point` against the service area): a bad one
        raises CoordinateError / OutsideServiceArea before anything is read or written. `extra`
        gives, for the ticket as it is saved, writes of other stores that join its transaction
        (the 110 link of a transferred incident)."""
        now = self.clock()
        fields = dict(fields)
        point = check_optional_point(fields.get("lon"), fields.get("lat"), self.service_area)  # before any read or write
        if point is not None:
            fields["lon"], fields["lat"] = point
        if not isinstance(link, bool):
            raise ValidationError("link", "must be true or false")
        if not isinstance(tags, (list, tuple)) or len(tags) > 10 or not all(isinstance(t, str) for t in tags):
            raise ValidationError("tags", "must be a list of at most 10 strings")
        unit_reason = fields.pop("unit_reason", None)  # a unit_id given with it overrides the route's unit
        follows = fields.pop("follows", None)  # a new need found at a callback: the ticket it came from
        attach = fields.pop("incident_id", None)  # the desk's 归入事件: the open incident the call joins
        if follows is not None and (not isinstance(follows, str) or not NUMBER_RE.match(follows)):
            raise ValidationError("follows", "must be the number of the ticket this need came from")
        day = center_day(now)
        draft, _ = new_ticket({**fields, "number": ticket_number(day, 1)}, now=now, actor=actor)
        geocode = None  # text only: looked up once the fields are known to be valid
        if point is None and self.geocoder is not None and isinstance(fields.get("address"), str) \
                and fields["address"].strip():
            geocode, point = await self._geocode(fields["address"])
            if point is not None:
                fields["lon"], fields["lat"] = point
                draft = dataclasses.replace(draft, lon=point[0], lat=point[1])
        if answer is not None:
            apply(draft, "close_direct", actor=actor, now=now, answer=answer)  # validate before numbering
        place, routed = self._route_place(fields, draft)
        override = None
        if "unit_id" in fields or unit_reason is not None:
            given = fields.get("unit_id")
            if not isinstance(unit_reason, str) or not unit_reason.strip() or len(unit_reason) > 500:
                raise ValidationError("unit_reason", "a reason (1-500 characters) is required to set the unit")
            await self._check_unit(given, draft.category)
            place["unit_id"] = given.strip()
            override = {"from_unit": routed.unit_id, "unit_id": place["unit_id"], "reason": unit_reason.strip()}
        asset = place.pop("_asset", None)
        feeder = place.pop("_feeder", None)
        dma = place.pop("_dma", None)
        if alarm is not None:
            asset = alarm.asset_id or asset
            dma = alarm.dma or dma
            if alarm.supply_area:
                place["supply_area"] = alarm.supply_area
        if attach is not None:  # checked before a number is drawn (ValidationError, field incident_id)
            await self._attachable(attach, draft)
        check = link and attach is None and answer is None and draft.type not in DIRECT_CLOSE_TYPES \
            and draft.channel is not Channel.SENSOR
        area = place.get("supply_area") if draft.type is TicketType.REPAIR else None
        area_writes = self._writes_of(area, feeder or dma)
        reads = await self.store.create_reads(  # one round trip: number, repeat candidates, area incidents
            day, lon=draft.lon if check else None, lat=draft.lat if check else None, radius_m=self.repeat_radius_m,
            category=draft.category.value, phone=(draft.caller_phone or None) if check else None, supply_area=area,
            feeder=(feeder or dma) if area else None)
        if check:
            match = await self._repeat_of(draft, now, reads)
            if match is not None:
                await self.store.release_number_seq(day, reads.seq)
                return CreateResult(await self._link_repeat(match, draft, actor), True, match.ticket.incident_id,
                                    match.kind)
        number = ticket_number(day, reads.seq)
        early = None if reads.area_incidents is None else (area, reads.area_incidents, area_writes)
        ticket, created = new_ticket({**fields, **place, "number": number}, now=now, actor=actor)
        call = assess_police(ticket.category.value, ticket.type.value, ticket.description, tags)
        kind = call.kind if call is not None and call.automatic else None  # handed over automatically
        suggested = call.kind if call is not None and not call.automatic else None  # the dispatcher confirms
        if kind:
            created = dataclasses.replace(created, data={**created.data, "police_kind": kind})
        elif suggested:
            created = dataclasses.replace(created, data={**created.data, "police_suggested": suggested})
        routing = {"route": routed.kind.value, "route_why": routed.why}
        created = dataclasses.replace(created, data={**created.data, **routing,
                                                     **({"unit_override": override} if override else {}),
                                                     **({"geocode": geocode} if geocode is not None else {})})
        meta = {"police_kind": kind, "police_suggested": suggested, "tags": list(tags), "asset_id": asset,
                "alarm_key": alarm.alarm_key if alarm else None, "feeder": feeder, "dma": dma}
        if geocode is not None:
            meta["geocode"] = geocode  # how the address text placed it (or did not)
        if follows is not None:
            await self.store.get(follows)  # TicketNotFound (404) for an unknown one
            meta["follows"] = follows
            created = dataclasses.replace(created, data={**created.data, "follows": follows})
        async with self._area_lock((feeder or dma or ticket.supply_area) if grouping.groupable(ticket) else None):
            return await self._save_new(ticket, created, meta, asset, answer, actor, now, alarm, early, extra,
                                        attach=attach)

    async def _geocode(self, text: str) -> tuple[dict[str, Any] | None, tuple[float, float] | None]:
        """(geocode record, point) of a ticket's address text (`command.geocoding.placement` of the
        address search's candidates); (None, None) without an address book. A point outside the
        service area is no match."""
        assert self.geocoder is not None
        found = await self.geocoder(text.strip()[:_GEOCODE_CHARS])
        if found is None:
            return None, None
        record, point = placement(found, distance_fn=distance_m)
        if point is not None:
            try:
                point = check_point(point[0], point[1], self.service_area)
            except CoordinateError:
                return dict(NOT_PLACED), None
        return record, point

    async def _save_new(self, ticket: Ticket, created: AuditEvent, meta: dict[str, Any], asset: str | None,
                        answer: str | None, actor: Actor, now: datetime,
                        alarm: ProactiveRef | None, early: EarlyRead | None = None,
                        writes_for: Callable[[Ticket], Sequence[Extra]] | None = None, *,
                        attach: str | None = None) -> CreateResult:
        for attempt in range(RETRIES):
            group = await (
                self._attach(ticket, attach, actor) if attach is not None  # the agent chose the incident
                else self._group(ticket, asset, early if attempt == 0 else None, meta.get("feeder"), meta.get("dma")))
            grouped, incident_writes, incident = group.ticket, group.incident_writes, group.incident
            events = [created, *group.events]
            if answer is not None:
                grouped, closed = apply(grouped, "close_direct", actor=actor, now=now, answer=answer)
                events.append(closed)
            elif grouped.state is State.NEW and self.review.chain(grouped.type):  # 审核: submitted at once
                grouped, submitted = apply(grouped, "submit_review", actor=actor, now=now,
                                           chain=[r.value for r in self.review.chain(grouped.type)])
                events.append(submitted)
            events, extra = await self._outbox(grouped, events)
            extra += writes_for(grouped) if writes_for is not None else ()
            record = self._record(grouped, meta)
            try:
                await self.store.save([TicketWrite(record, events, None, alarm.alarm_key if alarm else None),
                                       *group.relinks], incident_writes, extra)
                self._note_incident_writes(incident_writes)
                await self._note_primary_moved(incident_writes)
                return CreateResult(record, False, None if incident is None else incident.incident_id)
            except (GuardFailed, Conflict) as exc:  # (Conflict: a merged incident's call changed meanwhile)
                if getattr(exc, "alarm_claimed", False) or attempt == RETRIES - 1 or \
                        (isinstance(exc, Conflict) and not group.relinks):
                    raise
                await backoff(attempt)
        raise AssertionError("unreachable")
