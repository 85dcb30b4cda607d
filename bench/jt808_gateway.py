"""The JT/T 808 gateway at fleet scale: one gateway process (`python -m center jt808`, as the demo
runs it) and one client process holding TERMINALS terminals (`simulators.jt808_terminal.Terminal`'s
frames), on the embedded PostgreSQL, Redis and mosquitto.

1. Held: every terminal connects, registers, authenticates, then reports (0x0200) every
   REPORT_S seconds, each at its own phase, for HOLD_S seconds. `jt808_terminals_held`: the
   terminals still connected whose last report was answered 0x8001 ok at the end; with the
   gateway's resident memory and CPU share over the hold (`jt808_gateway_rss_mb`,
   `jt808_gateway_cpu_percent`, 100 = one core).
2. Burst: every terminal sends BURST reports back to back without waiting; a subscriber with the
   center's account counts them on `fleet/+/jt808`. `jt808_msgs_per_s`: reports published per
   second from the first to the last one the subscriber received (the sustained rate through
   decode, reply and publish).

The open-file limit is raised to the hard limit (`resource`) in both processes."""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import emit, progress
from config.settings import load

TERMINALS = int(os.environ.get("BENCH_JT808_TERMINALS", "10000"))
REPORT_S = 30.0
HOLD_S = float(os.environ.get("BENCH_JT808_HOLD_S", "65"))
BURST = 5  # reports per terminal in the burst
CONNECT_AT_ONCE = 200  # registrations in flight (a fleet coming online after an outage is not faster)


def phone(i: int) -> str:
    """The benchmark terminal i's phone number."""
    return f"0147{i:08d}"


def vehicle(i: int) -> str:
    """The benchmark terminal i's vehicle id."""
    return f"B{i:05d}"


async def _seed(database_url: str) -> None:
    """The vehicles and their bound terminals."""
    from services.devices import Actor
    from services.jt808_terminals import TerminalService
    from store.db import Database
    from store.fleet import FleetStore

    db = Database(database_url, max_size=2)
    try:
        await FleetStore(db).register_bare_vehicles([vehicle(i) for i in range(TERMINALS)], by="bench", at=time.time())
        await TerminalService(db).bind_many([(phone(i), vehicle(i)) for i in range(TERMINALS)], by=Actor("bench"))
    finally:
        await db.close()


class _Client:
    """One benchmark terminal: the simulator's `Terminal` framing, replies read by a task."""

    def __init__(self, i: int) -> None:
        from simulators.jt808_terminal import Terminal

        self.terminal = Terminal(phone(i))
        self.ok = 0  # 0x8001 ok replies to reports
        self.last_ok = False
        self.alive = False


async def _connect(client: _Client, port: int, gate: asyncio.Semaphore) -> None:
    async with gate:
        try:
            await client.terminal.connect("127.0.0.1", port)
            if await client.terminal.register() == 0 and await client.terminal.authenticate() == 0:
                client.alive = True
        except Exception:  # noqa: BLE001 - refused, timed out or reset: counted as not held
            client.terminal.close()


async def _reader(client: _Client) -> None:
    """Read the platform's replies until the connection ends."""
    terminal = client.terminal
    try:
        while True:
            result = await terminal.result(timeout=3600)
            client.ok += result == 0
            client.last_ok = result == 0
    except Exception:  # noqa: BLE001 - the connection ended
        client.alive = False


