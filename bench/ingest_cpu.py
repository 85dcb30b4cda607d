"""The ingest's CPU a message, measured in its own process: ``python -m bench.ingest_cpu``.

Two ways (BENCH_CPU_MODE), each printing ``ingest_cpu_us_per_msg`` (the median of
BENCH_CPU_REPEAT runs, each run's figure on stderr):

- ``replay`` (the default, the steadier): a fixed replay of BENCH_CPU_ROUNDS rounds of the
  simulated fleet's messages (one simulated second apart, received half a second after their fix
  time) handed to `ingest.service.Ingest.on_messages` in batches of 200, as the MQTT client hands
  them over, with the service's writer writing them to a real Redis, until everything (the held
  track records too) is written; the process's CPU time over the messages. Everything the ingest
  does to a message except receiving it (paho's part: ``python -m bench.mqtt_raw``).
- ``live``: the ingest service itself (`ingest.service.serve`, as ``python -m center ingest``
  runs it, on an embedded Redis, mosquitto and PostgreSQL) in this process, while a publisher
  process (`bench.ingest_fleet`: pre-encoded QoS 0 GGA+RMC payloads of the registered fleet)
  offers BENCH_CPU_RATE msg/s; after BENCH_CPU_WARM_S seconds, this process's CPU time (its
  threads, not the broker's, Redis' or the publisher's) over BENCH_CPU_S seconds, divided by the
  messages the ingest took meanwhile. paho's part included.

CPU a message rather than msg/s, because on a shared machine the rate says more about the other
processes than about this one. With BENCH_CPU_PROFILE=1 the measured part runs under cProfile
and its 30 most expensive functions (by their own time) go to stderr; the figure is then the
profiler's, not the product's.
"""
from __future__ import annotations

import asyncio
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import redis

from bench.common import emit, progress
from bench.ingest_fleet import Fleet, _publisher, fleet_ids, register_fleet
from config.settings import Settings, load
from messaging.mqtt import ReceivedMessage
from servers.embedded import start_broker, start_postgres, start_redis
from store.db import migrate

VEHICLES = int(os.environ.get("BENCH_CPU_VEHICLES", "5000"))
RATE = float(os.environ.get("BENCH_CPU_RATE", "10000"))
WARM_S = float(os.environ.get("BENCH_CPU_WARM_S", "3"))
MEASURE_S = float(os.environ.get("BENCH_CPU_S", "8"))
REPEAT = int(os.environ.get("BENCH_CPU_REPEAT", "5"))
PROFILE = os.environ.get("BENCH_CPU_PROFILE", "") == "1"
MODE = os.environ.get("BENCH_CPU_MODE", "replay")
ROUNDS = int(os.environ.get("BENCH_CPU_ROUNDS", "6"))
HANDOVER = 200  # messages a batch, as the MQTT client hands over what one wake-up reads


