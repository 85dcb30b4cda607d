"""The shared test harness: real PostgreSQL, Redis and MQTT servers for the session, isolation,
hidden-failure traps, an API client with one login helper, the demo started as real processes
(one quiet demo per worker, shared by the browser files that can share it) and the browser fixtures.

With DATABASE_URL / REDIS_URL / MQTT_URL in the environment the tests use those servers, but never
empty data they did not write: on the given PostgreSQL they create a database of their own (and
drop it at the end); a given Redis must hold no key when the session starts (the tests flush it
between tests), else the session refuses to run. Otherwise they start embedded ones under a
temporary DATA_DIR.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
import redis
import tornado.httpclient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from command import accounts
from store.db import Database
from servers.embedded import Servers
from store.startup import open_servers
from config.settings import load
from store.fleet import FleetStore

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
PASSWORD = "test-pass-1234"  # the accounts' password in the in-process apps
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)  # the in-process apps' clock starts here: Sunday 10:00 in Shanghai


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


# The accounts' scrypt cost in the tests' own processes: the hash format keeps its parameters, so
# hashes made here verify at this cost; every in-process app hashes about ten demo accounts and each
# login verifies one, which at the production cost (`PRODUCTION_SCRYPT`, about 50 ms a hash) was
# about half a second of every API test. The demo's processes keep the production cost, and
# tests/test_accounts.py checks it and that a hash of that cost verifies.
PRODUCTION_SCRYPT = dict(accounts._SCRYPT)
accounts._SCRYPT.update(n=2 ** 4)


def pytest_collection_modifyitems(config, items):
    """Mark ``postgres_external`` every test that uses the database_url fixture and starts no
    process or browser: the PostgreSQL part of the suite, which CI runs a second time against
    Debian's PostgreSQL through DATABASE_URL (.ci/run)."""
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()) and not (
                item.get_closest_marker("process") or item.get_closest_marker("browser")):
            item.add_marker(pytest.mark.postgres_external)
    # the files that start processes or a browser (minutes each) first, the many short files after
    # them: `make test` hands whole files to its two workers in this order (--dist loadfile), so
    # the short files fill in at the end instead of one worker waiting out the last long file
    slow = {item.module.__name__ for item in items if isinstance(item, pytest.Function)
            and (item.get_closest_marker("process") or item.get_closest_marker("browser"))}
    items.sort(key=lambda item: 0 if getattr(getattr(item, "module", None), "__name__", "") in slow else 1)


@pytest.fixture(scope="session")
def demo_city_profile(tmp_path_factory) -> Path:
    """The demo city (`simulators.democity`, the demo's seed) generated once per test worker: its profile."""
    from simulators import democity

    return democity.generate(tmp_path_factory.mktemp("democity"), seed=democity.DEFAULT_SEED)


def _with_dbname(url: str, name: str) -> str:
    """The URL (or conninfo) of database `name` on the server of url, in url's form."""
    if "://" in url:
        return urlsplit(url)._replace(path="/" + name).geturl()
    return make_conninfo(url, dbname=name)


def own_database(given_url: str) -> str:
    """A new, empty database of the tests' own on the server of a given DATABASE_URL (named after
    the given one, with a random suffix): the tests empty and drop only that one. Exits the
    session when the given account may not create a database."""
    name = f"{conninfo_to_dict(given_url).get('dbname') or 'center'}_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(given_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        pytest.exit(f"DATABASE_URL: cannot create the tests' own database ({exc}); the tests never"
                    " empty the given database itself", returncode=2)
    return _with_dbname(given_url, name)


