"""督办单 (supervision orders) in PostgreSQL.

Table ``supervisions`` (store/migrations/0008_supervision.sql), owned here. The writes are
`Extra`s of `store.tickets.TicketStore.save`: each runs in the transaction of the ticket's
timeline event that records it (`services.supervision`), so there is no 督办 step without its
audit event and no event without its step. A write that finds the row changed meanwhile (an
answer racing an urge, two workers issuing at once) raises `SupervisionChanged` and the whole
save rolls back. Times come back as UTC epoch seconds.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Mapping

import psycopg

from command.errors import CommandError
from store.db import Database
from store.ticket_writes import Extra

__all__ = ["SupervisionStore", "SupervisionChanged", "supervision_record"]

_COLUMNS = ("id, number, unit_id, holder, issued_by, issued_at, deadline, message, causes, urgings, last_urged_at,"
            " answered_at, answered_by, answer, escalated_to_unit, escalated_at, escalations, closed_at")
_TIMES = ("issued_at", "deadline", "last_urged_at", "answered_at", "escalated_at", "closed_at")
_STATE_WHERE = {
    "open": "closed_at IS NULL",
    "due": "closed_at IS NULL AND deadline <= %(now)s",
    "answered": "answered_at IS NOT NULL",
}
_ORDER = {"open": "deadline, id", "due": "deadline, id", "answered": "answered_at DESC, id DESC"}


class SupervisionChanged(CommandError):
    """The 督办 changed between its read and this write (answered, urged or escalated meanwhile),
    or a ticket got an open 督办 from someone else at the same time (HTTP 409)."""

    status = 409
    code = "supervision_changed"


def supervision_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``supervisions`` row as a plain record (times in epoch seconds, causes a list)."""
    out = dict(row)
    for name in _TIMES:
        value: datetime | None = out.get(name)
        out[name] = None if value is None else value.timestamp()
    out["causes"] = list(out.get("causes") or ())
    return out


def _utc(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc)


async def _one(conn: psycopg.AsyncConnection, query: str, params: Mapping[str, Any]) -> None:
    """Run a write with RETURNING (pipeline mode: no rowcount) and insist it touched a row."""
    try:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
    except psycopg.errors.UniqueViolation:
        raise SupervisionChanged("the ticket already has an open supervision") from None
    if row is None:
        raise SupervisionChanged("the supervision changed meanwhile")


