"""Time limits (时限), deadlines and escalation of tickets (pure: `now` is passed in).

A limit is found per stage in a table of `LimitRule`s. Rules come in layers (the defaults are
layer 0, each batch of configuration overrides a higher layer): a matching rule of a higher layer
wins; within a layer the most specific matching rule wins (category, type, area class and urgency
each count one), and a later rule beats an earlier one of the same specificity.

Stages and where their clock starts:

- dispatch: from the moment the ticket entered the dispatch pool (created, declined, returned,
  reopened, transferred) until it is dispatched;
- accept: from the (latest) dispatch until the crew accepts;
- arrive: from the start of the cycle (created or reopened) until arrival on site; repair tickets
  only; the vehicle's GPS arrival, when known, is the arrival time (not only the crew's button);
- resolve: from the start of the cycle until resolved;
- callback: from resolution until the callback closes (or reopens) the ticket.

Defaults (DEFAULT_RULES) — arrival limits of repair tickets, in minutes, urban / rural / remote:

======================  =====  =====  ======  =================================================
category                urban  rural  remote  source
======================  =====  =====  ======  =================================================
power                   45     90     120     State Grid 95598 service commitment (城区45分钟,
                                              农村90分钟, 特殊边远地区2小时)
gas                     30     60     90      project default: stricter than power, a leak is a
                                              danger to life; check the local 燃气服务 rules
water, heating,         60     120    180     project default (typical 供水/供热 hotline pledge
drainage                                      of one hour in town)
sanitation, other       120    240    240     project default
======================  =====  =====  ======  =================================================

Other defaults (project defaults, configurable): dispatch 3 / 10 / 30 min for emergency / urgent /
normal repairs and 2 h (24 h for suggestions and praise) for other types; acceptance 5 min for
repairs (the crew's 3-minute acceptance timeout re-dispatches before this), 1 h otherwise;
resolution 8 h for emergency repairs, 24 h for other repairs and consultations; callback within
24 h of resolution.

Units. A rule counts on the clock (`Unit.CLOCK`: repairs and emergencies, every limit above) or
in working time of the center's calendar (`command.calendar.WorkCalendar`: working hours, weekends,
holidays, 调休 make-up days). For `Unit.WORKING_DAYS` the rule's `limit` of N days reads as N
working days (N × the calendar's `day_length` of working time), for `Unit.WORKING_HOURS` as that
much working time. The resolution limits of the office's ticket types run on working days:

==========================  ===============  ===============================================
type (stage resolve)        limit            counted
==========================  ===============  ===============================================
service (服务)              3 working days   from the start of the cycle, in working time
complaint (投诉)            5 working days   idem (the usual 5个工作日 of a hotline complaint)
suggestion (建议)           10 working days  idem
praise (表扬)               10 working days  idem
every other limit           as above         on the clock (repairs, emergencies, 95598
                                             arrival 45 / 90 / 120 min)
==========================  ===============  ===============================================

For a working-time rule the deadline is `calendar.add(start, limit)`, the used share is the
working time from the start to `now` (or completion) over the limit, and the time left is the
working time from `now` to the deadline (negative when overdue); `LimitStatus.limit` and
`time_left` are then working time, `LimitStatus.unit` says which. `limit_for` answers the limit as
written (5 working days as 5 days). A completed stage is on time when it completed by its deadline
(`LimitPolicy.met`: escalation's verdict, and the KPI facts' `limits_met`). The running
system reads its calendar and overrides from the files named by the settings CALENDAR_FILE and
LIMITS_FILE (`config.limit_files`); `DEFAULT_POLICY` uses `DEFAULT_CALENDAR` (weekends and
hours, no holidays).
"""
from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from command.calendar import DEFAULT_CALENDAR, WorkCalendar
from command.errors import ValidationError
from command.ticket_model import (
    FIELD_STATES, POOL_STATES, URGENCY_RANK, AreaClass, Category, State, Ticket, TicketType, Urgency, as_utc,
)


class Stage(str, enum.Enum):
    """A timed stage of a ticket's handling."""

    DISPATCH = "dispatch"
    ACCEPT = "accept"
    ARRIVE = "arrive"
    RESOLVE = "resolve"
    CALLBACK = "callback"


class Unit(str, enum.Enum):
    """How a limit is counted: on the clock, or in working days / hours of the center's calendar."""

    CLOCK = "clock"
    WORKING_DAYS = "working_days"
    WORKING_HOURS = "working_hours"


class Level(str, enum.Enum):
    """Escalation level of a stage: ok, warning (≥ warn share of the limit used), overdue (≥ 100%)."""

    OK = "ok"
    WARNING = "warning"
    OVERDUE = "overdue"


