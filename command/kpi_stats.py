"""Vectorised statistics and report periods for the KPIs (pure numpy; re-exported by `command.kpi`).

Percentiles interpolate linearly between order statistics (numpy's default): the median of
[1, 2, 3, 4] is 2.5 and its p90 is 3.7. NaN marks a missing value and is left out.
"""
from __future__ import annotations

import math
from datetime import date, datetime, timedelta, tzinfo

import numpy as np

from command.errors import ValidationError
from command.ticket_model import CENTER_TZ

DAY_S = 86400.0


def day_period(day: date, tz: tzinfo = CENTER_TZ) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in `tz` (days begin at 00:00 local time)."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)


def week_period(day: date, tz: tzinfo = CENTER_TZ) -> tuple[datetime, datetime]:
    """[start, end) of the ISO week (Monday 00:00 to the next Monday) holding `day`, in `tz`."""
    monday = day - timedelta(days=day.weekday())
    return day_period(monday, tz)[0], day_period(monday + timedelta(days=7), tz)[0]


def month_period(year: int, month: int, tz: tzinfo = CENTER_TZ) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in `tz`."""
    if not 1 <= month <= 12:
        raise ValidationError("month", f"must be 1..12, got {month}")
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return day_period(date(year, month, 1), tz)[0], day_period(nxt, tz)[0]


def year_period(year: int, tz: tzinfo = CENTER_TZ) -> tuple[datetime, datetime]:
    """[start, end) of a calendar year in `tz`."""
    return day_period(date(year, 1, 1), tz)[0], day_period(date(year + 1, 1, 1), tz)[0]


def range_period(first: date, last: date, tz: tzinfo = CENTER_TZ) -> tuple[datetime, datetime]:
    """[start, end) of the days `first` to `last`, both included, in `tz`."""
    if last < first:
        raise ValidationError("to", f"must not be before from ({first.isoformat()}), got {last.isoformat()}")
    return day_period(first, tz)[0], day_period(last, tz)[1]


def period_of(kind: str, day: date, tz: tzinfo = CENTER_TZ) -> tuple[datetime, datetime]:
    """The daily, weekly, monthly or yearly period holding `day`."""
    if kind == "daily":
        return day_period(day, tz)
    if kind == "weekly":
        return week_period(day, tz)
    if kind == "monthly":
        return month_period(day.year, day.month, tz)
    if kind == "yearly":
        return year_period(day.year, tz)
    raise ValidationError("period", f"must be daily, weekly, monthly or yearly, got {kind!r}")


def local_offsets(epoch: np.ndarray, tz: tzinfo) -> np.ndarray | float:
    """UTC offset in seconds of each instant in `tz` (one float when `tz` has a fixed offset)."""
    probe = [datetime(2000, 1, 1), datetime(2000, 7, 1)]
    fixed = {tz.utcoffset(p) for p in probe}
    if len(fixed) == 1 and None not in fixed:
        return next(iter(fixed)).total_seconds()  # type: ignore[union-attr]
    return np.array([datetime.fromtimestamp(float(t), tz).utcoffset().total_seconds()  # type: ignore[union-attr]
                     if math.isfinite(t) else 0.0 for t in epoch])


def local_hour(epoch: np.ndarray, tz: tzinfo) -> np.ndarray:
    """Hour of day 0..23 in `tz` of each instant (epoch seconds, finite)."""
    local = epoch + local_offsets(epoch, tz)
    return (np.floor(local / 3600.0) % 24).astype(np.int64)


def local_day_index(epoch: np.ndarray, start: datetime, tz: tzinfo) -> np.ndarray:
    """Day number of each instant counted from the local day of `start` (0 = that day)."""
    local = epoch + local_offsets(epoch, tz)
    origin = start.timestamp() + start.astimezone(tz).utcoffset().total_seconds()  # type: ignore[union-attr]
    return np.floor((local - origin) / DAY_S).astype(np.int64)


def summary(values: np.ndarray, ascending: np.ndarray | None = None) -> tuple[int, float | None, float | None, float | None]:
    """(count, mean, median, p90) of the finite values; None statistics when there are none.
    `ascending`: the same finite values already sorted (the percentiles' partition is then cheap;
    the mean still sums `values` in their own order, so it is the same to the last bit)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0, None, None, None
    median, p90 = np.percentile(v if ascending is None else ascending, [50, 90])
    return int(v.size), float(v.mean()), float(median), float(p90)


def group_summary(codes: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, ...]:
    """Per group code 0..n_groups-1: (count, mean, median, p90) arrays over finite values.

    Sorted once by value, then stably by code (a radix sort for small codes): no Python loop over
    groups. Groups without values get count 0 and NaN statistics.
    """
    keep = np.isfinite(values) & (codes >= 0)
    v = values[keep]
    by_value = np.argsort(v)
    return grouped_sorted(codes[keep][by_value], v[by_value], n_groups)


def value_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the finite values in ascending order, those values): share one sort among groupings."""
    finite = np.flatnonzero(np.isfinite(values))
    order = finite[np.argsort(values[finite])]
    return order, values[order]


def stable_code_order(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """The stable ascending order of non-negative `codes` (< `n_groups`): an LSD radix sort by
    bytes, as numpy's stable argsort of uint8 is a counting sort (ten times its int16 argsort)."""
    if n_groups > 1 << 24:
        return np.argsort(codes, kind="stable")
    order = np.argsort(codes.astype(np.uint8), kind="stable")  # the low byte (casting wraps)
    shift = 8
    while n_groups > 1 << shift:
        byte = (codes[order] >> shift).astype(np.uint8)
        order = order[np.argsort(byte, kind="stable")]
        shift += 8
    return order


def grouped_sorted(codes: np.ndarray, sorted_values: np.ndarray, n_groups: int) -> tuple[np.ndarray, ...]:
    """`group_summary` of values already in ascending order (codes aligned; negative codes skipped).

    Counts and sums come from bincounts over the values as they are (a stable sort keeps each
    group's values in that order, so the sums are the same to the last bit); the percentiles
    gather only the order statistics they need through the stable order by code."""
    v = sorted_values
    span = max(n_groups, int(codes.max()) + 1) if codes.size else n_groups
    c = np.where(codes >= 0, codes, span)  # skipped: sorted after every group
    count = np.bincount(c, minlength=n_groups)[:n_groups]
    total = np.bincount(c, weights=v, minlength=n_groups)[:n_groups]
    starts = np.concatenate(([0], np.cumsum(count)[:-1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    out = [count, mean]
    has = count > 0
    last = (count - 1).clip(min=0)
    by_code = stable_code_order(c, span + 1) if has.any() else None
    for q in (0.5, 0.9):
        pos = last * q
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        hi = np.minimum(lo + 1, last)
        res = np.full(n_groups, np.nan)
        if by_code is not None:
            v_lo = v[by_code[np.where(has, starts + lo, 0)]]
            v_hi = v[by_code[np.where(has, starts + hi, 0)]]
            res = np.where(has, v_lo + (v_hi - v_lo) * frac, np.nan)
        out.append(res)
    return tuple(out)


def rate(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, None when nothing was counted."""
    return None if denominator == 0 else numerator / denominator


def clean(x: float) -> float | None:
    """A float for JSON: NaN becomes None."""
    return None if x is None or not math.isfinite(x) else float(x)
