"""Accounts and roles in PostgreSQL: the table ``accounts`` (store/migrations/0002_fleet.sql).

An account reads as the dict the login and admin code have always used: ``name``, ``role``,
``display``, ``crew_id`` ('' when none), ``unit_id`` (a liaison's unit, 0007_unit_accounts.sql; ''
when none), ``active`` ('1' or '0') and ``hash`` (the scrypt hash
of ``command.accounts``; left out of ``AccountStore.all``). Sessions and the login throttle stay
in Redis (``store.login``). A change an administrator makes is written with its audit
entry in one transaction by ``store.fleet.AdminStore.put_account``, which uses ``upsert``.
"""
from __future__ import annotations

from typing import Any, Mapping

import psycopg
from psycopg import sql

from store.db import Database

# field of the account dict -> its column
COLUMNS = {"role": "role", "display": "display", "crew_id": "crew_id", "unit_id": "unit_id", "active": "active",
           "hash": "password_hash"}
_SELECT = "SELECT name, role, display, crew_id, unit_id, active, password_hash FROM accounts"
# The upsert of the fields given (psycopg.sql composes the column names; values are parameters).
_INSERT = "INSERT INTO accounts (name, {columns}) VALUES (%(name)s, {values})"


def _column_value(field: str, value: Any) -> Any:
    if field == "active":
        return value in (True, "1", 1)
    if field in ("crew_id", "unit_id"):
        return value or None
    return "" if value is None else str(value)


def account_view(row: Mapping[str, Any]) -> dict[str, str]:
    """A row of ``accounts`` as the account dict (see the module's docstring)."""
    return {"name": row["name"], "role": row["role"], "display": row["display"] or "",
            "crew_id": row["crew_id"] or "", "unit_id": row["unit_id"] or "", "active": "1" if row["active"] else "0",
            "hash": row["password_hash"] or ""}


async def upsert(conn: psycopg.AsyncConnection, name: str, fields: Mapping[str, Any], *,
                 only_new: bool = False) -> bool:
    """Create or update the account ``name`` with ``fields`` (keys of COLUMNS; the others keep
    their values) on an open connection; with only_new, refuse (False) when it exists. A new
    account needs a ``role``."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown account fields: {', '.join(sorted(unknown))}")
    params = {"name": name, **{COLUMNS[k]: _column_value(k, v) for k, v in fields.items()}}
    columns = [COLUMNS[k] for k in fields]
    if not columns:
        cur = await conn.execute("SELECT 1 FROM accounts WHERE name = %s", (name,))
        return not only_new and await cur.fetchone() is not None
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    insert = sql.SQL(_INSERT).format(columns=names, values=sql.SQL(", ").join(map(sql.Placeholder, columns)))
    assign = sql.SQL(", ").join(sql.SQL("{0} = {1}").format(sql.Identifier(c), sql.Placeholder(c)) for c in columns)
    if only_new:
        cur = await conn.execute(sql.SQL("{} ON CONFLICT (name) DO NOTHING").format(insert), params)
        return cur.rowcount == 1
    # an update first: an INSERT of some fields would fail the NOT NULL role before ON CONFLICT
    cur = await conn.execute(sql.SQL("UPDATE accounts SET {}, updated_at = now() WHERE name = %(name)s")
                             .format(assign), params)
    if cur.rowcount == 0:
        cur = await conn.execute(sql.SQL("{} ON CONFLICT (name) DO UPDATE SET {}, updated_at = now()")
                                 .format(insert, assign), params)
    return cur.rowcount == 1


class NoDatabase:
    """Stands for the Database of a process started without DATABASE_URL: any use says so."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"{self.what} lives in PostgreSQL: this process has no DATABASE_URL")


class AccountStore:
    """Reads and plain writes of the ``accounts`` table (no audit: see AdminStore.put_account)."""

    def __init__(self, db: Database | None) -> None:
        self.db = db if db is not None else NoDatabase("the accounts")

    async def get(self, name: str) -> dict[str, str] | None:
        """One account (with its hash), or None."""
        row = await self.db.fetchone(_SELECT + " WHERE name = %s", (name,))
        return None if row is None else account_view(row)

    async def put(self, name: str, fields: Mapping[str, Any], *, only_new: bool = False) -> bool:
        """Create or update an account; with only_new, refuse (False) when it exists."""
        async with self.db.transaction() as conn:
            return await upsert(conn, name, fields, only_new=only_new)

    async def all(self) -> list[dict[str, str]]:
        """Every account by name, without password hashes."""
        rows = await self.db.fetch(_SELECT + " ORDER BY name")
        return [{k: v for k, v in account_view(r).items() if k != "hash"} for r in rows]

    async def names(self) -> set[str]:
        """The names of every account."""
        return {r["name"] for r in await self.db.fetch("SELECT name FROM accounts")}

    async def unit_liaisons(self, units: list[dict[str, Any]], password_hash: str) -> list[str]:
        """One liaison account per unit given (``unit-<unit_id>``, lower case, display the unit's
        name), created once; the names created."""
        created = []
        for unit in units:
            name = f"unit-{unit['unit_id']}".lower()
            fields = {"role": "unit", "unit_id": unit["unit_id"], "display": f"{unit['name']} 联络员"[:50],
                      "active": "1", "hash": password_hash}
            if await self.put(name, fields, only_new=True):
                created.append(name)
        return created

    async def crew_members(self) -> dict[str, list[str]]:
        """Active and inactive crew accounts by crew id, each list sorted."""
        out: dict[str, list[str]] = {}
        for row in await self.db.fetch("SELECT crew_id, name FROM accounts WHERE role = 'crew'"
                                       " AND crew_id IS NOT NULL ORDER BY crew_id, name"):
            out.setdefault(row["crew_id"], []).append(row["name"])
        return out
