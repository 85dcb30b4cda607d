"""Crew bots and route following: vehicles drive road routes at road speeds, crews work their
assignments in order with the version they last read, the callback desk closes the loop."""
from __future__ import annotations

import asyncio
import random
import re
from collections import Counter

import pytest
import shapely

from gis.routing import RoadGraph
from simulators.crews import (DECLINE_REASONS, RESOLUTIONS, CallbackBot, CrewBot, CrewTiming, ground_m,
                              satisfaction_shares, since_dispatch_s)
from simulators.roads import RoadNet, Trip, TripError
from simulators.vehicles import SimVehicle

# A small town: three east-west roads (60, 40, 25 km/h) and three north-south lanes (25 km/h),
# about 450 m apart, split at the junctions; the middle lane runs one way, northwards.
LON0, LAT0, STEP = 119.74, 36.37, 0.005
XS = [LON0 + i * STEP for i in range(3)]
YS = [LAT0 + j * STEP * 0.8 for j in range(3)]
EW_SPEED = (60.0, 40.0, 25.0)


def _town() -> tuple[list[list[tuple[float, float]]], list[float], list[bool]]:
    lines, speeds, oneway = [], [], []
    for j, y in enumerate(YS):
        for a, b in zip(XS, XS[1:]):
            lines.append([(a, y), ((a + b) / 2, y + 0.0002), (b, y)])
            speeds.append(EW_SPEED[j])
            oneway.append(False)
    for i, x in enumerate(XS):
        for a, b in zip(YS, YS[1:]):
            lines.append([(x, a), (x, b)])
            speeds.append(25.0)
            oneway.append(i == 1)
    return lines, speeds, oneway


LINES, SPEEDS, ONEWAY = _town()
NET = RoadNet(LINES, SPEEDS, ONEWAY)
GRAPH = RoadGraph.from_lines([shapely.LineString(line) for line in LINES], SPEEDS, ONEWAY)


def route(origin, target):
    """The router the crews use: the road graph's fastest path geometry."""
    found = GRAPH.travel_time(origin, target)
    return None if found is None else found.geometry


def _vehicle_at(point: tuple[float, float]) -> SimVehicle:
    vehicle = SimVehicle("V99", "GP", 0, True)
    vehicle.drive(Trip([point, (point[0] + 1e-6, point[1])], [20.0]))
    vehicle.trip.pos = vehicle.trip.length  # parked at the point
    return vehicle


# ---------------------------------------------------------------------- route following
@pytest.mark.parametrize("origin, target, dt", [
    ((XS[0] + 0.0003, YS[0] - 0.0002), (XS[2] - 0.0004, YS[2] + 0.0003), 1.0),
    ((XS[2], YS[0] + 0.001), (XS[0] + 0.001, YS[1] + 0.0002), 1.0),
    ((XS[1] + 0.0001, YS[0] + 0.0005), (XS[1] - 0.0001, YS[2] - 0.0005), 0.5),
    ((XS[0], YS[2]), (XS[2] + 0.0002, YS[0]), 0.2),
])
def test_a_vehicle_follows_the_road_route_to_its_target_within_road_speeds(origin, target, dt):
    found = GRAPH.travel_time(origin, target)
    trip = NET.trip_along(found.geometry)
    assert trip.length == pytest.approx(found.metres, rel=0.01)
    vehicle = _vehicle_at(origin)
    vehicle.drive(trip)
    rng, elapsed, top = random.Random(3), 0.0, 0.0
    while not vehicle.arrived and elapsed < 3600:
        before = trip.pos
        vehicle.step(NET, rng, dt)
        elapsed += dt
        limit = trip.limit(trip.pos)
        edge, _, gap = NET.locate(vehicle.position(NET)[:2])
        road_limit = NET.edges[edge].speed_kmh / 3.6 if gap <= 3.0 else 20.0 / 3.6
        assert vehicle.speed <= limit + 1e-9
        assert vehicle.speed <= max(road_limit, limit) + 1e-9
        assert trip.pos - before <= max(trip.speeds_kmh) / 3.6 * dt + 1e-6  # no teleporting
        top = max(top, vehicle.speed)
    lon, lat, _ = vehicle.position(NET)
    assert ground_m((lon, lat), target) < 3.0
    assert vehicle.speed == 0.0
    assert elapsed >= found.seconds * 0.999  # never faster than the roads allow
    assert elapsed <= found.seconds * 2.0 + 60
    assert top > 20 / 3.6  # it did get up to road speed somewhere


