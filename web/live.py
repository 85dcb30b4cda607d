"""The live feed behind the console WebSocket: a snapshot, then ordered, typed, batched deltas.

Four Redis channels feed it:

- ``live:vehicles`` (ingest): changed vehicle positions, coalesced per vehicle;
- ``live:tickets`` (ticket store): ``{number, version, action, state}`` of every write; the feed
  reads the ticket once and keeps its compact view (newest version wins);
- ``live:alarms`` (sensor ingest): alarm events (raised, escalated, acknowledged, cleared...);
- ``live:crews`` (the admin page): the fleet registry changed; the feed reloads the vehicle → crew
  mapping from it (also at every (re)subscription) and sends it whole in a ``crews`` frame.

Every WS_BATCH_MS the feed encodes at most one frame of each type that has pending changes,
``vehicles`` then ``tickets`` then ``alarms`` then ``crews``, each with the next sequence number, and hands the
SAME bytes to every console. The last frames are kept so that a console that reconnects resumes
from its last sequence, or reloads a snapshot when it is too far behind.

Frames (JSON text)::

    {"type": "snapshot", "seq", "at", "vehicles": [...], "tickets": [...], "alarms": [...],
     "sensors": [...], "crews": {vehicle_id: {crew_id, crew_name}}, "today": {day, created, resolved}}

``today`` counts the tickets created and resolved on the center's current day: numbers carry
the day they were created (GD<YYYYMMDD>-n), and every write is in the ``tkt:changes`` stream.
    {"type": "vehicles", "seq", "at", "vehicles": [{id, t, lat, lon, spd, crs} | {id, link}]}
    {"type": "tickets",  "seq", "at", "tickets": [compact ticket, ...], "today": {...}}  (closed: open=false)
    {"type": "alarms",   "seq", "at", "alarms": [alarm event, ...]}       (in publication order)
    {"type": "crews",    "seq", "at", "crews": {vehicle_id: {crew_id, crew_name, unit_id}}}  (whole mapping)
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from datetime import datetime, timezone, tzinfo
from typing import Any, Callable, Iterable, Mapping, Protocol
from zoneinfo import ZoneInfo

import orjson

from center.store import LIVE_ALARMS, LIVE_VEHICLES, Store
from center.store_admin import LIVE_CREWS, FleetStore
from center.store_tickets import CHANGES_STREAM, LIVE_TICKETS, TicketRecord, TicketStore
from command.tickets import OPEN_STATES

log = logging.getLogger(__name__)

SNAPSHOT_TICKETS = 3000     # open tickets in a snapshot (newest first); the queue API pages the rest
SNAPSHOT_REUSE_S = 1.0      # consoles connecting within this time of each other share one snapshot
SUMMARY_CHARS = 80


class Subscriber(Protocol):
    """What the feed needs from a console connection."""

    def send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame for the console."""


def compact_ticket(record: TicketRecord) -> dict[str, Any]:
    """The small view of a ticket the map and the wall need (no caller name or phone).

    ``queue`` is ``[[stage, deadline_epoch_s, limit_s], ...]`` of the open timed stages: the
    console computes the time left itself, so the view does not go stale between deltas.
    """
    t = record.ticket
    return {"number": t.number, "version": t.version, "state": t.state.value, "open": t.state in OPEN_STATES,
            "urgency": t.urgency.value, "category": t.category.value, "type": t.type.value,
            "color": t.color.value, "lon": t.lon, "lat": t.lat, "address": t.address,
            "crew_id": t.crew_id, "unit_id": t.unit_id, "incident_id": t.incident_id,
            "supervised": t.supervised, "police_kind": record.meta.get("police_kind"),
            "created_at": t.created_at.timestamp(),
            "resolved_at": None if t.resolved_at is None else t.resolved_at.timestamp(),
            "queue": [list(q) for q in record.meta.get("queue") or ()],
            "summary": t.description[:SUMMARY_CHARS]}


def compact_sensor(view: Mapping[str, Any]) -> dict[str, Any]:
    """The small view of a sensor for the map: where, what, latest value and link."""
    reading = view.get("reading") or {}
    return {"id": view["id"], "name": view.get("name"), "kind": view.get("kind"), "unit": view.get("unit"),
            "lon": view.get("lon"), "lat": view.get("lat"), "value": reading.get("value"),
            "ts": reading.get("ts"), "link": view.get("link")}


