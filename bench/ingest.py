"""Ingest benchmarks: NMEA throughput (ours and a minimal baseline), sensor alarm latency under
load, and the ingest process's memory with 10,000 live vehicles.

Every figure comes from real processes: embedded Redis and MQTT broker started here (mosquitto
when on PATH, else amqtt), the ingest service in its own process, publishers in others.

- ``ingest_nmea_msgs_per_s``: 5,000 vehicles, one GGA+RMC payload per message, QoS 0. The
  publisher (bench.mqtt_raw: pre-encoded packets, so its CPU is not taken from the consumer) steps
  the offered rate up along RAMP; the figure is the highest rate the ingest wrote to Redis (its
  ``fixes_written`` counter in the heartbeat: the latest positions; the track records and
  counters follow within INGEST_HOLD_S, as the progress line at the end of the ramp shows) while
  keeping up (see ``_throughput``). The fixes' times follow the wall clock (`FixClock`).
- ``ingest_baseline_msgs_per_s``: the same ramp, publisher and broker into a minimal subscriber:
  split the payload, take the GGA lat/lon, one pipelined GEOADD per 20 ms; ``ingest_nmea_ratio``
  = ours / it. Both figures are the median of BENCH_REPEAT ramps (default 3), the ingest's and
  the minimal loop's taken in turn, so that neither a slow phase of the machine nor one lucky
  ramp sets the ratio; every ramp's figure is shown on stderr. The minimal loop receives through
  our own MQTT reader, as the ingest does, so the ratio compares everything after the reader. ``ingest_baseline_paho_msgs_per_s``: the same loop
  on paho-mqtt's own client and ``on_message`` callback, for reference.
- ``ingest_{consumer,redis,broker,publisher}_cpu_us_per_msg``: CPU time of each process per
  message written while our ingest takes 14,000 msg/s: where a message's cost goes;
  ``ingest_baseline_{consumer,redis}_cpu_us_per_msg`` the same for the minimal loop;
  ``ingest_nmea_cpu_us_per_msg`` repeats the ingest's (consumer's) figure.
- ``ingest_sensor_alarm_latency_ms_p99``: threshold-crossing readings published while a second
  process sends 5,000 NMEA msg/s; latency = publish -> the event read from ``alarms:events``. The
  ingest runs as the demo runs it: the vehicles' topics in one process (INGEST_TOPICS=fleet), the
  sensors' in another (`python -m center ingest-sensors`).
- ``ingest_shared_rate_a`` / ``_b``: two ingest processes on one shared subscription
  (MQTT_SHARED_GROUP, ``$share/ingest/fleet/+/nmea``), the same ramp; each process's rate in the
  step where their sum was highest; ``ingest_shared_ratio`` = the smaller / the larger (1.0: an
  even split) and ``ingest_shared_msgs_per_s`` their sum. mosquitto only: amqtt has no shared
  subscriptions (skipped there, said on stderr).
- BENCH_ONLY=throughput runs only the throughput figures (and the ratio) and the CPU figures;
  BENCH_ONLY=shared only the two shared-subscription processes, BENCH_ONLY=latency only the alarm
  latency.
- ``ingest_rss_mb``: 10,000 vehicles at 1 Hz for BENCH_RSS_S seconds (default 120), then the
  ingest's RSS; ``track_bytes_per_fix`` = Redis used_memory growth / fixes stored.

The ingest takes only the vehicles of the fleet registry: each measurement registers its fleet's
ids (`register_fleet`) after emptying Redis and before the ingest starts.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import orjson
import psutil
import redis

from bench.common import emit, percentile, progress
from bench.ingest_fleet import RAMP_STEP_S, _publisher, register_fleet
from messaging.mqtt import MqttClient
from servers.embedded import start_broker, start_postgres, start_redis
from store.db import migrate
from config.settings import load

VEHICLES = 5000
# Offered rates of the throughput ramp, msg/s, each for RAMP_STEP_S seconds (BENCH_RAMP: a comma list)
RAMP = [float(x) for x in os.environ.get("BENCH_RAMP", "10000,14000,18000,22000,26000,30000,36000,44000,"
                                                       "52000,62000,74000,88000,104000,124000").split(",")]
KEPT_UP = 0.97  # a consumer writing at least this share of the offered rate keeps up
RISING = 1.03  # a consumer behind, writing more than this times its best earlier step, still climbs
RSS_VEHICLES = 10_000
RSS_S = float(os.environ.get("BENCH_RSS_S", "120"))
ONLY = os.environ.get("BENCH_ONLY", "")  # "throughput": only the throughput and CPU figures (quick)
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))  # ramps of ours and of the minimal loop, taken in turn


def _fresh(r: redis.Redis, database_url: str, count: int) -> None:
    """An empty Redis, and the fleet of ``count`` vehicles registered (in PostgreSQL)."""
    r.flushall()
    register_fleet(database_url, count)


def _run_ingest(values: dict, redis_url: str, mqtt_url: str) -> None:
    from config.settings import Settings
    from ingest.service import serve

    asyncio.run(serve(Settings(values), redis_url, mqtt_url, own_process=True))  # as `python -m center ingest`


def _baseline(redis_url: str, mqtt_url: str, reader: str = "fast") -> None:
    """The minimal loop: subscribe, split, pipelined GEOADD every 20 ms; counts in baseline:written.

    ``reader="fast"`` receives through our own `messaging.mqtt.MqttClient` (PUBLISH packets parsed
    from the read buffer, in batches), the reader the ingest uses: the ratio's baseline.
    ``reader="paho"`` is paho-mqtt's own client and callback (its network thread, one
    ``on_message`` per message), printed for reference."""
    import collections

    pending: collections.deque = collections.deque()  # appended by the network thread
    if reader == "fast":
        client = MqttClient(mqtt_url, f"bench-baseline-{os.getpid()}", on_messages=pending.extend)
        client.subscribe("fleet/+/nmea")
        client.start()
    else:
        import paho.mqtt.client as mqtt

        url = urlparse(mqtt_url)
        paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-baseline-{os.getpid()}")
        paho.on_connect = lambda c, userdata, flags, rc, props: c.subscribe("fleet/+/nmea", qos=0)
        paho.on_message = lambda c, userdata, msg: pending.append(msg)
        if url.username:
            paho.username_pw_set(unquote(url.username), unquote(url.password or ""))
        paho.connect(url.hostname, url.port or 1883)
        paho.loop_start()
    r = redis.Redis.from_url(redis_url)
    while True:
        time.sleep(0.02)
        batch = [pending.popleft() for _ in range(len(pending))]
        if not batch:
            continue
        pipe = r.pipeline(transaction=False)
        geo = []
        for msg in batch:
            for line in msg.payload.split(b"\r\n"):
                if line[3:6] == b"GGA":
                    f = line.split(b",")
                    lat = int(f[2][:2]) + float(f[2][2:]) / 60
                    lon = int(f[4][:3]) + float(f[4][3:]) / 60
                    geo.extend((lon, lat, msg.topic.split("/")[1]))
                    break
        for i in range(0, len(geo), 1500):
            pipe.geoadd("base:geo", geo[i:i + 1500])
        pipe.incrby("baseline:written", len(batch))
        pipe.execute()


def _start(target, *args) -> mp.Process:
    proc = mp.Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _stop(proc: mp.Process) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def _heartbeat(r: redis.Redis, name: str = "ingest") -> dict:
    raw = r.get(f"svc:{name}")
    return orjson.loads(raw) if raw else {}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"bench: {what} did not happen within {timeout:.0f} s")


def _forks(r: redis.Redis) -> int:
    """How many times Redis has forked (for an AOF rewrite: the child takes a core meanwhile)."""
    return int(r.info("stats").get("total_forks", 0))


def saturated_steps(rates: list[tuple[float, float]]) -> int:
    """How many of the last (offered, written) ramp steps in a row found the consumer saturated:
    behind (written below KEPT_UP of offered) and no faster than before (at most RISING times the
    best earlier step, each step counted at most at its offered rate)."""
    count = 0
    for i in range(len(rates) - 1, -1, -1):
        offered, got = rates[i]
        best_before = max((min(g, o) for o, g in rates[:i]), default=0.0)
        if not (got < KEPT_UP * offered and got <= RISING * best_before):
            break
        count += 1
    return count


class _Beats:
    """The heartbeats of several ingest processes, which share the ``svc:ingest`` key: sampled
    often (each writes every 2 s), each process's last (time, written) kept by its pid."""

    def __init__(self, r: redis.Redis, offset: float):
        self.r, self.offset = r, offset
        self.last: dict[int, tuple[float, int]] = {}

    def sample(self) -> dict[int, tuple[float, int]]:
        """Read the key once; the latest count of every process seen so far."""
        beat = _heartbeat(self.r)
        if beat.get("pid"):
            self.last[beat["pid"]] = (beat.get("at", time.time()) - self.offset, beat.get("written", 0))
        return dict(self.last)


