"""PostgreSQL, the system of record: the connection pool and the schema migrations.

Driver: psycopg 3 with psycopg_pool. It is PostgreSQL's own project's driver line (psycopg2's
successor): async and sync APIs with the same types, so the web and dispatch processes use the
async pool while command-line tools (migrations, migrate-redis, backup checks) use plain
connections; server-side parameter binding, COPY, pipelines, and libpq underneath (the same
connection string, TLS and failover options as psql: ``host=a,b target_session_attrs=read-write``).
No ORM: each store module owns its SQL as plain parameterised queries.

Migrations are numbered SQL files in ``store/migrations`` (``0001_name.sql``), applied in order at
start-up, each in its own transaction with its row in ``schema_migrations``, under an advisory
lock so that processes starting together apply each once. Plain SQL files, not Alembic: without
an ORM there is no model to autogenerate from, and a DBA (or openGauss/KingbaseES) reads them as
they are. A file once applied is never edited; a change is a new file.
"""
from __future__ import annotations

import logging
import re
import time
import weakref
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
FRESH_S = 1.0  # a connection returned healthy this recently is handed out without a check
_LOCK_KEY = 0x63656E746572  # pg_advisory_lock key of the migrations ("center")


def migration_files(directory: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    """The migration files in order: (version, path). Two files of one number are an error."""
    found: dict[int, Path] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise RuntimeError(f"migration file name {path.name!r} is not NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations numbered {version}: {found[version].name}, {path.name}")
        found[version] = path
    return sorted(found.items())


def migrate(url: str, directory: Path = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet applied to the database at url; the versions applied now."""
    applied_now = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version integer PRIMARY KEY, name text NOT NULL,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, path in migration_files(directory):
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text(encoding="utf-8"))
                    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                                 (version, path.name))
                log.info("database migration %s applied", path.name)
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def schema_version(url: str) -> int:
    """The highest applied migration (0 for an empty database)."""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]
        if exists is None:
            return 0
        return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])


class Database:
    """The async connection pool of one process. Opened on first use (so it can be made outside a
    running event loop); a dropped server is reconnected by the pool (each connection is checked
    before it is handed out), and a use that finds no server raises psycopg.OperationalError."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 10.0) -> None:
        self.url = url
        self._pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, timeout=timeout_s,
                                         open=False, check=self._check, reset=self._returned,
                                         kwargs={"autocommit": True})
        self._opened = False
        self._returned_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def _returned(self, conn: psycopg.AsyncConnection) -> None:
        """The pool's reset callback: remember when a connection came back healthy."""
        self._returned_at[conn] = time.monotonic()

    async def _check(self, conn: psycopg.AsyncConnection) -> None:
        """The pool's check before handing a connection out: a round trip to the server, unless
        the connection came back healthy less than FRESH_S ago (a create takes three connections
        in a row: checking each cost a tenth of its time). A server that restarted within that
        second costs the request that meets the dead connection a 503, and the pool drops it."""
        at = self._returned_at.get(conn)
        if at is not None and time.monotonic() - at < FRESH_S:
            return
        await AsyncConnectionPool.check_connection(conn)

    async def _ready(self) -> AsyncConnectionPool:
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection in autocommit mode (each statement its own transaction)."""
        pool = await self._ready()
        async with pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection inside one transaction: committed when the block ends normally,
        rolled back when it raises. One use case, one transaction."""
        async with self.connection() as conn:
            async with conn.transaction():
                yield conn

    async def fetch(self, query: Any, params: Any = None) -> list[dict[str, Any]]:
        """Rows of one query as dicts."""
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return await cur.fetchall()

    async def fetchone(self, query: Any, params: Any = None) -> dict[str, Any] | None:
        """The first row of one query as a dict, or None."""
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return await cur.fetchone()

    async def execute(self, query: Any, params: Any = None) -> int:
        """Run one statement; the number of rows it touched."""
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._opened:
            self._opened = False
            await self._pool.close()
