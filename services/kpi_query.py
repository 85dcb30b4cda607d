"""Report queries over a `command.kpi.KpiState`: the period and filters read from request (or
command-line) arguments, the report payload, and the ticket rows behind a number.

Shared by the report API (`web.handlers.reports`), its exports and the ``python -m center kpi``
command, so the page, the files and the command show the same report for the same query.
A bad argument raises `command.errors.ValidationError` naming it (the API answers 400).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from typing import Any

import numpy as np

from command.errors import ValidationError
from command.kpi import CATEGORIES, DRILL_GROUPS, KpiState, TicketFacts, period_of
from command.kpi_report import DRILL_METRICS

PERIOD_KINDS = {"day": "daily", "week": "weekly", "month": "monthly"}
FILTERS = ("category", "district", "unit")
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_MAX_VALUES = 20

Getter = Callable[[str], "str | None"]


@dataclass(frozen=True)
class ReportQuery:
    """A report's period (day, week or month holding `day`) and optional filters."""

    kind: str
    day: date
    category: tuple[str, ...] = ()
    district: tuple[str, ...] = ()
    unit: tuple[str, ...] = ()

    def bounds(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """[start, end) of the period in `tz` (days begin at 00:00 local time)."""
        return period_of(PERIOD_KINDS[self.kind], self.day, tz)

    def filters(self) -> dict[str, str | list[str] | None]:
        """Filters as `KpiState.report` takes them: None, one value, or a list of values."""
        return {name: _one_or_many(getattr(self, name)) for name in FILTERS}


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


def parse_query(get: Getter, *, today: date) -> ReportQuery:
    """The report query of `period`, `date` (YYYY-MM-DD, default `today`), `category`,
    `district` and `unit` (each empty, one value, or comma-separated values)."""
    kind = (get("period") or "day").strip()
    if kind not in PERIOD_KINDS:
        raise ValidationError("period", f"must be one of: {', '.join(PERIOD_KINDS)}, got {kind!r}")
    raw_day = (get("date") or "").strip()
    try:
        day = date.fromisoformat(raw_day) if raw_day else today
    except ValueError:
        raise ValidationError("date", f"must be a date YYYY-MM-DD, got {raw_day!r}") from None
    if not 2000 <= day.year <= 2100:
        raise ValidationError("date", "must be within the years 2000..2100")
    return ReportQuery(kind, day, *(_values(get, name) for name in FILTERS))


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


def report_payload(state: KpiState, query: ReportQuery, tz: tzinfo) -> dict[str, Any]:
    """``{"period": {kind, date, start, end}, "report": Report.to_dict()}`` of the query."""
    start, end = query.bounds(tz)
    report = state.report(start, end, tz=tz, **query.filters())
    return {"period": {"kind": query.kind, "date": query.day.isoformat(),
                       "start": start.isoformat(), "end": end.isoformat()},
            "report": report.to_dict()}


def _newest_first(state: KpiState, rows: np.ndarray) -> list[str]:
    created = state.columns()["created"][rows]
    order = np.argsort(np.nan_to_num(created, nan=-np.inf), kind="stable")[::-1]
    return state.numbers(rows[order])


def drill_numbers(state: KpiState, query: ReportQuery, drill: DrillQuery, tz: tzinfo) -> list[str]:
    """The ticket numbers behind one number of the report, newest first."""
    start, end = query.bounds(tz)
    rows = state.select(start, end, drill.metric, group_by=drill.group_by, group=drill.group, tz=tz,
                        **query.filters())
    return _newest_first(state, rows)


def report_numbers(state: KpiState, query: ReportQuery, tz: tzinfo) -> list[str]:
    """Every ticket the report counts (created or resolved in the period), newest first."""
    start, end = query.bounds(tz)
    filters = query.filters()
    rows = np.union1d(state.select(start, end, "created", tz=tz, **filters),
                      state.select(start, end, "resolved", tz=tz, **filters))
    return _newest_first(state, rows)


def _iso_z(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def ticket_row(facts: TicketFacts) -> dict[str, Any]:
    """A ticket's brief row as the audit events tell it (times UTC ISO-8601 with Z); the caller
    adds the masked phone from the ticket record."""
    return {"number": facts.number, "created": _iso_z(facts.created_at), "resolved": _iso_z(facts.resolved_at),
            "channel": facts.channel, "category": facts.category, "type": facts.type,
            "district": facts.district, "unit": facts.unit_id, "crew": facts.crew_id,
            "state": facts.state, "color": facts.color}


def ticket_rows(state: KpiState, numbers: list[str]) -> list[dict[str, Any]]:
    """Brief rows of tickets by number (in the given order)."""
    return [ticket_row(state.facts(n)) for n in numbers]
