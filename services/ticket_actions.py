"""The workflow actions of the ticket manager: `act` (a lifecycle action of `command.tickets.apply`,
with the routing's and the incident's checks, a review's new route, the release of a reviewed
ticket to its unit), `set_unit`, another service's change saved with its rows (`annotate`), and
the callback (回访) that closes, reworks or reopens a resolved ticket."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from store.ticket_records import TicketRecord, TicketWrite
from store.ticket_writes import Extra
from command import grouping
from command.errors import Conflict, ValidationError
from command.routing import CREW_ACTIONS, SET_UNIT, check_crew_dispatch, set_unit
from command.ticket_effects import REJECTED_PREFIX
from command.ticket_model import NUMBER_RE, SYSTEM_ACTOR, Actor, AuditEvent, Satisfaction, State, Ticket
from command.tickets import apply, is_current
from services.ticket_core import TicketCore

_RESERVED_ARGS = frozenset({"ticket", "action", "actor", "now", "expected_version"})


class TicketActions(TicketCore):
    """The ticket manager's lifecycle actions and callbacks."""

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
