"""督办 (supervision orders): the rules, pure (time is passed in as `now`).

A 督办单 tells a ticket's responsible unit to answer by a deadline. A supervisor issues one by
hand; the rules issue one for a red ticket (红单, `Color.RED`) and for a stage past its limit
(`command.limits`), once per ticket and cause. Issuing again while one is open urges it. The unit
answers; one left unanswered at its deadline escalates to the unit above with a new deadline.
Every step is a ``note`` event on the ticket's timeline that also sets ``ticket.supervised``
(`annotate`); the record itself is kept by `store.supervision`.

========  ========================================  ==========================================
state     when                                      listed by ``GET /api/supervisions?state=``
========  ========================================  ==========================================
open      not answered, not closed                  open (due ones included)
due       open and its deadline has passed          due
answered  the unit answered                         answered
closed    its ticket ended (closed, cancelled,      (only on the ticket)
          merged) before an answer
========  ========================================  ==========================================
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from command.errors import ValidationError
from command.limit_steps import STEP_TEXT, Step, step_of
from command.limits import Level, LimitStatus
from command.tickets import apply
from command.ticket_model import CENTER_TZ, OPEN_STATES, Actor, AuditEvent, Color, Ticket, as_utc

AUTO_DEADLINE = timedelta(hours=24)        # the rules' 督办, and a supervisor's without a deadline
ESCALATION_DEADLINE = timedelta(hours=24)  # the unit above answers within this after an escalation
MAX_DEADLINE = timedelta(days=30)
MESSAGE_MAX = 500
ANSWER_MAX = 2000
LIST_STATES = ("open", "due", "answered")
KIND_TEXT = {"issue": "督办", "urge": "催办", "answer": "督办答复", "escalate": "督办升级", "close": "督办结束"}
CAUSE_TEXT = {"red": "红单（多次来电）", "overdue": "超时"}
ENDED_TEXT = {"closed": "工单已办结", "cancelled": "工单已撤销", "merged": "工单已合并"}
STAGE_TEXT = {"dispatch": "派单", "accept": "接单", "arrive": "到场", "resolve": "办结", "callback": "回访"}


def check_text(value: Any, name: str, max_len: int) -> str:
    """A required, stripped text of at most `max_len` characters; ValidationError naming `name`."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(name, "must be a non-empty string")
    value = value.strip()
    if len(value) > max_len:
        raise ValidationError(name, f"longer than {max_len} characters")
    return value


