"""Benchmark of the pure dispatch core.

- dispatch_rank_ms_p99 (pure ranking, ETAs given; the full path with routing is bench.dispatch_service): `eligible` + `rank` for one ticket with 2,000 crews on shift
  (road ETAs are random numbers here; the routing cost is measured by the GIS benchmarks).
  Measured after `gc.freeze()`, as a server does once it has started: otherwise the tail is a
  full garbage collection of everything imported (numpy, scipy), not dispatch work; the figure
  without the freeze is printed as dispatch_rank_ms_p99_nofreeze.
- dispatch_joint_ms: `assign_jointly` for 50 tickets × 200 crews (median of runs), with the
  weighted-ETA gain over the greedy baseline as dispatch_joint_gain_pct.
"""
from __future__ import annotations

import gc
import random
import time
from datetime import datetime, timezone

from bench.common import emit, percentile, progress
from command.dispatch import Crew, assign_jointly, eligible, rank
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Category, Role, Urgency

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
CATEGORIES = list(Category)
URGENCIES = list(Urgency)


def make_crews(rng: random.Random, n: int) -> list[Crew]:
    """n crews on shift with 1-3 skills, a quarter busy, some with stale fixes."""
    crews = []
    for i in range(n):
        skills = frozenset(rng.sample(CATEGORIES, rng.randint(1, 3)) + [Category.WATER] * (i % 2))
        busy = rng.choice(URGENCIES) if rng.random() < 0.25 else None
        crews.append(Crew(f"C{i:05d}", skills, True, busy, rng.randint(0, 5), rng.uniform(0, 60),
                          116.0 + rng.random(), 39.5 + rng.random()))
    return crews


def make_ticket(seq: int, urgency: str = "emergency"):
    """A water repair ticket."""
    fields = {"number": f"GD20261122-{seq:04d}", "channel": "phone", "category": "water", "type": "repair",
              "urgency": urgency, "description": "爆管", "caller_phone": "13800138000"}
    return new_ticket(fields, now=NOW, actor=Actor("bench", Role.AGENT))[0]


def bench_recommend(rng: random.Random, runs: int = 300, *, freeze: bool = True) -> float:
    """p99 milliseconds of eligible + rank for one ticket over 2,000 crews."""
    crews = make_crews(rng, 2000)
    if freeze:
        gc.collect()
        gc.freeze()
    ticket = make_ticket(1)
    timings = []
    for _ in range(runs):
        etas_pool = [rng.uniform(60, 3600) for _ in range(len(crews))]
        start = time.perf_counter()
        candidates, _ = eligible(crews, ticket, NOW)
        etas = etas_pool[:len(candidates)]
        rank(ticket, candidates, etas, [eta * 8.0 for eta in etas])
        timings.append((time.perf_counter() - start) * 1000.0)
    if freeze:
        gc.unfreeze()
    return percentile(timings, 99)


def bench_joint(rng: random.Random, runs: int = 20) -> tuple[float, float]:
    """Median milliseconds of assign_jointly for 50 tickets × 200 crews, and the mean gain over greedy in %."""
    crew_ids = [f"C{j:03d}" for j in range(200)]
    timings, gains = [], []
    for _ in range(runs):
        tickets = [make_ticket(i + 1, rng.choice(["emergency", "urgent", "normal"])) for i in range(50)]
        etas = [[rng.uniform(60, 3600) if rng.random() > 0.05 else None for _ in crew_ids] for _ in tickets]
        start = time.perf_counter()
        _, total, greedy_total = assign_jointly(tickets, crew_ids, etas)
        timings.append((time.perf_counter() - start) * 1000.0)
        gains.append(100.0 * (greedy_total - total) / greedy_total)
    return percentile(timings, 50), sum(gains) / len(gains)


def main() -> None:
    """Run both measurements and print the figures."""
    rng = random.Random(20261122)
    progress("dispatch: eligible + rank, 2,000 crews ...")
    emit("dispatch_rank_ms_p99_nofreeze", bench_recommend(rng, freeze=False), "ms")
    emit("dispatch_rank_ms_p99", bench_recommend(rng), "ms")
    progress("dispatch: assign_jointly, 50 tickets x 200 crews ...")
    joint_ms, gain = bench_joint(rng)
    emit("dispatch_joint_ms", joint_ms, "ms")
    emit("dispatch_joint_gain_pct", gain, "%")


if __name__ == "__main__":
    main()