def test_trip_speeds_come_from_the_roads_and_off_road_legs_are_slow():
    found = GRAPH.travel_time((XS[0] + 0.0005, YS[0] - 0.0004), (XS[1] + 0.0005, YS[0] + 0.0004))
    trip = NET.trip_along(found.geometry)
    assert trip.speeds_kmh[0] == 20.0 and trip.speeds_kmh[-1] == 20.0  # access legs
    assert set(trip.speeds_kmh[1:-1]) == {60.0}  # along the 60 km/h southern road


@pytest.mark.parametrize("coords, speeds", [
    ([(LON0, LAT0)], []),
    ([(LON0, LAT0), (LON0 + 0.001, LAT0)], [0.0]),
    ([(LON0, LAT0), (LON0 + 0.001, LAT0)], [30.0, 40.0]),
])
def test_a_trip_that_cannot_be_driven_is_refused(coords, speeds):
    with pytest.raises(TripError):
        Trip(coords, speeds)


def test_a_vehicle_leaves_its_route_and_cruises_the_network_again():
    vehicle = _vehicle_at((XS[1] + 0.0003, YS[1] + 0.00005))
    vehicle.roam(NET, random.Random(1))
    assert vehicle.trip is None
    lon, lat, _ = vehicle.position(NET)
    assert ground_m((lon, lat), (XS[1] + 0.0003, YS[1] + 0.00005)) < 15.0  # the nearest road, no jump
    for _ in range(30):
        vehicle.step(NET, random.Random(2), 1.0)
    assert ground_m(vehicle.position(NET)[:2], (lon, lat)) > 10.0


# ---------------------------------------------------------------------- a fake center
FLOW = {"accept": ({"dispatched"}, "accepted"), "decline": ({"dispatched"}, "declined"),
        "depart": ({"accepted"}, "en_route"), "arrive": ({"accepted", "en_route"}, "on_site"),
        "resolve": ({"on_site"}, "resolved")}
REQUIRED = {"decline": "reason", "resolve": "resolution"}


