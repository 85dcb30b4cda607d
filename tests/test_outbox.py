"""The change relay (store/outbox.py) against the session's real PostgreSQL and Redis: leftover
ticket_changes rows reach the stream and the channel in id order and are deleted, one relay at a
time across processes, rows wait while Redis is away, and the relay reconnects after PostgreSQL
dropped its connection. Rows are inserted as a writer whose publication failed leaves them."""
from __future__ import annotations

import asyncio

import orjson
import psycopg
import pytest

from store import redis_client
from store.outbox import RELAY_LOCK_KEY, ChangeRelay
from store.ticket_publish import CHANGES_STREAM, LIVE_TICKETS, publish_changes
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def leave_rows(url: str, changes: list[tuple[str, int, str, str]], age_s: float = 10.0) -> list[int]:
    """Insert committed rows as a writer whose publication failed leaves them; their ids."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [conn.execute("INSERT INTO ticket_changes (number, version, action, state, created_at)"
                             " VALUES (%s, %s, %s, %s, now() - make_interval(secs => %s)) RETURNING id",
                             (*change, age_s)).fetchone()[0] for change in changes]


def rows_left(url: str) -> list[tuple]:
    """The rows still in the outbox, in id order."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT number, version FROM ticket_changes ORDER BY id").fetchall()


async def stream(client) -> list[dict[str, str]]:
    """The entries of tkt:changes, in order."""
    return [fields for _, fields in await client.xrange(CHANGES_STREAM)]


async def messages(pubsub, count: int, timeout: float = 10.0) -> list[dict]:
    """The change summaries published on live:tickets, until `count` arrived (or the timeout)."""
    found: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(found) < count and asyncio.get_running_loop().time() < deadline:
        message = await pubsub.get_message(timeout=0.5)  # None also for the subscription's reply
        if message is not None:
            payload = orjson.loads(message["data"])
            found.extend(payload if isinstance(payload, list) else [payload])
    return found


CHANGES = [("GD20261206-1", 1, "create", "pool"), ("GD20261206-2", 1, "create", "pool"),
           ("GD20261206-1", 2, "dispatch", "dispatched")]


async def test_leftover_rows_are_published_in_id_order_and_deleted(redis_url, database_url):
    client = redis_client.connect(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(LIVE_TICKETS)
    relay = ChangeRelay(database_url, client)
    try:
        leave_rows(database_url, CHANGES)
        fresh = leave_rows(database_url, [("GD20261206-3", 1, "create", "pool")], age_s=0)
        assert await relay.try_lock()
        assert await relay.sweep() == 3
        assert [(f["number"], f["version"], f["action"], f["state"]) for f in await stream(client)] == \
            [(n, str(v), a, s) for n, v, a, s in CHANGES]
        # a row its writer may be publishing right now (younger than the grace) is left to it
        assert rows_left(database_url) == [("GD20261206-3", 1)] and fresh
        published = await messages(pubsub, 3)
        assert [(p["number"], int(p["version"])) for p in published] == [(n, v) for n, v, _, _ in CHANGES]
        assert await relay.sweep() == 0  # nothing twice
    finally:
        await relay.close()
        await pubsub.aclose()
        await client.aclose()


async def test_one_relay_at_a_time(redis_url, database_url):
    client = redis_client.connect(redis_url)
    first, second = ChangeRelay(database_url, client), ChangeRelay(database_url, client)
    try:
        assert await first.try_lock()
        assert not await second.try_lock()
        await first.close()  # the holder stops: the lock is free (a crash: see the reconnect test)
        assert await second.try_lock()
        assert not await first.try_lock()
    finally:
        await first.close()
        await second.close()
        await client.aclose()


async def test_rows_wait_while_redis_is_away(redis_url, database_url):
    away = redis_client.connect("redis://127.0.0.1:9/0", patience_s=0.2)  # nothing listens there
    client = redis_client.connect(redis_url)
    stop = asyncio.Event()
    relay = ChangeRelay(database_url, away, poll_s=0.1, retry_s=0.1)
    task = asyncio.create_task(relay.run(stop))
    try:
        leave_rows(database_url, CHANGES)
        await wait_for(lambda: relay.counters["redis_errors"] >= 2, timeout=20)
        assert len(rows_left(database_url)) == 3  # rolled back: nothing lost
        relay.redis = client  # Redis is back
        await wait_for(lambda: not rows_left(database_url), timeout=20)
        assert [f["number"] for f in await stream(client)] == [n for n, _, _, _ in CHANGES]
    finally:
        stop.set()
        await task
        await away.aclose()
        await client.aclose()


async def test_relay_reconnects_when_postgres_drops_it(redis_url, database_url):
    client = redis_client.connect(redis_url)
    stop = asyncio.Event()
    relay = ChangeRelay(database_url, client, poll_s=0.1, retry_s=0.1)
    task = asyncio.create_task(relay.run(stop))
    try:
        await wait_for(lambda: relay.holder, timeout=20)
        with psycopg.connect(database_url, autocommit=True) as conn:  # as a server restart does
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_locks"
                         " WHERE locktype = 'advisory' AND objid = (%s::bigint & x'ffffffff'::bigint)",
                         (RELAY_LOCK_KEY,))
        leave_rows(database_url, CHANGES)
        await wait_for(lambda: not rows_left(database_url), timeout=20)
        assert relay.counters["database_errors"] >= 1 and relay.counters["lock_taken"] >= 2
        assert [f["number"] for f in await stream(client)] == [n for n, _, _, _ in CHANGES]
    finally:
        stop.set()
        await task
        await client.aclose()


