"""The normal-day demo: one simulated day of the whole system on one clock, and how it copes.

``python -m bench.demo_day [--speedup S] [--hours H]`` starts ``python -m center demo`` (as
tests/procs.py does: a temporary DATA_DIR, a free port) with CLOCK_SPEEDUP = SIM_SPEEDUP = S (default
96: a simulated day in 15 wall minutes), the simulated day beginning at 03:00 Asia/Shanghai (``--begin``;
the quietest hour, so that the day's end is compared with its median at the same time of day), every bot on (callers, crews, the dispatcher, the desk
and the units, the callback desk, sensors) and no scenario: a normal day. Every simulated hour it
reads the open backlog (tickets not closed, cancelled or merged: the API's ``state=open``) as the
supervisor and shows it on stderr. At the end it prints:

- ``demo_hour_open_tickets_max`` / ``_median`` / ``_end``: of the hourly backlog samples;
- ``demo_hour_open_tickets_end_to_median``: the end over the median (the day ends no worse than 1.5x);
- ``demo_hour_arrive_on_time_pct``: repairs whose arrival met its limit, of those due, from the
  center's own KPI report (GET /api/reports/kpi over the days the simulated day touches);
- ``demo_misrouted_tickets``: consultations, complaints, suggestions and praise whose timeline
  shows a crew assignment (dispatch, assign or hand_to_crew with a crew) ever.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import emit, progress
from servers.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-demo-day"
ZONE = ZoneInfo("Asia/Shanghai")
BOOT_S = 60.0  # wall seconds the demo gets to be healthy before the day begins (it waits for the rest)
NOT_FIELD = ("consultation", "complaint", "suggestion", "praise")  # never for a field crew
CREW_ACTIONS = ("dispatch", "assign", "hand_to_crew")
STATES = ("new", "reviewed", "dispatched", "accepted", "en_route", "on_site", "resolved", "callback", "closed",
          "declined", "returned", "reopened", "transferred", "cancelled", "merged", "assigned", "handling",
          "in_review")


class Api:
    """The demo's HTTP API as one account (a bearer token, logged in again when it expires)."""

    def __init__(self, base: str, username: str) -> None:
        self.base, self.username, self.token = base, username, ""

    def login(self) -> None:
        """Get a bearer token."""
        body = json.dumps({"username": self.username, "password": PASSWORD}).encode()
        request = urllib.request.Request(self.base + "/api/login", method="POST", data=body)
        with urllib.request.urlopen(request, timeout=20) as response:
            self.token = json.loads(response.read())["token"]

    def get(self, path: str) -> dict:
        """GET a JSON path (retries a refused token once, and a slow answer twice)."""
        for attempt in range(3):
            if not self.token:
                self.login()
            request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code != 401 or attempt:
                    raise
                self.token = ""
            except (TimeoutError, urllib.error.URLError):
                if attempt == 2:
                    raise
                time.sleep(1.0)
        raise RuntimeError(f"GET {path}: no answer")


def start(data_dir: Path, log_path: Path, speedup: float, anchor: float) -> tuple[subprocess.Popen, str]:
    """``python -m center demo`` on a normal day at ``speedup``; the process and its base URL."""
    port = free_port()
    environ = dict(os.environ)
    for key in ("DATABASE_URL", "REDIS_URL", "MQTT_URL", "CITY_PROFILE", "CONFIG_FILE"):
        environ.pop(key, None)
    environ.update({"DATA_DIR": str(data_dir), "HTTP_PORT": str(port), "ADMIN_PASSWORD": PASSWORD,
                    "DEMO_PASSWORD": PASSWORD, "CONFIG_FILE": str(data_dir / "absent.toml"), "PYTHONUNBUFFERED": "1",
                    "CLOCK_SPEEDUP": f"{speedup:g}", "SIM_SPEEDUP": f"{speedup:g}", "CLOCK_ANCHOR": f"{anchor:.3f}",
                    "SIM_CALLERS": "1", "SIM_CREWS": "1", "SIM_DISPATCHER": "1", "SIM_UNITS": "1",
                    "SIM_CALLBACKS": "1", "SIM_SENSORS": "1", "SIM_SCENARIO": ""})
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "center", "demo"], cwd=ROOT, env=environ,
                                   stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def wait_healthy(process: subprocess.Popen, base: str, timeout_s: float = 180.0) -> None:
    """Until /healthz says ok (every service up), or fail with the reason."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the demo exited with {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                if json.loads(response.read()).get("status") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1.0)
    raise RuntimeError(f"the demo was not healthy within {timeout_s:.0f} s")


def stop(process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """SIGTERM, as a user's Ctrl-C; killed only when it does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            progress(f"the demo did not stop within {timeout_s:.0f} s; killing it")
            process.kill()
            process.wait(10)


def open_backlog(api: Api) -> int:
    """Open tickets now (the API's state=open: every state but closed, cancelled and merged)."""
    return int(api.get("/api/tickets?state=open&limit=1")["total"])


def all_tickets(api: Api) -> list[dict]:
    """Every ticket, state by state (the list API pages one state, or the open ones, at a time)."""
    found: dict[str, dict] = {}
    for state in STATES:
        offset = 0
        while True:
            page = api.get(f"/api/tickets?state={state}&sort=created&limit=500&offset={offset}")
            for ticket in page["tickets"]:
                found[ticket["number"]] = ticket
            offset += len(page["tickets"])
            if not page["tickets"] or offset >= page["total"]:
                break
    return list(found.values())


def open_breakdown(tickets: list[dict]) -> str:
    """The open tickets counted by type and state, the largest first (what the backlog is made of)."""
    import collections

    counts = collections.Counter((t.get("type"), t.get("state")) for t in tickets
                                 if t.get("state") not in ("closed", "cancelled", "merged"))
    return ", ".join(f"{kind}/{state} {n}" for (kind, state), n in counts.most_common()) or "none"