def check_deadline(value: Any, now: datetime) -> datetime:
    """The deadline of a supervisor's 督办: an ISO-8601 time with its offset, after `now` and at
    most `MAX_DEADLINE` ahead; None gives `now + AUTO_DEADLINE`."""
    now = as_utc(now, "now")
    if value is None:
        return now + AUTO_DEADLINE
    if not isinstance(value, str):
        raise ValidationError("deadline", "must be an ISO-8601 time with its offset")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("deadline", f"not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValidationError("deadline", "must carry its UTC offset (Z or +08:00)")
    parsed = as_utc(parsed, "deadline")
    if parsed <= now:
        raise ValidationError("deadline", "must be in the future")
    if parsed > now + MAX_DEADLINE:
        raise ValidationError("deadline", f"at most {MAX_DEADLINE.days} days ahead")
    return parsed


def state_of(row: Mapping[str, Any], now: datetime) -> str:
    """open, due, answered or closed (see the module's table); times in `row` are epoch seconds."""
    if row.get("answered_at") is not None:
        return "answered"
    if row.get("closed_at") is not None:
        return "closed"
    return "due" if row["deadline"] <= as_utc(now, "now").timestamp() else "open"


# the steps the center itself owes (交办, 答复 on the call, 回访): late, they are not the unit's to
# answer, so the rules never send a 督办 to the unit for them
CENTER_STEPS = frozenset({Step.ASSIGN, Step.ANSWER, Step.CALLBACK})


def cause_text(cause: str) -> str:
    """A rule's cause in words: red → 红单（多次来电）, overdue:arrive → 到场超时, overdue:feedback →
    责任单位反馈超时 (the step's name, `command.limit_steps`)."""
    kind, _, step = cause.partition(":")
    if kind == "overdue":
        name = STEP_TEXT[Step(step)] if step in Step._value2member_map_ else STAGE_TEXT.get(step, step)
        return f"{name}{CAUSE_TEXT['overdue']}"
    return CAUSE_TEXT.get(kind, cause)


def causes_for(ticket: Ticket, overdue_stages: Iterable[str] = (),
               statuses: Sequence[LimitStatus] = (), route: str | None = None) -> list[str]:
    """The rules' causes for a 督办 on an open ticket: ``red`` for a red ticket, ``overdue:<step>``
    for each stage past its limit (given by name, or as `command.limits` statuses), named by the
    step it stands for on a ticket of this `route` (`command.limit_steps.step_of`), except the
    steps the center owes itself (`CENTER_STEPS`)."""
    if ticket.state not in OPEN_STATES:
        return []
    found = ["red"] if ticket.color is Color.RED else []
    stages = list(overdue_stages) + [s.stage.value for s in statuses if not s.done and s.level is Level.OVERDUE]
    steps = [step_of(stage, route, ticket.state) for stage in dict.fromkeys(stages)]
    found += [f"overdue:{step.value}" for step in dict.fromkeys(steps) if step not in CENTER_STEPS]
    return found


def escalation_target(chain: Sequence[Mapping[str, Any]]) -> str | None:
    """The unit a due 督办 escalates to: the one right above its holder (`chain` is the holder's
    chain up to the center, nearest first, as `UnitStore.chain` gives it), never the hotline
    center itself (level 1); None when there is none (it stays due)."""
    if len(chain) < 2 or int(chain[1]["level"]) <= 1:
        return None
    return str(chain[1]["unit_id"])


def escalation_targets(units: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """For every unit of the tree (rows with unit_id, parent_id, level) that has one, the unit its
    due 督办 escalate to (`escalation_target` over its chain)."""
    by_id = {str(u["unit_id"]): u for u in units}
    out: dict[str, str] = {}
    for unit_id in by_id:
        chain, seen = [], set()
        node = by_id.get(unit_id)
        while node is not None and node["unit_id"] not in seen and len(chain) < 3:
            seen.add(node["unit_id"])
            chain.append(node)
            node = by_id.get(node["parent_id"]) if node.get("parent_id") else None
        target = escalation_target(chain)
        if target is not None:
            out[unit_id] = target
    return out


def note_for(kind: str, *, message: str = "", deadline: datetime | None = None, urgings: int = 0,
             unit_id: str | None = None, causes: Sequence[str] = ()) -> str:
    """The timeline's text of one step (Chinese, times in the center's zone: the timeline is read by
    the center's staff)."""
    due = "" if deadline is None else f"（期限 {deadline.astimezone(CENTER_TZ).strftime('%Y-%m-%d %H:%M')}）"
    why = "；".join(cause_text(c) for c in causes)
    why = f"［{why}］" if why else ""
    if kind == "issue":
        return f"督办{why}：{message}{due}"
    if kind == "urge":
        return f"催办（第 {urgings} 次）{why}：{message}{due}"
    if kind == "answer":
        return f"督办答复：{message}"
    if kind == "escalate":
        return f"督办逾期未复，升级至 {unit_id}{due}"
    return f"督办结束：{message}"


def annotate(ticket: Ticket, kind: str, *, actor: Actor, now: datetime, note: str,
             data: Mapping[str, Any]) -> tuple[Ticket, AuditEvent]:
    """The ticket with one 督办 step on its timeline: a ``note`` event whose data carries
    ``supervision`` (the step: issue, urge, answer, escalate, close) and `data`; the ticket's
    ``supervised`` flag is set."""
    if kind not in KIND_TEXT:
        raise ValidationError("kind", f"unknown supervision step {kind!r}")
    new, event = apply(ticket, "note", actor=actor, now=now, note=note[:2000],
                       data={"supervision": kind, **data})
    return dataclasses.replace(new, supervised=True), event


def deadline_after(now: datetime, delta: timedelta) -> datetime:
    """`now` + `delta`, in UTC."""
    return as_utc(now, "now") + delta
