"""Reports (报表): the KPI report of a day, week, month, year or any range of days, the tickets
behind any of its numbers, CSV/XLSX exports and the report page, over
`services.kpi_service.KpiService` (the period's KPI rows read from PostgreSQL per request).

Roles: supervisor and admin; dispatchers may read too. Agents, crews and unit liaisons are
refused (403): a unit's 考核 is the office's table, not the unit's.

The unit report (单位考核, `command.kpi_units`) is its own endpoint, GET /api/reports/units (the
same query: period and filters), with its drill-down GET /api/reports/units/drill (`unit_id`,
`metric`), and a 单位考核 sheet in the exports.
Every query takes `period` (day|week|month|year|range), `date` (YYYY-MM-DD in the center's time
zone, default today), `from` and `to` for a range, and optional `category`, `district`, `unit`
filters (comma-separated values allowed). Drill-down lists and exports read the ticket numbers a
page at a time from SQL. A bad argument is a 400 ``validation_error`` naming the field, logged and counted
(`KpiService.counters["bad_request:<code>"]`). Caller phones in drill lists and exports are
always masked (`command.accounts.mask_phone`): a report leaves the call desk.
"""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson

from command.accounts import mask_phone
from store.units import UnitStore
from command.errors import ValidationError
from command.kpi import CATEGORIES, DRILL_GROUPS, KpiFrame
from command.kpi_report import DRILL_METRICS
from services.kpi_query import (
    MAX_RANGE_DAYS, DrillQuery, ReportQuery, drill_rows, parse_drill, parse_query, parse_unit_drill, query_frame,
    report_rows, state_payload, ticket_pages, unit_drill_rows, units_payload,
)
from web.base import ApiError, BaseHandler, page
from web.openapi_schemas import ANY_OBJ, I, NS, S, arr, obj, op
from web.report_export import KIND_ZH, XLSX_TYPE, Table, percent, report_tables, title_of, to_csv, to_xlsx

REPORT_ROLES = ("supervisor", "dispatcher")  # admin passes every require()
EXPORT_TICKETS_MAX = 50_000
_PHONE_CHUNK = 1000
_NAME_LAYERS = {"district": ("districts", "district_id", "name"), "unit": ("units", "unit_id", "name"),
                "crew": ("crews", "crew_id", "crew_name")}


class KpiAccess:
    """The KPI service of the web process for a handler (mixed into BaseHandler subclasses)."""

    async def frame(self, start: datetime, end: datetime, *, category: Any = (), numbers: bool = False) -> KpiFrame:
        """The KPI rows of tickets created or resolved in [start, end), current (503 while the
        KPIs cannot be read: KpiUnavailable)."""
        return await self.kpi.frame(start, end, category=category or (), numbers=numbers)

    async def query_frame(self, query: ReportQuery, *, full: bool = True) -> KpiFrame:
        """The KPI rows of a report query (503 while the KPIs cannot be read); ``full=False``: a
        report's columns only (for `state_payload` alone)."""
        return await query_frame(self.kpi, query, self.config.zone, full=full)


