"""Ticket data: enums, the `Ticket` and `AuditEvent` records, actors, numbers and phone numbers.

The lifecycle table and `apply` live in `command.tickets`, the actions' effects in
`command.ticket_effects`, `new_ticket` in `command.ticket_fields`.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from command.errors import ValidationError


CENTER_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")  # China has no DST: a fixed offset


class Channel(str, enum.Enum):
    """How the problem reached the center."""

    PHONE = "phone"
    WEB = "web"
    SMS = "sms"
    POLICE_110 = "police_110"
    SENSOR = "sensor"


class Category(str, enum.Enum):
    """The utility the problem concerns."""

    WATER = "water"
    POWER = "power"
    GAS = "gas"
    HEATING = "heating"
    DRAINAGE = "drainage"
    SANITATION = "sanitation"
    OTHER = "other"


class TicketType(str, enum.Enum):
    """Kind of request: repair 抢修, complaint 投诉, consultation 咨询, suggestion 建议, praise 表扬, service 服务."""

    REPAIR = "repair"
    COMPLAINT = "complaint"
    CONSULTATION = "consultation"
    SUGGESTION = "suggestion"
    PRAISE = "praise"
    SERVICE = "service"


class Urgency(str, enum.Enum):
    """How fast the ticket must be handled."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    NORMAL = "normal"


URGENCY_RANK = {Urgency.EMERGENCY: 0, Urgency.URGENT: 1, Urgency.NORMAL: 2}  # lower is more urgent


class AreaClass(str, enum.Enum):
    """Area class of the ticket's location, for time limits (城区 / 农村 / 特殊边远)."""

    URBAN = "urban"
    RURAL = "rural"
    REMOTE = "remote"


class Color(str, enum.Enum):
    """Repeat-call colour (红橙蓝单): blue first call, orange second, red third and later."""

    BLUE = "blue"
    ORANGE = "orange"
    RED = "red"


class Satisfaction(str, enum.Enum):
    """Citizen's answer at the callback (回访)."""

    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    DISSATISFIED = "dissatisfied"
    UNREACHABLE = "unreachable"


class State(str, enum.Enum):
    """Lifecycle states of a ticket."""

    NEW = "new"
    REVIEWED = "reviewed"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CALLBACK = "callback"
    CLOSED = "closed"
    DECLINED = "declined"
    RETURNED = "returned"
    REOPENED = "reopened"
    TRANSFERRED = "transferred"
    CANCELLED = "cancelled"
    MERGED = "merged"
    ASSIGNED = "assigned"  # 交办: sent to its responsible unit, awaiting the unit's 受理
    HANDLING = "handling"  # 受理: the unit handles it (or hands it to one of its crews)
    IN_REVIEW = "in_review"  # 审核中: a step of its type's review chain is waiting (command.review)


class Role(str, enum.Enum):
    """Roles of the people (and the system) acting on tickets."""

    AGENT = "agent"
    DISPATCHER = "dispatcher"
    CREW = "crew"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    UNIT = "unit"  # 责任单位联络员: a responsible unit's liaison, sees its unit's tickets and those below
    TEAM_LEADER = "team_leader"  # 班长: the review chain's first check (初审)
    COORDINATOR = "coordinator"  # 督办协调席 / 专业席: examines tickets before they leave the center
    DIRECTOR = "director"  # 主任: approves and signs complaints (主任审核)
    SYSTEM = "system"


_S = State
POOL_STATES = frozenset({_S.NEW, _S.REVIEWED, _S.DECLINED, _S.RETURNED, _S.REOPENED, _S.TRANSFERRED})
FIELD_STATES = frozenset({_S.DISPATCHED, _S.ACCEPTED, _S.EN_ROUTE, _S.ON_SITE})
TERMINAL_STATES = frozenset({_S.CLOSED, _S.CANCELLED, _S.MERGED})
OPEN_STATES = frozenset(State) - TERMINAL_STATES
UNIT_STATES = frozenset({_S.ASSIGNED, _S.HANDLING})  # with its responsible unit (交办 .. 反馈)
REVIEWER_ROLES = frozenset({Role.TEAM_LEADER, Role.COORDINATOR, Role.DIRECTOR})  # steps of a review chain
DIRECT_CLOSE_TYPES = frozenset({TicketType.CONSULTATION, TicketType.SUGGESTION, TicketType.PRAISE})


@dataclass(frozen=True)
class Actor:
    """Who acts: a user id, a role and, for crew members, their crew; for a unit's liaison, its
    unit and every unit under it (`unit_ids`)."""

    user_id: str
    role: Role
    crew_id: str | None = None
    unit_ids: frozenset[str] = frozenset()


SYSTEM_ACTOR = Actor("system", Role.SYSTEM)


