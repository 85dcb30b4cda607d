"""Report assembly and drill-down over the KPI columns (pure numpy; used by `command.kpi`).

Every count in a `Report` has a drill-down: `KpiState.drill(start, end, metric, group_by=...,
group=...)` returns the ticket numbers behind it. `DRILL_METRICS` names the metrics; each
ranking row carries `drill` = {"group_by", "group"} and `Report.drill_metrics` maps each
ranking field to its metric, so the UI opens the tickets behind any number in one click.

Ranking score (考核得分): 100 × the mean of the rates the group has among on-time rate (all
judged stages together), first-time fix rate and satisfaction rate; ranked by score (groups
without any rate last), then by resolved tickets, then by name.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import numpy as np

from command.errors import ValidationError
from command.kpi_facts import CALLBACK_RESULTS, CATEGORIES, CHANNELS, COLORS, STAGES, STATES, TYPES
from command.kpi_stats import (
    DAY_S, clean, grouped_sorted, local_day_index, local_hour, rate, summary, value_sorted,
)

Cols = dict[str, np.ndarray]
IdNames = Mapping[str, Sequence[str]]  # id column (district, grid, unit, crew) -> its names by code
DURATION_BASIS = {  # which period membership a duration is counted by
    "dispatch_time_s": "created", "acceptance_time_s": "created", "arrival_time_s": "created",
    "repair_time_s": "resolved", "resolution_time_s": "resolved", "callback_time_s": "resolved",
    "police_ack_s": "created",
}
STAGE_BASIS = {"dispatch": "created", "accept": "created", "arrive": "created",
               "resolve": "resolved", "callback": "resolved"}
GROUPED_TIMES = ("dispatch_time_s", "acceptance_time_s", "arrival_time_s", "repair_time_s",
                 "resolution_time_s")
TIME_GROUPS = ("category", "unit", "crew", "district")
DRILL_GROUPS = ("channel", "category", "type", "district", "grid", "unit", "crew", "color", "hour")
_ENUM_GROUPS = {"channel": CHANNELS, "category": CATEGORIES, "type": TYPES, "color": COLORS}
_SAT = (CALLBACK_RESULTS.index("satisfied"), CALLBACK_RESULTS.index("basically_satisfied"))
_REACHED = _SAT + (CALLBACK_RESULTS.index("dissatisfied"),)


class _Ctx:
    """Period membership masks of one report or drill-down."""

    def __init__(self, cols: Cols, base: np.ndarray, start: datetime, end: datetime) -> None:
        s, e = start.timestamp(), end.timestamp()
        self.cols = cols
        self.created = base & (cols["created"] >= s) & (cols["created"] < e)
        self.resolved = base & (cols["resolved"] >= s) & (cols["resolved"] < e)
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._grouped: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
        self._masks: dict[str, np.ndarray] = {}
        self._weights: dict[tuple[str, ...], np.ndarray] = {}

    def weight(self, metrics: tuple[str, ...]) -> np.ndarray:
        """Per row, how many of the metrics' masks hold it, as float64 (bincount weights; cached)."""
        hit = self._weights.get(metrics)
        if hit is None:
            total = np.zeros(len(self.created), dtype=np.float64)
            for metric in metrics:
                total += self.mask(metric)
            hit = self._weights[metrics] = total
        return hit

    def mask(self, metric: str) -> np.ndarray:
        """The rows behind a `DRILL_METRICS` metric (cached: rankings and sections share them)."""
        hit = self._masks.get(metric)
        if hit is None:
            hit = self._masks[metric] = DRILL_METRICS[metric](self)
        return hit

    def sorted_values(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, values) of a duration within its period basis, ascending by value (cached)."""
        hit = self._sorted.get(metric)
        if hit is None:
            rows = np.flatnonzero(self.basis(DURATION_BASIS[metric]))
            order, values = value_sorted(self.cols[metric][rows])
            hit = self._sorted[metric] = (rows[order], values)
        return hit

    def grouped(self, group: str, metric: str, n_groups: int) -> tuple[np.ndarray, ...]:
        """(count, mean, median, p90) per code of `group` of a duration within its basis (cached)."""
        hit = self._grouped.get((group, metric))
        if hit is None:
            rows, values = self.sorted_values(metric)
            hit = self._grouped[(group, metric)] = grouped_sorted(self.cols[group][rows], values, n_groups)
        return hit

    def basis(self, name: str) -> np.ndarray:
        """The created-in or resolved-in mask."""
        return self.created if name == "created" else self.resolved

    def callback_due(self) -> np.ndarray:
        """Resolved in the period and due a callback (not closed on the call)."""
        return self.resolved & (self.cols["closed_on_call"] == 0)

    def callback_done(self) -> np.ndarray:
        """Callbacks that reached the citizen."""
        return self.callback_due() & np.isin(self.cols["callback_result"], _REACHED)

    def ftf(self) -> np.ndarray:
        """Resolved in the period, once, never reopened."""
        return self.resolved & (self.cols["resolved_count"] == 1) & (self.cols["reopen_count"] == 0)


def _metrics() -> dict[str, Callable[[_Ctx], np.ndarray]]:
    m: dict[str, Callable[[_Ctx], np.ndarray]] = {
        "created": lambda x: x.created,
        "resolved": lambda x: x.resolved,
        "repeat": lambda x: x.created & (x.cols["repeat_calls"] > 0),
        "duplicate": lambda x: x.created & (x.cols["duplicate_calls"] > 0),
        "red": lambda x: x.created & (x.cols["color"] == COLORS.index("red")),
        "orange": lambda x: x.created & (x.cols["color"] == COLORS.index("orange")),
        "closed_on_call": lambda x: x.created & (x.cols["closed_on_call"] == 1),
        "merged": lambda x: x.created & (x.cols["state"] == _state("merged")),
        "cancelled": lambda x: x.created & (x.cols["state"] == _state("cancelled")),
        "open": lambda x: x.created & ~np.isin(x.cols["state"], [_state(s) for s in ("closed", "cancelled", "merged")]),
        "police_handover": lambda x: x.created & (x.cols["police_handover"] == 1),
        "police_transfer_in": lambda x: x.created & (x.cols["channel"] == CHANNELS.index("police_110")),
        "first_time_fix": lambda x: x.ftf(),
        "reopened": lambda x: x.resolved & (x.cols["reopen_count"] > 0),
        "transferred": lambda x: x.created & (x.cols["transfer_count"] > 0),
        "callback_due": lambda x: x.callback_due(),
        "callback_done": lambda x: x.callback_done(),
        "satisfied_or_basically": lambda x: x.callback_due() & np.isin(x.cols["callback_result"], _SAT),
    }
    for i, result in enumerate(CALLBACK_RESULTS):
        m[result] = lambda x, i=i: x.callback_due() & (x.cols["callback_result"] == i)
    for stage in STAGES:
        for suffix, test in (("due", lambda c: c >= 0), ("met", lambda c: c == 1), ("missed", lambda c: c == 0)):
            m[f"{stage}_on_time_{suffix}"] = (lambda x, stage=stage, test=test:
                                      x.basis(STAGE_BASIS[stage]) & test(x.cols[f"met_{stage}"]))
    m["on_time_missed"] = lambda x: np.logical_or.reduce([x.mask(f"{s}_on_time_missed") for s in STAGES])
    for name, basis in DURATION_BASIS.items():
        m[name] = lambda x, name=name, basis=basis: x.basis(basis) & np.isfinite(x.cols[name])
    return m


def _state(name: str) -> int:
    return STATES.index(name)


DRILL_METRICS: dict[str, Callable[[_Ctx], np.ndarray]] = _metrics()
RANKING_FIELDS = {"tickets": "created", "resolved": "resolved", "arrival_time_s_mean": "arrival_time_s",
                  "repair_time_s_mean": "repair_time_s", "late_tickets": "on_time_missed",
                  "first_time_fix": "first_time_fix", "reopened": "reopened",
                  "callbacks_done": "callback_done", "satisfied": "satisfied_or_basically"}


@dataclass(frozen=True)
class Report:
    """A KPI report of one period: JSON-safe sections, units in the field names (…_s, …_rate)."""

    period_start: str
    period_end: str
    tz: str
    filters: dict[str, Any]
    volume: dict[str, Any]
    series: list[dict[str, Any]]
    intake: dict[str, Any]
    times: dict[str, Any]
    times_by: dict[str, dict[str, dict[str, Any]]]
    on_time: dict[str, Any]
    quality: dict[str, Any]
    rankings: dict[str, list[dict[str, Any]]]
    drill_metrics: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The report as plain dicts and lists (for JSON, CSV and XLSX exports)."""
        return dataclasses.asdict(self)


