"""Track history benchmark: one vehicle's archived day replayed through the track API.

A vehicle drives a whole UTC day at 1 Hz (86,400 fixes, written to a fresh embedded Redis as the
ingest writes them, a minute a batch); the track archiver moves the day into a fresh embedded
PostgreSQL; Redis is then emptied (the day has expired there) and a web process answers
GET /api/vehicles/<id>/track for the whole day, as the console's replay asks for it, to one
keep-alive client in this process (latency until the whole body is read).

Figures:
- track_archive_day_s: the archiver's pass over the day (24 vehicle-hours, 1.7 MB of records);
- track_replay_day_ms_p50 / track_replay_day_ms_p99: the day's read through HTTP; target p99 ≤ 200;
- track_replay_day_mb: the size of the answer.

`python -m bench.tracks [--reads N]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.common import emit, percentile, progress

PASSWORD = "bench-pass-1234"
VEHICLE = "B01"


async def _serve(port: int, redis_url: str, database_url: str) -> None:
    """The web app over the store (runs in the server subprocess)."""
    import tornado.httpserver

    from config.settings import load
    from store.live import Store
    from web import app as webapp
    
    settings = load({"CONFIG_FILE": "/nonexistent.toml", "ADMIN_PASSWORD": PASSWORD, "DEMO_PASSWORD": PASSWORD})
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    server = tornado.httpserver.HTTPServer(webapp.make_app(webapp.build_services(settings=settings, store=store),
                                                           cookie_secret="bench"))
    server.listen(port, "127.0.0.1")
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.Event().wait()


class Client:
    """A minimal HTTP/1.1 keep-alive client (Content-Length bodies), light so the bench measures
    the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.token = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """One request; (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(data)}"]
        if self.token:
            head.append(f"Authorization: Bearer {self.token}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


async def _write_day(redis_url: str, database_url: str, day_start: float) -> tuple[int, float]:
    """Drive the vehicle through the day into Redis, archive it, empty Redis: (fixes, archive s)."""
    from store.live import FixRecord, Store
    from services.track_archiver import TrackArchiver

    store = Store.from_url(redis_url, database_url)
    try:
        progress(f"writing 86,400 fixes of {VEHICLE} on {datetime.fromtimestamp(day_start, timezone.utc):%Y-%m-%d}")
        for minute in range(1440):
            fixes = []
            for s in range(60):
                i = minute * 60 + s
                fixes.append(FixRecord(VEHICLE, day_start + i, 36.38 + (i % 3000) * 2e-6, 119.75 + (i % 5000) * 2e-6,
                                       30.0 + i % 25, float(i % 360), 40.0 + i % 9, 1, "A", 9 + i % 4, 0.9, "GP",
                                       True, True))
            await store.write_fixes(fixes, {VEHICLE: {"fix_ok": 60}}, seen={VEHICLE: fixes[-1].t},
                                    retention_s=3 * 86_400)
        started = time.perf_counter()
        done = await TrackArchiver(store, archive_days=400).run_once()
        took = time.perf_counter() - started
        if done.hours != 24 or done.fixes != 86_400:
            raise RuntimeError(f"archived {done.hours} hours, {done.fixes} fixes; expected 24, 86400")
        await store.redis.flushdb()  # the day has expired in Redis: the read comes from the archive
        return done.fixes, took
    finally:
        await store.close()


async def _bench(args: argparse.Namespace) -> None:
    from store.db import migrate
    from servers.embedded import free_port, start_postgres, start_redis

    now = datetime.now(timezone.utc)
    day = datetime(now.year, now.month, now.day, tzinfo=timezone.utc) - timedelta(days=2)
    since, until = day.timestamp(), day.timestamp() + 86_399
    with tempfile.TemporaryDirectory(prefix="bench-tracks-") as tmp:
        redis_proc = start_redis(Path(tmp))
        pg_proc = start_postgres(Path(tmp))
        server = None
        try:
            migrate(pg_proc.url)
            fixes, took = await _write_day(redis_proc.url, pg_proc.url, since)
            emit("track_archive_day_s", round(took, 3), "s")
            port = free_port()
            server = subprocess.Popen([sys.executable, "-m", "bench.tracks", "--serve", str(port), redis_proc.url,
                                       pg_proc.url], stdout=subprocess.PIPE, text=True)
            json.loads(server.stdout.readline())
            client = Client(port)
            code, body = await client.request("POST", "/api/login", {"username": "dispatcher", "password": PASSWORD})
            if code != 200:
                raise RuntimeError(f"login: {code} {body[:200]!r}")
            client.token = json.loads(body)["token"]
            path = f"/api/vehicles/{VEHICLE}/track?since={since}&until={until}"
            latencies = []
            for i in range(args.reads + 3):  # three to warm up
                started = time.perf_counter()
                code, body = await client.request("GET", path)
                if i >= 3:
                    latencies.append((time.perf_counter() - started) * 1000)
                if code != 200:
                    raise RuntimeError(f"track: {code} {body[:200]!r}")
            count = json.loads(body)["count"]
            if count != fixes:
                raise RuntimeError(f"the track API gave {count} fixes of {fixes}")
            client.close()
            progress(f"{args.reads} reads of the archived day ({count} fixes)")
            emit("track_replay_day_ms_p50", round(percentile(latencies, 50), 1), "ms")
            emit("track_replay_day_ms_p99", round(percentile(latencies, 99), 1), "ms")
            emit("track_replay_day_mb", round(len(body) / 1e6, 1), "MB")
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
            redis_proc.stop()
            pg_proc.stop()


def main() -> None:
    """Run the benchmark (or, with --serve, be its server process)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "REDIS_URL", "DATABASE_URL"))
    parser.add_argument("--reads", type=int, default=50)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(int(args.serve[0]), args.serve[1], args.serve[2]))
    else:
        asyncio.run(_bench(args))


if __name__ == "__main__":
    main()
