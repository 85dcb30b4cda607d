"""The ingest service: MQTT subscriber -> decoders -> batched, pipelined Redis writes.

Messages arrive from the MQTT module in batches on the event loop. Each is routed by topic to
its decoder (``fleet/...`` vehicles, ``scada/...`` and ``spBv1.0/...`` sensors); any exception
from a payload is caught, logged at a bounded rate and counted, and the loop goes on. Decoded records accumulate in a batch that is written in one pipeline when it
holds INGEST_BATCH messages or INGEST_FLUSH_MS has passed. While Redis is unreachable, batches
queue in order (bounded by INGEST_BUFFER_MAX, oldest dropped and counted), health reports
"degraded", and they are flushed in order when Redis returns. A batch holding alarm events is
written at once, without waiting for the flush interval.

Vehicles: a fleet topic whose id breaks the vehicle id rule is refused (``bad_vehicle_id``); a
vehicle not in the fleet registry (``store.fleet``, in PostgreSQL, followed by its revision
every FLEET_POLL_S) is not decoded: its message is counted (``unknown_vehicle``) and kept aside, as the
vehicle's last topic, time and count among the newest VEHICLE_UNKNOWN_MAX such vehicles.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import time
from typing import Any, Callable

from runtime.clock import Clock
from runtime.lifecycle import stop_on_signals, tune_gc_for_latency
from messaging.mqtt import MqttClient, ReceivedMessage, without_credentials
from config.settings import Settings
from store.live import Store
from store.fleet import FleetStore, valid_vehicle_id
from ingest.lanes import Batch, Lane
from ingest.readings import RejectedPayload
from ingest.registries import RegistriesMixin, publish_registry
from ingest.sensors import SensorIngest, SensorRegistry, rebirth_command
from ingest.tally import RateLimitedLog, Tally
from ingest.vehicles import HeldWrites, VehicleIngest, parse_fleet_topic

log = logging.getLogger(__name__)

FLEET_TOPICS = ("fleet/+/nmea", "fleet/+/nmea/backfill", "fleet/+/status", "fleet/+/jt808",
                "fleet/+/jt808/backfill")  # jt808: the JT/T 808 gateway's fixes (ingest.jt808_fixes)
SENSOR_TOPICS = ("scada/+/+", "spBv1.0/#")
TOPICS = FLEET_TOPICS + SENSOR_TOPICS
# INGEST_TOPICS: what a process takes, and the name of its heartbeat (svc:<name>)
LANES = {"all": ("fleet", "sensors"), "fleet": ("fleet",), "sensors": ("sensors",)}
HEARTBEAT = {"all": "ingest", "fleet": "ingest", "sensors": "ingest-sensors"}
REBIRTH_INTERVAL_S = 10.0  # at most one rebirth request per edge node in this time
WRITE_MERGE_MAX = 8  # queued fleet batches one write may cover when the writes fall behind


class Ingest(RegistriesMixin):
    """Routes MQTT messages to decoders and writes their output to Redis in batches."""

    def __init__(self, settings: Settings, store: Store, registry: SensorRegistry | None = None):
        self.settings = settings
        self.store = store
        self.vehicles = VehicleIngest(max_speed_kmh=settings.MAX_JUMP_SPEED_KMH)
        self.sensors = SensorIngest(registry or SensorRegistry(), store.clock.now(),
                                    max_bytes=settings.INGEST_MAX_PAYLOAD,
                                    no_data_factor=settings.SENSOR_NO_DATA_FACTOR)
        self.fleet = Lane("fleet")
        self.sensor_lane = Lane("sensors")
        self.stats: Tally = Tally()
        self._stats_flushed: collections.Counter = collections.Counter()
        self.takes = settings.INGEST_TOPICS  # all, fleet or sensors
        self.links = {lane: False for lane in LANES[self.takes]}
        self.rlog = RateLimitedLog(logger=log)
        self.publish: Callable[[str, bytes], Any] | None = None
        self._rebirth_asked: dict[tuple[str, str], float] = {}
        self.held = HeldWrites(settings.INGEST_HOLD_S)  # vehicles' track records and counters
        self.stopping = False
        self._indexed: dict[tuple[str, int], bool] = {}  # track hours whose index is set (Store.write_fixes)
        self._known_ids: set[str] = set()  # vehicle ids already in veh:ids
        self._fleet = FleetStore(store.db, store.redis)
        self.fleet_ids: frozenset[str] = frozenset()  # the vehicles of the fleet registry
        self.fleet_revision: int | None = None  # its revision when they were read

    @property
    def redis_ok(self) -> bool:
        """Whether the last write of every lane succeeded."""
        return self.fleet.redis_ok and self.sensor_lane.redis_ok

    @property
    def takes_fleet(self) -> bool:
        """Whether this process takes the vehicles' topics (INGEST_TOPICS all or fleet)."""
        return "fleet" in self.links

    @property
    def takes_sensors(self) -> bool:
        """Whether this process takes the sensors' topics (INGEST_TOPICS all or sensors)."""
        return "sensors" in self.links

    @property
    def mqtt_ok(self) -> bool:
        """Whether its broker connections (fleet topics, sensor topics, or both) are up."""
        return all(self.links.values())

    @property
    def queue(self) -> collections.deque:
        """The fleet lane's batches waiting to be written."""
        return self.fleet.queue

    @property
    def queued_messages(self) -> int:
        """Messages decoded and not yet written, in both lanes."""
        return self.fleet.queued + self.sensor_lane.queued

    # called on the event loop by the MQTT module ------------------------------------------------
    def on_messages(self, messages: list[ReceivedMessage]) -> None:
        """Decode a batch of messages; schedule a write when the batch is full or holds alarms."""
        max_payload = self.settings.INGEST_MAX_PAYLOAD
        stats = self.stats
        stats["messages"] += len(messages)
        # fixes and readings are judged and dated on the center's clock (runtime.clock): the time a
        # message arrived, on that clock (the wall clock itself unless the demo runs it faster)
        at = self.store.clock.at if self.store.clock.accelerated else None
        for msg in messages:
            if len(msg.payload) > max_payload:
                self.reject(msg.topic, "payload_too_large")
                continue
            try:
                self.route(msg, msg.received_at if at is None else at(msg.received_at))
            except RejectedPayload as exc:
                self.reject(msg.topic, exc.reason)
            except Exception as exc:  # a payload must never stop the subscriber
                self.reject(msg.topic, f"error:{type(exc).__name__}")
                self.rlog.warning("route-error", "ingest: %s on %s: %s", type(exc).__name__, msg.topic, exc)
        sensors = self.sensor_lane.batch
        if sensors.sensors.events or len(sensors) >= self.settings.INGEST_BATCH:
            self._cut(self.sensor_lane)
        if len(self.fleet.batch) >= self.settings.INGEST_BATCH:
            self._cut(self.fleet)

    def route(self, msg: ReceivedMessage, received_at: float | None = None) -> None:
        """Send one message to the decoder its topic names; ``received_at``: when it arrived on the
        center's clock (default: ``msg.received_at``)."""
        topic = msg.topic
        received_at = msg.received_at if received_at is None else received_at
        if topic.startswith("fleet/"):
            parsed = parse_fleet_topic(topic)
            if parsed is None:
                self.reject(topic, "unknown_topic")
                return
            vehicle_id, kind = parsed
            if not valid_vehicle_id(vehicle_id):
                self.reject(topic, "bad_vehicle_id")
                return
            if vehicle_id not in self.fleet_ids:
                self.keep_aside(vehicle_id, msg)
                return
            if kind == "status":
                self.on_status(vehicle_id, msg)
                return
            handle = self.vehicles.handle_jt808 if kind.startswith("jt808") else self.vehicles.handle
            handle(vehicle_id, msg.payload, received_at, kind.endswith("backfill"), self.fleet.batch.vehicles,
                   self.stats)
        elif topic.startswith("scada/"):
            self.sensors.handle_scada(topic, msg.payload, received_at, self.sensor_lane.batch.sensors,
                                      self.stats)
        elif topic.startswith("spBv1.0/"):
            node = self.sensors.handle_sparkplug(topic, msg.payload, received_at,
                                                 self.sensor_lane.batch.sensors, self.stats)
            if node is not None:
                self.ask_rebirth(*node, msg.received_at)
        else:
            self.reject(topic, "unknown_topic")

    def keep_aside(self, vehicle_id: str, msg: ReceivedMessage) -> None:
        """A message from a vehicle not in the fleet registry: not decoded, counted
        ``rejected:unknown_vehicle``, and its vehicle's last topic, time and message count kept
        aside (the newest VEHICLE_UNKNOWN_MAX vehicles of the batch; the store keeps as many)."""
        self.reject(msg.topic, "unknown_vehicle")
        unknown = self.fleet.batch.unknown
        last = unknown.pop(vehicle_id, None)  # and in again: the newest last
        unknown[vehicle_id] = (msg.topic, msg.received_at, 1 if last is None else last[2] + 1)
        if len(unknown) > self.settings.VEHICLE_UNKNOWN_MAX:
            del unknown[next(iter(unknown))]

    def ask_rebirth(self, group: str, node: str, now: float) -> None:
        """Publish an NCMD Node Control/Rebirth to an edge node (at most once per interval)."""
        last = self._rebirth_asked.get((group, node))
        if last is not None and now - last < REBIRTH_INTERVAL_S:
            return
        self._rebirth_asked[(group, node)] = now
        self.stats["sparkplug:rebirth_requested"] += 1
        if self.publish is not None:
            self.publish(f"spBv1.0/{group}/NCMD/{node}", rebirth_command(int(now * 1000)))

    def on_status(self, vehicle_id: str, msg: ReceivedMessage) -> None:
        """fleet/<id>/status: 'online' or 'offline' (the last will), plain text."""
        try:
            link = msg.payload.decode("ascii").strip().lower()
        except UnicodeDecodeError:
            self.reject(msg.topic, "status_not_ascii")
            return
        if link not in ("online", "offline"):
            self.reject(msg.topic, "status_unknown")
            return
        self.stats["status:" + link] += 1
        asyncio.get_running_loop().create_task(self._write_link(vehicle_id, link, msg.received_at))

    async def _write_link(self, vehicle_id: str, link: str, at: float) -> None:
        try:
            await self.store.set_vehicle_link(vehicle_id, link, at)
        except Exception as exc:
            self.stats["status_write_failed"] += 1
            self.rlog.warning("link", "ingest: cannot record link of %s: %s", vehicle_id, exc)

    def reject(self, topic: str, reason: str) -> None:
        """Count a rejected message by reason, with a bounded-rate log line."""
        self.stats["rejected:" + reason] += 1
        self.rlog.warning("reject:" + reason, "ingest: rejected message on %s: %s", topic[:200], reason)

    # batching and writing ----------------------------------------------------------------------
    def _cut(self, lane: Lane | None = None, *, flush: bool = False) -> None:
        """Move the current batch to the write queue (bounded; oldest dropped when Redis is away).

        A fleet batch gives its track records and per-vehicle counters to `HeldWrites` and takes
        back those due (every one when ``flush``, at shutdown): a vehicle's track and counters
        are written at most once per INGEST_HOLD_S, its live position with every batch."""
        lane = lane or self.fleet
        batch, lane.batch = lane.batch, Batch()
        if lane is self.fleet:
            self.held.cut(batch.vehicles, time.monotonic(), flush)
        if batch.empty():
            return
        lane.queue.append(batch)
        lane.queued += len(batch)
        while lane.queued > self.settings.INGEST_BUFFER_MAX and len(lane.queue) > 1:
            dropped = lane.queue.popleft()
            lane.queued -= len(dropped)
            self.stats["buffer_dropped"] += len(dropped)
            if dropped.vehicles.track:
                self.stats["buffer_dropped_track"] += len(dropped.vehicles.track)
        lane.wake.set()

    async def _write(self, batch: Batch, retention_s: float) -> None:
        settings = self.settings
        if not batch.vehicles_done:
            v = batch.vehicles
            if len(v) or v.seen or v.counters or v.track:
                await self.store.write_fixes(v.fixes, v.counters, seen=v.seen, retention_s=retention_s,
                                             signals=v.signals, indexed=self._indexed,
                                             known=self._known_ids, track=v.track)
            for done in (batch, *batch.parts):
                done.vehicles_done = True
        if batch.unknown and not batch.unknown_done:
            await self.store.keep_unknown_vehicles(batch.unknown, settings.VEHICLE_UNKNOWN_MAX)
            for done in (batch, *batch.parts):
                done.unknown_done = True
        s = batch.sensors
        if len(s) or s.latest:
            await self.store.write_sensor_batch(latest=s.latest, history=s.history, unknown=s.unknown,
                                                links=s.links, events=s.events,
                                                history_max=settings.SENSOR_HISTORY,
                                                unknown_max=settings.SENSOR_UNKNOWN_MAX)

    async def writer(self, lane: Lane | None = None) -> None:
        """Write a lane's batches in order; on Redis errors retry with backoff, keeping the order."""
        lane = lane or self.fleet
        flush_s = self.settings.INGEST_FLUSH_MS / 1000.0
        retention_s = self.settings.TRACK_RETENTION_H * 3600
        backoff = 0.2
        while True:
            if not lane.queue:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns instead of raising
                # when it is cancelled just as the event is set, and this loop then never ends
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(flush_s):
                        await lane.wake.wait()
                lane.wake.clear()
                if lane is self.fleet:
                    self.vehicles.flush_idle_backfill(self.store.clock.now(), lane.batch.vehicles, self.stats)
                self._cut(lane)
                if not lane.queue:
                    continue
            batch, count = self._next_write(lane)
            try:
                await self._write(batch, retention_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if lane.redis_ok:
                    log.error("ingest: Redis write failed (%s lane: %s); buffering in memory", lane.name, exc)
                lane.redis_ok = False
                self.stats["redis_write_failed"] += 1
                # A Redis that comes back may have lost what these caches say is there.
                self._indexed.clear()
                self._known_ids.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not lane.redis_ok:
                log.info("ingest: Redis is back; flushing %d buffered %s batches", len(lane.queue), lane.name)
            lane.redis_ok = True
            backoff = 0.2
            for _ in range(count):
                done = lane.queue.popleft()
                lane.queued -= len(done)
                self.stats["fixes_written"] += len(done.vehicles.fixes)
                if done.vehicles.track:
                    self.stats["track_written"] += len(done.vehicles.track)
            if count > 1:
                self.stats["writes_merged"] += count

    def _next_write(self, lane: Lane) -> tuple[Batch, int]:
        """The next write of a lane and how many queued batches it covers: the first batch, or,
        when the writes fall behind, the queued fleet batches merged into one (at most
        WRITE_MERGE_MAX batches of fixes only), so a backlog costs one script call, and a vehicle
        reporting several times in it one latest-fix update, rather than one of each per batch."""
        queue = lane.queue
        first = queue[0]
        if len(queue) == 1 or first.vehicles_done or len(first.sensors) or first.sensors.latest:
            return first, 1
        parts = [first]
        for batch in itertools.islice(queue, 1, WRITE_MERGE_MAX):
            if batch.vehicles_done or len(batch.sensors) or batch.sensors.latest:
                break
            parts.append(batch)
        if len(parts) == 1:
            return first, 1
        return Batch.merged(parts), len(parts)

    async def ack_listener(self) -> None:
        """Apply operators' acknowledgements queued by the web (alarms:acks) to the alarm state."""
        cursor = None
        while not self.stopping:
            try:
                if cursor is None:
                    cursor = await self.store.acks_cursor()
                entries = await self.store.read_alarm_acks(cursor, block_ms=250)
                for entry_id, fields in entries:
                    self.sensors.acknowledge(fields.get("alarm_id", ""), fields.get("user", ""),
                                             float(fields.get("at") or self.store.clock.now()),
                                             self.sensor_lane.batch.sensors,
                                             self.stats)
                    cursor = entry_id
                if entries:
                    self._cut(self.sensor_lane)
                    await self.store.set_acks_cursor(cursor)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.rlog.warning("acks", "ingest: cannot read acknowledgements: %s", exc)
                await asyncio.sleep(1.0)

    async def reporter(self, interval_s: float = 2.0) -> None:
        """Publish stats deltas and a heartbeat every few seconds."""
        while True:
            await asyncio.sleep(interval_s)
            await self.report()

    async def report(self) -> None:
        """Add the stats deltas to ingest:stats and write the heartbeat (errors only logged)."""
        deltas = {k: v - self._stats_flushed.get(k, 0) for k, v in self.stats.items()
                  if v != self._stats_flushed.get(k, 0)}
        try:
            await self.store.add_ingest_stats(deltas)
            self._stats_flushed.update(deltas)
            await self.store.heartbeat(HEARTBEAT[self.takes], self.health())
        except Exception as exc:
            self.rlog.warning("reporter", "ingest: cannot report stats: %s", exc)

    def health(self) -> dict[str, Any]:
        """This process's own view: degraded while Redis or the broker is away."""
        return {"pid": os.getpid(), "topics": self.takes, "redis_ok": self.redis_ok, "mqtt_ok": self.mqtt_ok,
                "buffered": self.queued_messages, "messages": self.stats["messages"],
                "written": self.stats["fixes_written"], "track_written": self.stats["track_written"],
                "held": len(self.held), "sensors": len(self.sensors.registry), "vehicles": len(self.fleet_ids),
                "status": "ok" if self.redis_ok and self.mqtt_ok else "degraded"}

    def keeps_up(self) -> bool:
        """Flow control for the MQTT module: take more messages only while the writes keep up
        (a few batches queued); while Redis is away, buffer up to INGEST_BUFFER_MAX instead."""
        if not self.fleet.redis_ok:
            return True
        return self.fleet.queued < 16 * self.settings.INGEST_BATCH

    def on_connection(self, up: bool, which: str = "fleet") -> None:
        """Broker connection state of one of the two MQTT clients."""
        self.links[which] = up


def topics(settings: Settings, which: tuple[str, ...] = TOPICS) -> list[str]:
    """The subscriptions: the vehicles' shared ($share/<group>/...) when several ingest processes
    split the load; the sensors' never (a sensor's alarm state lives in one process: its readings
    must all reach that one, the sensors' ingest)."""
    group = settings.MQTT_SHARED_GROUP
    return [f"$share/{group}/{t}" if group and t in FLEET_TOPICS else t for t in which]


async def serve(settings: Settings, redis_url: str, mqtt_url: str, stop: asyncio.Event | None = None,
                hook: Callable[[Ingest], None] | None = None, *, own_process: bool = False) -> None:
    """Run the ingest service until SIGINT/SIGTERM (or until ``stop`` is set); ``hook`` is called
    with the Ingest once built (tests and benchmarks watch its health). ``own_process``: the
    process is the ingest's alone, so its garbage collector is tuned for latency."""
    stop = stop_on_signals(stop)
    loop = asyncio.get_running_loop()
    # a short patience: a longer outage is the writer's to handle (buffer in order, then flush)
    store = Store.from_url(redis_url, settings.DATABASE_URL, db_pool_size=settings.DB_POOL_SIZE,
                           health_check_interval=10, socket_timeout=5, patience_s=1.0)
    store.clock = Clock.from_settings(settings)  # fix and reading times on the center's clock
    ingest = Ingest(settings, store)
    if hook is not None:
        hook(ingest)
    try:
        count = await publish_registry(settings, store) if ingest.takes_sensors else None
        if count is not None:
            log.info("ingest: sensor registry of %d sensors from the city layers", count)
    except Exception as exc:
        log.warning("ingest: sensor registry not refreshed from the city: %s", exc)
    await _check_takes(ingest, store)
    if ingest.takes_fleet:
        await ingest.load_fleet()  # (else the timer retries: meanwhile every vehicle's messages are kept aside)
    if ingest.takes_sensors and await ingest.load_registry():
        try:
            restored = ingest.sensors.restore(await store.alarms())
            log.info("ingest: %d sensors registered, %d alarms restored", len(ingest.sensors.registry), restored)
        except Exception as exc:
            log.warning("ingest: alarms not restored: %s", exc)
    if own_process:
        tune_gc_for_latency()  # after start-up: what exists now is never scanned again
    # A connection per lane: the bulk fleet traffic is flow-controlled (back-pressure when the
    # writes fall behind); sensor readings arrive on their own and are never queued behind fixes
    # (and, with INGEST_TOPICS, in a process of their own, never behind a batch of fixes either).
    name = f"ingest-{os.getpid()}-{id(ingest):x}"
    clients: list[MqttClient] = []
    tasks = [asyncio.create_task(ingest.reporter(), name="ingest-reporter"),
             asyncio.create_task(ingest.timer(), name="ingest-timer")]
    if ingest.takes_fleet:
        client = MqttClient(mqtt_url, name, on_messages=ingest.on_messages, loop=loop,
                            on_connection=ingest.on_connection, ready=ingest.keeps_up)
        client.subscribe(topics(settings, FLEET_TOPICS))
        clients.append(client)
        tasks.append(asyncio.create_task(ingest.writer(), name="ingest-writer"))
    if ingest.takes_sensors:
        sensor_client = MqttClient(mqtt_url, name + "-s", on_messages=ingest.on_messages, loop=loop,
                                   on_connection=lambda up: ingest.on_connection(up, "sensors"))
        sensor_client.subscribe(topics(settings, SENSOR_TOPICS))
        clients.append(sensor_client)
        ingest.publish = lambda topic, payload: sensor_client.publish(topic, payload, qos=0)
        tasks += [asyncio.create_task(ingest.writer(ingest.sensor_lane), name="ingest-sensor-writer"),
                  asyncio.create_task(ingest.ack_listener(), name="ingest-acks")]  # (last: see below)
    for client in clients:
        client.start()
    log.info("ingest: subscribed to %s on %s", ", ".join(topics(settings, _topics_of(ingest))),
             without_credentials(mqtt_url))  # never the password in a log
    try:
        await stop.wait()
    finally:
        for client in clients:
            client.stop()
        ingest.stopping = True
        ingest._cut(ingest.fleet, flush=True)
        ingest._cut(ingest.sensor_lane)
        try:  # last chance to write what is decoded
            await asyncio.wait_for(_drain(ingest), 3.0)
        except asyncio.TimeoutError:
            log.warning("ingest: %d messages not written at shutdown", ingest.queued_messages)
        if ingest.takes_sensors:
            await asyncio.wait(tasks[-1:], timeout=2.0)  # the ack listener ends between two reads
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if ingest.redis_ok:
            await ingest.report()
        await store.close()


async def _check_takes(ingest: Ingest, store: Store) -> None:
    """Say loudly when a sensors' ingest starts beside an ingest that takes every topic: both would
    judge every reading and raise every alarm twice (INGEST_TOPICS=fleet belongs beside
    ingest-sensors). (Another ingest-sensors cannot be told apart here from the heartbeat its
    predecessor left, for a supervisor's restart, so that one is not checked.)"""
    if ingest.takes != "sensors":
        return
    try:
        beat = (await store.services(["ingest"]))["ingest"]
    except Exception as exc:
        log.warning("ingest: cannot read the other ingest's heartbeat: %s", exc)
        return
    if beat and beat.get("topics", "all") == "all":
        log.error("ingest: the ingest (pid %s) takes the sensors' topics too: every reading would be judged "
                  "twice; run it with INGEST_TOPICS=fleet beside ingest-sensors", beat.get("pid"))


def _topics_of(ingest: Ingest) -> tuple[str, ...]:
    return (FLEET_TOPICS if ingest.takes_fleet else ()) + (SENSOR_TOPICS if ingest.takes_sensors else ())


async def _drain(ingest: Ingest) -> None:
    while (ingest.fleet.queue or ingest.sensor_lane.queue) and ingest.redis_ok:
        await asyncio.sleep(0.02)
