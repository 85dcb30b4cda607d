"""The writes of the tickets area (PostgreSQL, ``store/migrations/0001_tickets.sql``): the daily
numbers (``day_sequences``), `save` (tickets with their audit events, queue stages, alarm claims
and outbox rows, incidents under their revision and area guards, and other stores' `Extra`s, in
one transaction), the batching of concurrent saves into one transaction (`store.coalesce`) and
the refusals (Conflict, GuardFailed), and a client's applied action ids (``client_actions``).
Mixed into `store.tickets.TicketStore`, which builds the state used here."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any

import orjson
import psycopg
from psycopg import errors as pg_errors

from store.coalesce import Coalescer
from store.db import Database
from store.ticket_publish import delete_changes, publish_changes
from store.ticket_records import (
    INCIDENT_COLUMNS, TICKET_COLUMNS, GuardFailed, IncidentWrite, TicketWrite, alarm_guard, check_ticket_point,
    incident_fields, stage_rows, ticket_fields,
)
from command.errors import Conflict, TicketNotFound
from command.ticket_json import event_to_dict

log = logging.getLogger(__name__)

Extra = Callable[[psycopg.AsyncConnection], Awaitable[Any]]
_Save = tuple[tuple[TicketWrite, ...], tuple[IncidentWrite, ...], tuple[Extra, ...]]  # a save's arguments

_COLS = ", ".join(TICKET_COLUMNS)
_INCIDENT_COLS = ", ".join(INCIDENT_COLUMNS)
# The tickets of a save in one statement, from one JSON array of `_ticket_item`s (the rows typed by
# the table itself, jsonb_populate_record): new tickets inserted, the others updated only while
# still at their `prev` version; for each ticket written, its alarm claim, its audit events (ids in
# order), its open timed stages (the ones gone deleted, the others upserted: the two touch
# different rows) and its outbox row. Returns (number, outbox id, event ids) per ticket written.
_SAVE_TICKETS = (
    "WITH src AS (SELECT s.i, r.*, (s.item ->> 'prev')::integer AS prev, s.item -> 'events' AS events,"
    " s.item -> 'stages' AS stages, s.item ->> 'alarm' AS alarm, s.item ->> 'action' AS last_action"
    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS s(item, i),"
    " LATERAL jsonb_populate_record(NULL::tickets, s.item -> 'row') AS r),"
    f" ins AS (INSERT INTO tickets ({_COLS}) SELECT {_COLS} FROM src WHERE prev IS NULL ORDER BY i RETURNING number),"
    f" upd AS (UPDATE tickets t SET ({', '.join(TICKET_COLUMNS[1:])}) = ({', '.join('src.' + c for c in TICKET_COLUMNS[1:])})"
    " FROM src WHERE src.prev IS NOT NULL AND t.number = src.number AND t.version = src.prev RETURNING t.number),"
    " w AS (SELECT src.* FROM src WHERE number IN (SELECT number FROM ins UNION ALL SELECT number FROM upd)),"
    " cl AS (INSERT INTO alarm_tickets (alarm_key, number) SELECT alarm, number FROM w WHERE alarm IS NOT NULL),"
    " e AS (INSERT INTO ticket_events (number, at, action, event)"
    " SELECT w.number, (u.event ->> 'at')::timestamptz, u.event ->> 'action', u.event FROM w,"
    " jsonb_array_elements(w.events) WITH ORDINALITY AS u(event, j) ORDER BY w.i, u.j RETURNING id, number),"
    " d AS (DELETE FROM ticket_stages g USING w WHERE g.number = w.number"
    " AND g.stage NOT IN (SELECT x ->> 0 FROM jsonb_array_elements(w.stages) AS x)),"
    " st AS (INSERT INTO ticket_stages (number, stage, deadline, limit_s)"
    " SELECT w.number, x ->> 0, (x ->> 1)::timestamptz, (x ->> 2)::integer FROM w, jsonb_array_elements(w.stages) AS x"
    " ON CONFLICT (number, stage) DO UPDATE SET deadline = EXCLUDED.deadline, limit_s = EXCLUDED.limit_s),"
    " c AS (INSERT INTO ticket_changes (number, version, action, state)"
    " SELECT number, version, last_action, state FROM w ORDER BY w.i RETURNING id, number)"
    " SELECT w.number, (SELECT c.id FROM c WHERE c.number = w.number),"
    " ARRAY(SELECT e.id FROM e WHERE e.number = w.number ORDER BY e.id) FROM w ORDER BY w.i")
# The incidents of a save, from a JSON array of {"row": incident row by column, "new": bool}: new
# ones inserted, the others updated only while still at rev - 1. Returns the ids written.
_SAVE_INCIDENTS = (
    "WITH src AS (SELECT s.i, r.*, (s.item ->> 'new')::boolean AS new"
    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS s(item, i),"
    " LATERAL jsonb_populate_record(NULL::incidents, s.item -> 'row') AS r),"
    f" ins AS (INSERT INTO incidents ({_INCIDENT_COLS}) SELECT {_INCIDENT_COLS} FROM src WHERE new ORDER BY i"
    " RETURNING incident_id),"
    f" upd AS (UPDATE incidents x SET ({', '.join(INCIDENT_COLUMNS[1:])}) = ({', '.join('src.' + c for c in INCIDENT_COLUMNS[1:])})"
    " FROM src WHERE NOT src.new AND x.incident_id = src.incident_id AND x.rev = src.rev - 1 RETURNING x.incident_id)"
    " SELECT incident_id FROM ins UNION ALL SELECT incident_id FROM upd")
# the rows a save updates, locked first in one order (tickets, then incidents), so that two saves
# of the same rows wait for each other instead of deadlocking
_LOCK_TICKETS = 'SELECT 1 FROM tickets WHERE number = ANY(%s) ORDER BY number COLLATE "C" FOR UPDATE'
_LOCK_INCIDENTS = 'SELECT 1 FROM incidents WHERE incident_id = ANY(%s) ORDER BY incident_id COLLATE "C" FOR UPDATE'
# the guard of a new incident, or of one narrowed to an area (`IncidentWrite.area_seen`): transaction locks of its area and of its
# feeder or DMA (what a create reads incidents by; a segment may cross a DMA's edge), then, after
# the insert (a new snapshot: it sees what the locks' holders committed, and the other new
# incidents of the same transaction), an open incident other than itself that the create's read
# (_AREA_INCIDENTS) would find now but did not see: of its feeder or DMA, one it did not read; of
# its area, one it did not read at this revision (a DMA-wide incident it read, narrowed to this
# area by a burst call meanwhile, refuses it too)
_AREA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('incident-area:' || %s))"
_OPENED_MEANWHILE = ("SELECT incident_id FROM incidents WHERE resolved_at IS NULL AND incident_id <> %(own)s AND ("
                     "((supply_area = %(area)s OR areas @> ARRAY[%(area)s::text])"
                     " AND NOT (incident_id || '@' || rev) = ANY(%(revs)s::text[]))"
                     " OR (feeder = %(feeder)s AND NOT incident_id = ANY(%(ids)s::text[]))) LIMIT 1")
_REMEMBER_ACTION = ("INSERT INTO client_actions (action_id, applied_to, expires_at)"
                    " VALUES (%s, %s, now() + make_interval(secs => %s)) ON CONFLICT (action_id) DO UPDATE"
                    " SET applied_to = EXCLUDED.applied_to, at = now(), expires_at = EXCLUDED.expires_at")
# The day's next `count` numbers of a kind (the last one returned), in one statement whose commit
# does not wait for the WAL flush (synchronous_commit off for its transaction: set_config local).
_NEXT_SEQ = ("INSERT INTO day_sequences (kind, day, last)"
             " SELECT %s, %s, %s FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
             " ON CONFLICT (kind, day) DO UPDATE SET last = day_sequences.last + EXCLUDED.last RETURNING last")


async def draw_numbers(conn: Any, kind: str, day: date, count: int = 1) -> int:
    """Draw the day's next `count` numbers of a kind (the last one is returned) in a statement of
    its own, last in its pipeline, whose commit does not wait for the WAL flush. Every draw takes
    the day's one row lock until its commit: waiting for the flush there made all creates queue
    behind one fsync each (about 200 creates/s). No number is drawn twice for a stored ticket: a
    ticket's own commit waits for the flush of the WAL up to it, which holds the earlier draw; a
    crash can only forget draws whose tickets were never committed."""
    cur = await conn.execute(_NEXT_SEQ, (kind, day, count))
    return int((await cur.fetchone())[0])


def _ticket_item(write: TicketWrite) -> dict[str, Any]:
    """A ticket's item of `_SAVE_TICKETS`."""
    return {"row": ticket_fields(write.record), "prev": None if write.previous is None else write.previous.ticket.version,
            "events": [event_to_dict(e) for e in write.events], "stages": stage_rows(write.record),
            "alarm": write.alarm_key, "action": write.events[-1].action if write.events else "save"}


