"""Tickets, callbacks and incidents: the JSON API over `services.tickets.TicketManager`.

Times are UTC ISO-8601 with Z. Crew members see only their crew's tickets, a unit's liaison only
those of its unit and the units under it (others are 404), both with masked caller phones. State-changing calls carry the `expected_version` the caller last read;
a stale one (a change other than a note since) is a 409 conflict.
"""
from __future__ import annotations

import math
import re
from typing import Any

from command.coordinates import parse_point
from command.errors import Conflict
from command.ticket_model import Actor, Role
from services.ticket_views import event_view, incident_view, iso_z, ticket_view
from web.base import ApiError, BaseHandler

OFFICE = ("agent", "dispatcher", "supervisor")  # admin passes every require()
REVIEWERS = ("team_leader", "coordinator", "director")  # the review chains' steps (command.review)
READERS = OFFICE + ("crew", "unit") + REVIEWERS
NUMBER = r"(GD\d{8}-\d{4,})"
INCIDENT = r"([A-Za-z0-9_-]{1,64})"


class TicketHandler(BaseHandler):
    """Base of the ticket handlers: the manager (``self.tickets``), the acting account as a domain
    Actor, views. Every refused request is counted and logged (``BaseHandler.count_refusals``)."""

    count_refusals = True

    def actor(self, *roles: str) -> Actor:
        """The logged-in account (one of `roles`, or admin) as the domain's Actor."""
        account = self.require(*roles)
        return Actor(account.name, Role(account.role), account.crew_id, frozenset(account.unit_ids))

    def view(self, record: Any, actor: Actor) -> dict[str, Any]:
        """A ticket as this actor sees it."""
        return ticket_view(record, actor, self.tickets.clock(), warn_share=self.tickets.policy.warn_share)

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        """An integer query argument within [low, high], else 400."""
        raw = self.get_argument(name, None)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, "bad_request", f"{name} must be an integer") from None
        if not low <= value <= high:
            raise ApiError(400, "bad_request", f"{name} must be within {low}..{high}")
        return value

    def float_arg(self, name: str) -> float | None:
        """A finite float query argument, or None when absent."""
        raw = self.get_argument(name, None)
        if raw in (None, ""):
            return None
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(400, "bad_request", f"{name} must be a number") from None
        if not math.isfinite(value):
            raise ApiError(400, "bad_request", f"{name} must be finite")
        return value

    def point_arg(self, *, required: bool = True) -> tuple[float, float] | None:
        """The ``lon``/``lat`` query arguments as a point inside the service area (the shared
        rule, `command.coordinates`): 400 ``bad_coordinates`` / ``outside_service_area``."""
        manager = self.services.tickets
        return parse_point(self.get_argument("lon", None), self.get_argument("lat", None),
                           None if manager is None else manager.service_area, required=required)

    def expected_version(self, body: dict[str, Any]) -> int:
        """The required `expected_version` of a state-changing request."""
        version = body.pop("expected_version", None)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ApiError(400, "validation_error", "expected_version (the version you last read) is required",
                           field="expected_version")
        return version


class TicketCollection(TicketHandler):
    """GET /api/tickets?state=&color=&phone=&review_role=&sort=time_left|created&limit=&offset= ;
    POST /api/tickets: a call (new ticket, or a repeat linked to an open one)."""

    async def get(self) -> None:
        actor = self.actor(*READERS)
        limit = self.int_arg("limit", 50, 1, 500)
        offset = self.int_arg("offset", 0, 0, 100_000)
        records, total = await self.tickets.list(
            actor, state=self.get_argument("state", None) or None, color=self.get_argument("color", None) or None,
            phone=self.get_argument("phone", None) or None, sort=self.get_argument("sort", "time_left"),
            limit=limit, offset=offset, review_role=self.get_argument("review_role", None) or None)
        now = self.tickets.clock()
        self.write_json({"tickets": [ticket_view(r, actor, now, warn_share=self.tickets.policy.warn_share)
                                     for r in records],
                         "total": total, "offset": offset, "limit": limit,
                         "now": iso_z(now.isoformat())})

    async def post(self) -> None:
        actor = self.actor(*OFFICE, "team_leader")  # the front desk's team leader takes calls too
        body = self.json_body()
        link = body.pop("link", True)
        answer = body.pop("answer", None)
        tags = body.pop("tags", [])
        result = await self.tickets.create(body, actor, link=link, answer=answer, tags=tags)
        self.write_json({"linked": result.linked, "incident_id": result.incident_id,
                         "match": None if result.kind is None else result.kind.value,
                         "ticket": self.view(result.record, actor)}, status=200 if result.linked else 201)


