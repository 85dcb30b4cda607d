"""Hotspots and the wall's live KPIs, over the KPI rows kept by `services.kpi_service.KpiService`.

- `GET /api/hotspots/heat`: tickets created in a day, week or month binned on a square metric
  grid (`command.hotspots.state_heat_map`), each cell with its WGS84 center, bounds and count.
- `GET /api/hotspots/clusters`: emerging clusters (普遍性、倾向性问题): a category rising in one
  community grid or district against its own history (`command.hotspots.state_clusters`),
  with the area's name and outline and the tickets behind each cluster.
- `GET /api/wall/kpis`: today's KPIs for the wall display (大屏), every figure read from
  `KpiState.report` of the center's current day (no second computation path).

Days are calendar days in the center's time zone (settings TIME_ZONE); times in answers are UTC.
A bad parameter is a 400 with a stable code, logged and counted per endpoint.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
from shapely.geometry import mapping

from command.hotspots import Cluster, HeatMap, state_clusters, state_heat_map
from command.kpi import CATEGORIES, KpiState, Report, day_period, period_of
from gis.crs import from_metres, gk_zone_epsg
from services.kpi_query import PERIOD_KINDS
from web.base import ApiError
from web.handlers.reports import KpiAccess
from web.handlers.tickets import TicketHandler
from web.openapi_schemas import ANY_OBJ, NN, I, N, S, T, arr, nullable, obj, op

HEAT_ROLES = ("dispatcher", "supervisor", "agent")  # admin passes every require()
WALL_ROLES = ("dispatcher", "supervisor")
PERIODS = ("day", "week", "month")  # of PERIOD_KINDS
AREAS = {"grid": ("grids", "grid_id"), "district": ("districts", "district_id")}
CELL_M = (50, 5000, 250)           # heat cell size: min, max, default (metres)
WINDOW_DAYS = (1, 31, 7)           # cluster window: min, max, default (days)
HISTORY = (2, 26, 8)               # cluster history: min, max, default (windows)
UTC = timezone.utc


def utc_iso(moment: datetime) -> str:
    """An aware time as the API spells it: UTC, ISO 8601 with Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cell_bounds(heat: HeatMap) -> np.ndarray:
    """Per cell [west, south, east, north] in WGS84: the box around the cell's four grid corners."""
    if not heat.cells:
        return np.zeros((0, 4))
    ix = np.array([c.ix for c in heat.cells], dtype=np.float64)
    iy = np.array([c.iy for c in heat.cells], dtype=np.float64)
    xs = np.concatenate([ix, ix + 1, ix, ix + 1]) * heat.cell_m
    ys = np.concatenate([iy, iy, iy + 1, iy + 1]) * heat.cell_m
    lon, lat = from_metres(xs, ys, epsg=heat.epsg)
    lon, lat = np.asarray(lon).reshape(4, -1), np.asarray(lat).reshape(4, -1)
    return np.stack([lon.min(0), lat.min(0), lon.max(0), lat.max(0)], axis=1)


def heat_view(heat: HeatMap) -> list[dict[str, Any]]:
    """The cells as JSON: center, bounds and count (tickets per cell)."""
    return [{"lon": c.lon, "lat": c.lat, "count": c.count, "bounds": [float(v) for v in box]}
            for c, box in zip(heat.cells, cell_bounds(heat))]


def cluster_view(cluster: Cluster, area: dict[str, Any], tickets: list[dict[str, Any]]) -> dict[str, Any]:
    """One emerging cluster as JSON: the area, the category, this window against its baseline."""
    return {
        "area_id": cluster.area, "area_name": area.get("name") or cluster.area,
        "bounds": area.get("bounds"), "geometry": area.get("geometry"),
        "category": cluster.category, "count": cluster.count, "history": cluster.history,
        "baseline_mean": cluster.mean, "baseline_std": cluster.std,
        "rise_ratio": cluster.ratio, "rise_tickets": cluster.count - cluster.mean,
        "z": cluster.z, "p_value": cluster.p_value, "numbers": cluster.numbers, "tickets": tickets,
    }