@dataclass(frozen=True)
class LimitRule:
    """A limit for one stage; None in a key field matches any value. With `unit` WORKING_DAYS a
    `limit` of N days means N working days, with WORKING_HOURS it is working time."""

    stage: Stage
    limit: timedelta
    category: Category | None = None
    type: TicketType | None = None
    area_class: AreaClass | None = None
    urgency: Urgency | None = None
    layer: int = 0
    unit: Unit = Unit.CLOCK

    def matches(self, ticket: Ticket, area_class: AreaClass) -> bool:
        """Whether this rule applies to the ticket in this area class."""
        return ((self.category is None or self.category is ticket.category)
                and (self.type is None or self.type is ticket.type)
                and (self.area_class is None or self.area_class is area_class)
                and (self.urgency is None or self.urgency is ticket.urgency))

    @property
    def specificity(self) -> int:
        """How many key fields the rule fixes."""
        return sum(v is not None for v in (self.category, self.type, self.area_class, self.urgency))

    def working_time(self, calendar: WorkCalendar) -> timedelta:
        """The limit in the time it is counted in: clock time, or working time of `calendar`."""
        if self.unit is Unit.WORKING_DAYS:
            return self.limit / timedelta(days=1) * calendar.day_length
        return self.limit


def _m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def _default_rules() -> tuple[LimitRule, ...]:
    rep, urban, rural, remote = TicketType.REPAIR, AreaClass.URBAN, AreaClass.RURAL, AreaClass.REMOTE
    rules: list[LimitRule] = []
    arrival = {
        Category.POWER: (45, 90, 120),
        Category.GAS: (30, 60, 90),
        Category.WATER: (60, 120, 180),
        Category.HEATING: (60, 120, 180),
        Category.DRAINAGE: (60, 120, 180),
        Category.SANITATION: (120, 240, 240),
        Category.OTHER: (120, 240, 240),
    }
    for category, minutes in arrival.items():
        for area, limit in zip((urban, rural, remote), minutes):
            rules.append(LimitRule(Stage.ARRIVE, _m(limit), category, rep, area))
    rules += [
        LimitRule(Stage.DISPATCH, _m(120)),
        LimitRule(Stage.DISPATCH, _m(24 * 60), type=TicketType.SUGGESTION),
        LimitRule(Stage.DISPATCH, _m(24 * 60), type=TicketType.PRAISE),
        LimitRule(Stage.DISPATCH, _m(3), type=rep, urgency=Urgency.EMERGENCY),
        LimitRule(Stage.DISPATCH, _m(10), type=rep, urgency=Urgency.URGENT),
        LimitRule(Stage.DISPATCH, _m(30), type=rep, urgency=Urgency.NORMAL),
        LimitRule(Stage.ACCEPT, _m(60)),
        LimitRule(Stage.ACCEPT, _m(5), type=rep),
        LimitRule(Stage.RESOLVE, _m(24 * 60)),
        LimitRule(Stage.RESOLVE, _m(8 * 60), type=rep, urgency=Urgency.EMERGENCY),
        LimitRule(Stage.RESOLVE, timedelta(days=3), type=TicketType.SERVICE, unit=Unit.WORKING_DAYS),
        LimitRule(Stage.RESOLVE, timedelta(days=5), type=TicketType.COMPLAINT, unit=Unit.WORKING_DAYS),
        LimitRule(Stage.RESOLVE, timedelta(days=10), type=TicketType.SUGGESTION, unit=Unit.WORKING_DAYS),
        LimitRule(Stage.RESOLVE, timedelta(days=10), type=TicketType.PRAISE, unit=Unit.WORKING_DAYS),
        LimitRule(Stage.CALLBACK, _m(24 * 60)),
    ]
    return tuple(rules)


DEFAULT_RULES: tuple[LimitRule, ...] = _default_rules()


