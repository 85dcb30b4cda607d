"""Who a timed stage waits on, and the words the dispatcher's limit alarm uses for it (pure).

`command.limits` times five stages whatever the ticket's route. What a stage means depends on the
route (`command.routing.RouteKind`) and on whose hands the ticket is in:

==========  ==========================  ==========================  =====================
stage       route ``station``           route ``department``        route ``answer``
==========  ==========================  ==========================  =====================
dispatch    派单 (the center, a crew)    交办 (the center, the unit)  答复 (the agent)
accept      接单 (the crew)              受理 (the unit)              受理 (the unit)
arrive      到场 (the crew; repairs)     到场                         到场
resolve     办结                         办结                         办结
callback    回访 (the center)            回访                         回访
==========  ==========================  ==========================  =====================

Whatever the route, a ticket in a unit's hands (`assigned`, `handling`: the 交办 path, a station's
too) waits on the unit: its acceptance is the unit's 受理 and its resolution the unit's 办理结果反馈
(反馈). A ticket that is not a station's never waits on a crew. A ticket without a stored route is
taken as a station's (tickets saved before routing by type).
"""
from __future__ import annotations

import enum

from command.limits import Level, Stage
from command.routing import RouteKind
from command.ticket_model import UNIT_STATES, State


class Step(str, enum.Enum):
    """The step a timed stage stands for on this ticket, named after the action that ends it."""

    DISPATCH = "dispatch"        # 派单 (the center, to a field crew)
    ASSIGN = "assign"            # 交办 (the center, to the responsible unit)
    ANSWER = "answer"            # 答复 (the agent, on the call)
    ACCEPT = "accept"            # 接单 (the crew)
    UNIT_ACCEPT = "unit_accept"  # 受理 (the unit)
    ARRIVE = "arrive"            # 到场 (the crew)
    RESOLVE = "resolve"          # 办结
    FEEDBACK = "feedback"        # 办理结果反馈 (the unit)
    CALLBACK = "callback"        # 回访 (the center)


# the step's name and, for a step the center owes, what is still missing
STEP_TEXT = {
    Step.DISPATCH: "派单", Step.ASSIGN: "交办", Step.ANSWER: "答复", Step.ACCEPT: "接单",
    Step.UNIT_ACCEPT: "责任单位受理", Step.ARRIVE: "到场", Step.RESOLVE: "办结",
    Step.FEEDBACK: "责任单位反馈", Step.CALLBACK: "回访",
}
STEP_HINT = {Step.ASSIGN: "（中心尚未交办责任单位）", Step.ANSWER: "（坐席尚未答复）"}
LEVEL_TEXT = {Level.WARNING: "即将超时", Level.OVERDUE: "已超时"}


def _route(route: RouteKind | str | None) -> RouteKind:
    return RouteKind.STATION if route is None else RouteKind(route)


def step_of(stage: Stage | str, route: RouteKind | str | None, state: State | str) -> Step:
    """The step `stage` stands for on a ticket of this route in this state (the module's table)."""
    stage, kind, state = Stage(stage), _route(route), State(state)
    with_unit = state in UNIT_STATES
    if stage is Stage.DISPATCH:
        return {RouteKind.STATION: Step.DISPATCH, RouteKind.ANSWER: Step.ANSWER}.get(kind, Step.ASSIGN)
    if stage is Stage.ACCEPT:
        return Step.UNIT_ACCEPT if with_unit or kind is not RouteKind.STATION else Step.ACCEPT
    if stage is Stage.ARRIVE:
        return Step.ARRIVE
    if stage is Stage.RESOLVE:
        return Step.FEEDBACK if with_unit else Step.RESOLVE
    return Step.CALLBACK


def alarm_text(step: Step, level: Level | str) -> str:
    """The limit alarm's words: 交办已超时（中心尚未交办责任单位）, 责任单位受理即将超时, 到场已超时…"""
    return f"{STEP_TEXT[step]}{LEVEL_TEXT[Level(level)]}{STEP_HINT.get(step, '')}"


__all__ = ["Step", "STEP_TEXT", "alarm_text", "step_of"]
