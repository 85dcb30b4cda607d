"""The `dispatch` service process: sensor alarms → proactive tickets, automatic dispatch of new
tickets, acceptance timeouts, GPS arrival, escalation alarms and the 110 outbox sender.

Tasks, all stopped by one event:

- `consume_alarms`: the sensor alarm stream → proactive tickets (`services.ticket_alarms`);
- `watch_changes`: the ``tkt:changes`` stream through the consumer group ``dispatch`` (entries a
  crashed worker left pending are handled first) → `DispatchManager.on_change`, the 110 link
  (handover of emergency tickets, result report of resolved transfers) and the incidents (a resolved
  primary ticket resolves its incident, `services.incidents`); a (number, version)
  already handled is skipped (delivery is at least once), a group a Redis wipe removed recreated;
- the change relay (`store.outbox.ChangeRelay`): ticket changes whose writer could not publish
  them reach ``tkt:changes`` (the web processes run one too; one works at a time);
- the timers every ESCALATION_CHECK_S (`services.dispatch_timers.DispatchTimers.tick`), then the
  rules' 督办 (`services.supervision.SupervisionService.tick`: red tickets, overdue stages,
  escalation of unanswered 督办);
- the 110 outbox sender (`PoliceLink.run`) when POLICE_URL and POLICE_SECRET are set;
- the track archiver (`services.track_archiver`): closed track hours from Redis into PostgreSQL;
- a heartbeat ``svc:dispatch``.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

from runtime.clock import Clock
from runtime.lifecycle import stop_on_signals
from config.limit_files import load_policy
from config.review_file import load_review
from config.routing_file import load_routing
from store.outbox import ChangeRelay
from store.live import Store
from store.dispatch import CHANGES_GROUP, DispatchStore
from store.police import PoliceStore
from store.supervision import SupervisionStore
from store.ticket_publish import CHANGES_STREAM
from store.units import UnitStore
from store.streams import consume_group, pause
from command.errors import CommandError
from command.ticket_model import POOL_STATES, Channel
from services.crews import CrewRegistry, crews_from_city
from services.dispatch import DispatchManager, is_creation, road_graph
from services.dispatch_timers import DispatchTimers
from services.incidents import IncidentService
from services.police_link import PoliceLink, Send
from services.supervision import SupervisionService, overdue_stages
from services.tickets import TicketManager, build_manager
from services.ticket_alarms import consume_alarms
from services.ticket_core import utc_now
from services.track_archiver import TrackArchiver

log = logging.getLogger(__name__)

RESUME_AFTER_S = 5.0  # after a Redis wipe: time for the vehicles to report again before the pool is looked at


@dataclass
class DispatchParts:
    """The dispatch side of the application, built once per process."""

    tickets: TicketManager
    dispatch: DispatchManager
    timers: DispatchTimers
    police: PoliceLink
    store: DispatchStore
    supervision: SupervisionService | None = None  # the rules' 督办 after each timers' round (PostgreSQL only)
    incidents: IncidentService | None = None  # an incident resolved with its primary ticket (services.incidents)


async def build(store: Store, settings: Any, city: Any = None, *, tickets: TicketManager | None = None,
                clock: Callable[[], datetime] | None = None, send: Send | None = None,
                **police_options: Any) -> DispatchParts:
    """Build the managers over a Store: crews from the city, the road graph (cached under
    DATA_DIR/cache), the dispatch manager, its timers and the 110 link."""
    city = getattr(city, "city", city)
    if tickets is None:
        kwargs: dict[str, Any] = {"policy": load_policy(settings), "routing": load_routing(settings),
                                  "review": load_review(settings)}
        if clock is not None:
            kwargs["clock"] = clock
        tickets = await build_manager(store.db, store.redis, city, service_area=getattr(settings, "SERVICE_AREA", ""), **kwargs)
    dstore = DispatchStore(store.redis)
    graph = await asyncio.to_thread(road_graph, city, settings.data_dir / "cache")
    crews = CrewRegistry(crews_from_city(city), store, tickets.store)
    dispatch = DispatchManager(tickets, crews, dstore, graph, auto=settings.DISPATCH_AUTO,
                               accept_timeout_s=settings.ACCEPT_TIMEOUT_S,
                               stale_after_s=store.clock.span(settings.VEHICLE_STALE_S),  # fix times: the store's clock
                               clock=clock)
    timers = DispatchTimers(dispatch, arrival_radius_m=settings.ARRIVAL_RADIUS_M)
    police = PoliceLink(PoliceStore(store.db), dstore, tickets, url=settings.POLICE_URL, secret=settings.POLICE_SECRET.encode("utf-8"),
                        clock=clock, send=send, **police_options,
                        signing_clock=utc_now if store.clock.accelerated else None)  # signatures: wall time
    if police.outbound_enabled:  # an emergency's handover and a transfer's result: in the deciding write
        tickets.outbox_hook = police.outbox_hook
    supervision = None if store.db is None else SupervisionService(tickets, SupervisionStore(store.db),
                                                                    UnitStore(store.db))
    return DispatchParts(tickets, dispatch, timers, police, dstore, supervision,
                         incidents=None if store.db is None else IncidentService(tickets))


async def on_change(parts: DispatchParts, change: Mapping[str, str]) -> None:
    """Everything one ticket change triggers: dispatch reactions and the 110 link (an emergency's
    handover and a transfer's result are queued by the write itself in a process that sends to
    110, `PoliceLink.outbox_hook`; here they are queued for the others, a no-op when known)."""
    action, number = change.get("action"), change.get("number", "")
    if is_creation(change) and parts.police.outbound_enabled:
        record = await parts.tickets.store.get(number)
        kind = record.meta.get("police_kind")
        if kind and record.ticket.channel is not Channel.POLICE_110:
            await parts.police.enqueue_handover(record, kind)
    elif action in ("resolve", "resolve_with_incident"):
        record = await parts.tickets.store.get(number)
        if record.ticket.channel is Channel.POLICE_110 and parts.police.outbound_enabled:
            await parts.police.enqueue_result(record)
        if action == "resolve" and record.ticket.incident_id and parts.incidents is not None:
            await parts.incidents.on_resolved(number)  # the primary's crew fixed it: every call resolved
    await parts.dispatch.on_change(change)


class SeenChanges:
    """The (number, version) pairs this process has handled, the newest `size` of them: delivery
    of ``tkt:changes`` is at least once (`store.outbox`), so a repeated entry is skipped. A
    pair is remembered once handled, never when its handling failed (it comes back and runs)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.skipped = 0

    def __contains__(self, change: Mapping[str, str]) -> bool:
        return (change.get("number", ""), str(change.get("version", ""))) in self._seen

    def add(self, change: Mapping[str, str]) -> None:
        """Remember a handled change (the oldest is forgotten beyond `size`)."""
        self._seen[(change.get("number", ""), str(change.get("version", "")))] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)


