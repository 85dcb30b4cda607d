"""Alarm rules as pure tables with time passed in."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ingest.alarms import (
    Alarm,
    AlarmEvent,
    InvalidAcknowledgement,
    InvalidThresholds,
    SensorAlarmState,
    Thresholds,
    acknowledge,
    acknowledge_sensor_alarm,
    active_alarms,
    check_silence,
    evaluate,
)

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
# Water pressure in MPa: low 0.15/0.10, high 0.60/0.80, deadband 0.02.
PRESSURE = Thresholds(
    low_critical=0.10, low_warning=0.15, high_warning=0.60, high_critical=0.80, deadband=0.02
)
PRESSURE_HELD = Thresholds(
    low_critical=0.10, low_warning=0.15, high_warning=0.60, high_critical=0.80,
    deadband=0.02, min_duration_s=10,
)
HIGH_CRITICAL_ONLY = Thresholds(high_critical=90.0, deadband=5.0)


def at(seconds: float) -> datetime:
    """A time ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def run(thresholds: Thresholds, series: list[tuple[float, float]]) -> tuple[SensorAlarmState, list[tuple]]:
    """Feed (seconds, value) readings; return the final state and (s, type, kind, severity) events."""
    state = SensorAlarmState.new("PS-017", T0)
    seen: list[tuple] = []
    for seconds, value in series:
        state, events = evaluate(state, value, at(seconds), thresholds)
        seen.extend(
            ((e.at - T0).total_seconds(), e.type, e.alarm.kind, e.alarm.severity) for e in events
        )
    return state, seen


@pytest.mark.parametrize(
    ("thresholds", "series", "expected"),
    [
        # Inside the limits: nothing.
        (PRESSURE, [(0, 0.3), (1, 0.6), (2, 0.15)], []),
        # Immediate raise (no duration) and clear once back below 0.60 - 0.02.
        (PRESSURE, [(0, 0.3), (1, 0.65), (2, 0.59), (3, 0.58)],
         [(1, "raised", "high", "warning"), (3, "cleared", "high", "warning")]),
        # Hysteresis: oscillating around 0.60 within the deadband raises once, never clears.
        (PRESSURE, [(0, 0.61), (1, 0.59), (2, 0.605), (3, 0.595), (4, 0.61), (5, 0.585)],
         [(0, "raised", "high", "warning")]),
        # ... and clears only on a return inside the deadband.
        (PRESSURE, [(0, 0.61), (1, 0.59), (2, 0.61), (3, 0.579)],
         [(0, "raised", "high", "warning"), (3, "cleared", "high", "warning")]),
        # Escalation warning -> critical within one alarm, then one clear.
        (PRESSURE, [(0, 0.65), (1, 0.85), (2, 0.9), (3, 0.7), (4, 0.5)],
         [(0, "raised", "high", "warning"), (1, "escalated", "high", "critical"),
          (4, "cleared", "high", "critical")]),
        # Straight to critical.
        (PRESSURE, [(0, 0.95), (1, 0.3)],
         [(0, "raised", "high", "critical"), (1, "cleared", "high", "critical")]),
        # Low side mirrors the high side: clears at >= 0.15 + 0.02.
        (PRESSURE, [(0, 0.12), (1, 0.05), (2, 0.16), (3, 0.17)],
         [(0, "raised", "low", "warning"), (1, "escalated", "low", "critical"),
          (3, "cleared", "low", "critical")]),
        # A jump from high to low clears one and raises the other.
        (PRESSURE, [(0, 0.7), (1, 0.12)],
         [(0, "raised", "high", "warning"), (1, "cleared", "high", "warning"),
          (1, "raised", "low", "warning")]),
        # Only a critical limit: the deadband applies to it.
        (HIGH_CRITICAL_ONLY, [(0, 91.0), (1, 86.0), (2, 85.0)],
         [(0, "raised", "high", "critical"), (2, "cleared", "high", "critical")]),
        # Minimum duration: a short spike raises nothing.
        (PRESSURE_HELD, [(0, 0.3), (1, 0.7), (5, 0.9), (9, 0.7), (10, 0.3), (11, 0.7), (20, 0.7)], []),
        # Held for 10 s: raised at the first reading that shows it held.
        (PRESSURE_HELD, [(0, 0.7), (5, 0.7), (10, 0.7), (11, 0.7)],
         [(10, "raised", "high", "warning")]),
        # Critical for less than 10 s while the warning held: raise warning, escalate later.
        (PRESSURE_HELD, [(0, 0.7), (5, 0.85), (10, 0.85), (14, 0.85), (15, 0.85)],
         [(10, "raised", "high", "warning"), (15, "escalated", "high", "critical")]),
        # A brief critical spike inside an active warning does not escalate.
        (PRESSURE_HELD, [(0, 0.7), (10, 0.7), (12, 0.9), (13, 0.7), (30, 0.7)],
         [(10, "raised", "high", "warning")]),
        # Critical held from the start: raised critical directly.
        (PRESSURE_HELD, [(0, 0.9), (10, 0.9)], [(10, "raised", "high", "critical")]),
        # Clearing has no delay.
        (PRESSURE_HELD, [(0, 0.7), (10, 0.7), (11, 0.5)],
         [(10, "raised", "high", "warning"), (11, "cleared", "high", "warning")]),
    ],
)
def test_value_alarm_rules(thresholds: Thresholds, series: list[tuple[float, float]], expected: list[tuple]) -> None:
    _, events = run(thresholds, series)
    assert events == expected


