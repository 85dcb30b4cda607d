"""Benchmark of a recommendation as the dispatch service computes it, road routing included.

- dispatch_recommend_ms_p99: `DispatchManager.rank` for one water repair ticket with 2,000 crews
  on shift on the demo city's road network: `eligible` (skills, busy, stale fixes), ONE
  `RoadGraph.one_to_many` from the ticket to every eligible crew's live position, and `rank`.
  Crews stand on random roads (GPS noise ~10 m), 1-3 skills (half of them water), a quarter busy,
  fix ages 0-60 s. Reading the crews' state from Redis is not included (one pipeline per call).
  Measured after `gc.freeze()` post warm-up, as a long-running server would be; the figure
  without the freeze is dispatch_recommend_ms_p99_nofreeze.
- dispatch_recommend_cpu_ms_p99: the same calls in process CPU time (what the wall time is on an
  idle core; on a shared, loaded machine the wall-time tail is mostly waiting for a core).
- dispatch_recommend_candidates: eligible crews per ticket (mean); only those that can still make
  the top 3 by a straight-line bound are routed (see `DispatchManager.rank`).
- dispatch_route_geometry_ms_p99: the route geometry of the top 3 for the dispatcher's map.
"""
from __future__ import annotations

import gc
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import emit, percentile, progress
from command.dispatch import Crew, eligible
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Category, Role, Urgency
from gis.layers import load_profile
from services.dispatch import DispatchManager, road_graph

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
DEMO_PROFILE = Path("var/city/democity/profile.toml")


def demo_city():
    """The demo city (generated into a temporary directory when var/ has none)."""
    if DEMO_PROFILE.is_file():
        return load_profile(DEMO_PROFILE)
    from simulators import democity

    return load_profile(democity.generate(Path(tempfile.mkdtemp()) / "democity", seed=20261122))


def road_points(roads, rng: random.Random, n: int) -> list[tuple[float, float]]:
    """n random points on the roads, with ~10 m of GPS noise."""
    geoms = list(roads.geometry)
    out = []
    for _ in range(n):
        p = rng.choice(geoms).interpolate(rng.random(), normalized=True)
        out.append((p.x + rng.gauss(0, 1e-4), p.y + rng.gauss(0, 1e-4)))
    return out


def make_crews(points: list[tuple[float, float]], rng: random.Random) -> list[Crew]:
    """Crews on shift at the points."""
    categories = list(Category)
    crews = []
    for i, (lon, lat) in enumerate(points):
        skills = frozenset(rng.sample(categories, rng.randint(1, 3)) + [Category.WATER] * (i % 2))
        busy = rng.choice(list(Urgency)) if rng.random() < 0.25 else None
        crews.append(Crew(f"C{i:05d}", skills, True, busy, rng.randint(0, 5), rng.uniform(0, 60), lon, lat))
    return crews


def make_ticket(lon: float, lat: float):
    """An emergency water repair ticket at a point."""
    fields = {"number": "GD20261122-0001", "channel": "phone", "category": "water", "type": "repair",
              "urgency": "emergency", "description": "爆管", "caller_phone": "13800138000", "lon": lon, "lat": lat}
    return new_ticket(fields, now=NOW, actor=Actor("bench", Role.AGENT))[0]


def measure(manager: DispatchManager, crews: list[Crew], tickets: list, *, freeze: bool) -> tuple[float, float, float]:
    """(p99 ms of rank wall time, p99 ms of its CPU time, p99 ms of the top-3 route geometry)."""
    for ticket in tickets[:20]:  # warm-up
        manager.rank(ticket, crews, NOW)
    if freeze:
        gc.collect()
        gc.freeze()
    timings, cpu, geometry = [], [], []
    for ticket in tickets:
        start, start_cpu = time.perf_counter(), time.process_time()
        ranking = manager.rank(ticket, crews, NOW)
        timings.append((time.perf_counter() - start) * 1000.0)
        cpu.append((time.process_time() - start_cpu) * 1000.0)
        top = [c for c in crews if c.crew_id in {r.crew_id for r in ranking.recommendations}]
        start = time.perf_counter()
        manager.graph.one_to_many((ticket.lon, ticket.lat), [(c.lon, c.lat) for c in top], with_geometry=True)
        geometry.append((time.perf_counter() - start) * 1000.0)
    if freeze:
        gc.unfreeze()
    progress(f"dispatch service: rank p50 {percentile(timings, 50):.1f} ms, p90 {percentile(timings, 90):.1f} ms")
    return percentile(timings, 99), percentile(cpu, 99), percentile(geometry, 99)


def main() -> None:
    """Load the demo city, build its road graph, and time recommendations."""
    rng = random.Random(20261122)
    progress("dispatch service: loading the demo city and its road graph ...")
    city = demo_city()
    graph = road_graph(city)
    manager = DispatchManager(None, None, None, graph, clock=lambda: NOW)  # type: ignore[arg-type]
    crews = make_crews(road_points(city.roads, rng, 2000), rng)
    tickets = [make_ticket(*p) for p in road_points(city.roads, rng, 320)]
    candidates = sum(len(eligible(crews, t, NOW)[0]) for t in tickets[:50]) / 50
    progress(f"dispatch service: {graph.node_count} nodes, {graph.edge_count} roads, 2,000 crews, "
             f"{candidates:.0f} eligible per ticket")
    nofreeze, _, _ = measure(manager, crews, tickets, freeze=False)
    emit("dispatch_recommend_ms_p99_nofreeze", nofreeze, "ms")
    p99, cpu_p99, geometry = measure(manager, crews, tickets, freeze=True)
    emit("dispatch_recommend_ms_p99", p99, "ms")
    emit("dispatch_recommend_cpu_ms_p99", cpu_p99, "ms")
    emit("dispatch_recommend_candidates", candidates, "crews")
    emit("dispatch_route_geometry_ms_p99", geometry, "ms")


if __name__ == "__main__":
    main()