async def watch_changes(parts: DispatchParts, stop: asyncio.Event, *, consumer: str | None = None,
                        block_ms: int = 500, batch: int = 100, seen: SeenChanges | None = None,
                        resume_after_s: float = RESUME_AFTER_S) -> None:
    """Feed ``tkt:changes`` to `on_change` through the consumer group ``dispatch``; each entry is
    acknowledged once handled (a domain refusal is logged and acknowledged; Redis trouble is
    retried without acknowledging). A version of a ticket already handled is skipped; a group a
    Redis wipe removed is recreated (`store.streams.consume_group`), and then, once the vehicles
    had ``resume_after_s`` to report their positions again, the tickets waiting in the dispatch
    pool are looked at again (`resume_pool`)."""
    seen = SeenChanges() if seen is None else seen

    async def handle(change: Mapping[str, str]) -> None:
        if change in seen:
            seen.skipped += 1
            return
        await on_change(parts, change)
        seen.add(change)

    await consume_group(parts.store.redis, CHANGES_STREAM, CHANGES_GROUP, handle,
                        stop, skip=(CommandError, LookupError), what="change watcher", consumer=consumer,
                        block_ms=block_ms, batch=batch,
                        on_group_lost=lambda: resume_pool(parts, stop, resume_after_s))


async def resume_pool(parts: DispatchParts, stop: asyncio.Event | None = None, after_s: float = 0.0) -> int:
    """After a Redis wipe took changes this worker had not read yet (a new ticket's creation among
    them): each ticket waiting in the dispatch pool is handled as its creation would have been
    (`DispatchManager.dispatch_pool_ticket` reads its state first: a repeat does nothing). The
    number of tickets looked at. Waits ``after_s`` first (the live positions went with Redis)."""
    if stop is not None and after_s > 0:
        await pause(stop, after_s)
    try:
        waiting = await parts.tickets.store.in_states(POOL_STATES)
    except psycopg.Error as exc:
        log.warning("change watcher: the dispatch pool cannot be read after the wipe: %s", exc)
        return 0
    for record in waiting:
        try:
            await parts.dispatch.dispatch_pool_ticket(record.ticket.number)
        except (CommandError, LookupError, psycopg.Error) as exc:
            log.warning("change watcher: %s not dispatched after the wipe: %s", record.ticket.number, exc)
    log.info("change watcher: %d tickets of the dispatch pool looked at again after the wipe", len(waiting))
    return len(waiting)


