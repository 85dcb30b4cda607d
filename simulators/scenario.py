"""Scenarios: a TOML timeline of what happens in the city, and a runner that makes it happen.

A scenario file (``simulators/scenarios/<name>.toml``)::

    name = "main_burst"              # required, the file's stem
    title = "城区主管爆管"            # shown to people
    duration_s = 5400                # simulated seconds the run lasts
    speedup = 30                     # default simulated seconds per wall second
    daily_calls = 3300               # background call volume (12319 line: ~3,300 a day)
    seed = 7                         # optional; default SIM_SEED / --seed
    start = "2026-11-22T08:30:00+08:00"   # optional simulated start (default: now)

    [[steps]]                        # in any order; run by `at`, simulated seconds from start
    at = 600
    action = "main_burst"            # one of ACTIONS below, with its parameters
    dma = "DMA03"

Actions and parameters (``?`` optional): sensor actions ``main_burst`` (dma, spread_s?,
point? [lon, lat]), ``transformer_overload`` (asset, percent?), ``feeder_outage`` (assets? and/or
feeder?), ``dead_sensor`` (sensor), ``node_death`` (node), ``restore`` (targets? - none: all);
``calls`` (area, count, over_s, category, type?, urgency?, descriptions?, repeat_share?) where
area is ``"city"`` or a table ``{dma = ..}``, ``{feeder = ..}``, ``{supply = [asset ids]}``,
``{around = [lon, lat, radius_m]}``; ``call_rate`` (multiplier); ``police`` (mode, delay_s?);
``vehicle_fault`` (vehicle, fault, count?).

Run: ``python -m simulators.scenario main_burst [--speedup N] [--seed S]`` against a running
system: calls through the ticket API, sensor actions to the sensor simulator (over MQTT, or a
local one), police modes to the 110 simulator's control port, vehicle faults as NMEA on MQTT.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

import orjson

from store.streams import pause as stop_or_timeout
from simulators import nmea_out
from simulators.callers import CallGenerator, CallPoster, Place, Post
from simulators.sensors import CONTROL_TOPIC, SENSOR_ACTIONS, SensorSimulator, run as run_sensors
from simulators.sim_clock import SimClock

log = logging.getLogger(__name__)
UTC = timezone.utc
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
_NUM = (int, float)
CATEGORIES = ("water", "power", "gas", "heating", "drainage", "sanitation", "other")
TICKET_TYPES = ("repair", "complaint", "consultation", "suggestion", "praise", "service")
URGENCIES = ("emergency", "urgent", "normal")
POLICE_MODES = ("up", "down", "slow", "error")
FAULTS = ("bad_checksum", "truncated", "garbage", "week_rollover", "jump", "clock_skew",
          "duplicate_burst", "out_of_order", "offline")
# action -> {parameter: (accepted types, required)}
ACTIONS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "main_burst": {"dma": ((str,), True), "spread_s": (_NUM, False), "point": ((list,), False)},
    "transformer_overload": {"asset": ((str,), True), "percent": (_NUM, False)},
    "feeder_outage": {"assets": ((list,), False), "feeder": ((str,), False)},
    "dead_sensor": {"sensor": ((str,), True)},
    "node_death": {"node": ((str,), True)},
    "restore": {"targets": ((list,), False)},
    "calls": {"area": ((str, dict), True), "count": ((int,), True), "over_s": (_NUM, True),
              "category": ((str,), True), "type": ((str,), False), "urgency": ((str,), False),
              "descriptions": ((list,), False), "repeat_share": (_NUM, False)},
    "call_rate": {"multiplier": (_NUM, True)},
    "police": {"mode": ((str,), True), "delay_s": (_NUM, False)},
    "vehicle_fault": {"vehicle": ((str,), True), "fault": ((str,), True), "count": ((int,), False)},
}
_TOP = {"name", "title", "description", "duration_s", "speedup", "daily_calls", "seed", "start", "steps"}


class ScenarioError(ValueError):
    """A scenario file is refused; the message names the file, the step and the problem."""


@dataclass(frozen=True)
class Step:
    """One timeline entry: at ``at`` simulated seconds, do ``action`` with ``params``."""

    at: float
    action: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Scenario:
    """A parsed, validated scenario."""

    name: str
    title: str
    description: str
    duration_s: float
    speedup: float
    daily_calls: float
    seed: int | None
    start: datetime | None
    steps: tuple[Step, ...]


def _typed(where: str, name: str, value: Any, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, types):
        wanted = " or ".join("number" if t in _NUM else {"str": "string", "list": "array",
                                                          "dict": "table"}.get(t.__name__, t.__name__)
                             for t in dict.fromkeys(float if t in _NUM else t for t in types))
        raise ScenarioError(f"{where}: {name} must be a {wanted}, not {value!r}")


def _check_area(where: str, area: Any) -> None:
    if area == "city":
        return
    problem = (f"{where}: area {area!r} is refused: area must be \"city\" or one of {{dma = ..}}, "
               f"{{feeder = ..}}, {{supply = [asset ids]}}, {{around = [lon, lat, radius_m]}}")
    if not isinstance(area, dict) or len(area) != 1:
        raise ScenarioError(problem)
    (kind, value), = area.items()
    ok = {"dma": isinstance(value, str), "feeder": isinstance(value, str),
          "supply": isinstance(value, list) and all(isinstance(v, str) for v in value) and value,
          "around": isinstance(value, list) and len(value) == 3 and all(
              isinstance(v, _NUM) and not isinstance(v, bool) for v in value)}
    if not ok.get(kind):
        raise ScenarioError(problem)


def _check_step(where: str, raw: Any, duration_s: float) -> Step:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: a step must be a table")
    action = raw.get("action")
    if action not in ACTIONS:
        raise ScenarioError(f"{where}: unknown action {action!r}; known: {', '.join(ACTIONS)}")
    at = raw.get("at")
    _typed(where, "at", at, _NUM)
    if not 0 <= at <= duration_s:
        raise ScenarioError(f"{where}: at {at} is outside the scenario's 0..{duration_s} s")
    spec = ACTIONS[action]
    params = {k: v for k, v in raw.items() if k not in ("at", "action")}
    for name in params:
        if name not in spec:
            raise ScenarioError(f"{where}: action {action!r} has no parameter {name!r}; "
                                f"it takes {', '.join(spec)}")
    for name, (types, required) in spec.items():
        if name not in params:
            if required:
                raise ScenarioError(f"{where}: action {action!r} needs {name}")
            continue
        _typed(where, name, params[name], types)
    checks = {
        "category": CATEGORIES, "type": TICKET_TYPES, "urgency": URGENCIES,
        "mode": POLICE_MODES if action == "police" else None, "fault": FAULTS,
    }
    for name, allowed in checks.items():
        if allowed and name in params and params[name] not in allowed:
            raise ScenarioError(f"{where}: {name} {params[name]!r} is not one of {', '.join(allowed)}")
    if action == "calls":
        _check_area(where, params["area"])
        if params["count"] < 0 or params["over_s"] < 0:
            raise ScenarioError(f"{where}: count and over_s must not be negative")
        if not 0 <= params.get("repeat_share", 0) <= 1:
            raise ScenarioError(f"{where}: repeat_share must be within 0..1")
    if action == "feeder_outage" and not (params.get("assets") or params.get("feeder")):
        raise ScenarioError(f"{where}: feeder_outage needs assets or feeder")
    if action == "call_rate" and params["multiplier"] < 0:
        raise ScenarioError(f"{where}: multiplier must not be negative")
    return Step(float(at), action, params)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario's TOML text; raises ScenarioError with a clear message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(data) - _TOP
    if unknown:
        raise ScenarioError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_TOP))}")
    for name, types in (("name", (str,)), ("duration_s", _NUM), ("steps", (list,))):
        if name not in data:
            raise ScenarioError(f"{source}: {name} is required")
        _typed(source, name, data[name], types)
    for name, types in (("title", (str,)), ("description", (str,)), ("speedup", _NUM),
                        ("daily_calls", _NUM), ("seed", (int,)), ("start", (str, datetime))):
        if name in data:
            _typed(source, name, data[name], types)
    duration = float(data["duration_s"])
    if duration <= 0 or data.get("speedup", 1) <= 0 or data.get("daily_calls", 0) < 0:
        raise ScenarioError(f"{source}: duration_s and speedup must be positive, daily_calls not negative")
    start = data.get("start")
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start)
        except ValueError:
            raise ScenarioError(f"{source}: start {start!r} is not ISO 8601") from None
    if start is not None and start.tzinfo is None:
        raise ScenarioError(f"{source}: start needs a UTC offset")
    steps = [_check_step(f"{source}: step {i + 1} ({raw.get('action', '?') if isinstance(raw, dict) else '?'})",
                         raw, duration) for i, raw in enumerate(data["steps"])]
    steps.sort(key=lambda s: s.at)  # stable: same-time steps keep file order
    return Scenario(data["name"], data.get("title", data["name"]), data.get("description", ""), duration,
                    float(data.get("speedup", 1.0)), float(data.get("daily_calls", 3300.0)), data.get("seed"),
                    start.astimezone(UTC) if start else None, tuple(steps))


def scenario_names(directory: Path = SCENARIO_DIR) -> list[str]:
    """The shipped scenarios."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_scenario(name_or_path: str, directory: Path = SCENARIO_DIR) -> Scenario:
    """A shipped scenario by name (or a unique part of it, ``storm``), or a TOML file path."""
    path = Path(name_or_path)
    if not path.is_file():
        names = scenario_names(directory)
        matches = [n for n in names if n == name_or_path] or [n for n in names if name_or_path in n]
        if len(matches) != 1:
            raise ScenarioError(f"no single scenario matches {name_or_path!r}; shipped: {', '.join(names)}")
        path = directory / f"{matches[0]}.toml"
    return parse_scenario(path.read_text(encoding="utf-8"), str(path))


