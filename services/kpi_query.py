"""Report queries: the period and filters read from request (or command-line) arguments, the
report payload, and the ticket rows behind a number, a page at a time.

Shared by the report API (`web.handlers.reports`), its exports and the ``python -m center kpi``
command (`report_command`), so the page, the files and the command show the same report for the
same query.
A report reads its period's KPI rows from PostgreSQL (`services.kpi_service.KpiService.frame`);
the command computes the same payload from a `command.kpi.KpiState` rebuilt from the events.
A bad argument raises `command.errors.ValidationError` naming it (the API answers 400).

Periods: ``day``, ``week``, ``month``, ``year`` (the calendar period holding ``date``), or
``range`` from ``from`` to ``to`` (both days included; at most `MAX_RANGE_DAYS`); days begin at
00:00 in the center's time zone.
"""
from __future__ import annotations

import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from typing import Any, TextIO

import numpy as np
import orjson
import psycopg

from command.errors import ValidationError
from command.kpi import (
    CATEGORIES, CHANNELS, COLORS, DRILL_GROUPS, STATES, TYPES, KpiFrame, KpiState, period_of, range_period,
)
from command.kpi_report import DRILL_METRICS
from command.kpi_units import SCORE_PENALTIES, SCORE_POINTS, UNIT_DRILLS, drill_unit, unit_rows
from command.limits import LimitPolicy
from command.ticket_model import CENTER_TZ
from services.kpi_service import PROGRESS_EVERY_S, KpiService, rebuild_from_db

PERIOD_KINDS = {"day": "daily", "week": "weekly", "month": "monthly", "year": "yearly"}
REPORT_KINDS = (*PERIOD_KINDS, "range")
MAX_RANGE_DAYS = 1827  # five years
FILTERS = ("category", "district", "unit")
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_MAX_VALUES = 20

Getter = Callable[[str], "str | None"]


