"""The unit report (单位考核): per responsible unit, from the KPI rows of a period (pure).

Each ticket counts for its unit (the ticket's LAST unit: `create`, then `transfer`,
`reroute_return` and `set_unit` move it; see `command.kpi_facts`). Every 三级 station has its own
row; every 二级 department has a row for its own tickets plus those of its stations (the sum, so
a department is answerable for the stations under it); a ticket whose unit is not in the tree
has a row of its own (level None).

As the KPI report counts them (`command.kpi`): by CREATION in the period the tickets received,
the on-time acceptance (受理 within its limit: the ``accept`` stage, `unit_accept` included),
returns (退单: asked, approved or re-routed), extensions (延期: asked, approved) and 督办 (issued,
urged, escalated: the ticket's ``note`` events that carry them); by LAST RESOLUTION in the period
the on-time feedback (反馈 within its limit: the ``resolve`` stage, an approved extension
honoured), callbacks that reached the citizen and the satisfied share of them (satisfied or
basically satisfied), and rework (返工: reopenings).

The 考核 score (`SCORE_POINTS`, `SCORE_PENALTIES`), 0..100 before penalties::

    score = 30 × on-time acceptance rate + 40 × on-time feedback rate + 30 × satisfied share
            − (20 × rework + 10 × 督办 issued + 20 × escalations) / tickets received

A rate with nothing judged counts as 1 (nothing missed); the penalties per ticket received (or
per ticket resolved when none was received). Rows are ranked within their level by score, then
tickets received (more first), then unit id. Drill-downs (`UNIT_DRILLS`) name each number's tickets.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from command.errors import ValidationError
from command.kpi_facts import CALLBACK_RESULTS

SCORE_POINTS = {"accept_rate": 30.0, "feedback_rate": 40.0, "satisfied_rate": 30.0}
SCORE_PENALTIES = {"rework": 20.0, "supervisions": 10.0, "escalations": 20.0}
_SAT = [CALLBACK_RESULTS.index("satisfied"), CALLBACK_RESULTS.index("basically_satisfied")]
_REACHED = _SAT + [CALLBACK_RESULTS.index("dissatisfied")]

Cols = Mapping[str, np.ndarray]
_Masks = tuple[np.ndarray, np.ndarray]  # (created in the period, last resolved in the period)

# metric → the rows behind it (each row counted once; a count's tickets are those with one or more)
UNIT_DRILLS: dict[str, Callable[[Cols, _Masks], np.ndarray]] = {
    "tickets": lambda c, m: m[0],
    "accept_judged": lambda c, m: m[0] & (c["met_accept"] >= 0),
    "accept_on_time": lambda c, m: m[0] & (c["met_accept"] == 1),
    "accept_late": lambda c, m: m[0] & (c["met_accept"] == 0),
    "feedback_judged": lambda c, m: m[1] & (c["met_resolve"] >= 0),
    "feedback_on_time": lambda c, m: m[1] & (c["met_resolve"] == 1),
    "feedback_late": lambda c, m: m[1] & (c["met_resolve"] == 0),
    **{name: (lambda c, m, name=name: m[0] & (c[name] > 0)) for name in (
        "return_requests", "returns_approved", "extension_requests", "extensions_approved",
        "supervisions", "urgings", "escalations")},
    "callbacks": lambda c, m: m[1] & (c["closed_on_call"] == 0) & np.isin(c["callback_result"], _REACHED),
    "satisfied": lambda c, m: m[1] & (c["closed_on_call"] == 0) & np.isin(c["callback_result"], _SAT),
    "dissatisfied": lambda c, m: m[1] & (c["closed_on_call"] == 0)
    & (c["callback_result"] == CALLBACK_RESULTS.index("dissatisfied")),
    "rework": lambda c, m: m[1] & (c["reopen_count"] > 0),
}
_SUMMED = {"return_requests": 0, "returns_approved": 0, "extension_requests": 0, "extensions_approved": 0,
           "supervisions": 0, "urgings": 0, "escalations": 0, "rework": 1}  # column's sum over created/resolved
_COUNTED = ("tickets", "accept_judged", "accept_on_time", "feedback_judged", "feedback_on_time", "callbacks",
            "satisfied")


def period_masks(cols: Cols, start: datetime, end: datetime) -> _Masks:
    """(created in [start, end), last resolved in [start, end)) of every row."""
    a, b = start.timestamp(), end.timestamp()
    created, resolved = cols["created"], cols["resolved"]
    return (created >= a) & (created < b), (resolved >= a) & (resolved < b)


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def score(row: Mapping[str, Any]) -> float:
    """The 考核 score of a unit's row (see the module's formula), rounded to 0.1."""
    points = sum(w * (1.0 if row[k] is None else row[k]) for k, w in SCORE_POINTS.items())
    base = row["tickets"] or row["feedback_judged"] or 1
    penalty = sum(w * row[k] for k, w in SCORE_PENALTIES.items()) / base
    return round(points - penalty, 1)


def _counts(cols: Cols, masks: _Masks, codes: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per unit code (0..n-1): every count of a unit's row."""
    out: dict[str, np.ndarray] = {}
    valid = codes >= 0
    for name in _COUNTED:
        pick = UNIT_DRILLS[name](cols, masks) & valid
        out[name] = np.bincount(codes[pick], minlength=n)
    for name, which in _SUMMED.items():
        column = "reopen_count" if name == "rework" else name
        pick = masks[which] & valid & (cols[column] > 0)
        out[name] = np.bincount(codes[pick], weights=cols[column][pick], minlength=n).astype(np.int64)
    return out


