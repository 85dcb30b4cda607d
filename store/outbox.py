"""The relay of the ticket change outbox: committed ticket writes that never reached Redis.

Owns the PostgreSQL table ``ticket_changes`` as its reader (rows are written by
`store.tickets.TicketStore.save`, one per ticket write, in the write's transaction) and
the advisory lock `RELAY_LOCK_KEY`. It spells no Redis key: rows go out through
`store.ticket_publish.publish_changes` (stream ``tkt:changes`` and channel ``live:tickets``).

A writer publishes its own rows right after COMMIT and deletes them. Rows stay behind when Redis
failed after the commit, or the process died between the commit and the delete. `ChangeRelay`
sweeps them: in one transaction on its own connection it takes the rows older than ``grace_s``
in id order (``FOR UPDATE SKIP LOCKED``), publishes them, deletes them and commits. When Redis
refuses, the transaction rolls back and the rows wait for the next sweep; nothing is lost and
nothing uncommitted is ever published (a row exists for others only once its write committed).

One relay at a time across every process: each web process and the dispatch worker run a relay,
and only the holder of the session-level ``pg_try_advisory_lock(RELAY_LOCK_KEY)`` on the relay's
dedicated connection sweeps; the others try again every ``lock_retry_s``. A PostgreSQL restart
ends the connection, which releases the lock; each relay reconnects and one of them takes it.

Wake-up: a short poll (every ``poll_s``, 1 s by default), not LISTEN/NOTIFY. The relay handles only
leftovers, which are rare (a Redis outage, a crash); the writers publish their own changes at once.
A NOTIFY would cost every ticket write a statement (or a trigger) on the hot path to wake a relay
that has nothing to do, and it would race the writer's own publication, doubling deliveries. A
poll of the empty table's primary key is a few microseconds of PostgreSQL a second, and it needs
no listener to re-establish after a reconnect. ``grace_s`` (2 s) keeps the relay off rows whose
writer is publishing them right now (``created_at`` is the write transaction's start).

Delivery is at least once: a writer and the relay can both publish a row (the writer's Redis
call was slow), and a relay that dies between its publication and its COMMIT publishes again.
Consumers skip what they have already applied: the dispatch worker a (number, version) it
handled (`services.worker`), the live feed a version not newer than the one it read
(`web.live`), the KPI service the events up to its fold's last event id
(`services.kpi_service`). Across tickets the order is the order of the rows' ids;
for one ticket, versions commit in order, but a leftover row may reach Redis after a later
version its writer published itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from store.streams import REDIS_TROUBLE, pause

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x746B745F72656C61  # pg_advisory_lock key of the change relay ("tkt_rela")

Publish = Callable[[Any, Sequence[dict[str, Any]]], Awaitable[Any]]

_TAKE = ("SELECT id, number, version, action, state FROM ticket_changes"
         " WHERE created_at < now() - make_interval(secs => %s)"
         " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED")
_DELETE = "DELETE FROM ticket_changes WHERE id = ANY(%s)"


def default_publish() -> Publish:
    """The tickets store's publication (stream ``tkt:changes`` and channel ``live:tickets``)."""
    from store.ticket_publish import publish_changes

    return publish_changes


class ChangeRelay:
    """Sweeps leftover ``ticket_changes`` rows to Redis while it holds the relay lock."""

    def __init__(self, database_url: str, redis: Any, *, publish: Publish | None = None, batch: int = 500,
                 poll_s: float = 1.0, grace_s: float = 2.0, lock_retry_s: float = 5.0,
                 retry_s: float = 1.0, connect_timeout_s: float = 5.0) -> None:
        self.url = database_url
        self.redis = redis
        self.publish = publish or default_publish()
        self.batch = batch
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.lock_retry_s = lock_retry_s
        self.retry_s = retry_s
        self.connect_timeout_s = connect_timeout_s
        self.counters: Counter[str] = Counter()
        self.holder = False
        self._conn: psycopg.AsyncConnection | None = None

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self.holder = False
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True,
                                                               connect_timeout=max(1, int(self.connect_timeout_s)))
        return self._conn

    async def try_lock(self) -> bool:
        """Take the relay lock on the dedicated connection unless another process holds it."""
        conn = await self._connection()
        if not self.holder:
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,))).fetchone()
            self.holder = bool(row and row[0])
            if self.holder:
                self.counters["lock_taken"] += 1
                log.info("change relay: this process relays the leftover ticket changes")
        return self.holder

    async def sweep(self) -> int:
        """Publish and delete every leftover row (older than ``grace_s``), a batch per transaction,
        in id order; the number published. Redis trouble rolls the batch back and is raised."""
        conn = await self._connection()
        total = 0
        while True:
            async with conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_TAKE, (self.grace_s, self.batch))
                rows = await cur.fetchall()
                if not rows:
                    return total
                await self.publish(self.redis, rows)
                await conn.execute(_DELETE, ([row["id"] for row in rows],))
            total += len(rows)
            self.counters["relayed"] += len(rows)
            log.info("change relay: %d leftover ticket changes published (up to #%d)", len(rows), rows[-1]["id"])
            if len(rows) < self.batch:
                return total

    async def close(self) -> None:
        """Release the lock and close the dedicated connection (a connection that ends releases
        the lock too, but only once its server process has gone: a moment later)."""
        conn, holder, self._conn, self.holder = self._conn, self.holder, None, False
        if conn is not None and not conn.closed:
            if holder:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (RELAY_LOCK_KEY,))
            await conn.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop``: take the lock (or wait for it), then sweep every ``poll_s``;
        PostgreSQL and Redis trouble is logged, counted and retried."""
        try:
            while not stop.is_set():
                try:
                    if not await self.try_lock():
                        await pause(stop, self.lock_retry_s)
                        continue
                    await self.sweep()
                    await pause(stop, self.poll_s)
                except REDIS_TROUBLE as exc:
                    self.counters["redis_errors"] += 1
                    log.warning("change relay: redis unavailable (%s); the changes wait in PostgreSQL", exc)
                    await pause(stop, self.retry_s)
                except psycopg.Error as exc:
                    self.counters["database_errors"] += 1
                    log.warning("change relay: database unavailable (%s); reconnecting", str(exc).strip())
                    await self.close()
                    await pause(stop, self.retry_s)
        finally:
            await self.close()