class TicketDuplicates(TicketHandler):
    """GET /api/tickets/duplicates?lon=&lat=&category=&type=&phone=&radius_m=: the open ticket a call
    would be linked to (``repeat_of``, ``match`` repeat or duplicate) and the candidates nearby."""

    async def get(self) -> None:
        actor = self.actor(*OFFICE)
        radius = self.float_arg("radius_m")
        if radius is not None and not 0 < radius <= 5000:
            raise ApiError(400, "bad_request", "radius_m must be within 0..5000")
        lon, lat = self.point_arg(required=False) or (None, None)
        found = await self.tickets.duplicates(lon=lon, lat=lat,
                                              category=self.get_argument("category", None) or None,
                                              phone=self.get_argument("phone", None) or None, radius_m=radius,
                                              type_=self.get_argument("type", None) or None,
                                              description=(self.get_argument("description", None) or "")[:2000])
        self.write_json({"repeat_of": found["repeat_of"], "match": found["match"], "radius_m": found["radius_m"],
                         "candidates": [
            {"ticket": self.view(record, actor), "distance_m": distance, "same_phone": same_phone,
             "same_category": same_category}
            for record, distance, same_phone, same_category in found["candidates"]]})


class TicketDetail(TicketHandler):
    """GET /api/tickets/<number>: the ticket with the caller's allowed actions."""

    async def get(self, number: str) -> None:
        actor = self.actor(*READERS)
        self.write_json(self.view(await self.tickets.get(number, actor), actor))


class TicketTimeline(TicketHandler):
    """GET /api/tickets/<number>/timeline: every audit event in order."""

    async def get(self, number: str) -> None:
        actor = self.actor(*READERS)
        events = await self.tickets.timeline(number, actor)
        self.write_json({"number": number, "events": [event_view(sid, e, actor) for sid, e in events]})


CLIENT_ACTION_ID = re.compile(r"^[A-Za-z0-9_.:-]{8,80}$")


class TicketAction(TicketHandler):
    """POST /api/tickets/<number>/actions/<action> {expected_version, ...args}.

    An ``X-Client-Action-Id`` header makes a retry idempotent: the field page resends a queued
    action whose reply the connection lost; when that action was already applied, the retry's
    stale version is not a conflict but an answer with the ticket as it is now."""

    async def post(self, number: str, action: str) -> None:
        actor = self.actor(*READERS)
        body = self.json_body()
        version = self.expected_version(body)
        action_id = self.request.headers.get("X-Client-Action-Id")
        if action_id is not None and not CLIENT_ACTION_ID.match(action_id):
            raise ApiError(400, "bad_request", "X-Client-Action-Id must be 8-80 letters, digits or _.:-")
        store = self.tickets.store
        # the action id is recorded in the action's own transaction: applied means remembered
        remember = () if action_id is None else (store.client_action_write(action_id, f"{number}/{action}"),)
        try:
            if action == "hand_to_crew":  # checks the crew is one of the liaison's units' (503 without dispatch)
                record = await self.dispatch.assign(number, body.get("crew_id"), actor, expected_version=version,
                                               note=str(body.get("note") or ""))
            else:
                record = await self.tickets.act(number, action, body, actor, expected_version=version, extra=remember)
        except Conflict:
            if action_id is None or await store.client_action(action_id) != f"{number}/{action}":
                raise
            record = await self.tickets.get(number, actor)  # the retry of an action already applied
        self.write_json({"ticket": self.view(record, actor)})


