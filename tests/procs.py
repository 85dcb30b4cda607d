"""Start the system as a user would: `python -m center demo` as a real process tree."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from servers.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "demo-test-pass"


@dataclass
class Demo:
    """A running demo: its process, address, log and data directory."""

    process: subprocess.Popen
    base: str
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        """Everything the demo printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, text: str, timeout: float = 30.0) -> str:
        """The log once it holds ``text`` (the supervisor prints some lines after /healthz is ok)."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            assert time.monotonic() < deadline, f"{text!r} not in the log within {timeout} s:\n{log[-3000:]}"
            time.sleep(0.2)
        return log

    def tree(self) -> list[psutil.Process]:
        """The demo process and all its descendants."""
        parent = psutil.Process(self.process.pid)
        return [parent] + parent.children(recursive=True)

    def login(self, name: str = "dispatcher") -> str:
        """A bearer token for a demo account."""
        request = urllib.request.Request(self.base + "/api/login", method="POST",
                                         data=json.dumps({"username": name, "password": PASSWORD}).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["token"]

    def get(self, path: str, token: str | None = None) -> dict:
        """GET a JSON API path."""
        request = urllib.request.Request(self.base + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def health(self) -> dict:
        """The /healthz report, whether it answers 200 (every service up) or 503 (one is down: a
        service restarting, say), both with the same JSON body."""
        try:
            return self.get("/healthz")
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            return json.loads(exc.read())

    def post(self, path: str, token: str, body: dict) -> dict:
        """POST JSON to an API path with a bearer token; the JSON reply."""
        request = urllib.request.Request(self.base + path, method="POST", data=json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def group(self) -> list[psutil.Process]:
        """The live processes of the demo's process group: the supervisor and everything it
        started (the demo runs in a session of its own, and its children stay in its group),
        also those whose parent is gone already."""
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == self.process.pid and alive(proc):
                    found.append(proc)
        return found

    def kill(self) -> list[int]:
        """SIGKILL the whole demo: its process group and every descendant (should one have left
        the group), then wait until each is gone; the pids that were still running."""
        try:
            procs = self.tree()
        except psutil.NoSuchProcess:
            procs = []
        procs += [proc for proc in self.group() if proc not in procs]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.process.wait(10)  # reaped: no running subprocess left behind for a later test
        _, waited = psutil.wait_procs(procs, timeout=10)
        left = [proc.pid for proc in waited if alive(proc)]  # a zombie is gone, only not reaped yet
        assert not left, f"still running after SIGKILL: {left}"
        return [proc.pid for proc in procs]

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM and wait; returns the seconds it took. Over the timeout, or when a process of
        the demo outlives the supervisor by 5 s, kills the whole demo (`kill`) and fails."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.dump_stacks()
                self.kill()
                raise AssertionError(f"demo did not stop within {timeout} s:\n{self.log()[-6000:]}") from None
        took = time.monotonic() - started
        deadline = time.monotonic() + 5.0
        while (left := self.group()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            self.kill()
            raise AssertionError(f"left running after the demo stopped (now killed): {[p.pid for p in left]}")
        return took

    def dump_stacks(self) -> None:
        """Ask every ``python -m center`` process of the demo to print its threads' stacks into
        the log (SIGUSR1). Only those: the embedded amqtt broker is a Python process too
        (``python -m servers.broker``), and SIGUSR1's default action would end it."""
        try:
            tree = self.tree()
        except psutil.NoSuchProcess:
            return
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                command = proc.cmdline()
                if "python" in proc.name().lower() and command[1:3] == ["-m", "center"]:
                    proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)


class DemoClient:
    """A logged-in JSON client of the demo, as one account."""

    def __init__(self, base: str, user: str):
        self.base, self.user, self.token = base, user, None
        status, body = self.call("POST", "/api/login", {"username": user, "password": PASSWORD})
        assert status == 200, (user, status, body)
        self.token = body["token"]

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """(status, JSON reply) of one request."""
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def get(self, path: str) -> dict:
        """GET that must answer 200."""
        status, body = self.call("GET", path)
        assert status == 200, f"{self.user} GET {path}: {status} {body}"
        return body

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        """(status, JSON reply) of a POST."""
        return self.call("POST", path, body)


WALK = (("dispatcher", "dispatch", {"crew_id": "C01"}, "dispatched"), ("crew", "accept", {}, "accepted"),
        ("crew", "depart", {}, "en_route"), ("crew", "arrive", {}, "on_site"),
        ("crew", "resolve", {"resolution": "已更换保险"}, "resolved"))
STATE_ORDER = ("new", "reviewed", "dispatched", "accepted", "en_route", "on_site", "resolved", "callback", "closed")