class ReportHandler(KpiAccess, BaseHandler):
    """Base of the report handlers: the KPI service, the parsed query, masked ticket rows."""

    @property
    def tz(self) -> Any:
        """The center's time zone."""
        return self.config.zone

    def on_finish(self) -> None:
        """Count a refused request (400) on the KPI service, by its error code."""
        super().on_finish()
        service = self.services.kpi
        if self.get_status() == 400 and service is not None and self.error_code:
            service.counters[f"bad_request:{self.error_code}"] += 1

    def query(self) -> ReportQuery:
        """The period and filters of this request (ValidationError naming the field: a 400)."""
        today = self.store.clock.now_dt().astimezone(self.tz).date()  # the center's clock (runtime.clock)
        return parse_query(lambda name: self.get_argument(name, None), today=today)

    def drill_query(self) -> DrillQuery:
        """The metric and group of a drill-down request."""
        return parse_drill(lambda name: self.get_argument(name, None))

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        """An integer query argument within [low, high], else 400."""
        raw = self.get_argument(name, None)
        try:
            value = default if raw in (None, "") else int(raw)
        except ValueError:
            raise ValidationError(name, "must be an integer") from None
        if not low <= value <= high:
            raise ValidationError(name, f"must be within {low}..{high}")
        return value

    async def masked_rows(self, frame: KpiFrame, rows: Any) -> list[dict[str, Any]]:
        """Brief rows of the frame's `rows` (in order), read a page at a time, with the caller's
        phone masked (None when unknown)."""
        out: list[dict[str, Any]] = []
        manager = self.services.tickets
        async for page in ticket_pages(self.kpi, frame, rows, page=_PHONE_CHUNK):
            phones: dict[str, str | None] = {}
            if manager is not None:
                numbers = [row["number"] for row in page]
                for number, record in zip(numbers, await manager.store.get_many(numbers)):
                    phones[number] = None if record is None else mask_phone(record.ticket.caller_phone) or None
            for row in page:
                row["phone"] = phones.get(row["number"])
            out.extend(page)
        return out

    async def unit_tree(self) -> list[dict[str, Any]]:
        """The unit tree (every unit, by level) the unit report rolls stations up by."""
        return await UnitStore(self.store.db).tree()

    def names(self) -> dict[str, dict[str, str]]:
        """Names of districts, units and crews from the city layers (read at start-up)."""
        return self.services.names


def city_names(city: Any) -> dict[str, dict[str, str]]:
    """id → name of districts, units and crews of a `config.city.CityLayers` (empty without one)."""
    out: dict[str, dict[str, str]] = {group: {} for group in _NAME_LAYERS}
    frame_of = getattr(city, "frame", None)
    if frame_of is None:
        return out
    for group, (kind, id_col, name_col) in _NAME_LAYERS.items():
        frame = frame_of(kind)
        if frame is None or id_col not in frame or name_col not in frame:
            continue
        out[group] = {str(k): str(v) for k, v in zip(frame[id_col], frame[name_col])}
    return out


class KpiReport(ReportHandler):
    """GET /api/reports/kpi: {"period": {kind, date, start, end}, "report": Report.to_dict()}."""

    async def get(self) -> None:
        self.require(*REPORT_ROLES)
        query = self.query()
        self.write_json(state_payload(await self.query_frame(query, full=False), query, self.tz))


class Drill(ReportHandler):
    """GET /api/reports/drill: the tickets behind one number (metric, optional group=key), newest
    first, paginated by offset and limit."""

    async def get(self) -> None:
        self.require(*REPORT_ROLES)
        query, drill = self.query(), self.drill_query()
        offset, limit = self.int_arg("offset", 0, 0, 10_000_000), self.int_arg("limit", 50, 1, 500)
        frame = await self.query_frame(query)
        found = drill_rows(frame, query, drill, self.tz)
        rows = await self.masked_rows(frame, found[offset:offset + limit])
        self.write_json({"metric": drill.metric, "group": drill.group_by, "key": drill.group,
                         "total": len(found), "offset": offset, "limit": limit, "tickets": rows})


class Export(ReportHandler):
    """GET /api/reports/export?format=csv|xlsx: the report's tables and the tickets behind it
    (newest EXPORT_TICKETS_MAX) as a download."""

    async def get(self) -> None:
        self.require(*REPORT_ROLES)
        kind = self.get_argument("format", "xlsx")
        if kind not in ("csv", "xlsx"):
            raise ValidationError("format", f"must be csv or xlsx, got {kind!r}")
        query = self.query()
        frame = await self.query_frame(query)
        payload = state_payload(frame, query, self.tz)
        found = report_rows(frame, query, self.tz)
        rows = await self.masked_rows(frame, found[:EXPORT_TICKETS_MAX])
        tables = report_tables(payload, rows, tz=self.tz, names=self.names(), total=len(found))
        units = units_payload(frame, query, self.tz, await self.unit_tree())
        tables.insert(len(tables) - 1, unit_table(units["units"]))
        render = to_csv if kind == "csv" else to_xlsx
        body = await asyncio.to_thread(render, payload, tables)
        self.set_header("Content-Type", "text/csv; charset=utf-8" if kind == "csv" else XLSX_TYPE)
        self.set_header("Content-Disposition", disposition(payload, kind))
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


