"""Dispatch: recommendations by road ETA, the dispatcher's assignment, joint assignment of
several tickets, the crew board and the ticket alarms, over `services.dispatch.DispatchManager`."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from command.errors import ValidationError
from web.base import ApiError
from web.handlers.tickets import NUMBER, TicketHandler

DISPATCHERS = ("dispatcher", "supervisor")  # admin passes every require(); the call desk needs none of these
CREW = r"([A-Za-z0-9_.-]{1,64})"


class DispatchHandler(TicketHandler):
    """Base of the dispatch handlers: the dispatch manager built at start-up (``self.dispatch``)."""


class Recommendation(DispatchHandler):
    """GET /api/tickets/<number>/recommendation: the top 3 crews by road ETA (ETA s, distance m,
    route geometry [[lon, lat], ...], explanation) and every skipped crew with its reason; the
    stored one (?stored=1) or computed now."""

    async def get(self, number: str) -> None:
        actor = self.actor(*DISPATCHERS)
        record = await self.tickets.get(number, actor)
        if self.get_argument("stored", "0") == "1":
            view = await self.dispatch.stored_recommendation(number)
            if view is None:
                raise ApiError(404, "no_recommendation", f"no recommendation stored for {number}")
        else:
            view = await self.dispatch.recommend(record)
        self.write_json(view)


class Assign(DispatchHandler):
    """POST /api/tickets/<number>/assign {crew_id, expected_version}: dispatch to this crew."""

    async def post(self, number: str) -> None:
        actor = self.actor(*DISPATCHERS, "unit")  # a station's liaison: to one of its own crews
        body = self.json_body()
        version = self.expected_version(body)
        note = body.get("note") or ""
        if not isinstance(note, str):
            raise ApiError(400, "validation_error", "note must be a string", field="note")
        record = await self.dispatch.assign(number, body.get("crew_id"), actor, expected_version=version, note=note)
        self.write_json({"ticket": self.view(record, actor)})


class Joint(DispatchHandler):
    """POST /api/dispatch/joint {numbers: [...], apply: false}: joint assignment minimising the
    total urgency-weighted ETA, with the greedy baseline and the gain; `apply` dispatches it."""

    async def post(self) -> None:
        actor = self.actor(*DISPATCHERS)
        body = self.json_body()
        apply = body.get("apply", False)
        if not isinstance(apply, bool):
            raise ApiError(400, "validation_error", "apply must be true or false", field="apply")
        self.write_json(await self.dispatch.joint(body.get("numbers"), actor, apply=apply))


class CrewBoard(DispatchHandler):
    """GET /api/crews: every crew with vehicle, state (free, busy, off_shift), current ticket, fix age."""

    async def get(self) -> None:
        self.actor(*DISPATCHERS)
        self.write_json({"crews": await self.dispatch.board()})


class CrewShift(DispatchHandler):
    """POST /api/crews/<crew_id>/shift {on_shift: bool, ends_at: ISO time or null}."""

    async def post(self, crew_id: str) -> None:
        actor = self.actor(*DISPATCHERS)
        body = self.json_body()
        on_shift, ends = body.get("on_shift"), body.get("ends_at")
        if not isinstance(on_shift, bool):
            raise ApiError(400, "validation_error", "on_shift must be true or false", field="on_shift")
        ends_at = None
        if ends is not None:
            try:
                ends_at = datetime.fromisoformat(str(ends).replace("Z", "+00:00"))
            except ValueError:
                raise ValidationError("ends_at", "must be an ISO-8601 time") from None
            if ends_at.tzinfo is None:
                raise ValidationError("ends_at", "needs a UTC offset")
        await self.dispatch.crews.set_shift(crew_id, on_shift, ends_at, actor.user_id, self.dispatch.clock(),
                                            role=actor.role.value)  # NotFound: 404 crew_not_found
        self.write_json({"crew_id": crew_id, "on_shift": on_shift,
                         "ends_at": None if ends_at is None else ends_at.isoformat()})


class TicketAlarms(DispatchHandler):
    """GET /api/ticket-alarms: time-limit warnings and overdues, dispatch and 110 alerts."""

    async def get(self) -> None:
        self.actor(*DISPATCHERS)
        found: list[dict[str, Any]] = await self.dispatch.alarms()
        level = self.get_argument("level", None)
        if level:
            found = [a for a in found if a.get("level") == level]
        self.write_json({"alarms": found})


routes = [
    (rf"/api/tickets/{NUMBER}/recommendation", Recommendation),
    (rf"/api/tickets/{NUMBER}/assign", Assign),
    (r"/api/dispatch/joint", Joint),
    (r"/api/crews", CrewBoard),
    (rf"/api/crews/{CREW}/shift", CrewShift),
    (r"/api/ticket-alarms", TicketAlarms),
]
