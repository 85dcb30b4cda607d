"""Console fan-out benchmark: how many dispatcher consoles one web process keeps up to date.

Real processes: an embedded Redis; ONE web process (the real application: LiveFeed and the
/ws/live handler, WS_BATCH_MS = 500) started here as a subprocess; 1,000 simulated vehicles that
move at 1 Hz, written through the store's write path (``Store.write_fixes``, which publishes the
live updates exactly as the ingest does); and light consoles: a few client processes, each
holding many tornado WebSocket connections that only read the ``"at"`` stamp of each frame (the
time the server encoded it) without decoding the rest.

Consoles are ramped up (BENCH_LEVELS, default 50,100,200,300,400). At each level every console's
frame lag (receive time - encode time) is measured for BENCH_MEASURE_S seconds after a warm-up;
a level passes when the worst console's p99 lag is <= 1 s and every console got frames.

- ``ws_consoles_supported``: the largest passing level (target >= 200);
- ``ws_server_cpu_pct``: the web process's CPU (% of one core) at that level;
- ``ws_frame_lag_ms_p99``: the worst console's p99 lag at that level.
"""
from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

from bench.common import emit, percentile, progress
from servers.embedded import free_port, start_redis
from store.login import session_key

VEHICLES = 1000
LAG_TARGET_S = 1.0
LEVELS = [int(x) for x in os.environ.get("BENCH_LEVELS", "50,100,200,300,400").split(",")]
WARMUP_S = float(os.environ.get("BENCH_WARMUP_S", "3"))
MEASURE_S = float(os.environ.get("BENCH_MEASURE_S", "8"))
CLIENT_PROCS = int(os.environ.get("BENCH_CLIENT_PROCS", "2"))
ROOT = Path(__file__).resolve().parent.parent


# the web process ---------------------------------------------------------------------------------
async def _serve(port: int, redis_url: str) -> None:
    from config.settings import load
    from store.live import Store
    from web.app import build_services, make_app
    from web.live import LiveFeed

    settings = load({"CONFIG_FILE": "/nonexistent.toml", "DATA_DIR": tempfile.gettempdir()})
    import redis.asyncio as aioredis

    store = Store(aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
        redis_url, decode_responses=True, max_connections=256, timeout=10)))  # as web.app.serve
    feed = LiveFeed(store, batch_ms=500.0)
    app = make_app(build_services(settings, store, live=feed), cookie_secret=secrets.token_hex(16))
    app.listen(port, "127.0.0.1", max_buffer_size=1 << 20)
    feed.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# vehicles at 1 Hz through the store's write path ------------------------------------------------------
async def _vehicles(redis_url: str, stop: asyncio.Event) -> None:
    from store.live import FixRecord, Store

    store = Store.from_url(redis_url)
    ids = [f"B{i:04d}" for i in range(VEHICLES)]
    slices = 10  # a tenth of the fleet every 100 ms: each vehicle once a second
    tick = 0
    started = time.monotonic()
    while not stop.is_set():
        now = time.time()
        part = ids[tick % slices::slices]
        fixes = []
        for n, vid in enumerate(part):
            angle = (now / 60.0 + n) % (2 * math.pi)
            fixes.append(FixRecord(vid, now, 36.38 + 0.02 * math.sin(angle), 119.75 + 0.02 * math.cos(angle), 30.0,
                                   (math.degrees(angle) + 90) % 360, None, 1, "A", 9, 0.9, "GN", True, False))
        await store.write_fixes(fixes, {}, seen={}, retention_s=3600)
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * 0.1 - time.monotonic()))
    await store.close()


# light consoles ------------------------------------------------------------------------------------
def _at(frame: str) -> float | None:
    i = frame.find('"at":')
    if i < 0:
        return None
    j = frame.find(",", i + 5)
    return float(frame[i + 5:j])


