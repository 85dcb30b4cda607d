"""Benchmark: KPI reports over a synthetic month of 300,000 tickets (a 12345 line's volume).

The month is generated as audit event dicts (the `event_to_dict` shape, ~2.5 M events) with
realistic lifecycles: create, dispatch (some declined and re-dispatched), accept, depart, arrive
(GPS or button), resolve, callback, close; some consultations closed on the call, transfers,
repeat calls, 110 handovers and reopened tickets (返工). Stage times are drawn vectorised.

Figures:
- kpi_rebuild_s: `rebuild` from all events of the month;
- report_month_ms: monthly report, no filter (median of 3); target ≤ 2000 ms;
- report_month_district_ms: the same with a district filter;
- report_day_ms: a daily report (the wall display's live KPIs);
- kpi_apply_us: `KpiState.apply` per live event; kpi_flush_us: writing one changed ticket's
  row when the next report needs it.
"""
from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, datetime, timedelta, timezone

import numpy as np

from bench.common import emit, progress
from command.kpi import day_period, month_period, rebuild

TICKETS = 300_000
CATEGORIES = ("water", "power", "gas", "heating", "drainage", "sanitation", "other")
CATEGORY_P = (0.30, 0.30, 0.08, 0.08, 0.10, 0.09, 0.05)
TYPES = ("repair", "complaint", "consultation", "service", "suggestion", "praise")
TYPE_P = (0.55, 0.15, 0.20, 0.05, 0.03, 0.02)
CHANNELS = ("phone", "web", "sms", "police_110", "sensor")
CHANNEL_P = (0.80, 0.10, 0.05, 0.03, 0.02)
HOUR_P = np.array([1, 1, 1, 1, 1, 2, 4, 6, 8, 9, 9, 8, 7, 7, 8, 8, 8, 8, 9, 9, 8, 6, 4, 2], dtype=float)
EMPTY: dict = {}


def _iso(epoch: np.ndarray) -> list[str]:
    """ISO-8601 UTC strings of epoch seconds, vectorised."""
    stamps = (epoch * 1e3).astype("int64").astype("datetime64[ms]")
    return [s + "+00:00" for s in np.datetime_as_string(stamps, unit="s").tolist()]


