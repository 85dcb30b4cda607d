"""What a timed stage waits on, and the dispatcher's limit alarm's words (command.limit_steps):
a table over route and state, then the dispatch timers' alarms in-process (the river city of
tests/river.py, the `dispatch_api` fixture): a complaint waiting for 交办 is alarmed as 交办, never as a crew's
派单 / 接单, and raises no crew alert; a repair's alarm still speaks of 派单."""
from __future__ import annotations

from datetime import timedelta

import pytest

from command.limit_steps import Step, alarm_text, step_of
from command.limits import Level, Stage
from tests.conftest import T0

CREW_WORDS = ("班组", "派单", "接单", "到场")


@pytest.mark.parametrize("stage, route, state, step", [
    # a station's ticket: the center dispatches a crew, the crew accepts, arrives, resolves
    ("dispatch", "station", "new", Step.DISPATCH),
    ("dispatch", "station", "returned", Step.DISPATCH),
    ("accept", "station", "dispatched", Step.ACCEPT),
    ("arrive", "station", "en_route", Step.ARRIVE),
    ("resolve", "station", "on_site", Step.RESOLVE),
    ("callback", "station", "resolved", Step.CALLBACK),
    # a station's ticket sent (交办) to the station itself: the unit accepts and feeds back
    ("accept", "station", "assigned", Step.UNIT_ACCEPT),
    ("resolve", "station", "handling", Step.FEEDBACK),
    # a department's ticket: 交办 by the center, then the unit's 受理 and 反馈; never a crew
    ("dispatch", "department", "new", Step.ASSIGN),
    ("dispatch", "department", "reviewed", Step.ASSIGN),
    ("dispatch", "department", "returned", Step.ASSIGN),  # a return approved: the center sends it again
    ("resolve", "department", "new", Step.RESOLVE),  # not yet with a unit: nobody's 反馈 is late
    ("accept", "department", "assigned", Step.UNIT_ACCEPT),
    ("resolve", "department", "assigned", Step.FEEDBACK),
    ("resolve", "department", "handling", Step.FEEDBACK),
    ("callback", "department", "resolved", Step.CALLBACK),
    # a consultation waits for the agent's answer
    ("dispatch", "answer", "new", Step.ANSWER),
    ("resolve", "answer", "new", Step.RESOLVE),
    # a ticket saved before routing by type is a station's
    ("dispatch", None, "new", Step.DISPATCH),
])
def test_the_step_a_stage_stands_for(stage, route, state, step):
    assert step_of(Stage(stage), route, state) is step


@pytest.mark.parametrize("step, level, text", [
    (Step.ASSIGN, Level.OVERDUE, "交办已超时（中心尚未交办责任单位）"),
    (Step.ASSIGN, Level.WARNING, "交办即将超时（中心尚未交办责任单位）"),
    (Step.UNIT_ACCEPT, "overdue", "责任单位受理已超时"),
    (Step.FEEDBACK, "warning", "责任单位反馈即将超时"),
    (Step.ANSWER, "overdue", "答复已超时（坐席尚未答复）"),
    (Step.DISPATCH, "overdue", "派单已超时"),
    (Step.ACCEPT, "warning", "接单即将超时"),
    (Step.ARRIVE, "overdue", "到场已超时"),
])
def test_alarm_words(step, level, text):
    assert alarm_text(step, level) == text


@pytest.mark.parametrize("route", ["department", "answer"])
@pytest.mark.parametrize("state", ["new", "assigned", "handling", "returned"])
@pytest.mark.parametrize("stage", [s for s in Stage if s is not Stage.ARRIVE])  # arrival: repairs (station) only
def test_a_ticket_not_for_a_station_never_speaks_of_crews(stage, route, state):
    for level in (Level.WARNING, Level.OVERDUE):
        text = alarm_text(step_of(stage, route, state), level)
        assert not any(word in text for word in CREW_WORDS), text


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_timers_alarm_a_complaint_waiting_for_assignment_as_jiaoban_and_a_repair_as_dispatch(dispatch_api):
    complaint = await dispatch_api.create(type="complaint", urgency="normal", description="营业厅服务态度差")
    repair = await dispatch_api.create(urgency="normal", caller_phone="13900002222")  # a normal repair: 派单 within 30 min
    assert (await dispatch_api.ticket(complaint))["route"] == "department"

    dispatch_api.clock.now = T0 + timedelta(minutes=31)
    await dispatch_api.parts.timers.tick(dispatch_api.clock.now)
    [late] = await dispatch_api.alarms(f"{repair}|dispatch")
    assert (late["level"], late["step"], late["route"], late["text"]) == ("overdue", "dispatch", "station", "派单已超时")
    assert not await dispatch_api.alarms(f"{complaint}|dispatch")  # 2 hours to 交办: not yet due

    dispatch_api.clock.now = T0 + timedelta(minutes=100)  # past 80% of the 2 hours
    await dispatch_api.parts.timers.tick(dispatch_api.clock.now)
    [soon] = await dispatch_api.alarms(f"{complaint}|dispatch")
    assert (soon["level"], soon["step"], soon["text"]) == ("warning", "assign", "交办即将超时（中心尚未交办责任单位）")

    dispatch_api.clock.now = T0 + timedelta(minutes=121)
    await dispatch_api.parts.timers.tick(dispatch_api.clock.now)
    [late] = await dispatch_api.alarms(f"{complaint}|dispatch")
    assert (late["level"], late["step"], late["route"]) == ("overdue", "assign", "department")
    assert late["text"] == "交办已超时（中心尚未交办责任单位）"
    code, body = await dispatch_api.call("GET", "/api/ticket-alarms")
    mine = [a for a in body["alarms"] if a["number"] == complaint]
    assert mine and all(a["kind"] == "limit" for a in mine)  # no crew alert (declined, no_candidate, ...)
    assert not any(word in a["text"] for a in mine for word in CREW_WORDS)