def _body(i: int, k: int) -> bytes:
    from datetime import datetime, timezone

    from simulators.jt808_terminal import location_body

    return location_body(30.5 + (i % 1000) * 1e-3, 104.0 + (i // 1000) * 1e-3 + k * 1e-5, datetime.now(timezone.utc),
                         speed_kmh=30.0, course=90)


async def _clients(port: int, hold_s: float, report_s: float, burst: int, pipe) -> None:
    from ingest.jt808_gateway import raise_open_files

    raise_open_files(TERMINALS + 200)
    clients = [_Client(i) for i in range(TERMINALS)]
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    started = time.monotonic()
    await asyncio.gather(*(_connect(c, port, gate) for c in clients))
    pipe.send(("connected", sum(c.alive for c in clients), time.monotonic() - started))
    readers = [asyncio.create_task(_reader(c)) for c in clients if c.alive]
    rng = random.Random(7)

    async def report(i: int, client: _Client) -> None:
        await asyncio.sleep(rng.uniform(0, report_s))
        k = 0
        while client.alive:
            client.last_ok = False
            client.terminal.send(0x0200, _body(i, k))
            k += 1
            await asyncio.sleep(report_s)

    pipe.send(("holding", 0, 0.0))
    tasks = [asyncio.create_task(report(i, c)) for i, c in enumerate(clients) if c.alive]
    await asyncio.sleep(hold_s)
    for task in tasks:
        task.cancel()
    await asyncio.sleep(2.0)  # the last reports' replies
    rounds = max(1, int(hold_s // report_s))  # reports every terminal made at least
    held = sum(1 for c in clients if c.alive and c.last_ok and c.ok >= rounds)
    pipe.send(("held", held, 0.0))
    pipe.recv()  # the subscriber is ready
    sent = 0
    for i, c in enumerate(clients):
        if c.alive:
            for k in range(burst):
                c.terminal.send(0x0200, _body(i, 100 + k))
            sent += burst
            if i % 500 == 0:
                await asyncio.sleep(0)  # let the writes drain
    pipe.send(("burst_sent", sent, 0.0))
    await asyncio.sleep(float(pipe.recv()))
    for task in readers:
        task.cancel()
    for c in clients:
        c.terminal.close()


def _client_process(port: int, hold_s: float, report_s: float, burst: int, pipe) -> None:
    asyncio.run(_clients(port, hold_s, report_s, burst, pipe))


def main() -> None:
    """Start the servers, the gateway and the terminals; print the figures."""
    from ingest.jt808_gateway import raise_open_files
    from messaging.mqtt import MqttClient
    from servers.embedded import free_port
    from store.startup import open_servers

    limit = raise_open_files(TERMINALS + 200)
    mp.set_start_method("spawn", force=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-jt808-"))
    port = free_port()
    settings = load({"CONFIG_FILE": str(tmp / "absent.toml"), "DATA_DIR": str(tmp / "var"), "LOG_LEVEL": "WARNING",
                     "JT808_HOST": "127.0.0.1", "JT808_PORT": str(port), "JT808_IDLE_S": "120",
                     "JT808_MAX_CONNECTIONS": str(TERMINALS + 100)})
    servers = open_servers(settings)
    gateway = None
    try:
        progress(f"jt808: {TERMINALS} terminals, open-file limit {limit}; load average {os.getloadavg()[0]:.2f}"
                 f" on {os.cpu_count()} cores; seeding vehicles and terminals")
        asyncio.run(_seed(servers.database_url))
        env = {**os.environ, **settings.as_environ(), "DATABASE_URL": servers.database_url,
               "REDIS_URL": servers.redis_url, "MQTT_URL": servers.mqtt_url, "MQTT_DEVICE_URL": servers.device_url}
        gateway = subprocess.Popen([sys.executable, "-m", "center", "jt808"], env=env)
        proc = psutil.Process(gateway.pid)
        _wait_listening(port)
        counter = _Counter()
        subscriber = MqttClient(servers.mqtt_url, f"bench-jt808-{os.getpid()}", on_messages=counter.add)
        subscriber.subscribe("fleet/+/jt808")
        subscriber.start()
        subscriber.wait_connected(15)
        ours, theirs = mp.Pipe()
        client = mp.Process(target=_client_process, args=(port, HOLD_S, REPORT_S, BURST, theirs), daemon=True)
        client.start()
        _, connected, took = ours.recv()
        progress(f"jt808: {connected} terminals registered and authenticated in {took:.1f} s")
        ours.recv()
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        for left in range(int(HOLD_S), 0, -15):
            progress(f"jt808: holding, {left} s left; gateway RSS {proc.memory_info().rss / 2**20:.0f} MB")
            time.sleep(min(15, left))
        cpu1, t1 = proc.cpu_times(), time.monotonic()
        rss = proc.memory_info().rss / 2**20
        _, held, _ = ours.recv()
        emit("jt808_terminals_held", held, "terminals")
        emit("jt808_gateway_rss_mb", round(rss, 1), "MB")
        emit("jt808_gateway_cpu_percent", round(100 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system)
                                                / (t1 - t0), 1), "%")
        counter.reset()
        ours.send("go")
        _, sent, _ = ours.recv()
        progress(f"jt808: burst of {sent} reports sent")
        deadline = time.monotonic() + 60
        while counter.count < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        ours.send("1")
        if counter.count < 2:
            raise SystemExit("jt808: no burst report reached the broker")
        rate = (counter.count - 1) / (counter.last - counter.first)
        progress(f"jt808: {counter.count} of {sent} reports published in {counter.last - counter.first:.1f} s")
        emit("jt808_msgs_per_s", round(rate), "msg/s")
        client.join(30)
        subscriber.stop()
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(15)
            except subprocess.TimeoutExpired:
                gateway.kill()
        servers.stop()


class _Counter:
    """Reports the subscriber received, with the times of the first and the last."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count, self.first, self.last = 0, 0.0, 0.0

    def add(self, batch) -> None:
        now = time.monotonic()
        if not self.count:
            self.first = now
        self.count += len(batch)
        self.last = now


def _wait_listening(port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"jt808: the gateway did not listen on {port}")


if __name__ == "__main__":
    main()