# ---------------------------------------------------------------------- areas
@dataclass
class Areas:
    """The city's addresses, grouped by DMA, feeder and transformer supply area, for call bursts."""

    places: list[Place]
    groups: dict[str, list[Place]] = field(default_factory=dict)  # "dma:DMA03", "feeder:..", "supply:T0012"

    def select(self, area: Any) -> list[Place]:
        """The addresses of an area (see the module docstring); empty when none lie there."""
        if area == "city":
            return self.places
        (kind, value), = area.items()
        if kind == "around":
            lon, lat, radius = value
            k = math.cos(math.radians(lat)) * 111_320.0
            return [p for p in self.places if math.hypot((p[1] - lon) * k, (p[2] - lat) * 111_320.0) <= radius]
        if kind == "supply":
            return [p for asset in value for p in self.groups.get(f"supply:{asset}", [])]
        return self.groups.get(f"{kind}:{value}", [])

    @classmethod
    def from_city(cls, city) -> "Areas":
        """Addresses of a loaded city joined to its DMAs and supply areas (feeders via transformers)."""
        import geopandas as gpd

        addresses = city.addresses[["address", "geometry"]]
        places_of = lambda frame: [(str(a), float(g.x), float(g.y)) for a, g in zip(frame["address"], frame.geometry)]
        groups: dict[str, list[Place]] = {}
        for layer, key in ((city.dmas, "dma_id"), (city.supply_areas, "asset_id")):
            joined = gpd.sjoin(addresses, layer[[key, "geometry"]], predicate="within")
            for value, frame in joined.groupby(key):
                groups[f"{'dma' if key == 'dma_id' else 'supply'}:{value}"] = places_of(frame)
        for feeder, frame in city.transformers.groupby("feeder"):
            groups[f"feeder:{feeder}"] = [p for a in frame["asset_id"] for p in groups.get(f"supply:{a}", [])]
        return cls(places_of(addresses), groups)


