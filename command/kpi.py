"""KPIs of the hotline computed from the audit events (pure: no clock, no storage).

Two paths that agree by construction and by test:

- `rebuild(events)` recomputes every ticket's facts from the event streams alone;
- `KpiState.apply(event)` folds one live event into its ticket (cheap: the ticket's row is
  rewritten lazily, when the next report or drill-down needs it).

Per-ticket facts (see `command.kpi_facts` for how each is read from the events) sit in columnar
numpy arrays, so `KpiState.report` computes a month of 300,000 tickets with vectorised masks,
bincounts and one sort per grouped percentile.

Periods (`day_period`, `week_period`, `month_period`) are [start, end) in the center's time
zone, days beginning at 00:00 Asia/Shanghai. A ticket counts in a period's volume, intake and
stage times (dispatch, acceptance, arrival) by its CREATION time, and in its resolution
statistics (repair and resolution time, resolve and callback limits, first-time fix, reopen,
callback and satisfaction) by its LAST RESOLUTION time: a ticket created at 23:50 and resolved
at 00:20 adds to the volume of the first day and to the resolutions of the second.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any

import numpy as np

from command.errors import ValidationError
from command.kpi_events import EventError, read_event
from command.kpi_facts import (  # noqa: F401  (re-exported: command.kpi is the public face)
    AREA_CLASSES, CALLBACK_RESULTS, CATEGORIES, CHANNELS, COLORS, STAGES, STATES, TYPES, URGENCIES,
    UNIT_COUNTS, LimitTable, TicketAccumulator, TicketFacts, facts_from_events,
)
from command.kpi_report import DRILL_GROUPS, Report, build_report, drill_mask
from command.kpi_stats import (  # noqa: F401
    day_period, group_summary, month_period, period_of, range_period, summary, week_period, year_period,
)
from command.limits import DEFAULT_POLICY, LimitPolicy
from command.ticket_model import CENTER_TZ

DURATIONS = ("dispatch_time_s", "acceptance_time_s", "arrival_time_s", "repair_time_s",
             "resolution_time_s", "callback_time_s", "police_ack_s")
ENUM_COLUMNS: dict[str, tuple[str, ...]] = {
    "channel": CHANNELS, "category": CATEGORIES, "type": TYPES, "urgency": URGENCIES,
    "area_class": AREA_CLASSES, "color": COLORS, "callback_result": CALLBACK_RESULTS, "state": STATES,
}
ID_COLUMNS = ("district", "grid", "unit", "crew")
TIME_COLUMNS = ("created", "resolved", "first_resolved")
COUNT_COLUMNS = ("resolved_count", "reopen_count", "transfer_count", "repeat_calls", "duplicate_calls",
                 "closed_on_call", "police_handover") + UNIT_COUNTS
MET_COLUMNS = tuple(f"met_{s}" for s in STAGES)
FLOAT_COLUMNS = TIME_COLUMNS + DURATIONS + ("lon", "lat")
INT_COLUMNS = tuple(ENUM_COLUMNS) + ID_COLUMNS + COUNT_COLUMNS + MET_COLUMNS
COLUMNS = FLOAT_COLUMNS + INT_COLUMNS
_ENUM_INDEX = {name: {v: i for i, v in enumerate(values)} for name, values in ENUM_COLUMNS.items()}


class Codes:
    """A growing dictionary of free identifiers (district, grid, unit, crew) to integer codes."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def code(self, name: str | None) -> int:
        """The code of `name` (added when new); -1 for None."""
        if name is None:
            return -1
        found = self.index.get(name)
        if found is None:
            found = self.index[name] = len(self.names)
            self.names.append(name)
        return found

    def lookup(self, name: str) -> int:
        """The code of a known name, -2 (matches nothing) for an unknown one."""
        return self.index.get(name, -2)


def _nan(x: Any) -> float:
    return np.nan if x is None else float(x)