def wall_view(report: Report) -> dict[str, Any]:
    """Today's wall figures, each read from the day's report, in the units `WALL_UNITS` names."""
    intake, times, on_time, quality = report.intake, report.times, report.on_time, report.quality

    def minutes(seconds: float | None) -> float | None:
        return None if seconds is None else seconds / 60.0

    def pct(share: float | None) -> float | None:
        return None if share is None else 100.0 * share

    return {
        "tickets": report.volume["tickets"], "open": intake["open_tickets"],
        "dispatched": times["dispatch_time_s_count"], "resolved": report.volume["resolved"],
        "arrival_min_mean": minutes(times["arrival_time_s_mean"]),
        "arrival_min_p90": minutes(times["arrival_time_s_p90"]),
        "arrival_count": times["arrival_time_s_count"],
        "arrive_on_time_pct": pct(on_time["arrive_on_time_rate"]),
        "arrive_on_time_due": on_time["arrive_on_time_due"],
        "satisfaction_pct": pct(quality["satisfaction_rate"]), "callbacks_done": quality["callback_done"],
        "repeat_call_pct": pct(intake["repeat_call_rate"]),
        "red": intake["red_tickets"], "orange": intake["orange_tickets"],
        "police_handovers": intake["police_handover_tickets"],
    }


WALL_UNITS = {
    "tickets": "tickets", "open": "tickets", "dispatched": "tickets", "resolved": "tickets",
    "arrival_min_mean": "min", "arrival_min_p90": "min", "arrival_count": "tickets",
    "arrive_on_time_pct": "%", "arrive_on_time_due": "tickets", "satisfaction_pct": "%",
    "callbacks_done": "callbacks", "repeat_call_pct": "%", "red": "tickets", "orange": "tickets",
    "police_handovers": "tickets",
}


class AreaIndex:
    """Names, bounds and outlines of the city's grids and districts, by id (built once per app)."""

    def __init__(self, city: Any) -> None:
        self.areas: dict[str, dict[str, dict[str, Any]]] = {}
        for area, (kind, key) in AREAS.items():
            frame = city.frame(kind) if hasattr(city, "frame") else None
            rows: dict[str, dict[str, Any]] = {}
            if frame is not None and len(frame):
                for ident, name, geom in zip(frame[key], frame["name"], frame.geometry):
                    rows[str(ident)] = {"name": str(name), "bounds": [float(v) for v in geom.bounds],
                                        "geometry": mapping(geom)}
            self.areas[area] = rows
        bounds = [r["bounds"] for r in self.areas["district"].values()]
        self.center_lon = (min(b[0] for b in bounds) + max(b[2] for b in bounds)) / 2 if bounds else None

    def get(self, area: str, ident: str) -> dict[str, Any]:
        """The area's {name, bounds, geometry}; empty when the city does not know it."""
        return self.areas[area].get(ident, {})


