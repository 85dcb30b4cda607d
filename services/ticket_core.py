"""The ticket manager's base: its state (the store, the clock, the GIS lookup, the routing and
review tables, the limit policy, the windows), and what every part of it uses: a ticket's stored
record (deadlines stamped, route), its place and routed unit from the GIS lookup, the visibility
rule, the outbox hook and the one read-change-save loop (`_change`) with its retries.

The parts of `services.tickets.TicketManager` derive from `TicketCore`: intake
(`services.ticket_intake`), incidents (`services.ticket_incidents`), actions and callbacks
(`services.ticket_actions`), reads and lists (`services.ticket_lists`), alarms
(`services.ticket_alarms`)."""
from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from store.ticket_records import TicketRecord, TicketWrite
from store.ticket_writes import Extra
from store.tickets import TicketStore
from store.units import UnitStore
from command import grouping, repeats
from command.coordinates import ServiceArea
from command.errors import Conflict, TicketNotFound, ValidationError
from command.limits import DEFAULT_POLICY, LimitPolicy, stamp
from command.review import NO_REVIEW, ReviewTable
from command.routing import DEFAULT_ROUTING, Route, RoutingTable, route as route_of, unit_refusal
from command.ticket_json import to_dict
from command.ticket_model import Actor, AuditEvent, Category, Ticket, Urgency
from command.tickets import visible_to

_LOOKUP_CATEGORIES = ("water", "power", "gas", "heating", "drainage", "sanitation", "other")  # gis.lookup's
RETRIES = 8


async def backoff(attempt: int) -> None:
    """Wait a random while before retry `attempt` + 1: writers that met each other on one ticket
    would otherwise re-read and collide again in lock step."""
    await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** attempt)))


# (ticket as it will be saved, one of its events) -> None, or (marker for the event's data, outbox write)
OutboxHook = Callable[[Ticket, AuditEvent], Awaitable[tuple[dict[str, Any], Extra] | None]]
# address text -> the address search's ranked candidates (lon, lat, score, match, address, label),
# None when the city has no address book (`web.handlers.desk.address_geocoder`)
Geocoder = Callable[[str], Awaitable[Sequence[Mapping[str, Any]] | None]]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class TicketCore:
    """The state of a ticket manager and the helpers all its parts use."""

    def __init__(self, store: TicketStore, lookup: Any = None, *,
                 sensors: Mapping[str, Any] | None = None, policy: LimitPolicy = DEFAULT_POLICY,
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
        self.sensors = dict(sensors or {})  # sensor id -> `services.ticket_alarms.SensorSite`
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
        `gis.network`), the DMA when no main is within 300 m. A water call's ``_dma`` (what groups
        it with a pressure drop) is the DMA of that segment, the one the main supplying the address
        lies in, which near a DMA's edge need not be the DMA the address itself lies in."""
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
        found["_dma"] = (self.lookup.water.dma_of(where.segment_id) or where.dma_id) \
            if ticket.category is Category.WATER else None
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

    async def _change(self, number: str, change: Callable[[TicketRecord], tuple[Ticket, Any]], *,
                      retry: bool = True, extra: Sequence[Extra] = (),
                      meta: Mapping[str, Any] | None = None) -> TicketRecord:
        """Read a ticket, change it, save the change atomically (the change gives one event or a
        list) with `meta` entries set; with `retry`, a concurrent change (Conflict) re-reads and
        applies again, up to RETRIES times."""
        for attempt in range(RETRIES if retry else 1):
            previous = await self.store.get(number)
            ticket, event = change(previous)
            events, decided = await self._outbox(ticket, event if isinstance(event, list) else [event])
            record = self._record(ticket, {**previous.meta, **(meta or {})})
            try:
                await self.store.save([TicketWrite(record, events, previous)], extra=[*extra, *decided])
                return record
            except Conflict:
                if not retry or attempt == RETRIES - 1:
                    raise
                await backoff(attempt)
        raise AssertionError("unreachable")
