"""`python -m center simulate`: the living demo city, against the running system.

Everything the outside world does, in one process, through the real protocols:

- vehicles: the city's repair vehicles drive its roads and report NMEA over MQTT at 1 Hz, the last
  DEMO_JT808_VEHICLES of them through JT/T 808 terminals to the gateway instead
  (``simulators.jt808_terminal``);
- sensors: pressure, flow and transformer load on daily curves, JSON and Sparkplug B over MQTT,
  listening on ``sim/sensors/control`` so that ``python -m simulators scenario`` can drive them;
- the 110 side: the police simulator on ``SIM_POLICE_PORT``, acknowledging our handovers and
  sending status updates and incident transfers back to the web;
- callers: citizens calling at the 12319 line's daily curve, posted as user ``agent``;
- crews: one bot per crew (account ``crew-<crew_id>``) accepting, driving its vehicle there by
  road, arriving, repairing and resolving; the callback desk closing resolved tickets;
- the center's desk and the units (``simulators.units``): 交办 of department tickets, review steps,
  decisions on returns and extensions; one bot per unit liaison accepting and feeding back;
- after ``SIM_SCENARIO_AFTER_S`` the scenario ``SIM_SCENARIO`` (e.g. a main burst) fires once.

Simulated time runs ``SIM_SPEEDUP`` times faster than the wall clock for the daily curves, the
calls and the people's delays; vehicles drive in real time. With ``CLOCK_SPEEDUP`` other than 1
the simulators follow the center's clock instead (`runtime.clock`: same anchor, same speed-up):
the vehicles then drive that many times faster too and stamp their fixes, as the sensors their
readings, with the simulated time.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import threading
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from runtime.lifecycle import stop_on_signals
from store.streams import pause as stop_or_timeout
from simulators.roads import roadnet_of
from simulators.jt808_terminal import demo_terminals, run_terminals
from simulators.vehicles import make_fleet, run_fleet

log = logging.getLogger(__name__)
REAL_POLICE_DELAYS_S = (60.0, 300.0, 600.0, 1800.0)  # received, dispatched, on scene, closed
REAL_POLICE_TRANSFER_EVERY_S = 7200.0
JT808_REPORT_S = 10.0  # the demo's JT/T 808 terminals report every 10 s (the console's stale limit is 30 s)
SCADA_GATEWAY = "SCADA-GW1"  # the device id the JSON sensors' shared connection logs in as


def simulated_devices(city, settings) -> list:
    """The devices ``simulate`` runs, as the demo issues their credentials (``services.devices.Wanted``):
    each simulated vehicle of the city, the SCADA gateway of the JSON sensors, and each Sparkplug
    edge node of the sensor simulator."""
    from services.devices import Wanted
    from simulators.sensor_model import specs_from_city
    from simulators.sensors import SensorSimulator

    wanted = [Wanted("vehicle", str(v)) for v in list(city.crews["vehicle_id"])[:settings.SIM_VEHICLES]]
    if settings.SIM_SENSORS:
        sensors = SensorSimulator(specs_from_city(city), publish=lambda *message: None)
        plain = tuple(sorted(sid for sid in sensors.sensors if sid not in sensors.node_of))
        if plain:
            wanted.append(Wanted("gateway", SCADA_GATEWAY, plain))
        wanted += [Wanted("gateway", node, (), True) for node in sensors.nodes]
    return wanted


def device_urls(settings, mqtt_url: str) -> dict[str, str]:
    """device id -> broker URL with its credentials, from the secrets the demo issued its simulated
    devices (``services.devices.sim_devices_path``); empty without that file (the simulators then
    use ``mqtt_url`` as they are given it)."""
    from messaging.mqtt import device_url
    from services.devices import read_secrets, sim_devices_path

    secrets = read_secrets(sim_devices_path(settings.data_dir))
    if not secrets:
        return {}
    if not (settings.MQTT_DEVICE_URL or settings.MQTT_URL):
        settings = settings.with_values(MQTT_URL=mqtt_url)
    return {device_id: device_url(settings, device_id, secret) for device_id, secret in secrets.items()}


async def _heartbeat(redis_url: str, stats: dict[str, Any]) -> None:
    """Tell /healthz that the simulators run (the simulators themselves only speak MQTT and HTTP)."""
    from store.live import Store

    store = Store.from_url(redis_url)
    try:
        while True:
            try:
                await store.heartbeat("simulate", {"pid": os.getpid(), **stats})
            except Exception as exc:
                log.warning("simulate heartbeat failed: %s", exc)
            await asyncio.sleep(3)
    finally:
        await store.close()


def _router(city):
    """A thread-safe ``(origin, target) -> road polyline`` over the city's road graph."""
    from gis.routing import RoadGraph

    roads = city.roads
    graph = RoadGraph.from_lines(list(roads.geometry), [float(v) for v in roads["speed_kmh"]],
                                 [bool(v) for v in roads["oneway"]])
    lock = threading.Lock()

    def route(origin, target):
        with lock:
            found = graph.travel_time(origin, target)
        return None if found is None else found.geometry

    return route