class TicketCallback(TicketHandler):
    """POST /api/tickets/<number>/callback {expected_version, satisfaction, words, truthful}: a
    unit's ticket not satisfied or whose feedback is not true goes back to the same unit (转办督查单)."""

    async def post(self, number: str) -> None:
        actor = self.actor("agent", "supervisor")
        body = self.json_body()
        version = self.expected_version(body)
        words = body.get("words") or ""
        if not isinstance(words, str):
            raise ApiError(400, "validation_error", "words must be a string", field="words")
        truthful = body.get("truthful", True)
        if not isinstance(truthful, bool):
            raise ApiError(400, "validation_error", "truthful must be true or false", field="truthful")
        record = await self.tickets.callback(number, str(body.get("satisfaction")), actor, words=words,
                                             expected_version=version, truthful=truthful)
        self.write_json({"ticket": self.view(record, actor)})


class CallbackQueue(TicketHandler):
    """GET /api/callbacks: resolved tickets awaiting their callback, longest waiting first."""

    async def get(self) -> None:
        actor = self.actor("agent", "supervisor")
        records = await self.tickets.callbacks(limit=self.int_arg("limit", 100, 1, 500))
        self.write_json({"tickets": [self.view(r, actor) for r in records]})


class TicketCounts(TicketHandler):
    """GET /api/tickets/counts: tickets per state, open total, reopened per unit."""

    async def get(self) -> None:
        self.actor("dispatcher", "supervisor")
        store = self.tickets.store
        self.write_json({"states": await store.counts(), "open": await store.open_count(),
                         "unit_rework": await store.unit_rework()})


class IncidentList(TicketHandler):
    """GET /api/incidents?all=1: unresolved incidents (or all), newest first."""

    async def get(self) -> None:
        self.actor(*OFFICE)
        found = await self.tickets.incidents(open_only=self.get_argument("all", "0") != "1",
                                             limit=self.int_arg("limit", 100, 1, 500))
        self.write_json({"incidents": [incident_view(i, rev) for i, rev in found]})


class IncidentDetail(TicketHandler):
    """GET /api/incidents/<id>: the incident with its calls."""

    async def get(self, incident_id: str) -> None:
        actor = self.actor(*OFFICE)
        incident, rev = await self.tickets.incident(incident_id)
        records = await self.tickets.store.get_many(incident.ticket_numbers)
        self.write_json({**incident_view(incident, rev), **await self.incidents.details(incident_id),
                         "tickets": [self.view(r, actor) for r in records if r is not None]})


class IncidentResolve(TicketHandler):
    """POST /api/incidents/<id>/resolve {resolution}: resolve every open call together, withdraw the
    incident's outage notice (`services.incidents.IncidentService.resolve`)."""

    async def post(self, incident_id: str) -> None:
        actor = self.actor("dispatcher", "supervisor")
        body = self.json_body()
        incident = await self.incidents.resolve(incident_id, body.get("resolution"), actor)
        _, rev = await self.tickets.incident(incident_id)
        self.write_json(incident_view(incident, rev))


routes = [
    (r"/api/tickets", TicketCollection),
    (r"/api/tickets/duplicates", TicketDuplicates),
    (r"/api/tickets/counts", TicketCounts),
    (rf"/api/tickets/{NUMBER}", TicketDetail),
    (rf"/api/tickets/{NUMBER}/timeline", TicketTimeline),
    (rf"/api/tickets/{NUMBER}/actions/([a-z_]{{1,32}})", TicketAction),
    (rf"/api/tickets/{NUMBER}/callback", TicketCallback),
    (r"/api/callbacks", CallbackQueue),
    (r"/api/incidents", IncidentList),
    (rf"/api/incidents/{INCIDENT}", IncidentDetail),
    (rf"/api/incidents/{INCIDENT}/resolve", IncidentResolve),
]
