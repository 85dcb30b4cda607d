"""督办 (supervision orders): the JSON API over `services.supervision.SupervisionService`.

- ``POST /api/tickets/<n>/supervision {message, deadline?}`` (supervisor, admin): issue a 督办 on
  an open ticket, or urge its open one (201 issued / 200 urged);
- ``GET /api/tickets/<n>/supervision``: the ticket's 督办, newest first;
- ``POST /api/supervisions/<id>/answer {answer, note?}``: the unit answers (role unit, its own
  units' only); an office role records it on the unit's behalf with a ``note``;
- ``GET /api/supervisions?state=open|due|answered&unit=`` (office roles: all; a unit user: its
  unit and those under it).

A unit's liaison acts for its unit and the units under it (``Actor.unit_ids``, as for its tickets).
"""
from __future__ import annotations

from typing import Any

from command import supervision as rules
from command.ticket_model import Actor, Role
from services.supervision import SupervisionService
from web.base import ApiError
from web.handlers.tickets import NUMBER, OFFICE, TicketHandler
from web.handlers.units import ID_RE
from web.handlers.vehicles import iso
from web.openapi_schemas import I, NS, NT, S, T, arr, obj, op

READERS = OFFICE + ("unit",)
ISSUE_FIELDS = frozenset({"message", "deadline"})
ANSWER_FIELDS = frozenset({"answer", "note"})


def supervision_view(row: dict[str, Any], now: Any) -> dict[str, Any]:
    """A 督办 as the API shows it: times in ISO-8601 UTC, its state at `now`."""
    out = {k: row[k] for k in ("id", "number", "unit_id", "holder", "issued_by", "message", "causes", "urgings",
                               "answered_by", "answer", "escalated_to_unit", "escalations")}
    out.update({k: iso(row[k]) for k in ("issued_at", "deadline", "last_urged_at", "answered_at", "escalated_at",
                                         "closed_at")})
    out["state"] = rules.state_of(row, now)
    return out


class SupervisionHandler(TicketHandler):
    """Base: the service (built at start-up over the ticket manager), a unit user's scope."""

    @property
    def supervision(self) -> SupervisionService:
        """The 督办 service (503 when this process runs without a ticket manager)."""
        return self._needed(self.services.supervision, "tickets_unavailable", "the ticket service is not configured")

    @staticmethod
    def scope(actor: Actor) -> list[str] | None:
        """The units a unit's liaison answers for (its unit and those under it, read at login, as
        for its tickets); None for the office roles."""
        return None if actor.role is not Role.UNIT else sorted(actor.unit_ids)

    def body_of(self, allowed: frozenset[str]) -> dict[str, Any]:
        """The JSON body with only the allowed fields (another one is a 400 naming it)."""
        body = self.json_body()
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ApiError(400, "validation_error", f"unknown field {unknown[0]}", field=unknown[0])
        return body


class TicketSupervision(SupervisionHandler):
    """POST issues or urges the ticket's 督办; GET lists them."""

    async def post(self, number: str) -> None:
        actor = self.actor("supervisor")
        body = self.body_of(ISSUE_FIELDS)
        row, kind = await self.supervision.issue(number, actor, message=body.get("message"),
                                                 deadline=body.get("deadline"))
        self.write_json({"supervision": supervision_view(row, self.tickets.clock()), "step": kind},
                        201 if kind == "issue" else 200)

    async def get(self, number: str) -> None:
        actor = self.actor(*READERS)
        rows = await self.supervision.of_ticket(number, actor, self.scope(actor))
        now = self.tickets.clock()
        self.write_json({"number": number, "supervisions": [supervision_view(r, now) for r in rows]})


class SupervisionAnswer(SupervisionHandler):
    """POST /api/supervisions/<id>/answer {answer, note?}."""

    async def post(self, supervision_id: str) -> None:
        actor = self.actor(*READERS)
        body = self.body_of(ANSWER_FIELDS)
        row = await self.supervision.answer(int(supervision_id), actor, answer=body.get("answer"),
                                            note=body.get("note"), scope=self.scope(actor))
        self.write_json({"supervision": supervision_view(row, self.tickets.clock())})


class SupervisionList(SupervisionHandler):
    """GET /api/supervisions?state=open|due|answered&unit=&limit=&offset=."""

    async def get(self) -> None:
        actor = self.actor(*READERS)
        state = self.get_argument("state", "open")
        unit = self.get_argument("unit", None)
        limit, offset = self.int_arg("limit", 100, 1, 500), self.int_arg("offset", 0, 0, 1_000_000)
        if unit is not None and not ID_RE.match(unit):
            raise ApiError(400, "validation_error", "unit must be a unit id", field="unit")
        scope = self.scope(actor)
        units = scope
        if unit is not None:
            units = await self.supervision.units.descendants(unit)
            if scope is not None and unit not in scope:
                raise ApiError(403, "forbidden", f"unit {unit} is not under this account's unit")
        rows, total = await self.supervision.listing(state, units=units, limit=limit, offset=offset)
        now = self.tickets.clock()
        self.write_json({"state": state, "total": total, "supervisions": [supervision_view(r, now) for r in rows]})


_SUPERVISION = obj(["id", "number", "unit_id", "holder", "state", "deadline", "message", "urgings"],
                   id=I, number=S, unit_id=S, holder=S, issued_by=S, issued_at=T, deadline=T, message=S,
                   causes=arr(S), urgings=I, last_urged_at=NT, answered_at=NT, answered_by=NS, answer=NS,
                   escalated_to_unit=NS, escalated_at=NT, escalations=I, closed_at=NT,
                   state={"type": "string", "enum": ["open", "due", "answered", "closed"]})
_ROLES = "agent, dispatcher, supervisor, admin; unit (its unit's and those under it)"
openapi = {
    "POST /api/tickets/{}/supervision": op(
        "Issue a 督办 on an open ticket (201), or urge its open one (200: urgings + 1, the new message and "
        "deadline); an audit event on the ticket's timeline; 409 ticket_not_open / no_unit",
        "supervisor, admin", obj(["supervision", "step"], supervision=_SUPERVISION, step=S), status=201,
        body=obj(["message"], message=S, deadline=T), errors=(400, 401, 403, 404, 409)),
    "GET /api/tickets/{}/supervision": op("The ticket's 督办, newest first", _ROLES,
                                          obj(["number", "supervisions"], number=S, supervisions=arr(_SUPERVISION)),
                                          errors=(401, 403, 404)),
    "POST /api/supervisions/{}/answer": op(
        "The unit answers a 督办 (it closes); an office role records the answer on the unit's behalf with a "
        "note; 409 supervision_closed", _ROLES, obj(["supervision"], supervision=_SUPERVISION),
        body=obj(["answer"], answer=S, note=S), errors=(400, 401, 403, 404, 409)),
    "GET /api/supervisions": op("督办 by state (open: unanswered, due: past the deadline, answered), for one "
                                "unit and those under it with `unit`", _ROLES,
                                obj(["state", "total", "supervisions"], state=S, total=I,
                                    supervisions=arr(_SUPERVISION)),
                                query=(("state", "string", "open (default), due or answered"),
                                       ("unit", "string", "a unit id: its 督办 and those of the units under it"),
                                       ("limit", "integer", "1..500 (default 100)"),
                                       ("offset", "integer", "rows to skip")), errors=(400, 401, 403)),
}

routes = [
    (rf"/api/tickets/{NUMBER}/supervision", TicketSupervision),
    (r"/api/supervisions", SupervisionList),
    (r"/api/supervisions/(\d{1,18})/answer", SupervisionAnswer),
]
