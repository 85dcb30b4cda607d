"""Tickets and their lifecycle as an explicit state machine (pure: time is passed in).

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
import enum
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from command.errors import Conflict, Forbidden, InvalidTransition, ValidationError
from command.ticket_model import (  # noqa: F401  (re-exported: command.tickets is the public face)
    CENTER_TZ, DIRECT_CLOSE_TYPES, FIELD_STATES, NUMBER_RE, OPEN_STATES, POOL_STATES, SYSTEM_ACTOR,
    REVIEWER_ROLES, TERMINAL_STATES, UNIT_STATES, URGENCY_RANK, ActionSpec, Actor, AreaClass, AuditEvent, Category, Channel,
    Color, Role, Satisfaction, State, Ticket, TicketType, Urgency, as_utc, center_day, color_for,
    normalize_phone, ticket_number,
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


# ---------------------------------------------------------------- field validation

def _text(value: Any, name: str, *, max_len: int, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    value = value.strip()
    if required and not value:
        raise ValidationError(name, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(name, f"longer than {max_len} characters")
    return value


def _opt_id(value: Any, name: str) -> str | None:
    return None if value is None else _text(value, name, max_len=64)


def _enum(cls: type[enum.Enum], value: Any, name: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ValidationError(name, f"{value!r} is not one of: {allowed}") from None


def _coord(value: Any, name: str, bound: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(name, "must be a finite number")
    if not -bound <= value <= bound:
        raise ValidationError(name, f"must be within ±{bound:g}, got {value}")
    return float(value)


_CREATE_FIELDS = frozenset({
    "number", "channel", "category", "type", "urgency", "description", "caller_name",
    "caller_phone", "address", "lon", "lat", "district", "grid", "unit_id", "supply_area",
    "area_class", "attachments", "alarm_id",
})
_CREATE_ROLES = frozenset({R.AGENT, R.DISPATCHER, R.SUPERVISOR, R.ADMIN, R.SYSTEM, R.TEAM_LEADER})  # 班长 takes calls too


def new_ticket(fields: Mapping[str, Any], *, now: datetime, actor: Actor) -> tuple[Ticket, AuditEvent]:
    """Validate the input of a new ticket and build it in state `new`, with its `create` audit event.

    `number` comes from the store's daily sequence (`ticket_number`). A phone or SMS ticket needs a
    caller phone; lon and lat come together. ValidationError names the first bad field.
    """
    now = as_utc(now, "now")
    if actor.role not in _CREATE_ROLES:
        raise Forbidden(f"role {actor.role.value} may not create tickets", role=actor.role.value, action="create")
    unknown = sorted(set(fields) - _CREATE_FIELDS)
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    number = fields.get("number")
    if not isinstance(number, str) or not NUMBER_RE.match(number):
        raise ValidationError("number", f"must look like GD20261122-0001, got {number!r}")
    for name in ("channel", "category", "type"):
        if fields.get(name) is None:
            raise ValidationError(name, "is required")
    channel = _enum(Channel, fields["channel"], "channel")
    phone = fields.get("caller_phone")
    if phone in (None, ""):
        if channel in (Channel.PHONE, Channel.SMS):
            raise ValidationError("caller_phone", f"is required for channel {channel.value}")
        phone = ""
    else:
        phone = normalize_phone(phone)
    lon, lat = fields.get("lon"), fields.get("lat")
    if (lon is None) != (lat is None):
        raise ValidationError("lon" if lon is None else "lat", "lon and lat must be given together")
    attachments = fields.get("attachments") or ()
    if not isinstance(attachments, (list, tuple)) or len(attachments) > 20:
        raise ValidationError("attachments", "must be a list of at most 20 references")
    ticket = Ticket(
        number=number,
        channel=channel,
        category=_enum(Category, fields["category"], "category"),
        type=_enum(TicketType, fields["type"], "type"),
        urgency=_enum(Urgency, fields.get("urgency", "normal"), "urgency"),
        description=_text(fields.get("description"), "description", max_len=2000),
        caller_name=_text(fields.get("caller_name"), "caller_name", max_len=50, required=False),
        caller_phone=phone,
        address=_text(fields.get("address"), "address", max_len=200, required=False),
        lon=None if lon is None else _coord(lon, "lon", 180.0),
        lat=None if lat is None else _coord(lat, "lat", 90.0),
        district=_opt_id(fields.get("district"), "district"),
        grid=_opt_id(fields.get("grid"), "grid"),
        unit_id=_opt_id(fields.get("unit_id"), "unit_id"),
        supply_area=_opt_id(fields.get("supply_area"), "supply_area"),
        area_class=_enum(AreaClass, fields.get("area_class", "urban"), "area_class"),
        attachments=tuple(_text(a, "attachments", max_len=500) for a in attachments),
        alarm_id=_opt_id(fields.get("alarm_id"), "alarm_id"),
        created_at=now, updated_at=now, pending_since=now, cycle_started_at=now, last_call_at=now,
        created_by=actor.user_id,
    )
    # The create event carries the ticket's classification and place, so that KPIs can be
    # recomputed from the event streams alone (command.kpi), never from mutable fields.
    event = AuditEvent(number, "create", None, State.NEW, actor.user_id, actor.role, now,
                       data={"channel": channel.value, "category": ticket.category.value,
                             "type": ticket.type.value, "urgency": ticket.urgency.value,
                             "district": ticket.district, "grid": ticket.grid, "unit_id": ticket.unit_id,
                             "supply_area": ticket.supply_area, "area_class": ticket.area_class.value,
                             "lon": ticket.lon, "lat": ticket.lat})
    return ticket, event


# ---------------------------------------------------------------- transitions

def _reason(args: dict[str, Any], name: str) -> str:
    return _text(args[name], name, max_len=500)


def _effect_review(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cls in (("category", Category), ("type", TicketType), ("urgency", Urgency)):
        if name in a:
            out[name] = _enum(cls, a[name], name)
    return out


def _effect_dispatch(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    crew_id = _text(a["crew_id"], "crew_id", max_len=64)
    if t.state is S.DISPATCHED and crew_id == t.crew_id:
        raise ValidationError("crew_id", f"ticket is already dispatched to crew {crew_id}")
    if a.get("mode", "manual") not in ("auto", "manual"):
        raise ValidationError("mode", "must be auto or manual")
    eta = a.get("eta_s")
    if eta is not None and (isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta < 0):
        raise ValidationError("eta_s", "must be a non-negative number of seconds")
    return {"crew_id": crew_id, "dispatched_at": now, "accepted_at": None, "departed_at": None,
            "arrived_at": None}


def _back_to_pool(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    declined = t.declined_by if t.crew_id in t.declined_by or t.crew_id is None else (*t.declined_by, t.crew_id)
    return {"crew_id": None, "declined_by": declined, "pending_since": now}


def _effect_decline(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _reason(a, "reason")
    return _back_to_pool(t, a, now)


def _effect_return(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _reason(a, "reason")
    return {"crew_id": None, "pending_since": now}


def _effect_arrive(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    if a.get("source", "button") not in ("button", "gps"):
        raise ValidationError("source", "must be button or gps")
    return {"arrived_at": now}


def _effect_resolve(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"resolution": _text(a["resolution"], "resolution", max_len=2000), "resolved_at": now}


def _effect_close(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    satisfaction = _enum(Satisfaction, a["satisfaction"], "satisfaction")
    if satisfaction is Satisfaction.DISSATISFIED:
        raise ValidationError("satisfaction", "a dissatisfied citizen reopens the ticket (action reopen)")
    _text(a.get("words"), "words", max_len=2000, required=False)
    return {"satisfaction": satisfaction, "closed_at": now}


def _effect_reopen(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _reason(a, "reason")
    satisfaction = _enum(Satisfaction, a.get("satisfaction", "dissatisfied"), "satisfaction")
    _text(a.get("words"), "words", max_len=2000, required=False)
    return {"satisfaction": satisfaction, "rework_count": t.rework_count + 1, "crew_id": None,
            "declined_by": (), "pending_since": now, "cycle_started_at": now, "dispatched_at": None,
            "accepted_at": None, "departed_at": None, "arrived_at": None, "resolved_at": None,
            "closed_at": None, "resolution": "", "request": None, "extended_until": None, "signed_by": ""}


def _effect_transfer(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    unit_id = _text(a["unit_id"], "unit_id", max_len=64)
    if unit_id == t.unit_id:
        raise ValidationError("unit_id", "the ticket already belongs to this unit")
    _text(a.get("reason"), "reason", max_len=500, required=False)
    return {"unit_id": unit_id, "crew_id": None, "declined_by": (), "pending_since": now}


def _effect_cancel(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _reason(a, "reason")
    return {"crew_id": None, "closed_at": now}


def _effect_merge(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    into = a["into"]
    if not isinstance(into, str) or not NUMBER_RE.match(into):
        raise ValidationError("into", f"must be a ticket number, got {into!r}")
    if into == t.number:
        raise ValidationError("into", "a ticket cannot be merged into itself")
    return {"merged_into": into, "crew_id": None, "closed_at": now}


def _effect_close_direct(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    if t.type not in DIRECT_CLOSE_TYPES:
        raise InvalidTransition(t.number, t.state.value, "close_direct", S.CLOSED.value,
                                reason=f"only {', '.join(sorted(x.value for x in DIRECT_CLOSE_TYPES))} "
                                       "tickets close on the call")
    return {"resolution": _text(a["answer"], "answer", max_len=2000), "resolved_at": now, "closed_at": now}


def _effect_resolve_with_incident(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    if t.incident_id is None:
        raise InvalidTransition(t.number, t.state.value, "resolve_with_incident", S.RESOLVED.value,
                                reason="the ticket is not linked to an incident")
    return _effect_resolve(t, a, now)


def _effect_repeat_call(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    if a.get("phone") not in (None, ""):
        normalize_phone(a["phone"])
    count = t.repeat_count + 1
    return {"repeat_count": count, "color": color_for(count), "last_call_at": now}


def _effect_duplicate_call(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    if a.get("phone") not in (None, ""):
        normalize_phone(a["phone"])
    return {"duplicate_count": t.duplicate_count + 1, "last_call_at": now}  # the colour stays


def _effect_note(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    if not str(a.get("note", "")).strip():
        raise ValidationError("note", "must not be empty")
    if not isinstance(a.get("data", {}), dict):
        raise ValidationError("data", "must be an object")
    return {}


# ---------------------------------------------------------------- a responsible unit's path

SIGNED_TYPES = frozenset({TicketType.COMPLAINT})  # the unit leader signs the handling result (签发)
MAX_ATTACHMENTS = 20


def _effect_assign(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    unit_id = _opt_id(a.get("unit_id"), "unit_id") or t.unit_id
    if not unit_id:
        raise ValidationError("unit_id", "the ticket has no responsible unit: name one")
    return {"unit_id": unit_id, "crew_id": None, "request": None, "dispatched_at": now, "accepted_at": None,
            "departed_at": None, "arrived_at": None}


def _effect_feedback(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    signed_by = _text(a.get("signed_by"), "signed_by", max_len=64, required=t.type in SIGNED_TYPES)
    photos = a.get("attachments", [])
    if not isinstance(photos, list) or len(photos) > MAX_ATTACHMENTS:
        raise ValidationError("attachments", f"must be a list of at most {MAX_ATTACHMENTS} photo ids")
    added = tuple(_text(p, "attachments", max_len=500) for p in photos)
    return {"resolution": _text(a["resolution"], "resolution", max_len=2000), "resolved_at": now,
            "signed_by": signed_by, "request": None,
            "attachments": t.attachments + tuple(p for p in added if p not in t.attachments)}


def _pending(t: Ticket, kind: str, action: str) -> None:
    if (t.request or {}).get("kind") != kind:
        raise InvalidTransition(t.number, t.state.value, action, reason=f"no {kind} request is pending")


def _request(kind: str) -> _Effect:
    def effect(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
        if t.request is not None:
            raise InvalidTransition(t.number, t.state.value, f"request_{kind}",
                                    reason=f"a {t.request.get('kind')} request is already pending")
        request = {"kind": kind, "reason": _reason(a, "reason"), "at": _iso(now)}
        if kind == "extension":
            until = a["until"]
            try:
                until = datetime.fromisoformat(until.replace("Z", "+00:00")) if isinstance(until, str) else None
            except ValueError:
                until = None
            if until is None or until.tzinfo is None:
                raise ValidationError("until", "must be an ISO-8601 time with its zone")
            if until <= now:
                raise ValidationError("until", "the new deadline must be in the future")
            request["until"] = _iso(until)
        return {"request": request}
    return effect


def _decide(kind: str, approve: bool) -> _Effect:
    def effect(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
        action = f"{'approve' if approve else 'refuse'}_{kind}"
        _pending(t, kind, action)
        _text(a.get("reason"), "reason", max_len=500, required=not approve)
        out: dict[str, Any] = {"request": None}
        if approve and kind == "extension":
            out["extended_until"] = _parse_time(t.request["until"])
        elif approve:
            out.update(crew_id=None, pending_since=now, dispatched_at=None, accepted_at=None)
        return out
    return effect


def _effect_reroute(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _pending(t, "return", "reroute_return")
    unit_id = _text(a["unit_id"], "unit_id", max_len=64)
    if unit_id == t.unit_id:
        raise ValidationError("unit_id", "the ticket already belongs to this unit")
    _text(a.get("reason"), "reason", max_len=500, required=False)
    return {**_effect_assign(t, {"unit_id": unit_id}, now), "extended_until": None}


# ---------------------------------------------------------------- the review chain, the callback's rework

REVIEW_STEP_ACTIONS = frozenset({"approve_review", "send_back_review", "reject_review"})
RELEASE_ACTIONS = frozenset({"assign", "dispatch"})  # a ticket leaves the center: its chain must have passed
REJECTED_PREFIX = "不予受理："  # the resolution of a rejected ticket, read to the citizen at the callback


def _review_refused(code: str, message: str, actor: Actor, action: str) -> Forbidden:
    err = Forbidden(message, role=actor.role.value, action=action)
    err.code = code  # 403 with its own code: review_not_your_step, self_review, review_twice
    return err


def check_reviewer(t: Ticket, actor: Actor, action: str) -> None:
    """Forbidden (403, with a code) unless this actor may act on the step waiting: its role is
    the step's, it did not record the ticket and it approved no other step of this round."""
    role = t.review_chain[t.review_step] if t.review_step is not None else None
    if actor.role.value != role:
        raise _review_refused("review_not_your_step", f"the step waiting is for role {role}", actor, action)
    if t.created_by and actor.user_id == t.created_by:
        raise _review_refused("self_review", f"{actor.user_id} recorded ticket {t.number}: no one reviews "
                              "their own ticket", actor, action)
    if actor.user_id in t.reviewers:
        raise _review_refused("review_twice", f"{actor.user_id} already reviewed a step of {t.number}",
                              actor, action)


