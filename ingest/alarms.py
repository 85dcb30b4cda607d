"""Sensor alarm rules: thresholds with deadband and on-delay, acknowledgement, no-data.

Pure: every function takes the time in (``at`` / ``now``) and returns new values.

Model (after ISA-18.2, simplified to one alarm per sensor and kind):

* Kinds: ``high`` and ``low`` (value alarms) and ``no_data`` (silence), so a sensor can
  have at most three alarms at once. ``alarm_id`` is ``f"{sensor_id}:{kind}"``.
* Raising: a value beyond a threshold (strictly: ``value > high`` or ``value < low``) must
  stay beyond it for ``min_duration_s`` (judged at each reading) before the alarm is raised.
  One reading back inside resets that on-delay, so a short spike raises nothing.
* Severity: ``warning`` or ``critical`` from the threshold crossed. Within one alarm the
  severity only rises: crossing the critical threshold (held for ``min_duration_s`` too)
  escalates warning -> critical (event ``escalated``) and asks for a new acknowledgement.
* Clearing (hysteresis): an active high alarm clears when ``value <= entry - deadband``,
  a low alarm when ``value >= entry + deadband``, where ``entry`` is the warning threshold
  (or the critical one when no warning is set). Values oscillating around the threshold
  within the deadband therefore do not flap.
* States (``Alarm.state``):

  ==================  ==========  =================================================
  state               acked_at    meaning
  ==================  ==========  =================================================
  ``raised``          None        active, unacknowledged
  ``acknowledged``    set         active, an operator has taken it (stays until clear)
  ``cleared``         None        returned to normal but never acknowledged: still
                                  shown ("cleared, awaiting acknowledgement")
  ``cleared``         set         closed: gone from the alarm list
  ==================  ==========  =================================================

  Acknowledging a cleared, unacknowledged alarm closes it. A new condition on the same
  sensor and kind replaces a cleared alarm with a fresh ``raised`` one.
* No data: ``check_silence`` raises a ``no_data`` alarm (severity warning) when a sensor
  has sent nothing for ``factor * period_s`` (default 3x its reporting period), counted
  from its last reading or, before any, from when it was first watched. The next reading
  clears it.

Hot path: ``evaluate`` for a value inside the thresholds with no alarm and no on-delay
pending builds one small state object and nothing else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

__all__ = [
    "Alarm",
    "AlarmEvent",
    "InvalidAcknowledgement",
    "InvalidThresholds",
    "SensorAlarmState",
    "Thresholds",
    "acknowledge",
    "acknowledge_sensor_alarm",
    "active_alarms",
    "check_silence",
    "evaluate",
]


class InvalidThresholds(ValueError):
    """Thresholds that are out of order or have a negative deadband or duration."""


class InvalidAcknowledgement(ValueError):
    """An acknowledgement without a user, or for an alarm the sensor does not have."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-sensor limits in the sensor's registered unit; any limit may be None."""

    low_critical: float | None = None
    low_warning: float | None = None
    high_warning: float | None = None
    high_critical: float | None = None
    deadband: float = 0.0
    min_duration_s: float = 0.0
    high_entry: float | None = field(init=False, repr=False, compare=False)
    low_entry: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Check the order low_critical <= low_warning < high_warning <= high_critical."""
        limits = [
            v for v in (self.low_critical, self.low_warning, self.high_warning, self.high_critical)
            if v is not None
        ]
        if any(not math.isfinite(v) for v in limits):
            raise InvalidThresholds(f"non-finite threshold in {limits}")
        if limits != sorted(limits):
            raise InvalidThresholds(f"thresholds out of order: {self}")
        if not (self.deadband >= 0 and self.min_duration_s >= 0):
            raise InvalidThresholds("deadband and min_duration_s must be >= 0")
        high = self.high_warning if self.high_warning is not None else self.high_critical
        low = self.low_warning if self.low_warning is not None else self.low_critical
        if high is not None and low is not None and not low < high:
            raise InvalidThresholds("low and high thresholds overlap")
        object.__setattr__(self, "high_entry", high)
        object.__setattr__(self, "low_entry", low)


@dataclass(frozen=True, slots=True)
class Alarm:
    """Snapshot of one alarm of one sensor (see the module docstring for the states)."""

    alarm_id: str
    sensor_id: str
    kind: str            # 'low' | 'high' | 'no_data'
    severity: str        # 'warning' | 'critical'
    state: str           # 'raised' | 'acknowledged' | 'cleared'
    raised_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    cleared_at: datetime | None
    value: float | None  # value that raised/escalated it; silence seconds for no_data
    threshold: float     # limit crossed; the silence limit in seconds for no_data

    @property
    def active(self) -> bool:
        """Whether the condition still holds (raised or acknowledged)."""
        return self.state != "cleared"

    @property
    def needs_ack(self) -> bool:
        """Whether an operator still has to acknowledge it (active or cleared)."""
        return self.acked_at is None


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A change of an alarm: type is raised | escalated | acknowledged | cleared."""

    type: str
    alarm: Alarm
    at: datetime