class FakeCenter:
    """The ticket API as a crew sees it, with version checks, for one crew."""

    def __init__(self, crew_id: str, vehicle: SimVehicle | None = None, gps_radius_m: float | None = None,
                 bump_after: str | None = None):
        self.crew_id, self.vehicle = crew_id, vehicle
        self.gps_radius_m, self.bump_after = gps_radius_m, bump_after
        self.tickets: dict[str, dict] = {}
        self.log: list[tuple[str, str, int, int]] = []  # (ticket, action, expected_version, version before)
        self.arrive_distance: float | None = None
        self.callbacks: dict[str, dict] = {}
        self.answers: list[tuple[str, str, int]] = []

    def dispatch(self, number: str, lon: float, lat: float, category: str = "water") -> None:
        self.tickets[number] = {"number": number, "state": "dispatched", "version": 2, "crew_id": self.crew_id,
                                "lon": lon, "lat": lat, "category": category, "dispatched_at": number}

    def _distance(self, ticket: dict) -> float:
        lon, lat, _ = self.vehicle.position(NET)
        return ground_m((lon, lat), (ticket["lon"], ticket["lat"]))

    def gps_check(self) -> None:
        """The center's GPS arrival detection."""
        for t in self.tickets.values():
            if self.gps_radius_m and t["state"] in ("accepted", "en_route") and self._distance(t) <= self.gps_radius_m:
                t.update(state="on_site", version=t["version"] + 1)
                self.log.append((t["number"], "arrive:gps", 0, t["version"] - 1))

    async def get(self, path: str):
        await asyncio.sleep(0)
        self.gps_check()
        if path.startswith("/api/callbacks"):
            return 200, {"tickets": [dict(t) for t in self.callbacks.values() if t["state"] == "resolved"]}
        if path.startswith("/api/tickets?"):
            return 200, {"tickets": [dict(t) for t in self.tickets.values() if t["crew_id"] == self.crew_id]}
        number = path.rsplit("/", 1)[1]
        ticket = self.tickets.get(number)
        if ticket is None or ticket["crew_id"] != self.crew_id:
            return 404, {"error": {"code": "ticket_not_found"}}
        return 200, dict(ticket)

    async def send(self, path: str, body: dict):
        await asyncio.sleep(0)
        if path.endswith("/callback"):
            number = path.split("/")[3]
            ticket = self.callbacks[number]
            if body["expected_version"] != ticket["version"]:
                return 409, {}
            self.answers.append((number, body["satisfaction"], body["expected_version"]))
            ticket.update(state="reopened" if body["satisfaction"] == "dissatisfied" else "closed",
                          version=ticket["version"] + 2)
            return 200, {"ticket": dict(ticket)}
        m = re.fullmatch(r"/api/tickets/([^/]+)/actions/([a-z_]+)", path)
        number, action = m.groups()
        ticket = self.tickets.get(number)
        if ticket is None or ticket["crew_id"] != self.crew_id:
            return 404, {}
        if body.get("expected_version") != ticket["version"]:
            return 409, {"error": {"code": "conflict"}}
        sources, target = FLOW[action]
        if ticket["state"] not in sources:
            return 409, {"error": {"code": "invalid_transition"}}
        if action in REQUIRED and not body.get(REQUIRED[action]):
            return 400, {}
        self.log.append((number, action, body["expected_version"], ticket["version"]))
        if action == "arrive" and self.vehicle is not None:
            self.arrive_distance = self._distance(ticket)
        ticket.update(state=target, version=ticket["version"] + 1, **{k: v for k, v in body.items()
                                                                      if k in ("reason", "resolution")})
        if action == "decline":
            ticket["crew_id"] = None
        if action == self.bump_after:  # someone else touches the ticket (a note): our version is stale
            ticket["version"] += 1
        return 200, {"ticket": dict(ticket)}


async def _drive(vehicle: SimVehicle, stop: asyncio.Event) -> None:
    """Time runs fast for the vehicle: one simulated second per millisecond."""
    rng = random.Random(5)
    while not stop.is_set():
        vehicle.step(NET, rng, 1.0)
        await asyncio.sleep(0.001)


FAST = CrewTiming(accept_s=(30, 120), depart_s=(30, 60), repair_s=(600, 1200), poll_s=0.01, decline_share=0.0)


async def _run_until(center: FakeCenter, bot: CrewBot, vehicle: SimVehicle | None, done, timeout: float = 20.0):
    stop = asyncio.Event()
    tasks = [asyncio.create_task(bot.run(stop))]
    if vehicle is not None:
        tasks.append(asyncio.create_task(_drive(vehicle, stop)))
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@pytest.mark.parametrize("arrival, bump_after, expected", [
    ("button", None, [("accept", 2), ("depart", 3), ("arrive", 4), ("resolve", 5)]),
    ("gps", None, [("accept", 2), ("depart", 3), ("arrive:gps", 0), ("resolve", 5)]),
    ("button", "accept", [("accept", 2), ("depart", 4), ("arrive", 5), ("resolve", 6)]),
])
async def test_a_crew_accepts_departs_drives_arrives_and_resolves_in_order(arrival, bump_after, expected):
    home = (XS[0] + 0.0002, YS[0] - 0.0003)
    vehicle = _vehicle_at(home)
    center = FakeCenter("C07", vehicle, gps_radius_m=80.0 if arrival == "gps" else None, bump_after=bump_after)
    site = (XS[2] - 0.0005, YS[1] + 0.0003)
    center.dispatch("GD20261122-0001", *site)
    bot = CrewBot("C07", center.get, center.send, vehicle=vehicle, net=NET, router=route, home=home,
                  speedup=1e5, timing=FAST, rng=random.Random(1))
    ticket = center.tickets["GD20261122-0001"]
    await _run_until(center, bot, vehicle, lambda: ticket["state"] == "resolved" and vehicle.arrived
                     and ground_m(vehicle.position(NET)[:2], home) < 5)
    assert [(action, version) for _, action, version, _ in center.log] == expected
    assert all(sent == before for _, action, sent, before in center.log if sent)  # the version last read
    assert ticket["resolution"] in RESOLUTIONS["water"]
    if arrival == "button":
        assert center.arrive_distance <= 50.0  # pressed on arriving, not before
    assert vehicle.trip.end == pytest.approx(home, abs=1e-4)  # then drove back to the station


