"""Crash safety under a ticket-creation load: kill -9 of PostgreSQL, of Redis and of the web process.

A real `python -m center web` serves the API over embedded PostgreSQL, Redis (AOF, fsync always)
and a broker that this process starts (`servers.embedded.Servers`, the web finds them through
DATA_DIR's run file). Client threads create tickets through POST /api/tickets as fast as they are
answered, and keep each acknowledged one (HTTP 201: number and version). For each victim in turn
the load runs, the victim is killed with SIGKILL (PostgreSQL with its backends, as a power cut
would), left dead for a while (`--down-s`, 12 s: longer than the web waits for a connection, so
requests fail meanwhile), brought back (a server: `Servers.revive`, as the supervisor does; the
web: started again), and the load goes on until tickets are acknowledged again. Then every acknowledged ticket is looked for in PostgreSQL with its complete timeline (its
audit events: as many as its version, the first a ``create``; and no ticket at all is stored with
a partial timeline), and the change of each one must have
reached Redis (the change of its stored version in ``tkt:changes``, the outbox empty: the writer
or the change relay published it).

Prints `crash_<victim>_acknowledged: N tickets` and `crash_<victim>_found: N tickets` per victim
(`found` counts tickets present with a complete timeline). `python -m bench.crash [--victims
postgres,redis,web] [--before N] [--after N]`. `tests/test_crash_safety.py` runs the same rig.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
import redis

from bench.common import emit, progress

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "crash-pass-1234"
VICTIMS = ("postgres", "redis", "web")
SERVER_NAMES = {"postgres": "postgres", "redis": "redis-server"}
CHANGES_STREAM = "tkt:changes"  # store.ticket_publish.CHANGES_STREAM (read here to check delivery)


@dataclass
class Outcome:
    """What one kill left: tickets acknowledged, found complete, and what went wrong."""

    victim: str
    acknowledged: dict[str, int] = field(default_factory=dict)  # number -> version answered
    refused: collections.Counter = field(default_factory=collections.Counter)
    found: int = 0
    missing: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)
    half_saved: list[str] = field(default_factory=list)  # any ticket stored without its whole timeline
    outbox_left: int = 0


class Load(threading.Thread):
    """Creates tickets through the API back to back; keeps those answered 201."""

    def __init__(self, rig: "Rig", outcome: Outcome, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.rig, self.outcome = rig, outcome
        self.stop = threading.Event()
        self.token: str | None = None

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            body = {"channel": "phone", "category": "water", "type": "repair", "urgency": "normal",
                    "description": f"崩溃测试 {self.name} {i}", "caller_phone": "13907775678",
                    "lon": 119.755, "lat": 36.381, "link": False}
            try:
                if self.token is None:
                    self.token = self.rig.login()
                code, reply = self.rig.request("POST", "/api/tickets", body, self.token)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.outcome.refused[type(exc).__name__] += 1
                time.sleep(0.1)
                continue
            if code == 201:
                ticket = reply["ticket"]
                self.outcome.acknowledged[ticket["number"]] = int(ticket["version"])
            else:
                self.outcome.refused[code] += 1
                if code == 401:
                    self.token = None
                time.sleep(0.1)


class Rig:
    """Embedded servers owned here and a `python -m center web` over them, in one DATA_DIR."""

    def __init__(self, data_dir: Path) -> None:
        from servers.embedded import free_port
        from store.startup import open_servers
        from config.settings import load

        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {"CONFIG_FILE": str(data_dir / "absent.toml"), "DATA_DIR": str(data_dir), "DATABASE_URL": "",
                    "REDIS_URL": "", "MQTT_URL": "", "REDIS_APPENDFSYNC": "always"}
        self.servers = open_servers(load(self.env))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "web.log"
        self.web: subprocess.Popen | None = None

    # the web process ---------------------------------------------------------------------------
    def spawn(self, service: str) -> subprocess.Popen:
        """Start `python -m center <service>` over the servers of DATA_DIR's run file."""
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("DATABASE_URL", "REDIS_URL", "MQTT_URL", "CITY_PROFILE")}
        environ.update({**self.env, "HTTP_PORT": str(self.port), "ADMIN_PASSWORD": PASSWORD,
                        "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING"})
        for key in ("DATABASE_URL", "REDIS_URL", "MQTT_URL"):
            environ.pop(key)  # the service takes the servers of DATA_DIR's run file
        with open(self.log_path, "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "center", service], cwd=ROOT, env=environ,
                                    stdout=log, stderr=subprocess.STDOUT)

    def start_web(self, timeout: float = 120.0) -> None:
        """Start `python -m center web` and wait until a login succeeds."""
        self.web = self.spawn("web")
        deadline = time.monotonic() + timeout
        while True:
            if self.web.poll() is not None:
                raise RuntimeError(f"web exited with {self.web.returncode}:\n{self.log()[-3000:]}")
            try:
                self.login()
                return
            except (urllib.error.URLError, OSError, ValueError, RuntimeError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"web not answering within {timeout:.0f} s:\n{self.log()[-3000:]}") from None
                time.sleep(0.3)

    def stop_web(self) -> None:
        """SIGTERM the web and wait for it (SIGKILL after 15 s)."""
        if self.web is not None and self.web.poll() is None:
            self.web.send_signal(signal.SIGTERM)
            try:
                self.web.wait(15)
            except subprocess.TimeoutExpired:
                self.web.kill()
                self.web.wait(10)

    def log(self) -> str:
        """What the web (and any service spawned) printed."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def request(self, method: str, path: str, body: object = None, token: str | None = None) -> tuple[int, dict]:
        """(status, JSON body) of one API request."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, method=method, data=data,
                                         headers={"Content-Type": "application/json"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                try:
                    return exc.code, json.loads(exc.read() or b"{}")
                except ValueError:
                    return exc.code, {}

    def login(self) -> str:
        """A bearer token of the admin account (RuntimeError when refused)."""
        code, reply = self.request("POST", "/api/login", {"username": "admin", "password": PASSWORD})
        if code != 200:
            raise RuntimeError(f"login refused: {code} {reply}")
        return reply["token"]

    # the victims -------------------------------------------------------------------------------
    def kill(self, victim: str, down_s: float = 1.0) -> None:
        """SIGKILL the victim, leave it dead `down_s`, and bring it back as the supervisor would."""
        if victim == "web":
            assert self.web is not None
            self.web.kill()
            self.web.wait(10)
            time.sleep(down_s)
            self.start_web()
            return
        server = next(p for p in self.servers.owned if p.name == SERVER_NAMES[victim])
        # the whole server at once, as a power cut would: PostgreSQL's backends too (killed alone,
        # the postmaster leaves them to finish their statement and notice its death)
        doomed = psutil.Process(server.process.pid).children(recursive=True)
        server.process.kill()
        for child in doomed:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        server.process.wait(10)
        time.sleep(down_s)  # the load meets the dead server for a while
        deadline = time.monotonic() + 60
        while SERVER_NAMES[victim] not in self.servers.revive():  # a start refused early is tried again
            if time.monotonic() > deadline:
                raise RuntimeError(f"{victim} could not be restarted")
            time.sleep(0.3)

    def close(self) -> None:
        """Stop the web and the servers."""
        self.stop_web()
        self.servers.stop()

    # the check ---------------------------------------------------------------------------------
    def check(self, outcome: Outcome, settle_s: float = 20.0) -> Outcome:
        """Look for every acknowledged ticket and its timeline in PostgreSQL, and for its change in
        Redis (the outbox given up to `settle_s` to empty: the relay's grace and poll)."""
        numbers = sorted(outcome.acknowledged)
        deadline = time.monotonic() + settle_s
        with psycopg.connect(self.servers.database_url) as conn:
            while True:
                outbox = conn.execute("SELECT count(*) FROM ticket_changes").fetchone()[0]
                if outbox == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            outcome.outbox_left = outbox
            tickets = dict(conn.execute("SELECT number, version FROM tickets WHERE number = ANY(%s)",
                                        (numbers,)).fetchall())
            outcome.half_saved = [number for (number,) in conn.execute(
                "SELECT t.number FROM tickets t LEFT JOIN ticket_events e ON e.number = t.number"
                " GROUP BY t.number, t.version HAVING count(e.id) <> t.version")]
            events: dict[str, list[str]] = collections.defaultdict(list)
            for number, action in conn.execute("SELECT number, action FROM ticket_events WHERE number = ANY(%s)"
                                               " ORDER BY number, id", (numbers,)):
                events[number].append(action)
        client = redis.Redis.from_url(self.servers.redis_url, decode_responses=True)
        try:
            delivered = {(fields.get("number"), int(fields.get("version", 0)))
                         for _, fields in client.xrange(CHANGES_STREAM)}
        finally:
            client.close()
        for number in numbers:
            version = tickets.get(number)
            if version is None:
                outcome.missing.append(number)
                continue
            timeline = events.get(number, [])
            if timeline[:1] == ["create"] and len(timeline) == version >= outcome.acknowledged[number]:
                outcome.found += 1
            else:
                outcome.incomplete.append(number)
            if (number, version) not in delivered:  # the change that made its stored version
                outcome.undelivered.append(number)
        return outcome


def run_victim(rig: Rig, victim: str, *, before: int = 30, after: int = 30, clients: int = 2,
               down_s: float = 1.0, timeout: float = 90.0) -> Outcome:
    """One kill under load: `before` tickets acknowledged, the kill, `down_s` dead, the return,
    then `after` more; the outcome checked."""
    outcome = Outcome(victim)
    loads = [Load(rig, outcome, f"load-{victim}-{i}") for i in range(clients)]
    for load in loads:
        load.start()
    try:
        _wait(lambda: len(outcome.acknowledged) >= before, timeout, f"{before} tickets before killing {victim}")
        progress(f"crash: killing {victim} after {len(outcome.acknowledged)} acknowledged tickets")
        rig.kill(victim, down_s)
        back = len(outcome.acknowledged)
        _wait(lambda: len(outcome.acknowledged) >= back + after, timeout, f"{after} tickets after {victim} came back")
    finally:
        for load in loads:
            load.stop.set()
        for load in loads:
            load.join(30)
    return rig.check(outcome)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def main() -> int:
    """Run each victim in turn on one rig and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", default=",".join(VICTIMS))
    parser.add_argument("--before", type=int, default=200)
    parser.add_argument("--after", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--down-s", type=float, default=12.0,
                        help="seconds a killed server stays dead (longer than the web's waits: requests fail meanwhile)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        rig = Rig(Path(tmp) / "var")
        failed = False
        try:
            progress("crash: starting the web (the demo city is generated on first use)")
            rig.start_web()
            for victim in args.victims.split(","):
                outcome = run_victim(rig, victim, before=args.before, after=args.after, clients=args.clients,
                                     down_s=1.0 if victim == "web" else args.down_s)
                emit(f"crash_{victim}_acknowledged", len(outcome.acknowledged), "tickets")
                emit(f"crash_{victim}_found", outcome.found, "tickets")
                if outcome.found != len(outcome.acknowledged) or outcome.undelivered or outcome.half_saved:
                    failed = True
                    progress(f"crash {victim}: missing {outcome.missing[:5]}, incomplete {outcome.incomplete[:5]}, "
                             f"changes not in Redis {outcome.undelivered[:5]}, outbox rows left {outcome.outbox_left}, "
                             f"half saved {outcome.half_saved[:5]}")
                progress(f"crash {victim}: refused {dict(outcome.refused)}")
        finally:
            rig.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