class LivingCity:
    """The running simulators of one demo city and their shared simulated clock."""

    def __init__(self, settings, mqtt_url: str, city, stop: asyncio.Event, devices: dict[str, str] | None = None):
        from runtime.clock import Clock
        from simulators.sim_clock import SimClock

        self.settings, self.mqtt_url, self.city, self.stop = settings, mqtt_url, city, stop
        self.devices = devices or {}  # device id -> broker URL with its credentials
        self.injector = None  # the scenario's own connection for faults it injects, when devices log in
        self.center_clock = Clock.from_settings(settings)
        if self.center_clock.accelerated:  # one clock: the center's (vehicles and sensors stamp it)
            if settings.SIM_SPEEDUP != self.center_clock.speedup:
                log.warning("simulate: SIM_SPEEDUP=%g ignored: the simulators follow CLOCK_SPEEDUP=%g",
                            settings.SIM_SPEEDUP, self.center_clock.speedup)
            self.clock = SimClock.following(self.center_clock)
        else:
            self.clock = SimClock(speedup=settings.SIM_SPEEDUP)
        self.seed = settings.SIM_SEED
        host = settings.HTTP_HOST if settings.HTTP_HOST not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.base_url = f"http://{host}:{settings.HTTP_PORT}"
        self.stats: dict[str, Any] = {"vehicles": 0, "published": 0, "sensor_msgs": 0, "calls": 0,
                                      "crews": 0, "callbacks": 0, "scenario": None}
        self.sensors = self.transport = self.control = self.police = None
        self.generator = self.poster = None
        self.callers_paused = False
        self.areas = None
        self.callback_bot = None
        self.dispatcher_bot = None
        self.desk_bot = None
        self.unit_bots: list = []
        self.crew_ids: set[str] = set()  # crews with a bot (a station hands work only to those)
        self.tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ parts
    async def start_sensors(self) -> None:
        """The sensor simulator on its own MQTT connections, listening for scenario commands."""
        from simulators.sensor_model import specs_from_city
        from simulators.sensor_mqtt import MqttTransport
        from simulators.sensors import SensorSimulator, listen_for_commands, run

        transport = await asyncio.to_thread(lambda: MqttTransport(
            self.mqtt_url, f"sim-sensors-{os.getpid()}", device_urls=self.devices, gateway=SCADA_GATEWAY))
        await asyncio.to_thread(transport.wait_connected, 15)
        self.transport = transport
        self.sensors = SensorSimulator(specs_from_city(self.city), publish=transport.publish, seed=self.seed,
                                       node_connector=transport.connect_node, zone=self.settings.TIME_ZONE)
        self.control = listen_for_commands(self.sensors, self.mqtt_url, asyncio.get_running_loop())
        self.tasks.append(asyncio.create_task(run(self.sensors, self.clock, self.stop,
                                                  wall_stamps=not self.center_clock.accelerated)))
        log.info("simulate: %d sensors at x%g", len(self.sensors.sensors), self.clock.speedup)

    async def start_police(self) -> None:
        """The 110 side, answering on SIM_POLICE_PORT and calling the web back."""
        from simulators.police import PoliceSimulator

        settings, speedup = self.settings, self.clock.speedup
        if not settings.POLICE_SECRET:
            log.warning("simulate: no POLICE_SECRET, the 110 side is not started")
            return
        self.police = PoliceSimulator(
            settings.POLICE_SECRET.encode("utf-8"), our_base_url=self.base_url, ack_delay_s=0.5,
            status_delays_s=[max(0.5, d / speedup) for d in REAL_POLICE_DELAYS_S],
            transfer_every_s=REAL_POLICE_TRANSFER_EVERY_S / speedup, seed=self.seed)
        port, control = await self.police.start(settings.SIM_POLICE_PORT, 0)
        log.info("simulate: 110 side on http://127.0.0.1:%d (control http://127.0.0.1:%s/110/control)", port, control)

    def _api(self, username: str):
        from simulators.crews import ApiClient

        return ApiClient(self.base_url, username, self.settings.DEMO_PASSWORD)

    def sized_daily_calls(self) -> float:
        """The background volume the city's crews keep up with (``simulators.callmix``): from the
        crews that have a bot (all the city's when none), their timing, and how fast they drive."""
        from simulators.callmix import crews_by_trade, job_seconds, sized_daily_calls
        from simulators.crews import CrewTiming

        rows = [r for r in self.city.crews.itertuples() if not self.crew_ids or str(r.crew_id) in self.crew_ids]
        crews = crews_by_trade(r.skills.split(",") if isinstance(r.skills, str) else r.skills for r in rows)
        # the vehicles drive at the center's clock's speed-up (1 when it is the wall clock: real time)
        job_s = job_seconds(CrewTiming(), speedup=self.clock.speedup, drive_speedup=self.center_clock.speedup)
        return sized_daily_calls(crews, job_s)

    async def start_callers(self) -> None:
        """Background calls at the daily curve (and, during a scenario, its bursts): SIM_CALLS_PER_DAY,
        or with 0 the volume sized from the crews."""
        from simulators.callers import CallGenerator, CallPoster

        daily = (self.settings.SIM_CALLS_PER_DAY or self.sized_daily_calls()) if self.settings.SIM_CALLERS else 0.0
        self.stats["calls_per_day"] = round(daily)
        log.info("simulate: %.0f background calls a simulated day", daily)
        self.generator = CallGenerator(self.areas.places, seed=self.seed, daily_calls=daily,
                                       zone=self.settings.TIME_ZONE)
        self.poster = CallPoster(self._api("agent").post)
        self.tasks.append(asyncio.create_task(self._call_loop()))

    async def _call_loop(self) -> None:
        while not self.stop.is_set():
            if not self.callers_paused:
                for call in self.generator.until(self.clock.now()):
                    self.poster.submit(call)
                    self.stats["calls"] += 1
            await stop_or_timeout(self.stop, 0.5)

    async def start_crews(self, net, fleet) -> None:
        """One bot per crew whose vehicle is simulated."""
        from simulators.crews import CrewBot, CrewTiming

        route = await asyncio.to_thread(_router, self.city)
        by_vehicle = {v.vehicle_id: v for v in fleet}
        # a look at the assignments every 2 wall s, and on the center's fast clock above x20 more
        # often (at most twice a second), so that a poll's wall seconds stay a minute or so of its time
        timing = CrewTiming(decline_share=self.settings.SIM_DECLINE_SHARE,
                            poll_s=min(2.0, max(0.5, 40.0 / self.center_clock.speedup)))
        for row in self.city.crews.itertuples():
            vehicle = by_vehicle.get(str(row.vehicle_id))
            if vehicle is None:
                continue
            crew_id = str(row.crew_id)
            api = self._api(f"crew-{crew_id}")
            bot = CrewBot(crew_id, api.get, api.send, vehicle=vehicle, net=net, router=route,
                          home=(row.geometry.x, row.geometry.y), speedup=self.clock.speedup, timing=timing,
                          rng=random.Random(self.seed + zlib.crc32(crew_id.encode())))
            self.tasks.append(asyncio.create_task(bot.run(self.stop)))
            self.stats["crews"] += 1
            self.crew_ids.add(crew_id)

    def start_dispatcher(self) -> None:
        """The dispatcher at the console, as user dispatcher."""
        from simulators.crews import DispatcherBot

        api = self._api("dispatcher")
        bot = DispatcherBot(api.get, api.send, speedup=self.clock.speedup, rng=random.Random(self.seed + 5))
        self.tasks.append(asyncio.create_task(bot.run(self.stop)))
        self.dispatcher_bot = bot

    def start_callbacks(self) -> None:
        """The callback desk as user agent."""
        from simulators.crews import CallbackBot, satisfaction_shares

        api = self._api("agent")
        bot = CallbackBot(api.get, api.send, speedup=self.clock.speedup, rng=random.Random(self.seed + 3),
                          shares=satisfaction_shares(self.settings.SIM_DISSATISFIED_SHARE))
        self.tasks.append(asyncio.create_task(bot.run(self.stop)))
        self.callback_bot = bot

    async def start_units(self) -> None:
        """The center's desk (dispatcher, supervisor, agent and the reviewer accounts the demo has) and one
        bot per demo unit liaison (``unit-<unit_id>``), each answering for its unit and the units
        under it without a liaison of their own."""
        from simulators.units import (REVIEWERS, Account, DeskBot, UnitBot, UnitPace, alternatives, answering,
                                      liaison_units)

        dispatcher = self._api("dispatcher")
        status, body = await dispatcher.get("/api/units")
        if status != 200 or not isinstance(body, dict):
            log.error("simulate: no unit tree (HTTP %s); no desk or unit bots", status)
            return
        tree = body["units"]
        liaisons = liaison_units(tree)
        accounts = {"dispatcher": Account("dispatcher", dispatcher.get, dispatcher.send)}
        for role in ("supervisor", "agent", *REVIEWERS):
            api = self._api(role)
            try:
                status, me = await api.get("/api/me")
            except PermissionError:
                continue  # the demo has no such account
            if status == 200 and isinstance(me, dict) and me.get("role") == role:
                accounts[role] = Account(role, api.get, api.send)
        crews_of: dict[str, list[str]] = {}
        for row in self.city.crews.itertuples():
            if str(row.crew_id) in self.crew_ids:
                crews_of.setdefault(str(row.unit_id), []).append(str(row.crew_id))
        fielded = {skill.strip() for row in self.city.crews.itertuples()
                   for skill in (row.skills.split(",") if isinstance(row.skills, str) else row.skills)}
        trades = {t for u in tree for t in (u.get("trades") or ())}
        self.desk_bot = DeskBot(accounts, reroute=alternatives(tree, liaisons), crewless=trades - fielded,
                                speedup=self.clock.speedup, rng=random.Random(self.seed + 7))
        self.tasks.append(asyncio.create_task(self.desk_bot.run(self.stop)))
        settings = self.settings
        pace = UnitPace(return_share=settings.SIM_UNIT_RETURN_SHARE, extension_share=settings.SIM_UNIT_EXTENSION_SHARE,
                        late_share=settings.SIM_UNIT_LATE_SHARE)
        for unit_id, units in answering(tree, liaisons).items():
            name = f"unit-{unit_id}".lower()
            api = self._api(name)
            bot = UnitBot(name, units, api.get, api.send, crews={u: crews_of.get(u, ()) for u in units},
                          speedup=self.clock.speedup, pace=pace,
                          rng=random.Random(self.seed + zlib.crc32(name.encode())))
            self.unit_bots.append(bot)
            self.tasks.append(asyncio.create_task(bot.run(self.stop)))
        log.info("simulate: the desk as %s and %d unit liaisons", ", ".join(accounts), len(self.unit_bots))

    async def scenario_later(self, name: str, after_s: float, vehicle_positions) -> None:
        """Run a scenario once, after ``after_s`` wall seconds, on the city's clock and simulators."""
        from simulators.scenario import ScenarioError, ScenarioRunner, load_scenario

        await stop_or_timeout(self.stop, after_s)
        if self.stop.is_set():
            return
        try:
            scenario = load_scenario(name)
        except ScenarioError as exc:
            log.error("simulate: scenario %s: %s", name, exc)
            return
        scenario = dataclasses.replace(scenario, speedup=self.clock.speedup, start=None)
        agent = self._api("agent") if self.settings.DEMO_PASSWORD else None
        publish = self.transport.publish if self.transport else None
        if self.devices:  # the sensors log in as a gateway, which may not write a vehicle's faults
            from messaging.mqtt import MqttClient

            self.injector = MqttClient(self.mqtt_url, f"sim-scenario-{os.getpid()}")
            self.injector.start()
            publish = self.injector.publish
        runner = ScenarioRunner(scenario, areas=self.areas, seed=self.seed, post=agent.post if agent else None,
                                sensor_hook=self.sensors.apply if self.sensors else None,
                                police_control=self.police.set_mode if self.police else None,
                                publish=publish,
                                vehicle_positions=vehicle_positions, clock=self.clock, zone=self.settings.TIME_ZONE)
        if self.generator is not None:
            runner.callers = self.generator  # the background goes on inside the scenario
            self.callers_paused = True
        log.info("simulate: scenario %s (%s) starts", scenario.name, scenario.title)
        self.stats["scenario"] = f"{scenario.name}: running"
        try:
            report = await runner.run(self.stop)
        finally:
            self.callers_paused = False
        self.stats["scenario"] = f"{scenario.name}: done"
        log.info("simulate: scenario %s done: %s", scenario.name, report)

    async def wait_for_web(self, timeout_s: float = 180.0) -> bool:
        """Wait until the web answers /healthz (the people act through its API)."""
        import tornado.httpclient

        client = tornado.httpclient.AsyncHTTPClient()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.stop.is_set() and asyncio.get_running_loop().time() < deadline:
            try:
                response = await client.fetch(self.base_url + "/healthz", raise_error=False, request_timeout=5)
                if response.code != 599:
                    return True
            except (OSError, tornado.httpclient.HTTPClientError):
                pass
            await stop_or_timeout(self.stop, 1.0)
        return False

    async def start_people(self, net, fleet, vehicle_positions, people: bool) -> None:
        """Once the web answers: callers, crews and the callback desk, then the scenario timer."""
        settings = self.settings
        if not await self.wait_for_web():
            log.error("simulate: the web at %s did not answer; no callers, crews or scenario", self.base_url)
            return
        if people:
            if settings.SIM_CREWS:
                await self.start_crews(net, fleet)
            await self.start_callers()  # after the crews: the volume is sized from them
            if settings.SIM_DISPATCHER:
                self.start_dispatcher()
            if settings.SIM_CALLBACKS:
                self.start_callbacks()
            if settings.SIM_UNITS:
                await self.start_units()
        if settings.SIM_SCENARIO and settings.SIM_SCENARIO_AFTER_S >= 0:
            self.tasks.append(asyncio.create_task(
                self.scenario_later(settings.SIM_SCENARIO, settings.SIM_SCENARIO_AFTER_S, vehicle_positions)))

    async def close(self) -> None:
        """Stop every part."""
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.poster is not None:
            try:
                await asyncio.wait_for(self.poster.drain(), 3.0)
            except (asyncio.TimeoutError, OSError):
                pass
        if self.police is not None:
            await self.police.stop()
        if self.control is not None:
            self.control.stop()
        if self.sensors is not None:
            self.sensors.close()
        if self.transport is not None:
            self.transport.stop()
        if self.injector is not None:
            self.injector.stop()