async def test_a_busy_crew_takes_the_next_job_before_going_home():
    home = (XS[0], YS[0])
    vehicle = _vehicle_at(home)
    center = FakeCenter("C02", vehicle)
    center.dispatch("GD20261122-0001", XS[1] + 0.0004, YS[0] + 0.0002)
    center.dispatch("GD20261122-0002", XS[2] - 0.0003, YS[2] - 0.0002)
    bot = CrewBot("C02", center.get, center.send, vehicle=vehicle, net=NET, router=route, home=home,
                  speedup=1e5, timing=FAST, rng=random.Random(2))
    await _run_until(center, bot, vehicle, lambda: all(t["state"] == "resolved" for t in center.tickets.values()))
    order = [(n[-1], a) for n, a, _, _ in center.log if a in ("arrive", "resolve")]
    assert order == [("1", "arrive"), ("1", "resolve"), ("2", "arrive"), ("2", "resolve")]
    assert bot.counts["accept"] == 2


@pytest.mark.parametrize("share, low, high", [(0.0, 0, 0), (0.3, 40, 80), (1.0, 200, 200)])
def test_crews_decline_the_configured_share(share, low, high):
    bot = CrewBot("C01", None, None, timing=CrewTiming(decline_share=share), rng=random.Random(11))
    assert low <= sum(bot.declines() for _ in range(200)) <= high


async def test_a_declining_crew_gives_a_reason_and_never_accepts():
    center = FakeCenter("C03")
    center.dispatch("GD20261122-0009", XS[1], YS[1])
    bot = CrewBot("C03", center.get, center.send, speedup=1e5, rng=random.Random(4),
                  timing=CrewTiming(poll_s=0.01, decline_share=1.0))
    ticket = center.tickets["GD20261122-0009"]
    await _run_until(center, bot, None, lambda: ticket["state"] == "declined")
    assert [(a, v) for _, a, v, _ in center.log] == [("decline", 2)]
    assert ticket["reason"] in DECLINE_REASONS and ticket["crew_id"] is None


@pytest.mark.parametrize("dissatisfied, low, high", [(0.1, 8, 35), (0.0, 0, 0), (1.0, 200, 200)])
async def test_the_callback_desk_closes_most_and_reopens_the_dissatisfied_share(dissatisfied, low, high):
    center = FakeCenter("C01")
    for n in range(200):
        center.callbacks[f"GD20261122-{n:04d}"] = {"number": f"GD20261122-{n:04d}", "state": "resolved",
                                                    "version": 6 + n % 3}
    versions = {n: t["version"] for n, t in center.callbacks.items()}
    bot = CallbackBot(center.get, center.send, speedup=1e6, delay_s=(0.0, 0.0), rng=random.Random(9),
                      shares=satisfaction_shares(dissatisfied))
    assert await bot.poll() == 200
    answers = Counter(answer for _, answer, _ in center.answers)
    assert sum(answers.values()) == 200
    assert low <= answers["dissatisfied"] <= high
    if dissatisfied < 1.0:
        assert answers["satisfied"] > answers["basically_satisfied"] > 0
    assert all(version == versions[n] for n, _, version in center.answers)
    reopened = [n for n, t in center.callbacks.items() if t["state"] == "reopened"]
    assert len(reopened) == answers["dissatisfied"]
    assert await bot.poll() == 0  # nothing left waiting


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_dissatisfied_share_outside_0_1_is_refused(share):
    with pytest.raises(ValueError, match="0..1"):
        satisfaction_shares(share)