def _rate(samples: list[tuple[float, int]], since: float) -> float:
    """msg/s written between the first and the last (time, count) sample from `since` on."""
    window = [(t, w) for t, w in samples if t >= since]
    span = window[-1][0] - window[0][0] if window else 0.0
    return (window[-1][1] - window[0][1]) / span if span > 0 else 0.0


def _throughput(settings_values, redis_url, mqtt_url, r, *, baseline: str | None = None,
                shared: dict | None = None) -> float:
    """The consumer's sustained rate: the publisher steps its offered rate up along RAMP (each
    step RAMP_STEP_S long); the rate written to Redis is taken over the last part of every step;
    the figure is the highest rate written in a step, counted at most at the offered rate (a
    consumer draining a backlog writes more than is offered, which it does not sustain). The ramp
    stops once the consumer is saturated in two steps in a row: behind (wrote less than KEPT_UP of
    the offered rate) and no faster than before (at most RISING times the best earlier step). So
    one passing dip, in either process (an AOF rewrite takes a core for seconds), does not end
    the ramp, nor does falling behind while the rate written still climbs with the rate offered
    (bigger batches cost less a message): the figure is the rate at which more offered brings no
    more written. ``baseline``: None for our ingest, else the minimal loop with that reader
    (`_baseline`). ``shared``: a dict for two ingest processes on a shared subscription, filled
    with each one's rate (``a``, ``b``) in the step of the highest sum."""
    _fresh(r, settings_values["DATABASE_URL"], VEHICLES)
    per_process: dict[int, list[tuple[float, int]]] = {}
    if shared is not None:
        values = {**settings_values, "MQTT_SHARED_GROUP": "ingest"}
        consumers = [_start(_run_ingest, values, redis_url, mqtt_url) for _ in range(2)]
        consumer = consumers[0]
        beats = _Beats(r, time.time() - time.monotonic())
        _wait(lambda: len(beats.sample()) == 2, 30, "two ingest processes start")

        def written():  # both processes' own counts, summed at the later of their times
            last = beats.sample()
            for pid, sample in last.items():
                per_process.setdefault(pid, []).append(sample)
            return max(t for t, _ in last.values()), sum(w for _, w in last.values())
    elif baseline:
        consumer = _start(_baseline, redis_url, mqtt_url, baseline)
        time.sleep(1.5)

        def written():
            return time.monotonic(), int(r.get("baseline:written") or 0)
    else:
        consumer = _start(_run_ingest, settings_values, redis_url, mqtt_url)
        _wait(lambda: _heartbeat(r).get("mqtt_ok"), 30, "ingest start")
        offset = time.time() - time.monotonic()

        def written():  # the ingest's own count, at the time it was taken
            beat = _heartbeat(r)
            return beat.get("at", time.time()) - offset, beat.get("written", 0)
    name = f"baseline ({baseline} reader)" if baseline else ("two shared ingests" if shared is not None else "ingest")
    progress(f"{name} pid {consumer.pid}; offered rates {', '.join(f'{x:,.0f}' for x in RAMP)} msg/s, "
             f"{RAMP_STEP_S:.0f} s each")
    ready, go, sent, stop = mp.Event(), mp.Event(), mp.Value("q", 0), mp.Event()
    publisher = _start(_publisher, mqtt_url, VEHICLES, None, 0.0, time.time() - 60, ready, go, sent, RAMP, stop)
    ready.wait(60)
    samples = []
    forks = _forks(r)
    go.set()
    began = time.monotonic()
    rates: list[tuple[float, float]] = []
    try:
        for step, offered in enumerate(RAMP):
            end = began + (step + 1) * RAMP_STEP_S
            while time.monotonic() < end:
                samples.append(written())
                time.sleep(0.25)
            # no count taken within the window (the ingest's heartbeat not refreshed): nothing kept up
            got = _rate(samples, end - RAMP_STEP_S * 0.65)
            if shared is not None:  # each process's own heartbeats (one in two on the key): the whole step
                split = [_rate(per, end - RAMP_STEP_S) for per in per_process.values()]
                got = sum(split)
                if got >= shared.get("sum", 0.0) and len(split) == 2:
                    shared.update(sum=got, a=split[0], b=split[1])
                progress(f"{name}: each " + ", ".join(f"{x:,.0f}" for x in split) + " msg/s")
            rates.append((offered, got))
            now_forks = _forks(r)
            progress(f"{name}: offered {offered:,.0f} msg/s, written {got:,.0f} msg/s"
                     + ("" if got > 0 else " (no new count in the step: heartbeat not refreshed)")
                     + ("" if consumer.is_alive() else f" (consumer exited, code {consumer.exitcode})")
                     + (f" (Redis forked {now_forks - forks} times: AOF rewrite)" if now_forks > forks else ""))
            forks = now_forks
            if saturated_steps(rates) >= 2:
                break
    finally:
        stop.set()
        publisher.join(30)
        if not baseline and shared is None:  # the track and counters follow the live positions by up to INGEST_HOLD_S
            beat = _heartbeat(r)
            progress(f"ingest: {beat.get('written', 0):,} fixes written, {beat.get('track_written', 0):,} to "
                     f"the track, {beat.get('held', 0):,} held")
        _stop(publisher)
        for proc in consumers if shared is not None else [consumer]:
            _stop(proc)
    best = max((min(got, offered) for offered, got in rates), default=0.0)
    progress(f"{name}: sustained {best:,.0f} msg/s (publisher sent {sent.value})")
    return best


