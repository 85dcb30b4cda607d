"""The organisation tree of responsible units, read from a city profile's ``units`` layer.

Levels follow the 12319 practice: 1 the hotline center (热线中心, the root), 2 the departments
that supervise (二级网络单位: 供电公司, 供水集团, 燃气管理办公室 ...), 3 the service stations
(三级网络单位: 供电所, 营业所, 环卫所 ...), which own the crews. A ``units`` feature may carry
``parent_id`` and ``level``; a profile without them still loads: every unit is then level 3 under
the center. A level-2 unit's polygon is the union of its stations' areas (it has no area of its
own); the responsible unit of a place is always a level-3 one.

The center is not a feature of the layer: its id is ``CENTER_ID`` and its name comes from the
profile's ``[city] hotline_center`` (default: the city's name + 热线中心).

Pure: no I/O; the store (``store.units``) keeps the same rules for edits through
``move_refusal``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CENTER_ID", "LEVEL_CENTER", "LEVEL_DEPARTMENT", "LEVEL_STATION", "UnitNode", "TreeError",
           "nodes_from_frame", "check_tree", "move_refusal", "center_name"]

CENTER_ID = "CENTER"
LEVEL_CENTER, LEVEL_DEPARTMENT, LEVEL_STATION = 1, 2, 3


@dataclass(frozen=True)
class UnitNode:
    """One unit of the tree: id, parent (None for the center), level, name, trades, phone."""

    unit_id: str
    parent_id: str | None
    level: int
    name: str
    trades: tuple[str, ...]
    phone: str = ""


class TreeError(ValueError):
    """A tree that breaks a rule: ``code`` is unknown_parent, cycle or level_mismatch."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def center_name(city_meta: Mapping[str, Any]) -> str:
    """The hotline center's name from the profile's ``[city]`` table."""
    name = city_meta.get("hotline_center")
    return str(name) if not _blank(name) else f"{city_meta.get('name', '')}热线中心"


def nodes_from_frame(rows: Iterable[Mapping[str, Any]], center: str = "热线中心") -> list[UnitNode]:
    """The tree from the ``units`` layer's rows (dicts with unit_id, name, category and maybe
    parent_id, level, phone): the center first, then parents before their children. A level-2
    unit's trades are its own category and those of the units under it."""
    rows = list(rows)
    nodes: dict[str, dict[str, Any]] = {}
    for row in rows:
        level = LEVEL_STATION if _blank(row.get("level")) else int(row["level"])
        parent = CENTER_ID if _blank(row.get("parent_id")) else str(row["parent_id"])
        nodes[str(row["unit_id"])] = {"parent": parent, "level": level, "name": str(row["name"]),
                                      "trades": {str(row["category"])},
                                      "phone": "" if _blank(row.get("phone")) else str(row["phone"])}
    for uid, node in nodes.items():  # a department's trades: those of its whole subtree
        seen, parent = {uid}, node["parent"]
        while parent in nodes and parent not in seen:
            nodes[parent]["trades"] |= node["trades"]
            seen.add(parent)
            parent = nodes[parent]["parent"]
    out = [UnitNode(CENTER_ID, None, LEVEL_CENTER, center, tuple(sorted(set().union(
        *(n["trades"] for n in nodes.values())))) if nodes else ())]
    for uid in sorted(nodes, key=lambda u: (nodes[u]["level"], u)):
        n = nodes[uid]
        out.append(UnitNode(uid, n["parent"], n["level"], n["name"], tuple(sorted(n["trades"])), n["phone"]))
    check_tree(out)
    return out


def move_refusal(units: Mapping[str, tuple[str | None, int]], unit_id: str, parent_id: str | None) -> TreeError | None:
    """Why ``unit_id`` may not hang under ``parent_id`` given every unit's (parent, level), or
    None when it may. Rules: only the center has no parent; the parent exists; its level is lower
    (closer to the center) than the unit's; the unit is not the parent's ancestor (no cycle)."""
    level = units[unit_id][1]
    if parent_id is None:
        if level == LEVEL_CENTER:
            return None
        return TreeError("unknown_parent", f"{unit_id} needs a parent")
    if parent_id not in units:
        return TreeError("unknown_parent", f"no unit {parent_id}")
    seen, cursor = set(), parent_id
    while cursor is not None and cursor not in seen:
        if cursor == unit_id:
            return TreeError("cycle", f"{parent_id} is under {unit_id}: that would make a cycle")
        seen.add(cursor)
        cursor = units[cursor][0] if cursor in units else None
    if units[parent_id][1] >= level:
        return TreeError("level_mismatch", f"{unit_id} (level {level}) cannot be under {parent_id} "
                                           f"(level {units[parent_id][1]})")
    return None


def check_tree(nodes: Iterable[UnitNode]) -> None:
    """Raise TreeError unless the nodes form one tree under the center with the level rules."""
    units = {n.unit_id: (n.parent_id, n.level) for n in nodes}
    if units.get(CENTER_ID) != (None, LEVEL_CENTER):
        raise TreeError("unknown_parent", "the tree has no center")
    for uid, (parent, level) in units.items():
        if not LEVEL_CENTER <= level <= LEVEL_STATION:
            raise TreeError("level_mismatch", f"{uid} has level {level}; levels are 1..3")
        refusal = move_refusal(units, uid, parent)
        if refusal is not None:
            raise refusal