class DispatchDesk:
    """The console's API as the dispatcher bot sees it: the queue, recommendations, assign."""

    def __init__(self) -> None:
        self.tickets = {f"GD20261122-{n:04d}": {"number": f"GD20261122-{n:04d}", "state": state, "version": 2}
                        for n, state in enumerate(["new", "declined", "dispatched", "new", "returned"], 1)}
        self.crews = {"GD20261122-0004": []}  # no candidate for this one
        self.assigned: list[tuple[str, str]] = []

    async def get(self, path: str):
        if path.startswith("/api/tickets?"):
            return 200, {"tickets": list(self.tickets.values())}
        number = path.split("/")[3]
        crews = self.crews.get(number, [{"crew_id": "C02"}, {"crew_id": "C01"}])
        return 200, {"recommendations": crews}

    async def send(self, path: str, body: dict):
        ticket = self.tickets[path.split("/")[3]]
        if body["expected_version"] != ticket["version"]:
            return 409, {"error": {"code": "conflict"}}
        ticket.update(state="dispatched", version=ticket["version"] + 1)
        self.assigned.append((ticket["number"], body["crew_id"]))
        return 200, {"ticket": ticket}


async def test_the_dispatcher_bot_confirms_top_recommendations_after_its_delay():
    from simulators.crews import DispatcherBot

    desk, now = DispatchDesk(), [0.0]
    bot = DispatcherBot(desk.get, desk.send, speedup=1.0, delay_s=(60.0, 60.0), clock=lambda: now[0])
    assert await bot.poll() == 0 and desk.assigned == []  # seen, not yet due
    now[0] = 61.0
    desk.tickets["GD20261122-0005"]["version"] = 3  # changed meanwhile (a new version waits anew)
    assert await bot.poll() == 2
    assert desk.assigned == [("GD20261122-0001", "C02"), ("GD20261122-0002", "C02")]
    assert bot.left == {"no_candidate": 1}  # left to a person
    now[0] = 200.0
    assert await bot.poll() == 1 and desk.assigned[-1] == ("GD20261122-0005", "C02")


@pytest.mark.parametrize("now, dispatched_at, passed", [
    ("2026-11-22T08:10:00Z", "2026-11-22T08:00:00Z", 600.0),
    ("2026-11-22T08:00:00.500000Z", "2026-11-22T08:00:00Z", 0.5),
    ("2026-11-22T08:00:00Z", "2026-11-22T08:00:30Z", 0.0),   # a clock a little behind: nothing passed
    (None, "2026-11-22T08:00:00Z", 0.0), ("2026-11-22T08:00:00Z", None, 0.0), ("soon", "earlier", 0.0),
])
def test_the_time_since_dispatch_comes_from_the_centers_clock(now, dispatched_at, passed):
    assert since_dispatch_s(now, dispatched_at) == passed


@pytest.mark.parametrize("passed, waited", [(0.0, 150.0), (100.0, 50.0), (400.0, 0.0)])
async def test_a_crews_delay_to_accept_counts_from_the_dispatch(passed, waited):
    """On a fast clock a poll sees an assignment minutes (simulated) after its dispatch: the crew's
    human delay counts from the dispatch, as a pushed notification's would."""
    center = FakeCenter("C04")
    center.dispatch("GD20261122-0004", XS[1], YS[1])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    bot = CrewBot("C04", center.get, center.send, speedup=10.0, rng=random.Random(3), sleep=sleep,
                  timing=CrewTiming(accept_s=(150.0, 150.0), decline_share=0.0))
    assert await bot.decide("GD20261122-0004", passed) == "accept"
    assert slept == [pytest.approx(waited / 10.0)]