def _latency(settings_values, redis_url, mqtt_url, r) -> list[float]:
    _fresh(r, settings_values["DATABASE_URL"], VEHICLES)
    sensors = 200
    rows = [{"sensor_id": f"S{i:03d}", "name": f"bench {i}", "kind": "pressure", "quantity": "pressure",
             "unit": "MPa", "period_s": 3600, "high_warning": 0.55, "high_critical": 0.65} for i in range(sensors)]

    async def seed():
        from store.live import Store

        store = Store.from_url(redis_url)
        await store.replace_sensor_registry(rows)
        await store.close()
    asyncio.run(seed())
    ingest = _start(_run_ingest, {**settings_values, "INGEST_TOPICS": "fleet"}, redis_url, mqtt_url)
    sensors_ingest = _start(_run_ingest, {**settings_values, "INGEST_TOPICS": "sensors"}, redis_url, mqtt_url)
    _wait(lambda: _heartbeat(r).get("mqtt_ok") and _heartbeat(r, "ingest-sensors").get("mqtt_ok")
          and _heartbeat(r, "ingest-sensors").get("sensors") == sensors, 30, "ingest start")
    ready, go, sent = mp.Event(), mp.Event(), mp.Value("q", 0)
    background = _start(_publisher, mqtt_url, VEHICLES, 5000.0, 25.0, time.time() - 5, ready, go, sent)
    ready.wait(60)
    go.set()
    client = MqttClient(mqtt_url, "bench-sensor-pub")
    client.start()
    client.wait_connected(10)
    time.sleep(3)  # background load running
    latencies = []
    last_id = "$"
    try:
        for i in range(sensors):
            before = r.xrevrange("alarms:events", count=1)
            last_id = before[0][0] if before else "0-0"
            sent_at = time.time()
            client.publish(f"scada/S{i:03d}/pressure", b'{"value": 0.7, "unit": "MPa"}')
            reply = r.xread({"alarms:events": last_id}, count=1, block=2000)
            if not reply:
                progress(f"latency: no alarm event for S{i:03d} within 2 s")
                continue
            latencies.append((time.time() - sent_at) * 1000)
            time.sleep(0.05)
    finally:
        client.stop()
        background.join(30)
        _stop(background)
        _stop(ingest)
        _stop(sensors_ingest)
    progress(f"latency: {len(latencies)} alarms under {sent.value} background NMEA messages")
    return latencies