async def serve(settings, mqtt_url: str, profile: Path, stop: asyncio.Event | None = None,
                redis_url: str | None = None) -> None:
    """Run the simulators until SIGINT/SIGTERM (or until ``stop`` is set)."""
    from gis.layers import load_profile
    from simulators.scenario import Areas

    stop = stop_on_signals(stop)
    city_layers = await asyncio.to_thread(load_profile, str(profile))
    net, ids, starts = await asyncio.to_thread(roadnet_of, city_layers)
    rng = random.Random(settings.SIM_SEED)
    count = settings.SIM_VEHICLES
    terminals = demo_terminals(ids[:count], settings.DEMO_JT808_VEHICLES)  # these report through JT/T 808 terminals
    ids = ids[:count] + [f"S{i:05d}" for i in range(len(ids), count)]
    fleet = make_fleet(net, ids, rng, starts=starts)
    by_terminal = {vid for _, vid in terminals}
    devices = device_urls(settings, mqtt_url)
    if devices:
        log.info("simulate: %d simulated devices log in with their own credentials", len(devices))
    missing = [vid for vid in ids if devices and vid not in devices]
    if missing:
        log.warning("simulate: no device credential for vehicles %s; they use the simulators' own account",
                    ", ".join(missing[:10]) + (" …" if len(missing) > 10 else ""))
    city = LivingCity(settings, mqtt_url, city_layers, stop, devices)
    city.stats["vehicles"] = len(fleet)
    log.info("simulate: %d vehicles at %.1f Hz", len(fleet), settings.SIM_RATE_HZ)
    beat = asyncio.create_task(_heartbeat(redis_url, city.stats)) if redis_url else None
    people = bool(settings.DEMO_PASSWORD)
    if not people and (settings.SIM_CALLERS or settings.SIM_CREWS or settings.SIM_CALLBACKS or settings.SIM_DISPATCHER):
        log.warning("simulate: no DEMO_PASSWORD, so no callers, crews or callbacks")
    try:
        city.areas = await asyncio.to_thread(Areas.from_city, city_layers)
        if settings.SIM_SENSORS:
            await city.start_sensors()
        await city.start_police()
        city.tasks.append(asyncio.create_task(city.start_people(net, fleet, dict(zip(ids, starts)), people)))

        def tick(sent: int, busy_s: float) -> None:
            city.stats["published"] = sent
            city.stats["tick_busy_ms"] = round(busy_s * 1000)
            if city.sensors is not None:
                city.stats["sensor_msgs"] = city.sensors.sent
            if city.callback_bot is not None:
                city.stats["callbacks"] = sum(city.callback_bot.answers.values())
            if city.dispatcher_bot is not None:
                city.stats["assigned_by_bot"] = city.dispatcher_bot.assigned
            if city.desk_bot is not None:
                city.stats["desk"] = dict(city.desk_bot.counts)
                city.stats["units"] = dict(sum((bot.counts for bot in city.unit_bots), Counter()))

        if terminals:
            host = settings.JT808_HOST if settings.JT808_HOST not in ("0.0.0.0", "::", "") else "127.0.0.1"
            log.info("simulate: vehicles %s report through JT/T 808 terminals to %s:%d",
                     ", ".join(sorted(by_terminal)), host, settings.JT808_PORT)
            city.tasks.append(asyncio.create_task(run_terminals(
                host, settings.JT808_PORT, net, fleet, terminals, stop, every_s=JT808_REPORT_S, seed=settings.SIM_SEED,
                clock=city.center_clock)))
        nmea_fleet = [v for v in fleet if v.vehicle_id not in by_terminal]
        await run_fleet(mqtt_url, net, nmea_fleet, rate_hz=settings.SIM_RATE_HZ, seed=settings.SIM_SEED, stop=stop,
                        tunnels_per_hour=settings.SIM_TUNNELS_PER_HOUR,
                        on_tick=tick, device_urls=devices, clock=city.center_clock)
    finally:
        await city.close()
        if beat:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
