"""The ingest's write lanes: the unit of writing (`Batch`) and one ordered write path (`Lane`)
(the rate-limited log that was here is `ingest.tally.RateLimitedLog`)."""
from __future__ import annotations

import asyncio
import collections
import logging

from ingest.sensors import SensorBatch
from ingest.vehicles import VehicleBatch

log = logging.getLogger(__name__)


class Batch:
    """One unit of writing: vehicle fixes, what unregistered vehicles sent (``unknown``: vehicle id
    -> (last topic, last time, messages)) and sensor output, written in this order. A batch merged
    from queued ones (``parts``) marks theirs done as its parts are written, so a retry after a
    part failed writes each of the others once."""

    __slots__ = ("vehicles", "unknown", "sensors", "vehicles_done", "unknown_done", "parts")

    def __init__(self, parts: "list[Batch] | None" = None) -> None:
        self.vehicles = VehicleBatch()
        self.unknown: dict[str, tuple[str, float, int]] = {}
        self.sensors = SensorBatch()
        self.vehicles_done = False
        self.unknown_done = False
        self.parts = parts or []

    def __len__(self) -> int:
        return len(self.vehicles) + len(self.unknown) + len(self.sensors)

    def empty(self) -> bool:
        """Nothing to write at all."""
        v = self.vehicles
        return not len(self) and not v.seen and not v.track and not v.counters and not self.sensors.latest

    @classmethod
    def merged(cls, parts: "list[Batch]") -> "Batch":
        """One batch writing what the given queued fleet batches write one after the other:
        their fixes (`VehicleBatch.merged`) and what unregistered vehicles sent (the last topic
        and time, the counts summed); it marks its parts done as it is written."""
        out = cls(parts)
        out.vehicles = VehicleBatch.merged([batch.vehicles for batch in parts])
        unknown = out.unknown
        for batch in parts:
            for vehicle_id, (topic, at, count) in batch.unknown.items():
                last = unknown.pop(vehicle_id, None)
                unknown[vehicle_id] = (topic, at, count if last is None else last[2] + count)
        return out


class Lane:
    """One ordered write path: the batch being filled, the batches waiting, and the writer's wake-up.

    Vehicles and sensors have a lane each, so an alarm is never written behind a backlog of fixes
    (and each lane keeps its own order through a Redis outage)."""

    def __init__(self, name: str):
        self.name = name
        self.batch = Batch()
        self.queue: collections.deque[Batch] = collections.deque()
        self.queued = 0
        self.wake = asyncio.Event()
        self.redis_ok = True
