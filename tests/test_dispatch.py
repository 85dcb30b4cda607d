"""Dispatch: eligibility with reasons, ranking by road ETA, policy, acceptance timeout, joint assignment."""
from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from command.dispatch import (
    Crew, DispatchPolicy, acceptance_timed_out, assign_jointly, eligible, greedy_assignment,
    next_candidate, policy, rank, recommend,
)
from command.tickets import apply
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Category, Role, TicketType, Urgency

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
W, P, G = Category.WATER, Category.POWER, Category.GAS


def make(number="GD20261122-0001", *, category="water", urgency="urgent", type_="repair"):
    fields = {"number": number, "channel": "web", "category": category, "type": type_, "urgency": urgency,
              "description": "管道爆裂", "lon": 116.4, "lat": 39.9}
    return new_ticket(fields, now=T0, actor=Actor("a", Role.AGENT))[0]


def crew(crew_id, *, skills=(W,), on_shift=True, busy=None, workload=0, fix_age_s=5.0, shift_ends_at=None):
    return Crew(crew_id, frozenset(skills), on_shift, busy, workload, fix_age_s, 116.4, 39.9, shift_ends_at)


@pytest.mark.parametrize(("member", "urgency", "reason", "stale", "preempts"), [
    (crew("C1"), "urgent", None, False, False),
    (crew("C1", fix_age_s=45.0), "urgent", None, True, False),
    (crew("C1", on_shift=False), "urgent", "off_shift", None, None),
    (crew("C1", shift_ends_at=T0), "urgent", "off_shift", None, None),
    (crew("C1", shift_ends_at=T0 + timedelta(hours=1)), "urgent", None, False, False),
    (crew("C1", skills=(P, G)), "urgent", "no_skill", None, None),
    (crew("C1", busy=Urgency.NORMAL), "urgent", "busy", None, None),
    (crew("C1", busy=Urgency.NORMAL), "emergency", None, False, True),
    (crew("C1", busy=Urgency.URGENT), "emergency", None, False, True),
    (crew("C1", busy=Urgency.EMERGENCY), "emergency", "busy", None, None),
    (crew("C1", fix_age_s=None), "urgent", "no_fix", None, None),
    (crew("C7"), "urgent", "declined", None, None),
])
def test_eligibility(member, urgency, reason, stale, preempts):
    ticket = dataclasses.replace(make(urgency=urgency), declined_by=("C7",))
    candidates, skipped = eligible([member], ticket, T0)
    if reason is None:
        assert [(c.crew.crew_id, c.stale, c.preempts) for c in candidates] == [("C1", stale, preempts)]
        assert skipped == []
    else:
        assert candidates == [] and [(s.crew_id, s.reason) for s in skipped] == [(member.crew_id, reason)]
        assert skipped[0].text


def test_stale_after_is_configurable():
    candidates, _ = eligible([crew("C1", fix_age_s=45.0)], make(), T0, stale_after_s=60)
    assert not candidates[0].stale


# A small road graph: the ticket is at node 0, across a river from node 1 (50 m away in a straight
# line but the bridge is far); travel times in seconds.
EDGES = [(0, 2, 120), (2, 3, 180), (3, 1, 240), (0, 4, 300), (4, 5, 60), (2, 6, 200)]
DIST_M = {1: 3500.0, 3: 2600.0, 4: 2500.0, 5: 3100.0, 6: 2200.0}


def road_etas(nodes):
    n = 7
    rows, cols, secs = zip(*EDGES)
    graph = csr_matrix((secs, (rows, cols)), shape=(n, n))
    times = dijkstra(graph, directed=False, indices=0)
    return [float(times[v]) for v in nodes]


def test_rank_by_road_eta_not_straight_line():
    crews = [crew("ACROSS-RIVER", workload=0), crew("C3", workload=1), crew("C4", workload=3),
             crew("C6", workload=2), crew("C5", workload=0)]
    nodes = [1, 3, 4, 6, 5]
    etas = road_etas(nodes)
    assert etas == [540.0, 300.0, 300.0, 320.0, 360.0]
    candidates, _ = eligible(crews, make(), T0)
    ranked = rank(make(), candidates, etas, [DIST_M[v] for v in nodes])
    assert [(r.rank, r.crew_id, r.eta_s) for r in ranked] == [(1, "C3", 300.0), (2, "C4", 300.0), (3, "C6", 320.0)]
    assert ranked[0].explanation == "预计 5.0 分钟到达（道路 2.6 公里）；在办工单 1 张"


