"""The ingest service: MQTT subscriber -> decoders -> batched, pipelined Redis writes.

Messages arrive from the MQTT module in batches on the event loop. Each is routed by topic to
its decoder; any exception from a payload is caught, logged at a bounded rate and counted, and
the loop goes on. Decoded records accumulate in a batch that is written in one pipeline when it
holds INGEST_BATCH messages or INGEST_FLUSH_MS has passed. While Redis is unreachable, batches
queue in order (bounded by INGEST_BUFFER_MAX, oldest dropped and counted), health reports
"degraded", and they are flushed in order when Redis returns.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
from typing import Any

from center.mqtt import MqttClient, ReceivedMessage
from center.settings import Settings
from center.store import Store
from ingest.vehicles import VehicleBatch, VehicleIngest, parse_fleet_topic

log = logging.getLogger(__name__)

TOPICS = ("fleet/+/nmea", "fleet/+/nmea/backfill", "fleet/+/status")


class RateLimitedLog:
    """Logs at most one line per key per interval, counting what it suppressed."""

    def __init__(self, interval_s: float = 10.0):
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter = collections.Counter()

    def warning(self, key: str, message: str, *args: Any) -> None:
        """Log a warning unless this key logged within the interval."""
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.interval_s:
            suppressed = self._suppressed.pop(key, 0)
            suffix = f" (+{suppressed} similar suppressed)" if suppressed else ""
            log.warning(message + suffix, *args)
            self._last[key] = now
        else:
            self._suppressed[key] += 1


class Ingest:
    """Routes MQTT messages to decoders and writes their output to Redis in batches."""

    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.vehicles = VehicleIngest(max_speed_kmh=settings.MAX_JUMP_SPEED_KMH)
        self.batch = VehicleBatch()
        self.queue: collections.deque[VehicleBatch] = collections.deque()
        self.queued_messages = 0
        self.stats: collections.Counter = collections.Counter()
        self._stats_flushed: collections.Counter = collections.Counter()
        self.redis_ok = True
        self.mqtt_ok = False
        self.rlog = RateLimitedLog()
        self._wake = asyncio.Event()
        self._batch_started = 0.0

    # called on the event loop by the MQTT module ------------------------------------------------
    def on_messages(self, messages: list[ReceivedMessage]) -> None:
        """Decode a batch of messages; schedule a write when the batch is full."""
        max_payload = self.settings.INGEST_MAX_PAYLOAD
        for msg in messages:
            self.stats["messages"] += 1
            if len(msg.payload) > max_payload:
                self.reject(msg.topic, "payload_too_large")
                continue
            try:
                self.route(msg)
            except Exception as exc:  # a payload must never stop the subscriber
                self.reject(msg.topic, f"error:{type(exc).__name__}")
                self.rlog.warning("route-error", "ingest: %s on %s: %s", type(exc).__name__, msg.topic, exc)
        if len(self.batch) >= self.settings.INGEST_BATCH:
            self._cut()

    def route(self, msg: ReceivedMessage) -> None:
        """Send one message to the decoder its topic names."""
        parsed = parse_fleet_topic(msg.topic)
        if parsed is None:
            self.reject(msg.topic, "unknown_topic")
            return
        vehicle_id, kind = parsed
        if kind == "status":
            self.on_status(vehicle_id, msg)
            return
        if not self.batch.fixes and not self.batch.signals:
            self._batch_started = time.monotonic()
        self.vehicles.handle(vehicle_id, msg.payload, msg.received_at, kind == "backfill", self.batch, self.stats)

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
    def _cut(self) -> None:
        """Move the current batch to the write queue (bounded; oldest dropped when Redis is away)."""
        batch, self.batch = self.batch, VehicleBatch()
        if not len(batch) and not batch.seen:
            return
        self.queue.append(batch)
        self.queued_messages += len(batch)
        while self.queued_messages > self.settings.INGEST_BUFFER_MAX and len(self.queue) > 1:
            dropped = self.queue.popleft()
            self.queued_messages -= len(dropped)
            self.stats["buffer_dropped"] += len(dropped)
        self._wake.set()

    async def writer(self) -> None:
        """Write queued batches in order; on Redis errors retry with backoff, keeping the order."""
        flush_s = self.settings.INGEST_FLUSH_MS / 1000.0
        retention_s = self.settings.TRACK_RETENTION_H * 3600
        backoff = 0.2
        while True:
            if not self.queue:
                try:
                    await asyncio.wait_for(self._wake.wait(), flush_s)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
                self.vehicles.flush_idle_backfill(time.time(), self.batch, self.stats)
                if len(self.batch) or self.batch.seen:
                    self._cut()
                if not self.queue:
                    continue
            batch = self.queue[0]
            try:
                await self.store.write_fixes(batch.fixes, batch.counters, seen=batch.seen,
                                             retention_s=retention_s, signals=batch.signals)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.redis_ok:
                    log.error("ingest: Redis write failed (%s); buffering in memory", exc)
                self.redis_ok = False
                self.stats["redis_write_failed"] += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.redis_ok:
                log.info("ingest: Redis is back; flushing %d buffered batches", len(self.queue))
            self.redis_ok = True
            backoff = 0.2
            self.queue.popleft()
            self.queued_messages -= len(batch)
            self.stats["fixes_written"] += len(batch.fixes)

    async def reporter(self, interval_s: float = 2.0) -> None:
        """Publish stats deltas and a heartbeat every few seconds."""
        while True:
            await asyncio.sleep(interval_s)
            deltas = {k: v - self._stats_flushed.get(k, 0) for k, v in self.stats.items()
                      if v != self._stats_flushed.get(k, 0)}
            try:
                await self.store.add_ingest_stats(deltas)
                self._stats_flushed.update(deltas)
                await self.store.heartbeat("ingest", self.health())
            except Exception as exc:
                self.rlog.warning("reporter", "ingest: cannot report stats: %s", exc)

    def health(self) -> dict[str, Any]:
        """This process's own view: degraded while Redis or the broker is away."""
        return {"pid": os.getpid(), "redis_ok": self.redis_ok, "mqtt_ok": self.mqtt_ok,
                "buffered": self.queued_messages, "messages": self.stats["messages"],
                "status": "ok" if self.redis_ok and self.mqtt_ok else "degraded"}

    def on_connection(self, up: bool) -> None:
        """Broker connection state from the MQTT module."""
        self.mqtt_ok = up


