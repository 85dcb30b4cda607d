"""Tickets and their lifecycle as an explicit state machine (pure: time is passed in).

This module holds the machine: the table, `apply`, `allowed_actions` and the visibility rule.
What each action does is in `command.ticket_effects`, the input checks and `new_ticket` in
`command.ticket_fields`, the records and enums in `command.ticket_model`, their JSON forms in
`command.ticket_json`.

The lifecycle is the table `ACTIONS`: for each action the states it may start from, the state it
leads to, the roles allowed and the fields required. `apply` is the only way a ticket changes
state; it returns the new ticket (version + 1) and the `AuditEvent` describing the change.

Main path: new → (reviewed) → dispatched → accepted → en_route → on_site → resolved → callback →
closed. Side paths: decline / expire (back to the pool), return (退单 to the center), reopen
(返工), transfer (to another unit), cancel, merge, close_direct (直接办结 of a consultation
answered on the call), resolve_with_incident (resolved together with a grouped incident), and
annotations that keep the state (note, supervise 督办, repeat_call, duplicate_call, link_incident).

A responsible unit's path (its liaison, role unit): assign (交办 by the center) → assigned →
unit_accept (受理) → handling → feedback (办理结果反馈) → resolved → the center's callback; from
handling a station hands the ticket to one of its crews (hand_to_crew; the service checks the
crew is the station's) and the field path follows.
The unit asks, the center decides: request_return (退单) → approve_return (back to the pool),
reroute_return (to another unit) or refuse_return; request_extension (延期, a new resolution
deadline) → approve_extension (the deadline moves: `command.limits`) or refuse_extension. One
request is pending at a time (`Ticket.request`); the unit never closes a ticket.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from command.errors import Conflict, Forbidden, InvalidTransition, ValidationError
from command.ticket_effects import EFFECTS, RELEASE_ACTIONS, REVIEW_STEP_ACTIONS, check_reviewer
from command.ticket_fields import check_text
from command.ticket_json import json_safe
from command.ticket_model import (
    FIELD_STATES, OPEN_STATES, POOL_STATES, REVIEWER_ROLES, UNIT_STATES, ActionSpec, Actor, AuditEvent, Role, State,
    Ticket, as_utc,
)

S = State

R = Role
_OFFICE = frozenset({R.AGENT, R.DISPATCHER, R.SUPERVISOR, R.ADMIN})
_DISPATCH = frozenset({R.DISPATCHER, R.SUPERVISOR, R.ADMIN})
_FIELD = frozenset({R.CREW, R.DISPATCHER, R.SUPERVISOR})  # dispatchers may record by radio
_PRE_RESOLVED = POOL_STATES | FIELD_STATES
_UNIT = frozenset({R.UNIT})
_EXTENDERS = frozenset({R.SUPERVISOR, R.ADMIN})

ACTIONS: dict[str, ActionSpec] = {a.name: a for a in (
    ActionSpec("review", frozenset({S.NEW, S.TRANSFERRED}), S.REVIEWED, _OFFICE,
               optional=("category", "type", "urgency")),
    ActionSpec("dispatch", POOL_STATES | {S.DISPATCHED}, S.DISPATCHED, _DISPATCH | {R.SYSTEM},
               required=("crew_id",), optional=("mode", "eta_s")),
    ActionSpec("accept", frozenset({S.DISPATCHED}), S.ACCEPTED, _FIELD),
    ActionSpec("decline", frozenset({S.DISPATCHED}), S.DECLINED, _FIELD, required=("reason",)),
    ActionSpec("expire", frozenset({S.DISPATCHED}), S.DECLINED, frozenset({R.SYSTEM})),
    ActionSpec("depart", frozenset({S.ACCEPTED}), S.EN_ROUTE, _FIELD),
    ActionSpec("arrive", frozenset({S.ACCEPTED, S.EN_ROUTE}), S.ON_SITE, _FIELD | {R.SYSTEM},
               optional=("source",)),
    ActionSpec("resolve", frozenset({S.ON_SITE}), S.RESOLVED, _FIELD, required=("resolution",)),
    ActionSpec("return", FIELD_STATES, S.RETURNED, _FIELD, required=("reason",)),
    ActionSpec("queue_callback", frozenset({S.RESOLVED}), S.CALLBACK, _OFFICE | {R.SYSTEM}),
    ActionSpec("close", frozenset({S.CALLBACK}), S.CLOSED, frozenset({R.AGENT, R.SUPERVISOR, R.ADMIN}),
               required=("satisfaction",), optional=("words",)),
    ActionSpec("reopen", frozenset({S.RESOLVED, S.CALLBACK, S.CLOSED}), S.REOPENED,
               frozenset({R.AGENT, R.SUPERVISOR, R.ADMIN}), required=("reason",),
               optional=("satisfaction", "words")),
    ActionSpec("transfer", POOL_STATES, S.TRANSFERRED, _DISPATCH, required=("unit_id",),
               optional=("reason",)),
    ActionSpec("cancel", POOL_STATES | {S.DISPATCHED, S.ACCEPTED, S.EN_ROUTE}, S.CANCELLED, _OFFICE,
               required=("reason",)),
    ActionSpec("merge", POOL_STATES | {S.DISPATCHED}, S.MERGED, _OFFICE | {R.SYSTEM},
               required=("into",)),
    ActionSpec("close_direct", frozenset({S.NEW, S.REVIEWED}), S.CLOSED,
               frozenset({R.AGENT, R.DISPATCHER, R.SUPERVISOR}), required=("answer",)),
    ActionSpec("resolve_with_incident", _PRE_RESOLVED, S.RESOLVED, _DISPATCH | {R.SYSTEM},
               required=("resolution",)),
    ActionSpec("link_incident", _PRE_RESOLVED, None, _OFFICE | {R.SYSTEM}, required=("incident_id",)),
    ActionSpec("repeat_call", OPEN_STATES, None, frozenset({R.AGENT, R.SYSTEM}), optional=("phone",)),
    ActionSpec("duplicate_call", OPEN_STATES, None, frozenset({R.AGENT, R.SYSTEM}), optional=("phone",)),
    ActionSpec("supervise", OPEN_STATES, None, frozenset({R.SUPERVISOR, R.ADMIN})),
    ActionSpec("note", frozenset(State), None, frozenset(Role), optional=("data",)),
    ActionSpec("assign", POOL_STATES, S.ASSIGNED, _DISPATCH | {R.SYSTEM}, optional=("unit_id",)),
    ActionSpec("unit_accept", frozenset({S.ASSIGNED}), S.HANDLING, _UNIT),
    ActionSpec("hand_to_crew", frozenset({S.HANDLING}), S.DISPATCHED, _UNIT, required=("crew_id",),
               optional=("mode", "eta_s")),
    ActionSpec("feedback", frozenset({S.HANDLING}), S.RESOLVED, _UNIT, required=("resolution",),
               optional=("attachments", "signed_by")),
    ActionSpec("request_return", UNIT_STATES, None, _UNIT, required=("reason",)),
    ActionSpec("approve_return", UNIT_STATES, S.RETURNED, _DISPATCH, optional=("reason",)),
    ActionSpec("reroute_return", UNIT_STATES, S.ASSIGNED, _DISPATCH, required=("unit_id",),
               optional=("reason",)),
    ActionSpec("refuse_return", UNIT_STATES, None, _DISPATCH, required=("reason",)),
    ActionSpec("request_extension", UNIT_STATES, None, _UNIT, required=("reason", "until")),
    ActionSpec("approve_extension", UNIT_STATES, None, _EXTENDERS, optional=("reason",)),
    ActionSpec("refuse_extension", UNIT_STATES, None, _EXTENDERS, required=("reason",)),
    # the review chain (command.review): the chain comes from the settings (the manager gives it)
    ActionSpec("submit_review", frozenset({S.NEW, S.REVIEWED, S.REOPENED, S.RETURNED}), S.IN_REVIEW,
               _OFFICE | {R.SYSTEM, R.TEAM_LEADER}, required=("chain",)),
    ActionSpec("approve_review", frozenset({S.IN_REVIEW}), S.IN_REVIEW, REVIEWER_ROLES),
    ActionSpec("send_back_review", frozenset({S.IN_REVIEW}), S.NEW, REVIEWER_ROLES, required=("reason",)),
    ActionSpec("reject_review", frozenset({S.IN_REVIEW}), S.RESOLVED, REVIEWER_ROLES, required=("reason",)),
    # the callback until satisfied: 转办督查单 back to the same unit, or a supervisor's close
    ActionSpec("rework", frozenset({S.RESOLVED, S.CALLBACK}), S.ASSIGNED, frozenset({R.AGENT, R.SUPERVISOR, R.ADMIN}),
               required=("words",), optional=("satisfaction", "truthful")),
    ActionSpec("supervisor_close", frozenset({S.RESOLVED, S.CALLBACK, S.ASSIGNED, S.HANDLING, S.REOPENED}),
               S.CLOSED, _EXTENDERS, required=("reason",)),
)}

TRANSITIONS: dict[tuple[State, str], State] = {
    (state, spec.name): spec.target(state) for spec in ACTIONS.values() for state in spec.from_states
}

if set(EFFECTS) != set(ACTIONS):
    raise RuntimeError("every action in the table needs an effect")


def visible_to(actor: Actor, crew_id: str | None, unit_id: str | None = None) -> bool:
    """Whether work of crew ``crew_id`` (None: of no crew) and responsible unit ``unit_id``, a
    ticket or a vehicle, is visible to this actor: office roles see all of it, a crew member only
    its own crew's, a unit's liaison only that of its unit and the units under it. The one rule of
    the ticket API, the ticket actions and the live feed."""
    if actor.role is Role.CREW:
        return actor.crew_id is not None and crew_id == actor.crew_id
    if actor.role is Role.UNIT:
        return unit_id is not None and unit_id in actor.unit_ids
    return True


def allowed_actions(ticket: Ticket, actor: Actor) -> list[str]:
    """Actions this actor may try on this ticket now (for the UI's buttons), in table order."""
    if not visible_to(actor, ticket.crew_id, ticket.unit_id):
        return []
    return [name for name, spec in ACTIONS.items()
            if ticket.state in spec.from_states and actor.role in spec.roles]


def is_current(ticket: Ticket, version: int) -> bool:
    """Whether an action read at `version` still acts on what the ticket says: only notes (the
    system's GPS arrival, a 110 acknowledgement, a colleague's remark) came after it."""
    return (ticket.change_version or ticket.version) <= version <= ticket.version


def apply(
    ticket: Ticket,
    action: str,
    *,
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
    **args: Any,
) -> tuple[Ticket, AuditEvent]:
    """Perform `action` on `ticket`: the new ticket (version + 1) and its audit event.

    Checks, in order: stale `expected_version` (a change other than a note since) → Conflict;
    unknown action or field → ValidationError; role not allowed → Forbidden; action illegal in the
    current state → InvalidTransition; a crew member acting on another crew's ticket → Forbidden;
    missing or bad fields → ValidationError. Every action accepts an optional `note`.
    """
    now = as_utc(now, "now")
    if expected_version is not None and not is_current(ticket, expected_version):
        raise Conflict(ticket.number, expected_version, ticket.version)
    spec = ACTIONS.get(action)
    if spec is None:
        raise ValidationError("action", f"unknown action {action!r}")
    if actor.role not in spec.roles:
        raise Forbidden(f"role {actor.role.value} may not {action}", role=actor.role.value, action=action)
    to_state = TRANSITIONS.get((ticket.state, action))
    if to_state is None:
        raise InvalidTransition(ticket.number, ticket.state.value, action)
    if not visible_to(actor, ticket.crew_id, ticket.unit_id):
        raise Forbidden(f"{actor.user_id} ({actor.role.value}) is not assigned to ticket {ticket.number}",
                        role=actor.role.value, action=action)
    unknown = sorted(set(args) - set(spec.required) - set(spec.optional) - {"note"})
    if unknown:
        raise ValidationError(unknown[0], f"unknown field for action {action}")
    for name in spec.required:
        if args.get(name) in (None, ""):
            raise ValidationError(name, f"is required for action {action}")
    if action in REVIEW_STEP_ACTIONS:
        check_reviewer(ticket, actor, action)
    if action in RELEASE_ACTIONS and ticket.review_chain and not ticket.review_passed:
        raise InvalidTransition(ticket.number, ticket.state.value, action,
                                reason="its review chain has not passed: submit it for review (submit_review)")
    note = check_text(args.get("note"), "note", max_len=2000, required=False)
    changes = EFFECTS[action](ticket, args, now)
    to_state = changes.pop("state", to_state)  # the review's last approval or an empty chain: reviewed
    if action == "approve_review":
        changes["reviewers"] = ticket.reviewers + (actor.user_id,)
    instruction = changes.pop("instruction", None)  # the callback's words: the rework's instruction
    if to_state in POOL_STATES and ticket.state not in POOL_STATES and "pending_since" not in changes:
        changes["pending_since"] = now
    # a note leaves what the ticket says as it was: an action read before it is still current
    change_version = (ticket.change_version or ticket.version) if action == "note" else ticket.version + 1
    new = dataclasses.replace(ticket, **changes, state=to_state, version=ticket.version + 1,
                              change_version=change_version, updated_at=now)
    data = {k: json_safe(v) for k, v in args.items() if k != "note"}
    if action in REVIEW_STEP_ACTIONS or action == "submit_review":
        data.update(step=ticket.review_step if action != "submit_review" else new.review_step,
                    of=len(new.review_chain),
                    role=actor.role.value if action in REVIEW_STEP_ACTIONS else None)
    if instruction is not None:
        data.update(unit_id=ticket.unit_id, instruction=instruction, unit_rework=new.rework_units[ticket.unit_id])
    if action in ("decline", "expire", "return", "merge", "cancel") and ticket.crew_id:
        data.setdefault("crew_id", ticket.crew_id)
    event = AuditEvent(ticket.number, action, ticket.state, to_state, actor.user_id, actor.role, now, note, data)
    return new, event