UNIT_HEADERS = ("名次", "级别", "单位编号", "单位", "考核得分", "受理(张)", "按时受理率(%)", "按时反馈率(%)",
                "退单申请", "退单批准", "延期申请", "延期批准", "督办", "催办", "督办升级", "回访(张)",
                "满意率(%)", "返工(次)")
_LEVEL_ZH = {2: "二级", 3: "三级"}


def unit_table(rows: list[dict[str, Any]]) -> Table:
    """The 单位考核 sheet: one line per unit row of `units_payload`, ranked within its level (名次 first,
    the header readers of the exports look for it)."""
    return Table("单位考核", UNIT_HEADERS, [
        [r["rank"], _LEVEL_ZH.get(r["level"], "其他"), r["unit_id"], r["name"], r["score"], r["tickets"],
         percent(r["accept_rate"]), percent(r["feedback_rate"]), r["return_requests"], r["returns_approved"],
         r["extension_requests"], r["extensions_approved"], r["supervisions"], r["urgings"], r["escalations"],
         r["callbacks"], percent(r["satisfied_rate"]), r["rework"]] for r in rows])


class UnitReport(ReportHandler):
    """GET /api/reports/units: the unit report (单位考核) of the query, ranked within each level."""

    async def get(self) -> None:
        self.require(*REPORT_ROLES)
        query = self.query()
        frame = await self.query_frame(query, full=False)
        self.write_json(units_payload(frame, query, self.tz, await self.unit_tree()))


class UnitDrill(ReportHandler):
    """GET /api/reports/units/drill: the tickets behind one number of a unit's row, newest first."""

    async def get(self) -> None:
        self.require(*REPORT_ROLES)
        query = self.query()
        unit_id, metric = parse_unit_drill(lambda name: self.get_argument(name, None))
        offset, limit = self.int_arg("offset", 0, 0, 10_000_000), self.int_arg("limit", 50, 1, 500)
        frame = await self.query_frame(query)
        found = unit_drill_rows(frame, query, self.tz, await self.unit_tree(), unit_id, metric)
        rows = await self.masked_rows(frame, found[offset:offset + limit])
        self.write_json({"unit_id": unit_id, "metric": metric, "total": len(found), "offset": offset,
                         "limit": limit, "tickets": rows})


def disposition(payload: dict[str, Any], ext: str) -> str:
    """An attachment header with an ASCII fallback and the Chinese name in RFC 5987 form."""
    period = payload["period"]
    fallback = f"kpi-{period['kind']}-{period['start'][:10]}.{ext}"
    name = title_of(payload).replace(" ", "_") + f".{ext}"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class ReportsPage(ReportHandler):
    """GET /reports: the daily, weekly, monthly, yearly and range report page (报表) with charts and tables."""

    @page(*REPORT_ROLES)
    def get(self) -> None:
        names = self.names()
        today = self.store.clock.now_dt().astimezone(self.tz).date().isoformat()
        self.render("reports.html", account=self.account, zone=self.config.TIME_ZONE, today=today,
                    kinds=KIND_ZH, categories=CATEGORIES, max_range_days=MAX_RANGE_DAYS,
                    names_json=orjson.dumps(names).decode())


_QUERY = (("period", "string", "day | week | month | year | range (default day; range when from/to are given)"),
          ("date", "string", "YYYY-MM-DD in the center's time zone (default today)"),
          ("from", "string", "first day of a range, YYYY-MM-DD"),
          ("to", "string", f"last day of a range, YYYY-MM-DD (a range holds at most {MAX_RANGE_DAYS} days)"),
          ("category", "string", "category, or several comma-separated"),
          ("district", "string", "district id(s)"), ("unit", "string", "responsible unit id(s)"))
_ROLES = "supervisor, admin; dispatcher (read only)"
_PERIOD = obj(["kind", "date", "start", "end"], kind=S, date=S, start=S, end=S, **{"from": S, "to": S})
_ROW = obj(["number", "created", "category", "state", "phone"], number=S, created=NS, resolved=NS, channel=NS,
           category=NS, type=NS, district=NS, unit=NS, crew=NS, state=NS, color=NS, phone=NS)
