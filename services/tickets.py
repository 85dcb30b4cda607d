"""TicketManager: the application service behind the ticket API and workers.

It reads the clock, resolves places through the GIS lookup, calls the pure domain
(`command.tickets`, `command.repeats`, `command.grouping`, `command.limits`, `command.police`)
and writes each change atomically through `store.tickets.TicketStore`. It holds no
business rule of its own beyond choosing which domain function to call.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from store.tickets import CreateReads, Extra, GuardFailed, IncidentWrite, TicketRecord, TicketStore, TicketWrite
from store.units import UnitStore
from command import grouping, repeats
from command.coordinates import CoordinateError, ServiceArea, check_optional_point, check_point
from command.errors import CommandError, Conflict, TicketNotFound, ValidationError
from command.geocoding import NONE as NOT_PLACED, placement
from command.limits import DEFAULT_POLICY, LimitPolicy, stamp
from command.police import assess_police
from command.review import NO_REVIEW, ReviewTable, waiting_step
from command.routing import (
    CREW_ACTIONS, DEFAULT_ROUTING, SET_UNIT, Route, RoutingTable, check_crew_dispatch, route as route_of, set_unit,
    unit_refusal,
)
from command.tickets import (
    DIRECT_CLOSE_TYPES, FIELD_STATES, NUMBER_RE, OPEN_STATES, REVIEWER_ROLES, SYSTEM_ACTOR, Actor, AuditEvent,
    Category, Channel, Role, Satisfaction, State, Ticket, TicketType, Urgency, apply, center_day,
    REJECTED_PREFIX, is_current, new_ticket, normalize_phone, ticket_number, to_dict, visible_to,
)
from gis.crs import distance_m
from services.ticket_alarms import (  # noqa: F401  (consume_alarms is re-exported for the worker)
    PROACTIVE_TITLES, AlarmEventError, SensorSite, alarm_key, alarm_time, consume_alarms,
    parse_alarm_event, proactive_kind, sensor_sites,
)

log = logging.getLogger(__name__)
_LOOKUP_CATEGORIES = ("water", "power", "gas", "heating", "drainage", "sanitation", "other")  # gis.lookup's
_RESERVED_ARGS = frozenset({"ticket", "action", "actor", "now", "expected_version"})
_TYPES = frozenset(t.value for t in TicketType)
_RETRIES = 8


async def _backoff(attempt: int) -> None:
    """Wait a random while before retry `attempt` + 1: writers that met each other on one ticket
    would otherwise re-read and collide again in lock step."""
    await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** attempt)))
_GEOCODE_CHARS = 100  # the address search's longest query (GET /api/address/search)
# (ticket as it will be saved, one of its events) -> None, or (marker for the event's data, outbox write)
OutboxHook = Callable[[Ticket, AuditEvent], Awaitable[tuple[dict[str, Any], Extra] | None]]
# address text -> the address search's ranked candidates (lon, lat, score, match, address, label),
# None when the city has no address book (`web.handlers.desk.address_geocoder`)
Geocoder = Callable[[str], Awaitable[Sequence[Mapping[str, Any]] | None]]
# a create's early read of its supply area: (area, its unresolved incidents with revisions, the
# process's counts of incident writes in that area and its feeder when read)
_Early = tuple[str, list[tuple[grouping.Incident, int]], tuple[int, int]]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


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


class TicketManager:
    """Create, act on, read and list tickets; incidents, callbacks and proactive tickets."""

    def __init__(self, store: TicketStore, lookup: Any = None, *,
                 sensors: Mapping[str, SensorSite] | None = None, policy: LimitPolicy = DEFAULT_POLICY,
                 clock: Callable[[], datetime] = utc_now, repeat_radius_m: float = repeats.DEFAULT_RADIUS_M,
                 repeat_window: timedelta = repeats.DEFAULT_WINDOW,
                 group_window: timedelta = grouping.DEFAULT_WINDOW, alarm_urgency: Urgency = Urgency.URGENT,
                 alarm_max_age: timedelta = timedelta(hours=6), service_area: ServiceArea | None = None,
                 routing: RoutingTable = DEFAULT_ROUTING, review: ReviewTable = NO_REVIEW,
                 geocoder: Geocoder | None = None) -> None:
        self.store = store
        # places a ticket that arrives with address text only (`command.geocoding`); the web
        # process passes the desk's address book, a manager without one leaves such tickets unplaced
        self.geocoder = geocoder
        # the review chains (`command.review`, setting REVIEW_FILE: the running processes pass its
        # table; a manager built without one, as in other parts' in-process tests, reviews nothing)
        self.review = review
        self.routing = routing  # where each ticket type goes (`command.routing`, setting ROUTING_FILE)
        self.units = UnitStore(store.db)  # the unit tree a set responsible unit is checked against
        self.service_area = service_area  # points outside are refused (None: any valid WGS84 point)
        self.lookup = lookup
        self.sensors = dict(sensors or {})
        self.policy = policy
        self.clock = clock
        self.repeat_radius_m = repeat_radius_m
        self.repeat_window = repeat_window
        self.group_window = group_window
        self.alarm_urgency = alarm_urgency
        self.alarm_max_age = alarm_max_age
        self._area_locks: dict[str, asyncio.Lock] = {}
        # incident writes per supply area made by this process: a create's early read of the area's
        # incidents is used only while this count is unchanged (else it reads them again)
        self._area_writes: dict[str, int] = {}
        # the 110 link's hook (`services.police_link.PoliceLink.outbox_hook`, set by the dispatch
        # wiring when messages go to 110): the outbox row an event decides, saved in its write's
        # transaction, and the marker added to that event's data
        self.outbox_hook: OutboxHook | None = None

    @classmethod
    def for_city(cls, store: TicketStore, city: Any, *, service_area: str = "", **kwargs: Any) -> "TicketManager":
        """A manager over a loaded `gis.layers.City`: its spatial lookup and sensor registry, and
        its service area (`service_area_of`)."""
        from gis.lookup import SpatialLookup

        lookup = SpatialLookup(city)
        return cls(store, lookup, sensors=sensor_sites(city, lookup),
                   service_area=service_area_of(city, service_area), **kwargs)

    # ------------------------------------------------------------------------------ helpers
    def _record(self, ticket: Ticket, meta: Mapping[str, Any]) -> TicketRecord:
        """The ticket with its deadlines stamped and its open timed stages in meta.queue."""
        ticket, stages = stamp(ticket, policy=self.policy)
        queue = [[stage.value, deadline.timestamp(), clock_limit.total_seconds()]
                 for stage, deadline, clock_limit in stages]
        route = self.routing.kind(ticket.type).value  # the route follows the type (a review may change it)
        return TicketRecord(ticket, {**meta, "route": route, "queue": queue}, to_dict(ticket))  # serialised once

    def _resolve(self, fields: dict[str, Any], ticket: Ticket) -> dict[str, Any]:
        """District, grid, area class and supply area from the GIS lookup; ``_station`` the 三级
        station of the place and trade, ``_department`` the 二级 unit above it (for the route),
        ``_feeder`` a power call's feeder. The supply area groups repair calls into incidents: the
        台区 for power; for water the valve-isolation segment of the nearest main (``SEG0123``,
        `gis.network`), the DMA when no main is within 300 m."""
        if self.lookup is None or ticket.lon is None or ticket.lat is None:
            return {}
        category = ticket.category.value if ticket.category.value in _LOOKUP_CATEGORIES else None
        where = self.lookup.locate(ticket.lon, ticket.lat, category)
        supply = where.supply_area_id if ticket.category is Category.POWER else \
            (where.segment_id or where.dma_id) if ticket.category is Category.WATER else None
        found = {"district": where.district_id, "grid": where.grid_id, "supply_area": supply,
                 "area_class": where.area_class}
        found = {k: v for k, v in found.items() if v is not None}
        found["_asset"] = where.transformer_id if ticket.category is Category.POWER else None
        found["_feeder"] = where.feeder if ticket.category is Category.POWER else None
        found["_dma"] = where.dma_id if ticket.category is Category.WATER else None
        found["_station"], found["_department"] = where.unit_id, where.department_id
        return found

    def _route_place(self, fields: dict[str, Any], ticket: Ticket) -> tuple[dict[str, Any], Route]:
        """The place of `_resolve` with the ticket's routed ``unit_id`` (`command.routing.route`),
        and the Route."""
        place = self._resolve(fields, ticket)
        routed = route_of(ticket.type, station_id=place.pop("_station", None),
                          department_id=place.pop("_department", None), table=self.routing)
        if routed.unit_id is not None:
            place["unit_id"] = routed.unit_id
        return place, routed

    async def _check_unit(self, unit_id: Any, category: Category) -> None:
        """UnitOverrideRefused (400) unless the unit is known, active and of the ticket's trade."""
        if not isinstance(unit_id, str) or not unit_id.strip() or len(unit_id) > 64:
            raise ValidationError("unit_id", "must be a unit id")
        refusal = unit_refusal(unit_id, await self.units.get(unit_id.strip()), category.value)
        if refusal is not None:
            raise refusal

    @staticmethod
    def _check_visible(record: TicketRecord, actor: Actor) -> None:
        """A crew member only sees their crew's tickets, a unit's liaison its units' (others look absent)."""
        if not visible_to(actor, record.ticket.crew_id, record.ticket.unit_id):
            raise TicketNotFound(record.ticket.number)

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

    async def _group(self, ticket: Ticket, asset: str | None, early: _Early | None = None, feeder: str | None = None,
                     dma: str | None = None,
                     ) -> tuple[Ticket, list[AuditEvent], list[IncidentWrite], grouping.Incident | None]:
        """Join the call to its supply area's (or, for power, its `feeder`'s; for a water pressure
        alarm or burst call, its `dma`'s) incident, or open one (not yet written). `early`: (area,
        its incidents and revisions read with the create's reads, before the area lock,
        `_writes_of` the area and feeder or DMA at that time); a stale one is refused by the
        revision guard. An onset ticket that takes over as primary says so on its link event."""
        if not grouping.groupable(ticket):
            return ticket, [], [], None
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
            write = IncidentWrite(incident, 1, None, area_seen=(area, feeder or dma, tuple(revs)))
        else:
            incident = grouping.add_call(found, ticket, window=self.group_window, feeder=feeder, dma=dma,
                                         primary_sent=await self._primary_sent(found, ticket))
            write = IncidentWrite(incident, revs[found.incident_id] + 1, found)
        linked, event = grouping.link(ticket, incident, actor=SYSTEM_ACTOR, now=ticket.updated_at)
        if found is not None and incident.primary != found.primary:  # an onset ticket: the primary moves to it
            event = dataclasses.replace(event, note=f"{event.note}，成为主工单（原主工单 {found.primary}）",
                                        data={**event.data, "primary": True, "primary_from": found.primary})
        return linked, [event], [write], incident

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

    # ------------------------------------------------------------------------------ create
    async def create(self, fields: Mapping[str, Any], actor: Actor, *, link: bool = True,
                     answer: str | None = None, tags: Sequence[str] = (),
                     alarm: ProactiveRef | None = None,
                     extra: Callable[[Ticket], Sequence[Extra]] | None = None) -> CreateResult:
        """Create a ticket from a call (validated by `command.tickets.new_ticket`), resolving its
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

    async def _outbox(self, ticket: Ticket, events: Sequence[AuditEvent]) -> tuple[list[AuditEvent], list[Extra]]:
        """The outbox rows a write's events decide (`outbox_hook`), each deciding event marked."""
        marked, extra = list(events), []
        if self.outbox_hook is not None:
            for i, event in enumerate(events):
                decided = await self.outbox_hook(ticket, event)
                if decided is not None:
                    marked[i] = dataclasses.replace(event, data={**event.data, **decided[0]})
                    extra.append(decided[1])
        return marked, extra

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

    async def _save_new(self, ticket: Ticket, created: AuditEvent, meta: dict[str, Any], asset: str | None,
                        answer: str | None, actor: Actor, now: datetime,
                        alarm: ProactiveRef | None, early: _Early | None = None,
                        writes_for: Callable[[Ticket], Sequence[Extra]] | None = None, *,
                        attach: str | None = None) -> CreateResult:
        for attempt in range(_RETRIES):
            grouped, events, incident_writes, incident = await (
                self._attach(ticket, attach, actor) if attach is not None  # the agent chose the incident
                else self._group(ticket, asset, early if attempt == 0 else None, meta.get("feeder"), meta.get("dma")))
            events = [created, *events]
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
                await self.store.save([TicketWrite(record, events, None, alarm.alarm_key if alarm else None)],
                                      incident_writes, extra)
                self._note_incident_writes(incident_writes)
                await self._note_primary_moved(incident_writes)
                return CreateResult(record, False, None if incident is None else incident.incident_id)
            except GuardFailed as exc:
                if exc.key.startswith("alarm:") or attempt == _RETRIES - 1:
                    raise
                await _backoff(attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------ actions
    async def act(self, number: str, action: str, args: Mapping[str, Any], actor: Actor, *,
                  expected_version: int | None, extra: Sequence[Extra] = (),
                  meta: Mapping[str, Any] | None = None) -> TicketRecord:
        """Perform a lifecycle action (`command.tickets.apply`) and store it atomically; a stale
        `expected_version` raises Conflict. Without `expected_version` (notes and system actions not
        tied to what a user saw) a concurrent change is absorbed: re-read and apply again. `extra`
        joins the save's transaction (`TicketStore.save`), e.g. the 110 outbox row the change decides;
        `meta` entries are set on the ticket's record with it (e.g. ``police_kind`` of a 转110)."""
        bad = sorted(set(args) & _RESERVED_ARGS)
        if bad:
            raise ValidationError(bad[0], "reserved name")
        if action == "merge" and isinstance(args.get("into"), str) and NUMBER_RE.match(args["into"]):
            await self.store.get(args["into"])  # TicketNotFound for an unknown target
        if action == "submit_review":  # the chain is the settings', never the caller's
            if "chain" in args:
                raise ValidationError("chain", "the review chain comes from the settings (REVIEW_FILE)")
        if action == SET_UNIT:
            return await self._set_unit(number, args, actor, expected_version=expected_version, extra=extra)
        if action in ("assign", "reroute_return") and args.get("unit_id") not in (None, ""):  # 交办 to a named unit
            previous = await self.store.get(number)
            self._check_visible(previous, actor)
            await self._check_unit(args["unit_id"], previous.ticket.category)
        if action in CREW_ACTIONS:  # a symptom call of a dispatch-once incident: its primary only (409)
            await self._check_primary(number, actor)

        def change(previous: TicketRecord) -> tuple[Ticket, AuditEvent]:
            self._check_visible(previous, actor)
            if action in CREW_ACTIONS:  # only a station's ticket goes to a field crew (RouteRefused, 409)
                check_crew_dispatch(previous.ticket, self.routing)
            given = dict(args)
            if action == "submit_review":
                given["chain"] = [r.value for r in self.review.chain(previous.ticket.type)]
            ticket, event = apply(previous.ticket, action, actor=actor, now=self.clock(),
                                  expected_version=expected_version, **given)
            if action == "review" and (ticket.type, ticket.category) != (previous.ticket.type, previous.ticket.category):
                ticket, event = self._reroute(ticket, event)
            return self._release(ticket, [event])

        return await self._change(number, change, retry=expected_version is None, extra=extra, meta=meta)

    async def _check_primary(self, number: str, actor: Actor) -> None:
        """`command.grouping.NotThePrimary` (409 ``incident_not_primary``) when the ticket is a
        symptom call of a dispatch-once incident: the crew goes to the incident's primary."""
        previous = await self.store.get(number)
        self._check_visible(previous, actor)
        if previous.ticket.incident_id:
            found = await self.store.incident(previous.ticket.incident_id)
            grouping.check_dispatch(previous.ticket, None if found is None else found[0])

    async def promote_primary(self, number: str) -> grouping.Incident | None:
        """After a ticket was cancelled or merged: when it was its incident's primary, the incident
        gets a new one (`command.grouping.promote_primary`), saved with a note on the new primary's
        timeline in one transaction; the incident, or None when nothing changed."""
        ticket = (await self.store.get(number)).ticket
        if not ticket.incident_id:
            return None
        for attempt in range(_RETRIES):
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
                if attempt == _RETRIES - 1:
                    raise
                await _backoff(attempt)
        return None

    def _release(self, ticket: Ticket, events: list[AuditEvent]) -> tuple[Ticket, list[AuditEvent]]:
        """A ticket whose review chain has just passed leaves the center: one routed to a
        department (or a station without crews) is sent (交办 ``assign``) to its unit by the system;
        others stay reviewed in the pool for the dispatcher."""
        passed = events[-1].action in ("approve_review", "submit_review") and ticket.state is State.REVIEWED
        if passed and ticket.unit_id and self.routing.kind(ticket.type).value == "department":
            ticket, sent = apply(ticket, "assign", actor=SYSTEM_ACTOR, now=events[-1].at)
            events = [*events, dataclasses.replace(sent, note="审核通过，交办责任单位")]
        return ticket, events

    def _reroute(self, ticket: Ticket, event: AuditEvent) -> tuple[Ticket, AuditEvent]:
        """A review that changed the type or trade routes the ticket again (its place's station or
        department); the review event says the route and, when it changed, the units."""
        if self.lookup is None or ticket.lon is None:
            return ticket, dataclasses.replace(event, data={**event.data, "route": self.routing.kind(ticket.type).value})
        _, routed = self._route_place({}, ticket)
        data = {**event.data, "route": routed.kind.value, "route_why": routed.why}
        if routed.unit_id != ticket.unit_id:
            data.update(from_unit=ticket.unit_id, unit_id=routed.unit_id)
            ticket = dataclasses.replace(ticket, unit_id=routed.unit_id)
        return ticket, dataclasses.replace(event, data=data)

    async def _set_unit(self, number: str, args: Mapping[str, Any], actor: Actor, *, expected_version: int | None,
                        extra: Sequence[Extra] = ()) -> TicketRecord:
        """The action ``set_unit`` {unit_id, reason}: another responsible unit, checked against the
        unit tree (known, active, of the ticket's trade) and audited with who, when, from and to."""
        unknown = sorted(set(args) - {"unit_id", "reason"})
        if unknown:
            raise ValidationError(unknown[0], f"unknown field for action {SET_UNIT}")
        previous = await self.store.get(number)
        self._check_visible(previous, actor)
        set_unit(previous.ticket, args.get("unit_id"), args.get("reason"), actor=actor, now=self.clock(),
                 expected_version=expected_version)  # the role, state and fields first
        await self._check_unit(args.get("unit_id"), previous.ticket.category)

        def change(record: TicketRecord) -> tuple[Ticket, AuditEvent]:
            self._check_visible(record, actor)
            return set_unit(record.ticket, args.get("unit_id"), args.get("reason"), actor=actor, now=self.clock(),
                            expected_version=expected_version)

        return await self._change(number, change, retry=expected_version is None, extra=extra)

    async def annotate(self, number: str, change: Callable[[Ticket], tuple[Ticket, AuditEvent]], actor: Actor, *,
                       extra: Sequence[Extra] = ()) -> TicketRecord:
        """Save another service's pure change of a ticket (the ticket → the new ticket and its event,
        e.g. `command.supervision.annotate`) with that service's rows (`extra`) in one transaction;
        a concurrent change re-reads and applies again. The actor must see the ticket."""
        def checked(previous: TicketRecord) -> tuple[Ticket, AuditEvent]:
            self._check_visible(previous, actor)
            return change(previous.ticket)

        return await self._change(number, checked, extra=extra)

    async def _change(self, number: str, change: Callable[[TicketRecord], tuple[Ticket, Any]], *,
                      retry: bool = True, extra: Sequence[Extra] = (),
                      meta: Mapping[str, Any] | None = None) -> TicketRecord:
        """Read a ticket, change it, save the change atomically (the change gives one event or a
        list) with `meta` entries set; with `retry`, a concurrent change (Conflict) re-reads and
        applies again, up to _RETRIES times."""
        for attempt in range(_RETRIES if retry else 1):
            previous = await self.store.get(number)
            ticket, event = change(previous)
            events, decided = await self._outbox(ticket, event if isinstance(event, list) else [event])
            record = self._record(ticket, {**previous.meta, **(meta or {})})
            try:
                await self.store.save([TicketWrite(record, events, previous)], extra=[*extra, *decided])
                return record
            except Conflict:
                if not retry or attempt == _RETRIES - 1:
                    raise
                await _backoff(attempt)
        raise AssertionError("unreachable")

    async def callback(self, number: str, satisfaction: str, actor: Actor, *, words: str = "",
                       expected_version: int | None, truthful: bool = True) -> TicketRecord:
        """Record the callback (回访) of a resolved ticket: satisfied or basically satisfied with a
        true feedback closes it; dissatisfied, or a feedback not true (`truthful` False), sends a
        unit's ticket (routed to a department) back to the same unit as rework (转办督查单, the
        callback's words its instruction) and reopens any other to the pool; unreachable leaves it
        in the callback queue. The loop ends when the citizen is satisfied or a supervisor closes it
        (``supervisor_close`` with a reason)."""
        try:
            answer = Satisfaction(satisfaction)
        except ValueError:
            raise ValidationError("satisfaction", f"{satisfaction!r} is not one of: "
                                  + ", ".join(s.value for s in Satisfaction)) from None
        previous = await self.store.get(number)
        self._check_visible(previous, actor)
        now = self.clock()
        ticket = previous.ticket
        if expected_version is not None and not is_current(ticket, expected_version):
            raise Conflict(number, expected_version, ticket.version)
        events = []
        if ticket.state is State.RESOLVED:
            ticket, event = apply(ticket, "queue_callback", actor=actor, now=now)
            events.append(event)
        rejected = ticket.resolution.startswith(REJECTED_PREFIX)  # 不予受理: told, not reworked
        back = answer is Satisfaction.DISSATISFIED or (not truthful and answer is not Satisfaction.UNREACHABLE)
        if back and not rejected and ticket.unit_id and self.routing.kind(ticket.type).value == "department":
            ticket, event = apply(ticket, "rework", actor=actor, now=now, satisfaction=answer.value,
                                  truthful=truthful, words=words or "回访不满意", note=words)
        elif back:
            ticket, event = apply(ticket, "reopen", actor=actor, now=now, reason="回访不满意",
                                  satisfaction=answer.value, words=words, note=words)
        elif answer is Satisfaction.UNREACHABLE:
            ticket, event = apply(ticket, "note", actor=actor, now=now, note="回访未接通",
                                  data={"callback": answer.value})
        else:
            ticket, event = apply(ticket, "close", actor=actor, now=now, satisfaction=answer.value,
                                  words=words, note=words)
        events.append(event)
        record = self._record(ticket, previous.meta)
        await self.store.save([TicketWrite(record, events, previous)])
        return record

    async def resolve_incident(self, incident_id: str, resolution: str, actor: Actor, *,
                               extra: Callable[[grouping.Incident], Awaitable[Sequence[Extra]]] | None = None,
                               ) -> grouping.Incident:
        """Resolve every open call of an incident together (one atomic write: each call's
        resolve_with_incident event, which stops its limits and puts it in the callback queue).
        `extra`: the writes of other stores for the resolved incident, in the same transaction
        (`services.incidents`: its notice withdrawn, its audit event)."""
        for attempt in range(_RETRIES):
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
                if attempt == _RETRIES - 1:
                    raise
                await _backoff(attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------ reads
    async def get(self, number: str, actor: Actor) -> TicketRecord:
        """One ticket the actor may see."""
        if not NUMBER_RE.match(number):
            raise TicketNotFound(number)
        record = await self.store.get(number)
        self._check_visible(record, actor)
        return record

    async def timeline(self, number: str, actor: Actor) -> list[tuple[str, dict[str, Any]]]:
        """The ticket's audit events in order, (stream id, event dict)."""
        await self.get(number, actor)
        return await self.store.events(number)

    async def duplicates(self, *, lon: float | None, lat: float | None, category: str | None,
                         phone: str | None, radius_m: float | None = None, type_: str | None = None,
                         description: str = "") -> dict[str, Any]:
        """Before saving a call: the open ticket it would be linked to (`command.repeats`, the rule
        `create` applies) and how (``match``: repeat or duplicate), and open tickets nearby or from
        the same caller, nearest first."""
        now = self.clock()
        radius = self.repeat_radius_m if radius_m is None else radius_m
        point = check_optional_point(lon, lat, self.service_area)
        lon, lat = (None, None) if point is None else point
        if phone:
            phone = normalize_phone(phone)
        reads = await self.store.near_and_by_phone(lon, lat, radius, phone or None)
        distances = dict(reads.near)
        records = [r for r in reads.records.values() if r.ticket.state in OPEN_STATES]
        matchable = [r.ticket for r in records]
        if type_ in _TYPES:  # as `create`: only a ticket of the call's route (an unknown type is refused below)
            route = self.routing.kind(TicketType(type_))
            matchable = [t for t in matchable if self.routing.kind(t.type) is route]
        match = repeats.find_repeat(  # also refuses a bad category or type when nothing is open nearby
            {"phone": phone, "lon": lon, "lat": lat, "category": category, "type": type_, "description": description,
             "at": now},
            matchable, radius_m=self.repeat_radius_m, window=self.repeat_window, distance_fn=distance_m)
        rows = []
        for record in records:
            t = record.ticket
            d = distances.get(t.number)
            if d is None and lon is not None and t.lon is not None:
                d = distance_m(lon, lat, t.lon, t.lat)
            rows.append((record, None if d is None else round(float(d), 1),
                         bool(phone) and phone == t.caller_phone, category == t.category.value))
        rows.sort(key=lambda r: (not r[2], math.inf if r[1] is None else r[1], r[0].ticket.number))
        return {"repeat_of": None if match is None else match.ticket.number,
                "match": None if match is None else match.kind.value, "radius_m": radius, "candidates": rows}

    async def list(self, actor: Actor, *, state: str | None = None, color: str | None = None,
                   phone: str | None = None, sort: str = "time_left", limit: int = 50,
                   offset: int = 0, review_role: str | None = None) -> tuple[list[TicketRecord], int]:
        """A page of tickets the actor may see, and the number matching.

        The queue (open tickets, sort=time_left) is ordered like `command.limits.queue_key`:
        least share of the limit left first, then urgency, age and number. Other sorts: newest first.
        """
        if sort not in ("time_left", "created"):
            raise ValidationError("sort", "must be time_left or created")
        if not 1 <= limit <= 500 or offset < 0:
            raise ValidationError("limit", "limit must be 1..500 and offset ≥ 0")
        if state is not None and state != "open" and state not in {s.value for s in State}:
            raise ValidationError("state", f"unknown state {state!r}")
        if color is not None and color not in ("red", "orange", "blue"):
            raise ValidationError("color", "must be red, orange or blue")
        now_s = self.clock().timestamp()
        if review_role is not None:
            return await self._review_queue(actor, review_role, offset, limit, now_s)
        if actor.role is Role.CREW:
            return await self.store.page(now_s, ranked=True, crew_id=actor.crew_id or "", state=state,
                                         offset=offset, limit=limit)
        if actor.role is Role.UNIT:  # the unit's inbox: its units' tickets, in queue order when open
            ranked = sort == "time_left" and (state in (None, "open") or State(state) in OPEN_STATES)
            return await self.store.page(now_s, ranked=ranked, units=sorted(actor.unit_ids), state=state or "open",
                                         color=color, phone=normalize_phone(phone) if phone else None,
                                         offset=offset, limit=limit)
        if phone:
            return await self.store.page(now_s, ranked=False, phone=normalize_phone(phone), state=state,
                                         offset=offset, limit=limit)
        if color is not None:
            return await self.store.page(now_s, ranked=sort == "time_left", color=color, offset=offset, limit=limit)
        if state in (None, "open") and sort == "time_left":
            return await self.store.queue_page(now_s, offset, limit)
        ranked = sort == "time_left" and (state in (None, "open") or State(state) in OPEN_STATES)
        return await self.store.page(now_s, ranked=ranked, state=state or "open", offset=offset, limit=limit)

    async def _review_queue(self, actor: Actor, role: str, offset: int, limit: int,
                            now_s: float) -> tuple[list[TicketRecord], int]:
        """The tickets whose waiting review step is for `role`, in queue order (the tickets under
        review are read a page of 500 at a time and filtered here: a queue of hundreds, not more)."""
        if role not in {r.value for r in REVIEWER_ROLES}:
            raise ValidationError("review_role", "must be one of: " + ", ".join(sorted(r.value for r in REVIEWER_ROLES)))
        if actor.role in (Role.CREW, Role.UNIT):
            raise ValidationError("review_role", "the review queues are the center's")
        waiting: list[TicketRecord] = []
        start = 0
        while True:
            page, total = await self.store.page(now_s, ranked=True, state=State.IN_REVIEW.value, offset=start, limit=500)
            waiting += [r for r in page if (waiting_step(r.ticket) or {}).get("role") == role]
            start += len(page)
            if not page or start >= total:
                return waiting[offset:offset + limit], len(waiting)

    async def callbacks(self, *, limit: int = 100) -> list[TicketRecord]:
        """Resolved tickets awaiting their callback, longest waiting first."""
        numbers = await self.store.index("callbacks", newest_first=False, stop=limit - 1)
        return [r for r in await self.store.get_many(numbers) if r is not None]

    async def incidents(self, *, open_only: bool = True, limit: int = 100) -> list[tuple[grouping.Incident, int]]:
        """Incidents, newest first."""
        return await self.store.incidents(await self.store.incident_ids(open_only=open_only, stop=limit - 1))

    async def incident(self, incident_id: str) -> tuple[grouping.Incident, int]:
        """One incident and its revision."""
        found = await self.store.incident(incident_id)
        if found is None:
            raise IncidentNotFound(incident_id)
        return found

    # ------------------------------------------------------------------------------ alarms
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
                                 f" 值 {alarm.get('value')} 阈值 {alarm.get('threshold')}",
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
        for attempt in range(_RETRIES):
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
                if attempt == _RETRIES - 1:
                    raise
                await _backoff(attempt)

    async def _note_alarm(self, number: str, alarm: Mapping[str, Any], what: str) -> TicketRecord:
        return await self._change(number, lambda previous: apply(
            previous.ticket, "note", actor=SYSTEM_ACTOR, now=self.clock(),
            note="传感器告警已恢复" if what == "cleared" else what,
            data={"alarm_id": str(alarm["alarm_id"]), "alarm": what}))

    # ------------------------------------------------------------------------------ attach (归入事件)
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

    async def _attach(self, ticket: Ticket, incident_id: str, actor: Actor,
                      ) -> tuple[Ticket, list[AuditEvent], list[IncidentWrite], grouping.Incident]:
        """The new call joined to the incident the agent chose (not yet written), as `_group` joins
        one to its area's incident: the ticket linked (``link_incident`` by the agent) and the
        incident's write, guarded by its revision."""
        incident, rev = await self._attachable(incident_id, ticket)
        attached = grouping.attach_call(incident, ticket)
        by = actor if actor.role in (Role.AGENT, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN) else SYSTEM_ACTOR
        linked, event = grouping.link(ticket, attached, actor=by, now=ticket.updated_at)
        return linked, [event], [IncidentWrite(attached, rev + 1, incident)], attached


def service_area_of(city: Any, configured: str = "") -> ServiceArea | None:
    """The service area: the configured box (``SERVICE_AREA``), else the city's extent (its
    districts, else its grids, units or roads) grown by `command.coordinates.DEFAULT_MARGIN_DEG`;
    None without either."""
    area = ServiceArea.parse(configured)
    if area is not None or city is None:
        return area
    for kind in ("districts", "grids", "units", "roads"):  # a City's layers are WGS84
        frame = getattr(city, kind, None)
        if frame is not None and len(frame):
            bounds = [float(v) for v in frame.total_bounds]
            if all(math.isfinite(v) for v in bounds):
                return ServiceArea.around(bounds)
    return None


async def build_manager(db: Any, redis: Any, city: Any = None, *, service_area: str = "",
                        **kwargs: Any) -> TicketManager:
    """A TicketManager over the process's `store.db.Database` and Redis client and, when given, a
    loaded `gis.layers.City` (its lookup and sensor registry are built off the event loop).
    `service_area`: the ``SERVICE_AREA`` setting (empty: the city's extent with a margin)."""
    store = TicketStore(db, redis)
    if city is None:
        return TicketManager(store, None, service_area=ServiceArea.parse(service_area), **kwargs)
    return await asyncio.to_thread(TicketManager.for_city, store, city, service_area=service_area, **kwargs)


class IncidentNotFound(LookupError):
    """No incident with this id (HTTP 404 via web.base.DOMAIN_ERRORS' NotFound mapping)."""

    code = "incident_not_found"

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id!r} not found")
        self.incident_id = incident_id


__all__ = ["build_manager", "service_area_of", "CreateResult", "IncidentNotFound", "ProactiveRef", "TicketManager", "consume_alarms",
           "utc_now", "AlarmEventError"]