def named_row(acc: TicketAccumulator, limits: LimitTable) -> tuple[Any, ...]:
    """A ticket's values in `COLUMNS` order, enum and identifier columns as names (None when
    absent), floats NaN when absent: the one definition of a ticket's KPI row, which `KpiState`
    codes in memory and `store.kpi` keeps per ticket in PostgreSQL."""
    a = acc.attrs
    floats = (_nan(acc.created), _nan(acc.last_resolved), _nan(acc.c0_resolved), *acc.durations(),
              _nan(a.get("lon")), _nan(a.get("lat")))
    enums = (a.get("channel"), a.get("category"), a.get("type"), a.get("urgency"), a.get("area_class"),
             COLORS[min(acc.repeat_calls, 2)], acc.callback_result, acc.state)
    ids = (a.get("district"), a.get("grid"), a.get("unit_id"), acc.crew_id())
    counts = (acc.resolved_count, acc.reopen_count, acc.transfer_count, acc.repeat_calls, acc.duplicate_calls,
              int(acc.closed_on_call), int(acc.handover is not None), *acc.unit_counts)
    return floats + enums + ids + counts + acc.limits_met(limits)


class KpiState:
    """Per-ticket KPI facts in columnar arrays, fed by `apply` or built by `rebuild`."""

    def __init__(self, *, policy: LimitPolicy = DEFAULT_POLICY, capacity: int = 1024) -> None:
        self.limits = LimitTable(policy)
        self.codes = {name: Codes() for name in ID_COLUMNS}
        self._acc: dict[str, TicketAccumulator] = {}
        self._rows: dict[str, int] = {}
        self._numbers: list[str] = []
        self._dirty: set[str] = set()
        self._cols = self._empty(max(capacity, 16))

    @staticmethod
    def _empty(capacity: int) -> dict[str, np.ndarray]:
        cols = {name: np.full(capacity, np.nan) for name in FLOAT_COLUMNS}
        cols.update({name: np.full(capacity, -1, dtype=np.int32) for name in INT_COLUMNS})
        return cols

    def __len__(self) -> int:
        return len(self._numbers)

    # ------------------------------------------------------------ feeding

    def apply(self, event: Mapping[str, Any] | Any, *, attributes: Mapping[str, Any] | None = None) -> None:
        """Fold one audit event (AuditEvent or its dict) into its ticket; `attributes` seed a new ticket."""
        number, action, at, data = read_event(event)
        acc = self._acc.get(number)
        if acc is None:
            acc = self._acc[number] = TicketAccumulator(number, attributes)
        to_state = getattr(event, "to_state", None) if not isinstance(event, Mapping) else event.get("to_state")
        acc.feed(action, at, data, None if to_state is None else getattr(to_state, "value", to_state))
        self._dirty.add(number)

    def facts(self, number: str) -> TicketFacts:
        """The facts of one ticket; KeyError when no event of it was seen."""
        return self._acc[number].facts(self.limits)

    def row(self, acc: TicketAccumulator) -> tuple[Any, ...]:
        """The ticket's values in `COLUMNS` order (codes for enums and identifiers, NaN for missing)."""
        values = named_row(acc, self.limits)
        n_float, n_enum = len(FLOAT_COLUMNS), len(ENUM_COLUMNS)
        enums = tuple(_ENUM_INDEX[name].get(value, -1)
                      for name, value in zip(ENUM_COLUMNS, values[n_float:n_float + n_enum]))
        ids = tuple(self.codes[name].code(value)
                    for name, value in zip(ID_COLUMNS, values[n_float + n_enum:n_float + n_enum + len(ID_COLUMNS)]))
        return values[:n_float] + enums + ids + values[n_float + n_enum + len(ID_COLUMNS):]

    def _grow(self, need: int) -> None:
        capacity = len(self._cols["created"])
        if need <= capacity:
            return
        bigger = self._empty(max(need, capacity * 2))
        for name, col in self._cols.items():
            bigger[name][:capacity] = col
        self._cols = bigger

    def flush(self) -> None:
        """Write the rows of tickets changed since the last flush (reports call this themselves)."""
        if not self._dirty:
            return
        new = [n for n in self._dirty if n not in self._rows]
        self._grow(len(self._numbers) + len(new))
        for number in new:
            self._rows[number] = len(self._numbers)
            self._numbers.append(number)
        cols = [self._cols[name] for name in COLUMNS]
        for number in self._dirty:
            i = self._rows[number]
            for col, value in zip(cols, self.row(self._acc[number])):
                col[i] = value
        self._dirty.clear()

    def _load_bulk(self) -> None:
        """Build all columns at once from the accumulators (the rebuild path)."""
        self._numbers = list(self._acc)
        self._rows = {n: i for i, n in enumerate(self._numbers)}
        rows = [self.row(acc) for acc in self._acc.values()]
        self._cols = self._empty(max(len(rows), 16))
        if rows:
            columns = list(zip(*rows))
            for name, values in zip(COLUMNS, columns):
                self._cols[name][:len(rows)] = values
        self._dirty.clear()

    # ------------------------------------------------------------ reading

    def columns(self) -> dict[str, np.ndarray]:
        """Views of the columns over the known tickets (after a flush)."""
        self.flush()
        n = len(self._numbers)
        return {name: col[:n] for name, col in self._cols.items()}

    def numbers(self, rows: np.ndarray) -> list[str]:
        """Ticket numbers of row indices."""
        return [self._numbers[i] for i in rows.tolist()]

    def id_names(self) -> dict[str, list[str]]:
        """The names of each id column's codes (district, grid, unit, crew), a code's at its index."""
        return {name: codes.names for name, codes in self.codes.items()}

    def _filter(self, cols: dict[str, np.ndarray], category: Any, district: Any, unit: Any) -> np.ndarray:
        mask = np.ones(len(cols["created"]), dtype=bool)
        for column, wanted in (("category", category), ("district", district), ("unit", unit)):
            if wanted is None:
                continue
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            if column == "category":
                bad = [v for v in values if v not in _ENUM_INDEX["category"]]
                if bad:
                    raise ValidationError("category", f"{bad[0]!r} is not one of: {', '.join(CATEGORIES)}")
                codes = [_ENUM_INDEX["category"][v] for v in values]
            else:
                codes = [self.codes[column].lookup(v) for v in values]
            mask &= np.isin(cols[column], codes)
        return mask

    def report(self, period_start: datetime, period_end: datetime, *, category: Any = None,
               district: Any = None, unit: Any = None, tz: tzinfo = CENTER_TZ) -> Report:
        """KPIs of [period_start, period_end), optionally for some categories, districts or units."""
        _check_period(period_start, period_end)
        cols = self.columns()
        base = self._filter(cols, category, district, unit)
        start, end = period_start.timestamp(), period_end.timestamp()
        created, resolved = cols["created"], cols["resolved"]
        rows = np.flatnonzero(base & (((created >= start) & (created < end)) | ((resolved >= start) & (resolved < end))))
        if len(rows) == len(created):  # every row counts (a frame read for this period): no copy
            subset = cols
        else:  # a day's report touches a day's rows
            subset = {name: col[rows] for name, col in cols.items()}
        filters = {"category": category, "district": district, "unit": unit}
        return build_report(self.id_names(), subset, np.ones(len(rows), dtype=bool), period_start, period_end, tz, filters)

    def drill(self, period_start: datetime, period_end: datetime, metric: str, *, category: Any = None,
              district: Any = None, unit: Any = None, group_by: str | None = None, group: Any = None,
              tz: tzinfo = CENTER_TZ) -> list[str]:
        """Ticket numbers behind one number of the report: `metric` (see `kpi_report.DRILL_METRICS`),
        optionally within one group (`group_by` one of DRILL_GROUPS, `group` its value)."""
        return self.numbers(self.select(period_start, period_end, metric, category=category, district=district,
                                        unit=unit, group_by=group_by, group=group, tz=tz))

    def select(self, period_start: datetime, period_end: datetime, metric: str, *, category: Any = None,
               district: Any = None, unit: Any = None, group_by: str | None = None, group: Any = None,
               tz: tzinfo = CENTER_TZ) -> np.ndarray:
        """Row indices (into `columns()`) behind a metric, as `drill` selects them."""
        _check_period(period_start, period_end)
        cols = self.columns()
        mask = self._filter(cols, category, district, unit)
        mask &= drill_mask(self.id_names(), cols, metric, period_start, period_end, tz, group_by, group)
        return np.flatnonzero(mask)


