"""Ticket API benchmarks on the demo city, through HTTP with audit and GIS resolution.

- `tickets_create_per_s`: POST /api/tickets from a pool of keep-alive clients in this process,
  against the web app (with the ticket manager) in `--web-processes` subprocesses sharing the port
  (WEB_PROCESSES, default 2: one per core), on an embedded Redis with AOF and an embedded PostgreSQL;
  `tickets_create_per_s_one_web_process` is the same load on a single web process.
- `api_ticket_list_ms_p99`: the dispatcher's queue (GET /api/tickets?state=open&sort=time_left
  &limit=50) with 10,000 open tickets (made through the API) and `--closed` (default 1,000,000)
  closed tickets of the past year in the database (copied in with COPY, each a real stored
  record: one of the API's tickets, closed, renumbered and spread over the year), sequential
  requests, client-side latency; `api_ticket_list_closed_ms_p99` the newest page of closed tickets.

`python -m bench.tickets [--creates N] [--clients N] [--closed N]`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import emit, percentile, progress

PASSWORD = "bench-pass-1234"
OPEN_TARGET = 10_000


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive JSON client (light, so the bench measures the server)."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """Send one request and read the response (Content-Length bodies only)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(data)}",
                "Content-Type: application/json"]
        if self.token:
            head.append(f"Authorization: Bearer {self.token}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


def _call(rng: random.Random, bounds: tuple[float, float, float, float]) -> dict:
    category = rng.choice(["power", "power", "water", "gas", "heating", "drainage"])
    return {"channel": "phone", "category": category, "type": rng.choice(["repair", "repair", "complaint", "service"]),
            "urgency": rng.choice(["emergency", "urgent", "normal", "normal"]),
            "description": "用户来电反映故障", "caller_phone": f"13{rng.randint(0, 10**9 - 1):09d}",
            "lon": rng.uniform(bounds[0], bounds[2]), "lat": rng.uniform(bounds[1], bounds[3])}


async def _serve(port: int, redis_url: str, database_url: str, profile: str) -> None:
    """The web app with the ticket manager over the city (runs in the server subprocess)."""
    import tornado.httpserver

    from config.settings import load
    from store.live import Store
    from gis.layers import load_profile
    from services.tickets import build_manager
    from web import app as webapp
    
    settings = load({"CONFIG_FILE": "/nonexistent.toml", "ADMIN_PASSWORD": PASSWORD, "DEMO_PASSWORD": PASSWORD})
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    city = await asyncio.to_thread(load_profile, profile)
    services = webapp.build_services(settings=settings, store=store, tickets=await build_manager(store.db, store.redis, city))
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="bench"))
    server.listen(port, "127.0.0.1", reuse_port=True)  # WEB_PROCESSES servers share the port
    bounds = city.districts.total_bounds
    print(json.dumps({"ready": True, "bounds": [float(b) for b in bounds]}), flush=True)
    await asyncio.Event().wait()


async def _login(port: int, name: str) -> str:
    client = KeepAliveClient("127.0.0.1", port)
    code, body = await client.request("POST", "/api/login", {"username": name, "password": PASSWORD})
    client.close()
    if code != 200:
        raise RuntimeError(f"login {name}: {code} {body[:200]!r}")
    return json.loads(body)["token"]


async def _creates(port: int, token: str, bounds, count: int, clients: int, seed: int) -> tuple[float, int]:
    rng = random.Random(seed)
    calls = [_call(rng, bounds) for _ in range(count)]
    queue = iter(calls)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        client = KeepAliveClient("127.0.0.1", port, token)
        for body in queue:
            code, payload = await client.request("POST", "/api/tickets", body)
            if code not in (200, 201):
                failures += 1
                if failures <= 3:
                    progress(f"create failed: {code} {payload[:200]!r}")
        client.close()

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    return count / (time.perf_counter() - started), failures


@contextlib.asynccontextmanager
async def _web(profile: Path, processes: int):
    """A fresh embedded Redis and PostgreSQL and `processes` web servers sharing one port; yields
    (port, bounds)."""
    from store.db import migrate
    from servers.embedded import free_port, start_postgres, start_redis

    with tempfile.TemporaryDirectory(prefix="bench-tickets-") as tmp:
        redis_proc = start_redis(Path(tmp))
        pg_proc = start_postgres(Path(tmp))
        migrate(pg_proc.url)
        port = free_port()
        servers = [subprocess.Popen([sys.executable, "-m", "bench.tickets", "--serve", str(port), redis_proc.url,
                                     pg_proc.url, str(profile)], stdout=subprocess.PIPE, text=True)
                   for _ in range(processes)]
        try:
            for server in servers:
                info = json.loads(server.stdout.readline())
            progress(f"{processes} web process(es) on port {port}")
            yield port, info["bounds"], pg_proc.url
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(10)
            redis_proc.stop()
            pg_proc.stop()