class LiveFeed:
    """Fan-out of live vehicle, ticket and alarm changes to console subscribers."""

    def __init__(self, store: Store, *, batch_ms: float = 500.0, keep_frames: int = 240,
                 stale_s: float = 30.0, offline_s: float = 300.0,
                 vehicle_crews: Mapping[str, Mapping[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time, zone: tzinfo = ZoneInfo("Asia/Shanghai")):
        self.store = store
        self.tickets = TicketStore(store.redis)
        self.fleet = FleetStore(store.redis)
        self.batch_s = batch_ms / 1000.0
        self.stale_s = stale_s
        self.offline_s = offline_s
        self.vehicle_crews = {k: dict(v) for k, v in (vehicle_crews or {}).items()}
        self.clock = clock
        self.zone = zone
        self._today_day = ""
        self._created_today: set[str] = set()
        self._resolved_today: set[str] = set()
        self.seq = 0
        self.subscribers: set[Subscriber] = set()
        self._pending: dict[str, dict[str, Any]] = {}
        self._pending_tickets: dict[str, dict[str, Any]] = {}
        self._pending_alarms: list[dict[str, Any]] = []
        self._crews_changed = False
        self._recent: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=keep_frames)
        self._tasks: list[asyncio.Task] = []
        self._snapshot: tuple[int, float, bytes] | None = None
        self._snapshot_building: asyncio.Future | None = None
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

    # snapshot ---------------------------------------------------------------------------------
    async def snapshot(self) -> bytes:
        """A full snapshot frame at the current sequence number (shared by consoles arriving together)."""
        return (await self.snapshot_at())[1]

    async def snapshot_at(self) -> tuple[int, bytes]:
        """The snapshot frame with the sequence number it is at: the frames after that number,
        taken from ``frames_since`` without an await in between, bring a console up to date."""
        cached = self._snapshot
        if cached is not None and cached[0] == self.seq and self.clock() - cached[1] < SNAPSHOT_REUSE_S:
            return cached[0], cached[2]
        if self._snapshot_building is not None:
            return await asyncio.shield(self._snapshot_building)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._snapshot_building = future
        try:
            seq, frame = await self._build_snapshot()
            future.set_result((seq, frame))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            self._snapshot_building = None
        return seq, frame

    async def _build_snapshot(self) -> tuple[int, bytes]:
        now = self.clock()
        vehicles = await self.store.vehicles(now=now, stale_s=self.stale_s, offline_s=self.offline_s)
        numbers = await self.tickets.index("open", stop=SNAPSHOT_TICKETS - 1)
        tickets = [compact_ticket(r) for r in await self.tickets.get_many(numbers) if r is not None]
        alarms = await self.store.alarms()
        sensors = [compact_sensor(s) for s in await self.store.sensors()]
        await self._load_today(now)
        frame = orjson.dumps({"type": "snapshot", "seq": self.seq, "at": now, "vehicles": vehicles,
                              "tickets": tickets, "alarms": alarms, "sensors": sensors,
                              "crews": self.vehicle_crews, "today": self.today()})
        self._snapshot = (self.seq, now, frame)
        return self.seq, frame

    def _day(self, now: float) -> tuple[str, float]:
        local = datetime.fromtimestamp(now, timezone.utc).astimezone(self.zone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return local.strftime("%Y%m%d"), start.timestamp()

    async def _load_today(self, now: float) -> None:
        """Count today's created and resolved tickets from the changes stream (once a day)."""
        day, start = self._day(now)
        if day == self._today_day:
            return
        created, resolved = set(), set()
        cursor = f"{int(start * 1000)}-0"
        prefix = f"GD{day}-"
        while True:
            entries = await self.store.redis.xrange(CHANGES_STREAM, min=cursor, count=5000)
            for entry_id, fields in entries:
                self._count_change(fields, prefix, created, resolved)
            if len(entries) < 5000:
                break
            ms, n = entries[-1][0].split("-")
            cursor = f"{ms}-{int(n) + 1}"
        self._today_day, self._created_today, self._resolved_today = day, created, resolved

    @staticmethod
    def _count_change(change: Mapping[str, Any], prefix: str, created: set[str], resolved: set[str]) -> None:
        number = str(change.get("number", ""))
        if number.startswith(prefix):
            created.add(number)
        if change.get("state") == "resolved":
            resolved.add(number)

    def today(self) -> dict[str, Any]:
        """Tickets created and resolved on the center's current day."""
        return {"day": self._today_day, "created": len(self._created_today), "resolved": len(self._resolved_today)}

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

    # accepting changes ------------------------------------------------------------------------
    def accept_updates(self, updates: list[dict[str, Any]]) -> None:
        """Merge vehicle updates (newest wins per vehicle) into the next frame."""
        self.updates_received += len(updates)
        for update in updates:
            vid = update.get("id")
            if isinstance(vid, str):
                merged = self._pending.setdefault(vid, {})
                merged.update(update)

    def accept_tickets(self, views: list[dict[str, Any]]) -> None:
        """Keep the newest compact view of each changed ticket for the next frame."""
        for view in views:
            held = self._pending_tickets.get(view["number"])
            if held is None or held["version"] <= view["version"]:
                self._pending_tickets[view["number"]] = view

    def accept_alarm_events(self, events: list[dict[str, Any]]) -> None:
        """Queue alarm events, in their order, for the next frame."""
        self._pending_alarms.extend(e for e in events if isinstance(e, dict) and e.get("alarm_id"))

    async def ticket_changes(self, summaries: list[dict[str, Any]]) -> None:
        """Read the tickets named by change summaries and queue their compact views."""
        summaries = [s for s in summaries if isinstance(s, dict) and "number" in s]
        await self._load_today(self.clock())
        for change in summaries:
            self._count_change(change, f"GD{self._today_day}-", self._created_today, self._resolved_today)
        numbers = list(dict.fromkeys(s["number"] for s in summaries))
        records = await self.tickets.get_many(numbers)
        self.accept_tickets([compact_ticket(r) for r in records if r is not None])

    async def reload_crews(self) -> bool:
        """Take the vehicle → crew mapping from the fleet registry (the one given is kept while the
        registry is empty); True when it changed, and a ``crews`` frame goes out at the next tick."""
        records = await self.fleet.crews()
        if not records:
            return False
        mapping = vehicle_crews_from_fleet(record for _, record in records.values())
        if mapping == self.vehicle_crews:
            return False
        self.vehicle_crews = mapping
        self._crews_changed = True
        return True

    # frames -----------------------------------------------------------------------------------
    def _emit(self, kind: str, items: Any, **extra: Any) -> bytes:
        self.seq += 1
        frame = orjson.dumps({"type": kind, "seq": self.seq, "at": self.clock(), kind: items, **extra})
        self._recent.append((self.seq, frame))
        for subscriber in list(self.subscribers):
            subscriber.send_frame(frame)
        self.frames_sent += 1
        return frame

    def flush(self) -> list[bytes]:
        """Encode each kind of pending change as one frame (vehicles, tickets, alarms, crews), send it
        to every console, and return the frames sent."""
        frames = []
        if self._pending:
            pending, self._pending = self._pending, {}
            frames.append(self._emit("vehicles", list(pending.values())))
        if self._pending_tickets:
            pending_t, self._pending_tickets = self._pending_tickets, {}
            frames.append(self._emit("tickets", list(pending_t.values()), today=self.today()))
        if self._pending_alarms:
            pending_a, self._pending_alarms = self._pending_alarms, []
            frames.append(self._emit("alarms", pending_a))
        if self._crews_changed:
            self._crews_changed = False
            frames.append(self._emit("crews", self.vehicle_crews))
        return frames

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.batch_s)
            try:
                self.flush()
            except Exception:  # one bad frame must not stop the feed
                self.errors += 1
                log.exception("live feed: frame failed")

    async def _handle(self, channel: str, data: Any) -> None:
        payload = orjson.loads(data)
        if channel == LIVE_VEHICLES:
            self.accept_updates(payload)
        elif channel == LIVE_TICKETS:
            await self.ticket_changes(payload if isinstance(payload, list) else [payload])
        elif channel == LIVE_ALARMS:
            self.accept_alarm_events(payload if isinstance(payload, list) else [payload])
        elif channel == LIVE_CREWS:
            await self.reload_crews()

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(LIVE_VEHICLES, LIVE_TICKETS, LIVE_ALARMS, LIVE_CREWS)
                await self.reload_crews()  # changes made while not subscribed
                backoff = 0.5
                async for message in pubsub.listen():
                    try:
                        await self._handle(message["channel"], message["data"])
                    except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError, ValueError):
                        self.errors += 1
                        log.warning("live feed: malformed message on %s ignored", message.get("channel"))
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


def vehicle_crews_of(city: Any) -> dict[str, dict[str, Any]]:
    """vehicle_id -> {crew_id, crew_name, unit_id} from the city's crews layer (empty without one)."""
    frame = city.frame("crews") if city is not None and hasattr(city, "frame") else None
    if frame is None:
        return {}
    out = {}
    for row in frame.itertuples(index=False):
        vid = getattr(row, "vehicle_id", None)
        if vid:
            out[str(vid)] = {"crew_id": getattr(row, "crew_id", None), "crew_name": getattr(row, "crew_name", None),
                             "unit_id": getattr(row, "unit_id", None)}
    return out


def vehicle_crews_from_fleet(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """vehicle_id -> {crew_id, crew_name, unit_id} of the active crews of the fleet registry that
    hold a vehicle."""
    return {str(r["vehicle_id"]): {"crew_id": r.get("crew_id"), "crew_name": r.get("crew_name"),
                                   "unit_id": r.get("unit_id")}
            for r in records if r.get("vehicle_id") and r.get("active", True)}


SendFn = Callable[[bytes], None]
