"""Benchmark: KPI reports over PostgreSQL, a year of 1,000,000 tickets with 300,000 in one month.

The year 2026 is generated as audit event dicts (the `event_to_dict` shape, ~9 per ticket) with
realistic lifecycles: create, dispatch (some declined and re-dispatched), accept, depart, arrive
(GPS or button), resolve, callback, close; consultations closed on the call, transfers, repeat
calls, 110 handovers and reopened tickets (返工); stage times drawn vectorised. November holds
300,000 tickets (a 12345 line's busiest month), the other months share the rest.

Month by month, in chunks, the events are folded into each ticket's KPI row by the same pure code
the KPI service runs (`command.kpi.rebuild`, `command.kpi.named_row`) and COPYed into PostgreSQL:
``kpi_facts`` (packed as `store.kpi.KpiFacts.pack` does) and, unless ``--no-events``, the
``tickets`` rows (classification columns, an empty record) and every event into ``ticket_events``,
so the database is the size a real year makes. Uses DATABASE_URL, else an embedded PostgreSQL in a
temporary directory (removed at the end) with shared_buffers 1GB, as a server holding years of
tickets is given (the creation-time index a report scans is ~220 MB a million tickets).

Figures (each report read from PostgreSQL and computed as the API does, `KpiFacts.frame` with
``full=False`` (the report's 120 bytes a ticket) + `KpiFrame.report`; MEDIAN (p50) of 5 runs after
one warm-up):
- report_month_ms: November, 300,000 tickets, no filter; target ≤ 500 ms;
- report_year_ms: 2026, 1,000,000 tickets, no filter; target ≤ 3,000 ms;
- report_month_district_ms: November for one district; report_day_ms: one day of November;
- kpi_fold_us: folding one event into its ticket's row (the rebuild while loading).

Run: ``python -m bench.reports`` (``--tickets``, ``--month-tickets`` for smaller trials).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import psycopg

from bench.common import emit, progress
from store.db import Database, migrate
from store.kpi import NAME_KINDS, KpiFacts
from command.kpi import (
    CATEGORIES as KPI_CATEGORIES, COLUMNS, ENUM_COLUMNS, day_period, month_period, named_row, rebuild, year_period,
)

YEAR, BUSY_MONTH = 2026, 11
TICKETS, MONTH_TICKETS = 1_000_000, 300_000
CHUNK = 50_000
SHARED_BUFFERS = "1GB"  # what a server holding years of tickets gets (the embedded default: 128MB)
CATEGORIES = ("water", "power", "gas", "heating", "drainage", "sanitation", "other")
CATEGORY_P = (0.30, 0.30, 0.08, 0.08, 0.10, 0.09, 0.05)
TYPES = ("repair", "complaint", "consultation", "service", "suggestion", "praise")
TYPE_P = (0.55, 0.15, 0.20, 0.05, 0.03, 0.02)
CHANNELS = ("phone", "web", "sms", "police_110", "sensor")
CHANNEL_P = (0.80, 0.10, 0.05, 0.03, 0.02)
HOUR_P = np.array([1, 1, 1, 1, 1, 2, 4, 6, 8, 9, 9, 8, 7, 7, 8, 8, 8, 8, 9, 9, 8, 6, 4, 2], dtype=float)
EMPTY: dict = {}
assert set(CATEGORIES) == set(KPI_CATEGORIES)


def _iso(epoch: np.ndarray) -> list[str]:
    """ISO-8601 UTC strings of epoch seconds, vectorised."""
    stamps = (epoch * 1e3).astype("int64").astype("datetime64[ms]")
    return [s + "+00:00" for s in np.datetime_as_string(stamps, unit="s").tolist()]


def generate(n: int, seed: int = 8, *, month: tuple[int, int] = (YEAR, BUSY_MONTH),
             prefix: str = "GD202611") -> list[dict]:
    """Audit event dicts of `n` tickets created over one month, each ticket's events in order."""
    rng = np.random.default_rng(seed)
    start, end = month_period(*month)
    days = int((end - start).total_seconds() // 86400)
    hour = rng.choice(24, n, p=HOUR_P / HOUR_P.sum())
    created = start.timestamp() + rng.integers(0, days, n) * 86400.0 + hour * 3600.0 + rng.uniform(0, 3600, n)
    category = rng.choice(len(CATEGORIES), n, p=CATEGORY_P)
    type_ = rng.choice(len(TYPES), n, p=TYPE_P)
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
    district = rng.integers(1, 13, n)
    grid = district * 100 + rng.integers(0, 40, n)
    unit = category * 12 + district  # one unit per category and district
    crew = unit * 10 + rng.integers(0, 6, n)
    lon, lat = 116.40 + rng.normal(0, 0.08, n), 39.90 + rng.normal(0, 0.06, n)
    area = rng.choice(3, n, p=(0.8, 0.15, 0.05))
    direct = (type_ >= 2) & (type_ != 3) & (rng.random(n) < 0.8)
    transfer, decline = rng.random(n) < 0.03, rng.random(n) < 0.05
    repeat, police = rng.random(n) < 0.08, rng.random(n) < 0.01
    reopen, gps = rng.random(n) < 0.05, rng.random(n) < 0.6
    sat = rng.choice(4, n, p=(0.70, 0.15, 0.05, 0.10))  # satisfied, basic, (dissatisfied → reopen), unreachable
    reopen |= sat == 2
    still_open = rng.random(n) < 0.2  # of the reopened: rework not finished yet
    minute = 60.0
    t_transfer = created + rng.uniform(1, 5, n) * minute
    t_dispatch = np.where(transfer, t_transfer, created) + rng.exponential(6, n) * minute
    t_redispatch = t_dispatch + rng.uniform(2, 4, n) * minute
    t_accept = np.where(decline, t_redispatch, t_dispatch) + rng.exponential(2, n) * minute
    t_depart = t_accept + rng.uniform(0.5, 3, n) * minute
    t_arrive = t_depart + rng.lognormal(3.2, 0.5, n) * minute
    t_resolve = t_arrive + rng.lognormal(3.8, 0.7, n) * minute
    t_callback = t_resolve + rng.exponential(6, n) * 3600
    t_redo = t_callback + rng.uniform(10, 60, n) * minute
    t_reresolve = t_redo + rng.lognormal(4.5, 0.5, n) * minute
    t_close = t_reresolve + rng.exponential(6, n) * 3600
    iso = {name: _iso(arr) for name, arr in (
        ("c", created), ("tr", t_transfer), ("d", t_dispatch), ("rd", t_redispatch), ("a", t_accept),
        ("dp", t_depart), ("ar", t_arrive), ("rs", t_resolve), ("cb", t_callback), ("ro", t_redo),
        ("rr", t_reresolve), ("cl", t_close), ("direct", created + rng.uniform(2, 8, n) * minute))}
    events: list[dict] = []
    add = events.append
    sats = ("satisfied", "basically_satisfied", "satisfied", "unreachable")
    for i in range(n):
        number = f"{prefix}{1 + i // 20000:02d}-{i % 20000 + 1:05d}"

        def ev(key: str, action: str, frm: str | None, to: str, role: str = "dispatcher",
               data: dict = EMPTY) -> None:
            add({"ticket_number": number, "action": action, "from_state": frm, "to_state": to,
                 "actor_id": "u", "role": role, "at": iso[key][i], "note": "", "data": data})
        ev("c", "create", None, "new", "agent", {
            "channel": CHANNELS[channel[i]], "category": CATEGORIES[category[i]], "type": TYPES[type_[i]],
            "district": f"D{district[i]:02d}", "grid": f"G{grid[i]:04d}", "unit_id": f"U{unit[i]:03d}",
            "area_class": ("urban", "rural", "remote")[area[i]], "lon": float(lon[i]), "lat": float(lat[i])})
        if direct[i]:
            ev("direct", "close_direct", "new", "closed", "agent", {"answer": "已答复"})
            continue
        if police[i]:
            ev("c", "note", "new", "new", "dispatcher", {"data": {"police": "handover"}})
            ev("c", "note", "new", "new", "system", {"data": {"police": "ack"}})
        if repeat[i]:
            ev("c", "repeat_call", "new", "new", "agent")
        if transfer[i]:
            ev("tr", "transfer", "new", "transferred", "dispatcher", {"unit_id": f"U{unit[i] + 1:03d}"})
        crew_id = f"C{crew[i]:05d}"
        ev("d", "dispatch", "new", "dispatched", data={"crew_id": crew_id})
        if decline[i]:
            ev("rd", "decline", "dispatched", "declined", "crew", {"reason": "忙"})
            crew_id = f"C{crew[i] + 1:05d}"
            ev("rd", "dispatch", "declined", "dispatched", data={"crew_id": crew_id})
        ev("a", "accept", "dispatched", "accepted", "crew")
        ev("dp", "depart", "accepted", "en_route", "crew")
        ev("ar", "arrive", "en_route", "on_site", "system" if gps[i] else "crew",
           {"source": "gps"} if gps[i] else EMPTY)
        ev("rs", "resolve", "on_site", "resolved", "crew", {"resolution": "已修复"})
        ev("rs", "queue_callback", "resolved", "callback", "system")
        if reopen[i]:
            ev("cb", "reopen", "callback", "reopened", "agent", {"reason": "没修好"})
            if still_open[i]:
                continue
            ev("ro", "dispatch", "reopened", "dispatched", data={"crew_id": crew_id})
            ev("ro", "accept", "dispatched", "accepted", "crew")
            ev("ro", "arrive", "accepted", "on_site", "crew")
            ev("rr", "resolve", "on_site", "resolved", "crew", {"resolution": "已修复"})
            ev("rr", "queue_callback", "resolved", "callback", "system")
            ev("cl", "close", "callback", "closed", "agent", {"satisfaction": "satisfied"})
        else:
            ev("cb", "close", "callback", "closed", "agent", {"satisfaction": sats[sat[i]]})
    return events


def month_counts(total: int, busy: int) -> dict[int, int]:
    """Tickets per month of the year: `busy` in the busy month, the rest shared by the others."""
    rest = total - busy
    counts = {m: rest // 11 for m in range(1, 13) if m != BUSY_MONTH}
    counts[1] += rest - sum(counts.values())
    counts[BUSY_MONTH] = busy
    return counts


def _name_codes(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    """Codes for every name the generator uses (what `KpiFacts` assigns on first sight)."""
    names: dict[str, list[str]] = {kind: list(values) for kind, values in ENUM_COLUMNS.items()}
    names["district"] = [f"D{d:02d}" for d in range(1, 13)]
    names["grid"] = [f"G{d * 100 + g:04d}" for d in range(1, 13) for g in range(40)]
    names["unit"] = [f"U{u:03d}" for u in range(0, 7 * 12 + 14)]
    names["crew"] = [f"C{c:05d}" for c in range(0, (7 * 12 + 14) * 10 + 10)]
    with conn.cursor().copy("COPY kpi_names (kind, name, code) FROM STDIN") as copy:
        for kind in NAME_KINDS:
            for code, name in enumerate(names[kind]):
                copy.write_row((kind, name, code))
    return {kind: {name: code for code, name in enumerate(names[kind])} for kind in NAME_KINDS}


def load(url: str, total: int, busy: int, *, events: bool) -> float:
    """Generate, fold and COPY the year; seconds per folded event."""
    facts = KpiFacts(Database(url))
    fold_s, folded, base = 0.0, 0, 0
    with psycopg.connect(url, autocommit=True) as conn:
        facts._codes = _name_codes(conn)
        for month, count in month_counts(total, busy).items():
            for chunk, at in enumerate(range(0, count, CHUNK)):
                n = min(CHUNK, count - at)
                t = time.perf_counter()
                stream = generate(n, seed=month * 100 + chunk, month=(YEAR, month),
                                  prefix=f"GD{YEAR}{month:02d}{chunk:02d}")
                progress(f"month {month}: {at + n}/{count} tickets, {len(stream)} events generated "
                         f"in {time.perf_counter() - t:.1f} s")
                t = time.perf_counter()
                state = rebuild(stream)
                rows = [(number, named_row(acc, state.limits)) for number, acc in state._acc.items()]
                fold_s += time.perf_counter() - t
                folded += len(stream)
                base = _copy_chunk(conn, facts, state, rows, stream, events=events, base=base)
        progress("VACUUM ANALYZE (what autovacuum does after a load)")
        conn.execute("VACUUM ANALYZE")
    return fold_s / max(1, folded)


def _time(epoch: float) -> datetime | None:
    return None if epoch != epoch else datetime.fromtimestamp(epoch, timezone.utc)


_COLOR = COLUMNS.index("color")


def _copy_chunk(conn: psycopg.Connection, facts: KpiFacts, state, rows, stream: list[dict], *,
                events: bool, base: int) -> int:
    """COPY one chunk: tickets and events (when `events`), then the facts, keyed by the ids the
    events get (``base`` + position: the events' own ids when copied). Returns the next base."""
    if events:
        with conn.cursor().copy("COPY tickets (number, version, state, category, type, urgency, urgency_rank,"
                                " color, channel, district, unit_id, crew_id, created_at, updated_at, resolved_at,"
                                " record) FROM STDIN") as copy:
            for number, values in rows:
                acc = state._acc[number]
                a = acc.attrs
                copy.write_row((number, 1, acc.state, a["category"], a["type"], a["urgency"], 1, values[_COLOR],
                                a["channel"], a.get("district"), a.get("unit_id"), acc.crew_id(),
                                _time(values[0]), _time(values[0]), _time(values[1]), "{}"))
        base = conn.execute("SELECT coalesce(max(id), 0) FROM ticket_events").fetchone()[0]
        with conn.cursor().copy("COPY ticket_events (number, at, action, event) FROM STDIN") as copy:
            for event in stream:
                copy.write_row((event["ticket_number"], event["at"], event["action"], orjson.dumps(event).decode()))
        if conn.execute("SELECT max(id) FROM ticket_events").fetchone()[0] != base + len(stream):
            raise RuntimeError("ticket_events ids are not consecutive: is another writer using this database?")
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for k, event in enumerate(stream):
        first.setdefault(event["ticket_number"], base + k + 1)
        last[event["ticket_number"]] = base + k + 1
    with conn.cursor().copy("COPY kpi_facts (id, number, last_event_id, created, resolved, category, district,"
                            " unit_id, crew_id, state, packed, extra) FROM STDIN") as copy:
        for number, values in rows:
            acc = state._acc[number]
            a = acc.attrs
            copy.write_row((first[number], number, last[number], _time(values[0]), _time(values[1]),
                            a.get("category"), a.get("district"), a.get("unit_id"), acc.crew_id(), acc.state,
                            *facts.pack(first[number], values)))
    return base + len(stream)


async def _ms(fn, repeat: int = 5) -> float:
    """Median milliseconds of `repeat` runs of an async function, after one warm-up run."""
    await fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


async def measure(url: str) -> None:
    """Print the report figures (p50 of 5 runs each), over one pool as a web process keeps it."""
    month = month_period(YEAR, BUSY_MONTH)
    year = year_period(YEAR)
    day = day_period(date(YEAR, BUSY_MONTH, 20))
    db = Database(url, max_size=4)
    facts = KpiFacts(db)

    def report(period, **filters):
        async def run() -> None:
            frame = await facts.frame(*period, **filters, full=False)  # as the report API reads
            frame.report(*period, **{k: list(v) for k, v in filters.items()})
        return run

    try:
        r = (await facts.frame(*month, full=False)).report(*month)
        rows = len(await facts.frame(*year))
        progress(f"month: {r.volume['tickets']} tickets, satisfaction {r.quality['satisfaction_rate']:.3f}, "
                 f"{len(r.rankings['crew'])} crews ranked; year: {rows} rows")
        emit("report_month_ms", round(await _ms(report(month)), 1), "ms")
        emit("report_year_ms", round(await _ms(report(year)), 1), "ms")
        emit("report_month_district_ms", round(await _ms(report(month, district=("D03",))), 1), "ms")
        emit("report_day_ms", round(await _ms(report(day)), 1), "ms")
    finally:
        await db.close()


def main() -> None:
    """Start (or use) PostgreSQL, load the year, measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=TICKETS, help="tickets in the year")
    parser.add_argument("--month-tickets", type=int, default=MONTH_TICKETS, help="of which in November")
    parser.add_argument("--no-events", action="store_true", help="COPY only the facts, not tickets and events")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    workdir = proc = None
    try:
        if not url:
            from servers import postgres as pg_server
            from servers.embedded import free_port

            workdir = Path(tempfile.mkdtemp(prefix="bench-reports-"))
            proc, url = pg_server.start(workdir, free_port(), options={"shared_buffers": SHARED_BUFFERS})
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT count(*) FROM kpi_facts").fetchone()[0]:
                raise SystemExit("bench.reports: kpi_facts is not empty; give it an empty database")
        t = time.perf_counter()
        fold_s = load(url, args.tickets, args.month_tickets, events=not args.no_events)
        progress(f"loaded in {time.perf_counter() - t:.0f} s")
        emit("kpi_fold_us", round(fold_s * 1e6, 2), "us")
        asyncio.run(measure(url))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
