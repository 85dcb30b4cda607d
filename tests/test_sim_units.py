"""The center's desk bot and the unit bots against a running app (real PostgreSQL and Redis, the
HTTP API with the demo's accounts): a complaint is sent to its unit, accepted and answered with a
signed feedback, and the callback closes it; a return is re-routed, an extension approved, a late
answer waits until the center shows the ticket overdue; the bots act only on their own units'
tickets (the API would refuse the rest: no 4xx in their counts). The shares as pure tables."""
from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest

from simulators.crews import ApiClient, CallbackBot
from simulators.units import (ANSWERS, COMPLAINTS, RESULTS, SUPERVISION_ANSWERS, Account, DeskBot, DeskHabits, UnitBot,
                              UnitPace, alternatives, answering, feedback_text, liaison_units, my_step)
from tests.cities import ll
from tests.conftest import PASSWORD, T0

TREE = [{"unit_id": u, "parent_id": p, "level": lvl, "active": active, "trades": [t]}
        for u, p, lvl, t, active in (
            ("C", None, 1, "power", True), ("PWR00", "C", 2, "power", True), ("PWR02", "PWR00", 3, "power", True),
            ("PWR01", "PWR00", 3, "power", True), ("PWR09", "PWR00", 3, "power", False),
            ("WAT00", "C", 2, "water", True), ("WAT01", "WAT00", 3, "water", True),
            ("WAT02", "WAT00", 3, "water", True), ("GAS00", "C", 2, "gas", True))]


# ------------------------------------------------------------------------------ pure tables

def test_the_demo_liaisons_answer_for_their_units_and_the_center_reroutes_within_a_trade():
    liaisons = liaison_units(TREE)
    assert liaisons == ["PWR00", "WAT00", "GAS00", "PWR01", "WAT01"]
    assert answering(TREE, liaisons) == {"PWR00": {"PWR00", "PWR02", "PWR09"}, "WAT00": {"WAT00", "WAT02"},
                                         "GAS00": {"GAS00"}, "PWR01": {"PWR01"}, "WAT01": {"WAT01"}}
    others = alternatives(TREE, liaisons)
    assert others["PWR00"] == ["PWR01"] and others["PWR02"] == ["PWR00", "PWR01"] and others["GAS00"] == []
    assert "PWR09" not in others  # inactive


@pytest.mark.parametrize("ticket, words", [
    ({"type": "complaint", "category": "power"}, COMPLAINTS["power"]),
    ({"type": "complaint", "category": "sanitation"}, COMPLAINTS["sanitation"]),
    ({"type": "suggestion", "category": "water"}, tuple(t.format(trade="供水") for t in RESULTS["suggestion"])),
    ({"type": "praise", "category": "gas"}, RESULTS["praise"]),
    ({"type": "service", "category": "heating"}, tuple(t.format(trade="供热") for t in RESULTS["service"])),
])
def test_feedback_reads_as_the_types_and_trades_result(ticket, words):
    assert feedback_text(ticket, random.Random(1)) in words


@pytest.mark.parametrize("share, low, high", [(0.0, 0, 0), (0.1, 8, 35), (0.5, 80, 120), (1.0, 200, 200)])
def test_unit_bots_return_ask_extensions_and_answer_late_at_their_shares(share, low, high):
    bot = UnitBot("unit-x", {"X"}, None, None, rng=random.Random(5), clock=lambda: 0.0,
                  pace=UnitPace(return_share=share, extension_share=share, late_share=share))
    drawn = Counter()
    for n in range(200):
        drawn["return"] += bot.plan({"number": f"A{n}", "state": "assigned"}).returns
        plan = bot.plan({"number": f"A{n}", "state": "handling"})
        drawn["extension"] += plan.extends
        drawn["late"] += plan.late
    assert all(low <= drawn[k] <= high for k in ("return", "extension", "late")), drawn


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_unit_share_outside_0_1_is_refused(share):
    with pytest.raises(ValueError, match="0..1"):
        UnitPace(late_share=share)


