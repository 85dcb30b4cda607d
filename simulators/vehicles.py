"""Vehicle simulator: repair vehicles driving the city's roads, reporting NMEA over MQTT at 1 Hz.

Each vehicle drives the road network at plausible speeds (accelerates, slows for junctions,
sometimes stops at one, keeps to one-way streets and each road's class speed), and publishes a
GGA+RMC (and GSA/VTG) burst per second on ``fleet/<id>/nmea`` with a few metres of noise and a
configurable share of BeiDou/GNSS talkers. Each vehicle has its own MQTT connection with a
last-will ``offline`` on ``fleet/<id>/status`` (a shared connection for large fleets).

Run alone: ``python -m simulators.vehicles --count 21 --mqtt mqtt://127.0.0.1:1883``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Sequence

from store.streams import pause as stop_or_timeout
from simulators import nmea_out
from simulators.roads import BRAKE, EARTH_M_PER_DEG, JUNCTION_KMH, RoadNet, Trip, roadnet_from_city

log = logging.getLogger(__name__)

ACCEL = 1.5       # m/s2
MAX_STEP_S = 2.0    # longest motion step (simulated s): a faster clock drives a report's span in steps


@dataclass
class SimVehicle:
    """One simulated vehicle's motion state."""

    vehicle_id: str
    talker: str
    edge: int
    forward: bool
    pos: float = 0.0
    speed: float = 0.0          # m/s
    stop_left: float = 0.0      # seconds still stopped at a junction
    alt: float = 45.0
    fault: str | None = None
    extra: dict = field(default_factory=dict)
    trip: Trip | None = None    # a route being driven (or done: parked at its end)
    tunnel_left: float = 0.0    # seconds still without satellites (a tunnel, an underpass)

    def drive(self, trip: Trip) -> None:
        """Follow this route from now on (at road speeds), then stay at its end."""
        self.trip = trip
        self.stop_left = 0.0

    @property
    def arrived(self) -> bool:
        """Whether the vehicle is parked at the end of its route."""
        return self.trip is not None and self.trip.done

    def position(self, net: RoadNet) -> tuple[float, float, float]:
        """(lon, lat, course) now, without receiver noise."""
        if self.trip is not None:
            return self.trip.at(self.trip.pos)
        return net.edges[self.edge].at(self.pos, self.forward)

    def roam(self, net: RoadNet, rng: random.Random) -> None:
        """Leave the route's end and cruise the network again from the nearest road."""
        if self.trip is None:
            return
        lon, lat, _ = self.position(net)
        edge, along, _ = net.locate((lon, lat))
        self.edge = edge
        self.forward = True if net.edges[edge].oneway else rng.random() < 0.5
        self.pos = along if self.forward else net.edges[edge].length - along
        self.trip = None
        self.speed = 0.0

    def _step_trip(self, rng: random.Random, dt: float) -> None:
        trip = self.trip
        if trip.done:
            self.speed = 0.0
            return
        pace = self.extra.setdefault("pace", rng.uniform(0.75, 1.0))
        target = trip.allowed(self.speed, dt, pace)
        if self.speed < target:
            self.speed = min(target, self.speed + ACCEL * dt)
        else:
            self.speed = max(target, self.speed - BRAKE * dt)
        trip.pos = min(trip.length, trip.pos + self.speed * dt)
        if trip.length - trip.pos < 0.5:
            trip.pos, self.speed = trip.length, 0.0
        self.speed = min(self.speed, trip.limit(trip.pos))

    def step(self, net: RoadNet, rng: random.Random, dt: float) -> None:
        """Advance by dt seconds: along the route when it has one, else cruising the network."""
        if self.trip is not None:
            self._step_trip(rng, dt)
            return
        if self.stop_left > 0:
            self.stop_left = max(0.0, self.stop_left - dt)
            self.speed = 0.0
            return
        edge = net.edges[self.edge]
        target = edge.speed_kmh / 3.6 * self.extra.setdefault("pace", rng.uniform(0.75, 1.0))
        remaining = edge.length - self.pos
        v_junction = JUNCTION_KMH / 3.6
        brake_dist = max(0.0, (self.speed ** 2 - v_junction ** 2) / (2 * BRAKE))
        if remaining <= brake_dist + self.speed * dt:
            target = min(target, v_junction)
        if self.speed < target:
            self.speed = min(target, self.speed + ACCEL * dt)
        else:
            self.speed = max(target, self.speed - BRAKE * dt)
        self.pos += self.speed * dt
        while self.pos >= net.edges[self.edge].length:
            overflow = self.pos - net.edges[self.edge].length
            edge = net.edges[self.edge]
            at_node = edge.end if self.forward else edge.start
            nxt = net.choose_next(rng, at_node, self.edge)
            if nxt is None:
                self.pos = edge.length
                self.speed = 0.0
                return
            self.edge, self.forward = nxt
            self.pos = overflow
            if rng.random() < 0.15:  # a red light or a turn across traffic
                self.stop_left = rng.uniform(5, 25)
                self.speed = 0.0
                self.pos = 0.0
                return

    def report(self, net: RoadNet, rng: random.Random, t: datetime, *, tunnel_rate: float = 0.0,
               speedup: float = 1.0) -> bytes:
        """One second's NMEA burst: GGA, RMC, GSA, VTG (CR LF separated, ASCII).

        ``tunnel_rate`` is the chance per report of entering a tunnel: for the next 10–40 reports
        (10-40 simulated seconds at ``speedup``: at least one report) the receiver has no fix and
        sends GGA quality 0 and a void RMC, as real ones do."""
        if self.tunnel_left <= 0 and tunnel_rate > 0 and rng.random() < tunnel_rate:
            self.tunnel_left = max(1, round(rng.randint(10, 40) / speedup))
        if self.tunnel_left > 0:
            self.tunnel_left -= 1
            sentences = [nmea_out.gga_no_fix(t, sats=rng.randint(0, 3), talker=self.talker),
                         nmea_out.rmc_void(t, talker=self.talker)]
            return ("\r\n".join(sentences) + "\r\n").encode("ascii")
        lon, lat, course = self.position(net)
        noise = 2.0 / EARTH_M_PER_DEG  # ~2 m of receiver noise
        lat += rng.gauss(0, noise)
        lon += rng.gauss(0, noise / math.cos(math.radians(lat)))
        kmh = self.speed * 3.6
        sats = rng.randint(8, 16)
        hdop = round(rng.uniform(0.7, 1.4), 1)
        sentences = [
            nmea_out.gga(t, lat, lon, sats=sats, hdop=hdop, alt_m=self.alt, talker=self.talker),
            nmea_out.rmc(t, lat, lon, speed_kmh=kmh, course_deg=course, talker=self.talker),
            nmea_out.gsa(hdop=hdop, talker=self.talker),
            nmea_out.vtg(speed_kmh=kmh, course_deg=course, talker=self.talker),
        ]
        return ("\r\n".join(sentences) + "\r\n").encode("ascii")