class HotspotHandler(KpiAccess, TicketHandler):
    """Base of these handlers: the KPI service, the center's day, validated query arguments."""

    def now(self) -> datetime:
        """Now, by the clock the tickets are stamped with (the ticket manager's, else the system's)."""
        manager = self.services.tickets
        return manager.clock() if manager is not None else datetime.now(UTC)

    def today(self) -> date:
        """The center's current calendar day."""
        return self.now().astimezone(self.config.zone).date()

    @property
    def areas(self) -> AreaIndex:
        """The city's areas, indexed at start-up."""
        return self.services.areas

    def date_arg(self) -> date:
        """?date=YYYY-MM-DD (a day in the center's zone), today when absent."""
        raw = self.get_argument("date", None)
        if raw in (None, ""):
            return self.today()
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ApiError(400, "bad_date", "date must be a day as YYYY-MM-DD", field="date") from None

    def choice_arg(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """A query argument that must be one of `choices`."""
        value = self.get_argument(name, None) or default
        if value not in choices:
            raise ApiError(400, f"bad_{name}", f"{name} must be one of: {', '.join(choices)}", field=name)
        return value

    def category_arg(self) -> list[str] | None:
        """?category=water or water,gas; None (every category) when absent."""
        raw = self.get_argument("category", None)
        if raw in (None, ""):
            return None
        wanted = [c.strip() for c in raw.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in CATEGORIES]
        if unknown or not wanted:
            raise ApiError(400, "bad_category", f"category must be among: {', '.join(CATEGORIES)}",
                           field="category")
        return wanted



class Heat(HotspotHandler):
    """GET /api/hotspots/heat?period=day|week|month&date=&category=&cell_m=: the heat map cells."""

    async def get(self) -> None:
        self.require(*HEAT_ROLES)
        kind = self.choice_arg("period", PERIODS, "week")
        day, category = self.date_arg(), self.category_arg()
        cell_m = self.int_arg("cell_m", CELL_M[2], CELL_M[0], CELL_M[1])
        start, end = period_of(PERIOD_KINDS[kind], day, self.config.zone)
        center = self.areas.center_lon
        heat = state_heat_map(await self.frame(start, end, category=category), start, end, category=category,
                              cell_m=float(cell_m),
                              epsg=None if center is None else gk_zone_epsg(center))
        cells = heat_view(heat)
        self.write_json({
            "period": {"kind": kind, "date": day.isoformat(), "start": utc_iso(start), "end": utc_iso(end),
                       "tz": self.config.TIME_ZONE},
            "category": category, "categories": list(CATEGORIES), "cell_m": cell_m, "epsg": heat.epsg,
            "tickets": sum(c["count"] for c in cells), "max_count": max((c["count"] for c in cells), default=0),
            "cells": cells,
        })


class Clusters(HotspotHandler):
    """GET /api/hotspots/clusters?date=&window_days=&area=grid|district&category=&history=: the
    emerging clusters of the `window_days` days ending with `date`, against `history` windows before."""

    async def get(self) -> None:
        self.require(*HEAT_ROLES)
        day, category = self.date_arg(), self.category_arg()
        area = self.choice_arg("area", tuple(AREAS), "grid")
        days = self.int_arg("window_days", WINDOW_DAYS[2], WINDOW_DAYS[0], WINDOW_DAYS[1])
        history = self.int_arg("history", HISTORY[2], HISTORY[0], HISTORY[1])
        start = day_period(day - timedelta(days=days - 1), self.config.zone)[0]
        end = day_period(day, self.config.zone)[1]
        state = await self.frame(start - (end - start) * history, end, numbers=True)  # the window and its history
        found = state_clusters(state, start, area=area, window=end - start, history=history)
        if category is not None:
            found = [c for c in found if c.category in category]
        self.write_json({
            "window": {"date": day.isoformat(), "days": days, "start": utc_iso(start), "end": utc_iso(end),
                       "tz": self.config.TIME_ZONE},
            "area": area, "history_windows": history, "category": category, "categories": list(CATEGORIES),
            "units": {"count": "tickets per window", "baseline_mean": "tickets per window",
                      "rise_ratio": "times the baseline", "rise_tickets": "tickets above the baseline"},
            "clusters": [cluster_view(c, self.areas.get(area, c.area), self.cluster_tickets(state, c, area, start, end))
                         for c in found],
        })

    @staticmethod
    def cluster_tickets(state: KpiState, cluster: Cluster, area: str, start: datetime,
                        end: datetime) -> list[dict[str, Any]]:
        """The tickets behind a cluster (created in the window, its category, its area) with places."""
        rows = state.select(start, end, "created", category=cluster.category)
        cols = state.columns()
        rows = rows[cols[area][rows] == state.codes[area].lookup(cluster.area)]
        lon, lat = cols["lon"][rows], cols["lat"][rows]
        return [{"number": n, "lon": None if np.isnan(x) else float(x), "lat": None if np.isnan(y) else float(y)}
                for n, x, y in zip(state.numbers(rows), lon.tolist(), lat.tolist())]


class WallKpis(HotspotHandler):
    """GET /api/wall/kpis: today's live KPIs (the center's calendar day) from the day's KPI report."""

    async def get(self) -> None:
        self.require(*WALL_ROLES)
        day = self.today()
        start, end = day_period(day, self.config.zone)
        report = (await self.frame(start, end)).report(start, end, tz=self.config.zone)
        self.write_json({"date": day.isoformat(), "start": utc_iso(start), "end": utc_iso(end),
                         "tz": self.config.TIME_ZONE, "at": utc_iso(self.now()),
                         "kpis": wall_view(report), "units": WALL_UNITS})


_HEAT_CELL = obj(["lon", "lat", "count", "bounds"], lon=N, lat=N, count=I, bounds=arr(N))
_TICKET_AT = obj(["number", "lon", "lat"], number=S, lon=NN, lat=NN)
_CLUSTER = obj(["area_id", "area_name", "category", "count", "history", "baseline_mean", "rise_ratio",
                "rise_tickets", "z", "p_value", "numbers", "tickets"],
               area_id=S, area_name=S, bounds=nullable(arr(N)), geometry=nullable(ANY_OBJ), category=S, count=I,
               history=arr(I), baseline_mean=N, baseline_std=N, rise_ratio=NN, rise_tickets=N, z=N, p_value=N,
               numbers=arr(S), tickets=arr(_TICKET_AT))
_PERIOD = obj(["date", "start", "end", "tz"], kind=S, date=S, days=I, start=T, end=T, tz=S)
openapi = {
    "GET /api/hotspots/heat": op(
        "Heat map: tickets created in a period binned on a metric grid (cells with WGS84 center, bounds, count)",
        "dispatcher, supervisor, agent, admin",
        obj(["period", "cell_m", "epsg", "tickets", "max_count", "cells", "categories"], period=_PERIOD,
            category=nullable(arr(S)), categories=arr(S), cell_m=I, epsg=I, tickets=I, max_count=I,
            cells=arr(_HEAT_CELL)),
        query=(("period", "string", "day|week|month (default week)"),
               ("date", "string", "YYYY-MM-DD in the center's zone (default today)"),
               ("category", "string", "one category or several, comma-separated"),
               ("cell_m", "integer", "cell size in metres, 50..5000 (default 250)")),
        errors=(400, 401, 403, 503)),
    "GET /api/hotspots/clusters": op(
        "Emerging clusters: a category rising in one area against its own history (普遍性、倾向性问题)",
        "dispatcher, supervisor, agent, admin",
        obj(["window", "area", "history_windows", "units", "clusters", "categories"], window=_PERIOD, area=S,
            history_windows=I, category=nullable(arr(S)), categories=arr(S), units=ANY_OBJ,
            clusters=arr(_CLUSTER)),
        query=(("date", "string", "last day of the window, YYYY-MM-DD (default today)"),
               ("window_days", "integer", "window length in days, 1..31 (default 7)"),
               ("area", "string", "grid|district (default grid)"),
               ("category", "string", "only these categories, comma-separated"),
               ("history", "integer", "windows of history compared against, 2..26 (default 8)")),
        errors=(400, 401, 403, 503)),
    "GET /api/wall/kpis": op(
        "Today's live KPIs for the wall display, from the day's KPI report", "dispatcher, supervisor, admin",
        obj(["date", "start", "end", "tz", "at", "kpis", "units"], date=S, start=T, end=T, tz=S, at=T,
            units={"type": "object", "additionalProperties": S},
            kpis=obj(list(WALL_UNITS), **{k: (I if WALL_UNITS[k] in ("tickets", "callbacks") else NN)
                                           for k in WALL_UNITS})),
        errors=(401, 403, 503)),
}

routes = [(r"/api/hotspots/heat", Heat), (r"/api/hotspots/clusters", Clusters), (r"/api/wall/kpis", WallKpis)]