@pytest.mark.parametrize("ticket, role, name, mine", [
    ({"state": "in_review", "review_chain": ["team_leader", "director"], "review_step": 0}, "team_leader", "tl", True),
    ({"state": "in_review", "review_chain": ["team_leader", "director"], "review_step": 0}, "director", "d", False),
    ({"state": "in_review", "review_chain": ["team_leader"], "review_step": 0, "created_by": "tl"},
     "team_leader", "tl", False),  # never its own ticket
    ({"state": "in_review", "review_chain": ["coordinator", "coordinator"], "review_step": 1,
      "reviewers": ["co"]}, "coordinator", "co", False),  # one step per account
    ({"state": "new", "review_chain": ["team_leader"], "review_step": None}, "team_leader", "tl", False),
])
def test_a_reviewer_takes_only_the_step_waiting_for_its_role_and_never_its_own(ticket, role, name, mine):
    assert my_step(ticket, role, name) is mine


# ------------------------------------------------------------------------------ against the running app

class Bots:
    """The desk and unit bots on the app's HTTP API, on a clock the test moves (simulated seconds)."""

    def __init__(self, base: str, paces: dict[str, UnitPace], habits: DeskHabits, reroute=None):
        self.now = [0.0]
        clock = lambda: self.now[0]  # noqa: E731
        self.apis = {name: ApiClient(base, name, PASSWORD)
                     for name in ("dispatcher", "supervisor", "agent", *paces)}
        desk_accounts = {role: Account(role, self.apis[role].get, self.apis[role].send)
                         for role in ("dispatcher", "supervisor", "agent")}
        self.desk = DeskBot(desk_accounts, reroute=reroute or {}, habits=habits, rng=random.Random(2), clock=clock)
        self.units = {name: UnitBot(name, {name.split("-")[1].upper()}, self.apis[name].get, self.apis[name].send,
                                    pace=pace, rng=random.Random(name), clock=clock)
                      for name, pace in paces.items()}

    async def rounds(self, count: int) -> None:
        """``count`` rounds, each a simulated week later: the desk, then every unit."""
        for _ in range(count):
            self.now[0] += 7 * 86400.0
            await self.desk.poll()
            for bot in self.units.values():
                await bot.poll()

    def refusals(self) -> dict[str, int]:
        """Every refused request of every bot (none expected: they act only where they may)."""
        counts = sum((bot.counts for bot in (self.desk, *self.units.values())), Counter())
        return {k: v for k, v in counts.items() if ":" in k}


async def _complaint(unit_api, unit: str, category: str = "power") -> str:
    lon, lat = ll(100, 200)
    code, reply = await unit_api.call("POST", "/api/tickets", "agent", {
        "channel": "phone", "category": category, "type": "complaint", "urgency": "normal",
        "description": "抄表员态度差", "caller_phone": "13812341234", "lon": lon, "lat": lat, "link": False,
        "unit_id": unit, "unit_reason": "按辖区交办"})
    assert code == 201, reply
    return reply["ticket"]["number"]


async def test_a_complaint_is_sent_accepted_answered_and_called_back(unit_api):
    number = await _complaint(unit_api, "PWR00")
    question = await unit_api.new("water", type="consultation")  # saved without an answer
    elsewhere = {unit: await unit_api.new(category, unit=unit)  # not the bots' units
                 for unit, category in (("PWR01", "power"), ("WAT01", "water"))}
    bots = Bots(unit_api.base, {"unit-pwr00": UnitPace(return_share=0, extension_share=0, late_share=0)}, DeskHabits())
    await bots.rounds(8)
    code, ticket = await unit_api.call("GET", f"/api/tickets/{number}", "supervisor")
    assert code == 200 and (ticket["state"], ticket["unit_id"]) == ("resolved", "PWR00")
    assert ticket["resolution"] in COMPLAINTS["power"] and ticket["signed_by"] == bots.units["unit-pwr00"].leader
    callbacks = CallbackBot(bots.apis["agent"].get, bots.apis["agent"].send, delay_s=(0.0, 0.0),
                            shares=(("satisfied", 1.0),), rng=random.Random(1))
    assert await callbacks.poll() == 1
    code, answered = await unit_api.call("GET", f"/api/tickets/{question}", "supervisor")
    assert answered["state"] == "closed" and answered["resolution"] in [a.format(trade="供水") for a in ANSWERS]
    assert [e[:2] for e in await unit_api.events(question)] == [("close_direct", "agent")]
    events = [e for e in await unit_api.events(number) if e[0] not in ("note", "link_incident")]
    assert events == [("assign", "dispatcher", "new", "assigned"),
                      ("unit_accept", "unit-pwr00", "assigned", "handling"),
                      ("feedback", "unit-pwr00", "handling", "resolved"),
                      ("queue_callback", "agent", "resolved", "callback"),
                      ("close", "agent", "callback", "closed")]
    for other in elsewhere.values():  # seen by unit-pwr00 (PWR01 is under it) or not at all: never touched
        assert [e[0] for e in await unit_api.events(other)] == ["assign"]
    assert bots.refusals() == {}