def test_ties_by_workload_and_free_crews_before_preempting_ones():
    ticket = make(urgency="emergency")
    crews = [crew("BUSY", busy=Urgency.NORMAL, workload=0), crew("HEAVY", workload=4), crew("LIGHT", workload=1)]
    candidates, _ = eligible(crews, ticket, T0)
    ranked = rank(ticket, candidates, [300.0, 300.0, 300.0], [2000.0] * 3)
    assert [r.crew_id for r in ranked] == ["LIGHT", "HEAVY", "BUSY"]
    assert ranked[2].preempts and "将中断一般工单" in ranked[2].explanation


def test_stale_fix_penalty_and_unreachable():
    ticket = make()
    crews = [crew("STALE", fix_age_s=95.0), crew("FRESH"), crew("NOROAD"), crew("FAR")]
    candidates, _ = eligible(crews, ticket, T0)
    etas = [200.0, 280.0, None, float("inf")]
    ranked = rank(ticket, candidates, etas, [1500.0, 1800.0, None, None])
    assert [(r.crew_id, r.score_s, r.penalty_s) for r in ranked] == [("FRESH", 280.0, 0.0), ("STALE", 320.0, 120.0)]
    assert "定位已 95 秒未更新，按 120 秒加罚" in ranked[1].explanation
    assert [r.crew_id for r in rank(ticket, candidates, etas, [None] * 4, stale_penalty_s=60)] == ["STALE", "FRESH"]
    with pytest.raises(ValueError):
        rank(ticket, candidates, etas[:2], [None] * 4)


def test_recommend_explains_everything():
    ticket = make(urgency="emergency")
    crews = [crew("OFF", on_shift=False), crew("C1"), crew("C2", skills=(P,)), crew("C3")]
    candidates, skipped = eligible(crews, ticket, T0)
    ranking = recommend(ticket, candidates, skipped, [400.0, None], [3000.0, None])
    assert ranking.policy == "auto"
    assert [r.crew_id for r in ranking.recommendations] == ["C1"]
    assert [(s.crew_id, s.reason) for s in ranking.skipped] == [
        ("OFF", "off_shift"), ("C2", "no_skill"), ("C3", "unreachable")]


@pytest.mark.parametrize(("category", "type_", "urgency", "config", "expected"), [
    ("water", "repair", "emergency", DispatchPolicy(), "auto"),
    ("power", "repair", "emergency", DispatchPolicy(), "auto"),
    ("water", "repair", "urgent", DispatchPolicy(), "recommend"),
    ("water", "complaint", "emergency", DispatchPolicy(), "recommend"),
    ("gas", "repair", "urgent", DispatchPolicy(auto=frozenset({(G, TicketType.REPAIR, Urgency.URGENT)})), "auto"),
    ("water", "repair", "urgent", DispatchPolicy(auto=frozenset({(G, TicketType.REPAIR, Urgency.URGENT)})),
     "recommend"),
    ("water", "repair", "emergency", DispatchPolicy(auto=frozenset()), "recommend"),
])
def test_policy(category, type_, urgency, config, expected):
    assert policy(make(category=category, type_=type_, urgency=urgency), config) == expected


@pytest.mark.parametrize(("seconds", "timeout_s", "expected"), [
    (179, 180, False), (180, 180, True), (61, 60, True), (59, 60, False),
])
def test_acceptance_timeout(seconds, timeout_s, expected):
    ticket = apply(make(), "dispatch", actor=Actor("d", Role.DISPATCHER), now=T0, crew_id="C1")[0]
    assert acceptance_timed_out(ticket, T0 + timedelta(seconds=seconds), timeout_s=timeout_s) is expected
    assert acceptance_timed_out(make(), T0 + timedelta(hours=1)) is False