_FILE = {"200": {"description": "The file (Content-Disposition: attachment, RFC 5987 file name)",
                 "content": {"text/csv": {"schema": {"type": "string"}},
                             XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
         **{str(code): {"$ref": "#/components/responses/Error"} for code in (400, 401, 403, 503)}}

openapi: dict[str, Any] = {
    "GET /api/reports/kpi": op(
        "KPI report of a day, week, month, year or range of days (volume, intake, stage times, on-time rates, quality, "
        "unit and crew rankings); times in seconds (…_s), rates 0..1", _ROLES,
        obj(["period", "report"], period=_PERIOD, report=obj(
            ["period_start", "period_end", "tz", "filters", "volume", "series", "intake", "times", "times_by",
             "on_time", "quality", "rankings", "drill_metrics"], period_start=S, period_end=S, tz=S,
            filters=ANY_OBJ, volume=ANY_OBJ, series=arr(ANY_OBJ), intake=ANY_OBJ, times=ANY_OBJ, times_by=ANY_OBJ,
            on_time=ANY_OBJ, quality=ANY_OBJ, rankings=obj(["unit", "crew"], unit=arr(ANY_OBJ), crew=arr(ANY_OBJ)),
            drill_metrics=ANY_OBJ)),
        query=_QUERY, errors=(400, 401, 403, 503)),
    "GET /api/reports/drill": op(
        "The tickets behind one number of the report, newest first (phones masked)", _ROLES,
        obj(["metric", "total", "offset", "limit", "tickets"], metric=S, group=NS, key={}, total=I, offset=I,
            limit=I, tickets=arr(_ROW)),
        query=_QUERY + (("metric", "string", "one of: " + ", ".join(DRILL_METRICS)),
                        ("group", "string", "one of: " + ", ".join(DRILL_GROUPS)),
                        ("key", "string", "the group's value (an hour 0..23 for group=hour)"),
                        ("offset", "integer", "rows to skip"), ("limit", "integer", "rows, 1..500 (default 50)")),
        errors=(400, 401, 403, 503)),
    "GET /api/reports/units": op(
        "Unit report (单位考核): per 二级 department (its stations summed in) and 三级 station, tickets received, "
        "on-time acceptance and feedback, returns, extensions, 督办, callback satisfaction, rework and the 考核 "
        "score, ranked within each level; rates 0..1", _ROLES,
        obj(["period", "units", "score", "drill_metrics"], period=_PERIOD, filters=ANY_OBJ, units=arr(ANY_OBJ),
            score=ANY_OBJ, drill_metrics=arr(S)),
        query=_QUERY, errors=(400, 401, 403, 503)),
    "GET /api/reports/units/drill": op(
        "The tickets behind one number of a unit's row, newest first (phones masked)", _ROLES,
        obj(["unit_id", "metric", "total", "offset", "limit", "tickets"], unit_id=S, metric=S, total=I, offset=I,
            limit=I, tickets=arr(_ROW)),
        query=_QUERY + (("unit_id", "string", "the unit of the row"),
                        ("metric", "string", "one of the report's drill_metrics"),
                        ("offset", "integer", "rows to skip"), ("limit", "integer", "rows, 1..500 (default 50)")),
        errors=(400, 401, 403, 503)),
    "GET /api/reports/export": {
        "summary": "The report's tables and its tickets (phones masked) as CSV or Excel",
        "description": f"Roles: {_ROLES}. Headers in Chinese with units; durations in minutes, rates in %.",
        "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
                       for n, t, d in _QUERY + (("format", "string", "csv | xlsx (default xlsx)"),)],
        "responses": _FILE},
}

routes = [(r"/api/reports/kpi", KpiReport), (r"/api/reports/drill", Drill), (r"/api/reports/export", Export),
          (r"/api/reports/units", UnitReport), (r"/api/reports/units/drill", UnitDrill), (r"/reports", ReportsPage)]
