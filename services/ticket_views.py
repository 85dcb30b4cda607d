"""API shapes of tickets, audit events and incidents: UTC ISO times with Z, masked phones for
roles that do not need them, allowed actions and time left against the limit for the caller."""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Mapping, Sequence

from command.accounts import mask_phone, sees_full_phone
from store.ticket_records import TicketRecord, incident_to_dict
from command.grouping import Incident, decide
from command.limit_steps import step_of
from command.repeats import needs_supervision
from command.review import waiting_step
from command.routing import CREW_ACTIONS, SET_UNIT, RouteKind, may_set_unit, why_of
from command.tickets import allowed_actions
from command.ticket_json import to_dict
from command.ticket_model import Actor

_TIME_SUFFIX = "+00:00"


def iso_z(value: str | None) -> str | None:
    """A stored UTC ISO-8601 time as the API spells it (with Z)."""
    if value is None:
        return None
    return value[:-len(_TIME_SUFFIX)] + "Z" if value.endswith(_TIME_SUFFIX) else value


def left_share(queue: Sequence[Sequence[Any]], now_s: float) -> tuple[float, str | None, float | None]:
    """(share of its limit left, stage, seconds left) of the most pressing open timed stage;
    (inf, None, None) when no stage is timed. The share is what `command.limits.queue_key` sorts on."""
    best, stage, seconds = math.inf, None, None
    for name, deadline, limit_s in queue:
        share = (deadline - now_s) / limit_s
        if share < best:
            best, stage, seconds = share, name, deadline - now_s
    return best, stage, seconds


def ticket_view(record: TicketRecord, actor: Actor, now: datetime, *, warn_share: float = 0.8) -> dict[str, Any]:
    """The ticket as the API returns it to this actor."""
    ticket, meta = record.ticket, record.meta
    out = dict(record.data) if record.data is not None else to_dict(ticket)
    for name, value in list(out.items()):
        if isinstance(value, str) and name.endswith("_at") or name in ("pending_since", "extended_until"):
            out[name] = iso_z(value)
    if out.get("request"):  # a unit's pending return or extension request
        out["request"] = {k: iso_z(v) if k in ("at", "until") else v for k, v in out["request"].items()}
    out["deadlines"] = {k: iso_z(v) for k, v in out["deadlines"].items()}
    if not sees_full_phone(actor.role.value):
        out["caller_phone"] = mask_phone(out["caller_phone"])
    share, stage, seconds = left_share(meta.get("queue") or (), now.timestamp())
    level = None
    if stage is not None:
        level = "overdue" if share <= 0 else "warning" if 1 - share >= warn_share else "ok"
    out.update(
        police_kind=meta.get("police_kind"), tags=list(meta.get("tags") or ()),
        police_suggested=meta.get("police_suggested"),  # an ambiguous emergency: the dispatcher's 转110 confirms
        asset_id=meta.get("asset_id"), calls=ticket.repeat_count + ticket.duplicate_count + 1,
        needs_supervision=needs_supervision(ticket) and ticket.state.value not in ("closed", "cancelled", "merged"),
        time_left_s=None if seconds is None else round(seconds, 1),
        limit_share_left=None if stage is None else round(share, 4), limit_stage=stage, limit_level=level,
        limit_step=None if stage is None else step_of(stage, meta.get("route"), ticket.state).value,
        allowed_actions=actions_for(ticket, actor, meta.get("route")),
        route=meta.get("route"), route_why=None if meta.get("route") is None else why_of(meta["route"]),
        review=waiting_step(ticket),  # the review step waiting: {step, role, name, of}, else None
        follows=meta.get("follows"),  # a new need found at another ticket's callback: that ticket
        geocode=meta.get("geocode"),  # how the server placed a text-only ticket: match exact/approximate/none
    )
    return out


def actions_for(ticket: Any, actor: Actor, route: str | None) -> list[str]:
    """The actor's allowed actions on the ticket for the UI's buttons: the lifecycle's, without
    those that put a field crew on a ticket not routed to a station, with ``set_unit`` (another
    responsible unit, with a reason) where the actor may."""
    found = allowed_actions(ticket, actor)
    if route is not None and route != RouteKind.STATION.value:
        found = [a for a in found if a not in CREW_ACTIONS]
    return found + [SET_UNIT] if may_set_unit(ticket, actor) else found


def event_view(stream_id: str, event: Mapping[str, Any], actor: Actor) -> dict[str, Any]:
    """One audit event as the API returns it (phones in its data masked for crews)."""
    out = dict(event)
    out["id"] = stream_id
    out["at"] = iso_z(out.get("at"))
    data = dict(out.get("data") or {})
    if not sees_full_phone(actor.role.value):
        for key in ("phone", "caller_phone"):
            if isinstance(data.get(key), str):
                data[key] = mask_phone(data[key])
    out["data"] = data
    return out


def incident_view(incident: Incident, rev: int) -> dict[str, Any]:
    """An incident with its status and the dispatch decision (once for the incident, or per call)."""
    out = incident_to_dict(incident, rev)
    for name in ("first_call_at", "last_call_at", "confirmed_at", "resolved_at", "etr", "etr_set_at", "onset_at"):
        out[name] = iso_z(out[name])
    decision = decide(incident)
    out.update(status=incident.status.value, calls=len(incident.ticket_numbers), scope=incident.scope,
               dispatch_once=decision.dispatch_once)
    return out
