"""SupervisionService: 督办 issued by supervisors and by the rules, answered by the units,
escalated up the unit tree when left unanswered (rules in `command.supervision`, the record in
`store.supervision`).

Each step is one transaction: the ticket's timeline event (a ``note`` carrying ``supervision``,
which also sets ``ticket.supervised``) saved by `TicketManager.annotate` with the 督办 row's write.
The dispatch worker runs `tick` after its timers (`services.worker.run_timers`): a 督办 for each
red ticket and each stage past its limit (once per ticket and cause), the escalation of those due,
and the closing of those whose ticket ended.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from store.supervision import SupervisionChanged, SupervisionStore
from store.units import UnitStore
from store.ticket_records import TicketRecord
from command import supervision as rules
from command.errors import CommandError, Refused, TicketNotFound
from command.ticket_model import OPEN_STATES, SYSTEM_ACTOR, Actor, Role, Ticket
from services.tickets import TicketManager

log = logging.getLogger(__name__)

OFFICE_ROLES = frozenset({Role.AGENT, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN})
ISSUER_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})
RED_SCAN = 500  # red tickets read per page by the rules' pass


class SupervisionRefused(Refused):
    """A 督办 request refused: an HTTP status, a stable code and a message."""


def overdue_stages(alarms: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """The overdue stages per ticket among the dispatcher's ticket alarms (``dsp:alarms``, raised
    by `services.dispatch_timers.DispatchTimers.check_escalation`)."""
    out: dict[str, list[str]] = {}
    for alarm in alarms.values():
        if alarm.get("kind") == "limit" and alarm.get("level") == "overdue" and alarm.get("number"):
            out.setdefault(str(alarm["number"]), []).append(str(alarm.get("what")))
    return out


class SupervisionService:
    """Issue, urge, answer, escalate and list 督办."""

    def __init__(self, tickets: TicketManager, store: SupervisionStore, units: UnitStore) -> None:
        self.tickets = tickets
        self.store = store
        self.units = units

    def now(self) -> datetime:
        """The ticket manager's clock (tests set it)."""
        return self.tickets.clock()

    # ------------------------------------------------------------------ issue and urge
    async def issue(self, number: str, actor: Actor, *, message: Any, deadline: Any = None) -> tuple[dict[str, Any], str]:
        """A supervisor's 督办 on an open ticket, or an urging of its open one; the record and
        ``issue`` or ``urge``."""
        if actor.role not in ISSUER_ROLES:
            raise SupervisionRefused(403, "forbidden", f"role {actor.role.value} may not issue a supervision")
        now = self.now()
        text = rules.check_text(message, "message", rules.MESSAGE_MAX)
        due = rules.check_deadline(deadline, now)
        record = await self.tickets.get(number, actor)
        return await self._issue(record.ticket, actor, now, text, due, ())

    async def _issue(self, ticket: Ticket, actor: Actor, now: datetime, message: str, deadline: datetime,
                     causes: Sequence[str]) -> tuple[dict[str, Any], str]:
        if ticket.state not in OPEN_STATES:
            raise SupervisionRefused(409, "ticket_not_open", f"ticket {ticket.number} is {ticket.state.value}")
        if not ticket.unit_id:
            raise SupervisionRefused(409, "no_unit", f"ticket {ticket.number} has no responsible unit")
        current = await self.store.open_for(ticket.number)
        at, until = now.timestamp(), deadline.timestamp()
        if current is None:
            sid, kind, urgings = await self.store.next_id(), "issue", 0
            write = self.store.issue_write(sid, ticket.number, ticket.unit_id, by=actor.user_id, at=at,
                                           deadline=until, message=message, causes=causes)
        else:
            sid, kind, urgings = current["id"], "urge", current["urgings"] + 1
            write = self.store.urge_write(sid, current["urgings"], at=at, deadline=until, message=message,
                                          causes=causes)
        holder = ticket.unit_id if current is None else current["holder"]
        note = rules.note_for(kind, message=message, deadline=deadline, urgings=urgings, causes=causes)
        data = {"supervision_id": sid, "unit_id": holder, "deadline": deadline.isoformat(), "urgings": urgings,
                "causes": list(causes)}
        await self.tickets.annotate(ticket.number, lambda t: rules.annotate(
            t, kind, actor=actor, now=now, note=note, data=data), actor, extra=[write])
        return await self._get(sid), kind

    # ------------------------------------------------------------------ answer
    async def answer(self, supervision_id: int, actor: Actor, *, answer: Any, note: Any = None,
                     scope: Sequence[str] | None = None) -> dict[str, Any]:
        """The unit's answer (role unit: a 督办 of its own tickets or those under it, `scope` being
        its unit and those below), or an office role recording it on the unit's behalf (with a
        `note` saying so). The 督办 closes."""
        text = rules.check_text(answer, "answer", rules.ANSWER_MAX)
        if actor.role is Role.UNIT:
            row = await self.store.get(supervision_id)
            if row is None or not set(scope or ()) & {row["unit_id"], row["holder"]}:
                raise SupervisionRefused(404, "supervision_not_found", f"no supervision {supervision_id}")
            on_behalf = ""
        elif actor.role in OFFICE_ROLES:
            on_behalf = rules.check_text(note, "note", rules.MESSAGE_MAX)
            row = await self._get(supervision_id)
        else:
            raise SupervisionRefused(403, "forbidden", f"role {actor.role.value} may not answer a supervision")
        if row["closed_at"] is not None:
            raise SupervisionRefused(409, "supervision_closed", f"supervision {supervision_id} is not open")
        now = self.now()
        words = text if not on_behalf else f"{text}（{actor.user_id} 代录：{on_behalf}）"
        data = {"supervision_id": supervision_id, "unit_id": row["holder"], "on_behalf": bool(on_behalf)}
        await self.tickets.annotate(row["number"], lambda t: rules.annotate(
            t, "answer", actor=actor, now=now, note=rules.note_for("answer", message=words), data=data),
            actor, extra=[self.store.answer_write(supervision_id, by=actor.user_id, at=now.timestamp(), answer=words)])
        return await self._get(supervision_id)

    # ------------------------------------------------------------------ the rules' pass
    async def tick(self, now: datetime, overdue: Mapping[str, Iterable[str]] | None = None) -> dict[str, int]:
        """One pass of the rules at `now`: 督办 for red tickets and for the tickets with stages
        past their limit (`overdue`: stages per ticket, see `overdue_stages`), each once per ticket
        and cause; escalation of the due ones; closing of those whose ticket ended. Counts."""
        issued = await self.issue_by_rules(now, overdue or {})
        return {"issued": issued, "escalated": await self.escalate_due(now), "closed": await self.close_ended(now)}

    async def _red_tickets(self, now: datetime) -> list[TicketRecord]:
        found: list[TicketRecord] = []
        while True:
            page, total = await self.tickets.store.page(now.timestamp(), ranked=False, color="red",
                                                        offset=len(found), limit=RED_SCAN)
            found += page
            if not page or len(found) >= total:
                return found

    async def issue_by_rules(self, now: datetime, overdue: Mapping[str, Iterable[str]]) -> int:
        """Issue (or urge with) the rules' 督办 not issued yet; how many steps were written."""
        records = {r.ticket.number: r for r in await self._red_tickets(now)}
        stages = {n: list(s) for n, s in overdue.items()}
        missing = [n for n in stages if n not in records]
        for record in await self.tickets.store.get_many(missing) if missing else ():
            if record is not None:
                records[record.ticket.number] = record
        done = await self.store.causes_of(list(records))
        count = 0
        for number, record in sorted(records.items()):
            ticket = record.ticket
            causes = [c for c in rules.causes_for(ticket, stages.get(number, ()), route=record.meta.get("route"))
                      if c not in done.get(number, set())]
            if not causes or not ticket.unit_id:
                continue
            message = "请加快办理并答复：" + "；".join(rules.cause_text(c) for c in causes)
            try:
                await self._issue(ticket, SYSTEM_ACTOR, now, message, rules.deadline_after(now, rules.AUTO_DEADLINE),
                                  causes)
                count += 1
            except (SupervisionRefused, SupervisionChanged, CommandError, LookupError) as exc:
                log.info("supervision of %s by the rules not written: %s", number, exc)
        return count

    async def escalate_due(self, now: datetime) -> int:
        """Hand each 督办 left unanswered at its deadline to the unit above its holder, with a new
        deadline (one with no unit above but the center stays due); how many."""
        targets = rules.escalation_targets(await self.units.tree())  # one read of the tree a round
        count = 0
        for row in await self.store.due(now.timestamp(), holders=sorted(targets)):
            target = targets[row["holder"]]
            deadline = rules.deadline_after(now, rules.ESCALATION_DEADLINE)
            data = {"supervision_id": row["id"], "unit_id": target, "from_unit": row["holder"],
                    "deadline": deadline.isoformat()}
            note = rules.note_for("escalate", unit_id=target, deadline=deadline)
            try:
                await self.tickets.annotate(row["number"], lambda t: rules.annotate(
                    t, "escalate", actor=SYSTEM_ACTOR, now=now, note=note, data=data), SYSTEM_ACTOR,
                    extra=[self.store.escalate_write(row["id"], row["escalations"], to_unit=target,
                                                     at=now.timestamp(), deadline=deadline.timestamp())])
                count += 1
            except (SupervisionChanged, CommandError, LookupError) as exc:
                log.info("escalation of supervision %s not written: %s", row["id"], exc)
        return count

    async def close_ended(self, now: datetime) -> int:
        """Close the open 督办 whose ticket ended (closed, cancelled, merged), noted on the timeline."""
        count = 0
        for row in await self.store.open_of_ended_tickets():
            data = {"supervision_id": row["id"], "unit_id": row["holder"]}
            try:
                await self.tickets.annotate(row["number"], lambda t: rules.annotate(
                    t, "close", actor=SYSTEM_ACTOR, now=now,
                    note=rules.note_for("close", message=rules.ENDED_TEXT.get(t.state.value, t.state.value)),
                    data=data), SYSTEM_ACTOR,
                    extra=[self.store.close_write(row["id"], at=now.timestamp())])
                count += 1
            except (SupervisionChanged, CommandError, LookupError) as exc:
                log.info("closing supervision %s not written: %s", row["id"], exc)
        return count

    # ------------------------------------------------------------------ reads
    async def _get(self, supervision_id: int) -> dict[str, Any]:
        row = await self.store.get(supervision_id)
        if row is None:
            raise SupervisionRefused(404, "supervision_not_found", f"no supervision {supervision_id}")
        return row

    async def of_ticket(self, number: str, actor: Actor, scope: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The 督办 of a ticket the actor may see (a unit user: only its own units' 督办)."""
        record = await self.tickets.get(number, actor)
        rows = await self.store.of_ticket(number)
        if scope is not None:
            rows = [r for r in rows if set(scope) & {r["unit_id"], r["holder"]}]
            if not rows and record.ticket.unit_id not in scope:
                raise TicketNotFound(number)
        return rows

    async def listing(self, state: str, *, units: Sequence[str] | None, limit: int,
                      offset: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the 督办 in a state, for `units` only unless None."""
        if state not in rules.LIST_STATES:
            raise SupervisionRefused(400, "validation_error", "state must be one of: " + ", ".join(rules.LIST_STATES))
        return await self.store.page(state, self.now().timestamp(), units=units, limit=limit, offset=offset)


__all__ = ["SupervisionService", "SupervisionRefused", "overdue_stages"]