async def run_timers(parts: DispatchParts, stop: asyncio.Event, interval_s: float) -> None:
    """Run the timers every `interval_s` seconds until `stop`."""
    while not stop.is_set():
        try:
            await parts.timers.tick()
            if parts.supervision is not None:  # 督办 by the rules: red tickets, the overdue stages just raised
                await parts.supervision.tick(parts.dispatch.clock(), overdue_stages(await parts.store.ticket_alarms()))
        except (CommandError, OSError, RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("dispatch timers failed (%s); retrying", exc)
        await pause(stop, interval_s)



async def _heartbeat(store: Store, parts: DispatchParts, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await store.heartbeat("dispatch", {"pid": os.getpid(), "crews": len(parts.dispatch.crews.crews),
                                               "roads": 0 if parts.dispatch.graph is None else parts.dispatch.graph.edge_count,
                                               "police": parts.police.outbound_enabled})
        except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("dispatch heartbeat failed: %s", exc)
        await pause(stop, 3.0)


async def serve(settings: Any, redis_url: str, mqtt_url: str, city: Any, stop: asyncio.Event | None = None) -> None:
    """Run the dispatch service until SIGINT/SIGTERM (or until `stop` is set)."""
    stop = stop_on_signals(stop)
    store = Store.from_url(redis_url, settings.DATABASE_URL, db_pool_size=settings.DB_POOL_SIZE,
                           health_check_interval=10)
    store.clock = Clock.from_settings(settings)  # domain time (runtime.clock): tickets, limits, alarms, fix ages
    parts = await build(store, settings, city, clock=store.clock.now_dt)
    log.info("dispatch: %d crews, %s road edges, 110 link %s", len(parts.dispatch.crews.crews),
             0 if parts.dispatch.graph is None else parts.dispatch.graph.edge_count,
             "on" if parts.police.outbound_enabled else "off (POLICE_URL/POLICE_SECRET not set)")
    tasks = [asyncio.create_task(consume_alarms(parts.tickets, store.redis, stop)),
             asyncio.create_task(watch_changes(parts, stop)),
             asyncio.create_task(run_timers(parts, stop, settings.ESCALATION_CHECK_S)),
             asyncio.create_task(_heartbeat(store, parts, stop))]
    if parts.police.outbound_enabled:
        tasks.append(asyncio.create_task(parts.police.run(stop)))
    if store.db is not None:  # closed track hours into the archive (services.track_archiver says why here)
        archiver = TrackArchiver(store, archive_days=settings.TRACK_ARCHIVE_DAYS)
        tasks.append(asyncio.create_task(archiver.run(stop)))
    if settings.DATABASE_URL:  # leftover ticket changes to Redis (one relay works across processes)
        tasks.append(asyncio.create_task(ChangeRelay(settings.DATABASE_URL, store.redis).run(stop)))
    try:
        await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()