# ---------------------------------------------------------------------- vehicle faults
def fault_messages(vehicle_id: str, fault: str, position: tuple[float, float], now: datetime,
                   rng: random.Random) -> list[tuple[str, bytes, int, bool]]:
    """The MQTT messages (topic, payload, qos, retain) that inject one vehicle fault."""
    topic = f"fleet/{vehicle_id}/nmea"
    lon, lat = position

    def burst(t: datetime, lon: float = lon, lat: float = lat) -> bytes:
        lines = [nmea_out.gga(t, lat, lon), nmea_out.rmc(t, lat, lon, speed_kmh=20.0, course_deg=90.0)]
        return ("\r\n".join(lines) + "\r\n").encode("ascii")

    if fault == "offline":
        return [(f"fleet/{vehicle_id}/status", b"offline", 1, True)]
    if fault == "bad_checksum":
        good = burst(now)
        star = good.index(b"*")
        wrong = b"%02X" % (int(good[star + 1:star + 3], 16) ^ 0x5A)
        return [(topic, good[:star + 1] + wrong + good[star + 3:], 0, False)]
    if fault == "truncated":
        good = burst(now)
        return [(topic, good[:good.index(b"\r\n") + 22], 0, False)]  # cut inside the RMC
    if fault == "garbage":
        return [(topic, bytes(rng.randrange(256) for _ in range(96)), 0, False)]
    if fault == "week_rollover":
        return [(topic, burst(now - timedelta(weeks=1024)), 0, False)]
    if fault == "jump":
        return [(topic, burst(now, lon + 0.5, lat + 0.3), 0, False)]
    if fault == "clock_skew":
        return [(topic, burst(now + timedelta(hours=2)), 0, False)]
    if fault == "duplicate_burst":
        return [(topic, burst(now), 0, False)] * 5
    if fault == "out_of_order":
        return [(topic, burst(now - timedelta(seconds=s)), 0, False) for s in (0, 3, 1, 4, 2)]
    raise ScenarioError(f"unknown vehicle fault {fault!r}; known: {', '.join(FAULTS)}")