def walk_a_ticket(base: str) -> str:
    """Through the demo's API: a consultation answered on the call, and a repair dispatched,
    accepted, resolved by crew C01 and closed by a satisfied callback. A step the demo's own bots
    (crew bot, GPS arrival, callback desk) took first is not repeated. Returns the repair's number."""
    users = {name: DemoClient(base, name) for name in ("agent", "dispatcher", "crew")}
    agent = users["agent"]
    status, _ = agent.post("/api/tickets", {"channel": "phone", "category": "water", "type": "consultation",
                                            "caller_phone": "13900009999", "description": "水费怎么交",
                                            "answer": "可在营业厅或网上缴纳", "link": False})
    assert status == 201
    status, made = agent.post("/api/tickets", {"channel": "phone", "category": "power", "type": "repair",
                                               "caller_phone": "13900008888", "description": "家里停电了",
                                               "lon": 119.75, "lat": 36.38, "link": False})
    assert status == 201
    number = made["ticket"]["number"]
    for user, action, args, reached in WALK:
        for _ in range(5):
            ticket = agent.get(f"/api/tickets/{number}")
            if STATE_ORDER.index(ticket["state"]) >= STATE_ORDER.index(reached):
                break
            status, body = users[user].post(f"/api/tickets/{number}/actions/{action}",
                                            {"expected_version": ticket["version"], **args})
            if status == 200:
                break
            assert status == 409, (action, status, body)  # a bot moved it meanwhile: read again
    for _ in range(5):
        ticket = agent.get(f"/api/tickets/{number}")
        if ticket["state"] not in ("resolved", "callback"):
            break
        status, body = agent.post(f"/api/tickets/{number}/callback",
                                  {"expected_version": ticket["version"], "satisfaction": "satisfied"})
        if status == 200:
            break
        assert status == 409, body
    return number


def start_demo(data_dir: Path, log_path: Path, *, vehicles: int = 5, ready_timeout: float = 90.0,
               city: Path | None = None, **env: str) -> Demo:
    """Start the demo and wait until /healthz reports every service ok.

    ``city`` is the profile of a demo city already generated with the demo's seed (conftest's
    ``demo_city_profile``): it is copied into DATA_DIR, where the demo finds it, instead of being
    generated again (about 10 s of every start).

    ``ready_timeout`` stays under pytest's per-test timeout (pytest.ini), so that a demo that
    does not come up fails here, with its stacks and log, and is stopped, rather than being cut
    off by pytest-timeout and left running."""
    if city is not None:
        from config.city import DEMO_SUBDIR

        shutil.copytree(city.parent, data_dir / DEMO_SUBDIR)
    port = free_port()
    environ = dict(os.environ)
    for key in ("DATABASE_URL", "REDIS_URL", "MQTT_URL", "CITY_PROFILE"):
        environ.pop(key, None)
    environ.update({"DATA_DIR": str(data_dir), "HTTP_PORT": str(port), "ADMIN_PASSWORD": PASSWORD,
                    "DEMO_PASSWORD": PASSWORD, "SIM_VEHICLES": str(vehicles), "WS_BATCH_MS": "200",
                    "CONFIG_FILE": str(data_dir / "absent.toml"), "PYTHONUNBUFFERED": "1",
                    "SIM_DISPATCHER": "0",  # tests dispatch themselves unless they ask for the bot
                    "SIM_UNITS": "0",  # and act as the center's desk and the units unless they ask for the bots
                    "DEMO_BASEMAP": "0",  # no base map to draw (seconds of CPU) unless the test asks for one
                    "DEMO_JT808_VEHICLES": "0",  # every vehicle on NMEA, no gateway, unless the test asks
                    **env})
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([sys.executable, "-m", "center", "demo"], cwd=ROOT, env=environ,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own process group: `Demo.kill` ends it whole
    demo = Demo(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"demo exited with {process.returncode}:\n{demo.log()[-3000:]}")
        try:
            health = demo.get("/healthz")
            if health["status"] == "ok":
                return demo
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    demo.dump_stacks()
    last = _last_health(demo)
    try:
        demo.stop()
        stopped = "it stopped on SIGTERM"
    except AssertionError as exc:
        stopped = str(exc).splitlines()[0]
    raise AssertionError(f"demo not healthy within {ready_timeout} s (last /healthz: {last}; {stopped}):\n"
                         f"{demo.log()[-12000:]}")


def alive(proc: psutil.Process) -> bool:
    """Whether a process still runs (exists and is no zombie)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _last_health(demo: Demo) -> str:
    try:
        return json.dumps(demo.get("/healthz"), ensure_ascii=False)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"no answer ({exc})"