def _rss(settings_values, redis_url, mqtt_url, r) -> tuple[float, float]:
    _fresh(r, settings_values["DATABASE_URL"], RSS_VEHICLES)
    ingest = _start(_run_ingest, settings_values, redis_url, mqtt_url)
    _wait(lambda: _heartbeat(r).get("mqtt_ok"), 30, "ingest start")
    used_before = r.info("memory")["used_memory"]
    ready, go, sent = mp.Event(), mp.Event(), mp.Value("q", 0)
    start = time.time()
    publisher = _start(_publisher, mqtt_url, RSS_VEHICLES, float(RSS_VEHICLES), RSS_S, start, ready, go, sent)
    ready.wait(60)
    go.set()
    began = time.monotonic()
    peak = 0.0
    proc = psutil.Process(ingest.pid)
    while publisher.is_alive():
        peak = max(peak, proc.memory_info().rss / 2**20)
        if time.monotonic() - began > 10 and int(time.monotonic() - began) % 30 == 0:
            progress(f"rss: {time.monotonic() - began:.0f} s, ingest RSS {peak:.0f} MB, "
                     f"written {_heartbeat(r).get('written')}")
        time.sleep(1.0)
    time.sleep(2.5)
    rss = proc.memory_info().rss / 2**20

    def track_done():  # the track records held back (INGEST_HOLD_S) are in Redis too
        beat = _heartbeat(r)
        return beat if beat.get("held", 1) == 0 and beat.get("track_written", 0) >= beat.get("written", 1) else None

    beat = _wait(track_done, 30, "held track records written")
    written, stored = beat["written"], beat["track_written"]
    used_after = r.info("memory")["used_memory"]
    _stop(ingest)
    per_fix = (used_after - used_before) / max(1, stored)
    progress(f"rss: {sent.value} published, {written} fixes written, {stored} track records stored, "
             f"peak RSS {max(peak, rss):.0f} MB, Redis +{(used_after - used_before) / 2**20:.1f} MB")
    return max(peak, rss), per_fix