@dataclass(frozen=True)
class ActionSpec:
    """One row of the lifecycle table: from-states → to-state, roles, required and optional fields.

    `to_state` None means the action keeps the state (an annotation).
    """

    name: str
    from_states: frozenset[State]
    to_state: State | None
    roles: frozenset[Role]
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def target(self, state: State) -> State:
        """The state this action leads to from `state`."""
        return state if self.to_state is None else self.to_state



@dataclass(frozen=True, kw_only=True)
class Ticket:
    """One citizen problem (工单), tracked until the citizen confirms it is solved."""

    number: str
    channel: Channel
    category: Category
    type: TicketType
    urgency: Urgency
    description: str
    created_at: datetime
    updated_at: datetime
    caller_name: str = ""
    caller_phone: str = ""
    address: str = ""
    lon: float | None = None
    lat: float | None = None
    district: str | None = None
    grid: str | None = None
    unit_id: str | None = None
    supply_area: str | None = None
    area_class: AreaClass = AreaClass.URBAN
    attachments: tuple[str, ...] = ()
    alarm_id: str | None = None
    state: State = State.NEW
    crew_id: str | None = None
    incident_id: str | None = None
    merged_into: str | None = None
    repeat_count: int = 0  # the caller's own calls after the first (they set the colour)
    duplicate_count: int = 0  # other callers' calls about the same problem (the colour stays)
    color: Color = Color.BLUE
    supervised: bool = False
    rework_count: int = 0
    declined_by: tuple[str, ...] = ()
    satisfaction: Satisfaction | None = None
    resolution: str = ""
    version: int = 1
    change_version: int = 0  # version of the latest change that was not a note (0: the same as `version`)
    pending_since: datetime | None = None  # entered the dispatch pool (dispatch limit runs from here)
    cycle_started_at: datetime | None = None  # created, or reopened (arrival/resolution limits)
    last_call_at: datetime | None = None  # latest citizen call about it (repeat window)
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    departed_at: datetime | None = None
    arrived_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    deadlines: Mapping[str, datetime] = field(default_factory=dict)
    # a unit's pending request to the center: {"kind": "return" | "extension", "reason", "at",
    # and for an extension "until"} (None: nothing pending)
    request: Mapping[str, Any] | None = None
    extended_until: datetime | None = None  # an approved extension's new resolution deadline (延期)
    signed_by: str = ""  # the unit leader who signed the handling result (complaints)
    created_by: str = ""  # the user who recorded it (never one of its reviewers)
    # its review chain (command.review): the roles of the steps, set when it is submitted; the
    # step waiting (None: no review under way); who approved steps this round; passed: it may leave
    review_chain: tuple[str, ...] = ()
    review_step: int | None = None
    reviewers: tuple[str, ...] = ()
    review_passed: bool = False
    rework_units: Mapping[str, int] = field(default_factory=dict)  # 转办督查单 (callback rework) per unit


@dataclass(frozen=True)
class AuditEvent:
    """One change of a ticket: who (actor, role), when, from which state to which, note and data."""

    ticket_number: str
    action: str
    from_state: State | None
    to_state: State
    actor_id: str
    role: Role
    at: datetime
    note: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- numbers, phones, times

NUMBER_RE = re.compile(r"^GD\d{8}-\d{4,}$")
_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE_RE = re.compile(r"^0[1-9]\d{8,10}$")


def ticket_number(day: date, seq: int) -> str:
    """Human-readable number of the seq-th ticket of a day in the center's time zone: GD20261122-0001."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValidationError("seq", f"must be a positive integer, got {seq!r}")
    return f"GD{day:%Y%m%d}-{seq:04d}"


def center_day(now: datetime) -> date:
    """The calendar day of `now` in the center's time zone (for `ticket_number`)."""
    return as_utc(now, "now").astimezone(CENTER_TZ).date()


def normalize_phone(raw: str) -> str:
    """Digits of a Chinese mobile or landline number (spaces, dashes, +86 removed); ValidationError if invalid."""
    if not isinstance(raw, str):
        raise ValidationError("caller_phone", "must be a string")
    digits = re.sub(r"[\s\-()]", "", raw)
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits = digits[len(prefix):]
    if _MOBILE_RE.match(digits) or _LANDLINE_RE.match(digits):
        return digits
    raise ValidationError("caller_phone", f"not a valid mobile or landline number: {raw!r}")


def as_utc(value: Any, name: str) -> datetime:
    """`value` as a UTC datetime; ValidationError naming `name` unless it is timezone-aware."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(name, "must be a timezone-aware datetime")
    return value.astimezone(timezone.utc)


def color_for(repeat_count: int) -> Color:
    """Colour for a ticket with `repeat_count` repeat calls after the first: 0 blue, 1 orange, ≥2 red."""
    return Color.BLUE if repeat_count <= 0 else Color.ORANGE if repeat_count == 1 else Color.RED