def _names(id_names: IdNames, group_by: str) -> Sequence[str]:
    return _ENUM_GROUPS[group_by] if group_by in _ENUM_GROUPS else id_names[group_by]


def _by(id_names: IdNames, cols: Cols, column: str, mask: np.ndarray) -> dict[str, int]:
    names = _names(id_names, column)
    codes = cols[column][mask]
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    if column in _ENUM_GROUPS:
        return {n: int(c) for n, c in zip(names, counts)}
    return {names[i]: int(counts[i]) for i in np.flatnonzero(counts)}


def _stats(prefix: str, values: np.ndarray, ascending: np.ndarray | None = None) -> dict[str, Any]:
    n, mean, median, p90 = summary(values, ascending)
    return {f"{prefix}_count": n, f"{prefix}_mean": mean, f"{prefix}_median": median, f"{prefix}_p90": p90}


def _counts(codes: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Per code 0..n-1 the sum of the rows' weights (counts: whole numbers, exact in float64); a
    weighted bincount over every row costs less than selecting a mask's rows first."""
    return np.bincount(codes, weights=weights, minlength=n + 1)[:n].astype(np.int64)


def _times_by(id_names: IdNames, ctx: _Ctx) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for group in TIME_GROUPS:
        names = _names(id_names, group)
        table: dict[str, dict[str, Any]] = {}
        for metric in GROUPED_TIMES:
            count, mean, median, p90 = ctx.grouped(group, metric, len(names))
            has = np.flatnonzero(count)
            keys = (f"{metric}_count", f"{metric}_mean", f"{metric}_median", f"{metric}_p90")
            for i, n, m, med, p in zip(has.tolist(), count[has].tolist(), mean[has].tolist(),
                                       median[has].tolist(), p90[has].tolist()):  # Python numbers
                table.setdefault(names[i], {}).update(zip(keys, (n, clean(m), clean(med), clean(p))))
        out[group] = table
    return out


def _rankings(id_names: IdNames, ctx: _Ctx, group: str) -> list[dict[str, Any]]:
    cols, names = ctx.cols, _names(id_names, group)
    n = len(names)
    codes = np.where(cols[group] >= 0, cols[group], n)  # no group: counted past the last code, dropped

    def counts(*metrics: str) -> np.ndarray:  # rows per group, summed over the metrics' masks
        return _counts(codes, ctx.weight(metrics), n)

    tickets, resolved = counts("created"), counts("resolved")
    arrival, repair = ctx.grouped(group, "arrival_time_s", n), ctx.grouped(group, "repair_time_s", n)
    due = counts(*(f"{s}_on_time_due" for s in STAGES))
    met = counts(*(f"{s}_on_time_met" for s in STAGES))
    late, ftf, reopened = counts("on_time_missed"), counts("first_time_fix"), counts("reopened")
    done, sat = counts("callback_done"), counts("satisfied_or_basically")
    rows = []
    for i in np.flatnonzero((tickets > 0) | (resolved > 0)):
        rates = {"on_time_rate": rate(int(met[i]), int(due[i])),
                 "first_time_fix_rate": rate(int(ftf[i]), int(resolved[i])),
                 "reopen_rate": rate(int(reopened[i]), int(resolved[i])),
                 "satisfaction_rate": rate(int(sat[i]), int(done[i]))}
        scored = [rates[k] for k in ("on_time_rate", "first_time_fix_rate", "satisfaction_rate") if rates[k] is not None]
        rows.append({
            f"{group}_id": names[i], "tickets": int(tickets[i]), "resolved": int(resolved[i]),
            "arrival_time_s_mean": clean(arrival[1][i]), "arrival_time_s_p90": clean(arrival[3][i]),
            "repair_time_s_mean": clean(repair[1][i]), "on_time_due": int(due[i]), "on_time_met": int(met[i]),
            "late_tickets": int(late[i]),
            "first_time_fix": int(ftf[i]), "reopened": int(reopened[i]), "callbacks_done": int(done[i]),
            "satisfied": int(sat[i]), **rates,
            "score": None if not scored else 100.0 * sum(scored) / len(scored),
            "drill": {"group_by": group, "group": names[i]},
        })
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0), -r["resolved"], r[f"{group}_id"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def _series(cols: Cols, ctx: _Ctx, start: datetime, end: datetime, tz: tzinfo) -> list[dict[str, Any]]:
    first = start.astimezone(tz).date()
    days = max(1, int(np.ceil((end.timestamp() - start.timestamp()) / DAY_S)))
    out = []
    counts = {}
    for key, mask, column in (("created", ctx.created, "created"), ("resolved", ctx.resolved, "resolved")):
        idx = local_day_index(cols[column][mask], start, tz)
        counts[key] = np.bincount(idx[(idx >= 0) & (idx < days)], minlength=days)
    for d in range(days):
        out.append({"day": (first + timedelta(days=d)).isoformat(),
                    "created": int(counts["created"][d]), "resolved": int(counts["resolved"][d])})
    return out


def build_report(id_names: IdNames, cols: Cols, base: np.ndarray, start: datetime, end: datetime,
                 tz: tzinfo, filters: dict[str, Any]) -> Report:
    """Assemble the report of [start, end) over the rows selected by `base`; `id_names` names the
    codes of the id columns."""
    ctx = _Ctx(cols, base, start, end)
    c_in, r_in = ctx.created, ctx.resolved
    created = int(c_in.sum())
    hours = np.bincount(local_hour(cols["created"][c_in], tz), minlength=24)
    volume = {"tickets": created, "resolved": int(r_in.sum()),
              **{f"by_{g}": _by(id_names, cols, g, c_in) for g in ("channel", "category", "type", "district", "unit")},
              "by_hour": [int(h) for h in hours]}
    count = {name: int(ctx.mask(name).sum()) for name in (
        "repeat", "duplicate", "red", "orange", "merged", "cancelled", "open", "closed_on_call", "transferred",
        "police_handover", "police_transfer_in")}
    intake = {**{f"{k}_tickets": v for k, v in count.items()},
              "repeat_calls": int(cols["repeat_calls"][c_in].sum()),
              "duplicate_calls": int(cols["duplicate_calls"][c_in].sum()),  # other callers, same problem
              "repeat_call_rate": rate(count["repeat"], created),
              "red_share": rate(count["red"], created), "orange_share": rate(count["orange"], created),
              "police_linkage_count": count["police_handover"] + count["police_transfer_in"],
              **_stats("police_ack_s", cols["police_ack_s"][c_in])}
    times: dict[str, Any] = {}
    for metric, basis in DURATION_BASIS.items():
        if metric in GROUPED_TIMES:  # sorted already for the groups' percentiles
            times.update(_stats(metric, cols[metric][ctx.basis(basis)], ctx.sorted_values(metric)[1]))
        elif metric != "police_ack_s":
            times.update(_stats(metric, cols[metric][ctx.basis(basis)]))
    on_time: dict[str, Any] = {}
    for stage in STAGES:
        due, met = int(ctx.mask(f"{stage}_on_time_due").sum()), int(ctx.mask(f"{stage}_on_time_met").sum())
        on_time.update({f"{stage}_on_time_due": due, f"{stage}_on_time_met": met,
                        f"{stage}_on_time_rate": rate(met, due)})
    resolved = int(r_in.sum())
    q = {name: int(ctx.mask(name).sum()) for name in (
        "first_time_fix", "reopened", "callback_due", "callback_done", *CALLBACK_RESULTS)}
    quality = {"resolved": resolved, **q,
               "first_time_fix_rate": rate(q["first_time_fix"], resolved),
               "reopen_rate": rate(q["reopened"], resolved),
               "callback_completion_rate": rate(q["callback_done"], q["callback_due"]),
               "satisfaction_rate": rate(q["satisfied"] + q["basically_satisfied"], q["callback_done"])}
    return Report(
        period_start=start.isoformat(), period_end=end.isoformat(), tz=str(tz),
        filters={k: v if v is None or isinstance(v, str) else list(v) for k, v in filters.items()},
        volume=volume, series=_series(cols, ctx, start, end, tz), intake=intake, times=times,
        times_by=_times_by(id_names, ctx), on_time=on_time, quality=quality,
        rankings={"unit": _rankings(id_names, ctx, "unit"), "crew": _rankings(id_names, ctx, "crew")},
        drill_metrics=dict(RANKING_FIELDS),
    )


def drill_mask(id_names: IdNames, cols: Cols, metric: str, start: datetime, end: datetime, tz: tzinfo,
               group_by: str | None, group: Any) -> np.ndarray:
    """Rows behind `metric` in [start, end), within one group when `group_by` is given (`id_names`
    as `build_report` takes it)."""
    if metric not in DRILL_METRICS:
        raise ValidationError("metric", f"unknown metric {metric!r}")
    ctx = _Ctx(cols, np.ones(len(cols["created"]), dtype=bool), start, end)
    mask = DRILL_METRICS[metric](ctx)
    if group_by is None:
        return mask
    if group_by not in DRILL_GROUPS:
        raise ValidationError("group_by", f"must be one of: {', '.join(DRILL_GROUPS)}")
    if group_by == "hour":
        if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group <= 23:
            raise ValidationError("group", "an hour must be an integer 0..23")
        hours = np.full(len(mask), -1)
        ok = np.isfinite(cols["created"])
        hours[ok] = local_hour(cols["created"][ok], tz)
        return mask & (hours == group)
    names = _names(id_names, group_by)
    code = names.index(group) if group in names else -2
    return mask & (cols[group_by] == code)