async def test_dispatch_watcher_skips_repeated_versions_and_survives_a_wipe(redis_url, database_url, monkeypatch):
    """Delivery is at least once: the dispatch worker handles each (number, version) once, and
    after FLUSHALL (its consumer group gone) it recreates the group and goes on."""
    from types import SimpleNamespace

    from services import worker

    client = redis_client.connect(redis_url)
    handled: list[tuple[str, str]] = []

    async def on_change(parts, change):
        handled.append((change["number"], change["version"]))

    resumed: list[bool] = []

    async def resume_pool(parts, stop, after_s):
        resumed.append(True)

    monkeypatch.setattr(worker, "on_change", on_change)
    monkeypatch.setattr(worker, "resume_pool", resume_pool)
    stop = asyncio.Event()
    relay = ChangeRelay(database_url, client)
    task = asyncio.create_task(worker.watch_changes(SimpleNamespace(store=SimpleNamespace(redis=client)), stop,
                                                    block_ms=50))
    try:
        leave_rows(database_url, CHANGES)
        assert await relay.sweep() == 3
        await publish_changes(client, [{"number": "GD20261206-1", "version": 2, "action": "dispatch",
                                        "state": "dispatched"}])  # published twice (the writer and the relay)
        await wait_for(lambda: len(handled) >= 3, timeout=20)
        await client.flushall()  # the consumer group and the stream are gone
        leave_rows(database_url, [("GD20261206-1", 3, "accept", "accepted")])
        assert await relay.sweep() == 1
        await wait_for(lambda: len(handled) >= 4, timeout=20)
        await asyncio.sleep(0.3)
        assert handled == [("GD20261206-1", "1"), ("GD20261206-2", "1"), ("GD20261206-1", "2"),
                           ("GD20261206-1", "3")]
        assert resumed == [True]  # the pool looked at again once, after the wipe
    finally:
        stop.set()
        await task
        await relay.close()
        await client.aclose()