async def test_a_return_is_rerouted_an_extension_approved_and_a_late_answer_waits_for_the_deadline(unit_api):
    numbers = [await _complaint(unit_api, "PWR01") for _ in range(3)]
    bots = Bots(unit_api.base, {"unit-pwr01": UnitPace(return_share=1.0, extension_share=0.0, late_share=0.0),
                                "unit-pwr02": UnitPace(return_share=0.0, extension_share=1.0, late_share=1.0)},
                DeskHabits(reroute_share=1.0, approve_extension_share=1.0), reroute={"PWR01": ["PWR02"]})
    await bots.rounds(14)
    for number in numbers:
        code, ticket = await unit_api.call("GET", f"/api/tickets/{number}", "supervisor")
        assert (ticket["state"], ticket["unit_id"]) == ("handling", "PWR02")  # late: not yet overdue
        assert ticket["extended_until"] and ticket["deadlines"]["resolve"] == ticket["extended_until"]
    unit_api.clock.now = T0 + timedelta(days=40)  # past every extended deadline
    await bots.rounds(3)
    for number in numbers:
        code, ticket = await unit_api.call("GET", f"/api/tickets/{number}", "supervisor")
        assert ticket["state"] == "resolved" and ticket["signed_by"] == bots.units["unit-pwr02"].leader
        assert [e[:2] for e in await unit_api.events(number) if e[0] != "note"] == [
            ("assign", "dispatcher"), ("request_return", "unit-pwr01"), ("reroute_return", "dispatcher"),
            ("unit_accept", "unit-pwr02"), ("request_extension", "unit-pwr02"), ("approve_extension", "supervisor"),
            ("feedback", "unit-pwr02")]
    assert bots.units["unit-pwr01"].counts == Counter(request_return=3)
    assert bots.refusals() == {}


async def test_a_refused_return_stays_and_an_approved_one_goes_on_from_the_pool(unit_api):
    refused = await _complaint(unit_api, "PWR00")
    bots = Bots(unit_api.base, {"unit-pwr00": UnitPace(return_share=1.0, extension_share=0, late_share=0)},
                DeskHabits(reroute_share=0.0, approve_return_share=0.0))
    await bots.rounds(8)
    code, ticket = await unit_api.call("GET", f"/api/tickets/{refused}", "supervisor")
    assert ticket["state"] == "resolved"  # refused once, then accepted and answered (a return is asked once)
    assert [e[0] for e in await unit_api.events(refused)][:3] == ["assign", "request_return", "refuse_return"]
    approved = await _complaint(unit_api, "PWR00")
    bots.desk.habits = DeskHabits(reroute_share=0.0, approve_return_share=1.0)
    bots.desk.reroute = {"PWR00": ["PWR01"]}
    await bots.rounds(8)
    code, ticket = await unit_api.call("GET", f"/api/tickets/{approved}", "supervisor")
    assert (ticket["state"], ticket["unit_id"]) == ("assigned", "PWR01")  # PWR01 has no bot here
    assert [e[:3] for e in await unit_api.events(approved)][:4] == [
        ("assign", "dispatcher", "new"), ("request_return", "unit-pwr00", "assigned"),
        ("approve_return", "dispatcher", "assigned"), ("assign", "dispatcher", "returned")]
    assert bots.refusals() == {}