class SensorAlarmState(NamedTuple):
    """Everything the rules remember about one sensor between readings.

    A NamedTuple rather than a frozen dataclass: ``evaluate`` builds one per reading and a
    tuple is several times cheaper to construct than a frozen dataclass of ten fields.
    """

    sensor_id: str
    watch_since: datetime
    last_reading_at: datetime | None = None
    high: Alarm | None = None
    low: Alarm | None = None
    no_data: Alarm | None = None
    high_pending_since: datetime | None = None
    high_critical_since: datetime | None = None
    low_pending_since: datetime | None = None
    low_critical_since: datetime | None = None

    @classmethod
    def new(cls, sensor_id: str, now: datetime) -> SensorAlarmState:
        """State for a sensor first watched at ``now``."""
        return cls(sensor_id, now)


def active_alarms(state: SensorAlarmState) -> list[Alarm]:
    """The sensor's alarms still shown: active ones and cleared-but-unacknowledged ones."""
    return [a for a in (state.high, state.low, state.no_data) if a is not None]


def _evaluate_side(
    sensor_id: str,
    kind: str,
    alarm: Alarm | None,
    pending: datetime | None,
    critical_since: datetime | None,
    x: float,
    warn: float | None,
    crit: float | None,
    sign: float,
    thresholds: Thresholds,
    value: float,
    at: datetime,
    events: list[AlarmEvent],
) -> tuple[Alarm | None, datetime | None, datetime | None]:
    """One side (high, or low mirrored by ``sign`` = -1): x and limits are sign * value."""
    entry = warn if warn is not None else crit
    active = alarm is not None and alarm.state != "cleared"
    if entry is None:
        if active:
            alarm = _clear(alarm, at, events)  # type: ignore[arg-type]
        return alarm, None, None
    beyond_crit = crit is not None and x > crit
    if active:
        assert alarm is not None
        if x <= entry - thresholds.deadband:
            return _clear(alarm, at, events), None, None
        if alarm.severity == "warning" and beyond_crit:
            critical_since = critical_since or at
            if (at - critical_since).total_seconds() >= thresholds.min_duration_s:
                alarm = Alarm(
                    alarm.alarm_id, sensor_id, kind, "critical", "raised", alarm.raised_at,
                    None, None, None, value, sign * crit,  # type: ignore[operator]
                )
                events.append(AlarmEvent("escalated", alarm, at))
                return alarm, None, None
            return alarm, None, critical_since
        return alarm, None, None
    if x <= entry:
        return alarm, None, None
    pending = pending or at
    critical_since = (critical_since or at) if beyond_crit else None
    if (at - pending).total_seconds() < thresholds.min_duration_s:
        return alarm, pending, critical_since
    critical = critical_since is not None and (
        warn is None or (at - critical_since).total_seconds() >= thresholds.min_duration_s
    )
    limit = crit if critical else warn
    alarm = Alarm(
        f"{sensor_id}:{kind}", sensor_id, kind, "critical" if critical else "warning", "raised",
        at, None, None, None, value, sign * limit,  # type: ignore[operator]
    )
    events.append(AlarmEvent("raised", alarm, at))
    return alarm, None, None if critical else critical_since


def _clear(alarm: Alarm, at: datetime, events: list[AlarmEvent]) -> Alarm | None:
    """Clear an active alarm; keep it only while it still needs acknowledgement."""
    cleared = Alarm(
        alarm.alarm_id, alarm.sensor_id, alarm.kind, alarm.severity, "cleared", alarm.raised_at,
        alarm.acked_at, alarm.acked_by, at, alarm.value, alarm.threshold,
    )
    events.append(AlarmEvent("cleared", cleared, at))
    return cleared if cleared.acked_at is None else None