class SupervisionStore:
    """Read 督办 records; the writes are `Extra`s joining a ticket save's transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def next_id(self) -> int:
        """A fresh id for a 督办 about to be issued (its event names it before the row exists)."""
        row = await self.db.fetchone("SELECT nextval(pg_get_serial_sequence('supervisions', 'id')) AS id")
        return int(row["id"])  # type: ignore[index]

    async def get(self, supervision_id: int) -> dict[str, Any] | None:
        """One 督办, or None."""
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM supervisions WHERE id = %s", (supervision_id,))
        return None if row is None else supervision_record(row)

    async def open_for(self, number: str) -> dict[str, Any] | None:
        """The ticket's open 督办, or None."""
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM supervisions WHERE number = %s AND closed_at IS NULL",
                                     (number,))
        return None if row is None else supervision_record(row)

    async def of_ticket(self, number: str) -> list[dict[str, Any]]:
        """Every 督办 of a ticket, newest first."""
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM supervisions WHERE number = %s ORDER BY issued_at DESC,"
                                   " id DESC", (number,))
        return [supervision_record(r) for r in rows]

    async def page(self, state: str, now: float, *, units: Sequence[str] | None = None,
                   limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The 督办 in a state (open, due, answered), for the given units only (their own
        responsible unit or their holder) unless `units` is None; a page and how many match."""
        where = _STATE_WHERE[state]
        params: dict[str, Any] = {"now": _utc(now), "limit": limit, "offset": offset, "units": list(units or ())}
        if units is not None:
            where += " AND (unit_id = ANY(%(units)s) OR holder = ANY(%(units)s))"
        rows = await self.db.fetch(f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM supervisions WHERE {where}"
                                   f" ORDER BY {_ORDER[state]} LIMIT %(limit)s OFFSET %(offset)s", params)
        total = int(rows[0]["total"]) if rows else 0
        if not rows and offset:
            found = await self.db.fetchone(f"SELECT count(*) AS n FROM supervisions WHERE {where}", params)
            total = int(found["n"])  # type: ignore[index]
        return [supervision_record({k: v for k, v in r.items() if k != "total"}) for r in rows], total

    async def due(self, now: float, *, holders: Sequence[str], limit: int = 500) -> list[dict[str, Any]]:
        """Open 督办 past their deadline held by one of `holders`, earliest first."""
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM supervisions WHERE closed_at IS NULL AND deadline <= %s"
                                   " AND holder = ANY(%s) ORDER BY deadline, id LIMIT %s",
                                   (_utc(now), list(holders), limit))
        return [supervision_record(r) for r in rows]

    async def causes_of(self, numbers: Sequence[str]) -> dict[str, set[str]]:
        """The rules' causes already acted on, per ticket (any 督办 of the ticket, open or not)."""
        rows = await self.db.fetch("SELECT number, unnest(causes) AS cause FROM supervisions WHERE number = ANY(%s)",
                                   (list(numbers),))
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r["number"], set()).add(r["cause"])
        return out

    async def open_of_ended_tickets(self, limit: int = 500) -> list[dict[str, Any]]:
        """Open 督办 whose ticket has ended (closed, cancelled, merged)."""
        rows = await self.db.fetch(f"SELECT {', '.join('s.' + c.strip() for c in _COLUMNS.split(','))}"
                                   " FROM supervisions s JOIN tickets t ON t.number = s.number"
                                   " WHERE s.closed_at IS NULL AND NOT t.open ORDER BY s.id LIMIT %s", (limit,))
        return [supervision_record(r) for r in rows]

    # writes: Extras of TicketStore.save ---------------------------------------------------------
    @staticmethod
    def issue_write(supervision_id: int, number: str, unit_id: str, *, by: str, at: float, deadline: float,
                    message: str, causes: Sequence[str]) -> Extra:
        """Insert a new open 督办 (SupervisionChanged if the ticket has an open one already)."""
        params = {"id": supervision_id, "number": number, "unit": unit_id, "by": by, "at": _utc(at),
                  "deadline": _utc(deadline), "message": message, "causes": list(causes)}
        return lambda conn: _one(conn, "INSERT INTO supervisions (id, number, unit_id, issued_by, issued_at, deadline,"
                                 " message, causes) VALUES (%(id)s, %(number)s, %(unit)s, %(by)s, %(at)s, %(deadline)s,"
                                 " %(message)s, %(causes)s) RETURNING id", params)

    @staticmethod
    def urge_write(supervision_id: int, urgings: int, *, at: float, deadline: float, message: str,
                   causes: Sequence[str]) -> Extra:
        """Urge an open 督办 read with `urgings` urgings: one more, the new message and deadline, the
        rules' causes added."""
        params = {"id": supervision_id, "urgings": urgings, "at": _utc(at), "deadline": _utc(deadline),
                  "message": message, "causes": list(causes)}
        return lambda conn: _one(conn, "UPDATE supervisions SET urgings = urgings + 1, last_urged_at = %(at)s,"
                                 " message = %(message)s, deadline = %(deadline)s,"
                                 " causes = causes || ARRAY(SELECT unnest(%(causes)s::text[]) EXCEPT"
                                 " SELECT unnest(causes))"
                                 " WHERE id = %(id)s AND closed_at IS NULL AND urgings = %(urgings)s RETURNING id",
                                 params)

    @staticmethod
    def answer_write(supervision_id: int, *, by: str, at: float, answer: str) -> Extra:
        """Record the unit's answer; the 督办 closes."""
        params = {"id": supervision_id, "by": by, "at": _utc(at), "answer": answer}
        return lambda conn: _one(conn, "UPDATE supervisions SET answered_at = %(at)s, answered_by = %(by)s,"
                                 " answer = %(answer)s, closed_at = %(at)s WHERE id = %(id)s AND closed_at IS NULL"
                                 " RETURNING id", params)

    @staticmethod
    def escalate_write(supervision_id: int, escalations: int, *, to_unit: str, at: float,
                       deadline: float) -> Extra:
        """Hand a due 督办 (read with `escalations` escalations) to the unit above, with a new deadline."""
        params = {"id": supervision_id, "n": escalations, "to": to_unit, "at": _utc(at), "deadline": _utc(deadline)}
        return lambda conn: _one(conn, "UPDATE supervisions SET escalated_to_unit = %(to)s, escalated_at = %(at)s,"
                                 " escalations = escalations + 1, deadline = %(deadline)s WHERE id = %(id)s"
                                 " AND closed_at IS NULL AND escalations = %(n)s RETURNING id", params)

    @staticmethod
    def close_write(supervision_id: int, *, at: float) -> Extra:
        """Close an open 督办 whose ticket ended."""
        params = {"id": supervision_id, "at": _utc(at)}
        return lambda conn: _one(conn, "UPDATE supervisions SET closed_at = %(at)s WHERE id = %(id)s"
                                 " AND closed_at IS NULL RETURNING id", params)