class TicketWrites:
    """The numbers and writes of `store.tickets.TicketStore` (a mixin: the store builds the state)."""

    db: Database
    redis: Any
    counters: Counter[str]  # publish_failed: changes left to the relay; batch_split, delete_failed
    _saves: Coalescer[_Save, list[str]]

    # numbers -----------------------------------------------------------------------------------
    async def _next_seq(self, kind: str, day: date) -> int:
        async with self.db.connection() as conn:
            return await draw_numbers(conn, kind, day)

    async def next_number_seq(self, day: date) -> int:
        """The next ticket sequence number of a day (its own statement: never drawn twice)."""
        return await self._next_seq("ticket", day)

    async def release_number_seq(self, day: date, seq: int) -> bool:
        """Give back a ticket sequence number that was not used (the call was a repeat), only if
        it is still the day's latest; otherwise it stays a gap. True when given back."""
        return bool(await self.db.execute(
            "UPDATE day_sequences SET last = last - 1 WHERE kind = 'ticket' AND day = %s AND last = %s", (day, seq)))

    async def next_incident_seq(self, day: date) -> int:
        """The next incident sequence number of a day."""
        return await self._next_seq("incident", day)

    # writes ------------------------------------------------------------------------------------
    async def save(self, tickets: Sequence[TicketWrite], incidents: Sequence[IncidentWrite] = (),
                   extra: Sequence[Extra] = ()) -> list[str]:
        """Write tickets (with their audit events, queue stages, alarm claims and outbox rows),
        incidents and `extra` in ONE transaction, then publish the changes (`publish_changes`).

        Each ticket's stored version must still be its `previous` version (a new ticket: the number
        must be free), else Conflict with the actual version. An incident must still be at
        `rev - 1` (new: absent), and an `alarm_key` must be unclaimed, else GuardFailed. A point
        out of the WGS84 ranges raises CoordinateError before anything is written. Each `extra`
        is awaited as ``f(conn)`` inside the transaction (another store's rows), after the
        ticket statements, with the connection still in pipeline mode (read a statement's result
        with RETURNING and fetch, not ``rowcount``); if it raises, nothing is written. An `extra`
        may run more than once (a failed batch is written again save by save): it must have no
        effect outside its connection. Returns the new audit event ids in order.

        Concurrent saves of this process are committed together (`store.coalesce`): one
        transaction for the batch; when it fails for any reason but a lost connection, each save
        is written again alone, so that each gets its own outcome as if it had run alone.
        """
        for write in tickets:
            check_ticket_point(write.record)
        return await self._saves.submit((tuple(tickets), tuple(incidents), tuple(extra)))

    async def _save_batch(self, saves: list[_Save]) -> list[list[str] | BaseException]:
        """The saves of one batch: together in one transaction. When that fails on a row changed
        meanwhile, the saves writing that row are written alone (each gets its own outcome) and
        the others together again; on any other refusal, every save alone."""
        outcomes: list[list[str] | BaseException | None] = [None] * len(saves)
        together = list(range(len(saves)))
        while len(together) > 1:
            async with self.db.connection() as conn:
                batch = [saves[i] for i in together]
                try:
                    ids, changes = await self._write(conn, [w for s in batch for w in s[0]],
                                                     [w for s in batch for w in s[1]], [f for s in batch for f in s[2]])
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise  # the commit may or may not have happened: never written twice
                except Exception as exc:  # noqa: BLE001  (rolled back)
                    self.counters["batch_split"] += 1
                    alone = [i for i in together if _writes(saves[i], exc)] if isinstance(exc, _Stale) else together
                else:
                    await self._publish(conn, changes)
                    first = 0
                    for i in together:  # `ids` has a list per ticket, in the batch's order
                        count = len(saves[i][0])
                        outcomes[i] = [x for per_ticket in ids[first:first + count] for x in per_ticket]
                        first += count
                    together = []
                    break
            for i in alone or together:
                outcomes[i] = await self._outcome(saves[i])
            together = [i for i in together if outcomes[i] is None]
        for i in together:  # one left: alone
            outcomes[i] = await self._outcome(saves[i])
        return outcomes  # type: ignore[return-value]

    async def _outcome(self, save: _Save) -> list[str] | BaseException:
        """`_save_one`'s event ids, or the exception it raised."""
        try:
            return await self._save_one(*save)
        except Exception as exc:  # noqa: BLE001  (that save's own outcome)
            return exc

    async def _save_one(self, tickets: Sequence[TicketWrite], incidents: Sequence[IncidentWrite],
                        extra: Sequence[Extra]) -> list[str]:
        """One save in its own transaction, its refusal as the domain error."""
        async with self.db.connection() as conn:
            try:
                ids, changes = await self._write(conn, tickets, incidents, extra)
            except pg_errors.UniqueViolation as exc:
                raise await self._refusal(conn, exc, tickets, incidents) from None
            except _Stale as stale:
                raise await self._stale_error(conn, stale) from None
            await self._publish(conn, changes)  # on the same connection: its delete needs no other
        return [x for per_ticket in ids for x in per_ticket]

    async def _write(self, conn: psycopg.AsyncConnection, tickets: Sequence[TicketWrite],
                     incidents: Sequence[IncidentWrite], extra: Sequence[Extra]) -> tuple[list[list[str]], list[dict]]:
        """The transaction of `save` in pipeline mode (one round trip, then COMMIT): the event ids
        of each ticket in order, and the outbox rows to publish. Rows are
        locked in one order (tickets by number, then incidents by id), so that two writes of the
        same tickets wait for each other instead of deadlocking."""
        updated = sorted(w.record.ticket.number for w in tickets if w.previous is not None)
        changed = sorted(w.incident.incident_id for w in incidents if w.previous is not None)
        twice = next((w for i, w in enumerate(changed) if w in changed[:i]), None)
        if twice is not None:  # two saves of a batch change one incident: one UPDATE row would win
            raise _Stale("incident", twice, next(w.rev - 1 for w in incidents if w.incident.incident_id == twice))
        async with conn.pipeline() as pipeline, conn.transaction():
            if updated:
                await conn.execute(_LOCK_TICKETS, (updated,))
            saved = await conn.execute(_SAVE_TICKETS, (orjson.dumps([_ticket_item(w) for w in tickets]).decode(),))
            if changed:
                await conn.execute(_LOCK_INCIDENTS, (changed,))
            guards = [(w.incident.incident_id, *w.area_seen) for w in incidents if w.area_seen is not None]
            for key in sorted({k for _, area, feeder, _ in guards for k in (area, feeder) if k}):  # in one order
                await conn.execute(_AREA_LOCK, (key,))
            written_incidents = await conn.execute(_SAVE_INCIDENTS, (orjson.dumps([
                {"row": incident_fields(w.incident, w.rev), "new": w.previous is None} for w in incidents]).decode(),)
            ) if incidents else None
            # after the insert: two openers of one area in one batch see each other too (and split)
            opened = [await conn.execute(_OPENED_MEANWHILE, {
                "own": own, "area": area, "feeder": feeder, "revs": list(seen),
                "ids": [s.rpartition("@")[0] for s in seen]}) for own, area, feeder, seen in guards]
            await pipeline.sync()
            written = {number: (change_id, ids) for number, change_id, ids in await saved.fetchall()}
            for write in sorted(tickets, key=lambda w: w.record.ticket.number):
                if write.record.ticket.number not in written:  # only an update can be missing
                    raise _Stale("ticket", write.record.ticket.number, write.previous.ticket.version)  # type: ignore[union-attr]
            for (_, area, _, _), cursor in zip(guards, opened):
                other = await cursor.fetchone()
                if other is not None:
                    raise GuardFailed(f"incident-area:{area}", other[0])
            done = {i for (i,) in await written_incidents.fetchall()} if written_incidents else set()
            for iw in sorted(incidents, key=lambda w: w.incident.incident_id):
                if iw.incident.incident_id not in done:
                    raise _Stale("incident", iw.incident.incident_id, iw.rev - 1)
            for f in extra:
                await f(conn)
        event_ids: list[list[str]] = []
        changes = []
        for write in tickets:
            t = write.record.ticket
            change_id, ids = written[t.number]
            event_ids.append([str(x) for x in ids])
            changes.append({"id": change_id, "number": t.number, "version": t.version, "state": t.state.value,
                            "action": write.events[-1].action if write.events else "save"})
        return event_ids, changes

    async def _refusal(self, conn: psycopg.AsyncConnection, exc: pg_errors.UniqueViolation,
                       tickets: Sequence[TicketWrite], incidents: Sequence[IncidentWrite]) -> Exception:
        """The domain error of a unique violation: a ticket number taken (Conflict), an incident
        that exists already or an alarm already claimed (GuardFailed)."""
        constraint = exc.diag.constraint_name or ""
        if constraint == "tickets_pkey":
            for write in tickets:
                if write.previous is None:
                    version = await self._version(conn, write.record.ticket.number)
                    if version is not None:
                        return Conflict(write.record.ticket.number, 0, version)
        if constraint == "alarm_tickets_pkey":
            for write in tickets:
                if write.alarm_key:
                    cur = await conn.execute("SELECT number FROM alarm_tickets WHERE alarm_key = %s",
                                             (write.alarm_key,))
                    row = await cur.fetchone()
                    if row is not None:
                        return GuardFailed(alarm_guard(write.alarm_key), row[0])
        if constraint == "incidents_pkey":
            for write in incidents:
                if write.previous is None:
                    rev = await self._incident_rev(conn, write.incident.incident_id)
                    if rev is not None:
                        return GuardFailed(f"incident:{write.incident.incident_id}", str(rev))
        return exc

    async def _stale_error(self, conn: psycopg.AsyncConnection, stale: "_Stale") -> Exception:
        if stale.kind == "ticket":
            version = await self._version(conn, stale.key)
            if version is None:
                return TicketNotFound(stale.key)
            return Conflict(stale.key, stale.expected, version)
        rev = await self._incident_rev(conn, stale.key)
        return GuardFailed(f"incident:{stale.key}", "" if rev is None else str(rev))

    @staticmethod
    async def _version(conn: psycopg.AsyncConnection, number: str) -> int | None:
        row = await (await conn.execute("SELECT version FROM tickets WHERE number = %s", (number,))).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    async def _incident_rev(conn: psycopg.AsyncConnection, incident_id: str) -> int | None:
        row = await (await conn.execute("SELECT rev FROM incidents WHERE incident_id = %s", (incident_id,))).fetchone()
        return None if row is None else int(row[0])

    async def _publish(self, conn: psycopg.AsyncConnection, changes: list[dict[str, Any]]) -> None:
        """After COMMIT: publish the write's changes and delete their outbox rows. Never raises:
        when Redis or the delete fails the rows stay for the relay (logged and counted)."""
        if not changes or self.redis is None:
            return
        try:
            await publish_changes(self.redis, changes)
        except Exception as exc:  # noqa: BLE001  (the write is committed: the relay publishes it later)
            self.counters["publish_failed"] += len(changes)
            log.warning("ticket changes %s not published (%s); the change relay sends them later",
                        [c["number"] for c in changes], exc)
            return
        try:
            await delete_changes(conn, [c["id"] for c in changes])
        except psycopg.Error as exc:
            self.counters["delete_failed"] += len(changes)
            log.warning("published ticket changes not deleted from the outbox (%s)", exc)

    async def remember_client_action(self, action_id: str, applied_to: str, ttl_s: int = 86_400) -> None:
        """Record that a client's action id was applied (see `client_action`), for `ttl_s`."""
        async with self.db.connection() as conn:
            await self.client_action_write(action_id, applied_to, ttl_s)(conn)

    @staticmethod
    def client_action_write(action_id: str, applied_to: str, ttl_s: int = 86_400) -> Extra:
        """`remember_client_action` as an `extra` of `save` (recorded in the action's own
        transaction); it also deletes the expired ids."""
        async def write(conn: psycopg.AsyncConnection) -> None:
            await conn.execute("DELETE FROM client_actions WHERE expires_at <= now()")
            await conn.execute(_REMEMBER_ACTION, (action_id, applied_to, ttl_s))
        return write


class _Stale(Exception):
    """A guarded UPDATE found another version (raised inside the transaction to roll it back)."""

    def __init__(self, kind: str, key: str, expected: int) -> None:
        super().__init__(f"{kind} {key}: not at {expected}")
        self.kind, self.key, self.expected = kind, key, expected


def _writes(save: _Save, stale: _Stale) -> bool:
    """Whether a save writes the row a `_Stale` names."""
    if stale.kind == "ticket":
        return any(w.record.ticket.number == stale.key for w in save[0])
    return any(w.incident.incident_id == stale.key for w in save[1])