def drop_own_database(given_url: str, own_url: str) -> None:
    """Drop a database that `own_database` created beside the given one."""
    name = conninfo_to_dict(own_url)["dbname"]
    assert name != conninfo_to_dict(given_url).get("dbname") and "_test_" in name, "not the tests' own database"
    with psycopg.connect(given_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def sibling_database(url: str, suffix: str) -> str:
    """A new, empty database beside the tests' database at url, named after it (so it is the
    tests' own too: dropped first if an earlier run left it)."""
    name = f"{conninfo_to_dict(url).get('dbname') or 'center'}_{suffix}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_dbname(url, name)


def redis_keys_held(url: str) -> dict[str, int]:
    """The keys each database of the Redis server at url holds (``{"db0": 3}``), empty databases left out."""
    client = redis.Redis.from_url(url)
    try:
        return {db: info["keys"] for db, info in client.info("keyspace").items() if info.get("keys")}
    finally:
        client.close()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """A small city: the hand-built two-district city (`tests.cities.TWO_DISTRICTS`), written as
    GeoJSON with a profile, loaded (a module's own ``city`` fixture overrides it)."""
    from tests.cities import TWO_DISTRICTS, write_city

    return write_city(tmp_path_factory.mktemp("ticketcity"), TWO_DISTRICTS)


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> Servers:
    """The session's real PostgreSQL, Redis and MQTT broker: embedded, or the given ones (a
    database of the tests' own on the given PostgreSQL; a given Redis must be empty)."""
    data = tmp_path_factory.mktemp("servers")
    given_database, given_redis = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if given_redis and (held := redis_keys_held(given_redis)):
        pytest.exit(f"REDIS_URL's server holds keys ({held}): the tests flush the Redis they use;"
                    " give them an empty server", returncode=2)
    database = own_database(given_database) if given_database else ""
    env = {"CONFIG_FILE": str(data / "absent.toml"), "DATA_DIR": str(data), "DATABASE_URL": database,
           "REDIS_URL": given_redis, "MQTT_URL": os.environ.get("MQTT_URL", ""),
           "MQTT_EMBEDDED_BROKER": os.environ.get("MQTT_EMBEDDED_BROKER", "auto")}
    try:
        started = open_servers(load(env))
    except BaseException:
        if database:
            drop_own_database(given_database, database)
        raise
    yield started
    started.stop()
    if database:
        drop_own_database(given_database, database)


@pytest.fixture
def redis_url(servers: Servers) -> str:
    """A clean Redis database for one test (the session's Redis: embedded, or given empty)."""
    client = redis.Redis.from_url(servers.redis_url)
    client.flushdb()
    client.close()
    return servers.redis_url


def empty_tables(url: str) -> None:
    """Empty every table of the database at url but schema_migrations and restart its sequences.

    DELETE with the foreign keys' and other triggers off (session_replication_role replica, for
    this transaction only) takes about 2 ms on the tests' small tables, where TRUNCATE, which
    makes every table a new file, took about 160 ms, before every test that uses the database. A
    role that may not set session_replication_role (a given server's plain user) gets TRUNCATE."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
        sequences = [row[0] for row in conn.execute(
            "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences WHERE schemaname = 'public'")]
        if not tables:
            return
        try:
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute("; ".join([f"DELETE FROM {table}" for table in tables]
                                       + [f"ALTER SEQUENCE {seq} RESTART" for seq in sequences]))
        except psycopg.errors.InsufficientPrivilege:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture
def database_url(servers: Servers) -> str:
    """The tests' own database (embedded, or created on the given server) with its migrations
    applied and every table emptied for one test (TRUNCATE of all tables but schema_migrations;
    sequences restart)."""
    empty_tables(servers.database_url)
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


class Clock:
    """A settable clock handed to the managers (and simulators) a test drives: ``clock()`` is
    ``clock.now``, which the test sets or moves on."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock on by `seconds`; the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


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


# ---- the API client: one login helper ----------------------------------------------------------

class ApiClient:
    """The base of the tests' clients of a web app on loopback: ``login(user)`` signs a user in
    (POST /api/login with the tests' password), ``token(user)`` does it once and keeps the token."""

    def __init__(self, base: str, password: str = PASSWORD) -> None:
        self.base, self.password = base, password
        self.http = tornado.httpclient.AsyncHTTPClient()
        self.tokens: dict[str, str] = {}

    async def login(self, user: str) -> str:
        """A new bearer token of `user` (a refused login fails the test)."""
        response = await self.http.fetch(self.base + "/api/login", method="POST", raise_error=False,
                                         body=json.dumps({"username": user, "password": self.password}))
        assert response.code == 200, response.body
        return orjson.loads(response.body)["token"]

    async def token(self, user: str) -> str:
        """The bearer token of `user`, logged in on first use."""
        if user not in self.tokens:
            self.tokens[user] = await self.login(user)
        return self.tokens[user]

    async def auth(self, user: str | None) -> dict[str, str]:
        """The Authorization header of `user` (none for None)."""
        return {"Authorization": f"Bearer {await self.token(user)}"} if user else {}


class Web(ApiClient):
    """The in-process web service on loopback and a raw client for it (``call`` gives the response)."""

    def __init__(self, base: str, store) -> None:
        super().__init__(base, PASSWORD)
        self.store = store

    async def call(self, method: str, path: str, *, token: str | None = None, body=None, headers=None, **kw):
        """The HTTP response (errors too) to a request with an optional bearer token and JSON body."""
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        request = tornado.httpclient.HTTPRequest(self.base + path, method=method, headers=hdrs, body=data,
                                                 follow_redirects=False, **kw)
        return await self.http.fetch(request, raise_error=False)

    async def up(self) -> bool:
        """Whether the service answers /healthz (ok or degraded)."""
        try:
            return (await self.call("GET", "/healthz")).code in (200, 503)
        except OSError:
            return False


@pytest.fixture
async def web(tmp_path, redis_url, database_url, mqtt_url):
    """The app: the web service in process on loopback (`web.app.serve`, demo accounts with
    `PASSWORD`) on the session's real servers, and its client."""
    from servers.embedded import free_port
    from store.live import Store
    from web import app as webapp

    port = free_port()
    settings = test_settings(tmp_path, HTTP_PORT=port, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD,
                             WS_BATCH_MS=100.0)
    stop = asyncio.Event()
    task = asyncio.create_task(webapp.serve(settings, redis_url, mqtt_url, demo=True, stop=stop))
    client = Web(f"http://127.0.0.1:{port}", Store.from_url(redis_url, database_url))
    await wait_for(client.up, timeout=20)
    yield client
    stop.set()
    await task
    await client.store.close()


# the in-process apps on the river city of the dispatch tests (`tests.river`)

@pytest.fixture
async def dispatch_api(tmp_path, redis_url, database_url):
    """The dispatch tests' app: the river city's crews placed, C04 off shift, the change watcher."""
    from tests.river import dispatch_app

    async with dispatch_app(tmp_path, redis_url, database_url) as app:
        yield app


@pytest.fixture
async def admin_api(tmp_path, redis_url, database_url):
    """The fleet administration tests' app on the river city, /api/admin replies checked."""
    from tests.river import admin_app

    async with admin_app(tmp_path, redis_url, database_url) as app:
        yield app


@pytest.fixture
async def unit_api(tmp_path, redis_url, database_url):
    """The unit desk tests' app: the units PWR00 → PWR01, PWR02 and WAT00 → WAT01, a liaison each."""
    from tests.river import unit_app

    async with unit_app(tmp_path, redis_url, database_url) as app:
        yield app


@pytest.fixture
async def police_env(tmp_path, redis_url, database_url):
    """The 110 linkage's app, link and 110 simulator on one settable clock (`tests.police`)."""
    from tests.police import police_app

    async with police_app(tmp_path, redis_url, database_url) as env:
        yield env


@pytest.fixture
async def reports_app(tmp_path, redis_url, database_url, city):
    """The reports tests' app: tickets and a KpiService on the two-district city (`tests.reporting`)."""
    from tests.reporting import kpi_app

    async with kpi_app(tmp_path, redis_url, database_url, city) as app:
        yield app


# ---- the demo as real processes -----------------------------------------------------------------

# The quiet demo: no simulated callers, crew bots, callback desk, unit bots, sensors or scenario,
# so nothing happens but what a test does. Browser files that each make their own tickets, users
# and places share one per worker (`quiet_demo`).
QUIET_DEMO = {"SIM_CREWS": "0", "SIM_CALLERS": "0", "SIM_CALLBACKS": "0", "SIM_SENSORS": "0", "SIM_SCENARIO": ""}


@pytest.fixture(scope="session")
def quiet_demo(tmp_path_factory, demo_city_profile):
    """One quiet demo (3 vehicles, `QUIET_DEMO`) per test worker, started as real processes on the
    worker's demo city; its accounts' password is `tests.procs.PASSWORD`."""
    from tests.procs import start_demo

    tmp = tmp_path_factory.mktemp("quiet-demo")
    running = start_demo(tmp / "var", tmp / "demo.log", vehicles=3, city=demo_city_profile, **QUIET_DEMO)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def demo(quiet_demo):
    """The demo a browser test drives: the worker's quiet demo, unless its module starts its own
    (a module's ``demo`` fixture overrides this one)."""
    return quiet_demo


# ---- the browser: Debian's chromium through Playwright ------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_PATH = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"  # screenshots
BROWSER_MARKS = [pytest.mark.browser,
                 pytest.mark.skipif(CHROMIUM_PATH is None,
                                    reason=f"Debian chromium not installed at {CHROMIUM} (apt-get install chromium)")]
PHONE_SCREEN = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, for one test module (screenshots go to `ARTIFACTS`)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def network(demo):
    """The phone's network: a relay to the module's demo that the test cuts while offline (`tests.netcut`)."""
    from tests.netcut import relay_to

    relay = relay_to(demo.base)
    yield relay
    relay.close()


class ConsoleWatch:
    """Collects console errors and uncaught page errors, and (in ``failed``) HTTP responses >= 400."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.failed: list[str] = []
        page.on("response", lambda r: self.failed.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400 else None)
        page.on("console", lambda msg: self.errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))


def login_page(page, base: str, user: str, path: str = "/console", password: str | None = None) -> None:
    """Open `path` in a new page, sign in on the login form it sends us to, and wait for `path`
    (its query may follow); the password is the demo's unless given."""
    from tests.procs import PASSWORD

    page.goto(base + path)
    assert "/login" in page.url
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password or PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + path + "**")
