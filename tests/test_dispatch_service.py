"""The dispatch service in-process with real Redis, on a small hand-built city with a river:
automatic dispatch to the nearest vehicle BY ROAD (the straight-line nearest one is across the
river), top-3 recommendations with ETAs and skipped crews, acceptance timeout and decline → next
crew, GPS arrival, escalation alarms raised and cleared, joint assignment beating greedy, the
crew board. Time is a settable clock handed to every manager; timers are run with `now` given.
The city and the app: tests/river.py (the `dispatch_api` fixture)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from gis.crs import distance_m
from tests.cities import ll
from tests.conftest import T0, wait_for
from tests.river import TICKET_XY, river_city

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_emergency_ticket_goes_to_the_nearest_vehicle_by_road_not_by_straight_line(dispatch_api):
    ticket_ll, south, north = ll(*TICKET_XY), ll(100, 0), ll(1500, 200)
    assert distance_m(*south, *ticket_ll) < 250 < 1300 < distance_m(*north, *ticket_ll)  # C03 is nearer as the crow flies
    number = await dispatch_api.create()
    assert await wait_for(lambda: dispatch_api.dispatched_to(number)) == "C01"
    code, timeline = await dispatch_api.call("GET", f"/api/tickets/{number}/timeline")
    dispatch = [e for e in timeline["events"] if e["action"] == "dispatch"]
    assert len(dispatch) == 1 and dispatch[0]["role"] == "system" and dispatch[0]["data"]["mode"] == "auto"
    assert dispatch[0]["data"]["eta_s"] == pytest.approx(140.0, abs=2.0)  # 1,400 m at 10 m/s
    assert "自动派单" in dispatch[0]["note"]


async def test_normal_ticket_gets_top_three_by_road_eta_with_skipped_crews_explained(dispatch_api):
    number = await dispatch_api.create(urgency="normal")
    code, rec = await dispatch_api.call("GET", f"/api/tickets/{number}/recommendation")
    assert code == 200 and rec["policy"] == "recommend"
    assert [r["crew_id"] for r in rec["recommendations"]] == ["C01", "C02", "C03"]
    etas = [r["eta_s"] for r in rec["recommendations"]]
    assert etas[0] == pytest.approx(140, abs=3) and etas[1] == pytest.approx(290, abs=3)
    assert etas[2] == pytest.approx(800, abs=8)  # 3,900 m east, the bridge, 3,900 m back
    assert rec["recommendations"][2]["distance_m"] > 7500  # round the river over the bridge
    route = rec["recommendations"][0]["route"]
    assert route[0] == pytest.approx(list(ll(1500, 200)), abs=1e-6) and route[-1] == pytest.approx(list(ll(*TICKET_XY)), abs=1e-6)
    skipped = {s["crew_id"]: s["reason"] for s in rec["skipped"]}
    assert skipped == {"C04": "off_shift", "C05": "no_skill", "C06": "no_fix"}
    assert (await dispatch_api.ticket(number))["state"] == "new"  # a dispatcher confirms
    stored = await wait_for(lambda: dispatch_api.parts.store.recommendation(number))
    assert [r["crew_id"] for r in stored["recommendations"]] == ["C01", "C02", "C03"]
    code, body = await dispatch_api.call("POST", f"/api/tickets/{number}/assign",
                                         body={"crew_id": "C02", "expected_version": (await dispatch_api.ticket(number))["version"]})
    assert code == 200 and body["ticket"]["crew_id"] == "C02" and body["ticket"]["state"] == "dispatched"
    code, timeline = await dispatch_api.call("GET", f"/api/tickets/{number}/timeline")
    assert "改派" not in timeline["events"][-1]["note"] and "第 2 名" in timeline["events"][-1]["note"]
    code, body = await dispatch_api.call("POST", f"/api/tickets/{number}/assign", body={"crew_id": "C99", "expected_version": 99})
    assert code in (400, 409)


async def test_acceptance_timeout_and_decline_go_to_the_next_crew(dispatch_api):
    number = await dispatch_api.create()
    assert await wait_for(lambda: dispatch_api.dispatched_to(number)) == "C01"
    dispatch_api.clock.now = T0 + timedelta(seconds=179)
    assert (await dispatch_api.parts.timers.tick(dispatch_api.clock.now))["expired"] == 0
    dispatch_api.clock.now = T0 + timedelta(seconds=181)
    assert (await dispatch_api.parts.timers.tick(dispatch_api.clock.now))["expired"] == 1
    assert await wait_for(lambda: dispatch_api.dispatched_to(number)) == "C02"
    version = (await dispatch_api.ticket(number))["version"]
    code, _ = await dispatch_api.call("POST", f"/api/tickets/{number}/actions/decline", "dispatcher",
                                      {"expected_version": version, "reason": "车辆故障"})
    assert code == 200
    assert await wait_for(lambda: dispatch_api.dispatched_to(number)) == "C03"  # the far one is the last left
    ticket = await dispatch_api.ticket(number)
    assert ticket["declined_by"] == ["C01", "C02"]


async def test_recommended_ticket_timing_out_alerts_the_dispatcher(dispatch_api):
    number = await dispatch_api.create(urgency="urgent")
    version = (await dispatch_api.ticket(number))["version"]
    code, _ = await dispatch_api.call("POST", f"/api/tickets/{number}/assign", body={"crew_id": "C01", "expected_version": version})
    assert code == 200
    dispatch_api.clock.now = T0 + timedelta(seconds=200)
    await dispatch_api.parts.timers.tick(dispatch_api.clock.now)
    alarms = await wait_for(lambda: dispatch_api.alarms(f"{number}|accept_timeout"))
    assert alarms[0]["level"] == "warning" and "超时未接单" in alarms[0]["text"]
    assert (await dispatch_api.ticket(number))["state"] == "declined"
    rec = await dispatch_api.parts.store.recommendation(number)
    assert "C01" not in [r["crew_id"] for r in rec["recommendations"]]
    version = (await dispatch_api.ticket(number))["version"]
    await dispatch_api.call("POST", f"/api/tickets/{number}/assign", body={"crew_id": "C02", "expected_version": version})
    assert await wait_for(lambda: _no_alarm(dispatch_api, f"{number}|accept_timeout"))


async def _no_alarm(dispatch_api, alarm_id):
    return not await dispatch_api.alarms(alarm_id)


async def test_gps_arrival_is_recorded_and_counts_for_the_arrival_limit(dispatch_api):
    number = await dispatch_api.create()
    assert await wait_for(lambda: dispatch_api.dispatched_to(number)) == "C01"
    for action in ("accept", "depart"):
        version = (await dispatch_api.ticket(number))["version"]
        await dispatch_api.call("POST", f"/api/tickets/{number}/actions/{action}", "crew", {"expected_version": version})
    dispatch_api.clock.now = T0 + timedelta(minutes=10)
    await dispatch_api.fix("V01", (400, 200), dispatch_api.clock.now)  # 300 m away: not yet
    assert (await dispatch_api.parts.timers.tick(dispatch_api.clock.now))["arrived"] == 0
    dispatch_api.clock.now = T0 + timedelta(minutes=12)
    await dispatch_api.fix("V01", (160, 200), dispatch_api.clock.now)  # 60 m away: arrived
    assert (await dispatch_api.parts.timers.tick(dispatch_api.clock.now))["arrived"] == 1
    assert (await dispatch_api.parts.timers.tick(dispatch_api.clock.now))["arrived"] == 0  # once per dispatch
    code, timeline = await dispatch_api.call("GET", f"/api/tickets/{number}/timeline")
    notes = [e["data"]["data"] for e in timeline["events"] if e["action"] == "note" and "gps_arrival" in e["data"]["data"]]
    assert len(notes) == 1 and notes[0]["gps_arrival"].startswith("2026-11-22T02:12:00")
    assert notes[0]["distance_m"] == pytest.approx(60, abs=2) and notes[0]["vehicle_id"] == "V01"
    dispatch_api.clock.now = T0 + timedelta(minutes=50)  # past the 45-minute arrival limit; the button was never pressed
    await dispatch_api.parts.timers.tick(dispatch_api.clock.now)
    assert not await dispatch_api.alarms(f"{number}|arrive")


@pytest.mark.parametrize("minutes, level", [(20, None), (25, "warning"), (31, "overdue")])
async def test_escalation_alarm_by_share_of_the_dispatch_limit(dispatch_api, minutes, level):
    number = await dispatch_api.create(urgency="normal")  # normal repair: dispatch within 30 minutes
    dispatch_api.clock.now = T0 + timedelta(minutes=minutes)
    await dispatch_api.parts.timers.tick(dispatch_api.clock.now)
    found = await dispatch_api.alarms(f"{number}|dispatch")
    assert [a["level"] for a in found] == ([] if level is None else [level])
    if level is not None:
        version = (await dispatch_api.ticket(number))["version"]
        await dispatch_api.call("POST", f"/api/tickets/{number}/assign", body={"crew_id": "C01", "expected_version": version})
        await dispatch_api.parts.timers.tick(dispatch_api.clock.now)
        assert not await dispatch_api.alarms(f"{number}|dispatch")


async def test_joint_assignment_beats_greedy_and_can_be_applied(dispatch_api):
    stop_auto = dispatch_api.parts.dispatch.auto
    dispatch_api.parts.dispatch.auto = False  # keep both tickets in the pool
    try:
        await dispatch_api.fix("V02", (2600, 200), T0)
        first = await dispatch_api.create(xy=(2000, 200))                       # emergency: C01 50 s, C02 60 s
        second = await dispatch_api.create(xy=(1000, 200), urgency="normal",  # normal: C01 50 s, C02 160 s
                                           caller_phone="13900001111")
        code, body = await dispatch_api.call("POST", "/api/dispatch/joint", body={"numbers": [first, second]})
        assert code == 200, body
        joint = {a["number"]: a["crew_id"] for a in body["assignments"]}
        greedy = {a["number"]: a["crew_id"] for a in body["greedy"]}
        assert joint == {first: "C02", second: "C01"} and greedy == {first: "C01", second: "C02"}
        assert body["total_weighted_eta_s"] == pytest.approx(4 * 60 + 50, abs=5)
        assert body["greedy_total_weighted_eta_s"] == pytest.approx(4 * 50 + 160, abs=5)
        assert body["gain_s"] > 60 and body["applied"] is False
        code, body = await dispatch_api.call("POST", "/api/dispatch/joint", body={"numbers": [first, second], "apply": True})
        assert code == 200 and body["applied"] is True
        assert (await dispatch_api.dispatched_to(first), await dispatch_api.dispatched_to(second)) == ("C02", "C01")
        code, body = await dispatch_api.call("POST", "/api/dispatch/joint", body={"numbers": [first]})
        assert code == 400 and "not waiting" in body["error"]["message"]
    finally:
        dispatch_api.parts.dispatch.auto = stop_auto


async def test_crew_board_shows_state_current_ticket_and_fix_age(dispatch_api):
    number = await dispatch_api.create()
    assert await wait_for(lambda: dispatch_api.dispatched_to(number)) == "C01"
    dispatch_api.clock.now = T0 + timedelta(seconds=45)
    code, body = await dispatch_api.call("GET", "/api/crews")
    rows = {r["crew_id"]: r for r in body["crews"]}
    assert (rows["C01"]["state"], rows["C01"]["current_ticket"], rows["C01"]["fix_age_s"]) == ("busy", number, 45.0)
    assert rows["C01"]["fix_stale"] is True and rows["C02"]["state"] == "free"
    assert rows["C04"]["state"] == "off_shift" and rows["C06"]["fix_age_s"] is None
    code, _ = await dispatch_api.call("POST", "/api/crews/C04/shift", body={"on_shift": True})
    assert code == 200
    code, body = await dispatch_api.call("GET", "/api/crews")
    assert {r["crew_id"]: r["state"] for r in body["crews"]}["C04"] == "free"
    code, _ = await dispatch_api.call("GET", "/api/crews", "crew")
    assert code == 403


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_pruned_routing_ranks_exactly_as_routing_every_candidate(seed):
    """Routing only the crews that can still make the top 3 gives the ranking of routing all."""
    import random

    from command.dispatch import Crew, recommend, eligible
    from command.ticket_fields import new_ticket
    from command.ticket_model import Actor, Role
    from services.dispatch import DispatchManager, road_graph

    rng = random.Random(seed)
    graph = road_graph(river_city())
    manager = DispatchManager(None, None, None, graph, clock=lambda: T0)
    spots = [(rng.uniform(0, 4000), rng.choice([0, 200])) for _ in range(120)]
    crews = [Crew(f"X{i:03d}", frozenset({"power"}), True, None, rng.randint(0, 3), rng.uniform(0, 60), *ll(*xy))
             for i, xy in enumerate(spots)]
    lon, lat = ll(rng.uniform(0, 4000), 200)
    ticket = new_ticket({"number": "GD20261122-0001", "channel": "web", "category": "power", "type": "repair",
                         "urgency": "emergency", "description": "停电", "lon": lon, "lat": lat},
                        now=T0, actor=Actor("t", Role.AGENT))[0]
    fast = manager.rank(ticket, crews, T0)
    candidates, skipped = eligible(crews, ticket, T0)
    routes = graph.one_to_many((lon, lat), [(c.crew.lon, c.crew.lat) for c in candidates])
    full = recommend(ticket, candidates, skipped, [r and r.seconds for r in routes], [r and r.metres for r in routes])
    assert [(r.crew_id, round(r.score_s, 6)) for r in fast.recommendations] == \
        [(r.crew_id, round(r.score_s, 6)) for r in full.recommendations]
    score = {c.crew.crew_id: r.seconds + (120.0 if c.stale else 0.0) for c, r in zip(candidates, routes) if r}
    slower = [s.crew_id for s in fast.skipped if s.reason == "slower"]
    assert len(slower) > len(crews) // 2  # most were never routed ...
    assert min(score[c] for c in slower) >= full.recommendations[-1].score_s  # ... and none could have made it


@pytest.mark.parametrize("change, new", [
    ({"action": "create", "version": "1", "state": "new"}, True),
    ({"action": "link_incident", "version": "2", "state": "new"}, True),   # grouped as it was created
    ({"action": "link_incident", "version": "5", "state": "dispatched"}, False),
    ({"action": "note", "version": "2", "state": "new"}, False),
    ({"action": "dispatch", "version": "2", "state": "dispatched"}, False),
])
async def test_new_tickets_are_recognised_in_the_change_stream(change, new):
    from services.dispatch import is_creation

    assert is_creation(change) is new