@dataclass(frozen=True)
class LimitPolicy:
    """The configured limit rules, the warning share and the calendar working-time rules count on."""

    rules: tuple[LimitRule, ...] = DEFAULT_RULES
    warn_share: float = 0.8
    calendar: WorkCalendar = DEFAULT_CALENDAR
    # rule_for's answers by (stage, category, type, area class, urgency): all a rule looks at
    _found: dict[tuple[Any, ...], LimitRule | None] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def rule_for(self, ticket: Ticket, stage: Stage, area_class: AreaClass) -> LimitRule | None:
        """The rule that sets the limit of `stage` for this ticket, or None when none applies."""
        key = (stage, ticket.category, ticket.type, area_class, ticket.urgency)
        if key in self._found:
            return self._found[key]
        best: LimitRule | None = None
        for rule in self.rules:
            if rule.stage is stage and rule.matches(ticket, area_class):
                if best is None or (rule.layer, rule.specificity) >= (best.layer, best.specificity):
                    best = rule
        self._found[key] = best
        return best

    def limit_for(self, ticket: Ticket, stage: Stage, area_class: AreaClass) -> timedelta | None:
        """The limit of `stage` for this ticket as written (N working days as N days), or None."""
        rule = self.rule_for(ticket, stage, area_class)
        return None if rule is None else rule.limit

    def deadline(self, rule: LimitRule, start: datetime) -> datetime:
        """When a stage started at `start` under `rule` is due (working time on the calendar)."""
        if rule.unit is Unit.CLOCK:
            return start + rule.limit
        return self.calendar.add(start, rule.working_time(self.calendar))

    def due(self, rule: LimitRule, start: datetime, extended_until: datetime | None = None) -> datetime:
        """The deadline of a stage started at `start` under `rule`, or for resolution the later one
        of an approved extension (延期) when there is one."""
        deadline = self.deadline(rule, start)
        if rule.stage is Stage.RESOLVE and extended_until is not None and extended_until > deadline:
            return extended_until
        return deadline

    def met(self, rule: LimitRule, start: datetime, completed: datetime,
            extended_until: datetime | None = None) -> bool:
        """Whether a stage started at `start` and completed at `completed` met `rule`: completed by
        its `due` time (the one on-time verdict, of `escalation` and of the KPI facts alike)."""
        return completed <= self.due(rule, start, extended_until)

    def elapsed(self, rule: LimitRule, start: datetime, end: datetime) -> timedelta:
        """Time from `start` to `end` as `rule` counts it (working time for working-time rules)."""
        return end - start if rule.unit is Unit.CLOCK else self.calendar.between(start, end)

    def with_rules(self, extra: Iterable[LimitRule]) -> LimitPolicy:
        """A policy with `extra` rules added as a new layer: where they match, they win."""
        layer = max((r.layer for r in self.rules), default=0) + 1
        return LimitPolicy(self.rules + tuple(dataclasses.replace(r, layer=layer) for r in extra),
                           self.warn_share, self.calendar)


DEFAULT_POLICY = LimitPolicy()


_AMOUNTS = {"minutes": (Unit.CLOCK, _m), "working_days": (Unit.WORKING_DAYS, lambda n: timedelta(days=n)),
            "working_hours": (Unit.WORKING_HOURS, lambda n: timedelta(hours=n))}
_ENTRY_KEYS = {"stage", "category", "type", "area_class", "urgency", "note", *_AMOUNTS}


def policy_from_config(entries: Sequence[Mapping[str, Any]], *, warn_share: float = 0.8,
                       base: LimitPolicy = DEFAULT_POLICY, calendar: WorkCalendar | None = None) -> LimitPolicy:
    """Overrides from configuration, e.g. [{"stage": "arrive", "category": "power", "area_class":
    "urban", "minutes": 30}, {"stage": "resolve", "type": "complaint", "working_days": 5}], as a
    new layer over `base` (each entry has one of minutes / working_days / working_hours and may
    carry a `note`), counting working time on `calendar` (default: `base`'s); ValidationError
    names the bad key."""
    if not 0 < warn_share < 1:
        raise ValidationError("warn_share", "must be between 0 and 1")
    rules = []
    for entry in entries:
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ValidationError(sorted(unknown)[0], "unknown key in a time limit")
        amounts = [k for k in _AMOUNTS if k in entry]
        if len(amounts) != 1:
            raise ValidationError("minutes", "a time limit has one of minutes, working_days, working_hours")
        amount = entry[amounts[0]]
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount < math.inf:
            raise ValidationError(amounts[0], "must be a positive number")
        unit, as_delta = _AMOUNTS[amounts[0]]
        try:
            rules.append(LimitRule(
                Stage(entry.get("stage")), as_delta(amount),
                *(None if entry.get(k) is None else cls(entry[k]) for k, cls in (
                    ("category", Category), ("type", TicketType), ("area_class", AreaClass),
                    ("urgency", Urgency))), unit=unit))
        except ValueError as exc:
            raise ValidationError("limits", str(exc)) from None
    policy = base.with_rules(rules)
    return dataclasses.replace(policy, warn_share=warn_share, calendar=policy.calendar if calendar is None else calendar)


