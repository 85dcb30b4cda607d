"""JT/T 808 terminals in PostgreSQL: the only code that spells the table ``jt808_terminals``
(store/migrations/0015_jt808_terminals.sql).

A terminal is known by its phone number (the header's BCD digits with the leading zeros dropped,
so the 12 digits of a 2013 header and the 20 of a 2019 one name the same terminal) and bound to
one vehicle of the fleet registry (``vehicles``, owned by ``store.fleet``; a vehicle has one
terminal at most: ``jt808_terminals_one_per_vehicle``). ``code_hash`` is the SHA-256 of the
authentication code the center issued at the terminal's last registration. Binding and unbinding
write their ``admin_audit`` row in the same transaction (``store.fleet.write_audit``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import psycopg

from store.accounts import NoDatabase
from store.db import Database
from store.fleet import Audit, write_audit

_COLUMNS = ("phone, terminal_id, maker, model, plate, vehicle_id, code_hash, registered_at, bound_at, bound_by")
_BIND = ("INSERT INTO jt808_terminals (phone, terminal_id, maker, model, plate, vehicle_id, bound_at, bound_by)"
         " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")


class TerminalTaken(Exception):
    """A bind refused by the database: ``what`` is ``phone`` (the phone is bound already) or
    ``vehicle`` (the vehicle has a terminal), or ``unknown_vehicle``."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True)
class Terminal:
    """A bound terminal; ``registered`` when the center has issued it a code."""

    phone: str
    terminal_id: str
    maker: str
    model: str
    plate: str
    vehicle_id: str
    code_hash: str
    registered_at: float | None
    bound_at: float
    bound_by: str

    @property
    def registered(self) -> bool:
        """Whether an authentication code was issued."""
        return bool(self.code_hash)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _terminal(row: Any) -> Terminal:
    return Terminal(*row[:7], _epoch(row[7]), _epoch(row[8]) or 0.0, row[9])


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


class TerminalStore:
    """The terminals' table through the process's async pool."""

    def __init__(self, db: Database | None) -> None:
        self.db = db if db is not None else NoDatabase("the JT/T 808 terminals")

    async def get(self, phone: str) -> Terminal | None:
        """The terminal of a phone number (leading zeros dropped), or None."""
        async with self.db.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM jt808_terminals WHERE phone = %s", (phone,))
            row = await cur.fetchone()
        return None if row is None else _terminal(row)

    async def all(self) -> list[Terminal]:
        """Every terminal, by phone number."""
        async with self.db.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM jt808_terminals ORDER BY phone")
            return [_terminal(row) for row in await cur.fetchall()]

    async def vehicle_state(self, vehicle_id: str) -> bool | None:
        """Whether a vehicle of the registry is active; None when there is no such vehicle."""
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT active FROM vehicles WHERE vehicle_id = %s", (vehicle_id,))
            row = await cur.fetchone()
        return None if row is None else bool(row[0])

    async def plate_holder(self, plate: str) -> str | None:
        """The phone of the terminal bound to the vehicle of this plate (registry plate), or None."""
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT t.phone FROM jt808_terminals t JOIN vehicles v USING (vehicle_id)"
                                     " WHERE v.plate = %s AND v.plate <> ''", (plate,))
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def bind(self, terminal: Terminal, audit: Audit | None) -> None:
        """Insert a terminal with its audit row (one transaction); TerminalTaken when the phone
        or the vehicle is bound already, or the vehicle is unknown."""
        try:
            async with self.db.transaction() as conn:
                await conn.execute(_BIND, (terminal.phone, terminal.terminal_id, terminal.maker, terminal.model,
                                           terminal.plate, terminal.vehicle_id, _at(terminal.bound_at),
                                           terminal.bound_by))
                if audit is not None:
                    await write_audit(conn, audit)
        except psycopg.errors.UniqueViolation as exc:
            raise TerminalTaken("vehicle" if "one_per_vehicle" in str(exc) else "phone") from None
        except psycopg.errors.ForeignKeyViolation:
            raise TerminalTaken("unknown_vehicle") from None

    async def bind_many(self, terminals: Iterable[Terminal], audit: Callable[[int], Audit] | None = None) -> int:
        """Insert the terminals not bound yet (by phone) in one transaction, with the audit row
        ``audit(how many were new)`` when any was; how many were new (the demo's and the
        benchmark's seeding: one audit row for the lot)."""
        rows = [(t.phone, t.terminal_id, t.maker, t.model, t.plate, t.vehicle_id, _at(t.bound_at), t.bound_by)
                for t in terminals]
        async with self.db.transaction() as conn:
            count = "SELECT count(*) FROM jt808_terminals"
            before = (await (await conn.execute(count)).fetchone())[0]
            await conn.cursor().executemany(_BIND + " ON CONFLICT DO NOTHING", rows)
            added = (await (await conn.execute(count)).fetchone())[0] - before
            if added and audit is not None:
                await write_audit(conn, audit(added))
        return added

    async def unbind(self, phone: str, audit: Audit | None) -> Terminal | None:
        """Delete a terminal with its audit row; the terminal deleted, or None when unknown."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(f"DELETE FROM jt808_terminals WHERE phone = %s RETURNING {_COLUMNS}", (phone,))
            row = await cur.fetchone()
            if row is not None and audit is not None:
                await write_audit(conn, audit)
        return None if row is None else _terminal(row)

    async def registered(self, phone: str, code_hash: str, details: dict[str, str], at: float) -> None:
        """Record a registration: the new code's hash and what the terminal said (maker, model,
        terminal id, plate)."""
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE jt808_terminals SET code_hash = %s, registered_at = %s, maker = %s,"
                               " model = %s, terminal_id = %s, plate = %s WHERE phone = %s",
                               (code_hash, _at(at), details["maker"], details["model"], details["terminal_id"],
                                details["plate"], phone))