# ---------------------------------------------------------------------- the runner
SensorHook = Callable[[str, dict], None]
PoliceControl = Callable[[str, float | None], Awaitable[Any]]
Publish = Callable[[str, bytes, int, bool], object]


class ScenarioRunner:
    """Plays a scenario on a simulated clock: steps, background calls and bursts, sensor steps."""

    def __init__(self, scenario: Scenario, *, areas: Areas, seed: int = 1, post: Post | None = None,
                 sensor_hook: SensorHook | None = None, police_control: PoliceControl | None = None,
                 publish: Publish | None = None, vehicle_positions: Mapping[str, tuple[float, float]] | None = None,
                 clock: SimClock | None = None, tick_s: float = 0.2, zone: str = "Asia/Shanghai",
                 on_tick: Callable[[datetime], None] | None = None):
        """Missing hooks make their steps be skipped (and listed in the report)."""
        self.scenario = scenario
        self.areas = areas
        self.clock = clock or SimClock(scenario.start, scenario.speedup)
        self.callers = CallGenerator(areas.places, seed=seed, daily_calls=scenario.daily_calls, zone=zone)
        self.poster = CallPoster(post) if post is not None else None
        self._sensor_hook, self._police, self._publish = sensor_hook, police_control, publish
        self._positions = dict(vehicle_positions or {})
        self._rng = random.Random(seed + 2)
        self.tick_s, self._on_tick = tick_s, on_tick
        self.fired: list[Step] = []
        self.skipped: list[tuple[Step, str]] = []
        self.calls = 0

    async def fire(self, step: Step, now: datetime) -> None:
        """Do one step now."""
        p = dict(step.params)
        if step.action in SENSOR_ACTIONS:
            if self._sensor_hook is None:
                self.skipped.append((step, "no sensor simulator"))
                return
            try:
                self._sensor_hook(step.action, p)
            except ValueError as exc:  # SensorSimError: an id the city does not have
                self.skipped.append((step, str(exc)))
                return
        elif step.action == "calls":
            places = self.areas.select(p["area"])
            if not places:
                self.skipped.append((step, f"no addresses in area {p['area']!r}"))
                return
            self.callers.burst(now, p["count"], float(p["over_s"]), places, category=p["category"],
                               type=p.get("type", "repair"), urgency=p.get("urgency", "urgent"),
                               descriptions=p.get("descriptions", ()), repeat_share=float(p.get("repeat_share", 0.2)))
        elif step.action == "call_rate":
            self.callers.multiplier = float(p["multiplier"])
        elif step.action == "police":
            if self._police is None:
                self.skipped.append((step, "no 110 simulator control"))
                return
            try:
                await self._police(p["mode"], p.get("delay_s"))
            except OSError as exc:
                self.skipped.append((step, f"110 control unreachable: {exc}"))
                return
        elif step.action == "vehicle_fault":
            if self._publish is None:
                self.skipped.append((step, "no MQTT connection"))
                return
            position = self._positions.get(p["vehicle"]) or (self.areas.places[0][1], self.areas.places[0][2])
            for _ in range(p.get("count", 1)):
                for message in fault_messages(p["vehicle"], p["fault"], position, now, self._rng):
                    self._publish(*message)
        self.fired.append(step)
        log.info("scenario %s: t+%.0f s %s %s", self.scenario.name, step.at, step.action, p)

    async def run(self, stop: asyncio.Event | None = None) -> dict:
        """Play until the scenario's end (or ``stop``); returns a report."""
        stop = stop or asyncio.Event()
        start = self.clock.now()
        end = start + timedelta(seconds=self.scenario.duration_s)
        pending = list(self.scenario.steps)
        while not stop.is_set():
            now = min(self.clock.now(), end)
            while pending and start + timedelta(seconds=pending[0].at) <= now:
                await self.fire(pending.pop(0), now)
            for call in self.callers.until(now):
                self.calls += 1
                if self.poster is not None:
                    self.poster.submit(call)
            if self._on_tick is not None:
                self._on_tick(now)
            if now >= end:
                break
            await stop_or_timeout(stop, self.tick_s)
        if self.poster is not None:
            await self.poster.drain()
        return {"scenario": self.scenario.name, "steps": [(s.at, s.action) for s in self.fired],
                "skipped": [(s.at, s.action, why) for s, why in self.skipped], "calls": self.calls,
                "statuses": dict(self.poster.statuses) if self.poster else {}}