@dataclass(frozen=True)
class LimitStatus:
    """Where a ticket stands against one stage's limit at `now`.

    `time_left` is negative when overdue; for a finished stage (`done`) it is the margin at
    completion and the level is ok or overdue (late). For a working-time `unit`, `limit` and
    `time_left` are working time (the deadline is an instant as always).

    `clock_limit` is for whoever keeps only (deadline, a length) and computes the share left as
    ``(deadline - t) / length`` on the clock (the stored ticket queue, its list and alarm scan): on
    the clock it is `limit`; in working time it is chosen so that this share falls to
    ``1 - warn_share`` exactly when the stage turns warning and to 0 at the deadline.
    """

    stage: Stage
    level: Level
    started_at: datetime
    deadline: datetime
    limit: timedelta
    used_share: float
    time_left: timedelta
    done: bool = False
    completed_at: datetime | None = None
    unit: Unit = Unit.CLOCK
    clock_limit: timedelta | None = None

    def __post_init__(self) -> None:
        if self.clock_limit is None:
            object.__setattr__(self, "clock_limit", self.limit)


def _clock(ticket: Ticket, stage: Stage, arrived_at: datetime | None) -> tuple[datetime | None, datetime | None, bool]:
    """(start, completion, applicable) of a stage for the ticket's current state."""
    state, cycle = ticket.state, ticket.cycle_started_at or ticket.created_at
    if stage is Stage.DISPATCH:
        start = ticket.pending_since or ticket.created_at
        if state in POOL_STATES:
            return start, None, True
        done = ticket.dispatched_at if ticket.dispatched_at and ticket.dispatched_at >= start else None
        return start, done, done is not None
    if stage is Stage.ACCEPT:
        if ticket.dispatched_at is None or state in POOL_STATES:
            return None, None, False
        accepted = ticket.accepted_at if ticket.accepted_at and ticket.accepted_at >= ticket.dispatched_at else None
        return ticket.dispatched_at, accepted, state in (State.DISPATCHED, State.ASSIGNED) or accepted is not None
    if stage is Stage.ARRIVE:
        arrival = arrived_at if arrived_at is not None and arrived_at >= cycle else ticket.arrived_at
        if arrival is None and state not in POOL_STATES and state not in FIELD_STATES:
            return cycle, None, False  # resolved with an incident, without an arrival of its own
        return cycle, arrival, True
    if stage is Stage.RESOLVE:
        return cycle, ticket.resolved_at, True
    if state not in (State.RESOLVED, State.CALLBACK) or ticket.resolved_at is None:
        return None, None, False
    return ticket.resolved_at, None, True


def _due(policy: LimitPolicy, rule: LimitRule, ticket: Ticket, stage: Stage, start: datetime) -> datetime:
    """The stage's deadline: the rule's, or for resolution a later one of an approved extension (延期)."""
    return policy.due(rule, start, ticket.extended_until)


def _limits(policy: LimitPolicy, rule: LimitRule, ticket: Ticket, stage: Stage, start: datetime,
            share: float) -> tuple[datetime, timedelta, timedelta]:
    """(deadline, limit, clock limit) of a started stage. An extension lengthens the limit to its
    new deadline; the clock limit is the limit for a clock stage, and for a working-time stage the
    clock time in which its share left falls from ``1 - share`` to 0 (`LimitStatus.clock_limit`)."""
    deadline = _due(policy, rule, ticket, stage, start)
    limit = policy.elapsed(rule, start, deadline) if deadline != policy.deadline(rule, start) \
        else rule.working_time(policy.calendar)
    clock_limit = limit
    if rule.unit is not Unit.CLOCK and share < 1:
        clock_limit = (deadline - policy.calendar.add(start, share * limit)) / (1 - share)
    return deadline, limit, clock_limit


def stamp(ticket: Ticket, *, policy: LimitPolicy = DEFAULT_POLICY,
          ) -> tuple[Ticket, list[tuple[Stage, datetime, timedelta]]]:
    """In one pass, the ticket with its `deadlines` snapshot (as `with_deadlines`) and its open timed
    stages as (stage, deadline, clock limit), the not-done stages `escalation` reports (none for a
    closed, cancelled or merged ticket): what a stored ticket keeps for the queue."""
    stamped: dict[str, datetime] = {}
    open_stages: list[tuple[Stage, datetime, timedelta]] = []
    ended = ticket.state in (State.CLOSED, State.CANCELLED, State.MERGED)
    for stage in Stage:
        start, completed, applicable = _clock(ticket, stage, None)
        rule = policy.rule_for(ticket, stage, ticket.area_class)
        if not applicable or start is None or rule is None:
            continue
        if ended or completed is not None:
            stamped[stage.value] = _due(policy, rule, ticket, stage, start)
            continue
        deadline, _, clock_limit = _limits(policy, rule, ticket, stage, start, policy.warn_share)
        stamped[stage.value] = deadline
        open_stages.append((stage, deadline, clock_limit))
    return dataclasses.replace(ticket, deadlines=stamped), open_stages


