"""The ticket manager's reads: one ticket the actor may see and its timeline, the open tickets a
call would be linked to before it is saved (`duplicates`), the pages of tickets (the dispatcher's
queue, a crew's or a unit's, by phone or colour), the review queues and the callback queue."""
from __future__ import annotations

import math
from typing import Any

from store.ticket_records import TicketRecord
from command import repeats
from command.coordinates import check_optional_point
from command.errors import TicketNotFound, ValidationError
from command.review import waiting_step
from command.ticket_model import NUMBER_RE, OPEN_STATES, REVIEWER_ROLES, Actor, Role, State, TicketType, normalize_phone
from gis.crs import distance_m
from services.ticket_core import TicketCore

_TYPES = frozenset(t.value for t in TicketType)


class TicketLists(TicketCore):
    """The ticket manager's reads and lists."""

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
