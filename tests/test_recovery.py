"""Servers that come back by themselves (issue #21), on real servers and real processes.

Unit level: a Redis that reads a large AOF answers LOADING for a while; a client made by
`store.redis_client` (every client of the center) waits that out, `start_redis` returns only
once the data is loaded, and `Servers.revive` restarts a killed embedded Redis or PostgreSQL on
the same port with the same data. Process level: in one running demo, PostgreSQL, Redis, the broker and each service are
killed with SIGKILL under a light load of ticket creation; /healthz says 503 and names what is
down meanwhile, and 200 again without anyone's help, and every acknowledged ticket is there with
its whole timeline.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psutil
import psycopg
import pytest
import redis
import redis.exceptions

from servers.embedded import Servers, start_redis
from store.startup import open_servers
from store.live import Store
from tests.conftest import test_settings
from tests.procs import PASSWORD, ROOT, start_demo

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

KEYS = 20_000  # 1 kB values, stored uncompressed: ~20 MB of AOF to read
SLOW_LOAD = ("--key-load-delay", "100", "--rdbcompression", "no")  # 100 us a key: ~2 s of LOADING


def _fill_and_rewrite(url: str) -> None:
    """KEYS keys, then an AOF rewrite (its RDB preamble is what key-load-delay slows down)."""
    client = redis.Redis.from_url(url)
    try:
        client.execute_command("DEBUG", "POPULATE", str(KEYS), "k", "1000")
        client.bgrewriteaof()
        deadline = time.monotonic() + 30
        while client.info("persistence")["aof_rewrite_in_progress"] or \
                client.info("persistence")["aof_rewrite_scheduled"]:
            assert time.monotonic() < deadline, "AOF rewrite did not finish"
            time.sleep(0.1)
    finally:
        client.close()


def _sees_loading(url: str, timeout: float = 10.0) -> bool:
    """True once a client without retries is told LOADING (the state the other clients must wait out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plain = redis.Redis.from_url(url, socket_timeout=2)
        try:
            plain.ping()
            return False  # loaded already
        except redis.exceptions.BusyLoadingError:
            return True
        except redis.exceptions.ConnectionError:
            time.sleep(0.02)
        finally:
            plain.close()
    return False


@pytest.fixture
def loaded_redis(tmp_path):
    """A killed redis-server whose data directory holds an AOF that takes seconds to read."""
    data = tmp_path / "data"
    server = start_redis(data, options=SLOW_LOAD)
    _fill_and_rewrite(server.url)
    server.process.kill()
    server.process.wait(10)
    yield server, data
    server.stop()


async def test_a_client_started_while_redis_is_loading_waits_instead_of_crashing(loaded_redis):
    server, _ = loaded_redis
    server.process = subprocess.Popen(server.process.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert await asyncio.to_thread(_sees_loading, server.url)
    store = Store.from_url(server.url)  # how every service of the center connects
    try:
        assert await store.redis.get(f"k:{KEYS - 1}") is not None
        assert await store.redis.dbsize() == KEYS
    finally:
        await store.close()


def test_start_redis_returns_once_the_data_is_loaded(loaded_redis):
    _, data = loaded_redis
    again = start_redis(data, options=SLOW_LOAD)
    try:
        plain = redis.Redis.from_url(again.url)  # no retries: LOADING would raise
        assert plain.dbsize() == KEYS
        plain.close()
    finally:
        again.stop()


def test_servers_revive_a_killed_redis_on_the_same_port_with_its_data(tmp_path):
    settings = test_settings(tmp_path, REDIS_URL="", MQTT_URL="")
    servers = Servers.resolve(settings)
    try:
        assert servers.revive() == []  # all alive: nothing to do
        client = redis.Redis.from_url(servers.redis_url)
        client.set("kept", "1")
        client.close()
        redis_proc = next(p for p in servers.owned if p.name == "redis-server")
        old_pid = redis_proc.process.pid
        redis_proc.process.kill()
        redis_proc.process.wait(10)
        assert servers.revive() == ["redis-server"]
        assert redis_proc.process.pid != old_pid and redis_proc.process.poll() is None
        plain = redis.Redis.from_url(servers.redis_url)  # the same URL, answering at once
        assert plain.get("kept") == b"1"
        plain.close()
    finally:
        servers.stop()


def test_servers_revive_a_killed_postgres_on_the_same_port_with_its_data(tmp_path):
    settings = test_settings(tmp_path, DATABASE_URL="", REDIS_URL="", MQTT_URL="")
    servers = open_servers(settings)  # the migrations applied: day_sequences exists
    try:
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO day_sequences (kind, day, last) VALUES ('ticket', '2026-01-02', 7)")
        postgres = next(p for p in servers.owned if p.name == "postgres")
        old_pid = postgres.process.pid
        postgres.process.kill()  # SIGKILL: its backends are left to notice, shared memory to clean up
        postgres.process.wait(10)
        deadline = time.monotonic() + RECOVERY_S
        while servers.revive() != ["postgres"]:  # a start refused while old backends linger is tried again
            assert time.monotonic() < deadline, "the killed PostgreSQL was not restarted"
            time.sleep(0.2)
        assert postgres.process.pid != old_pid and postgres.process.poll() is None
        with psycopg.connect(servers.database_url) as conn:  # the same URL, its data after crash recovery
            assert conn.execute("SELECT last FROM day_sequences WHERE day = '2026-01-02'").fetchone() == (7,)
    finally:
        servers.stop()


# ---- process level: one running demo, every component killed in turn ---------------------------------

RECOVERY_S = 30.0  # the bound: healthy again this soon after a kill, without anyone's help


def _health(demo) -> tuple[int, dict]:
    """(status, body) of /healthz; (0, {}) while nothing answers."""
    try:
        with urllib.request.urlopen(demo.base + "/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return 0, {}


def _wait_health(demo, predicate, what: str, timeout: float = RECOVERY_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = _health(demo)
        if predicate(code, body):
            return body
        if time.monotonic() > deadline:
            demo.dump_stacks()
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last /healthz {code}: {body})\n"
                                 f"{demo.log()[-6000:]}")
        time.sleep(0.2)


def _login(demo) -> tuple[int, dict]:
    """(status, JSON body) of a login as the agent."""
    request = urllib.request.Request(demo.base + "/api/login", method="POST",
                                     data=json.dumps({"username": "agent", "password": PASSWORD}).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _healthy(code: int, body: dict) -> bool:
    return code == 200 and body.get("ok") is True


def _names_down(*names: str):
    return lambda code, body: code == 503 and set(names) <= set(body.get("down", ()))


def _latest_fix(demo, token: str) -> float:
    """The time of the newest vehicle fix in Redis (0 without any)."""
    vehicles = demo.get("/api/vehicles", token)["vehicles"]
    return max((v["fix"]["t"] for v in vehicles if v.get("fix")), default=0.0)


def _procs(demo, match) -> list[psutil.Process]:
    found = []
    for proc in demo.tree():
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE and match(proc.name(), proc.cmdline()):
                found.append(proc)
    return found


def _create(demo, token: str, description: str) -> tuple[int, dict]:
    """(status, JSON body) of one ticket creation through the API."""
    body = {"channel": "phone", "category": "water", "type": "repair", "urgency": "normal",
            "description": description, "caller_phone": "13907775678", "lon": 119.755, "lat": 36.381, "link": False}
    try:
        return 200, demo.post("/api/tickets", token, body)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _server(demo, kind: str) -> psutil.Process:
    if kind == "postgres":
        match = lambda name, cmd: name == "postgres" and "-D" in cmd  # noqa: E731 (the postmaster's command line)
    elif kind == "redis":
        match = lambda name, cmd: "redis-server" in name  # noqa: E731
    else:
        match = lambda name, cmd: name == "mosquitto" or "servers.broker" in cmd  # noqa: E731
    found = _procs(demo, match)
    pids = {proc.pid for proc in found}
    # the server itself, not a child it has just forked (a new PostgreSQL backend carries the
    # postmaster's command line until it sets its own title)
    (proc,) = [proc for proc in found if proc.ppid() not in pids]
    return proc


def _service(demo, service: str) -> psutil.Process:
    (proc,) = _procs(demo, lambda name, cmd: cmd[-2:] == ["center", service])
    return proc


@contextlib.contextmanager
def _supervisor_paused(demo):
    """SIGSTOP the supervisor: what it would restart stays down, so /healthz can be seen naming it."""
    os.kill(demo.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(demo.process.pid, signal.SIGCONT)


class TicketLoad(threading.Thread):
    """Creates a ticket through the API every `interval_s`; keeps the numbers acknowledged (2xx)."""

    def __init__(self, demo, token: str, interval_s: float = 0.3):
        super().__init__(name="ticket-load", daemon=True)
        self.demo, self.token, self.interval_s = demo, token, interval_s
        self.acknowledged: list[str] = []
        self.refused: collections.Counter = collections.Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.wait(self.interval_s):
            i += 1
            body = {"channel": "phone", "category": "water", "type": "repair", "urgency": "normal",
                    "description": f"恢复测试 {i}", "caller_phone": "13907775678",
                    "lon": 119.755, "lat": 36.381, "link": False}
            try:
                self.acknowledged.append(self.demo.post("/api/tickets", self.token, body)["ticket"]["number"])
            except urllib.error.HTTPError as exc:
                self.refused[exc.code] += 1
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.refused[type(exc).__name__] += 1


def test_killed_servers_and_services_come_back_by_themselves_and_no_ticket_is_lost(tmp_path):
    # every crew has a vehicle (an emergency finds a crew); no callers, crew bots, sensors or scenario
    demo = start_demo(tmp_path / "var", tmp_path / "demo.log", vehicles=21, SIM_CALLERS="0", SIM_CREWS="0",
                      SIM_CALLBACKS="0", SIM_SCENARIO="", SIM_SENSORS="0")
    load = None
    try:
        load = TicketLoad(demo, demo.login("agent"))
        load.start()
        first_created = len(load.acknowledged)

        dispatcher = demo.login("dispatcher")
        for kind in ("postgres", "redis", "broker"):
            victim = _server(demo, kind)
            killed_at = time.time()
            with _supervisor_paused(demo):
                victim.send_signal(signal.SIGKILL)
                down = _wait_health(demo, _names_down(kind), f"{kind} named down")
                assert down["ok"] is False
                if kind == "redis":  # the API says so too, rather than failing with a 500
                    code, reply = _login(demo)
                    assert (code, reply["error"]["code"]) == (503, "redis_unavailable"), reply
                if kind == "postgres":  # a request that needs the record: a 503, never a 500
                    code, reply = _create(demo, load.token, "PostgreSQL 停止时")
                    assert (code, reply["error"]["code"]) == (503, "database_unavailable"), reply
            _wait_health(demo, _healthy, f"healthy again after {kind} was killed")
            assert _server(demo, kind).pid != victim.pid
            assert "stopped unexpectedly (killed by signal SIGKILL); restarting it" in demo.log()
            deadline = time.monotonic() + RECOVERY_S  # the vehicles' fixes flow again (devices reconnected)
            while _latest_fix(demo, dispatcher) <= killed_at:
                assert time.monotonic() < deadline, f"no vehicle fresh after {kind} came back:\n{demo.log()[-4000:]}"
                time.sleep(0.5)

        victims = [_service(demo, "ingest"), _service(demo, "dispatch")]
        with _supervisor_paused(demo):  # their heartbeats run out (10 s): /healthz names both
            for victim in victims:
                victim.send_signal(signal.SIGKILL)
            _wait_health(demo, _names_down("ingest", "dispatch"), "ingest and dispatch named down")
        _wait_health(demo, _healthy, "healthy again after ingest and dispatch were killed")

        for service in ("web", "simulate"):
            victim = _service(demo, service)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            _wait_health(demo, lambda code, body: _healthy(code, body) and body["status"] == "ok"
                         and body["services"][service].get("pid") not in (None, victim.pid),
                         f"healthy again, a new {service} reporting, after {service} was killed")
        # the dispatch service, restarted after Redis was, still follows the ticket changes (a gas
        # ticket: the load's water calls at this point are one incident, whose other calls get no crew)
        emergency = demo.post("/api/tickets", demo.login("agent"), {
            "channel": "phone", "category": "gas", "type": "repair", "urgency": "emergency",
            "description": "恢复后的紧急抢修", "caller_phone": "13907775678", "lon": 119.755, "lat": 36.381,
            "link": False})["ticket"]["number"]
        deadline = time.monotonic() + RECOVERY_S
        while "dispatch" not in [e["action"] for e in demo.get(f"/api/tickets/{emergency}/timeline",
                                                                 dispatcher)["events"]]:
            assert time.monotonic() < deadline, f"{emergency} not dispatched:\n{demo.log()[-4000:]}"
            time.sleep(0.5)
        load.stop.set()
        load.join(15)
        assert 500 not in load.refused, load.refused  # refused while Redis was away: 503, never a 500
        assert len(load.acknowledged) > first_created + 10
        for number in load.acknowledged:  # every acknowledged ticket is there, with its timeline
            timeline = demo.get(f"/api/tickets/{number}/timeline", dispatcher)
            assert timeline["events"] and timeline["events"][0]["action"] == "create", timeline
    finally:
        if load is not None:
            load.stop.set()
            load.join(15)
        demo.stop()


def test_the_servers_command_restarts_its_killed_redis_and_postgres(tmp_path):
    """`python -m center servers` (for services started one by one) revives its servers too."""
    env = {**os.environ, "DATA_DIR": str(tmp_path / "var"), "CONFIG_FILE": str(tmp_path / "absent.toml"),
           "PYTHONUNBUFFERED": "1"}
    for key in ("DATABASE_URL", "REDIS_URL", "MQTT_URL", "MQTT_DEVICE_URL"):
        env.pop(key, None)
    with open(tmp_path / "servers.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "center", "servers"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=log)
    try:
        urls = dict(proc.stdout.readline().decode().strip().split("=", 1) for _ in range(4))  # NAME=url lines
        redis_url = urls["REDIS_URL"]
        client = redis.Redis.from_url(redis_url)
        client.set("kept", "1")
        client.close()
        (victim,) = [p for p in psutil.Process(proc.pid).children() if "redis-server" in p.name()]
        victim.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + RECOVERY_S
        while True:
            plain = redis.Redis.from_url(redis_url, socket_timeout=2)
            try:
                assert plain.get("kept") == b"1"
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "servers.log").read_text()
                time.sleep(0.2)
            finally:
                plain.close()
        with psycopg.connect(urls["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("INSERT INTO day_sequences (kind, day, last) VALUES ('ticket', '2026-01-03', 3)")
        (victim,) = [p for p in psutil.Process(proc.pid).children() if p.name() == "postgres"]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        deadline = time.monotonic() + RECOVERY_S
        while True:
            try:
                with psycopg.connect(urls["DATABASE_URL"], connect_timeout=2) as conn:
                    assert conn.execute("SELECT last FROM day_sequences WHERE day = '2026-01-03'").fetchone() == (3,)
                break
            except psycopg.OperationalError:  # refused, or still in crash recovery
                assert time.monotonic() < deadline, (tmp_path / "servers.log").read_text()
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        proc.stdout.close()
    assert proc.returncode == 0
