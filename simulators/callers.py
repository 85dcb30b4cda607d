"""Callers: residents phoning the hotline, at a realistic daily curve, plus scenario bursts.

The background follows the 12319 line's day (quiet at night, a morning peak around 9-11 and an
afternoon one around 14-17) as a Poisson process in simulated time; a rate multiplier stages storm
days (x3). What each call is about follows the mix of ``simulators.callmix`` (most calls are
consultations the agent answers on the call, repairs a minority), and the daily volume the demo
uses is sized there from the city's crews (``sized_daily_calls``); the real line's ~3,300 calls a
day stays the generator's default for scenarios that ask for it. A few background callers call
again about what they called for (the same phone, trade and type, angrier). Scenario bursts add
calls from the residents of one area (a DMA, a feeder's supply areas, a circle), with repeat
callers. Same seed, same calls, however the time range is chopped into ticks.

Calls go through the same HTTP API the agent desk uses (``POST /api/tickets`` with a bearer
token from ``POST /api/login``; a consultation answered on the call carries its ``answer``);
``HttpApi`` does that, and anything with an async ``post(path, json) -> status`` can stand in for
it in tests.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable, Sequence
from zoneinfo import ZoneInfo

from simulators.callmix import HOURLY, CallKind, draw

log = logging.getLogger(__name__)

Place = tuple[str, float, float]  # (address, lon, lat)
Post = Callable[[str, dict], Awaitable[int]]

_MEAN = sum(HOURLY) / 24
REPEAT_SHARE = 0.03  # background calls that are someone calling again about what they called for
REPEATED_TYPES = ("service", "repair", "complaint")  # what people call again about (it takes time)
BURST_TEXT = {
    "water": ("家里停水了，整栋楼都没水", "路面冒水了，水管好像爆了", "水压很低，楼上根本没水",
              "小区停水了，什么时候能来水？"),
    "power": ("整个小区都停电了", "家里停电了，附近几栋楼都黑了", "停电了，冰箱里的东西要坏了",
              "突然停电了，电梯也停了"),
    "drainage": ("路上积水很深，车都过不去了", "小区地下车库进水了", "下水道冒水，院子里全是水"),
    "gas": ("楼道里有很浓的煤气味", "闻到燃气味，不敢开灯"),
    "other": ("大风把树刮倒了，压住了路", "广告牌被风吹得摇摇晃晃"),
}
REPEAT_TEXT = ("我又打来了，还是没修好，到底什么时候能好？", "第二次打电话了，一点动静都没有",
               "刚才打过电话了，现在情况更严重了")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰文辉建国志红"


@dataclass(frozen=True)
class Call:
    """One phone call, as the agent desk would file it, at a simulated time."""

    at: datetime
    caller_name: str
    caller_phone: str
    address: str
    lon: float
    lat: float
    category: str
    type: str
    urgency: str
    description: str
    channel: str = "phone"
    repeat: bool = False
    answer: str | None = None  # a consultation answered on the call (直接办结)

    def api_json(self) -> dict:
        """The ``POST /api/tickets`` body (``answer`` only when the agent answered on the call)."""
        body = asdict(self)
        del body["at"], body["repeat"]
        if body["answer"] is None:
            del body["answer"]
        return body


@dataclass(frozen=True)
class Caller:
    """A resident with a phone, at an address."""

    name: str
    phone: str
    place: Place


def rate_per_s(local_hour: float, daily_calls: float) -> float:
    """Expected calls per second at a local hour (linear between hourly values)."""
    h0 = int(local_hour) % 24
    f = local_hour - math.floor(local_hour)
    weight = HOURLY[h0] * (1 - f) + HOURLY[(h0 + 1) % 24] * f
    return daily_calls / 86400.0 * weight / _MEAN


class CallGenerator:
    """Seeded calls: the daily background plus scheduled bursts, ordered by time."""

    def __init__(self, places: Sequence[Place], *, seed: int = 1, daily_calls: float = 3300.0,
                 zone: str = "Asia/Shanghai"):
        if not places:
            raise ValueError("callers need at least one address")
        self.places = list(places)
        self.daily_calls = daily_calls
        self.multiplier = 1.0
        self._zone = ZoneInfo(zone)
        self._rng = random.Random(seed)
        self._burst_rng = random.Random(seed + 1)
        self._next: datetime | None = None
        self._candidate: tuple[datetime, float] | None = None
        self._scheduled: list[tuple[datetime, int, Call]] = []
        self._count = 0
        self._callers: list[tuple[Caller, CallKind]] = []  # who called about what (REPEATED_TYPES)

    def _max_rate(self) -> float:
        return self.daily_calls * self.multiplier / 86400.0 * max(HOURLY) / _MEAN

    def _caller(self, rng: random.Random, place: Place) -> Caller:
        phone = "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))
        return Caller(rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))),
                      phone, place)

    def _background_call(self, at: datetime) -> Call:
        rng = self._rng
        if self._callers and rng.random() < REPEAT_SHARE:  # someone calling back about the same thing
            caller, kind = rng.choice(self._callers)
            return Call(at, caller.name, caller.phone, *caller.place, kind.category, kind.type, kind.urgency,
                        rng.choice(REPEAT_TEXT), repeat=True)
        caller = self._caller(rng, rng.choice(self.places))
        kind = draw(rng)
        if kind.type in REPEATED_TYPES:
            self._callers = (self._callers + [(caller, kind)])[-500:]
        return Call(at, caller.name, caller.phone, *caller.place, kind.category, kind.type, kind.urgency,
                    kind.description, answer=kind.answer)

    def until(self, now: datetime) -> list[Call]:
        """Every call due up to ``now`` (background and bursts), in time order."""
        calls = []
        if self._next is None:
            self._next = now
        while self.multiplier > 0 and self.daily_calls > 0:
            top = self._max_rate()
            if self._candidate is None:  # drawn once and kept: ticks do not change the draws
                self._candidate = (self._next + timedelta(seconds=self._rng.expovariate(top)), top)
            candidate, drawn_top = self._candidate
            if candidate > now:
                break
            self._candidate = None
            self._next = candidate
            local = candidate.astimezone(self._zone)
            hour = local.hour + local.minute / 60 + local.second / 3600
            if self._rng.random() * drawn_top <= rate_per_s(hour, self.daily_calls) * self.multiplier:
                calls.append(self._background_call(candidate))
        if self.multiplier <= 0 or self.daily_calls <= 0:
            self._next, self._candidate = now, None
        while self._scheduled and self._scheduled[0][0] <= now:
            calls.append(heapq.heappop(self._scheduled)[2])
        calls.sort(key=lambda c: c.at)
        return calls

    def burst(self, start: datetime, count: int, over_s: float, places: Sequence[Place], *,
              category: str, type: str = "repair", urgency: str = "urgent",
              descriptions: Sequence[str] = (), repeat_share: float = 0.2) -> list[Call]:
        """Schedule ``count`` calls from residents of ``places`` within ``over_s`` of ``start``."""
        if not places:
            raise ValueError("a call burst needs at least one address in its area")
        rng = self._burst_rng
        texts = list(descriptions) or list(BURST_TEXT.get(category, BURST_TEXT["other"]))
        callers: list[Caller] = []
        # arrivals thin out as the news spreads: an exponential-ish front within over_s
        offsets = sorted(min(over_s, rng.expovariate(3.0 / max(over_s, 1e-9))) for _ in range(count))
        made = []
        for offset in offsets:
            at = start + timedelta(seconds=offset)
            if callers and rng.random() < repeat_share:
                caller = rng.choice(callers)
                call = Call(at, caller.name, caller.phone, *caller.place, category, "complaint", "urgent",
                            rng.choice(REPEAT_TEXT), repeat=True)
            else:
                caller = self._caller(rng, rng.choice(list(places)))
                callers.append(caller)
                call = Call(at, caller.name, caller.phone, *caller.place, category, type, urgency,
                            rng.choice(texts))
            self._count += 1
            heapq.heappush(self._scheduled, (at, self._count, call))
            made.append(call)
        return made


class CallPoster:
    """Posts calls to the ticket API with bounded concurrency, counting answers by status."""

    def __init__(self, post: Post, *, concurrency: int = 8, path: str = "/api/tickets"):
        self._post, self._path = post, path
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task] = set()
        self.statuses: Counter = Counter()
        self.posted: list[Call] = []

    def submit(self, call: Call) -> None:
        """Post a call in the background."""
        task = asyncio.get_running_loop().create_task(self._one(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(self, call: Call) -> None:
        async with self._slots:
            try:
                status = await self._post(self._path, call.api_json())
            except OSError as exc:
                log.warning("callers: %s", exc)
                status = None
        self.posted.append(call)
        self.statuses[status] += 1

    async def drain(self) -> None:
        """Wait for every call in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))