def test_next_candidate_after_timeout_or_decline():
    ticket = make()
    candidates, _ = eligible([crew("C1"), crew("C2"), crew("C3")], ticket, T0)
    ranked = rank(ticket, candidates, [100.0, 200.0, 300.0], [None] * 3)
    dispatched = apply(ticket, "dispatch", actor=Actor("s", Role.SYSTEM), now=T0, crew_id="C1")[0]
    expired = apply(dispatched, "expire", actor=Actor("s", Role.SYSTEM), now=T0 + timedelta(seconds=180))[0]
    assert next_candidate(ranked, tried=expired.declined_by).crew_id == "C2"
    assert next_candidate(ranked, tried={"C1", "C2", "C3"}) is None
    again, _ = eligible([crew("C1"), crew("C2")], expired, T0)
    assert [c.crew.crew_id for c in again] == ["C2"]


# ---------------------------------------------------------------- joint assignment

def test_joint_beats_greedy_on_a_constructed_case():
    # Greedy gives T1 its nearest crew A (60 s) and leaves T2 with B (1800 s); jointly T1 takes B.
    tickets = [make("GD20261122-0001"), make("GD20261122-0002")]
    etas = [[60.0, 120.0], [180.0, 1800.0]]
    assignment, total, greedy_total = assign_jointly(tickets, ["A", "B"], etas, {u: 1.0 for u in Urgency})
    assert assignment == {"GD20261122-0001": "B", "GD20261122-0002": "A"}
    assert (total, greedy_total) == (300.0, 1860.0)
    assert greedy_assignment(tickets, ["A", "B"], etas) == {"GD20261122-0001": "A", "GD20261122-0002": "B"}


def test_urgency_weights_change_the_answer():
    tickets = [make("GD20261122-0001", urgency="emergency"), make("GD20261122-0002", urgency="normal")]
    etas = [[10.0, 14.0], [2.0, 12.0]]
    crews = [crew("A"), crew("B")]
    assert assign_jointly(tickets, crews, etas, {u: 1.0 for u in Urgency})[0] == {
        "GD20261122-0001": "B", "GD20261122-0002": "A"}
    assignment, total, _ = assign_jointly(tickets, crews, etas)  # default weights 4 / 2 / 1
    assert assignment == {"GD20261122-0001": "A", "GD20261122-0002": "B"} and total == 52.0


def test_more_tickets_than_crews_keeps_the_emergency_and_skips_unreachable():
    tickets = [make("GD20261122-0001", urgency="normal"), make("GD20261122-0002", urgency="emergency"),
               make("GD20261122-0003", urgency="normal"), make("GD20261122-0004", urgency="emergency")]
    etas = [[60.0, 90.0], [900.0, 1200.0], [30.0, None], [None, float("nan")]]
    assignment, total, greedy_total = assign_jointly(tickets, ["A", "B"], etas)
    assert assignment == {"GD20261122-0002": "A", "GD20261122-0001": "B"}
    assert (total, greedy_total) == (4 * 900.0 + 90.0, 4 * 900.0 + 90.0)
    assert assign_jointly(tickets, [], [[] for _ in tickets]) == ({}, 0.0, 0.0)


@pytest.mark.parametrize("seed", range(12))
def test_joint_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_tickets, n_crews = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    urgencies = list(Urgency)
    tickets = [make(f"GD20261122-{i + 1:04d}", urgency=urgencies[int(rng.integers(0, 3))].value)
               for i in range(n_tickets)]
    etas = rng.uniform(60, 3600, size=(n_tickets, n_crews)).round().tolist()
    weights = {Urgency.EMERGENCY: 4.0, Urgency.URGENT: 2.0, Urgency.NORMAL: 1.0}
    assignment, total, greedy_total = assign_jointly(tickets, [f"C{j}" for j in range(n_crews)], etas, weights)
    k = min(n_tickets, n_crews)
    best = None  # lexicographic: most weight served, then least weighted ETA
    for rows in itertools.combinations(range(n_tickets), k):
        for cols in itertools.permutations(range(n_crews), k):
            served = sum(weights[tickets[i].urgency] for i in rows)
            cost = sum(weights[tickets[i].urgency] * etas[i][j] for i, j in zip(rows, cols))
            if best is None or (-served, cost) < best:
                best = (-served, cost)
    assert len(assignment) == k
    assert total == pytest.approx(best[1])
    assert total <= greedy_total + 1e-9
