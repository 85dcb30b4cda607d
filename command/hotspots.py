"""Hotspots: a heat map of ticket points and emerging clusters (普遍性、倾向性问题), pure numpy.

Heat map: points are binned on a square metric grid (Gauss-Krüger metres from
`gis.crs.to_metres`, cells aligned to multiples of the cell size so the same place always falls
in the same cell); each cell comes back as its center in WGS84 with its count.

Emerging clusters: for every (area, category) the count in the current window (e.g. this week)
is compared with the same area and category over the previous `history` windows. A cluster is
flagged when the count is at least `min_count`, its z-score against the history (mean and
sample std, the std floored at sqrt(mean) and at 1 so a flat history does not divide by zero)
is at least `z_min`, and the Poisson tail P(X ≥ count | λ = history mean, floored at
`lambda_floor`) is at most `p_max`. Flagged clusters are ranked by p-value, then z, then count.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import poisson

from command.errors import ValidationError
from command.kpi_facts import CATEGORIES
from gis.crs import from_metres, gk_zone_epsg, to_metres

if TYPE_CHECKING:
    from command.kpi import KpiState


@dataclass(frozen=True)
class HeatCell:
    """One grid cell: its center (WGS84), its index on the metric grid and its ticket count."""

    lon: float
    lat: float
    ix: int
    iy: int
    count: int


@dataclass(frozen=True)
class HeatMap:
    """Cells with at least one point, densest first; `epsg` is the metric plane used."""

    cell_m: float
    epsg: int
    cells: list[HeatCell]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the console's heat layer."""
        return {"cell_m": self.cell_m, "epsg": self.epsg,
                "cells": [{"lon": c.lon, "lat": c.lat, "count": c.count} for c in self.cells]}


def heat_map(lon: Any, lat: Any, *, cell_m: float = 250.0, epsg: int | None = None) -> HeatMap:
    """Bin WGS84 points (NaN skipped) on a `cell_m` metric grid; the zone follows the mean longitude
    unless `epsg` is given (pass one to compare maps of different periods cell by cell)."""
    if not cell_m > 0:
        raise ValidationError("cell_m", "must be a positive number of metres")
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    if lon.shape != lat.shape or lon.ndim != 1:
        raise ValidationError("lon", "lon and lat must be 1-D arrays of the same length")
    ok = np.isfinite(lon) & np.isfinite(lat)
    lon, lat = lon[ok], lat[ok]
    if epsg is None:
        epsg = gk_zone_epsg(float(lon.mean())) if lon.size else gk_zone_epsg(120.0)
    if lon.size == 0:
        return HeatMap(cell_m, epsg, [])
    x, y = to_metres(lon, lat, epsg=epsg)
    ix = np.floor(np.asarray(x) / cell_m).astype(np.int64)
    iy = np.floor(np.asarray(y) / cell_m).astype(np.int64)
    cells, counts = np.unique(np.stack([ix, iy], axis=1), axis=0, return_counts=True)
    order = np.lexsort((cells[:, 1], cells[:, 0], -counts))
    cells, counts = cells[order], counts[order]
    clon, clat = from_metres((cells[:, 0] + 0.5) * cell_m, (cells[:, 1] + 0.5) * cell_m, epsg=epsg)
    return HeatMap(cell_m, epsg, [HeatCell(float(a), float(b), int(i), int(j), int(n)) for a, b, i, j, n in
                                  zip(np.atleast_1d(clon), np.atleast_1d(clat), cells[:, 0], cells[:, 1], counts)])


def state_heat_map(state: KpiState, period_start: datetime, period_end: datetime, *,
                   category: str | Sequence[str] | None = None, cell_m: float = 250.0,
                   epsg: int | None = None) -> HeatMap:
    """Heat map of the tickets created in [period_start, period_end), optionally of some categories."""
    rows = state.select(period_start, period_end, "created", category=category)
    cols = state.columns()
    return heat_map(cols["lon"][rows], cols["lat"][rows], cell_m=cell_m, epsg=epsg)


@dataclass(frozen=True)
class Cluster:
    """A category rising in one area: this window's count against its own history."""

    area: str
    category: str
    count: int
    history: list[int]
    mean: float
    std: float
    z: float
    p_value: float
    ratio: float | None
    numbers: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return dict(self.__dict__)