def make_fleet(net: RoadNet, ids: Sequence[str], rng: random.Random, *, beidou_share: float = 0.3,
               starts: Sequence[tuple[float, float]] | None = None) -> list[SimVehicle]:
    """Vehicles placed on the network (near their stations when given), talkers mixed."""
    fleet = []
    for i, vid in enumerate(ids):
        roll = rng.random()
        talker = "BD" if roll < beidou_share / 2 else "GN" if roll < beidou_share else "GP"
        if starts and i < len(starts):
            sx, sy = starts[i]
            edge = min(range(len(net.edges)), key=lambda e: (net.edges[e].coords[0][0] - sx) ** 2 +
                       (net.edges[e].coords[0][1] - sy) ** 2)
        else:
            edge = rng.randrange(len(net.edges))
        forward = True if net.edges[edge].oneway else rng.random() < 0.5
        fleet.append(SimVehicle(vid, talker, edge, forward, pos=rng.uniform(0, net.edges[edge].length)))
    return fleet


class Pace:
    """How far a vehicle drives between two reports: ``1 / rate_hz`` wall seconds, which are
    ``speedup`` times as many simulated seconds (one step at speed-up 1, as ever). On a faster
    clock the span is the simulated time that really passed since the last report (a late or
    hurried tick drives less or more: the fixes' times and places stay at road speeds), driven in
    steps of at most MAX_STEP_S."""

    def __init__(self, rate_hz: float = 1.0, speedup: float = 1.0, tunnels_per_hour: float = 0.0) -> None:
        self.speedup = speedup
        self.span_s = speedup / rate_hz  # simulated seconds between two reports on time
        self.tunnel_rate = tunnels_per_hour / 3600.0 / rate_hz * speedup  # per report
        self.last: datetime | None = None

    def span(self, t: datetime) -> float:
        """Simulated seconds to drive before the report stamped ``t`` (each tick calls it once)."""
        if self.speedup == 1.0:
            return self.span_s
        last, self.last = self.last, t
        return self.span_s if last is None else min(max(0.0, (t - last).total_seconds()), 5 * self.span_s)

    def advance(self, vehicle: SimVehicle, net: RoadNet, rng: random.Random, t: datetime, span_s: float) -> bytes:
        """Drive ``span_s`` simulated seconds, then the report stamped ``t`` (the simulated time now)."""
        steps = 1 if self.speedup == 1.0 else max(1, math.ceil(span_s / MAX_STEP_S))
        for _ in range(steps):
            vehicle.step(net, rng, span_s / steps)
        return vehicle.report(net, rng, t, tunnel_rate=self.tunnel_rate, speedup=self.speedup)