def generate(n: int = TICKETS, seed: int = 8, *, month: tuple[int, int] = (2026, 11),
             prefix: str = "GD202611") -> list[dict]:
    """Audit event dicts of `n` tickets created over one month, ordered by time."""
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
    events: list[tuple[float, dict]] = []
    add = events.append
    sats = ("satisfied", "basically_satisfied", "satisfied", "unreachable")
    progress(f"building events of {n} tickets")
    for i in range(n):
        number = f"{prefix}{1 + i // 20000:02d}-{i % 20000 + 1:05d}"

        def ev(at: float, key: str, action: str, frm: str | None, to: str, role: str = "dispatcher",
               data: dict = EMPTY) -> None:
            add((at, {"ticket_number": number, "action": action, "from_state": frm, "to_state": to,
                      "actor_id": "u", "role": role, "at": iso[key][i], "note": "", "data": data}))
        ev(created[i], "c", "create", None, "new", "agent", {
            "channel": CHANNELS[channel[i]], "category": CATEGORIES[category[i]], "type": TYPES[type_[i]],
            "district": f"D{district[i]:02d}", "grid": f"G{grid[i]:04d}", "unit_id": f"U{unit[i]:03d}",
            "area_class": ("urban", "rural", "remote")[area[i]], "lon": float(lon[i]), "lat": float(lat[i])})
        if direct[i]:
            ev(created[i] + 1, "direct", "close_direct", "new", "closed", "agent", {"answer": "已答复"})
            continue
        if police[i]:
            ev(created[i] + 1, "c", "note", "new", "new", "dispatcher", {"data": {"police": "handover"}})
            ev(created[i] + 2, "c", "note", "new", "new", "system", {"data": {"police": "ack"}})
        if repeat[i]:
            ev(created[i] + 3, "c", "repeat_call", "new", "new", "agent")
        if transfer[i]:
            ev(t_transfer[i], "tr", "transfer", "new", "transferred", "dispatcher", {"unit_id": f"U{unit[i] + 1:03d}"})
        crew_id = f"C{crew[i]:05d}"
        ev(t_dispatch[i], "d", "dispatch", "new", "dispatched", data={"crew_id": crew_id})
        if decline[i]:
            ev(t_redispatch[i] - 30, "rd", "decline", "dispatched", "declined", "crew", {"reason": "忙"})
            crew_id = f"C{crew[i] + 1:05d}"
            ev(t_redispatch[i], "rd", "dispatch", "declined", "dispatched", data={"crew_id": crew_id})
        ev(t_accept[i], "a", "accept", "dispatched", "accepted", "crew")
        ev(t_depart[i], "dp", "depart", "accepted", "en_route", "crew")
        ev(t_arrive[i], "ar", "arrive", "en_route", "on_site", "system" if gps[i] else "crew",
           {"source": "gps"} if gps[i] else EMPTY)
        ev(t_resolve[i], "rs", "resolve", "on_site", "resolved", "crew", {"resolution": "已修复"})
        ev(t_resolve[i] + 1, "rs", "queue_callback", "resolved", "callback", "system")
        if reopen[i]:
            ev(t_callback[i], "cb", "reopen", "callback", "reopened", "agent", {"reason": "没修好"})
            if still_open[i]:
                continue
            ev(t_redo[i], "ro", "dispatch", "reopened", "dispatched", data={"crew_id": crew_id})
            ev(t_redo[i] + 60, "ro", "accept", "dispatched", "accepted", "crew")
            ev(t_redo[i] + 120, "ro", "arrive", "accepted", "on_site", "crew")
            ev(t_reresolve[i], "rr", "resolve", "on_site", "resolved", "crew", {"resolution": "已修复"})
            ev(t_reresolve[i] + 1, "rr", "queue_callback", "resolved", "callback", "system")
            ev(t_close[i], "cl", "close", "callback", "closed", "agent", {"satisfaction": "satisfied"})
        else:
            ev(t_callback[i], "cb", "close", "callback", "closed", "agent", {"satisfaction": sats[sat[i]]})
    progress(f"sorting {len(events)} events by time")
    order = np.argsort(np.fromiter((t for t, _ in events), dtype=np.float64, count=len(events)), kind="stable")
    return [events[k][1] for k in order.tolist()]


def _ms(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    """Generate the month, rebuild, report, apply; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=TICKETS)
    args = parser.parse_args()
    t = time.perf_counter()
    events = generate(args.tickets)
    progress(f"generated {len(events)} events in {time.perf_counter() - t:.1f} s")
    emit("kpi_events_k", len(events) / 1000, "thousand events")
    t = time.perf_counter()
    state = rebuild(events)
    emit("kpi_rebuild_s", round(time.perf_counter() - t, 2), "s")
    del events
    month = month_period(2026, 11)
    report = state.report(*month)
    progress(f"month: {report.volume['tickets']} tickets, satisfaction {report.quality['satisfaction_rate']:.3f}, "
             f"{len(report.rankings['crew'])} crews ranked")
    emit("report_month_ms", round(_ms(lambda: state.report(*month)), 1), "ms")
    emit("report_month_district_ms", round(_ms(lambda: state.report(*month, district="D03")), 1), "ms")
    emit("report_day_ms", round(_ms(lambda: state.report(*day_period(date(2026, 11, 20)))), 1), "ms")
    live = generate(3000, seed=9, month=(2026, 12), prefix="GD202612")
    t = time.perf_counter()
    for event in live:
        state.apply(event)
    emit("kpi_apply_us", round((time.perf_counter() - t) / len(live) * 1e6, 2), "us")
    t = time.perf_counter()
    state.flush()
    emit("kpi_flush_us", round((time.perf_counter() - t) / 3000 * 1e6, 2), "us")
    start = datetime(2026, 12, 1, tzinfo=timezone(timedelta(hours=8)))
    progress(f"live December tickets: {state.report(start, start + timedelta(days=40)).volume['tickets']}")


if __name__ == "__main__":
    main()
