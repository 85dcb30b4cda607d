"""The demo supervisor: embedded servers, then web, ingest and simulators as supervised children.

A crashed child is restarted with exponential backoff (the reason is logged); a dead embedded
PostgreSQL, Redis or broker is restarted on its port with its data within REVIVE_INTERVAL_S (`keep_servers`,
which the `servers` command and standalone services run too). SIGINT or SIGTERM
stops every child (SIGTERM, then SIGKILL after a grace period), then the embedded servers, and
removes the pid file: all within 10 s, leaving no process and no port behind.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from servers.embedded import REVIVE_INTERVAL_S, Servers, die_with_parent
from store.startup import open_servers
from config.settings import Settings
from store.streams import pause as stop_or_timeout

log = logging.getLogger("supervisor")

CHILD_GRACE_S = 5.0
STABLE_AFTER_S = 60.0  # a child that ran this long restarts with the shortest backoff again


async def keep_servers(servers: Servers, stop: asyncio.Event, interval_s: float = REVIVE_INTERVAL_S) -> None:
    """Until ``stop``, restart every ``interval_s`` whichever embedded server of ``servers`` has
    died (Servers.revive: same port, same data, same arguments). Nothing to do for external ones."""
    while servers.owned and not stop.is_set():
        await asyncio.to_thread(servers.revive)
        await stop_or_timeout(stop, interval_s)


def _answers(url: str) -> None:
    """Return when the web answers ``url`` at all: a 503 (a service it needs is still starting)
    is an answer too. Raises OSError while nothing answers."""
    try:
        with urllib.request.urlopen(url, None, 2):
            pass
    except urllib.error.HTTPError as exc:
        exc.close()


class AlreadyRunning(RuntimeError):
    """Another supervisor owns this DATA_DIR."""


@dataclass
class Child:
    """One supervised service process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float | None = None
    history: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Start (or restart) the process."""
        self.process = subprocess.Popen(self.argv, env=self.env, preexec_fn=die_with_parent)
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("started %s (pid %d)", self.name, self.process.pid)


class PidFile:
    """DATA_DIR/run/<name>.pid: refuses a second live owner, replaces a stale file."""

    def __init__(self, path: Path):
        self.path = path

    def acquire(self) -> None:
        """Write our pid, or raise AlreadyRunning when a live process holds the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            try:
                pid = int(self.path.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError):
                log.info("removing stale pid file %s", self.path)
                self.path.unlink(missing_ok=True)
            except PermissionError:
                raise AlreadyRunning(f"{self.path} is held by pid {pid}") from None
            else:
                if pid != os.getpid():
                    raise AlreadyRunning(f"already running as pid {pid} ({self.path})")
        self.path.write_text(str(os.getpid()))

    def release(self) -> None:
        """Remove the pid file if it is ours."""
        try:
            if int(self.path.read_text().strip() or 0) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


class Supervisor:
    """Runs the demo's services as a group."""

    def __init__(self, settings: Settings, services: list[str]):
        if settings.CLOCK_ANCHOR == "":  # one anchor for every child: they agree on the clock (runtime.clock)
            settings = settings.with_values(CLOCK_ANCHOR=f"{time.time():.3f}")
        self.settings = settings
        self.service_names = services
        self.children: list[Child] = []
        self.servers: Servers | None = None
        self.pidfile = PidFile(settings.data_dir / "run" / "demo.pid")
        self.stop_event = asyncio.Event()

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.as_environ())
        env["DATABASE_URL"] = self.servers.database_url
        env["REDIS_URL"] = self.servers.redis_url
        env["MQTT_URL"] = self.servers.mqtt_url
        env["MQTT_DEVICE_URL"] = self.servers.device_url
        env["DATA_DIR"] = str(self.settings.data_dir)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def run(self, on_ready=None, prepare=None) -> int:
        """Start everything, supervise until signalled, stop everything; returns the exit code.

        ``prepare(servers)`` (a coroutine function) runs once the servers answer, before the
        children start; ``on_ready(ok)`` once the web answers /healthz."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop_event.set)
        self.pidfile.acquire()
        keeper = None
        try:
            self.servers = await asyncio.to_thread(open_servers, self.settings)
            keeper = asyncio.create_task(keep_servers(self.servers, self.stop_event), name="keep-servers")
            if prepare is not None:
                await prepare(self.servers)
            env = self._child_env()
            for name in self.child_names():
                child = Child(name, [sys.executable, "-m", "center", name.split("#")[0]], {**env, **self._own_env(name)})
                child.start()
                self.children.append(child)
            ready = await self._wait_web_ready()
            if on_ready is not None:
                on_ready(ready)
            await self._supervise()
            return 0
        finally:
            if keeper is not None:  # no restart of a server while they are being stopped
                self.stop_event.set()
                await keeper
            await self._shutdown()

    def child_names(self) -> list[str]:
        """One child per service; WEB_PROCESSES web children (web, web#2, ...) share the port."""
        names = []
        for name in self.service_names:
            copies = self.settings.WEB_PROCESSES if name == "web" else 1
            names += [name] + [f"{name}#{i}" for i in range(2, copies + 1)]
        return names

    def _own_env(self, name: str) -> dict[str, str]:
        """What one child's environment adds: the ingest takes the vehicles' topics alone when
        ingest-sensors runs beside it (the sensors' topics are that one's)."""
        if name == "ingest" and "ingest-sensors" in self.service_names:
            return {"INGEST_TOPICS": "fleet"}
        return {}

    async def _wait_web_ready(self, timeout: float = 90.0) -> bool:
        if "web" not in self.service_names:
            return True
        url = f"http://{self.settings.HTTP_HOST}:{self.settings.HTTP_PORT}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop_event.is_set():
            try:
                await asyncio.to_thread(_answers, url)
                return True
            except Exception:
                await asyncio.sleep(0.3)
        return False

    async def _supervise(self) -> None:
        max_backoff = self.settings.RESTART_BACKOFF_MAX_S
        while not self.stop_event.is_set():
            now = time.monotonic()
            for child in self.children:
                proc = child.process
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restarts += 1
                        child.start()
                    continue
                if proc is None or proc.poll() is None:
                    continue
                code = proc.returncode
                why = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                if now - child.started_at >= STABLE_AFTER_S:
                    child.backoff = 1.0
                child.history.append(why)
                log.error("%s stopped unexpectedly (%s); restarting in %.0f s", child.name, why, child.backoff)
                child.restart_at = now + child.backoff
                child.backoff = min(child.backoff * 2, max_backoff)
            await stop_or_timeout(self.stop_event, 0.5)

    async def _shutdown(self) -> None:
        log.info("stopping %d services ...", len(self.children))
        for child in self.children:
            if child.process and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + CHILD_GRACE_S
        for child in self.children:
            if child.process is None:
                continue
            try:
                await asyncio.to_thread(child.process.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", child.name, CHILD_GRACE_S)
                child.process.kill()
                await asyncio.to_thread(child.process.wait)
        if self.servers is not None:
            await asyncio.to_thread(self.servers.stop)
        self.pidfile.release()
        log.info("stopped")
