"""Automatic dispatch (派单): candidates, ranking by road travel time, policy, joint assignment.

Pure: road travel times and distances come in as plain numbers (the GIS router computes them one
to many for the eligible crews only), and time is passed in.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from command.ticket_model import URGENCY_RANK, Category, State, Ticket, TicketType, Urgency, as_utc

DEFAULT_STALE_AFTER_S = 30.0
DEFAULT_STALE_PENALTY_S = 120.0
DEFAULT_ACCEPT_TIMEOUT_S = 180.0
DEFAULT_URGENCY_WEIGHTS: Mapping[Urgency, float] = {Urgency.EMERGENCY: 4.0, Urgency.URGENT: 2.0, Urgency.NORMAL: 1.0}


@dataclass(frozen=True, slots=True)
class Crew:
    """A dispatch candidate as the live state knows it (position fix age in seconds, None if no fix)."""

    crew_id: str
    skills: frozenset[Category]
    on_shift: bool
    busy_with_urgency: Urgency | None
    workload: int
    fix_age_s: float | None
    lon: float | None
    lat: float | None
    shift_ends_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible crew, with whether its fix is stale and whether it would leave less urgent work."""

    crew: Crew
    stale: bool
    preempts: bool


@dataclass(frozen=True, slots=True)
class Skipped:
    """A crew left out, with a stable reason code and a text for the dispatcher."""

    crew_id: str
    reason: str
    text: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One ranked crew with its ETA and the explanation shown to the dispatcher."""

    rank: int
    crew_id: str
    eta_s: float
    score_s: float
    distance_m: float | None
    workload: int
    stale: bool
    penalty_s: float
    preempts: bool
    explanation: str


@dataclass(frozen=True)
class Ranking:
    """The full answer for one ticket: policy, top recommendations and every skipped crew with why."""

    ticket_number: str
    policy: Literal["auto", "recommend"]
    recommendations: tuple[Recommendation, ...]
    skipped: tuple[Skipped, ...]


def eligible(crews: Iterable[Crew], ticket: Ticket, now: datetime, *,
             stale_after_s: float = DEFAULT_STALE_AFTER_S,
             exclude: Collection[str] = ()) -> tuple[list[Candidate], list[Skipped]]:
    """Split crews into candidates and skipped ones (with reasons) for this ticket.

    A candidate is on shift (and its shift has not ended at `now`), has the skill for the ticket's
    category, is not busy — or, for an emergency, busy only with less urgent work — has a position
    fix (a fix older than `stale_after_s` is used with a penalty), and has not declined the ticket
    (`ticket.declined_by`) nor is in `exclude`.
    """
    now = as_utc(now, "now")
    refused = set(ticket.declined_by) | set(exclude)
    rank = URGENCY_RANK[ticket.urgency]
    emergency = ticket.urgency is Urgency.EMERGENCY
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    for crew in crews:
        if crew.crew_id in refused:
            skipped.append(Skipped(crew.crew_id, "declined", "已拒单或超时未接单"))
        elif not crew.on_shift or (crew.shift_ends_at is not None and crew.shift_ends_at <= now):
            skipped.append(Skipped(crew.crew_id, "off_shift", "不在班"))
        elif ticket.category not in crew.skills:
            skipped.append(Skipped(crew.crew_id, "no_skill", f"无{_CATEGORY_TEXT[ticket.category]}抢修技能"))
        elif crew.busy_with_urgency is not None and not (emergency and URGENCY_RANK[crew.busy_with_urgency] > rank):
            skipped.append(Skipped(crew.crew_id, "busy", f"正在处理{_URGENCY_TEXT[crew.busy_with_urgency]}工单"))
        elif crew.fix_age_s is None or crew.lon is None or crew.lat is None:
            skipped.append(Skipped(crew.crew_id, "no_fix", "无定位"))
        else:
            candidates.append(Candidate(crew, crew.fix_age_s > stale_after_s, crew.busy_with_urgency is not None))
    return candidates, skipped


_CATEGORY_TEXT = {Category.WATER: "供水", Category.POWER: "供电", Category.GAS: "燃气", Category.HEATING: "供热",
                  Category.DRAINAGE: "排水", Category.SANITATION: "环卫", Category.OTHER: "其他"}
_URGENCY_TEXT = {Urgency.EMERGENCY: "紧急", Urgency.URGENT: "加急", Urgency.NORMAL: "一般"}


def _explain(eta_s: float, distance_m: float | None, workload: int, candidate: Candidate, penalty_s: float) -> str:
    parts = [f"预计 {eta_s / 60:.1f} 分钟到达"]
    if distance_m is not None:
        parts[0] += f"（道路 {distance_m / 1000:.1f} 公里）"
    parts.append(f"在办工单 {workload} 张")
    if candidate.stale:
        parts.append(f"定位已 {candidate.crew.fix_age_s:.0f} 秒未更新，按 {penalty_s:.0f} 秒加罚")
    if candidate.preempts:
        parts.append(f"将中断{_URGENCY_TEXT[candidate.crew.busy_with_urgency or Urgency.NORMAL]}工单")
    return "；".join(parts)


def _reachable(eta: float | None) -> bool:
    return eta is not None and math.isfinite(eta) and eta >= 0


def rank(ticket: Ticket, candidates: Sequence[Candidate], etas_s: Sequence[float | None],
         distances_m: Sequence[float | None], *, stale_penalty_s: float = DEFAULT_STALE_PENALTY_S,
         top: int = 3) -> list[Recommendation]:
    """The best `top` candidates by road travel time (+ penalty for a stale fix), ties by workload.

    `etas_s[i]` and `distances_m[i]` belong to `candidates[i]`; an ETA of None, NaN or infinity
    means unreachable and drops the candidate (see `unreachable`). At equal score a crew that does
    not have to leave other work goes first, then the lower workload, then the crew id.
    """
    if not len(candidates) == len(etas_s) == len(distances_m):
        raise ValueError("candidates, etas_s and distances_m must have the same length")
    # Few allocations on purpose (2,000 crews per call): floats first, full keys only for the best.
    scores = [math.inf] * len(candidates)
    for i, (candidate, eta) in enumerate(zip(candidates, etas_s)):
        if _reachable(eta):
            scores[i] = float(eta) + (stale_penalty_s if candidate.stale else 0.0)
    finite = [v for v in scores if v != math.inf]
    if not finite or top <= 0:
        return []
    threshold = heapq.nsmallest(top, finite)[-1]
    best = sorted((i for i, v in enumerate(scores) if v <= threshold),
                  key=lambda i: (scores[i], candidates[i].preempts, candidates[i].crew.workload,
                                 candidates[i].crew.crew_id))[:top]
    out = []
    for position, i in enumerate(best, start=1):
        candidate, eta, distance = candidates[i], float(etas_s[i]), distances_m[i]  # type: ignore[arg-type]
        penalty = stale_penalty_s if candidate.stale else 0.0
        out.append(Recommendation(position, candidate.crew.crew_id, eta, scores[i], distance, candidate.crew.workload,
                                  candidate.stale, penalty, candidate.preempts,
                                  _explain(eta, distance, candidate.crew.workload, candidate, penalty)))
    return out


def unreachable(candidates: Sequence[Candidate], etas_s: Sequence[float | None]) -> list[Skipped]:
    """Candidates the router found no road to, as skipped crews."""
    return [Skipped(c.crew.crew_id, "unreachable", "道路不可达")
            for c, eta in zip(candidates, etas_s) if not _reachable(eta)]


@dataclass(frozen=True)
class DispatchPolicy:
    """Which tickets are dispatched automatically: (category or None for any, type, urgency) triples."""

    auto: frozenset[tuple[Category | None, TicketType, Urgency]] = frozenset(
        {(None, TicketType.REPAIR, Urgency.EMERGENCY)})
    top: int = 3
    accept_timeout_s: float = DEFAULT_ACCEPT_TIMEOUT_S


DEFAULT_DISPATCH_POLICY = DispatchPolicy()


def policy(ticket: Ticket, config: DispatchPolicy = DEFAULT_DISPATCH_POLICY) -> Literal["auto", "recommend"]:
    """'auto' (assign the best crew at once) or 'recommend' (top N for a dispatcher to confirm)."""
    for category, ticket_type, urgency in config.auto:
        if ((category is None or category is ticket.category)
                and ticket_type is ticket.type and urgency is ticket.urgency):
            return "auto"
    return "recommend"


def recommend(ticket: Ticket, candidates: Sequence[Candidate], skipped: Sequence[Skipped],
              etas_s: Sequence[float | None], distances_m: Sequence[float | None], *,
              stale_penalty_s: float = DEFAULT_STALE_PENALTY_S,
              config: DispatchPolicy = DEFAULT_DISPATCH_POLICY) -> Ranking:
    """Everything the dispatcher sees for one ticket: policy, top recommendations, all skipped with reasons."""
    top = rank(ticket, candidates, etas_s, distances_m, stale_penalty_s=stale_penalty_s, top=config.top)
    return Ranking(ticket.number, policy(ticket, config), tuple(top),
                   tuple(skipped) + tuple(unreachable(candidates, etas_s)))


def acceptance_timed_out(ticket: Ticket, now: datetime, *, timeout_s: float = DEFAULT_ACCEPT_TIMEOUT_S) -> bool:
    """Whether a dispatched ticket has waited at least `timeout_s` for its crew to accept."""
    if ticket.state is not State.DISPATCHED or ticket.dispatched_at is None:
        return False
    return (as_utc(now, "now") - ticket.dispatched_at).total_seconds() >= timeout_s


def next_candidate(ranked: Sequence[Recommendation], *, tried: Collection[str]) -> Recommendation | None:
    """The best recommendation not yet tried (declined, timed out or currently assigned), or None."""
    for recommendation in ranked:
        if recommendation.crew_id not in tried:
            return recommendation
    return None


# ---------------------------------------------------------------- joint assignment

def _cost_matrix(tickets: Sequence[Ticket], eta_matrix_s: Sequence[Sequence[float | None]],
                 weights: Mapping[Urgency, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eta = np.array([[np.inf if not _reachable(v) else float(v) for v in row] for row in eta_matrix_s],
                   dtype=float).reshape(len(tickets), -1)
    w = np.array([float(weights[t.urgency]) for t in tickets])
    if len(w) and not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError("urgency weights must be positive numbers")
    reachable = np.isfinite(eta)
    return eta, w, reachable


def greedy_assignment(tickets: Sequence[Ticket], crew_ids: Sequence[str],
                      eta_matrix_s: Sequence[Sequence[float | None]],
                      weights: Mapping[Urgency, float] = DEFAULT_URGENCY_WEIGHTS) -> dict[str, str]:
    """One by one, most urgent (heaviest) first, then in input order: each ticket takes its nearest free crew."""
    eta, w, reachable = _cost_matrix(tickets, eta_matrix_s, weights)
    order = sorted(range(len(tickets)), key=lambda i: -w[i])
    free = set(range(len(crew_ids)))
    out: dict[str, str] = {}
    for i in order:
        options = [j for j in free if reachable[i, j]]
        if options:
            j = min(options, key=lambda j: (eta[i, j], j))
            free.discard(j)
            out[tickets[i].number] = crew_ids[j]
    return out


def weighted_total(tickets: Sequence[Ticket], crew_ids: Sequence[str], eta_matrix_s: Sequence[Sequence[float | None]],
                   assignment: Mapping[str, str], weights: Mapping[Urgency, float] = DEFAULT_URGENCY_WEIGHTS) -> float:
    """Sum of urgency weight × ETA over the assigned pairs."""
    eta, w, _ = _cost_matrix(tickets, eta_matrix_s, weights)
    column = {crew_id: j for j, crew_id in enumerate(crew_ids)}
    return float(sum(w[i] * eta[i, column[assignment[t.number]]]
                     for i, t in enumerate(tickets) if t.number in assignment))


def assign_jointly(tickets: Sequence[Ticket], crews: Sequence[Crew | str],
                   eta_matrix_s: Sequence[Sequence[float | None]],
                   weights: Mapping[Urgency, float] = DEFAULT_URGENCY_WEIGHTS) -> tuple[dict[str, str], float, float]:
    """Assign several tickets at once to minimise the total urgency-weighted ETA.

    `eta_matrix_s[i][j]` is the road ETA of crew j to ticket i; None, NaN or infinity means
    unreachable or not eligible (the caller applies `eligible` and stale penalties). Each crew takes
    at most one ticket. With more tickets than crews, the weight of tickets left unassigned is
    minimised first (an emergency is never dropped for a normal ticket), then the weighted ETA.
    Returns (assignment ticket number → crew id, its total weighted ETA, the greedy baseline's
    total weighted ETA) — the difference is the gain shown to the dispatcher.
    """
    crew_ids = [c if isinstance(c, str) else c.crew_id for c in crews]
    if len(eta_matrix_s) != len(tickets) or any(len(row) != len(crew_ids) for row in eta_matrix_s):
        raise ValueError("eta_matrix_s must have one row per ticket and one column per crew")
    greedy = greedy_assignment(tickets, crew_ids, eta_matrix_s, weights)
    greedy_total = weighted_total(tickets, crew_ids, eta_matrix_s, greedy, weights)
    if not tickets or not crew_ids:
        return {}, 0.0, greedy_total
    eta, w, reachable = _cost_matrix(tickets, eta_matrix_s, weights)
    finite_max = float(eta[reachable].max()) if reachable.any() else 1.0
    # Per unit of weight, leaving a ticket unassigned costs more than any change in the ETA sum.
    drop_cost = 2.0 * (finite_max + 1.0) * len(tickets) * float(w.max() / w.min())
    forbid = drop_cost * float(w.max()) * 10.0  # never chosen: a dummy column is always cheaper
    cost = np.where(reachable, eta * w[:, None], forbid)
    dummy = np.full((len(tickets), len(tickets)), forbid)
    np.fill_diagonal(dummy, w * drop_cost)  # ticket i may stay unassigned through its own dummy
    rows, cols = linear_sum_assignment(np.hstack([cost, dummy]))
    assignment = {tickets[i].number: crew_ids[j] for i, j in zip(rows, cols)
                  if j < len(crew_ids) and reachable[i, j]}
    return assignment, weighted_total(tickets, crew_ids, eta_matrix_s, assignment, weights), greedy_total
