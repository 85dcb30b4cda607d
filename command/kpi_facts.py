"""One row of facts per ticket, folded from its audit events (pure; re-exported by `command.kpi`).

The audit events are the source of truth: `facts_from_events` folds one ticket's events, in
order, into a `TicketFacts`. The fold is a `TicketAccumulator`, which the incremental KPI path
(`KpiState.apply`) keeps per ticket, so both paths share one definition of every fact. How one
event is read (its time, its state, the markers in its data) is `command.kpi_events`.

How the stream is read
----------------------
- Attributes (channel, category, type, urgency, district, grid, unit_id, area_class, lon, lat)
  come from the optional `attributes` mapping (a ticket snapshot), overridden by the same keys
  in the `create` event's data, then by `review` (category, type, urgency) and `transfer`
  (unit_id) events. `new_ticket` records only the channel today; the store should put the
  classification keys into the create event's data (or pass snapshots to `rebuild`).
- Cycles: the ticket's first cycle starts at `create`; each `reopen` (返工) starts another.
- Dispatch time: created → FIRST dispatch. Acceptance time: the first `accept` − the dispatch it
  answered. Arrival time (抢修到位): first cycle's arrival − first dispatch; the arrival is the
  vehicle's GPS arrival when an event carries it (an `arrive` with data source "gps", or any
  event whose data, or data["data"], holds "gps_arrived_at" as ISO time), else the crew's
  `arrive` button.
- Repair time: the LAST resolution − the arrival of the same cycle. Total resolution time:
  created → last resolution (`resolve`, `resolve_with_incident` or `close_direct`).
- First-time fix: resolved once and never reopened. A consultation closed on the call
  (`close_direct`) is resolved and closed at once, with no dispatch, arrival or callback.
- Callback (回访): a `close` (its satisfaction) or a `reopen` after a resolution (its
  satisfaction, dissatisfied by default); the ticket's callback result is the LAST one, and the
  callback time runs from the first resolution to the first callback.
- 110 linkage: events whose data has "police": "handover" or "handover_queued" (our handover,
  as services.police_link notes it) and "police": "ack"/"acked"/"status" or a "police_status"
  (110 received it, or reports on it); acknowledgement time is the first ack after the first
  handover. Tickets created on channel police_110 are transfers in.
- Limits (command.limits): each stage is judged once, on the first cycle, when it completed:
  dispatch (created → first dispatch), accept, arrive (repair tickets only; created → arrival),
  resolve (created → first resolution) and callback (first resolution → first callback).
  Stages still running are not judged. The verdict is `LimitPolicy.met`, escalation's own: done
  by the stage's deadline, on the clock or in working time of the policy's calendar (a complaint
  resolved within 5 working days over a weekend or a holiday is on time), or for resolution by
  the later deadline of an extension (延期) approved before it (`approve_extension` of the latest
  `request_extension`'s "until"; a `reroute_return` or a `reopen` drops it, as on the ticket).
- A responsible unit's path counts like the field's: `assign` (交办) and `hand_to_crew` are
  dispatches, `unit_accept` (受理) an acceptance, `feedback` (办理结果反馈) a resolution, and a
  `reroute_return` or a `set_unit` (routing's audited override) moves the ticket to its new unit.
- For the unit report (考核, `command.kpi_units`): returns asked (`request_return`) and approved
  (`approve_return` or `reroute_return`), extensions asked (`request_extension`) and approved
  (`approve_extension`), and the ticket's 督办 steps (`note` events whose data carries
  "supervision": "issue", "urge" or "escalate", as `command.supervision.annotate` writes them);
  rework is the reopen count.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from command.kpi_events import (
    POLICE_ACK, POLICE_HANDOVER, EventError, epoch_seconds, event_to_state, gps_arrival_time, plain_value,
    police_marker, read_event, supervision_step,
)
from command.limits import DEFAULT_POLICY, LimitPolicy, LimitRule, Stage
from command.ticket_model import (
    AreaClass, AuditEvent, Category, Channel, Color, State, TicketType, Urgency, color_for,
)

UTC = timezone.utc
NAN = math.nan
RESOLVE_ACTIONS = frozenset({"resolve", "resolve_with_incident", "close_direct", "feedback",
                             "reject_review"})  # 不予受理: answered, told at the callback
DISPATCH_ACTIONS = frozenset({"dispatch", "assign", "hand_to_crew"})
ACCEPT_ACTIONS = frozenset({"accept", "unit_accept"})
REACHED = frozenset({"satisfied", "basically_satisfied", "dissatisfied"})
ATTRIBUTE_KEYS = ("channel", "category", "type", "urgency", "district", "grid", "unit_id",
                  "area_class", "lon", "lat")
STAGES = tuple(s.value for s in Stage)


@dataclass(frozen=True)
class TicketFacts:
    """What the audit events say about one ticket, for KPIs (times UTC, durations in seconds).

    Durations are None when the stage did not happen; `limits_met` maps each judged stage
    (dispatch, accept, arrive, resolve, callback) to whether it met its limit.
    """

    number: str
    channel: str | None
    category: str | None
    type: str | None
    urgency: str
    area_class: str
    district: str | None
    grid: str | None
    unit_id: str | None
    first_unit_id: str | None
    crew_id: str | None
    crew_ids: tuple[str, ...]
    lon: float | None
    lat: float | None
    state: str | None
    created_at: datetime | None
    first_dispatched_at: datetime | None
    accepted_at: datetime | None
    arrived_at: datetime | None
    arrival_source: str | None
    first_resolved_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    callback_at: datetime | None
    callback_result: str | None
    resolved_count: int
    reopen_count: int
    transfer_count: int
    repeat_calls: int
    duplicate_calls: int  # other callers about the same problem (no colour)
    color: str
    closed_on_call: bool
    police_handover_at: datetime | None
    police_ack_at: datetime | None
    dispatch_time_s: float | None
    acceptance_time_s: float | None
    arrival_time_s: float | None
    repair_time_s: float | None
    resolution_time_s: float | None
    callback_time_s: float | None
    police_ack_s: float | None
    limits_met: Mapping[str, bool]

    @property
    def first_time_fix(self) -> bool:
        """Resolved exactly once and never reopened."""
        return self.resolved_count == 1 and self.reopen_count == 0


class LimitTable:
    """The limit rules of a policy per (category, type, urgency, area class) and stage, cached,
    and the policy's on-time verdict for a stage's start and completion in epoch seconds."""

    def __init__(self, policy: LimitPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self._cache: dict[tuple[str | None, ...], tuple[LimitRule | None, ...]] = {}

    def rules(self, category: str | None, type_: str | None, urgency: str, area: str) -> tuple[LimitRule | None, ...]:
        """The rule of each stage (in `STAGES` order), None where no rule applies."""
        key = (category, type_, urgency, area)
        hit = self._cache.get(key)
        if hit is None:
            probe = _LimitKey(Category(category) if category else None,
                              TicketType(type_) if type_ else None, Urgency(urgency))
            hit = tuple(self.policy.rule_for(probe, stage, AreaClass(area)) for stage in Stage)  # type: ignore[arg-type]
            self._cache[key] = hit
        return hit

    def met(self, rule: LimitRule, start: float, completed: float, extended_until: float | None = None) -> bool:
        """`LimitPolicy.met` for epoch seconds: whether the stage completed by its deadline."""
        return self.policy.met(rule, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(completed, UTC),
                               None if extended_until is None else datetime.fromtimestamp(extended_until, UTC))


@dataclass(frozen=True)
class _LimitKey:
    category: Category | None
    type: TicketType | None
    urgency: Urgency


_DEFAULT_LIMITS = LimitTable()


UNIT_COUNTS = ("return_requests", "returns_approved", "extension_requests", "extensions_approved",
               "supervisions", "urgings", "escalations")
_UNIT_COUNT_OF = {"request_return": 0, "approve_return": 1, "reroute_return": 1, "request_extension": 2,
                  "approve_extension": 3}
_SUPERVISION_COUNT_OF = {"issue": 4, "urge": 5, "escalate": 6}

class TicketAccumulator:
    """The running fold of one ticket's events; `feed` one event at a time, then `facts()`."""

    __slots__ = (
        "number", "attrs", "first_unit_id", "state", "created", "first_dispatch", "cur_dispatch",
        "cur_crew", "crews", "accepted", "accept_s", "cycle", "arr_btn", "arr_gps", "c0_arrival",
        "c0_arrival_source", "c0_resolved", "last_resolved", "last_repair_s", "resolve_crew",
        "resolved_count", "closed", "closed_on_call", "callback_result", "callback_at",
        "first_callback", "reopen_count", "transfer_count", "repeat_calls", "duplicate_calls", "handover", "ack",
        "ext_requested", "ext_until", "unit_counts",
    )

    def __init__(self, number: str, attributes: Mapping[str, Any] | None = None) -> None:
        self.number = number
        self.attrs: dict[str, Any] = {"urgency": "normal", "area_class": "urban"}
        for key in ATTRIBUTE_KEYS:
            if attributes and attributes.get(key) is not None:
                self.attrs[key] = plain_value(attributes[key])
        self.first_unit_id = self.attrs.get("unit_id")
        self.state: str | None = None
        self.created = self.first_dispatch = self.cur_dispatch = self.accepted = self.accept_s = None
        self.cur_crew: str | None = None
        self.crews: list[str] = []
        self.cycle = 0
        self.arr_btn = self.arr_gps = self.c0_arrival = self.c0_resolved = self.last_resolved = None
        self.c0_arrival_source: str | None = None
        self.last_repair_s: float | None = None
        self.resolve_crew: str | None = None
        self.resolved_count = self.reopen_count = self.transfer_count = self.repeat_calls = self.duplicate_calls = 0
        self.closed: float | None = None
        self.closed_on_call = False
        self.callback_result: str | None = None
        self.callback_at = self.first_callback = self.handover = self.ack = None
        self.ext_requested = self.ext_until = None  # the latest extension asked; the one of the first cycle
        self.unit_counts = [0] * len(UNIT_COUNTS)  # the unit report's counts, `UNIT_COUNTS` order

    def feed(self, action: str, at: float, data: Mapping[str, Any], to_state: str | None = None) -> None:
        """Fold one event (action, epoch time, data) into the ticket's facts."""
        attrs = self.attrs
        if to_state is not None:
            self.state = to_state
        if action == "create":
            self.created = at
            for key in ATTRIBUTE_KEYS:
                if data.get(key) is not None:
                    attrs[key] = data[key]
            self.first_unit_id = attrs.get("unit_id")
        elif action == "review":
            for key in ("category", "type", "urgency"):
                if data.get(key) is not None:
                    attrs[key] = data[key]
        elif action in DISPATCH_ACTIONS:
            if self.first_dispatch is None:
                self.first_dispatch = at
            self.cur_dispatch = at
            crew = data.get("crew_id")
            self.cur_crew = crew
            if crew is not None and crew not in self.crews:
                self.crews.append(crew)
        elif action in ACCEPT_ACTIONS:
            if self.accepted is None:
                self.accepted = at
                if self.cur_dispatch is not None:
                    self.accept_s = at - self.cur_dispatch
        elif action == "arrive":
            if data.get("source") == "gps":
                self._gps_arrival(at)
            elif self.arr_btn is None:
                self.arr_btn = at
                if self.cycle == 0 and self.c0_arrival_source != "gps":
                    self.c0_arrival, self.c0_arrival_source = at, "button"
        elif action in RESOLVE_ACTIONS:
            self._resolve(action, at)
        elif action == "close":
            self._callback(at, data.get("satisfaction"))
            self.closed = at
        elif action in ("reopen", "rework"):  # rework: 转办督查单, back to the same unit (assigned)
            if action == "rework":
                self.cur_dispatch = at
            if self.last_resolved is not None:
                self._callback(at, data.get("satisfaction") or "dissatisfied")
            self.reopen_count += 1
            self.cycle += 1
            self.arr_btn = self.arr_gps = None
            self.closed = None
        elif action == "transfer":
            self.transfer_count += 1
            if data.get("unit_id") is not None:
                attrs["unit_id"] = data["unit_id"]
        elif action == "set_unit":
            if data.get("unit_id") is not None:
                attrs["unit_id"] = data["unit_id"]
        elif action == "repeat_call":
            self.repeat_calls += 1
        elif action == "duplicate_call":
            self.duplicate_calls += 1
        elif action in ("request_extension", "approve_extension", "reroute_return"):
            self._extension(action, data)
        elif action in ("cancel", "merge", "supervisor_close"):
            self.closed = at
        counted = _UNIT_COUNT_OF.get(action) if action != "note" else _SUPERVISION_COUNT_OF.get(supervision_step(data))
        if counted is not None:
            self.unit_counts[counted] += 1
        police = police_marker(data) if data else None
        if police in POLICE_HANDOVER:
            if self.handover is None:
                self.handover = at
        elif police in POLICE_ACK and self.handover is not None and self.ack is None and at >= self.handover:
            self.ack = at
        gps = gps_arrival_time(data) if data and ("gps_arrived_at" in data or "data" in data) else None
        if gps is not None:
            self._gps_arrival(gps)

    def _extension(self, action: str, data: Mapping[str, Any]) -> None:
        if action == "request_extension":
            self.ext_requested = epoch_seconds(data.get("until"), "until")
        elif self.cycle == 0 and self.c0_resolved is None:  # what the first resolution is judged by
            self.ext_until = self.ext_requested if action == "approve_extension" else None
        if action == "reroute_return" and data.get("unit_id") is not None:
            self.attrs["unit_id"] = data["unit_id"]

    def _gps_arrival(self, at: float) -> None:
        if self.arr_gps is None:
            self.arr_gps = at
            if self.cycle == 0:
                self.c0_arrival, self.c0_arrival_source = at, "gps"

    def _resolve(self, action: str, at: float) -> None:
        self.resolved_count += 1
        self.last_resolved = at
        if self.cycle == 0 and self.c0_resolved is None:
            self.c0_resolved = at
        arrival = self.arr_gps if self.arr_gps is not None else self.arr_btn
        self.last_repair_s = None if arrival is None else at - arrival
        self.resolve_crew = self.cur_crew
        if action == "close_direct":
            self.closed_on_call = True
            self.closed = at

    def _callback(self, at: float, satisfaction: Any) -> None:
        self.callback_result = None if satisfaction is None else str(plain_value(satisfaction))
        self.callback_at = at
        if self.first_callback is None:
            self.first_callback = at

    # ------------------------------------------------------------ derived values

    def durations(self) -> tuple[float, ...]:
        """(dispatch, acceptance, arrival, repair, resolution, callback, police ack) seconds, NaN if absent."""
        c, fd = self.created, self.first_dispatch
        dispatch = fd - c if c is not None and fd is not None else NAN
        accept = NAN if self.accept_s is None else self.accept_s
        arrival = self.c0_arrival - fd if self.c0_arrival is not None and fd is not None else NAN
        repair = NAN if self.last_repair_s is None else self.last_repair_s
        resolution = self.last_resolved - c if self.last_resolved is not None and c is not None else NAN
        callback = (self.first_callback - self.c0_resolved
                    if self.first_callback is not None and self.c0_resolved is not None else NAN)
        ack = self.ack - self.handover if self.ack is not None and self.handover is not None else NAN
        return dispatch, accept, arrival, repair, resolution, callback, ack

    def stage_spans(self) -> tuple[tuple[float | None, float | None], ...]:
        """(start, completion) in epoch seconds of each judged stage (STAGES order), None where
        the stage did not start or complete (see the module's "Limits")."""
        c, a = self.created, self.attrs
        dispatch = (None, None) if self.closed_on_call else (c, self.first_dispatch)  # never in the pool
        # the dispatch the first acceptance answered (exact: a - (a - b) is b for nearby epochs)
        accept = (None, None) if self.accept_s is None else (self.accepted - self.accept_s, self.accepted)
        arrive = (c, self.c0_arrival) if a.get("type") == TicketType.REPAIR.value else (None, None)
        return dispatch, accept, arrive, (c, self.c0_resolved), (self.c0_resolved, self.first_callback)

    def limits_met(self, table: LimitTable = _DEFAULT_LIMITS) -> tuple[int, ...]:
        """Per stage (STAGES order): 1 met, 0 missed, -1 not judged (`LimitPolicy.met` of the
        table's policy, on the clock or in working time as the stage's rule counts)."""
        a = self.attrs
        rules = table.rules(a.get("category"), a.get("type"), a["urgency"], a["area_class"])
        return tuple(-1 if rule is None or start is None or end is None
                     else int(table.met(rule, start, end, self.ext_until))
                     for (start, end), rule in zip(self.stage_spans(), rules))

    def to_dict(self) -> dict[str, Any]:
        """The running fold as JSON-safe values (kept beside a ticket's facts, so that its next
        events continue the fold instead of re-reading every event)."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TicketAccumulator":
        """The fold `to_dict` wrote (EventError when a field is missing)."""
        acc = cls.__new__(cls)
        try:
            for name in cls.__slots__:
                setattr(acc, name, data[name])
        except KeyError as exc:
            raise EventError("fold", f"missing {exc.args[0]!r}") from None
        acc.attrs = dict(acc.attrs)
        acc.crews = list(acc.crews)
        acc.unit_counts = list(acc.unit_counts)
        return acc

    def crew_id(self) -> str | None:
        """The crew answerable for the ticket: the one that resolved it last, else the last dispatched."""
        return self.resolve_crew if self.resolve_crew is not None else self.cur_crew

    def facts(self, table: LimitTable = _DEFAULT_LIMITS) -> TicketFacts:
        """The ticket's facts so far."""
        def dt(x: float | None) -> datetime | None:
            return None if x is None else datetime.fromtimestamp(x, UTC)

        def sec(x: float) -> float | None:
            return None if math.isnan(x) else x

        a = self.attrs
        durations = [sec(x) for x in self.durations()]
        met = {stage: bool(flag) for stage, flag in zip(STAGES, self.limits_met(table)) if flag >= 0}
        lon, lat = a.get("lon"), a.get("lat")
        return TicketFacts(
            number=self.number, channel=a.get("channel"), category=a.get("category"), type=a.get("type"),
            urgency=a["urgency"], area_class=a["area_class"], district=a.get("district"),
            grid=a.get("grid"), unit_id=a.get("unit_id"), first_unit_id=self.first_unit_id,
            crew_id=self.crew_id(), crew_ids=tuple(self.crews),
            lon=None if lon is None else float(lon), lat=None if lat is None else float(lat),
            state=self.state, created_at=dt(self.created), first_dispatched_at=dt(self.first_dispatch),
            accepted_at=dt(self.accepted), arrived_at=dt(self.c0_arrival),
            arrival_source=self.c0_arrival_source, first_resolved_at=dt(self.c0_resolved),
            resolved_at=dt(self.last_resolved), closed_at=dt(self.closed),
            callback_at=dt(self.callback_at), callback_result=self.callback_result,
            resolved_count=self.resolved_count, reopen_count=self.reopen_count,
            transfer_count=self.transfer_count, repeat_calls=self.repeat_calls, duplicate_calls=self.duplicate_calls,
            color=color_for(self.repeat_calls).value, closed_on_call=self.closed_on_call,
            police_handover_at=dt(self.handover), police_ack_at=dt(self.ack),
            dispatch_time_s=durations[0], acceptance_time_s=durations[1], arrival_time_s=durations[2],
            repair_time_s=durations[3], resolution_time_s=durations[4], callback_time_s=durations[5],
            police_ack_s=durations[6], limits_met=met,
        )



def facts_from_events(events: Iterable[Mapping[str, Any] | AuditEvent], *,
                      attributes: Mapping[str, Any] | None = None,
                      limits: LimitTable = _DEFAULT_LIMITS) -> TicketFacts:
    """Fold the audit events of ONE ticket (in order) into its facts; EventError if empty or mixed."""
    acc: TicketAccumulator | None = None
    for event in events:
        number, action, at, data = read_event(event)
        if acc is None:
            acc = TicketAccumulator(number, attributes)
        elif number != acc.number:
            raise EventError("ticket_number", f"events of {acc.number} and {number} mixed in one stream")
        acc.feed(action, at, data, event_to_state(event))
    if acc is None:
        raise EventError("events", "no events given")
    return acc.facts(limits)


CHANNELS = tuple(c.value for c in Channel)
CATEGORIES = tuple(c.value for c in Category)
TYPES = tuple(t.value for t in TicketType)
URGENCIES = tuple(u.value for u in Urgency)
AREA_CLASSES = tuple(a.value for a in AreaClass)
COLORS = tuple(c.value for c in Color)
CALLBACK_RESULTS = ("satisfied", "basically_satisfied", "dissatisfied", "unreachable")
STATES = tuple(s.value for s in State)