async def run_fleet(mqtt_url: str, net: RoadNet, fleet: list[SimVehicle], *, rate_hz: float = 1.0,
                    seed: int = 1, per_vehicle_connections: bool | None = None,
                    stop: asyncio.Event | None = None, on_tick=None, tunnels_per_hour: float = 0.0,
                    device_urls: Mapping[str, str] | None = None, clock=None) -> int:
    """Drive and publish until ``stop`` is set; returns the number of messages published.

    ``clock``: the center's clock (`runtime.clock.Clock`; default the wall clock). At its speed-up k
    the vehicles drive k times faster in wall time and stamp their fixes with its time: still
    ``rate_hz`` reports per wall second, k simulated seconds apart, at road speeds.
    ``tunnels_per_hour``: how often, on average, a vehicle loses its fix for a while.
    ``device_urls``: vehicle id -> broker URL with that vehicle's device credentials; such a
    vehicle connects on its own, as itself (client id = vehicle id). The others use ``mqtt_url``
    as ``sim-<id>`` (or one shared connection for a large fleet)."""
    from messaging.mqtt import MqttClient, Will

    stop = stop or asyncio.Event()
    rng = random.Random(seed)
    device_urls = device_urls or {}
    per_vehicle = len(fleet) <= 200 if per_vehicle_connections is None else per_vehicle_connections
    per_vehicle = per_vehicle or bool(device_urls)
    clients: dict[str, MqttClient] = {}
    if per_vehicle:
        for v in fleet:
            own = device_urls.get(v.vehicle_id)
            client = MqttClient(own or mqtt_url, v.vehicle_id if own else f"sim-{v.vehicle_id}",
                                will=Will(f"fleet/{v.vehicle_id}/status", b"offline"))
            client.start()
            clients[v.vehicle_id] = client
    else:
        shared = MqttClient(mqtt_url, f"sim-fleet-{seed}")
        shared.start()
        clients = {v.vehicle_id: shared for v in fleet}
    for client in set(clients.values()):
        client.wait_connected(15)
    for v in fleet:
        if per_vehicle:
            clients[v.vehicle_id].publish(f"fleet/{v.vehicle_id}/status", b"online", qos=1, retain=True)
    period = 1.0 / rate_hz
    pace = Pace(rate_hz, 1.0 if clock is None else clock.speedup, tunnels_per_hour)
    sent = 0
    next_tick = time.monotonic()
    try:
        while not stop.is_set():
            now = datetime.now(timezone.utc) if clock is None else clock.now_dt()
            started = time.monotonic()
            span_s = pace.span(now)
            for v in fleet:
                payload = pace.advance(v, net, rng, now, span_s)
                if clients[v.vehicle_id].publish(f"fleet/{v.vehicle_id}/nmea", payload):
                    sent += 1
            if on_tick:
                on_tick(sent, time.monotonic() - started)  # messages so far, this tick's work (s)
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay < -5 * period:  # fell far behind: do not burst to catch up
                next_tick = time.monotonic()
            await stop_or_timeout(stop, max(0.0, delay))
    finally:
        for v in fleet:
            if per_vehicle:
                clients[v.vehicle_id].publish(f"fleet/{v.vehicle_id}/status", b"offline", qos=1, retain=True)
        await asyncio.sleep(0.2)
        for client in set(clients.values()):
            client.stop()
    return sent


def _options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from config.settings import load

    settings = load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt", default=settings.MQTT_URL or None, help="broker URL (default: MQTT_URL)")
    parser.add_argument("--city", default=None, help="city profile TOML (default: the demo city)")
    parser.add_argument("--count", type=int, default=settings.SIM_VEHICLES, help="vehicles")
    parser.add_argument("--rate", type=float, default=settings.SIM_RATE_HZ, help="reports per second per vehicle")
    parser.add_argument("--seed", type=int, default=settings.SIM_SEED, help="random seed")
    parser.add_argument("--beidou-share", type=float, default=0.3, help="share of BD/GN talkers")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> None:
    """Run the vehicle simulator from the command line."""
    from simulators.democity import ensure_city
    from config.settings import load

    opts = _options(argv)
    if not opts.mqtt:
        raise SystemExit("no broker: give --mqtt or set MQTT_URL")
    profile = opts.city or str(ensure_city(load()))
    net, ids, starts = roadnet_from_city(profile)
    rng = random.Random(opts.seed)
    ids = (ids * (opts.count // max(1, len(ids)) + 1))[:opts.count] if opts.count <= len(ids) else \
        ids + [f"S{i:05d}" for i in range(len(ids), opts.count)]
    fleet = make_fleet(net, ids, rng, beidou_share=opts.beidou_share, starts=starts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("simulating %d vehicles at %.1f Hz on %s", len(fleet), opts.rate, opts.mqtt)
    await run_fleet(opts.mqtt, net, fleet, rate_hz=opts.rate, seed=opts.seed, stop=stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
