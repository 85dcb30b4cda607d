"""The live feed behind the console WebSocket: a snapshot, then ordered, typed, batched deltas.

Six Redis channels feed it:

- ``live:vehicles`` (ingest): changed vehicle positions, coalesced per vehicle;
- ``live:tickets`` (ticket store): ``{number, version, action, state}`` of every write; the feed
  reads the ticket once and keeps its compact view (newest version wins); a version already
  read is skipped (delivery is at least once), and after a lost subscription (a Redis restart)
  the open tickets are read again from the record (`resync_tickets`): what was published while
  the feed was not listening is not lost;
- ``live:alarms`` (sensor ingest): alarm events (raised, escalated, acknowledged, cleared...);
- ``live:crews`` (the admin page): the fleet registry changed; the feed reloads the vehicle → crew
  mapping from it (also at every (re)subscription) and sends it whole in a ``crews`` frame;
- ``live:incidents`` (`store.incidents`): an incident's ETR, notice or resolution changed;
  relayed as an ``incidents`` frame to the views that see the city (office, agents);
- ``live:ticket_alarms`` (`store.dispatch`): a ticket alarm (工单告警) raised, updated or cleared;
  the office view gets a ``ticket_alarms`` frame with how many changed, and its consoles read
  GET /api/ticket-alarms again (the frame carries no alarm: the API answers each role).

Every WS_BATCH_MS the feed encodes, for each view (`web.live_views`: ``office``, ``agent``,
``review``, ``crew:<crew_id>``, ``unit:<unit_id>``), at most one frame of each type that has
pending changes the view may see,
``vehicles`` then ``tickets`` then ``alarms`` then ``incidents`` then ``ticket_alarms`` then ``crews``, each with the view's next sequence
number, and hands the SAME bytes to every console of that view. Each view keeps its last frames
so that a console that reconnects resumes from its last sequence, or reloads a snapshot when it is
too far behind. A crew's view carries its own crew's tickets and vehicle only: no sensors, no
alarms, no ``today``; a unit's view its units' tickets only, and the review view every ticket only.

Frames (JSON text)::

    {"type": "snapshot", "seq", "at", "vehicles": [...], "tickets": [...], "alarms": [...],
     "sensors": [...], "crews": {vehicle_id: {crew_id, crew_name}}, "today": {day, created, resolved}}

``today`` counts the tickets created and resolved on the center's current day: numbers carry
the day they were created (GD<YYYYMMDD>-n); they are read from PostgreSQL once a day (the tickets
numbered for the day, and those resolved since it began) and then follow the changes.
    {"type": "vehicles", "seq", "at", "vehicles": [{id, t, lat, lon, spd, crs[, sig]} | {id, link}]}
    (``sig``: the vehicle's signal set with the fix, such as a terminal's ``alarm:<names>``; a fix
    without it clears the vehicle's signal)
    {"type": "tickets",  "seq", "at", "tickets": [compact ticket, ...], "today": {...}}  (closed: open=false)
    {"type": "alarms",   "seq", "at", "alarms": [alarm event, ...]}       (in publication order)
    {"type": "crews",    "seq", "at", "crews": {vehicle_id: {crew_id, crew_name, unit_id}}}  (whole mapping)
    {"type": "incidents", "seq", "at", "incidents": [{incident_id, rev, action, status, category, calls, etr, notice}]}
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import tzinfo
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

import orjson

from store.live import LIVE_ALARMS, LIVE_VEHICLES, Store
from store.fleet import LIVE_CREWS, FleetStore
from store.dispatch import LIVE_TICKET_ALARMS
from store.incidents import LIVE_INCIDENTS
from store.tickets import TicketStore
from store.ticket_publish import LIVE_TICKETS
from store.ticket_records import TicketRecord
from store.units import UnitStore
from command.ticket_model import OPEN_STATES, Role
from web.live_today import TodayCounts
from web.live_views import OFFICE_VIEW, Audience, Subscriber, View, unit_of

log = logging.getLogger(__name__)

SNAPSHOT_TICKETS = 3000     # open tickets in a snapshot (newest first); the queue API pages the rest
SNAPSHOT_REUSE_S = 1.0      # consoles connecting within this time of each other share one snapshot
SUMMARY_CHARS = 80


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
            "police_suggested": record.meta.get("police_suggested"),  # ambiguous: the dispatcher confirms 转110
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
        self.tickets = TicketStore(store.db, store.redis)
        self.fleet = FleetStore(store.db, store.redis)
        self.units = UnitStore(store.db)
        self.batch_s = batch_ms / 1000.0
        self.stale_s = stale_s
        self.offline_s = offline_s
        self.vehicle_crews = {k: dict(v) for k, v in (vehicle_crews or {}).items()}
        self.clock = clock
        self.zone = zone
        self._today = TodayCounts(self.tickets, zone)
        self.keep_frames = keep_frames
        self.views: dict[str, View] = {}
        self.view(OFFICE_VIEW)
        self._pending: dict[str, dict[str, Any]] = {}
        self._pending_tickets: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}  # open ticket → the version last read (skips repeats)
        self._lost = asyncio.Event()  # the subscription was lost: read the tickets again
        self.resyncs = 0
        self._pending_alarms: list[dict[str, Any]] = []
        self._crews_changed = False
        self._pending_incidents: dict[str, dict[str, Any]] = {}  # incident id -> its newest change
        self._ticket_alarm_changes = 0  # ticket alarms raised, updated or cleared since the last frame
        self._tasks: list[asyncio.Task] = []
        self.frames_sent = 0
        self.updates_received = 0
        self.errors = 0

    def start(self) -> None:
        """Start listening to Redis and ticking frames."""
        self._tasks = [asyncio.create_task(self._listen(), name="live-listen"),
                       asyncio.create_task(self._tick(), name="live-tick"),
                       asyncio.create_task(self._resync_after_loss(), name="live-resync")]

    async def stop(self) -> None:
        """Stop the background tasks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # views ------------------------------------------------------------------------------------
    def view(self, name: str) -> View:
        """The view of that name (`web.live_views.view_name`), made at its first console; a view
        stays (its frames serve resumes), so there are at most three more than the crews and units."""
        view = self.views.get(name)
        if view is None:
            audience = Audience.of(name)
            view = View(name, audience, self.keep_frames, crews=audience.crews_of(self.vehicle_crews))
            self.views[name] = view
        return view

    @property
    def seq(self) -> int:
        """The office view's sequence number."""
        return self.views[OFFICE_VIEW].seq

    @property
    def subscribers(self) -> set[Subscriber]:
        """Every console of every view."""
        return set().union(*(view.subscribers for view in self.views.values()))

    # snapshot ---------------------------------------------------------------------------------
    async def snapshot(self, name: str = OFFICE_VIEW) -> bytes:
        """A full snapshot frame of a view at its current sequence number (shared by its consoles
        arriving together)."""
        return (await self.snapshot_at(name))[1]

    async def snapshot_at(self, name: str = OFFICE_VIEW) -> tuple[int, bytes]:
        """A view's snapshot frame with the sequence number it is at: the frames after that number,
        taken from ``frames_since`` without an await in between, bring a console up to date."""
        view = self.view(name)
        cached = view.snapshot
        if cached is not None and cached[0] == view.seq and self.clock() - cached[1] < SNAPSHOT_REUSE_S:
            return cached[0], cached[2]
        if view.building is not None:
            return await asyncio.shield(view.building)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        view.building = future
        try:
            seq, frame = await self._build_snapshot(view)
            future.set_result((seq, frame))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            view.building = None
        return seq, frame

    async def _build_snapshot(self, view: View) -> tuple[int, bytes]:
        now = self.clock()
        unit = unit_of(view.name)
        if unit is not None:  # the unit and the units under it, as the unit tree stands now
            units = frozenset(await self.units.descendants(unit)) if unit else frozenset()
            if units != view.audience.actor.unit_ids:
                view.audience = Audience.of(view.name, units)
        audience = view.audience
        tickets = [compact_ticket(r) for r in await self._snapshot_records(audience, now)
                   if r is not None and r.ticket.state in OPEN_STATES]
        tickets = [t for t in tickets if audience.ticket(t)]
        if not audience.fleet:
            vehicles = []
        elif audience.restricted:  # a crew's vehicle
            vehicles = [await self.store.vehicle(vid, now=now, stale_s=self.stale_s, offline_s=self.offline_s)
                        for vid in self.vehicle_crews if audience.vehicle(vid, self.vehicle_crews)]
            vehicles = [{k: v for k, v in found.items() if k != "counters"} for found in vehicles if found]
        else:
            vehicles = await self.store.vehicles(now=now, stale_s=self.stale_s, offline_s=self.offline_s)
        city: dict[str, Any] = {"alarms": [], "sensors": []}
        if audience.city:
            city["alarms"] = await self.store.alarms()
            city["sensors"] = [compact_sensor(s) for s in await self.store.sensors()]
            await self._today.load(now)
            city["today"] = self.today()
        if audience.restricted:
            view.shown.update(t["number"] for t in tickets)
        frame = orjson.dumps({"type": "snapshot", "seq": view.seq, "at": now, "vehicles": vehicles,
                              "tickets": tickets, "crews": audience.crews_of(self.vehicle_crews), **city})
        view.snapshot = (view.seq, now, frame)
        return view.seq, frame

    async def _snapshot_records(self, audience: Audience, now: float) -> list[TicketRecord | None]:
        """The open tickets of a snapshot, read as the ticket API reads them for the role: a crew's
        (its index), a unit's (its units'), else the newest open ones."""
        actor = audience.actor
        if actor.role is Role.CREW:
            return await self.tickets.get_many(await self.tickets.crew_tickets(actor.crew_id or ""))
        if actor.role is Role.UNIT:
            if not actor.unit_ids:
                return []
            records, _ = await self.tickets.page(now, ranked=False, offset=0, limit=SNAPSHOT_TICKETS,
                                                 units=sorted(actor.unit_ids), state="open")
            return list(records)
        return await self.tickets.get_many(await self.tickets.index("open", stop=SNAPSHOT_TICKETS - 1))

    def today(self) -> dict[str, Any]:
        """Tickets created and resolved on the center's current day (`web.live_today`)."""
        return self._today.figures()

    def frames_since(self, seq: int, name: str = OFFICE_VIEW) -> list[bytes] | None:
        """A view's frames after seq when all are still kept; None when the console must reload a
        snapshot (always for a unit view that has had none: its scope is read at its snapshots)."""
        view = self.view(name)
        if view.snapshot is None and unit_of(name) is not None:
            return None
        return view.frames_since(seq)

    def add(self, subscriber: Subscriber, name: str = OFFICE_VIEW) -> None:
        """Register a console with its view."""
        self.view(name).subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        """Unregister a console."""
        for view in self.views.values():
            view.subscribers.discard(subscriber)

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

    def accept_incidents(self, changes: list[dict[str, Any]]) -> None:
        """Keep the newest change of each incident (by revision) for the next frame."""
        for change in changes:
            if isinstance(change, dict) and isinstance(change.get("incident_id"), str):
                held = self._pending_incidents.get(change["incident_id"])
                if held is None or int(held.get("rev") or 0) <= int(change.get("rev") or 0):
                    self._pending_incidents[change["incident_id"]] = change

    async def ticket_changes(self, summaries: list[dict[str, Any]]) -> None:
        """Read the tickets named by change summaries and queue their compact views; a version
        already read is skipped (delivery is at least once: `store.outbox`)."""
        summaries = [s for s in summaries if isinstance(s, dict) and "number" in s
                     and int(s.get("version") or 0) > self._versions.get(s["number"], 0)]
        if not summaries:
            return
        await self._today.load(self.clock())
        records = await self.tickets.get_many(list(dict.fromkeys(s["number"] for s in summaries)))
        self._today.count(records)
        self._read_tickets(records)

    def _read_tickets(self, records: Iterable[TicketRecord | None]) -> None:
        """Queue the compact views of tickets read from the store, remembering the version read
        of each open one (a closed ticket is forgotten: a repeat of it only resends its end)."""
        views = [compact_ticket(r) for r in records if r is not None]
        for view in views:
            if view["open"]:
                self._versions[view["number"]] = max(view["version"], self._versions.get(view["number"], 0))
            else:
                self._versions.pop(view["number"], None)
        self.accept_tickets(views)

    async def resync_tickets(self) -> int:
        """After the subscription was lost (a Redis restart or wipe), changes published meanwhile
        never came: read the open tickets and those this feed knows as open again from the
        store, and queue each whose version is not the one read last. The number queued."""
        known = dict(self._versions)
        numbers = list(dict.fromkeys([*await self.tickets.index("open", stop=SNAPSHOT_TICKETS - 1), *known]))
        records = [r for r in await self.tickets.get_many(numbers)
                   if r is not None and r.ticket.version != known.get(r.ticket.number)]
        self._read_tickets(records)
        return len(records)

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
    def _emit(self, view: View, kind: str, items: Any, **extra: Any) -> bytes:
        view.seq += 1
        frame = orjson.dumps({"type": kind, "seq": view.seq, "at": self.clock(), kind: items, **extra})
        view.recent.append((view.seq, frame))
        for subscriber in list(view.subscribers):
            subscriber.send_frame(frame)
        self.frames_sent += 1
        return frame

    def flush(self) -> list[bytes]:
        """Encode each kind of pending change as one frame per view that may see some of it
        (vehicles, tickets, alarms, crews), send it to the view's consoles, and return the frames."""
        pending, self._pending = self._pending, {}
        tickets, self._pending_tickets = list(self._pending_tickets.values()), {}
        alarms, self._pending_alarms = self._pending_alarms, []
        crews_changed, self._crews_changed = self._crews_changed, False
        incidents, self._pending_incidents = list(self._pending_incidents.values()), {}
        ticket_alarms, self._ticket_alarm_changes = self._ticket_alarm_changes, 0
        frames = []
        for view in list(self.views.values()):
            audience = view.audience
            if not audience.fleet or not pending:
                vehicles = []
            elif not audience.restricted:
                vehicles = list(pending.values())
            else:
                vehicles = [u for vid, u in pending.items() if audience.vehicle(vid, self.vehicle_crews)]
            if vehicles:
                frames.append(self._emit(view, "vehicles", vehicles))
            shown = view.tickets(tickets)
            if shown:
                extra = {"today": self.today()} if audience.city else {}
                frames.append(self._emit(view, "tickets", shown, **extra))
            if alarms and audience.city:
                frames.append(self._emit(view, "alarms", alarms))
            if incidents and audience.city:
                frames.append(self._emit(view, "incidents", incidents))
            if ticket_alarms and view.name == OFFICE_VIEW:
                frames.append(self._emit(view, "ticket_alarms", ticket_alarms))
            if crews_changed and audience.crews_of(self.vehicle_crews) != view.crews:
                view.crews = audience.crews_of(self.vehicle_crews)
                frames.append(self._emit(view, "crews", view.crews))
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
        elif channel == LIVE_INCIDENTS:
            self.accept_incidents(payload if isinstance(payload, list) else [payload])
        elif channel == LIVE_TICKET_ALARMS:
            self._ticket_alarm_changes += len(payload) if isinstance(payload, list) else 1

    async def _listen(self) -> None:
        backoff = 0.5
        subscribed_before = False
        while True:
            pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(LIVE_VEHICLES, LIVE_TICKETS, LIVE_ALARMS, LIVE_CREWS, LIVE_INCIDENTS,
                                       LIVE_TICKET_ALARMS)
                await self.reload_crews()  # changes made while not subscribed
                if subscribed_before:  # ticket changes published while not subscribed: from the record
                    self._lost.set()
                subscribed_before = True
                # the client's retry reconnects and resubscribes by itself, silently: hear of it
                pubsub.connection.register_connect_callback(self._reconnected)
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


    def _reconnected(self, connection: Any) -> None:
        """The subscription's connection was made again (a connect callback of the Redis client)."""
        self._lost.set()

    async def _resync_after_loss(self) -> None:
        """After each loss of the subscription: the crews and the tickets again from the record."""
        while True:
            await self._lost.wait()
            self._lost.clear()
            try:
                await self.reload_crews()
                self.resyncs += 1
                log.info("live feed: subscription lost and regained; %d tickets read again",
                         await self.resync_tickets())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the record or Redis still away: try again shortly
                self.errors += 1
                log.warning("live feed: catching up after a lost subscription failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                self._lost.set()


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