def test_raised_alarm_snapshot() -> None:
    state, _ = run(PRESSURE, [(0, 0.3), (7, 0.83)])
    assert state.high == Alarm(
        alarm_id="PS-017:high", sensor_id="PS-017", kind="high", severity="critical",
        state="raised", raised_at=at(7), acked_at=None, acked_by=None, cleared_at=None,
        value=0.83, threshold=0.80,
    )
    low_state, _ = run(PRESSURE, [(3, 0.12)])
    assert (low_state.low.alarm_id, low_state.low.threshold, low_state.low.value) == ("PS-017:low", 0.15, 0.12)


def test_acknowledge_then_clear_closes_the_alarm() -> None:
    state, _ = run(PRESSURE, [(0, 0.7)])
    state, events = acknowledge_sensor_alarm(state, "high", "operator 12", at(30))
    assert [e.type for e in events] == ["acknowledged"]
    acked = state.high
    assert (acked.state, acked.acked_at, acked.acked_by, acked.active) == ("acknowledged", at(30), "operator 12", True)
    # Acknowledged stays active while the condition holds.
    state, events = evaluate(state, 0.7, at(40), PRESSURE)
    assert events == [] and state.high.state == "acknowledged"
    state, events = evaluate(state, 0.3, at(60), PRESSURE)
    assert events == [
        AlarmEvent("cleared", Alarm("PS-017:high", "PS-017", "high", "warning", "cleared", at(0),
                                    at(30), "operator 12", at(60), 0.7, 0.6), at(60))
    ]
    assert state.high is None and active_alarms(state) == []


def test_cleared_unacknowledged_alarm_stays_until_acknowledged() -> None:
    state, _ = run(PRESSURE, [(0, 0.7), (5, 0.3)])
    assert state.high.state == "cleared" and state.high.needs_ack and not state.high.active
    assert [a.alarm_id for a in active_alarms(state)] == ["PS-017:high"]
    state, events = acknowledge_sensor_alarm(state, "high", "operator 12", at(20))
    assert events[0].alarm.state == "cleared" and events[0].alarm.cleared_at == at(5)
    assert events[0].alarm.acked_at == at(20)
    assert state.high is None


def test_new_condition_replaces_a_cleared_unacknowledged_alarm() -> None:
    state, events = run(PRESSURE, [(0, 0.7), (5, 0.3), (9, 0.75)])
    assert [e[1] for e in events] == ["raised", "cleared", "raised"]
    assert (state.high.state, state.high.raised_at) == ("raised", at(9))


def test_escalation_asks_for_a_new_acknowledgement() -> None:
    state, _ = run(PRESSURE, [(0, 0.7)])
    state, _ = acknowledge_sensor_alarm(state, "high", "op", at(1))
    state, events = evaluate(state, 0.9, at(2), PRESSURE)
    assert [e.type for e in events] == ["escalated"]
    assert (state.high.state, state.high.acked_at, state.high.severity, state.high.raised_at) == (
        "raised", None, "critical", at(0)
    )


