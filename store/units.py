"""The organisation tree of responsible units, in PostgreSQL.

Table ``units`` (store/migrations/0006_units.sql), owned here: the hotline center (level 1, the
root), the departments that supervise (level 2, 二级) and the service stations (level 3, 三级).
The tree's rules (only the center has no parent, a parent is known and of a lower level, no
cycle) are ``gis.units.move_refusal``; every write that may move a unit takes the
transaction-level advisory lock ``TREE_LOCK`` first, so two administrators moving units at once
cannot build a cycle between them.

Seeding: the city profile's ``units`` layer is the source; ``seed`` adds the units the table does
not know and brings a seeded unit (``source = 'city'``) up to date with the profile, in one
transaction with one ``units.seed`` audit row when anything changed (a second seed of the same
profile changes nothing). A unit an administrator has edited (``source = 'admin'``) is never
overwritten by a seed. Each edit (name, phone, parent, active) is written with its
``unit.update`` row in ``admin_audit`` (who, when, ``{field: [old, new]}``) in one transaction.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Mapping

from psycopg.rows import dict_row

from command.errors import NotFound, Refused
from store.db import Database
from store.fleet import Audit, utc, write_audit
from gis.units import CENTER_ID, TreeError, UnitNode, center_name, check_tree, move_refusal, nodes_from_frame

__all__ = ["UnitStore", "UnitNotFound", "UnitRefused", "unit_record", "nodes_of_city", "CENTER_ID", "EDITABLE"]

log = logging.getLogger(__name__)

TREE_LOCK = 0x756E697473  # pg_advisory_xact_lock key of tree writes ("units")
MAX_DEPTH = 16  # recursion guard of the chain and subtree queries (the tree has 3 levels)
_COLUMNS = "unit_id, parent_id, level, name, trades, phone, active, source, version, updated_at, updated_by"
_SEED = (
    "INSERT INTO units (unit_id, parent_id, level, name, trades, phone, active, source, updated_at, updated_by)"
    " VALUES (%(unit_id)s, %(parent_id)s, %(level)s, %(name)s, %(trades)s, %(phone)s, true, 'city', %(at)s, 'system')"
    " ON CONFLICT (unit_id) DO UPDATE SET parent_id = EXCLUDED.parent_id, level = EXCLUDED.level,"
    " name = EXCLUDED.name, trades = EXCLUDED.trades, phone = EXCLUDED.phone, updated_at = EXCLUDED.updated_at,"
    " version = units.version + 1"
    " WHERE units.source = 'city' AND (units.parent_id, units.level, units.name, units.trades, units.phone)"
    " IS DISTINCT FROM (EXCLUDED.parent_id, EXCLUDED.level, EXCLUDED.name, EXCLUDED.trades, EXCLUDED.phone)"
    " RETURNING (xmax = 0) AS inserted")
EDITABLE = ("name", "phone", "parent_id", "active")


class UnitNotFound(NotFound, LookupError):
    """No unit with this id (HTTP 404 ``unit_not_found``)."""

    def __init__(self, unit_id: str) -> None:
        super().__init__("unit_not_found", f"no unit {unit_id}")


class UnitRefused(Refused):
    """An edit the tree's rules refuse (HTTP 400, field parent_id): ``code`` unknown_parent, cycle
    or level_mismatch."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(400, code, message, field="parent_id")