class KpiFrame(KpiState):
    """The KPI rows of some tickets loaded as columns (a report's period read from the facts
    table): reports, drill-downs and selections as `KpiState` computes them, over these rows only.
    `ids` are the rows' keys in their store; `numbers(rows)` needs the numbers loaded too."""

    def __init__(self, cols: Mapping[str, np.ndarray], codes: Mapping[str, Codes], ids: np.ndarray,
                 numbers: list[str] | None = None, *, policy: LimitPolicy = DEFAULT_POLICY) -> None:
        super().__init__(policy=policy, capacity=16)
        missing = [name for name in COLUMNS if name not in cols]
        if missing:
            raise ValidationError("cols", f"missing columns: {', '.join(missing)}")
        self._cols = {name: cols[name] for name in COLUMNS}
        self.codes = {name: codes.get(name) or Codes() for name in ID_COLUMNS}
        self.ids = ids
        self._frame_numbers = numbers

    def __len__(self) -> int:
        return len(self.ids)

    def columns(self) -> dict[str, np.ndarray]:
        """The loaded columns."""
        return self._cols

    def numbers(self, rows: np.ndarray) -> list[str]:
        """Ticket numbers of row indices (ValidationError when the frame was loaded without them)."""
        if self._frame_numbers is None:
            raise ValidationError("numbers", "this frame was loaded without ticket numbers")
        return [self._frame_numbers[i] for i in rows.tolist()]

    def newest_first(self, rows: np.ndarray) -> np.ndarray:
        """The row indices ordered by creation time, newest first (no creation time last)."""
        created = self._cols["created"][rows]
        return rows[np.argsort(np.nan_to_num(created, nan=-np.inf), kind="stable")[::-1]]

    def apply(self, event: Any, *, attributes: Mapping[str, Any] | None = None) -> None:
        """A frame is read-only: its rows come from the store."""
        raise TypeError("a KpiFrame is read-only")