CPU_RATE = 14_000.0  # msg/s offered while the CPU of each process is taken
CPU_S = 8.0


def _cpu_per_message(settings_values, redis_proc, broker, r, *, baseline: bool = False) -> dict[str, float]:
    """CPU time (user + system) each process spends per message written, our ingest (or the
    minimal loop with our reader) taking CPU_RATE msg/s for CPU_S seconds (after 4 s to settle):
    steadier than the sustained rate, and it shows where a message's cost goes (consumer, Redis,
    broker, publisher)."""
    _fresh(r, settings_values["DATABASE_URL"], VEHICLES)
    if baseline:
        consumer = _start(_baseline, redis_proc.url, broker.url, "fast")
        time.sleep(1.5)

        def count() -> int:
            return int(r.get("baseline:written") or 0)
    else:
        consumer = _start(_run_ingest, settings_values, redis_proc.url, broker.url)
        _wait(lambda: _heartbeat(r).get("mqtt_ok"), 30, "ingest start")

        def count() -> int:
            return _heartbeat(r).get("written", 0)
    ready, go, sent = mp.Event(), mp.Event(), mp.Value("q", 0)
    publisher = _start(_publisher, broker.url, VEHICLES, CPU_RATE, CPU_S + 6, time.time() - 60, ready, go, sent)
    ready.wait(60)
    go.set()
    time.sleep(4)
    procs = {"consumer": psutil.Process(consumer.pid), "redis": psutil.Process(redis_proc.process.pid),
             "broker": psutil.Process(broker.process.pid), "publisher": psutil.Process(publisher.pid)}
    try:
        before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        written0 = count()
        time.sleep(CPU_S)
        used = {name: sum(p.cpu_times()[:2]) - before[name] for name, p in procs.items()}
        written = count() - written0
    finally:
        publisher.join(30)
        _stop(publisher)
        _stop(consumer)
    progress(f"cpu ({'baseline' if baseline else 'ingest'}): {written:,} messages written in {CPU_S:.0f} s "
             f"at {CPU_RATE:,.0f} msg/s offered")
    return {name: seconds / max(written, 1) * 1e6 for name, seconds in used.items()}


