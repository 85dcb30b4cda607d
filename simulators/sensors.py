"""Sensor simulator: pressure points, flow meters and transformer monitors of the city's registry.

Plain JSON readings go to ``scada/<sensor_id>/<quantity>`` as ``{"value", "unit", "ts"}`` (the
format ``ingest.readings`` decodes). The transformer monitors of the first ``sparkplug_nodes``
substations are Sparkplug B edge nodes instead (group ``democity``, node ``SUB01``.., one
device per monitor named by its sensor id, metric ``load`` with an alias): NBIRTH with
``bdSeq``, DBIRTH with aliases, then DDATA by alias; ``seq`` 0..255 wrapping; NDEATH is the
MQTT last will of each node's own connection, so an abrupt ``node_death`` makes the broker
publish it. Each node listens on its own ``NCMD`` topic: a ``Node Control/Rebirth`` = true
(what the center sends when data comes from a node or device it holds no birth of, e.g. births
published before it subscribed: Sparkplug births are QoS 0 and not retained) makes the node
publish NBIRTH (same ``bdSeq``: the session and its will are the same) and every DBIRTH again,
``seq`` from 0, before any more data. A connection that drops starts a new session: a new
connection with ``bdSeq`` + 1 in its will, then the births (``simulators.sensor_mqtt``).

Values follow daily curves in the city's local time (transformer load: night trough ~30 %,
evening peak ~80 % of rated; water pressure 0.25-0.35 MPa with a night rise and a morning
dip) plus seeded noise. Time is whatever the caller steps the simulator to, usually a
``SimClock`` (simulated = start + speed-up x elapsed). Scenario hooks change the values:
``main_burst``, ``transformer_overload``, ``feeder_outage``, ``dead_sensor``, ``node_death``
and ``restore``. Same seed, same steps, same messages.

Run alone: ``python -m simulators.sensors --mqtt mqtt://127.0.0.1:1883 --speedup 60``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import signal
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

import orjson

from store.streams import pause as stop_or_timeout
from ingest.sparkplug import encode_death, encode_payload
from simulators.sensor_model import SensorSpec, flow_share, load_percent, pressure_offset, specs_from_city, substation_of
from simulators.sparkplug_node import (REBIRTH_METRIC, SPARKPLUG_GROUP, EdgeNode, EmulatedLink, NodeConnector,
                                       Publish, rebirth_asked)
from simulators.sensor_mqtt import MqttTransport
from simulators.sim_clock import SimClock

__all__ = ["CONTROL_TOPIC", "SENSOR_ACTIONS", "SensorSimError", "SensorSimulator", "listen_for_commands", "run"]

log = logging.getLogger(__name__)
UTC = timezone.utc
CONTROL_TOPIC = "sim/sensors/control"
SENSOR_ACTIONS = ("main_burst", "transformer_overload", "feeder_outage", "dead_sensor", "node_death", "restore")


class SensorSimError(ValueError):
    """A scenario hook names something the simulator does not know (DMA, asset, node, sensor)."""


@dataclass
class _Effect:
    """A scenario override on one sensor: ramp from the normal value to ``target``."""

    target: float
    start: datetime
    ramp_s: float = 30.0

    def apply(self, normal: float, now: datetime) -> float:
        f = (now - self.start).total_seconds() / self.ramp_s if self.ramp_s > 0 else 1.0
        return normal if f <= 0 else normal + (self.target - normal) * min(1.0, f)


class SensorSimulator:
    """Publishes every sensor's readings when due; scenario hooks change what they read."""

    def __init__(self, sensors: Iterable[SensorSpec], *, publish: Publish, seed: int = 1,
                 sparkplug_nodes: int = 2, group_id: str = SPARKPLUG_GROUP,
                 node_connector: NodeConnector | None = None, zone: str = "Asia/Shanghai",
                 period_s: float | None = None):
        """``publish(topic, payload, qos, retain)``; ``period_s`` overrides every sensor's period."""
        self.sensors = {s.sensor_id: s for s in sensors}
        self._publish = publish
        self._rng = random.Random(seed)
        self.group_id = group_id
        self._connect = node_connector or (lambda node, topic, will, **kw: EmulatedLink(publish, topic, will))
        self._zone = ZoneInfo(zone)
        self._period = period_s
        self._base = {sid: self._rng.uniform(0.28, 0.32) if s.kind == "pressure" else
                      self._rng.uniform(0.8, 1.1) for sid, s in self.sensors.items()}
        self._next: dict[str, datetime] = {}
        self._effects: dict[str, _Effect] = {}
        self.dead: set[str] = set()
        self.now: datetime | None = None
        self.sent = 0
        self.rebirths_asked = 0
        self.nodes: dict[str, EdgeNode] = {}
        self.node_of: dict[str, str] = {}
        stations: dict[str, list[str]] = {}
        for s in self.sensors.values():
            station = substation_of(s.feeder) if s.kind == "transformer_load" else None
            if station:
                stations.setdefault(station, []).append(s.sensor_id)
        for k, members in enumerate(list(stations.values())[:max(0, sparkplug_nodes)]):
            node = EdgeNode(f"SUB{k + 1:02d}", members)
            node.aliases = {sid: n + 1 for n, sid in enumerate(members)}
            self.nodes[node.node_id] = node
            self.node_of.update({sid: node.node_id for sid in members})

    # ------------------------------------------------------------------ values
    def normal_value(self, spec: SensorSpec, now: datetime) -> float:
        """The sensor's undisturbed reading at ``now`` (daily curve plus noise)."""
        local = now.astimezone(self._zone)
        hour = local.hour + local.minute / 60 + local.second / 3600
        base = self._base[spec.sensor_id]
        if spec.kind == "transformer_load":
            return max(0.0, load_percent(hour) * base + self._rng.gauss(0, 2.0))
        if spec.kind == "pressure":
            return max(0.0, base + pressure_offset(hour) + self._rng.gauss(0, 0.003))
        if spec.kind == "flow":
            return max(0.0, 400.0 * base * flow_share(hour) + self._rng.gauss(0, 8.0))
        return 50.0 * base + self._rng.gauss(0, 1.0)

    def value(self, spec: SensorSpec, now: datetime) -> float:
        """The reading at ``now``, scenario effects included."""
        normal = self.normal_value(spec, now)
        effect = self._effects.get(spec.sensor_id)
        value = effect.apply(normal, now) if effect else normal
        digits = 3 if spec.kind == "pressure" else 1
        return round(max(0.0, value), digits)

    # ------------------------------------------------------------------ stepping
    def step(self, now: datetime, stamp: datetime | None = None) -> int:
        """Publish every reading due by simulated time ``now``; ``stamp`` (default ``now``) is the ts sent."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        stamp = stamp or now
        self.now = now
        for node in self.nodes.values():
            if not node.dead:
                self._keep_session(node, stamp)
        sent_before = self.sent
        for sid, spec in self.sensors.items():
            period = self._period or spec.period_s
            due = self._next.get(sid)
            if due is None:  # first reading at a seeded phase within the period
                due = now + timedelta(seconds=self._rng.uniform(0, min(period, 60.0)))
                self._next[sid] = due
            if due > now:
                continue
            self._next[sid] = due + timedelta(seconds=period) if due + timedelta(seconds=period) > now \
                else now + timedelta(seconds=period)
            if sid in self.dead:
                continue
            value = self.value(spec, now)
            node_id = self.node_of.get(sid)
            if node_id is None:
                payload = orjson.dumps({"value": value, "unit": spec.unit, "ts": stamp.isoformat()})
                self._publish(f"scada/{sid}/{spec.quantity}", payload, 0, False)
                self.sent += 1
            else:
                node = self.nodes[node_id]
                if node.dead or node.link is None or not node.born:
                    continue
                self._node_send(node, f"DDATA/{node.node_id}/{sid}", [(None, node.aliases[sid], value, "Double")],
                                stamp)
        return self.sent - sent_before

    def _topic(self, rest: str) -> str:
        return f"spBv1.0/{self.group_id}/{rest}"

    def _node_send(self, node: EdgeNode, rest: str, metrics, stamp: datetime, *, units=None) -> None:
        payload = encode_payload(metrics, node.seq, int(stamp.timestamp() * 1000), units=units)
        node.seq = (node.seq + 1) % 256
        node.link.publish(self._topic(rest), payload, 0, False)
        self.sent += 1

    def _keep_session(self, node: EdgeNode, stamp: datetime) -> None:
        """A new session when there is none or it dropped; births when due (new connection or Rebirth)."""
        if node.link is not None and node.link.lost:
            node.link.close()  # its will (NDEATH) is the broker's to publish; no reconnect with it
            node.link = None
        if node.link is None:
            again = {"wait": 0.0} if node.bdseq >= 0 else {}  # a new session: connect in the background
            node.bdseq = (node.bdseq + 1) % 256
            node.born = node.rebirth = False
            node.link = self._connect(node.node_id, self._topic(f"NDEATH/{node.node_id}"), encode_death(node.bdseq),
                                      commands=self._topic(f"NCMD/{node.node_id}"),
                                      on_command=lambda payload, node=node: self._command(node, payload), **again)
        if node.link.connected and (node.rebirth or not node.born):
            if node.rebirth and node.born:
                log.info("sensor simulator: %s births again on the center's Rebirth command", node.node_id)
            node.rebirth = False
            self._birth(node, stamp)

    def _command(self, node: EdgeNode, payload: bytes) -> None:
        """An NCMD for ``node`` (on the MQTT thread): a Rebirth is answered by the next step."""
        if rebirth_asked(payload):
            node.rebirth = True
            self.rebirths_asked += 1

    def node_command(self, edge_node: str, payload: bytes) -> None:
        """Handle an NCMD payload for an edge node as its connection would (tests without a broker)."""
        node = self.nodes.get(edge_node)
        if node is None:
            raise SensorSimError(f"unknown Sparkplug edge node {edge_node!r}; known: {sorted(self.nodes)}")
        self._command(node, payload)

    def _birth(self, node: EdgeNode, stamp: datetime) -> None:
        """NBIRTH (the session's bdSeq, seq 0) and a DBIRTH per device, on the node's connection."""
        node.seq = 0
        node.born = True
        self._node_send(node, f"NBIRTH/{node.node_id}",
                        [("bdSeq", None, node.bdseq, "Int64"), (REBIRTH_METRIC, None, False, "Boolean")],
                        stamp)
        for sid in node.devices:
            spec = self.sensors[sid]
            value = None if sid in self.dead else self.value(spec, self.now or stamp)
            self._node_send(node, f"DBIRTH/{node.node_id}/{sid}",
                            [(spec.quantity, node.aliases[sid], value, "Double")], stamp,
                            units={spec.quantity: spec.unit})

    def close(self) -> None:
        """Disconnect every edge node cleanly."""
        for node in self.nodes.values():
            if node.link is not None and not node.dead:
                node.link.close()
            node.link = None

    # ------------------------------------------------------------------ scenario hooks
    def _require_now(self, now: datetime | None) -> datetime:
        now = now or self.now
        if now is None:
            raise SensorSimError("the simulator has not been stepped yet: pass now")
        return now

    def main_burst(self, dma_id: str, at: tuple[float, float] | None = None, spread_s: float = 300.0,
                   *, now: datetime | None = None) -> list[str]:
        """Pressure falls below critical low through a DMA's points, nearest to ``at`` first."""
        now = self._require_now(now)
        points = [s for s in self.sensors.values() if s.kind == "pressure" and s.dma_id == dma_id]
        if not points:
            raise SensorSimError(f"no pressure points in DMA {dma_id!r}")
        origin = at or (points[0].lon, points[0].lat)
        scale = math.cos(math.radians(origin[1]))
        points.sort(key=lambda s: ((s.lon - origin[0]) * scale) ** 2 + (s.lat - origin[1]) ** 2)
        for rank, spec in enumerate(points):
            low = spec.low_critical if spec.low_critical is not None else 0.14
            delay = spread_s * rank / max(1, len(points) - 1)
            target = low * (0.45 + 0.35 * rank / max(1, len(points)))
            self._effects[spec.sensor_id] = _Effect(target, now + timedelta(seconds=delay), 60.0)
        for spec in self.sensors.values():  # the DMA's inflow jumps
            if spec.kind == "flow" and spec.dma_id == dma_id:
                self._effects[spec.sensor_id] = _Effect(1100.0, now, 60.0)
        return [s.sensor_id for s in points]

    def _by_asset(self, asset_ids: Iterable[str]) -> list[SensorSpec]:
        wanted = set(asset_ids)
        found = [s for s in self.sensors.values() if s.asset_id in wanted and s.kind == "transformer_load"]
        if not found:
            raise SensorSimError(f"no transformer monitors on {sorted(wanted)}")
        return found

    def transformer_overload(self, asset_id: str, percent: float = 120.0, *, now: datetime | None = None) -> None:
        """Load of one transformer climbs above critical high (default 120 % of rated)."""
        now = self._require_now(now)
        for spec in self._by_asset([asset_id]):
            self._effects[spec.sensor_id] = _Effect(percent, now, 120.0)

    def feeder_outage(self, asset_ids: Iterable[str], *, now: datetime | None = None) -> None:
        """Load drops to zero on every transformer of a supply area (a feeder trips)."""
        now = self._require_now(now)
        for spec in self._by_asset(asset_ids):
            self._effects[spec.sensor_id] = _Effect(0.0, now, 0.0)

    def dead_sensor(self, sensor_id: str) -> None:
        """The sensor stops publishing (the center should raise a no-data alarm)."""
        if sensor_id not in self.sensors:
            raise SensorSimError(f"unknown sensor {sensor_id!r}")
        self.dead.add(sensor_id)

    def node_death(self, edge_node: str) -> None:
        """A Sparkplug edge node loses its connection abruptly: the broker publishes its NDEATH."""
        node = self.nodes.get(edge_node)
        if node is None:
            raise SensorSimError(f"unknown Sparkplug edge node {edge_node!r}; known: {sorted(self.nodes)}")
        if node.link is not None and not node.dead:
            node.link.kill()
        node.dead, node.link = True, None

    def restore(self, *targets: str) -> None:
        """Undo effects on sensors, assets, DMAs or edge nodes named; nothing named: everything."""
        every = not targets
        names = set(targets)
        for sid in list(self._effects):
            spec = self.sensors[sid]
            if every or names & {sid, spec.asset_id, spec.dma_id}:
                del self._effects[sid]
        self.dead = {sid for sid in self.dead if not (every or sid in names)}
        for node in self.nodes.values():
            if every or node.node_id in names:
                node.dead = False  # the next step reconnects and rebirths with bdSeq + 1

    def apply(self, action: str, params: dict) -> None:
        """Run a scenario step's sensor action (``main_burst``, ``feeder_outage``, ...) with its params."""
        if action == "main_burst":
            point = params.get("point")
            self.main_burst(params["dma"], tuple(point) if point else None, float(params.get("spread_s", 300)))
        elif action == "transformer_overload":
            self.transformer_overload(params["asset"], float(params.get("percent", 120)))
        elif action == "feeder_outage":
            assets = list(params.get("assets") or [])
            if params.get("feeder"):
                assets += [s.asset_id for s in self.sensors.values() if s.feeder == params["feeder"]]
            self.feeder_outage(assets)
        elif action == "dead_sensor":
            self.dead_sensor(params["sensor"])
        elif action == "node_death":
            self.node_death(params["node"])
        elif action == "restore":
            self.restore(*params.get("targets", ()))
        else:
            raise SensorSimError(f"unknown sensor action {action!r}; known: {', '.join(SENSOR_ACTIONS)}")

    def on_control(self, messages) -> None:
        """MQTT handler for ``sim/sensors/control``: JSON ``{"action": ..., "params": {...}}``."""
        for message in messages:
            try:
                command = orjson.loads(message.payload)
                self.apply(command["action"], dict(command.get("params") or {}))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("sensor simulator: bad control message %r: %s", message.payload[:200], exc)

    def sparkplug_sensor_map(self) -> dict[str, str]:
        """``<edge_node>/<device>/<metric>`` -> registry sensor id, for ``SparkplugState``."""
        return {f"{node.node_id}/{sid}/{self.sensors[sid].quantity}": sid
                for node in self.nodes.values() for sid in node.devices}



async def run(simulator: SensorSimulator, clock: SimClock, stop: asyncio.Event, *,
              tick_s: float = 0.2, wall_stamps: bool = True) -> int:
    """Step the simulator on ``clock`` until ``stop``; returns the number of messages sent."""
    while not stop.is_set():
        now = clock.now()
        simulator.step(now, datetime.now(UTC) if wall_stamps else now)
        await stop_or_timeout(stop, tick_s)
    return simulator.sent


def listen_for_commands(simulator: SensorSimulator, mqtt_url: str, loop: asyncio.AbstractEventLoop):
    """Subscribe to CONTROL_TOPIC so that a scenario run elsewhere can drive this simulator."""
    from messaging.mqtt import MqttClient

    client = MqttClient(mqtt_url, f"sim-sensors-control-{id(simulator):x}", on_messages=simulator.on_control,
                        loop=loop)
    client.subscribe(CONTROL_TOPIC, qos=1)
    client.start()
    return client


def _options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from config.settings import load

    settings = load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mqtt", default=settings.MQTT_URL or None, help="broker URL (default: MQTT_URL)")
    parser.add_argument("--city", default=None, help="city profile TOML (default: the demo city)")
    parser.add_argument("--seed", type=int, default=settings.SIM_SEED, help="random seed")
    parser.add_argument("--speedup", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument("--sparkplug-nodes", type=int, default=2, help="substations reporting as Sparkplug B edge nodes")
    parser.add_argument("--period", type=float, default=None, help="override every sensor's period (simulated s)")
    parser.add_argument("--sim-stamps", action="store_true", help="stamp readings with simulated, not wall, time")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> None:
    """Run the sensor simulator from the command line until SIGINT/SIGTERM."""
    from simulators.democity import ensure_city
    from config.settings import load
    from gis.layers import load_profile

    opts = _options(argv)
    if not opts.mqtt:
        raise SystemExit("no broker: give --mqtt or set MQTT_URL")
    settings = load()
    city = await asyncio.to_thread(load_profile, opts.city or str(ensure_city(settings)))
    transport = MqttTransport(opts.mqtt)
    transport.wait_connected(15)
    simulator = SensorSimulator(specs_from_city(city), publish=transport.publish, seed=opts.seed,
                                sparkplug_nodes=opts.sparkplug_nodes, node_connector=transport.connect_node,
                                zone=settings.TIME_ZONE, period_s=opts.period)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    control = listen_for_commands(simulator, opts.mqtt, loop)
    try:
        await run(simulator, SimClock(speedup=opts.speedup), stop, wall_stamps=not opts.sim_stamps)
    finally:
        control.stop()
        simulator.close()
        transport.stop()


if __name__ == "__main__":
    asyncio.run(main())
