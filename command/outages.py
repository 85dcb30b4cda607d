"""An incident handled once (pure): its estimated restoration time (预计恢复时间, ETR), its outage
notice (停水/停电通知), the open incidents near a caller's place, and what the agent reads to the
caller (time passed in as `now`).

- ETR: a dispatcher, supervisor or the crew of the incident's primary ticket sets or changes it
  (`set_etr`): a time after `now`, at most `MAX_ETR_AHEAD` ahead, with an optional note; each
  change is an `IncidentEvent` (who, when, from, to).
- Notice: one per incident (`publish_notice`), of the kind its category gives (`NOTICE_KINDS`),
  with an area (the incident's supply area and a description the dispatcher may edit), a start,
  the ETR and a text prefilled in Chinese; it follows the ETR (`follow_etr`) and is withdrawn when
  the incident is resolved (`withdraw_notice`).
- Near: an open incident of the caller's category is near when one of its calls' points lies
  within `NEAR_M` (300 m) of the caller's place (`near_incidents`): the calls' points are the
  incident's area today.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from command.errors import Forbidden, ValidationError
from command.grouping import Incident
from command.ticket_model import CENTER_TZ, Actor, Category, Role, as_utc

MAX_ETR_AHEAD = timedelta(days=30)
NEAR_M = 300.0
MAX_NEAR_M = 2000.0
NOTE_CHARS = 500
AREA_CHARS = 200
TEXT_CHARS = 1000
ETR_ROLES = frozenset({Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN})  # and the primary ticket's crew
NOTICE_ROLES = frozenset({Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN})


@dataclass(frozen=True)
class OutageKind:
    """How a trade's outage is named: 停水 with its cause and what comes back."""

    name: str       # 停水
    cause: str      # 供水管道突发故障
    restored: str   # 恢复供水


NOTICE_KINDS: dict[Category, OutageKind] = {
    Category.WATER: OutageKind("停水", "供水管道突发故障", "恢复供水"),
    Category.POWER: OutageKind("停电", "供电线路突发故障", "恢复供电"),
    Category.GAS: OutageKind("停气", "燃气管道突发故障", "恢复供气"),
    Category.HEATING: OutageKind("停暖", "供热管网突发故障", "恢复供暖"),
}


@dataclass(frozen=True)
class IncidentEvent:
    """One audited change of an incident: ``etr_set``, ``notice_published``, ``notice_updated``,
    ``notice_withdrawn`` or ``resolved``; who, when, a note and the change's data."""

    incident_id: str
    action: str
    actor_id: str
    role: str
    at: datetime
    note: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notice:
    """An incident's outage notice (停水/停电通知); ``state`` active or withdrawn."""

    incident_id: str
    category: Category
    kind: str
    area_id: str
    area_text: str
    starts_at: datetime
    etr: datetime | None
    text: str
    text_custom: bool
    state: str
    published_by: str
    published_at: datetime
    updated_by: str
    updated_at: datetime
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None

    @property
    def active(self) -> bool:
        """Whether the notice is shown (not withdrawn)."""
        return self.state == "active"


