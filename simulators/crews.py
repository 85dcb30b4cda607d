"""Crew bots and the callback desk: the people who work the tickets, through the same HTTP API.

A ``CrewBot`` is one repair crew with its crew-app account: it polls its assignments
(``GET /api/tickets``; a crew sees only its own), accepts a new one after a short human delay
(declines a configurable share, with a reason), departs, makes its simulated vehicle drive the
road route to the ticket (``gis.routing.RoadGraph`` geometry at road speeds), presses *arrive*
within ``arrive_radius_m`` (unless the center already recorded the arrival from GPS), stays on
site for a repair time, resolves with a note, then takes the next job or drives back to its
station. Every action carries the ``expected_version`` last read; a conflict re-reads and retries.

A ``CallbackBot`` is the agent desk calling citizens back (回访): it lists ``GET /api/callbacks``
and records satisfied / basically satisfied, or dissatisfied (which reopens the ticket).

Delays are in simulated seconds and pass ``speedup`` times faster; driving is real time (the
vehicles report 1 Hz NMEA at plausible speeds), or ``CLOCK_SPEEDUP`` times faster on the center's
fast clock (`runtime.clock`). A crew's delay to accept counts from the assignment's dispatch time on
the center's clock (as a pushed notification would), not from when its poll first saw it: on a
fast clock a poll's wall seconds are many simulated minutes.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

from store.streams import pause as stop_or_timeout
from simulators.callers import HttpApi
from simulators.roads import RoadNet, Trip
from simulators.vehicles import SimVehicle

log = logging.getLogger(__name__)

LonLat = tuple[float, float]
Get = Callable[[str], Awaitable[tuple[int, Any]]]
Send = Callable[[str, dict], Awaitable[tuple[int, Any]]]
Router = Callable[[LonLat, LonLat], Sequence[LonLat] | None]
Sleep = Callable[[float], Awaitable[Any]]

WORKING = ("accepted", "en_route", "on_site")
DECLINE_REASONS = ("车辆故障，正在维修", "班组人员不足，无法出车", "正在处理其他抢修，距离太远", "缺少所需的抢修器材")
RESOLUTIONS = {
    "water": ("已关阀止水，更换破损管段，恢复供水", "已抢修漏水管道，现场清理完毕，水压恢复正常",
              "更换故障阀门，管道冲洗后恢复供水"),
    "power": ("已更换熔断器，恢复送电", "线路故障已排除，恢复正常供电", "更换损坏的表后开关，用户已恢复用电"),
    "gas": ("已关闭燃气阀门并排查泄漏点，更换密封件，检测无泄漏后恢复供气", "燃气管道接口紧固，检测合格"),
    "heating": ("已排气并调整阀门，室温恢复正常", "更换漏水暖气片阀门，系统补水完毕"),
    "drainage": ("已疏通堵塞管道，排水恢复正常", "清掏雨水口淤泥，积水已排除"),
    "sanitation": ("已安排清运，现场清理完毕",),
    "other": ("现场隐患已排除，已清理现场",),
}
SATISFACTION = (("satisfied", 0.7), ("basically_satisfied", 0.2), ("dissatisfied", 0.1))


def satisfaction_shares(dissatisfied: float) -> tuple[tuple[str, float], ...]:
    """Callback answers with this dissatisfied share, the rest 7:2 satisfied : basically satisfied."""
    if not 0.0 <= dissatisfied <= 1.0:
        raise ValueError(f"a share must be within 0..1, not {dissatisfied}")
    rest = 1.0 - dissatisfied
    return (("satisfied", rest * 7 / 9), ("basically_satisfied", rest * 2 / 9), ("dissatisfied", dissatisfied))

WORDS = {"satisfied": ("修得很快，谢谢你们", "师傅很专业，满意", "挺好的，辛苦了"),
         "basically_satisfied": ("修好了，就是来得有点慢", "基本满意，希望以后通知早一点"),
         "dissatisfied": ("还是有问题，没修好", "修完第二天又坏了", "现场没清理干净")}


def ground_m(a: LonLat, b: LonLat) -> float:
    """Metres between two nearby (lon, lat) points (local flat approximation, for the simulator)."""
    k = math.cos(math.radians((a[1] + b[1]) / 2))
    return math.hypot((b[0] - a[0]) * 111_320.0 * k, (b[1] - a[1]) * 111_320.0)


def since_dispatch_s(now: Any, dispatched_at: Any) -> float:
    """Simulated seconds from an assignment's dispatch to the list's ``now`` (both ISO 8601 from
    the API, on the center's clock); 0 when either is missing or unreadable."""
    from datetime import datetime

    try:
        passed = (datetime.fromisoformat(now.replace("Z", "+00:00"))
                  - datetime.fromisoformat(dispatched_at.replace("Z", "+00:00"))).total_seconds()
    except (AttributeError, TypeError, ValueError):
        return 0.0
    return max(0.0, passed)


class ApiClient(HttpApi):
    """``HttpApi`` with JSON answers: ``get(path)`` and ``send(path, body)`` return (status, JSON)."""

    async def _request(self, method: str, path: str, body: dict | None) -> tuple[int, Any]:
        import tornado.httpclient

        for attempt in range(2):
            if self._token is None:
                await self._login()
            try:
                response = await tornado.httpclient.AsyncHTTPClient().fetch(
                    self.base_url + path, method=method, raise_error=False, request_timeout=20,
                    body=None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8"),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._token}"})
            except tornado.httpclient.HTTPClientError as exc:  # timeout
                return exc.code, None
            if response.code == 401 and attempt == 0:
                self._token = None
                continue
            try:
                return response.code, json.loads(response.body) if response.body else None
            except ValueError:
                return response.code, None
        return 401, None

    async def get(self, path: str) -> tuple[int, Any]:
        """GET a JSON path."""
        return await self._request("GET", path, None)

    async def send(self, path: str, body: dict) -> tuple[int, Any]:
        """POST JSON, returning the status and the JSON answer."""
        return await self._request("POST", path, body)