def evaluate(
    state: SensorAlarmState, value: float, at: datetime, thresholds: Thresholds
) -> tuple[SensorAlarmState, list[AlarmEvent]]:
    """Apply one reading taken at ``at``; return the new state and the alarm events."""
    last = state.last_reading_at
    if last is not None and at < last:
        last_seen = last
    else:
        last_seen = at
    high_entry = thresholds.high_entry
    low_entry = thresholds.low_entry
    if (
        state.high is None and state.low is None and state.no_data is None
        and state.high_pending_since is None and state.low_pending_since is None
        and (high_entry is None or not value > high_entry)
        and (low_entry is None or not value < low_entry)
    ):
        return SensorAlarmState(state.sensor_id, state.watch_since, last_seen), []

    events: list[AlarmEvent] = []
    no_data = state.no_data
    if no_data is not None and no_data.state != "cleared":
        no_data = _clear(no_data, at, events)
    high, high_pending, high_critical = _evaluate_side(
        state.sensor_id, "high", state.high, state.high_pending_since, state.high_critical_since,
        value, thresholds.high_warning, thresholds.high_critical, 1.0, thresholds, value, at, events,
    )
    low_warn = None if thresholds.low_warning is None else -thresholds.low_warning
    low_crit = None if thresholds.low_critical is None else -thresholds.low_critical
    low, low_pending, low_critical = _evaluate_side(
        state.sensor_id, "low", state.low, state.low_pending_since, state.low_critical_since,
        -value, low_warn, low_crit, -1.0, thresholds, value, at, events,
    )
    new_state = SensorAlarmState(
        state.sensor_id, state.watch_since, last_seen, high, low, no_data,
        high_pending, high_critical, low_pending, low_critical,
    )
    return new_state, events


def check_silence(
    state: SensorAlarmState, now: datetime, period_s: float, *, factor: float = 3.0
) -> tuple[SensorAlarmState, list[AlarmEvent]]:
    """Raise a ``no_data`` alarm when nothing arrived for ``factor * period_s`` seconds."""
    if state.no_data is not None and state.no_data.state != "cleared":
        return state, []
    since = state.last_reading_at or state.watch_since
    silent_s = (now - since).total_seconds()
    limit_s = factor * period_s
    if silent_s <= limit_s:
        return state, []
    alarm = Alarm(
        f"{state.sensor_id}:no_data", state.sensor_id, "no_data", "warning", "raised", now,
        None, None, None, silent_s, limit_s,
    )
    return _with_alarm(state, alarm), [AlarmEvent("raised", alarm, now)]


def _with_alarm(state: SensorAlarmState, alarm: Alarm | None, kind: str | None = None) -> SensorAlarmState:
    kind = kind or (alarm.kind if alarm is not None else "")
    return SensorAlarmState(
        state.sensor_id, state.watch_since, state.last_reading_at,
        alarm if kind == "high" else state.high,
        alarm if kind == "low" else state.low,
        alarm if kind == "no_data" else state.no_data,
        state.high_pending_since, state.high_critical_since,
        state.low_pending_since, state.low_critical_since,
    )


def acknowledge(alarm: Alarm, user: str, now: datetime) -> tuple[Alarm, list[AlarmEvent]]:
    """Acknowledge ``alarm`` as ``user``; already acknowledged alarms are left unchanged."""
    if not user or not user.strip():
        raise InvalidAcknowledgement("an acknowledgement needs the user who made it")
    if alarm.acked_at is not None:
        return alarm, []
    state = "cleared" if alarm.state == "cleared" else "acknowledged"
    acked = Alarm(
        alarm.alarm_id, alarm.sensor_id, alarm.kind, alarm.severity, state, alarm.raised_at,
        now, user, alarm.cleared_at, alarm.value, alarm.threshold,
    )
    return acked, [AlarmEvent("acknowledged", acked, now)]


def acknowledge_sensor_alarm(
    state: SensorAlarmState, kind: str, user: str, now: datetime
) -> tuple[SensorAlarmState, list[AlarmEvent]]:
    """Acknowledge the sensor's alarm of ``kind``; a cleared one is closed (removed)."""
    alarm = {"high": state.high, "low": state.low, "no_data": state.no_data}.get(kind)
    if alarm is None:
        raise InvalidAcknowledgement(f"sensor {state.sensor_id} has no {kind!r} alarm")
    acked, events = acknowledge(alarm, user, now)
    return _with_alarm(state, None if acked.state == "cleared" else acked, kind), events
