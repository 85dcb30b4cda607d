"""The live feed behind the console WebSocket: a snapshot, then ordered, batched deltas.

Ingest publishes changed vehicle positions on a Redis channel. The feed coalesces them per
vehicle and, every WS_BATCH_MS, encodes ONE frame and hands the same bytes to every console.
Frames carry increasing sequence numbers; the last frames are kept so that a console that
reconnects resumes from its last sequence, or gets a fresh snapshot when it is too far behind.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Callable, Protocol

import orjson

from center.store import LIVE_VEHICLES, Store

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """What the feed needs from a console connection."""

    def send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame for the console."""


class LiveFeed:
    """Fan-out of live vehicle updates to console subscribers."""

    def __init__(self, store: Store, *, batch_ms: float = 500.0, keep_frames: int = 240,
                 stale_s: float = 30.0, offline_s: float = 300.0):
        self.store = store
        self.batch_s = batch_ms / 1000.0
        self.stale_s = stale_s
        self.offline_s = offline_s
        self.seq = 0
        self.subscribers: set[Subscriber] = set()
        self._pending: dict[str, dict[str, Any]] = {}
        self._recent: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=keep_frames)
        self._tasks: list[asyncio.Task] = []
        self.frames_sent = 0
        self.updates_received = 0
        self.errors = 0

    def start(self) -> None:
        """Start listening to Redis and ticking frames."""
        self._tasks = [asyncio.create_task(self._listen(), name="live-listen"),
                       asyncio.create_task(self._tick(), name="live-tick")]

    async def stop(self) -> None:
        """Stop the background tasks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def snapshot(self) -> bytes:
        """A full snapshot frame at the current sequence number."""
        vehicles = await self.store.vehicles(stale_s=self.stale_s, offline_s=self.offline_s)
        return orjson.dumps({"type": "snapshot", "seq": self.seq, "at": time.time(), "vehicles": vehicles})

    def frames_since(self, seq: int) -> list[bytes] | None:
        """Frames after seq when all are still kept; None when the console must reload a snapshot."""
        if seq == self.seq:
            return []
        if not self._recent or seq < self._recent[0][0] - 1 or seq > self.seq:
            return None
        return [frame for s, frame in self._recent if s > seq]

    def add(self, subscriber: Subscriber) -> None:
        """Register a console."""
        self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        """Unregister a console."""
        self.subscribers.discard(subscriber)

    def accept_updates(self, updates: list[dict[str, Any]]) -> None:
        """Merge updates (newest wins per vehicle) into the next frame."""
        self.updates_received += len(updates)
        for update in updates:
            vid = update.get("id")
            if isinstance(vid, str):
                merged = self._pending.setdefault(vid, {})
                merged.update(update)

    def flush(self) -> bytes | None:
        """Encode the pending updates as one frame and send it to every console."""
        if not self._pending:
            return None
        self.seq += 1
        frame = orjson.dumps({"type": "vehicles", "seq": self.seq, "at": time.time(),
                              "vehicles": list(self._pending.values())})
        self._pending = {}
        self._recent.append((self.seq, frame))
        for subscriber in list(self.subscribers):
            subscriber.send_frame(frame)
        self.frames_sent += 1
        return frame

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.batch_s)
            try:
                self.flush()
            except Exception:  # one bad frame must not stop the feed
                self.errors += 1
                log.exception("live feed: frame failed")

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(LIVE_VEHICLES)
                backoff = 0.5
                async for message in pubsub.listen():
                    try:
                        self.accept_updates(orjson.loads(message["data"]))
                    except (orjson.JSONDecodeError, TypeError, AttributeError):
                        self.errors += 1
                        log.warning("live feed: malformed update ignored")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: retry with backoff, consoles keep their state
                self.errors += 1
                log.warning("live feed: Redis subscription lost (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass


def decode_client_message(raw: str | bytes) -> dict[str, Any] | None:
    """A console's control message ({"resume": seq}), or None when malformed."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


SendFn = Callable[[bytes], None]