@dataclass(frozen=True)
class CrewTiming:
    """A crew's human pace, in simulated seconds (ranges drawn uniformly), and its polling rate."""

    accept_s: tuple[float, float] = (30.0, 120.0)
    depart_s: tuple[float, float] = (30.0, 180.0)
    repair_s: tuple[float, float] = (900.0, 2700.0)
    poll_s: float = 2.0              # wall seconds between two looks at the assignments
    arrive_radius_m: float = 50.0
    decline_share: float = 0.05


class CrewBot:
    """One crew working its assignments: accept/decline, depart, drive, arrive, repair, resolve."""

    def __init__(self, crew_id: str, get: Get, send: Send, *, vehicle: SimVehicle | None = None,
                 net: RoadNet | None = None, router: Router | None = None, home: LonLat | None = None,
                 speedup: float = 1.0, timing: CrewTiming = CrewTiming(), rng: random.Random | None = None,
                 sleep: Sleep = asyncio.sleep):
        """``router(origin, target)`` -> the road polyline (blocking, run in a thread); without one
        (or when it finds nothing) the vehicle drives straight at access speed."""
        if speedup <= 0:
            raise ValueError(f"speed-up must be positive, not {speedup}")
        self.crew_id = crew_id
        self._get, self._send = get, send
        self.vehicle, self.net, self.router, self.home = vehicle, net, router, home
        self.speedup, self.timing = speedup, timing
        self._rng = rng or random.Random(crew_id)
        self._sleep = sleep
        self.handled: set[str] = set()          # assignments decided (accepted or declined)
        self.jobs: asyncio.Queue[str] = asyncio.Queue()
        self.actions: list[tuple[str, str, int]] = []  # (ticket, action, expected_version) sent and accepted
        self.counts: Counter = Counter()
        self.current: str | None = None

    # ------------------------------------------------------------------ API helpers
    async def _wait_sim(self, bounds: tuple[float, float], passed_s: float = 0.0) -> None:
        """Wait a delay drawn from ``bounds`` (simulated s), less ``passed_s`` of it already gone."""
        await self._sleep(max(0.0, self._rng.uniform(*bounds) - passed_s) / self.speedup)

    async def ticket(self, number: str) -> dict | None:
        """The ticket as this crew sees it now; None when it is no longer this crew's."""
        status, body = await self._get(f"/api/tickets/{number}")
        if status != 200 or not isinstance(body, dict) or body.get("crew_id") != self.crew_id:
            return None
        return body

    async def act(self, number: str, action: str, args: Mapping[str, Any], from_states: Sequence[str],
                  ticket: dict | None = None) -> dict | None:
        """Perform an action if the ticket is still in one of ``from_states``; re-read and retry on
        a version conflict. Returns the ticket after the action, the unchanged ticket when the
        action no longer applies, or None when the ticket is gone from this crew."""
        for _ in range(4):
            ticket = ticket or await self.ticket(number)
            if ticket is None or ticket.get("state") not in from_states:
                return ticket
            version = ticket["version"]
            status, body = await self._send(f"/api/tickets/{number}/actions/{action}",
                                            {"expected_version": version, **args})
            if status == 200 and isinstance(body, dict):
                self.actions.append((number, action, version))
                self.counts[action] += 1
                return body.get("ticket") or await self.ticket(number)
            self.counts[f"{action}:{status}"] += 1
            if status not in (409, 599, None):
                log.warning("crew %s: %s %s refused (%s): %s", self.crew_id, action, number, status, body)
                return await self.ticket(number)
            ticket = None  # conflict: someone (the center's GPS arrival, a dispatcher) changed it
        return await self.ticket(number)

    # ------------------------------------------------------------------ inbox: new assignments
    async def poll(self) -> list[dict]:
        """Look at the assignments once: decide the new ones, queue work not yet queued."""
        status, body = await self._get("/api/tickets?limit=100")
        if status != 200 or not isinstance(body, dict):
            self.counts[f"list:{status}"] += 1
            return []
        tickets = [t for t in body.get("tickets", []) if t.get("crew_id") == self.crew_id]
        for t in sorted(tickets, key=lambda t: t.get("dispatched_at") or ""):
            number = t["number"]
            if t["state"] == "dispatched" and number not in self.handled:
                self.handled.add(number)
                await self.decide(number, since_dispatch_s(body.get("now"), t.get("dispatched_at")))
            elif t["state"] in WORKING and number not in self.handled:  # e.g. after a restart
                self.handled.add(number)
                self.jobs.put_nowait(number)
        return tickets

    def declines(self) -> bool:
        """Whether this crew declines the next assignment (drawn with the decline share)."""
        return self._rng.random() < self.timing.decline_share

    async def decide(self, number: str, passed_s: float = 0.0) -> str | None:
        """After a human delay (less ``passed_s``, the simulated seconds since it was dispatched),
        accept (and queue) or decline a new assignment; the action taken."""
        await self._wait_sim(self.timing.accept_s, passed_s)
        if self.declines():
            after = await self.act(number, "decline", {"reason": self._rng.choice(DECLINE_REASONS)}, ("dispatched",))
            return "decline" if after is None or after.get("state") != "dispatched" else None
        after = await self.act(number, "accept", {}, ("dispatched",))
        if after is not None and after.get("state") in WORKING:
            self.jobs.put_nowait(number)
            return "accept"
        return None

    # ------------------------------------------------------------------ work: one job at a time
    def _position(self) -> LonLat | None:
        if self.vehicle is None or self.net is None:
            return None
        lon, lat, _ = self.vehicle.position(self.net)
        return lon, lat

    async def drive_to(self, target: LonLat) -> None:
        """Give the vehicle the road route from where it is to ``target``."""
        origin = self._position()
        if origin is None:
            return
        coords = None
        if self.router is not None:
            try:
                coords = await asyncio.to_thread(self.router, origin, target)
            except ValueError as exc:
                log.warning("crew %s: no route %s -> %s: %s", self.crew_id, origin, target, exc)
        if coords and len(coords) >= 2:
            trip = self.net.trip_along(coords)
        else:
            trip = Trip([origin, target], [20.0]) if ground_m(origin, target) > 0.5 else None
        if trip is not None:
            self.vehicle.drive(trip)

    def near(self, target: LonLat) -> bool:
        """Whether the vehicle is within the arrival radius of ``target`` (always, without a vehicle)."""
        here = self._position()
        return here is None or ground_m(here, target) <= self.timing.arrive_radius_m

    async def work(self, number: str) -> str | None:
        """Carry one accepted job to resolution; returns the last state seen (None: taken away)."""
        self.current = number
        ticket = await self.ticket(number)
        if ticket is not None and ticket["state"] == "accepted":
            await self._wait_sim(self.timing.depart_s)
            ticket = await self.act(number, "depart", {}, ("accepted",))
        if ticket is None or ticket["state"] not in WORKING:
            return None if ticket is None else ticket["state"]
        target = (float(ticket["lon"]), float(ticket["lat"])) if ticket.get("lon") is not None else None
        if ticket["state"] != "on_site" and target is not None:
            await self.drive_to(target)
            while not self.near(target):
                await self._sleep(min(1.0, self.timing.poll_s))
                fresh = await self.ticket(number)
                if fresh is None or fresh["state"] not in WORKING:
                    return None if fresh is None else fresh["state"]
                if fresh["state"] == "on_site":  # the center saw the arrival from GPS first
                    break
        ticket = await self.act(number, "arrive", {"source": "button"}, ("accepted", "en_route"))
        if ticket is None or ticket["state"] != "on_site":
            return None if ticket is None else ticket["state"]
        await self._wait_sim(self.timing.repair_s)
        texts = RESOLUTIONS.get(ticket.get("category"), RESOLUTIONS["other"])
        ticket = await self.act(number, "resolve", {"resolution": self._rng.choice(texts)}, ("on_site",))
        self.current = None
        return None if ticket is None else ticket["state"]

    async def _work_loop(self) -> None:
        while True:
            number = await self.jobs.get()
            try:
                await self.work(number)
            except (OSError, KeyError, ValueError) as exc:
                log.warning("crew %s: job %s failed: %s", self.crew_id, number, exc)
            self.current = None
            if self.jobs.empty() and self.home is not None:
                await self.drive_to(self.home)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and work until ``stop`` is set."""
        worker = asyncio.create_task(self._work_loop())
        try:
            while not stop.is_set():
                pause = self.timing.poll_s
                try:
                    await self.poll()
                except PermissionError as exc:  # no such account: do not hammer the login
                    self.counts["login_refused"] += 1
                    log.warning("crew %s: %s; trying again in a minute", self.crew_id, exc)
                    pause = 60.0
                except (OSError, ValueError) as exc:  # the web restarting: try again later
                    self.counts["poll_error"] += 1
                    log.debug("crew %s: poll failed: %s", self.crew_id, exc)
                await stop_or_timeout(stop, pause)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


class CallbackBot:
    """The agent desk's callbacks (回访): each resolved ticket gets a satisfaction answer."""

    def __init__(self, get: Get, send: Send, *, speedup: float = 1.0, delay_s: tuple[float, float] = (600.0, 3600.0),
                 shares: Sequence[tuple[str, float]] = SATISFACTION, poll_s: float = 3.0,
                 rng: random.Random | None = None, clock: Callable[[], float] | None = None):
        """``delay_s``: simulated seconds between noticing a resolved ticket and calling back."""
        self._get, self._send = get, send
        self.speedup, self.delay_s, self.poll_s = speedup, delay_s, poll_s
        self.shares = tuple(shares)
        self._rng = rng or random.Random(7)
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._due: dict[str, float] = {}
        self.answers: Counter = Counter()

    def satisfaction(self) -> str:
        """A citizen's answer, drawn with the configured shares."""
        roll, total = self._rng.random(), 0.0
        for answer, share in self.shares:
            total += share
            if roll < total:
                return answer
        return self.shares[-1][0]

    async def poll(self) -> int:
        """Call back every ticket whose delay has passed; returns how many were recorded."""
        status, body = await self._get("/api/callbacks?limit=100")
        if status != 200 or not isinstance(body, dict):
            return 0
        now, done = self._clock(), 0
        waiting = {t["number"]: t for t in body.get("tickets", [])}
        self._due = {n: due for n, due in self._due.items() if n in waiting}
        for number, ticket in waiting.items():
            due = self._due.setdefault(number, now + self._rng.uniform(*self.delay_s) / self.speedup)
            if due > now:
                continue
            answer = self.satisfaction()
            status, _ = await self._send(f"/api/tickets/{number}/callback", {
                "expected_version": ticket["version"], "satisfaction": answer,
                "words": self._rng.choice(WORDS[answer])})
            if status == 200:
                self.answers[answer] += 1
                done += 1
                self._due.pop(number, None)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        """Poll the callback queue until ``stop`` is set."""
        await poll_until(stop, self.poll, self.poll_s, "callbacks")