class HttpApi:
    """The center's HTTP API as the agent desk uses it: log in once, then bearer-token posts."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self._username, self._password = username, password
        self._token: str | None = None

    async def _login(self) -> None:
        import json

        import tornado.httpclient

        response = await tornado.httpclient.AsyncHTTPClient().fetch(
            self.base_url + "/api/login", method="POST", raise_error=False,
            body=json.dumps({"username": self._username, "password": self._password}),
            headers={"Content-Type": "application/json"})
        if response.code != 200:
            raise PermissionError(f"login as {self._username} at {self.base_url} failed: HTTP {response.code}")
        self._token = json.loads(response.body)["token"]

    async def post(self, path: str, json_body: dict) -> int:
        """POST JSON with the bearer token (logging in, or again once on 401); returns the status."""
        import json

        import tornado.httpclient

        for attempt in range(2):
            if self._token is None:
                await self._login()
            try:
                response = await tornado.httpclient.AsyncHTTPClient().fetch(
                    self.base_url + path, method="POST", raise_error=False,
                    body=json.dumps(json_body, ensure_ascii=False).encode("utf-8"),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._token}"})
            except tornado.httpclient.HTTPClientError as exc:  # timeout
                return exc.code
            if response.code == 401 and attempt == 0:
                self._token = None
                continue
            return response.code
        return 401