def unit_rows(cols: Cols, unit_names: Sequence[str | None], start: datetime, end: datetime,
              tree: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ranked rows of the units with tickets in [start, end): 二级 departments (with their
    stations' tickets summed in) then 三级 stations, each ranked within its level (``rank``)."""
    masks = period_masks(cols, start, end)
    n = len(unit_names)
    counts = _counts(cols, masks, cols["unit"], n)
    index = {name: i for i, name in enumerate(unit_names) if name is not None}
    units = {u["unit_id"]: u for u in tree}
    members: dict[str, list[int]] = {}  # unit id → codes whose tickets it answers for
    for name, code in index.items():
        unit = units.get(name)
        members.setdefault(name, []).append(code)
        if unit is not None and unit.get("level") == 3 and unit.get("parent_id") in units:
            members.setdefault(unit["parent_id"], []).append(code)
    rows = []
    for unit_id, codes in members.items():
        row = {k: int(v[codes].sum()) for k, v in counts.items()}
        if not row["tickets"] and not row["feedback_judged"] and not row["callbacks"] and not row["rework"]:
            continue
        unit = units.get(unit_id, {})
        row.update(unit_id=unit_id, name=unit.get("name"), level=unit.get("level"), parent_id=unit.get("parent_id"),
                   stations=len(codes) - (1 if unit_id in index else 0) if unit.get("level") == 2 else 0,
                   accept_rate=_rate(row["accept_on_time"], row["accept_judged"]),
                   feedback_rate=_rate(row["feedback_on_time"], row["feedback_judged"]),
                   satisfied_rate=_rate(row["satisfied"], row["callbacks"]))
        row["score"] = score(row)
        rows.append(row)
    rows.sort(key=lambda r: (r["level"] is None, r["level"] or 0, -r["score"], -r["tickets"], r["unit_id"]))
    rank, level = 0, object()
    for row in rows:
        rank = rank + 1 if row["level"] == level else 1
        level = row["level"]
        row["rank"] = rank
    return rows


def unit_codes(unit_names: Sequence[str | None], unit_id: str, tree: Sequence[Mapping[str, Any]]) -> list[int]:
    """The codes whose tickets a unit's row counts: its own and, for a 二级 department, its stations'."""
    parent = {u["unit_id"]: u.get("parent_id") for u in tree if u.get("level") == 3}
    return [i for i, name in enumerate(unit_names)
            if name is not None and (name == unit_id or parent.get(name) == unit_id)]


def drill_unit(cols: Cols, unit_names: Sequence[str | None], start: datetime, end: datetime,
               tree: Sequence[Mapping[str, Any]], unit_id: str, metric: str) -> np.ndarray:
    """Row indices behind one number of a unit's row (`UNIT_DRILLS` metric); ValidationError for
    an unknown metric."""
    pick = UNIT_DRILLS.get(metric)
    if pick is None:
        raise ValidationError("metric", f"unknown unit metric {metric!r}; one of: {', '.join(UNIT_DRILLS)}")
    mask = pick(cols, period_masks(cols, start, end)) & np.isin(cols["unit"], unit_codes(unit_names, unit_id, tree))
    return np.flatnonzero(mask)