def parse_time(value: Any, name: str) -> datetime:
    """An ISO-8601 time with its zone as UTC; ValidationError otherwise."""
    if not isinstance(value, str) or not value.strip() or len(value) > 40:
        raise ValidationError(name, "must be an ISO-8601 time with its zone, e.g. 2026-12-07T14:30:00+08:00")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(name, f"{value!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise ValidationError(name, "the time needs its zone (Z or +08:00)")
    return as_utc(parsed, name)


def _text(value: Any, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise ValidationError(name, f"must be text of at most {limit} characters")
    return value.strip()


def wall_time(at: datetime | None) -> str:
    """A time as the notices say it, in the center's zone: 12月7日 14:30."""
    if at is None:
        return "待定"
    local = as_utc(at, "at").astimezone(CENTER_TZ)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def may_set_etr(actor: Actor, primary_crew_id: str | None) -> bool:
    """A dispatcher, supervisor or admin, or a member of the crew on the incident's primary ticket."""
    if actor.role in ETR_ROLES:
        return True
    return actor.role is Role.CREW and actor.crew_id is not None and actor.crew_id == primary_crew_id


def set_etr(incident: Incident, etr: Any, *, note: Any = None, actor: Actor, now: datetime,
            primary_crew_id: str | None = None) -> tuple[Incident, IncidentEvent]:
    """The incident with its ETR set or changed (a time after `now`, at most `MAX_ETR_AHEAD`
    ahead), and the audit event saying who, when, from and to."""
    now = as_utc(now, "now")
    if not may_set_etr(actor, primary_crew_id):
        raise Forbidden("only a dispatcher, a supervisor or the crew of the incident's primary ticket sets "
                        "its restoration time", role=actor.role.value, action="etr")
    if incident.resolved_at is not None:
        raise ValidationError("incident_id", f"incident {incident.incident_id} is resolved")
    at = parse_time(etr, "etr") if not isinstance(etr, datetime) else as_utc(etr, "etr")
    if at <= now:
        raise ValidationError("etr", "the restoration time must be in the future")
    if at - now > MAX_ETR_AHEAD:
        raise ValidationError("etr", f"the restoration time must be within {MAX_ETR_AHEAD.days} days")
    text = _text(note, "note", NOTE_CHARS)
    changed = dataclasses.replace(incident, etr=at, etr_note=text, etr_by=actor.user_id, etr_set_at=now)
    event = IncidentEvent(incident.incident_id, "etr_set", actor.user_id, actor.role.value, now,
                          f"预计恢复时间 {wall_time(at)}" + (f"：{text}" if text else ""),
                          {"etr": at.isoformat(), "from": None if incident.etr is None else incident.etr.isoformat()})
    return changed, event


def notice_kind(category: Category) -> OutageKind:
    """The outage kind of a category; ValidationError for a trade without outage notices."""
    kind = NOTICE_KINDS.get(category)
    if kind is None:
        raise ValidationError("category", f"no outage notice for {category.value} incidents "
                                          f"(only {', '.join(c.value for c in NOTICE_KINDS)})")
    return kind


def area_words(incident: Incident, area_name: str | None = None) -> str:
    """The incident's area as a customer reads it: its readable name (a segment's roads, a 台区's
    name: `gis.lookup.SpatialLookup.area_name`), else its code with 片区."""
    return area_name or f"{incident.supply_area or '故障'}片区"


def default_area_text(incident: Incident, addresses: Sequence[str], area_name: str | None = None) -> str:
    """The area a notice names before the dispatcher edits it: the supply area (its readable
    `area_name` when known) and the first calls' addresses (at most three)."""
    seen = list(dict.fromkeys(a.strip() for a in addresses if a and a.strip()))[:3]
    return area_words(incident, area_name) + (f"（{'、'.join(seen)}等）" if seen else "")


def notice_text(kind: OutageKind, area_text: str, starts_at: datetime, etr: datetime | None) -> str:
    """The notice's text, prefilled in Chinese from the incident."""
    when = f"预计{wall_time(etr)}{kind.restored}" if etr is not None else f"{kind.restored}时间待定，我们将及时通告"
    return (f"【{kind.name}通知】因{kind.cause}，{area_text}自{wall_time(starts_at)}起{kind.name}。"
            f"抢修人员正在全力抢修，{when}。给您带来不便，敬请谅解。")


def publish_notice(incident: Incident, current: Notice | None, body: Mapping[str, Any], *, actor: Actor,
                   now: datetime, addresses: Sequence[str] = (),
                   area_name: str | None = None) -> tuple[Notice, IncidentEvent]:
    """Publish the incident's notice, or change the published one (`body`: ``area_text``,
    ``start``, ``text``, each optional: the area, start and text default to the incident's)."""
    now = as_utc(now, "now")
    if actor.role not in NOTICE_ROLES:
        raise Forbidden("only a dispatcher or a supervisor publishes an outage notice",
                        role=actor.role.value, action="notice")
    if incident.resolved_at is not None:
        raise ValidationError("incident_id", f"incident {incident.incident_id} is resolved")
    unknown = sorted(set(body) - {"area_text", "start", "text"})
    if unknown:
        raise ValidationError(unknown[0], "unknown field (area_text, start, text)")
    kind = notice_kind(incident.category)
    area = _text(body.get("area_text"), "area_text", AREA_CHARS) or \
        (current.area_text if current else default_area_text(incident, addresses, area_name))
    start = parse_time(body["start"], "start") if body.get("start") is not None else \
        (current.starts_at if current else incident.first_call_at)
    text = _text(body.get("text"), "text", TEXT_CHARS)
    custom = bool(text) or (current is not None and current.text_custom and "text" not in body)
    if not custom:
        text = notice_text(kind, area, start, incident.etr)
    elif not text:
        text = current.text  # type: ignore[union-attr]
    notice = Notice(incident.incident_id, incident.category, kind.name, incident.supply_area, area, start,
                    incident.etr, text, custom, "active",
                    current.published_by if current else actor.user_id, current.published_at if current else now,
                    actor.user_id, now)
    action = "notice_updated" if current is not None else "notice_published"
    return notice, IncidentEvent(incident.incident_id, action, actor.user_id, actor.role.value, now, text,
                                 {"area_text": area, "start": start.isoformat(), "kind": kind.name})


def follow_etr(notice: Notice, incident: Incident, *, actor: Actor, now: datetime) -> tuple[Notice, IncidentEvent]:
    """The active notice after the incident's ETR changed: its ETR, and its text (prefilled text
    again; a dispatcher's own text with the former ETR's wording replaced)."""
    now = as_utc(now, "now")
    kind = notice_kind(incident.category)
    if notice.text_custom:
        text = notice.text.replace(wall_time(notice.etr), wall_time(incident.etr)) if notice.etr else notice.text
    else:
        text = notice_text(kind, notice.area_text, notice.starts_at, incident.etr)
    changed = dataclasses.replace(notice, etr=incident.etr, text=text, updated_by=actor.user_id, updated_at=now)
    return changed, IncidentEvent(incident.incident_id, "notice_updated", actor.user_id, actor.role.value, now, text,
                                  {"etr": None if incident.etr is None else incident.etr.isoformat()})


def withdraw_notice(notice: Notice, *, actor: Actor, now: datetime) -> tuple[Notice, IncidentEvent]:
    """The notice withdrawn (its incident was resolved)."""
    now = as_utc(now, "now")
    changed = dataclasses.replace(notice, state="withdrawn", withdrawn_at=now, withdrawn_by=actor.user_id,
                                  updated_by=actor.user_id, updated_at=now)
    return changed, IncidentEvent(notice.incident_id, "notice_withdrawn", actor.user_id, actor.role.value, now,
                                  "事件已处理完毕，通知撤销")


def answer_text(incident: Incident, notice: Notice | None, area_name: str | None = None) -> str:
    """What the agent reads to a caller whose call joins the incident, with the ETR (the area: the
    active notice's, else the readable `area_name`, else the code)."""
    kind = NOTICE_KINDS.get(incident.category)
    area = notice.area_text if notice is not None and notice.active else area_words(incident, area_name)
    if kind is None:
        return f"您好，您反映的问题我们已经掌握，{area}的故障正在抢修，处理完毕后我们会及时回访。"
    if incident.resolved_at is not None:
        return f"您好，{area}的{kind.name}故障已经修复，已{kind.restored}。如仍有问题，请再告诉我们。"
    when = f"预计{wall_time(incident.etr)}{kind.restored}" if incident.etr is not None else \
        f"{kind.restored}时间确定后我们会及时通知"
    return (f"您好，您反映的{kind.name}情况我们已经掌握，是{area}{kind.cause}引起的，"
            f"抢修人员正在全力抢修，{when}。给您带来不便，敬请谅解。")


def near_incidents(lon: float, lat: float, category: Category,
                   incidents: Sequence[tuple[Incident, Sequence[tuple[float, float]]]], *,
                   radius_m: float = NEAR_M,
                   distance_fn: Callable[[float, float, float, float], float]) -> list[tuple[Incident, float]]:
    """The unresolved incidents of `category` with a call's point within `radius_m` of the place,
    nearest first, each with that distance (metres). `incidents`: each with its calls' points."""
    found = []
    for incident, points in incidents:
        if incident.resolved_at is not None or incident.category is not category or not points:
            continue
        nearest = min(distance_fn(lon, lat, p_lon, p_lat) for p_lon, p_lat in points)
        if nearest <= radius_m:
            found.append((incident, float(nearest)))
    return sorted(found, key=lambda pair: (pair[1], pair[0].incident_id))


def notice_to_dict(notice: Notice) -> dict[str, Any]:
    """A JSON-safe dict of a notice (times UTC ISO-8601 with Z)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Notice):
        value = getattr(notice, f.name)
        if isinstance(value, datetime):
            value = as_utc(value, f.name).isoformat().replace("+00:00", "Z")
        elif isinstance(value, Category):
            value = value.value
        out[f.name] = value
    out["active"] = notice.active
    return out