def topics(settings: Settings) -> list[str]:
    """The subscriptions, shared ($share/<group>/...) when several ingest processes split the load."""
    group = settings.MQTT_SHARED_GROUP
    return [f"$share/{group}/{t}" if group else t for t in TOPICS]


async def serve(settings: Settings, redis_url: str, mqtt_url: str, stop: asyncio.Event | None = None) -> None:
    """Run the ingest service until SIGINT/SIGTERM (or until ``stop`` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError):
            pass
    store = Store.from_url(redis_url, health_check_interval=10, socket_timeout=5)
    ingest = Ingest(settings, store)
    client = MqttClient(mqtt_url, f"ingest-{os.getpid()}", on_messages=ingest.on_messages, loop=loop,
                        on_connection=ingest.on_connection)
    client.subscribe(topics(settings))
    client.start()
    tasks = [asyncio.create_task(ingest.writer(), name="ingest-writer"),
             asyncio.create_task(ingest.reporter(), name="ingest-reporter")]
    log.info("ingest: subscribed to %s on %s", ", ".join(topics(settings)), mqtt_url)
    try:
        await stop.wait()
    finally:
        client.stop()
        ingest._cut()
        try:  # last chance to write what is decoded
            await asyncio.wait_for(_drain(ingest), 3.0)
        except asyncio.TimeoutError:
            log.warning("ingest: %d messages not written at shutdown", ingest.queued_messages)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()


async def _drain(ingest: Ingest) -> None:
    while ingest.queue and ingest.redis_ok:
        await asyncio.sleep(0.02)
