"""What each lifecycle action does to a ticket (pure: time is passed in): one effect per action
(`EFFECTS`, the changed fields, after checking the action's own fields), a responsible unit's
path (assign, feedback, its return and extension requests and their decisions), and the review
chain's rules (`check_reviewer`, `REVIEW_STEP_ACTIONS`, `RELEASE_ACTIONS`, `REJECTED_PREFIX`).
`command.tickets.apply` checks the table (state, role, required fields) and calls them."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from command.errors import Forbidden, InvalidTransition, ValidationError
from command.ticket_fields import check_enum, check_id, check_text
from command.ticket_json import iso_utc, parse_time
from command.ticket_model import (
    DIRECT_CLOSE_TYPES, NUMBER_RE, REVIEWER_ROLES, Actor, Category, Satisfaction, State, Ticket, TicketType, Urgency,
    color_for, normalize_phone,
)

S = State


def _reason(args: dict[str, Any], name: str) -> str:
    return check_text(args[name], name, max_len=500)


def _effect_review(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cls in (("category", Category), ("type", TicketType), ("urgency", Urgency)):
        if name in a:
            out[name] = check_enum(cls, a[name], name)
    return out


def _effect_dispatch(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    crew_id = check_text(a["crew_id"], "crew_id", max_len=64)
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
    return {"resolution": check_text(a["resolution"], "resolution", max_len=2000), "resolved_at": now}


def _effect_close(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    satisfaction = check_enum(Satisfaction, a["satisfaction"], "satisfaction")
    if satisfaction is Satisfaction.DISSATISFIED:
        raise ValidationError("satisfaction", "a dissatisfied citizen reopens the ticket (action reopen)")
    check_text(a.get("words"), "words", max_len=2000, required=False)
    return {"satisfaction": satisfaction, "closed_at": now}


def _effect_reopen(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _reason(a, "reason")
    satisfaction = check_enum(Satisfaction, a.get("satisfaction", "dissatisfied"), "satisfaction")
    check_text(a.get("words"), "words", max_len=2000, required=False)
    return {"satisfaction": satisfaction, "rework_count": t.rework_count + 1, "crew_id": None,
            "declined_by": (), "pending_since": now, "cycle_started_at": now, "dispatched_at": None,
            "accepted_at": None, "departed_at": None, "arrived_at": None, "resolved_at": None,
            "closed_at": None, "resolution": "", "request": None, "extended_until": None, "signed_by": ""}


def _effect_transfer(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    unit_id = check_text(a["unit_id"], "unit_id", max_len=64)
    if unit_id == t.unit_id:
        raise ValidationError("unit_id", "the ticket already belongs to this unit")
    check_text(a.get("reason"), "reason", max_len=500, required=False)
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
    return {"resolution": check_text(a["answer"], "answer", max_len=2000), "resolved_at": now, "closed_at": now}


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
    unit_id = check_id(a.get("unit_id"), "unit_id") or t.unit_id
    if not unit_id:
        raise ValidationError("unit_id", "the ticket has no responsible unit: name one")
    return {"unit_id": unit_id, "crew_id": None, "request": None, "dispatched_at": now, "accepted_at": None,
            "departed_at": None, "arrived_at": None}


def _effect_feedback(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    signed_by = check_text(a.get("signed_by"), "signed_by", max_len=64, required=t.type in SIGNED_TYPES)
    photos = a.get("attachments", [])
    if not isinstance(photos, list) or len(photos) > MAX_ATTACHMENTS:
        raise ValidationError("attachments", f"must be a list of at most {MAX_ATTACHMENTS} photo ids")
    added = tuple(check_text(p, "attachments", max_len=500) for p in photos)
    return {"resolution": check_text(a["resolution"], "resolution", max_len=2000), "resolved_at": now,
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
        request = {"kind": kind, "reason": _reason(a, "reason"), "at": iso_utc(now)}
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
            request["until"] = iso_utc(until)
        return {"request": request}
    return effect


def _decide(kind: str, approve: bool) -> _Effect:
    def effect(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
        action = f"{'approve' if approve else 'refuse'}_{kind}"
        _pending(t, kind, action)
        check_text(a.get("reason"), "reason", max_len=500, required=not approve)
        out: dict[str, Any] = {"request": None}
        if approve and kind == "extension":
            out["extended_until"] = parse_time(t.request["until"])
        elif approve:
            out.update(crew_id=None, pending_since=now, dispatched_at=None, accepted_at=None)
        return out
    return effect


def _effect_reroute(t: Ticket, a: dict[str, Any], now: datetime) -> dict[str, Any]:
    _pending(t, "return", "reroute_return")
    unit_id = check_text(a["unit_id"], "unit_id", max_len=64)
    if unit_id == t.unit_id:
        raise ValidationError("unit_id", "the ticket already belongs to this unit")
    check_text(a.get("reason"), "reason", max_len=500, required=False)
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
    words = check_text(a["words"], "words", max_len=2000)
    satisfaction = check_enum(Satisfaction, a.get("satisfaction", "dissatisfied"), "satisfaction")
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
EFFECTS: dict[str, _Effect] = {
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
    "link_incident": lambda t, a, now: {"incident_id": check_text(a["incident_id"], "incident_id", max_len=64)},
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