POOL = ("new", "reviewed", "declined", "returned", "reopened", "transferred")


class DispatcherBot:
    """The dispatcher at the console: confirms the top recommendation of each ticket waiting in
    the dispatch pool after a human-like delay (emergency repairs are dispatched by the system
    itself; a ticket with no candidate crew is left to a person)."""

    def __init__(self, get: Get, send: Send, *, speedup: float = 1.0, delay_s: tuple[float, float] = (60.0, 300.0),
                 poll_s: float = 2.0, rng: random.Random | None = None, clock: Callable[[], float] | None = None):
        """``delay_s``: simulated seconds between a ticket entering the pool and its assignment."""
        self._get, self._send = get, send
        self.speedup, self.delay_s, self.poll_s = speedup, delay_s, poll_s
        self._rng = rng or random.Random(11)
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._due: dict[tuple[str, int], float] = {}
        self.assigned = 0
        self.left: Counter = Counter()  # tickets left to a person, by reason

    async def poll(self) -> int:
        """Assign every pooled ticket whose delay has passed; returns how many were assigned."""
        status, body = await self._get("/api/tickets?state=open&sort=time_left&limit=100")
        if status != 200 or not isinstance(body, dict):
            return 0
        now, done = self._clock(), 0
        waiting = {(t["number"], t["version"]): t for t in body.get("tickets", [])
                   if t.get("state") in POOL and t.get("route") in (None, "station")}  # the desk sends the rest
        self._due = {key: due for key, due in self._due.items() if key in waiting}
        for key in waiting:
            due = self._due.setdefault(key, now + self._rng.uniform(*self.delay_s) / self.speedup)
            if due <= now and await self.assign(*key):
                done += 1
        return done

    async def assign(self, number: str, version: int) -> bool:
        """Assign the ticket to its top recommendation; False when there is none or it changed."""
        status, rec = await self._get(f"/api/tickets/{number}/recommendation")
        top = (rec.get("recommendations") or [None])[0] if status == 200 and isinstance(rec, dict) else None
        if top is None:
            self.left["no_candidate" if status == 200 else f"http_{status}"] += 1
            return False
        status, _ = await self._send(f"/api/tickets/{number}/assign",
                                     {"crew_id": top["crew_id"], "expected_version": version})
        if status != 200:
            self.left[f"assign_{status}"] += 1  # 409: someone (or the system) was faster
            return False
        self.assigned += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Poll the dispatch pool until ``stop`` is set."""
        await poll_until(stop, self.poll, self.poll_s, "dispatcher bot")


async def poll_until(stop: asyncio.Event, poll: Callable[[], Awaitable[Any]], every_s: float, name: str) -> None:
    """Call ``poll`` every ``every_s`` until ``stop``: a refused login waits a minute, a failed
    request is logged and tried again at the next round."""
    while not stop.is_set():
        pause = every_s
        try:
            await poll()
        except PermissionError as exc:
            log.warning("%s: %s; trying again in a minute", name, exc)
            pause = 60.0
        except (OSError, ValueError, KeyError) as exc:
            log.debug("%s: poll failed: %s", name, exc)
        await stop_or_timeout(stop, pause)