async def _consoles(url: str, token: str, count: int, warmup_s: float, measure_s: float) -> dict:
    import tornado.httpclient
    import tornado.websocket

    lags: list[list[float]] = [[] for _ in range(count)]
    frames = [0] * count
    window = {"start": math.inf, "end": math.inf}

    async def console(k: int) -> None:
        request = tornado.httpclient.HTTPRequest(url, headers={"Authorization": f"Bearer {token}"})
        ws = await tornado.websocket.websocket_connect(request, max_message_size=64 << 20)
        while True:
            msg = await ws.read_message()
            if msg is None:
                return
            now = time.time()
            if window["start"] <= now <= window["end"] and not msg.startswith('{"type":"snapshot"'):
                at = _at(msg)
                if at is not None:
                    lags[k].append(now - at)
                    frames[k] += 1

    tasks = []
    for k in range(count):
        tasks.append(asyncio.create_task(console(k)))
        if k % 20 == 19:
            await asyncio.sleep(0.05)
    await asyncio.sleep(warmup_s)
    window["start"] = time.time()
    window["end"] = window["start"] + measure_s
    await asyncio.sleep(measure_s + 0.2)
    for task in tasks:
        task.cancel()
    failed = sum(1 for t in tasks if t.done() and not t.cancelled() and t.exception() is not None)
    await asyncio.gather(*tasks, return_exceptions=True)
    worst = max((percentile(l, 99) for l in lags if l), default=math.inf)
    return {"worst_p99": worst, "min_frames": min(frames), "failed": failed}


def _client_proc(url: str, token: str, count: int, warmup_s: float, measure_s: float, out) -> None:
    out.put(asyncio.run(_consoles(url, token, count, warmup_s, measure_s)))


def _level(url: str, token: str, total: int, web: psutil.Process) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = min(CLIENT_PROCS, total)
    shares = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=_client_proc, args=(url, token, n, WARMUP_S + 1.0, MEASURE_S, queue))
               for n in shares]
    for w in workers:
        w.start()
    time.sleep(WARMUP_S + 1.0 + 1.0)  # connected and warmed up: sample the server's CPU during the window
    web.cpu_percent(None)
    time.sleep(MEASURE_S - 1.0)
    cpu = web.cpu_percent(None)
    results = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(30)
    return {"consoles": total, "cpu": cpu, "worst_p99": max(r["worst_p99"] for r in results),
            "min_frames": min(r["min_frames"] for r in results), "failed": sum(r["failed"] for r in results)}


def main() -> None:
    """Ramp consoles on one web process with 1,000 vehicles at 1 Hz; emit the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    server = start_redis(tmp, appendfsync="everysec")
    redis_url = server.url
    web = None
    stop_event: asyncio.Event | None = None
    try:
        client = redis.Redis.from_url(redis_url)
        token = secrets.token_urlsafe(24)
        client.set(session_key(token), json.dumps({"name": "bench", "role": "dispatcher", "crew_id": None,
                                                   "display": "bench"}), ex=3600)
        port = free_port()
        web = subprocess.Popen([sys.executable, "-m", "bench.ws_consoles", "--serve", str(port), redis_url],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert web.stdout.readline().strip() == "ready", "web process did not start"
        web_ps = psutil.Process(web.pid)

        loop = asyncio.new_event_loop()
        stop_event = asyncio.Event()
        import threading

        mover = threading.Thread(target=loop.run_until_complete, args=(_vehicles(redis_url, stop_event),), daemon=True)
        mover.start()
        url = f"ws://127.0.0.1:{port}/ws/live"
        best = None
        for level in LEVELS:
            result = _level(url, token, level, web_ps)
            ok = result["worst_p99"] <= LAG_TARGET_S and result["min_frames"] > 0 and result["failed"] == 0
            progress(f"{level} consoles: worst p99 lag {result['worst_p99'] * 1000:.0f} ms, "
                     f"server CPU {result['cpu']:.0f} %, min frames {result['min_frames']}, "
                     f"failed {result['failed']} -> {'ok' if ok else 'over target'}")
            if not ok:
                break
            best = result
        loop.call_soon_threadsafe(stop_event.set)
        mover.join(5)
        emit("ws_consoles_supported", best["consoles"] if best else 0, "consoles")
        emit("ws_server_cpu_pct", round(best["cpu"], 1) if best else 0.0, "%")
        emit("ws_frame_lag_ms_p99", round(best["worst_p99"] * 1000, 1) if best else 0.0, "ms")
    finally:
        if web is not None:
            web.terminate()
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                web.kill()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        asyncio.run(_serve(int(sys.argv[2]), sys.argv[3]))
    else:
        main()