def emerging_clusters(area: Sequence[str | None], category: Sequence[str | None], created: Any,
                      numbers: Sequence[str], *, window_start: datetime,
                      window: timedelta = timedelta(days=7), history: int = 8, min_count: int = 5,
                      z_min: float = 3.0, p_max: float = 0.001, lambda_floor: float = 0.5) -> list[Cluster]:
    """Flag (area, category) pairs whose count in [window_start, window_start + window) is far above
    the same pair's counts in the `history` windows before; ranked list, most significant first.

    `created` holds epoch seconds (or aware datetimes) of each ticket; tickets without an area or
    category are skipped.
    """
    if history < 2:
        raise ValidationError("history", "needs at least 2 windows to estimate a spread")
    if window_start.tzinfo is None:
        raise ValidationError("window_start", "must be a timezone-aware datetime")
    t = np.array([c.timestamp() if isinstance(c, datetime) else c for c in created], dtype=np.float64) \
        if not isinstance(created, np.ndarray) else created.astype(np.float64)
    n = len(t)
    if not (len(area) == len(category) == len(numbers) == n):
        raise ValidationError("area", "area, category, created and numbers must have the same length")
    w = np.floor((t - window_start.timestamp()) / window.total_seconds())
    keys = [f"{a}\x1f{c}" if a is not None and c is not None else None for a, c in zip(area, category)]
    valid = np.array([k is not None for k in keys], dtype=bool) & np.isfinite(w) & (w >= -history) & (w <= 0)
    if not valid.any():
        return []
    idx = np.flatnonzero(valid)
    uniq, inverse = np.unique(np.array([keys[i] for i in idx], dtype=object), return_inverse=True)
    table = np.zeros((len(uniq), history + 1), dtype=np.int64)
    np.add.at(table, (inverse, w[idx].astype(np.int64) + history), 1)
    past, now = table[:, :history], table[:, history]
    mean = past.mean(axis=1)
    std = past.std(axis=1, ddof=1)
    spread = np.maximum.reduce([std, np.sqrt(mean), np.ones_like(mean)])
    z = (now - mean) / spread
    p = poisson.sf(now - 1, np.maximum(mean, lambda_floor))
    flagged = np.flatnonzero((now >= min_count) & (z >= z_min) & (p <= p_max))
    current = idx[w[idx] == 0]
    members: dict[int, list[str]] = {}
    pos = {int(i): k for k, i in enumerate(idx)}
    for i in current:
        members.setdefault(int(inverse[pos[int(i)]]), []).append(numbers[i])
    out = []
    for g in flagged:
        a, c = str(uniq[g]).split("\x1f", 1)
        out.append(Cluster(area=a, category=c, count=int(now[g]), history=[int(x) for x in past[g]],
                           mean=float(mean[g]), std=float(std[g]), z=float(z[g]), p_value=float(p[g]),
                           ratio=None if mean[g] == 0 else float(now[g] / mean[g]),
                           numbers=sorted(members.get(int(g), []))))
    out.sort(key=lambda c: (c.p_value, -c.z, -c.count, c.area, c.category))
    return out


def state_clusters(state: KpiState, window_start: datetime, *, area: str = "grid",
                   window: timedelta = timedelta(days=7), history: int = 8, **options: Any) -> list[Cluster]:
    """Emerging clusters over a KPI state's tickets, by `area` "grid" (community) or "district"."""
    if area not in ("grid", "district"):
        raise ValidationError("area", "must be grid or district")
    cols = state.columns()
    names = state.codes[area].names
    begin = window_start.timestamp() - history * window.total_seconds()
    rows = np.flatnonzero((cols["created"] >= begin)
                          & (cols["created"] < window_start.timestamp() + window.total_seconds()))
    area_names = [names[c] if c >= 0 else None for c in cols[area][rows].tolist()]
    cat_names = [CATEGORIES[c] if c >= 0 else None for c in cols["category"][rows].tolist()]
    return emerging_clusters(area_names, cat_names, cols["created"][rows], state.numbers(rows),
                             window_start=window_start,
                             window=window, history=history, **options)