# ---------------------------------------------------------------------- command line
def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    from config.settings import load

    settings = load()
    parser = argparse.ArgumentParser(description="Run a named scenario against a running system.")
    parser.add_argument("name", nargs="?", help=f"scenario name or TOML path ({', '.join(scenario_names())})")
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    parser.add_argument("--speedup", type=float, default=None, help="simulated seconds per wall second")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the scenario's, else SIM_SEED)")
    parser.add_argument("--base-url", default=f"http://{settings.HTTP_HOST}:{settings.HTTP_PORT}", help="the center")
    parser.add_argument("--username", default="agent", help="account the calls are filed as")
    parser.add_argument("--password", default=settings.DEMO_PASSWORD, help="its password (default: DEMO_PASSWORD)")
    parser.add_argument("--mqtt", default=settings.MQTT_URL or None, help="broker URL (default: MQTT_URL)")
    parser.add_argument("--sensors", choices=("remote", "local", "none"), default="remote",
                        help="remote: drive the running sensor simulator over MQTT; local: run one here")
    parser.add_argument("--police-control", default="http://127.0.0.1:8111", help="110 simulator control URL")
    parser.add_argument("--city", default=None, help="city profile TOML (default: the demo city)")
    return parser.parse_args(argv)


async def _police_control(base: str) -> PoliceControl:
    import tornado.httpclient

    async def control(mode: str, delay_s: float | None) -> None:
        body = {"mode": mode} | ({"delay_s": delay_s} if delay_s is not None else {})
        try:
            await tornado.httpclient.AsyncHTTPClient().fetch(base.rstrip("/") + "/110/control", method="POST",
                                                             body=orjson.dumps(body))
        except tornado.httpclient.HTTPClientError as exc:
            raise OSError(f"110 control answered {exc.code}") from None
    return control


async def main(argv: Sequence[str] | None = None) -> dict:
    """Run a scenario from the command line; prints and returns the report."""
    from simulators.democity import ensure_city
    from messaging.mqtt import MqttClient
    from config.settings import load
    from gis.layers import load_profile
    from simulators.callers import HttpApi
    from simulators.sensor_model import specs_from_city
    from simulators.sensor_mqtt import MqttTransport

    opts = _options(argv)
    if opts.list or not opts.name:
        for name in scenario_names():
            print(f"{name}: {load_scenario(name).title}")
        return {}
    scenario = load_scenario(opts.name)
    settings = load()
    seed = opts.seed if opts.seed is not None else scenario.seed if scenario.seed is not None else settings.SIM_SEED
    city = await asyncio.to_thread(load_profile, opts.city or str(ensure_city(settings)))
    areas = await asyncio.to_thread(Areas.from_city, city)
    positions = {str(v): (g.x, g.y) for v, g in zip(city.crews["vehicle_id"], city.crews.geometry)}
    clock = SimClock(scenario.start, opts.speedup or scenario.speedup)
    client = transport = simulator = None
    sensor_hook = None
    if opts.mqtt:
        client = MqttClient(opts.mqtt, f"sim-scenario-{seed}")
        client.start()
        client.wait_connected(15)
        if opts.sensors == "remote":
            sensor_hook = lambda action, params: client.publish(
                CONTROL_TOPIC, orjson.dumps({"action": action, "params": params}), qos=1)
        elif opts.sensors == "local":
            transport = MqttTransport(opts.mqtt, "sim-scenario-sensors")
            transport.wait_connected(15)
            simulator = SensorSimulator(specs_from_city(city), publish=transport.publish, seed=seed,
                                        node_connector=transport.connect_node, zone=settings.TIME_ZONE)
            sensor_hook = simulator.apply
    post = HttpApi(opts.base_url, opts.username, opts.password).post if opts.password else None
    if post is None:
        log.warning("no --password/DEMO_PASSWORD: calls are generated but not posted")
    runner = ScenarioRunner(scenario, areas=areas, seed=seed, post=post, sensor_hook=sensor_hook,
                            police_control=await _police_control(opts.police_control),
                            publish=client.publish if client else None, vehicle_positions=positions,
                            clock=clock, zone=settings.TIME_ZONE)
    stop = asyncio.Event()
    sensors_task = None
    if simulator is not None:
        sensors_task = asyncio.create_task(run_sensors(simulator, clock, stop))
    try:
        report = await runner.run()
    finally:
        stop.set()
        if sensors_task:
            await sensors_task
        if simulator:
            simulator.close()
        if transport:
            transport.stop()
        if client:
            client.stop()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(main())
    except ScenarioError as exc:
        sys.exit(f"scenario: {exc}")