class _Profile:
    """cProfile around the measured part when BENCH_CPU_PROFILE=1; prints its top 30 on stderr."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile() if PROFILE else None

    def __enter__(self) -> "_Profile":
        if self.profile is not None:
            self.profile.enable()
        return self

    def __exit__(self, *exc) -> None:
        if self.profile is not None:
            self.profile.disable()
            out = io.StringIO()
            pstats.Stats(self.profile, stream=out).sort_stats("tottime").print_stats(30)
            progress(out.getvalue())


def _messages(rounds: int) -> list[list[ReceivedMessage]]:
    """The replay: ``rounds`` rounds of the fleet, a simulated second apart, ending now, in
    hand-over batches."""
    from datetime import datetime, timezone

    fleet = Fleet(VEHICLES)
    topics = [f"fleet/{vid}/nmea" for vid in fleet.ids]
    start = int(time.time()) - rounds - 1
    messages = []
    for k in range(rounds):
        payloads = fleet.round(datetime.fromtimestamp(start + k, timezone.utc), k)
        messages += [ReceivedMessage(topic, payload, 0, False, start + k + 0.5)
                     for topic, payload in zip(topics, payloads)]
    return [messages[i:i + HANDOVER] for i in range(0, len(messages), HANDOVER)]


async def _replay(settings: Settings, redis_url: str) -> tuple[int, float, int]:
    """Hand the replay to an Ingest writing to Redis; (messages, CPU seconds, fixes written). The
    part of the CPU spent in ``on_messages`` (decoding, judging, batching) is shown on stderr."""
    from ingest.service import Ingest
    from runtime.clock import Clock
    from runtime.lifecycle import tune_gc_for_latency
    from store.live import Store

    batches = _messages(ROUNDS)
    store = Store.from_url(redis_url)
    store.clock = Clock.from_settings(settings)
    ingest = Ingest(settings, store)
    ingest.fleet_ids = frozenset(fleet_ids(VEHICLES))  # as load_fleet reads them from PostgreSQL
    tune_gc_for_latency()  # as serve() does in the ingest's own process
    writer = asyncio.create_task(ingest.writer())
    try:
        with _Profile():
            cpu0 = time.process_time()
            handled = 0.0
            for batch in batches:
                while not ingest.keeps_up():
                    await asyncio.sleep(0.001)
                began = time.process_time()
                ingest.on_messages(batch)
                handled += time.process_time() - began
                await asyncio.sleep(0)
            ingest._cut(ingest.fleet, flush=True)
            while ingest.fleet.queue:
                await asyncio.sleep(0.001)
            cpu = time.process_time() - cpu0
        progress(f"on_messages: {handled / len(batches) / HANDOVER * 1e6:.1f} us a message, the rest (writer, "
                 f"write preparation, Redis client, loop): {(cpu - handled) / len(batches) / HANDOVER * 1e6:.1f} us")
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await store.close()
    return ingest.stats["messages"], cpu, ingest.stats["fixes_written"]


async def _measure(settings: Settings, redis_url: str, mqtt_url: str) -> tuple[int, float, int]:
    """Run the ingest service here while a publisher offers RATE msg/s; (messages taken, CPU
    seconds, fixes written) over the measured seconds."""
    from ingest.service import serve

    found: list = []
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings, redis_url, mqtt_url, stop=stop, hook=found.append))
    ctx = mp.get_context("spawn")
    ready, go, sent = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
    publisher = ctx.Process(target=_publisher, daemon=True,
                            args=(mqtt_url, VEHICLES, RATE, WARM_S + MEASURE_S + 1.0, time.time() - 60, ready, go, sent))
    try:
        while not (found and found[0].mqtt_ok):
            await asyncio.sleep(0.05)
        ingest = found[0]
        await asyncio.sleep(0.5)  # the subscriptions are in place
        publisher.start()
        await asyncio.to_thread(ready.wait, 60)
        go.set()
        await asyncio.sleep(WARM_S)
        with _Profile():
            messages0, written0, cpu0 = ingest.stats["messages"], ingest.stats["fixes_written"], time.process_time()
            await asyncio.sleep(MEASURE_S)
            cpu = time.process_time() - cpu0
        return ingest.stats["messages"] - messages0, cpu, ingest.stats["fixes_written"] - written0
    finally:
        await asyncio.to_thread(publisher.join, 30)
        stop.set()
        await service


def main() -> None:
    """Start the servers (the broker and PostgreSQL only for ``live``), measure REPEAT times,
    print the median CPU a message."""
    mp.set_start_method("spawn", force=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-cpu-"))
    servers = [start_redis(tmp / "redis", appendfsync="everysec")]
    r = redis.Redis.from_url(servers[0].url)
    try:
        values = {"CONFIG_FILE": str(tmp / "absent.toml"), "DATA_DIR": str(tmp / "var"), "LOG_LEVEL": "WARNING",
                  "TRACK_RETENTION_H": "1"}
        what = f"{ROUNDS} rounds replayed"
        if MODE != "replay":
            servers += [start_broker(tmp / "broker"), start_postgres(tmp / "pg")]
            values["DATABASE_URL"] = servers[2].url
            migrate(servers[2].url)
            register_fleet(servers[2].url, VEHICLES)
            what = f"{RATE:,.0f} msg/s offered through {servers[1].name}"
        settings = load(values)
        progress(f"ingest cpu: {VEHICLES} vehicles, {what}; load average {os.getloadavg()[0]:.2f} on "
                 f"{os.cpu_count()} cores")
        figures = []
        for run in range(REPEAT):
            r.flushall()
            if MODE == "replay":
                messages, cpu, written = asyncio.run(_replay(settings, servers[0].url))
            else:
                messages, cpu, written = asyncio.run(_measure(settings, servers[0].url, servers[1].url))
            figures.append(cpu / max(messages, 1) * 1e6)
            progress(f"run {run + 1}: {messages:,} messages ({written:,} fixes written), "
                     f"{cpu:.2f} s CPU: {figures[-1]:.1f} us a message; load average {os.getloadavg()[0]:.2f}")
        emit("ingest_cpu_us_per_msg", round(statistics.median(figures), 1), "us")
    finally:
        r.close()
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