@dataclass(frozen=True)
class ReportQuery:
    """A report's period (the day, week, month or year holding `day`, or the days `day` to `last`
    for a range) and optional filters."""

    kind: str
    day: date
    category: tuple[str, ...] = ()
    district: tuple[str, ...] = ()
    unit: tuple[str, ...] = ()
    last: date | None = None

    def bounds(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """[start, end) of the period in `tz` (days begin at 00:00 local time)."""
        if self.kind == "range":
            return range_period(self.day, self.last or self.day, tz)
        return period_of(PERIOD_KINDS[self.kind], self.day, tz)

    def filters(self) -> dict[str, str | list[str] | None]:
        """Filters as `KpiState.report` takes them: None, one value, or a list of values."""
        return {name: _one_or_many(getattr(self, name)) for name in FILTERS}

    def period(self, tz: tzinfo) -> dict[str, str]:
        """The period as the payload echoes it: kind, date, start, end (and from/to for a range)."""
        start, end = self.bounds(tz)
        out = {"kind": self.kind, "date": self.day.isoformat(), "start": start.isoformat(), "end": end.isoformat()}
        if self.kind == "range":
            out.update({"from": self.day.isoformat(), "to": (self.last or self.day).isoformat()})
        return out


@dataclass(frozen=True)
class DrillQuery:
    """Which number of the report to open: a metric, optionally within one group."""

    metric: str
    group_by: str | None = None
    group: str | int | None = None


def _one_or_many(values: tuple[str, ...]) -> str | list[str] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def _values(get: Getter, name: str) -> tuple[str, ...]:
    raw = (get(name) or "").strip()
    values = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    if len(values) > _MAX_VALUES:
        raise ValidationError(name, f"at most {_MAX_VALUES} values")
    for value in values:
        if name == "category" and value not in CATEGORIES:
            raise ValidationError(name, f"{value!r} is not one of: {', '.join(CATEGORIES)}")
        if not _ID.match(value):
            raise ValidationError(name, f"{value!r} is not an identifier (letters, digits, _ . -)")
    return values


def _day(get: Getter, name: str, default: date | None) -> date:
    raw = (get(name) or "").strip()
    if not raw:
        if default is None:
            raise ValidationError(name, "is required for period=range (YYYY-MM-DD)")
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValidationError(name, f"must be a date YYYY-MM-DD, got {raw!r}") from None
    if not 2000 <= day.year <= 2100:
        raise ValidationError(name, "must be within the years 2000..2100")
    return day


def parse_query(get: Getter, *, today: date) -> ReportQuery:
    """The report query of `period` (day, week, month, year or range; range when `from`/`to` are
    given without a period), `date` (YYYY-MM-DD, default `today`), `from` and `to` (a range's first
    and last day), `category`, `district` and `unit` (each empty, one value, or comma-separated)."""
    ranged = bool((get("from") or "").strip() or (get("to") or "").strip())
    kind = (get("period") or ("range" if ranged else "day")).strip()
    if kind not in REPORT_KINDS:
        raise ValidationError("period", f"must be one of: {', '.join(REPORT_KINDS)}, got {kind!r}")
    filters = tuple(_values(get, name) for name in FILTERS)
    if kind != "range":
        return ReportQuery(kind, _day(get, "date", today), *filters)
    first, last = _day(get, "from", None), _day(get, "to", None)
    if last < first:
        raise ValidationError("to", f"must not be before from ({first.isoformat()})")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise ValidationError("to", f"a range holds at most {MAX_RANGE_DAYS} days")
    return ReportQuery("range", first, *filters, last=last)


def parse_drill(get: Getter) -> DrillQuery:
    """The drill-down of `metric` (a `DRILL_METRICS` key), optionally `group` (one of
    `DRILL_GROUPS`) = `key` (an hour 0..23 for the hour group)."""
    metric = (get("metric") or "").strip()
    if metric not in DRILL_METRICS:
        raise ValidationError("metric", f"unknown metric {metric!r}")
    group_by = (get("group") or "").strip() or None
    if group_by is None:
        return DrillQuery(metric)
    if group_by not in DRILL_GROUPS:
        raise ValidationError("group", f"must be one of: {', '.join(DRILL_GROUPS)}")
    key = (get("key") or "").strip()
    if not key:
        raise ValidationError("key", "is required with group")
    if group_by != "hour":
        return DrillQuery(metric, group_by, key)
    if not key.isdigit() or not 0 <= int(key) <= 23:
        raise ValidationError("key", "an hour must be an integer 0..23")
    return DrillQuery(metric, group_by, int(key))


def parse_unit_drill(get: Getter) -> tuple[str, str]:
    """(unit id, metric) of a unit report drill-down: `unit_id` (an identifier) and `metric` (a
    `command.kpi_units.UNIT_DRILLS` key)."""
    unit_id = (get("unit_id") or "").strip()
    if not _ID.match(unit_id):
        raise ValidationError("unit_id", "is required: a unit id (letters, digits, _ . -)")
    metric = (get("metric") or "").strip()
    if metric not in UNIT_DRILLS:
        raise ValidationError("metric", f"unknown unit metric {metric!r}; one of: {', '.join(UNIT_DRILLS)}")
    return unit_id, metric


def units_payload(frame: KpiFrame, query: ReportQuery, tz: tzinfo, tree: list[dict[str, Any]]) -> dict[str, Any]:
    """The unit report (单位考核) of a frame read for the query (its filters applied by the read):
    ``{"period", "units": ranked rows (`command.kpi_units.unit_rows`), "score": the formula's
    points and penalties, "drill_metrics": the metrics a row's numbers drill into}``."""
    start, end = query.bounds(tz)
    rows = unit_rows(frame.columns(), frame.codes["unit"].names, start, end, tree)
    return {"period": query.period(tz), "filters": query.filters(), "units": rows,
            "score": {"points": SCORE_POINTS, "penalties": SCORE_PENALTIES}, "drill_metrics": list(UNIT_DRILLS)}


def unit_drill_rows(frame: KpiFrame, query: ReportQuery, tz: tzinfo, tree: list[dict[str, Any]],
                    unit_id: str, metric: str) -> np.ndarray:
    """Row indices behind one number of a unit's row, newest first."""
    start, end = query.bounds(tz)
    return frame.newest_first(drill_unit(frame.columns(), frame.codes["unit"].names, start, end, tree,
                                         unit_id, metric))


def state_payload(state: KpiState, query: ReportQuery, tz: tzinfo) -> dict[str, Any]:
    """``{"period": {...}, "report": Report.to_dict()}`` of the query over a state or a frame."""
    start, end = query.bounds(tz)
    report = state.report(start, end, tz=tz, **query.filters())
    return {"period": query.period(tz), "report": report.to_dict()}


async def query_frame(kpi: KpiService, query: ReportQuery, tz: tzinfo, *, numbers: bool = False,
                      full: bool = True) -> KpiFrame:
    """The KPI rows of the query's period and filters, read from PostgreSQL (``full=False``: only
    what a report reads, for `state_payload` alone; see `store.kpi.KpiFacts.frame`)."""
    start, end = query.bounds(tz)
    return await kpi.frame(start, end, category=query.category, district=query.district, unit=query.unit,
                           numbers=numbers, full=full)


async def report_payload(kpi: KpiService, query: ReportQuery, tz: tzinfo) -> dict[str, Any]:
    """The report payload of the query (the API's answer), from the report's columns alone."""
    return state_payload(await query_frame(kpi, query, tz, full=False), query, tz)


def drill_rows(frame: KpiFrame, query: ReportQuery, drill: DrillQuery, tz: tzinfo) -> np.ndarray:
    """Row indices of the frame behind one number of the report, newest first."""
    start, end = query.bounds(tz)
    rows = frame.select(start, end, drill.metric, group_by=drill.group_by, group=drill.group, tz=tz,
                        **query.filters())
    return frame.newest_first(rows)


def report_rows(frame: KpiFrame, query: ReportQuery, tz: tzinfo) -> np.ndarray:
    """Row indices of every ticket the report counts (created or resolved in the period), newest first."""
    start, end = query.bounds(tz)
    filters = query.filters()
    rows = np.union1d(frame.select(start, end, "created", tz=tz, **filters),
                      frame.select(start, end, "resolved", tz=tz, **filters))
    return frame.newest_first(rows)


async def ticket_pages(kpi: KpiService, frame: KpiFrame, rows: np.ndarray, *,
                       page: int = 1000) -> AsyncIterator[list[dict[str, Any]]]:
    """Brief rows of the frame's `rows` (in order), `page` at a time, numbers read per page from SQL."""
    for at in range(0, len(rows), page):
        chunk = rows[at:at + page]
        numbers = await kpi.facts.numbers_of(frame.ids[chunk].tolist())
        yield [frame_row(frame, int(i), numbers.get(int(frame.ids[i]), "")) for i in chunk.tolist()]


def _iso_z(epoch: float) -> str | None:
    if epoch != epoch:  # NaN
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def _enum(values: tuple[str, ...], code: int) -> str | None:
    return values[code] if 0 <= code < len(values) else None


def frame_row(frame: KpiFrame, i: int, number: str) -> dict[str, Any]:
    """A ticket's brief row as its KPI row tells it (times UTC ISO-8601 with Z); the caller adds
    the masked phone from the ticket record."""
    cols = frame.columns()

    def name(group: str) -> str | None:
        code = int(cols[group][i])
        names = frame.codes[group].names
        return names[code] if 0 <= code < len(names) else None

    return {"number": number, "created": _iso_z(float(cols["created"][i])),
            "resolved": _iso_z(float(cols["resolved"][i])),
            "channel": _enum(CHANNELS, int(cols["channel"][i])),
            "category": _enum(CATEGORIES, int(cols["category"][i])),
            "type": _enum(TYPES, int(cols["type"][i])), "district": name("district"), "unit": name("unit"),
            "crew": name("crew"), "state": _enum(STATES, int(cols["state"][i])),
            "color": _enum(COLORS, int(cols["color"][i]))}


def report_command(database_url: str, args: Mapping[str, Any], *, tz: tzinfo = CENTER_TZ,
                   policy: LimitPolicy | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``python -m center kpi``: rebuild from the audit events alone and print the report JSON
    (the shape of GET /api/reports/kpi) on `out`, progress on `err`. Returns the exit status.
    `policy` is the one of the settings files (`config.limit_files.load_policy`; default
    `shipped_policy`)."""
    today = datetime.now(timezone.utc).astimezone(tz).date()
    try:
        query = parse_query(lambda name: args.get(name), today=today)
    except ValidationError as exc:
        print(f"kpi: {exc}", file=err)
        return 2
    started = last = time.monotonic()

    def progress(events: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            print(f"kpi rebuild: {events} events so far", file=err, flush=True)

    try:
        state = rebuild_from_db(database_url, policy=policy, progress=progress)
    except psycopg.OperationalError as exc:
        print(f"kpi: PostgreSQL unavailable: {exc}", file=err)
        return 1
    print(f"kpi rebuild: {len(state)} tickets in {time.monotonic() - started:.1f} s", file=err, flush=True)
    out.write(orjson.dumps(state_payload(state, query, tz), option=orjson.OPT_INDENT_2).decode() + "\n")
    out.flush()
    return 0