async def test_a_unit_answers_the_supervisions_its_units_hold_after_a_delay_and_no_other(unit_api):
    mine, other = await unit_api.new("power", unit="PWR00"), await unit_api.new("water", unit="WAT01")
    for number in (mine, other):
        code, body = await unit_api.call("POST", f"/api/tickets/{number}/supervision", "supervisor",
                                         {"message": "请尽快办理并反馈"})
        assert code == 201, body
    bots = Bots(unit_api.base, {"unit-pwr00": UnitPace(return_share=0, extension_share=0, late_share=0)}, DeskHabits())

    async def answered(number: str) -> list:
        code, body = await unit_api.call("GET", f"/api/tickets/{number}/supervision", "supervisor")
        assert code == 200, body
        return [(s["answered_by"], s["answer"]) for s in body["supervisions"]]

    await bots.rounds(1)  # seen: its answer is due within 15 min to 4 h (simulated)
    assert await answered(mine) == [(None, None)]
    await bots.rounds(1)
    assert [by for by, _ in await answered(mine)] == ["unit-pwr00"]
    assert (await answered(mine))[0][1] in SUPERVISION_ANSWERS
    assert await answered(other) == [(None, None)]  # WAT01's: not this liaison's
    assert bots.units["unit-pwr00"].counts["answer_supervision"] == 1 and bots.refusals() == {}


async def test_a_station_hands_a_repair_the_center_sent_it_to_its_own_crew(unit_api):
    repair = await unit_api.new(type="repair", unit="PWR01")  # a person at the console sent it to the station
    bots = Bots(unit_api.base, {"unit-pwr01": UnitPace(return_share=0, extension_share=0, late_share=0)}, DeskHabits())
    bots.units["unit-pwr01"].crews = {"PWR01": ("C11",), "PWR02": ("C21",)}
    await bots.rounds(4)
    code, ticket = await unit_api.call("GET", f"/api/tickets/{repair}", "supervisor")
    assert (ticket["state"], ticket["crew_id"]) == ("dispatched", "C11")
    assert [e[:2] for e in await unit_api.events(repair)] == [("assign", "dispatcher"), ("unit_accept", "unit-pwr01"),
                                                              ("hand_to_crew", "unit-pwr01")]
    assert bots.refusals() == {}


# ------------------------------------------------------------------------------ in the demo

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from tests.procs import start_demo

    tmp = tmp_path_factory.mktemp("units-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=1, SIM_UNITS="1", SIM_CALLERS="0", SIM_CREWS="0",
                         SIM_CALLBACKS="0", SIM_SENSORS="0", SIM_SCENARIO="", SIM_SPEEDUP="20000")
    yield running
    running.stop()


@pytest.mark.process
def test_in_the_demo_a_complaint_goes_through_the_desk_to_its_unit_and_is_answered(demo):
    import time

    agent = demo.login("agent")
    place = demo.get("/api/address/search?q=%E5%A4%A7%E8%A1%97100%E5%8F%B7&limit=1", agent)["candidates"][0]
    number = demo.post("/api/tickets", agent, {
        "channel": "phone", "category": "power", "type": "complaint", "urgency": "normal",
        "description": "抄表员态度很差", "caller_phone": "13905551234", "lon": place["lon"], "lat": place["lat"],
        "address": place["label"], "link": False})["ticket"]["number"]
    supervisor = demo.login("supervisor")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ticket = demo.get(f"/api/tickets/{number}", supervisor)
        if ticket["state"] == "resolved":
            break
        time.sleep(0.5)
    assert (ticket["state"], ticket["unit_id"]) == ("resolved", "PWR00"), ticket
    assert ticket["resolution"] in COMPLAINTS["power"] and ticket["signed_by"]
    actors = {e["action"]: e["actor_id"] for e in demo.get(f"/api/tickets/{number}/timeline", supervisor)["events"]}
    assert actors["unit_accept"] == actors["feedback"] == "unit-pwr00"
    assert actors["assign"] in ("dispatcher", "system")  # the desk, or the system once a review chain passed