def _check_period(start: datetime, end: datetime) -> None:
    for name, value in (("period_start", start), ("period_end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValidationError(name, "must be a timezone-aware datetime")
    if not start < end:
        raise ValidationError("period_end", "must be after period_start")


def rebuild(events: Iterable[Mapping[str, Any] | Any], *,
            attributes: Mapping[str, Mapping[str, Any]] | None = None,
            policy: LimitPolicy = DEFAULT_POLICY) -> KpiState:
    """Recompute the KPI state from the audit event streams alone (events in order per ticket;
    tickets may interleave). `attributes` maps ticket numbers to ticket snapshots (classification
    keys only) for streams whose create events do not carry them."""
    state = KpiState(policy=policy)
    accs = state._acc
    attributes = attributes or {}
    for event in events:
        number, action, at, data = read_event(event)
        acc = accs.get(number)
        if acc is None:
            acc = accs[number] = TicketAccumulator(number, attributes.get(number))
        if type(event) is dict or isinstance(event, Mapping):
            to_state = event.get("to_state")
        else:
            to_state = event.to_state.value
        acc.feed(action, at, data, to_state)
    state._load_bulk()
    return state


__all__ = [
    "COLUMNS", "DRILL_GROUPS", "Codes", "EventError", "KpiFrame", "KpiState", "named_row", "Report", "TicketFacts",
    "day_period", "facts_from_events", "month_period", "period_of", "rebuild", "week_period",
]