@pytest.mark.parametrize(
    ("alarm_state", "acked_at", "expected_state", "events"),
    [
        ("raised", None, "acknowledged", 1),
        ("cleared", None, "cleared", 1),
        ("acknowledged", T0, "acknowledged", 0),  # idempotent
    ],
)
def test_acknowledge(alarm_state: str, acked_at: datetime | None, expected_state: str, events: int) -> None:
    alarm = Alarm("S:high", "S", "high", "warning", alarm_state, T0, acked_at, "a" if acked_at else None,
                  None, 1.0, 0.5)
    acked, out = acknowledge(alarm, "operator 7", at(9))
    assert acked.state == expected_state
    assert len(out) == events
    assert acked.acked_at == (acked_at or at(9))


@pytest.mark.parametrize("user", ["", "   "])
def test_acknowledge_needs_a_user(user: str) -> None:
    alarm = Alarm("S:high", "S", "high", "warning", "raised", T0, None, None, None, 1.0, 0.5)
    with pytest.raises(InvalidAcknowledgement):
        acknowledge(alarm, user, at(1))


def test_acknowledge_missing_alarm() -> None:
    with pytest.raises(InvalidAcknowledgement):
        acknowledge_sensor_alarm(SensorAlarmState.new("S", T0), "low", "op", at(1))


@pytest.mark.parametrize(
    ("readings", "check_at", "raised"),
    [
        ([0], 29, False),     # period 10 s: silent 29 s is fine
        ([0], 30, False),     # exactly 3x period is still fine
        ([0], 31, True),
        ([0, 20], 45, False),  # counted from the last reading
        ([], 31, True),       # never reported: counted from when it was first watched
        ([], 20, False),
    ],
)
def test_no_data_raise(readings: list[float], check_at: float, raised: bool) -> None:
    state = SensorAlarmState.new("FL-3", T0)
    for seconds in readings:
        state, _ = evaluate(state, 5.0, at(seconds), PRESSURE)
    state, events = check_silence(state, at(check_at), period_s=10)
    assert bool(events) == raised
    if raised:
        alarm = events[0].alarm
        assert (events[0].type, alarm.alarm_id, alarm.kind, alarm.threshold) == ("raised", "FL-3:no_data", "no_data", 30)
        assert alarm.value == check_at - (readings[-1] if readings else 0)


def test_no_data_raises_once_and_the_next_reading_clears_it() -> None:
    state = SensorAlarmState.new("FL-3", T0)
    state, _ = evaluate(state, 0.3, at(0), PRESSURE)
    state, first = check_silence(state, at(40), period_s=10)
    state, again = check_silence(state, at(80), period_s=10)
    assert [e.type for e in first] == ["raised"] and again == []
    state, events = evaluate(state, 0.3, at(90), PRESSURE)
    assert [(e.type, e.alarm.kind, e.alarm.cleared_at) for e in events] == [("cleared", "no_data", at(90))]
    # Distinct from value alarms: a value alarm on the same reading does not touch it.
    assert state.high is None and state.no_data.state == "cleared"
    state, _ = acknowledge_sensor_alarm(state, "no_data", "op", at(95))
    assert state.no_data is None


def test_no_data_and_value_alarm_are_independent() -> None:
    state, _ = run(PRESSURE, [(0, 0.7)])
    state, events = check_silence(state, at(100), period_s=10)
    assert {a.kind for a in active_alarms(state)} == {"high", "no_data"}
    state, events = evaluate(state, 0.7, at(101), PRESSURE)
    assert [(e.type, e.alarm.kind) for e in events] == [("cleared", "no_data")]
    assert state.high.state == "raised"


def test_out_of_order_reading_does_not_move_last_reading_back() -> None:
    state, _ = run(PRESSURE, [(10, 0.3), (5, 0.3)])
    assert state.last_reading_at == at(10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"low_warning": 0.5, "high_warning": 0.4},
        {"high_warning": 0.9, "high_critical": 0.8},
        {"low_critical": 0.2, "low_warning": 0.1},
        {"low_warning": 0.5, "high_warning": 0.5},
        {"high_warning": 1.0, "deadband": -0.1},
        {"high_warning": 1.0, "min_duration_s": -1},
        {"high_warning": float("nan")},
    ],
)
def test_invalid_thresholds(kwargs: dict) -> None:
    with pytest.raises(InvalidThresholds):
        Thresholds(**kwargs)


def test_quiet_hot_path_returns_no_events_and_keeps_no_alarm() -> None:
    state = SensorAlarmState.new("PS-017", T0)
    for second in range(100):
        state, events = evaluate(state, 0.3 + second * 0.001, at(second), PRESSURE_HELD)
        assert events == []
    assert state == SensorAlarmState("PS-017", T0, at(99))