def _effect_submit_review(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    chain = a["chain"]
    if not isinstance(chain, (list, tuple)) or not all(r in {x.value for x in REVIEWER_ROLES} for r in chain):
        raise ValidationError("chain", "must be a list of reviewer roles")
    if not chain:  # nothing to review: it may leave the center
        return {"review_chain": (), "review_step": None, "reviewers": (), "review_passed": True,
                "state": S.REVIEWED}
    return {"review_chain": tuple(chain), "review_step": 0, "reviewers": (), "review_passed": False}


def _effect_approve_review(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    step = (t.review_step or 0) + 1
    if step >= len(t.review_chain):  # the last step: it may leave the center
        return {"review_step": None, "review_passed": True, "state": S.REVIEWED}
    return {"review_step": step}


def _effect_send_back(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _reason(a, "reason")
    return {"review_step": None, "reviewers": (), "review_passed": False}


def _effect_reject_review(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"review_step": None, "review_passed": False, "resolution": REJECTED_PREFIX + _reason(a, "reason"),
            "resolved_at": now}


def _effect_rework(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    if not t.unit_id:
        raise InvalidTransition(t.number, t.state.value, "rework", S.ASSIGNED.value,
                                reason="the ticket has no responsible unit: reopen it")
    words = _text(a["words"], "words", max_len=2000)
    satisfaction = _enum(Satisfaction, a.get("satisfaction", "dissatisfied"), "satisfaction")
    if not isinstance(a.get("truthful", True), bool):
        raise ValidationError("truthful", "must be true or false")
    if satisfaction is not Satisfaction.DISSATISFIED and a.get("truthful", True):
        raise ValidationError("truthful", "a satisfied citizen and a true feedback close the ticket (action close)")
    units = {**t.rework_units, t.unit_id: t.rework_units.get(t.unit_id, 0) + 1}
    return {"satisfaction": satisfaction, "rework_count": t.rework_count + 1, "rework_units": units,
            "crew_id": None, "cycle_started_at": now, "dispatched_at": now, "accepted_at": None,
            "departed_at": None, "arrived_at": None, "resolved_at": None, "resolution": "", "request": None,
            "extended_until": None, "signed_by": "", "instruction": words}


def _effect_supervisor_close(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _reason(a, "reason")
    return {"crew_id": None, "request": None, "closed_at": now}


_Effect = Callable[[Ticket, dict[str, Any], datetime], dict[str, Any]]
_EFFECTS: dict[str, _Effect] = {
    "review": _effect_review,
    "dispatch": _effect_dispatch,
    "accept": lambda t, a, now: {"accepted_at": now},
    "decline": _effect_decline,
    "expire": _back_to_pool,
    "depart": lambda t, a, now: {"departed_at": now},
    "arrive": _effect_arrive,
    "resolve": _effect_resolve,
    "return": _effect_return,
    "queue_callback": lambda t, a, now: {},
    "close": _effect_close,
    "reopen": _effect_reopen,
    "transfer": _effect_transfer,
    "cancel": _effect_cancel,
    "merge": _effect_merge,
    "close_direct": _effect_close_direct,
    "resolve_with_incident": _effect_resolve_with_incident,
    "link_incident": lambda t, a, now: {"incident_id": _text(a["incident_id"], "incident_id", max_len=64)},
    "repeat_call": _effect_repeat_call,
    "duplicate_call": _effect_duplicate_call,
    "supervise": lambda t, a, now: {"supervised": True},
    "note": _effect_note,
    "assign": _effect_assign,
    "unit_accept": lambda t, a, now: {"accepted_at": now},
    "hand_to_crew": _effect_dispatch,
    "feedback": _effect_feedback,
    "request_return": _request("return"),
    "approve_return": _decide("return", True),
    "reroute_return": _effect_reroute,
    "refuse_return": _decide("return", False),
    "request_extension": _request("extension"),
    "approve_extension": _decide("extension", True),
    "refuse_extension": _decide("extension", False),
    "submit_review": _effect_submit_review,
    "approve_review": _effect_approve_review,
    "send_back_review": _effect_send_back,
    "reject_review": _effect_reject_review,
    "rework": _effect_rework,
    "supervisor_close": _effect_supervisor_close,
}
if set(_EFFECTS) != set(ACTIONS):
    raise RuntimeError("every action in the table needs an effect")


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _json_safe(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, dict):
        return {k.value if isinstance(k, enum.Enum) else str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


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
    note = _text(args.get("note"), "note", max_len=2000, required=False)
    changes = _EFFECTS[action](ticket, args, now)
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
    data = {k: _json_safe(v) for k, v in args.items() if k != "note"}
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


# ---------------------------------------------------------------- storage

def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(timezone.utc)


_ENUM_FIELDS: dict[str, type[enum.Enum]] = {
    "channel": Channel, "category": Category, "type": TicketType, "urgency": Urgency,
    "area_class": AreaClass, "state": State, "color": Color, "satisfaction": Satisfaction,
}
_TIME_FIELDS = tuple(f.name for f in dataclasses.fields(Ticket) if "datetime" in str(f.type) and
                     f.name != "deadlines")


_TICKET_FIELDS = tuple(f.name for f in dataclasses.fields(Ticket))
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEvent))


def to_dict(ticket: Ticket) -> dict[str, Any]:
    """JSON-safe dict of a ticket (enum values, ISO-8601 UTC times, lists) for storage."""
    return {name: _json_safe(getattr(ticket, name)) for name in _TICKET_FIELDS}


def from_dict(data: Mapping[str, Any]) -> Ticket:
    """Rebuild a ticket from `to_dict` output."""
    values: dict[str, Any] = dict(data)
    for name, cls in _ENUM_FIELDS.items():
        if values.get(name) is not None:
            values[name] = cls(values[name])
    for name in _TIME_FIELDS:
        values[name] = _parse_time(values.get(name))
    values["attachments"] = tuple(values.get("attachments") or ())
    values["declined_by"] = tuple(values.get("declined_by") or ())
    values["review_chain"] = tuple(values.get("review_chain") or ())
    values["reviewers"] = tuple(values.get("reviewers") or ())
    values["rework_units"] = dict(values.get("rework_units") or {})
    values["deadlines"] = {k: _parse_time(v) for k, v in (values.get("deadlines") or {}).items()}
    return Ticket(**values)


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    """JSON-safe dict of an audit event."""
    return {name: _json_safe(getattr(event, name)) for name in _EVENT_FIELDS}


def event_from_dict(data: Mapping[str, Any]) -> AuditEvent:
    """Rebuild an audit event from `event_to_dict` output."""
    values = dict(data)
    values["from_state"] = None if values.get("from_state") is None else State(values["from_state"])
    values["to_state"] = State(values["to_state"])
    values["role"] = Role(values["role"])
    values["at"] = _parse_time(values["at"])
    values["data"] = dict(values.get("data") or {})
    return AuditEvent(**values)
