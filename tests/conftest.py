"""Shared fixtures: real PostgreSQL, Redis and MQTT servers for the session, isolation, hidden-failure traps.

With DATABASE_URL / REDIS_URL / MQTT_URL in the environment the tests use those servers (and
empty the given database's tables, and FLUSH the given Redis database, between tests); otherwise
they start embedded ones under a temporary DATA_DIR.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Iterable

import psycopg
import pytest
import redis

from store.db import Database
from servers.embedded import Servers
from config.settings import load
from store.fleet import FleetStore

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


# The database of the running test's database_url fixture ('' when it uses none): test_settings'
# DATABASE_URL, so the services a test starts keep their record in the database it checks.
_TEST_DATABASE = {"url": ""}


def test_settings(tmp_path: Path, **overrides):
    """Settings for a test: defaults, no config file, DATA_DIR in tmp, DATABASE_URL the test's
    database (when it uses the database_url fixture), overrides applied."""
    env = {"CONFIG_FILE": str(tmp_path / "absent.toml"), "DATA_DIR": str(tmp_path / "var"),
           "DATABASE_URL": _TEST_DATABASE["url"]}
    settings = load(env)
    return settings.with_values(**overrides) if overrides else settings


test_settings.__test__ = False  # a helper, not a test


def pytest_sessionstart(session):
    """Refuse to test a compiled ingest module older than its source: Python would import the
    old build and the tests would check code that is no longer there (make rebuilds it)."""
    from ingest import accel

    stale = accel.stale()
    if stale:
        pytest.exit("stale compiled modules (run make, or python -m ingest.accel): "
                    + ", ".join(str(path.relative_to(ROOT)) for path in stale), returncode=2)


def pytest_collection_modifyitems(config, items):
    """Mark ``postgres_external`` every test that uses the database_url fixture and starts no
    process or browser: the PostgreSQL part of the suite, which CI runs a second time against
    Debian's PostgreSQL through DATABASE_URL (.ci/run)."""
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()) and not (
                item.get_closest_marker("process") or item.get_closest_marker("browser")):
            item.add_marker(pytest.mark.postgres_external)


@pytest.fixture(scope="session")
def demo_city_profile(tmp_path_factory) -> Path:
    """The demo city (`simulators.democity`, the demo's seed) generated once per test worker: its profile."""
    from simulators import democity

    return democity.generate(tmp_path_factory.mktemp("democity"), seed=democity.DEFAULT_SEED)


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> Servers:
    """The session's real Redis and MQTT broker."""
    data = tmp_path_factory.mktemp("servers")
    env = {"CONFIG_FILE": str(data / "absent.toml"), "DATA_DIR": str(data),
           "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
           "REDIS_URL": os.environ.get("REDIS_URL", ""), "MQTT_URL": os.environ.get("MQTT_URL", ""),
           "MQTT_EMBEDDED_BROKER": os.environ.get("MQTT_EMBEDDED_BROKER", "auto")}
    started = Servers.resolve(load(env))
    yield started
    started.stop()


@pytest.fixture
def redis_url(servers: Servers) -> str:
    """A clean Redis database for one test."""
    client = redis.Redis.from_url(servers.redis_url)
    client.flushdb()
    client.close()
    return servers.redis_url


@pytest.fixture
def database_url(servers: Servers) -> str:
    """The session's PostgreSQL with its migrations applied and every table emptied for one test
    (TRUNCATE of all tables but schema_migrations; sequences restart)."""
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    _TEST_DATABASE["url"] = servers.database_url
    yield servers.database_url
    _TEST_DATABASE["url"] = ""


@pytest.fixture
def mqtt_url(servers: Servers) -> str:
    """The session broker's URL, with the center's account (MQTT_URL from the environment must
    carry it too: mqtt://user:pass@host:port)."""
    return servers.mqtt_url


class _ErrorTrap(logging.Handler):
    """Collects ERROR records that carry an exception: a swallowed failure fails the test."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.name.startswith(("asyncio", "tornado.application")):
            self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_logged_exception(request):
    """Re-raise, as a test failure, any exception that a callback or task only logged."""
    trap = _ErrorTrap()
    root = logging.getLogger()
    root.addHandler(trap)
    yield
    root.removeHandler(trap)
    if trap.records and "allow_logged_errors" not in request.keywords:
        first = trap.records[0]
        detail = logging.Formatter().format(first)
        pytest.fail(f"{len(trap.records)} exception(s) were logged, not raised; first:\n{detail}")


async def register_vehicles(database_url: str, ids: Iterable[str]) -> None:
    """Register vehicles in the fleet registry (PostgreSQL), as an administrator would
    (FleetStore), so that the ingest accepts their messages: it keeps aside whatever a vehicle not
    registered sends (it follows the registry's revision within 2 s)."""
    db = Database(database_url, max_size=1)
    try:
        await FleetStore(db).register_bare_vehicles(ids, by="test", at=time.time())
    finally:
        await db.close()


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll an async or sync predicate until it returns a truthy value; fail on timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def close_websocket(ws, timeout: float = 5.0) -> None:
    """Close a tornado WebSocket client and wait for the server's close, so its socket is shut
    before the event loop ends (a socket left to the garbage collector is a ResourceWarning,
    an error under ``filterwarnings = error``, in whichever later test collects it)."""
    stream = getattr(ws.protocol, "stream", None)  # close() forgets the protocol
    ws.close()
    try:
        while await asyncio.wait_for(ws.read_message(), timeout) is not None:
            pass
    except (asyncio.TimeoutError, OSError):
        pass
    finally:
        if stream is not None:
            stream.close()