def misrouted(api: Api, tickets: list[dict]) -> tuple[int, int]:
    """(tickets of a type no field crew handles that were assigned to a crew, how many such tickets):
    their timelines, read four at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def to_crew(number: str) -> bool:
        events = api.get(f"/api/tickets/{urllib.parse.quote(number)}/timeline")["events"]
        return any(e.get("action") in CREW_ACTIONS and (e.get("data") or {}).get("crew_id") for e in events)

    numbers = [t["number"] for t in tickets if t.get("type") in NOT_FIELD]
    with ThreadPoolExecutor(4) as pool:
        bad = sum(pool.map(to_crew, numbers))
    return bad, len(numbers)


def arrival_on_time(api: Api, first: datetime, last: datetime) -> tuple[int, int]:
    """(arrivals that met their limit, arrivals due) of the KPI report over the days from first to last."""
    days = f"from={first.astimezone(ZONE).date().isoformat()}&to={last.astimezone(ZONE).date().isoformat()}"
    on_time = api.get(f"/api/reports/kpi?{days}")["report"]["on_time"]
    return int(on_time["arrive_on_time_met"]), int(on_time["arrive_on_time_due"])


def day_anchor(wall: float, speedup: float, begin: str, boot_s: float = BOOT_S) -> float:
    """The CLOCK_ANCHOR that makes the simulated clock read ``begin`` (HH:MM, Asia/Shanghai, its next
    occurrence) ``boot_s`` wall seconds from ``wall``: the clock reads
    ``anchor + (wall - anchor) x speedup``, so an anchor before now moves the simulated time ahead."""
    up = wall + boot_s
    if not begin or speedup <= 1.0:
        return wall
    hour, minute = (int(part) for part in begin.split(":"))
    local = datetime.fromtimestamp(up, ZONE)
    target = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target < local:
        target += timedelta(days=1)
    return (up * speedup - target.timestamp()) / (speedup - 1.0)


def run(speedup: float, hours: int, keep: bool, begin: str = "03:00") -> int:
    """Run the day; print the figures; 0 when it ran (the figures say how well)."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-demo-day-"))
    log_path = data_dir / "demo.log"
    started = time.time()
    anchor = day_anchor(started, speedup, begin)
    process, base = start(data_dir, log_path, speedup, anchor)
    progress(f"demo at {base}, x{speedup:g}, log {log_path}")
    samples: list[int] = []
    try:
        wait_healthy(process, base)
        supervisor = Api(base, "supervisor")
        healthy_s = time.time() - started
        if begin:  # the day begins when the simulated clock reads --begin (later after a slow start)
            time.sleep(max(0.0, started + BOOT_S - time.time()))
        began_wall = time.time()
        began = datetime.fromtimestamp(anchor + (began_wall - anchor) * speedup, timezone.utc)
        progress(f"healthy after {healthy_s:.0f} s; the day runs from {began.astimezone(ZONE):%Y-%m-%d %H:%M} "
                 f"(Asia/Shanghai) for {hours} simulated hours, {hours * 3600 / speedup / 60:.1f} wall minutes")
        for hour in range(1, hours + 1):
            time.sleep(max(0.0, began_wall + hour * 3600 / speedup - time.time()))
            if process.poll() is not None:
                raise RuntimeError(f"the demo exited with {process.returncode} at hour {hour}")
            samples.append(open_backlog(supervisor))
            progress(f"hour {hour}/{hours}: {samples[-1]} open")
        ended = began + timedelta(hours=hours)
        progress("reading the day's tickets and timelines ...")
        tickets = all_tickets(supervisor)
        progress("open at the end, by type and state: " + open_breakdown(tickets))
        bad, checked = misrouted(supervisor, tickets)
        met, due = arrival_on_time(supervisor, began, ended)
    finally:
        stop(process)
    median = statistics.median(samples)
    progress(f"{len(tickets)} tickets in all; {checked} consultations, complaints, suggestions or praise; "
             f"{due} arrivals due")
    emit("demo_hour_open_tickets_max", max(samples), "tickets")
    emit("demo_hour_open_tickets_median", float(median), "tickets")
    emit("demo_hour_open_tickets_end", samples[-1], "tickets")
    emit("demo_hour_open_tickets_end_to_median", samples[-1] / median if median else 0.0, "ratio")
    emit("demo_hour_arrive_on_time_pct", 100.0 * met / due if due else 0.0, "%")
    emit("demo_misrouted_tickets", bad, "tickets")
    if keep:
        progress(f"kept {data_dir}")
    else:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the day."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speedup", type=float, default=float(os.environ.get("BENCH_DAY_SPEEDUP", "96")),
                        help="CLOCK_SPEEDUP = SIM_SPEEDUP (default 96, or BENCH_DAY_SPEEDUP; at least 72 "
                             "keeps a day within 20 wall minutes)")
    parser.add_argument("--hours", type=int, default=24, help="simulated hours (default a day; fewer to try it)")
    parser.add_argument("--begin", default="03:00",
                        help="simulated time of day (Asia/Shanghai, HH:MM) the day begins at, about (default 03:00, "
                             "the quietest hour: the day ends where it began, so its end compares like with like; "
                             "empty: now)")
    parser.add_argument("--keep", action="store_true", help="keep the demo's data directory and log")
    opts = parser.parse_args(argv)
    if opts.speedup <= 0 or opts.hours < 1:
        parser.error("--speedup must be positive and --hours at least 1")
    if opts.begin and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", opts.begin):
        parser.error("--begin must be HH:MM")
    return run(opts.speedup, opts.hours, opts.keep, opts.begin)


if __name__ == "__main__":
    sys.exit(main())