class Console:
    """A live-feed subscriber that keeps the frames it is sent."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))

    def tickets(self) -> list[tuple[str, int]]:
        return [(t["number"], t["version"]) for f in self.frames if f["type"] == "tickets" for t in f["tickets"]]


CALL = {"channel": "phone", "category": "water", "type": "repair", "urgency": "urgent",
        "description": "路面冒水", "caller_phone": "13800001111", "lon": 119.75, "lat": 36.38}


async def test_live_feed_reads_a_version_once_catches_up_after_a_lost_subscription_and_a_wipe(
        redis_url, database_url):
    from store.live import Store
    from command.ticket_model import Actor, Role
    from services.tickets import build_manager
    from web.live import LiveFeed

    actor = Actor("disp", Role.DISPATCHER)
    store = Store.from_url(redis_url, database_url)
    live = LiveFeed(store, batch_ms=50)
    live.start()
    console = Console()
    live.add(console)
    try:
        await wait_for(lambda: _subscribed(store), timeout=10)
        manager = await build_manager(store.db, store.redis)
        first = (await manager.create(dict(CALL), actor)).record.ticket
        await wait_for(lambda: (first.number, first.version) in console.tickets(), timeout=10)
        frames = len(console.frames)
        await live.ticket_changes([{"number": first.number, "version": first.version, "action": "create",
                                    "state": first.state.value}])  # delivered again (writer and relay)
        assert live.flush() == [] and len(console.frames) == frames  # not read, not sent again

        # a write whose publication never came (its writer had no Redis), then the subscription is lost
        silent = await build_manager(store.db, None)
        second = (await silent.create(dict(CALL, caller_phone="13900002222"), actor, link=False)).record.ticket
        await store.redis.client_kill_filter(_type="pubsub")
        await wait_for(lambda: live.resyncs >= 1, timeout=10)
        await wait_for(lambda: (second.number, second.version) in console.tickets(), timeout=10)

        await store.redis.flushall()  # a new web process after a wipe counts the day from the record
        fresh = LiveFeed(store)
        snapshot = orjson.loads(await fresh.snapshot())
        assert snapshot["today"]["created"] == 2
        assert sorted(t["number"] for t in snapshot["tickets"]) == sorted([first.number, second.number])
    finally:
        await live.stop()
        await store.close()


async def _subscribed(store) -> bool:
    counts = dict(await store.redis.pubsub_numsub("live:tickets"))
    return all(counts.values())


async def test_after_a_wipe_the_dispatch_worker_looks_at_the_pool_again(dispatch_api):
    """A new emergency ticket whose creation never reached the worker (published, then wiped
    before it was read; here: never published) is dispatched once the worker finds its consumer
    group gone."""
    from store.tickets import TicketStore
    from command.ticket_model import Actor, Role
    from services.tickets import TicketManager
    from tests.cities import ll
    from tests.river import CREWS, TICKET_XY

    silent = TicketManager(TicketStore(dispatch_api.store.db, None), None, clock=dispatch_api.clock)  # publishes nothing
    lon, lat = ll(*TICKET_XY)
    created = await silent.create({"channel": "phone", "category": "power", "type": "repair", "urgency": "emergency",
                                   "description": "整条街停电", "caller_phone": "13812341234", "lon": lon, "lat": lat},
                                  Actor("agent", Role.AGENT))
    number = created.record.ticket.number
    await asyncio.sleep(0.5)
    assert await dispatch_api.dispatched_to(number) is None  # the worker never heard of it
    await dispatch_api.store.redis.flushall()
    dispatch_api.tokens.clear()  # the sessions went with Redis
    for _, vehicle_id, _, xy in CREWS:  # the vehicles report again (the worker gives them 5 s)
        if xy is not None:
            await dispatch_api.fix(vehicle_id, xy, dispatch_api.clock())
    await wait_for(lambda: dispatch_api.dispatched_to(number), timeout=20)


async def test_kpi_service_sweeps_when_a_wipe_took_changes_it_had_not_read(redis_url, database_url):
    """FLUSHALL raises no error in a follower: the KPI service notices that the stream lost
    entries after the last one it read, and sweeps PostgreSQL for the tickets behind them."""
    from store.live import Store
    from command.ticket_model import Actor, Role
    from services.kpi_service import KpiService
    from services.tickets import build_manager

    actor = Actor("disp", Role.DISPATCHER)
    store = Store.from_url(redis_url, database_url)
    kpi = KpiService(store.db, store.redis)
    try:
        manager = await build_manager(store.db, store.redis)
        first = (await manager.create(dict(CALL), actor)).record.ticket
        await kpi.start()
        await kpi.current()
        await kpi.stop()  # the follower paused: the next change waits unread in the stream
        lost = (await manager.create(dict(CALL, caller_phone="13900002222"), actor, link=False)).record.ticket
        await store.redis.flushall()  # ...and is wiped
        after = (await manager.create(dict(CALL, caller_phone="13900003333"), actor, link=False)).record.ticket
        await kpi.current()
        with psycopg.connect(database_url) as conn:
            folded = {n for (n,) in conn.execute("SELECT number FROM kpi_folds")}
        assert {first.number, lost.number, after.number} <= folded
        assert kpi.counters["stream_lost"] == 1
    finally:
        await kpi.stop()
        await store.close()


async def test_dispatch_watcher_retries_a_change_while_postgres_is_away(redis_url, database_url, monkeypatch):
    """A change whose handling meets PostgreSQL away is not acknowledged and comes again (with
    the changes after it), in order; the watcher does not end."""
    from types import SimpleNamespace

    from services import worker

    client = redis_client.connect(redis_url)
    handled: list[tuple[str, str]] = []
    failures = [psycopg.OperationalError("connection refused (PostgreSQL restarting)")]

    async def on_change(parts, change):
        if change["number"] == "GD20261206-2" and failures:
            raise failures.pop()
        handled.append((change["number"], change["version"]))

    monkeypatch.setattr(worker, "on_change", on_change)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.watch_changes(SimpleNamespace(store=SimpleNamespace(redis=client)), stop,
                                                    block_ms=50))
    try:
        await publish_changes(client, [{"number": n, "version": v, "action": a, "state": s} for n, v, a, s in CHANGES])
        await wait_for(lambda: len(handled) >= 3, timeout=20)
        assert handled == [(n, str(v)) for n, v, _, _ in CHANGES] and not task.done()
        assert (await client.xpending(CHANGES_STREAM, "dispatch"))["pending"] == 0
    finally:
        stop.set()
        await task
        await client.aclose()