async def _create_rate(port: int, bounds, args: argparse.Namespace) -> float:
    token = await _login(port, "agent")
    await _creates(port, token, bounds, 200, args.clients, seed=1)  # warm up
    progress(f"creating {args.creates} tickets through the API with {args.clients} clients")
    rate, failures = await _creates(port, token, bounds, args.creates, args.clients, seed=2)
    if failures:
        progress(f"{failures} creates failed")
    return rate


async def _bench(args: argparse.Namespace) -> None:
    from simulators.democity import ensure_city
    from config.settings import load

    profile = ensure_city(load(), progress=progress)
    if args.web_processes > 1:  # the same load on one process, for comparison
        async with _web(profile, 1) as (port, bounds, _):
            emit("tickets_create_per_s_one_web_process", round(await _create_rate(port, bounds, args), 1), "tickets/s")
    async with _web(profile, args.web_processes) as (port, bounds, database_url):
        emit("tickets_create_per_s", round(await _create_rate(port, bounds, args), 1), "tickets/s")
        progress(f"tickets_create_per_s measured with WEB_PROCESSES={args.web_processes}")
        token = await _login(port, "agent")
        dispatcher = KeepAliveClient("127.0.0.1", port, await _login(port, "dispatcher"))
        seed = 3
        while True:
            code, body = await dispatcher.request("GET", "/api/tickets/counts")
            open_now = json.loads(body)["open"]
            if open_now >= OPEN_TARGET:
                break
            progress(f"{open_now} open tickets; topping up to {OPEN_TARGET}")
            await _creates(port, token, bounds, OPEN_TARGET - open_now, args.clients, seed=seed)
            seed += 1
        await asyncio.to_thread(_load_closed, database_url, args.closed)
        latencies = await _list_latencies(dispatcher, "/api/tickets?state=open&sort=time_left&limit=50", args.lists)
        emit("api_ticket_list_ms_p99", round(percentile(latencies, 99), 2), "ms")
        emit("api_ticket_list_ms_p50", round(percentile(latencies, 50), 2), "ms")
        latencies = await _list_latencies(dispatcher, "/api/tickets?state=closed&limit=50", args.lists)
        emit("api_ticket_list_closed_ms_p99", round(percentile(latencies, 99), 2), "ms")
        dispatcher.close()


async def _list_latencies(client: KeepAliveClient, path: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        code, body = await client.request("GET", path)
        latencies.append((time.perf_counter() - started) * 1000)
        if code != 200:
            raise RuntimeError(f"list {path}: {code} {body[:200]!r}")
    page = json.loads(body)
    progress(f"{path}: {len(page['tickets'])} of {page['total']} tickets")
    return latencies


def _load_closed(database_url: str, count: int) -> None:
    """COPY `count` closed tickets of the past year into the database: one of the API's tickets,
    closed, renumbered (GD<day>-9xxxxx, days before today) and its times spread over the year."""
    import dataclasses
    import datetime as dt

    import orjson
    import psycopg

    from store.ticket_records import TICKET_COLUMNS, TicketRecord, ticket_row
    from command.ticket_model import State

    if count <= 0:
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        stored = conn.execute("SELECT record FROM tickets LIMIT 1").fetchone()[0]  # jsonb: a dict
        template = TicketRecord.from_json(orjson.dumps(stored))
        base = dataclasses.replace(template.ticket, state=State.CLOSED, version=9)
        today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        per_day = -(-count // 365)
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY tickets ({', '.join(TICKET_COLUMNS)}) FROM STDIN") as copy:
            for i in range(count):
                day, seq = divmod(i, per_day)
                created = today - dt.timedelta(days=day + 1, seconds=-(seq * 86400 // per_day))
                ticket = dataclasses.replace(
                    base, number=f"GD{created:%Y%m%d}-9{seq:05d}", created_at=created,
                    updated_at=created + dt.timedelta(hours=5), resolved_at=created + dt.timedelta(hours=3),
                    closed_at=created + dt.timedelta(hours=5), caller_phone=f"13{i:09d}")
                copy.write_row(ticket_row(TicketRecord(ticket, {"queue": []})))
                if i and i % 100_000 == 0:
                    progress(f"{i} closed tickets copied ({i / (time.perf_counter() - started):.0f}/s)")
        conn.execute("VACUUM ANALYZE tickets")
    progress(f"{count} closed tickets in the database in {time.perf_counter() - started:.0f} s")



def main() -> None:
    """Run the benchmark (or, with --serve, be its server process)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", nargs=4, metavar=("PORT", "REDIS_URL", "DATABASE_URL", "PROFILE"))
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--lists", type=int, default=300)
    parser.add_argument("--closed", type=int, default=1_000_000, help="closed tickets in the database for the list latency")
    parser.add_argument("--web-processes", type=int, default=2,
                        help="web servers sharing the port (WEB_PROCESSES; one per core of this 2-core machine)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(int(args.serve[0]), args.serve[1], args.serve[2], args.serve[3]))
    else:
        asyncio.run(_bench(args))


if __name__ == "__main__":
    main()