def _shared_figures(values: dict, redis_proc, broker, r: redis.Redis) -> None:
    """Two ingest processes on one shared subscription (mosquitto only): print both rates, the
    smaller / the larger, and their sum."""
    if broker.name != "mosquitto":
        progress(f"shared subscription: skipped ({broker.name} has no $share; use mosquitto or EMQX)")
        return
    shared: dict = {}
    _throughput(values, redis_proc.url, broker.url, r, shared=shared)
    a, b = shared.get("a", 0.0), shared.get("b", 0.0)
    emit("ingest_shared_rate_a", round(a), "msg/s")
    emit("ingest_shared_rate_b", round(b), "msg/s")
    emit("ingest_shared_ratio", round(min(a, b) / max(a, b, 1.0), 3), "ratio")
    emit("ingest_shared_msgs_per_s", round(a + b), "msg/s")


def main() -> None:
    """Start the servers, run the four measurements, print the figures."""
    mp.set_start_method("spawn", force=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    redis_proc = start_redis(tmp / "redis")
    broker = start_broker(tmp / "broker")
    postgres = start_postgres(tmp / "pg")
    migrate(postgres.url)
    broker_name = broker.name
    progress(f"ingest_broker: {broker_name}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    settings = load({"CONFIG_FILE": str(tmp / "absent.toml"), "DATA_DIR": str(tmp / "var"),
                     "LOG_LEVEL": "WARNING", "TRACK_RETENTION_H": "1", "DATABASE_URL": postgres.url})
    values = dict(settings.values)
    r = redis.Redis.from_url(redis_proc.url)
    try:
        if ONLY == "shared":
            _shared_figures(values, redis_proc, broker, r)
            return
        if ONLY == "latency":
            latencies = _latency(values, redis_proc.url, broker.url, r)
            emit("ingest_sensor_alarm_latency_ms_p99", round(percentile(latencies, 99), 1), "ms")
            emit("ingest_sensor_alarm_latency_ms_p50", round(percentile(latencies, 50), 1), "ms")
            return
        ours_runs, base_runs = [], []
        for run in range(REPEAT):
            progress(f"throughput: ramp {run + 1} of {REPEAT} of the ingest and of the minimal loop")
            ours_runs.append(_throughput(values, redis_proc.url, broker.url, r, baseline=False))
            base_runs.append(_throughput(values, redis_proc.url, broker.url, r, baseline="fast"))
        ours, base = statistics.median(ours_runs), statistics.median(base_runs)
        progress("throughput, each ramp: ingest " + ", ".join(f"{x:,.0f}" for x in ours_runs)
                 + " msg/s; minimal loop " + ", ".join(f"{x:,.0f}" for x in base_runs)
                 + " msg/s; ratio " + ", ".join(f"{a / b:.3f}" for a, b in zip(ours_runs, base_runs)))
        emit("ingest_nmea_msgs_per_s", round(ours), "msg/s")
        emit("ingest_baseline_msgs_per_s", round(base), "msg/s")
        emit("ingest_nmea_ratio", round(ours / base, 3), "ratio")
        paho = _throughput(values, redis_proc.url, broker.url, r, baseline="paho")
        emit("ingest_baseline_paho_msgs_per_s", round(paho), "msg/s")
        _shared_figures(values, redis_proc, broker, r)
        for name, us in _cpu_per_message(values, redis_proc, broker, r).items():
            emit(f"ingest_{name}_cpu_us_per_msg", round(us, 1), "us")
            if name == "consumer":  # the ingest process's CPU a message: its figure of issue #25
                emit("ingest_nmea_cpu_us_per_msg", round(us, 1), "us")
        for name, us in _cpu_per_message(values, redis_proc, broker, r, baseline=True).items():
            if name in ("consumer", "redis"):
                emit(f"ingest_baseline_{name}_cpu_us_per_msg", round(us, 1), "us")
        if ONLY == "throughput":
            return
        latencies = _latency(values, redis_proc.url, broker.url, r)
        emit("ingest_sensor_alarm_latency_ms_p99", round(percentile(latencies, 99), 1), "ms")
        emit("ingest_sensor_alarm_latency_ms_p50", round(percentile(latencies, 50), 1), "ms")
        rss, per_fix = _rss(values, redis_proc.url, broker.url, r)
        emit("ingest_rss_mb", round(rss, 1), "MB")
        emit("track_bytes_per_fix", round(per_fix, 1), "B")
    finally:
        r.close()
        broker.stop()
        redis_proc.stop()
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