def unit_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``units`` row as a plain record (``updated_at`` in epoch seconds)."""
    updated: datetime = row["updated_at"]
    return {"unit_id": row["unit_id"], "parent_id": row["parent_id"], "level": int(row["level"]),
            "name": row["name"], "trades": list(row["trades"] or ()), "phone": row["phone"],
            "active": bool(row["active"]), "source": row["source"], "version": int(row["version"]),
            "updated_at": updated.timestamp(), "updated_by": row["updated_by"]}


def nodes_of_city(city: Any) -> list[UnitNode]:
    """The tree of a loaded `gis.layers.City` (None, or a city without units: the center alone)."""
    units = getattr(city, "units", None)
    profile = getattr(city, "profile", None)
    rows = [] if units is None else units.drop(columns="geometry").to_dict("records")
    return nodes_from_frame(rows, center_name(getattr(profile, "city", {})))


class UnitStore:
    """Read and edit the unit tree; seed it from the city profile."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def seed(self, nodes: Iterable[UnitNode], at: float) -> list[str]:
        """Add or bring up to date the profile's units (parents first), never one an
        administrator edited; returns what changed (``added:PWR01``, ``updated:WAT01``). When the
        result would break the tree's rules (an edited unit under a unit the profile moved to
        another level), nothing is written and the error is logged."""
        nodes = list(nodes)
        changed: list[str] = []
        try:
            async with self.db.transaction() as conn:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (TREE_LOCK,))
                for node in nodes:
                    cur = await conn.execute(_SEED, {"unit_id": node.unit_id, "parent_id": node.parent_id,
                                                     "level": node.level, "name": node.name,
                                                     "trades": list(node.trades), "phone": node.phone,
                                                     "at": utc(at)})
                    row = await cur.fetchone()
                    if row is not None:
                        changed.append(f"{'added' if row[0] else 'updated'}:{node.unit_id}")
                if not changed:
                    return []
                cur = await conn.execute("SELECT unit_id, parent_id, level, name, trades, phone FROM units")
                check_tree(UnitNode(r[0], r[1], r[2], r[3], tuple(r[4]), r[5]) for r in await cur.fetchall())
                await write_audit(conn, Audit("system", "system", "units.seed", "city", {"changed": changed}, at))
        except TreeError as error:
            log.error("units: the city profile's tree was not seeded: %s", error)
            return []
        return changed

    async def tree(self) -> list[dict[str, Any]]:
        """Every unit, by level then id."""
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM units ORDER BY level, unit_id")
        return [unit_record(r) for r in rows]

    async def get(self, unit_id: str) -> dict[str, Any] | None:
        """One unit, or None."""
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM units WHERE unit_id = %s", (unit_id,))
        return None if row is None else unit_record(row)

    async def chain(self, unit_id: str) -> list[dict[str, Any]]:
        """The unit and the units above it up to the center, nearest first ([] if unknown)."""
        rows = await self.db.fetch(
            f"WITH RECURSIVE up AS (SELECT {_COLUMNS}, 0 AS depth FROM units WHERE unit_id = %(id)s"
            f" UNION ALL SELECT {', '.join('u.' + c.strip() for c in _COLUMNS.split(','))}, up.depth + 1"
            "  FROM units u JOIN up ON u.unit_id = up.parent_id WHERE up.depth < %(max)s)"
            f" SELECT {_COLUMNS} FROM up ORDER BY depth", {"id": unit_id, "max": MAX_DEPTH})
        return [unit_record(r) for r in rows]

    async def children(self, unit_id: str) -> list[dict[str, Any]]:
        """The units directly under a unit, by id."""
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM units WHERE parent_id = %s ORDER BY unit_id",
                                   (unit_id,))
        return [unit_record(r) for r in rows]

    async def descendants(self, unit_id: str, *, include_self: bool = True) -> list[str]:
        """Ids of the units under a unit at any depth (a unit sees its own tickets and those of
        the units under it), nearest first; with the unit itself first unless told not to."""
        rows = await self.db.fetch(
            "WITH RECURSIVE down AS (SELECT unit_id, 0 AS depth FROM units WHERE unit_id = %(id)s"
            " UNION ALL SELECT u.unit_id, down.depth + 1 FROM units u JOIN down ON u.parent_id = down.unit_id"
            "  WHERE down.depth < %(max)s)"
            " SELECT unit_id FROM down WHERE depth > 0 OR %(self)s ORDER BY depth, unit_id",
            {"id": unit_id, "max": MAX_DEPTH, "self": include_self})
        return [r["unit_id"] for r in rows]

    async def update(self, unit_id: str, changes: Mapping[str, Any], *, by: str, role: str,
                     at: float) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """Apply ``changes`` (some of name, phone, parent_id, active) with their audit row, in one
        transaction; returns the unit and ``{field: [old, new]}`` (empty: nothing changed, nothing
        written). Raises UnitNotFound, or UnitRefused for a move the tree's rules refuse."""
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
        async with self.db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (TREE_LOCK,))
            read = conn.cursor(row_factory=dict_row)
            await read.execute(f"SELECT {_COLUMNS} FROM units WHERE unit_id = %s FOR UPDATE", (unit_id,))
            row = await read.fetchone()
            if row is None:
                raise UnitNotFound(unit_id)
            current = unit_record(row)
            diff = {k: [current[k], v] for k, v in changes.items() if current[k] != v}
            if not diff:
                return current, {}
            if "parent_id" in diff:
                cur = await conn.execute("SELECT unit_id, parent_id, level FROM units")
                units = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
                refusal = move_refusal(units, unit_id, changes["parent_id"])
                if refusal is not None:
                    raise UnitRefused(refusal.code, str(refusal))
            new = {**current, **{k: v[1] for k, v in diff.items()}}
            await read.execute(
                "UPDATE units SET name = %(name)s, phone = %(phone)s, parent_id = %(parent_id)s, active = %(active)s,"
                " source = 'admin', version = version + 1, updated_at = %(at)s, updated_by = %(by)s"
                f" WHERE unit_id = %(unit_id)s RETURNING {_COLUMNS}", {**new, "at": utc(at), "by": by})
            saved = unit_record(await read.fetchone())
            await write_audit(conn, Audit(by, role, "unit.update", f"unit:{unit_id}", diff, at))
        return saved, diff