def deadlines(ticket: Ticket, area_class: AreaClass | None = None, *,
              policy: LimitPolicy = DEFAULT_POLICY) -> dict[Stage, datetime]:
    """Deadline of every stage whose clock has started and that has a limit (area class defaults to the ticket's)."""
    area = ticket.area_class if area_class is None else AreaClass(area_class)
    out: dict[Stage, datetime] = {}
    for stage in Stage:
        start, _, applicable = _clock(ticket, stage, None)
        rule = policy.rule_for(ticket, stage, area)
        if applicable and start is not None and rule is not None:
            out[stage] = _due(policy, rule, ticket, stage, start)
    return out


def with_deadlines(ticket: Ticket, area_class: AreaClass | None = None, *,
                   policy: LimitPolicy = DEFAULT_POLICY) -> Ticket:
    """The ticket with its `deadlines` snapshot refreshed (for display and storage; not a new version)."""
    stamped = {stage.value: at for stage, at in deadlines(ticket, area_class, policy=policy).items()}
    return dataclasses.replace(ticket, deadlines=stamped)


def escalation(ticket: Ticket, now: datetime, *, arrived_at: datetime | None = None,
               warn_share: float | None = None, area_class: AreaClass | None = None,
               policy: LimitPolicy = DEFAULT_POLICY) -> list[LimitStatus]:
    """Status of each applicable stage at `now`: ok / warning (≥ warn share used) / overdue (≥ 100%).

    `arrived_at` is the vehicle's GPS arrival at the site; when given it is the arrival time, so a
    crew pressing "arrived" early (or late) does not change the verdict. A closed, cancelled or
    merged ticket has no open limits: the result is empty.
    """
    now = as_utc(now, "now")
    if arrived_at is not None:
        arrived_at = as_utc(arrived_at, "arrived_at")
    share = policy.warn_share if warn_share is None else warn_share
    area = ticket.area_class if area_class is None else AreaClass(area_class)
    if ticket.state in (State.CLOSED, State.CANCELLED, State.MERGED):
        return []
    out: list[LimitStatus] = []
    for stage in Stage:
        start, completed, applicable = _clock(ticket, stage, arrived_at)
        rule = policy.rule_for(ticket, stage, area)
        if not applicable or start is None or rule is None:
            continue
        deadline, limit, clock_limit = _limits(policy, rule, ticket, stage, start, share)
        end = completed if completed is not None else now
        used = policy.elapsed(rule, start, end) / limit
        if completed is not None:
            level = Level.OK if policy.met(rule, start, completed, ticket.extended_until) else Level.OVERDUE
        else:
            level = Level.OVERDUE if used >= 1 or end >= deadline else Level.WARNING if used >= share else Level.OK
        out.append(LimitStatus(stage, level, start, deadline, limit, used, policy.elapsed(rule, end, deadline),
                               completed is not None, completed, rule.unit, clock_limit))
    return out


def queue_key(ticket: Ticket, now: datetime, *, arrived_at: datetime | None = None,
              policy: LimitPolicy = DEFAULT_POLICY) -> tuple[float, int, datetime, str]:
    """Sort key for the dispatcher's queue: least share of its limit left first (overdue is
    negative), then urgency, then age, then number. The share left is ``(deadline - now) /
    clock_limit``, the order of the stored queue (`LimitStatus.clock_limit`): for a clock stage
    it is ``1 - used_share``; for a working-time stage it reaches ``1 - warn_share`` when the stage
    turns warning and 0 at its deadline."""
    open_stages = [s for s in escalation(ticket, now, arrived_at=arrived_at, policy=policy) if not s.done]
    left = min(((s.deadline - now) / s.clock_limit for s in open_stages), default=math.inf)  # type: ignore[operator]
    return left, URGENCY_RANK[ticket.urgency], ticket.created_at, ticket.number


def alarms(statuses: Sequence[LimitStatus]) -> list[LimitStatus]:
    """The open stages at warning or overdue, most pressing first (what the dispatcher is shown)."""
    pending = [s for s in statuses if not s.done and s.level is not Level.OK]
    return sorted(pending, key=lambda s: s.time_left / s.limit)
