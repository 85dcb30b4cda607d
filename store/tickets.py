"""The tickets area of the record: tickets, their audit trail, incidents, and their publication.

PostgreSQL tables (``store/migrations/0001_tickets.sql``), written only here:

- ``tickets``: one row per ticket; the columns that lists filter and sort on, and ``record``, the
  whole stored ticket (``command.tickets.to_dict`` plus ``meta``: ``queue``, the open timed
  stages as ``[stage, deadline_epoch_s, limit_s]``; ``police_kind``; ``tags``; ``alarm_key``;
  ``asset_id``). ``version`` is the optimistic-concurrency version (`TicketStore.save`).
- ``ticket_events``: the audit trail, one row per transition (``event`` =
  ``command.tickets.event_to_dict``); never updated or deleted. Its ``id`` is the event id the API
  shows; one ticket's ids grow with its versions.
- ``ticket_stages``: the open timed stages of open tickets (the dispatcher's queue: within one limit
  length the deadline order is the order of "share of the limit left").
- ``day_sequences``: the daily ticket and incident numbers (kinds ``ticket``, ``incident``).
- ``incidents`` (guarded by ``rev``), ``alarm_tickets`` (an alarm's one proactive ticket),
  ``client_actions`` (a client's action ids already applied, for a day).
- ``ticket_changes``: the outbox, one row per ticket write, in the write's transaction.

Redis (live state only): after COMMIT the writer publishes its own changes with `publish_changes`
to the stream ``tkt:changes`` (capped at about 100,000 entries; fields number, version, action,
state) and the channel ``live:tickets`` (the batch as JSON), then deletes its outbox rows. When
Redis fails there the rows stay and ``store.outbox.ChangeRelay`` sends them later.
``alarms:events`` (written by the sensor part) is read by a consumer group of the tickets worker.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
import psycopg
from psycopg import errors as pg_errors

from store.coalesce import Coalescer
from store.db import Database
from store.ticket_records import (  # noqa: F401  (re-exported: the record forms are part of this store's API)
    INCIDENT_COLUMNS, TICKET_COLUMNS, CreateReads, GuardFailed, IncidentWrite, TicketRecord, TicketWrite,
    check_ticket_point, incident_fields, incident_from_dict, incident_row, incident_to_dict, stage_rows,
    ticket_fields, ticket_row,
)
from command.coordinates import CoordinateError, geo_pair_ok
from command.errors import Conflict, TicketNotFound
from command.grouping import Incident
from command.tickets import State, event_to_dict

log = logging.getLogger(__name__)

CHANGES_STREAM = "tkt:changes"
CHANGES_MAXLEN = 100_000
LIVE_TICKETS = "live:tickets"
ALARM_EVENTS = "alarms:events"  # written by the sensor part of the store; read here by a consumer group
EARTH_RADIUS_M = 6372797.560856  # the sphere of Redis's GEO distances, kept for the repeat radius
NUMBER_ORDER = 'number COLLATE "C"'

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
# a new incident's guard (`IncidentWrite.area_seen`): transaction locks of its area and of its
# feeder or DMA (what a create reads incidents by; a segment may cross a DMA's edge), then, after
# the insert (a new snapshot: it sees what the locks' holders committed, and the other new
# incidents of the same transaction), an open incident other than itself that the create's read
# (_AREA_INCIDENTS) would find now but did not see
_AREA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('incident-area:' || %s))"
_OPENED_MEANWHILE = ("SELECT incident_id FROM incidents"
                     " WHERE resolved_at IS NULL AND (supply_area = %s OR areas @> ARRAY[%s::text] OR feeder = %s)"
                     " AND NOT incident_id = ANY(%s::text[]) LIMIT 1")
_REMEMBER_ACTION = ("INSERT INTO client_actions (action_id, applied_to, expires_at)"
                    " VALUES (%s, %s, now() + make_interval(secs => %s)) ON CONFLICT (action_id) DO UPDATE"
                    " SET applied_to = EXCLUDED.applied_to, at = now(), expires_at = EXCLUDED.expires_at")
# The day's next `count` numbers of a kind (the last one returned), in one statement whose commit
# does not wait for the WAL flush (synchronous_commit off for its transaction: set_config local).
_NEXT_SEQ = ("INSERT INTO day_sequences (kind, day, last)"
             " SELECT %s, %s, %s FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
             " ON CONFLICT (kind, day) DO UPDATE SET last = day_sequences.last + EXCLUDED.last RETURNING last")
# The reads of a batch of creations (`TicketStore.create_reads`), one statement each for the whole
# batch: q.i is the request's index in the batch. Open tickets near each point (nearest first, at
# most 50; a box on tickets_point_open, then the great-circle distance on the sphere of Redis's GEO
# distances, kept for the repeat radius):
_NEAR = ("SELECT q.i, n.number, n.dist, n.record FROM unnest(%(i)s::int[], %(lon)s::float8[], %(lat)s::float8[],"
         " %(radius)s::float8[], %(lat0)s::float8[], %(lat1)s::float8[], %(lon0)s::float8[], %(lon1)s::float8[],"
         " %(category)s::text[]) AS q(i, lon, lat, radius, lat0, lat1, lon0, lon1, category) CROSS JOIN LATERAL ("
         " SELECT near.number, near.dist, near.record FROM (SELECT t.number, t.record::text, 2 * %(r)s * asin(sqrt("
         "power(sin(radians(t.lat - q.lat) / 2), 2) + cos(radians(q.lat)) * cos(radians(t.lat))"
         " * power(sin(radians(t.lon - q.lon) / 2), 2))) AS dist FROM tickets t"
         " WHERE t.open AND t.lat BETWEEN q.lat0 AND q.lat1 AND t.lon BETWEEN q.lon0 AND q.lon1"
         " AND (q.category IS NULL OR t.category = q.category)) near"
         " WHERE near.dist <= q.radius ORDER BY near.dist, near.number COLLATE \"C\" LIMIT 50) n"
         " ORDER BY q.i, n.dist, n.number COLLATE \"C\"")
# each caller's latest open tickets, newest first
_BY_PHONE = ("SELECT q.i, p.number, p.record FROM unnest(%s::int[], %s::text[], %s::int[]) AS q(i, phone, recent)"
             " CROSS JOIN LATERAL (SELECT t.number, t.created_at, t.record::text FROM tickets t"
             " WHERE t.open AND t.caller_phone = q.phone AND t.caller_phone <> ''"
             " ORDER BY t.created_at DESC, t.number COLLATE \"C\" DESC LIMIT q.recent) p"
             " ORDER BY q.i, p.created_at DESC, p.number COLLATE \"C\" DESC")
# each supply area's unresolved incidents: of the area (any of a feeder incident's areas) or of its feeder
_AREA_INCIDENTS = ("SELECT q.i, x.record FROM unnest(%s::int[], %s::text[], %s::text[]) AS q(i, area, feeder)"
                   " CROSS JOIN LATERAL (SELECT incident_id, record::text FROM incidents"
                   " WHERE resolved_at IS NULL AND (supply_area = q.area OR areas @> ARRAY[q.area] OR feeder = q.feeder))"
                   " x ORDER BY q.i, x.incident_id")
# the limit lengths in use, by a loose index scan of ticket_stages_queue (a few distinct values)
_LIMITS = ("WITH RECURSIVE limits(l) AS (SELECT min(limit_s) FROM ticket_stages UNION ALL"
           " SELECT (SELECT min(limit_s) FROM ticket_stages WHERE limit_s > l) FROM limits WHERE l IS NOT NULL)")
_QUEUE_HEADS = (_LIMITS + " SELECT limits.l, h.number, h.stage, extract(epoch FROM h.deadline)::float8"
                " FROM limits CROSS JOIN LATERAL (SELECT number, stage, deadline FROM ticket_stages s"
                " WHERE s.limit_s = limits.l ORDER BY s.deadline LIMIT %s) h WHERE limits.l IS NOT NULL"
                " ORDER BY limits.l, h.deadline")
# The open queue: least share of the limit left first, then urgency, age and number (the order of
# command.limits.queue_key). Within one limit length the deadline order is the share order, and a
# ticket has at most 3 open timed stages, so the first 3 x need stages of each length hold the page.
_QUEUE_TIMED = (_LIMITS + ", heads AS (SELECT h.number, (extract(epoch FROM h.deadline) - %(now)s) / limits.l AS share"
                " FROM limits CROSS JOIN LATERAL (SELECT number, deadline FROM ticket_stages s"
                " WHERE s.limit_s = limits.l ORDER BY s.deadline LIMIT %(heads)s) h WHERE limits.l IS NOT NULL),"
                " best AS (SELECT number, min(share) AS share FROM heads GROUP BY number)"
                " SELECT t.record::text FROM best b JOIN tickets t USING (number) WHERE t.open"
                " ORDER BY b.share, t.urgency_rank, t.created_at, t." + NUMBER_ORDER + " LIMIT %(need)s")
_QUEUE_UNTIMED = ("SELECT t.record::text FROM tickets t WHERE t.open"
                  " AND NOT EXISTS (SELECT 1 FROM ticket_stages s WHERE s.number = t.number)"
                  " ORDER BY t.created_at, t." + NUMBER_ORDER + " LIMIT %s")
# any subset of open tickets in queue order (the share computed per ticket)
_RANKED = ("SELECT t.record::text FROM tickets t LEFT JOIN LATERAL (SELECT min((extract(epoch FROM s.deadline) - %s)"
           " / s.limit_s) AS share FROM ticket_stages s WHERE s.number = t.number) q ON true WHERE t.open AND {where}"
           " ORDER BY q.share NULLS LAST, t.urgency_rank, t.created_at, t." + NUMBER_ORDER + " LIMIT %s OFFSET %s")
# index-style listings: name -> (condition, order); see TicketStore.index
_INDEXES = {
    "open": ("open", "created_at"),
    "supervise": ("open AND (color = 'red' OR supervised)", "created_at"),
    "police": ("open AND police_kind IS NOT NULL", "created_at"),
    "callbacks": ("state IN ('resolved', 'callback')", "resolved_at"),
}
_INDEX_PARAM = {"state": ("state = %s", "created_at"), "color": ("open AND color = %s", "created_at"),
                "phone": ("caller_phone = %s AND caller_phone <> ''", "created_at")}


def _where(name: str) -> tuple[str, tuple[Any, ...], str]:
    """(SQL condition, parameters, order column) of an index name (see `TicketStore.index`)."""
    if name in _INDEXES:
        condition, order = _INDEXES[name]
        return condition, (), order
    kind, _, value = name.partition(":")
    if kind not in _INDEX_PARAM or not value:
        raise ValueError(f"unknown ticket index {name!r}")
    condition, order = _INDEX_PARAM[kind]
    return condition, (value,), order


async def publish_changes(redis: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Publish committed ticket changes (rows of ``ticket_changes``: number, version, action,
    state) in one Redis round trip: an entry each on the stream ``tkt:changes`` (approximate
    MAXLEN 100,000) and the batch as JSON on the channel ``live:tickets``. Redis errors are raised
    (the caller keeps the rows for the relay)."""
    if not rows:
        return
    summaries = [{"number": r["number"], "version": int(r["version"]), "action": r["action"], "state": r["state"]}
                 for r in rows]
    pipe = redis.pipeline(transaction=False)
    for s in summaries:
        pipe.xadd(CHANGES_STREAM, {k: str(v) for k, v in s.items()}, maxlen=CHANGES_MAXLEN, approximate=True)
    pipe.publish(LIVE_TICKETS, orjson.dumps(summaries))
    await pipe.execute()


async def delete_changes(conn: psycopg.AsyncConnection, ids: Sequence[int]) -> None:
    """Delete published outbox rows by id."""
    await conn.execute("DELETE FROM ticket_changes WHERE id = ANY(%s)", (list(ids),))



async def _draw(conn: Any, kind: str, day: date, count: int = 1) -> int:
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


@dataclass(frozen=True)
class _ReadRequest:
    """One creation's reads (`TicketStore.create_reads`); `day` None: no number drawn."""

    day: date | None
    lon: float | None
    lat: float | None
    radius_m: float
    category: str | None
    phone: str | None
    supply_area: str | None
    recent: int
    feeder: str | None = None


class TicketStore:
    """Typed access to tickets, their audit trails, queue stages and incidents in PostgreSQL, and
    the publication of each committed change to Redis."""

    def __init__(self, db: Database, redis: Any = None) -> None:
        self.db = db
        self.redis = redis
        self.counters: Counter[str] = Counter()  # publish_failed: changes left to the relay
        self._saves: Coalescer[_Save, list[str]] = Coalescer(self._save_batch)
        self._read_batches: Coalescer[_ReadRequest, CreateReads] = Coalescer(self._read_batch)

    # numbers -----------------------------------------------------------------------------------
    async def _next_seq(self, kind: str, day: date) -> int:
        async with self.db.connection() as conn:
            return await _draw(conn, kind, day)

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
            guards = [(w.incident.incident_id, *w.area_seen) for w in incidents
                      if w.previous is None and w.area_seen is not None]
            for key in sorted({k for _, area, feeder, _ in guards for k in (area, feeder) if k}):  # in one order
                await conn.execute(_AREA_LOCK, (key,))
            written_incidents = await conn.execute(_SAVE_INCIDENTS, (orjson.dumps([
                {"row": incident_fields(w.incident, w.rev), "new": w.previous is None} for w in incidents]).decode(),)
            ) if incidents else None
            # after the insert: two openers of one area in one batch see each other too (and split)
            opened = [await conn.execute(_OPENED_MEANWHILE, (area, area, feeder, [*seen, own]))
                      for own, area, feeder, seen in guards]
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
                        return GuardFailed(f"alarm:{write.alarm_key}", row[0])
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

    # reads -------------------------------------------------------------------------------------
    async def get(self, number: str) -> TicketRecord:
        """One ticket; TicketNotFound when there is none."""
        row = await self.db.fetchone("SELECT record::text AS r FROM tickets WHERE number = %s", (number,))
        if row is None:
            raise TicketNotFound(number)
        return TicketRecord.from_json(row["r"])

    async def get_many(self, numbers: Sequence[str]) -> list[TicketRecord | None]:
        """Tickets by number, in the given order (None for unknown numbers)."""
        if not numbers:
            return []
        rows = await self.db.fetch("SELECT number, record::text AS r FROM tickets WHERE number = ANY(%s)",
                                   (list(numbers),))
        found = {row["number"]: row["r"] for row in rows}
        return [None if n not in found else TicketRecord.from_json(found[n]) for n in numbers]

    async def in_states(self, states: Iterable[State]) -> list[TicketRecord]:
        """Every ticket in one of the given states (e.g. the field states), oldest first."""
        rows = await self.db.fetch("SELECT record::text AS r FROM tickets WHERE state = ANY(%s)"
                                   " ORDER BY created_at, " + NUMBER_ORDER, ([s.value for s in states],))
        return [TicketRecord.from_json(row["r"]) for row in rows]

    async def events(self, number: str) -> list[tuple[str, dict[str, Any]]]:
        """The audit trail of a ticket in order: (event id, event dict)."""
        rows = await self.db.fetch("SELECT id, event::text AS e FROM ticket_events WHERE number = %s ORDER BY id",
                                   (number,))
        return [(str(row["id"]), orjson.loads(row["e"])) for row in rows]

    async def client_action(self, action_id: str) -> str | None:
        """What a client's action id was applied to ("<number>/<action>"), if within its time."""
        row = await self.db.fetchone("SELECT applied_to FROM client_actions WHERE action_id = %s"
                                     " AND expires_at > now()", (action_id,))
        return None if row is None else row["applied_to"]

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

    async def alarm_ticket(self, alarm_key: str) -> str | None:
        """The number of the proactive ticket already created for an alarm, if any."""
        row = await self.db.fetchone("SELECT number FROM alarm_tickets WHERE alarm_key = %s", (alarm_key,))
        return None if row is None else row["number"]

    @staticmethod
    def _near_params(lon: float, lat: float, radius_m: float) -> dict[str, float]:
        dlat = math.degrees(radius_m / EARTH_RADIUS_M) * 1.01
        dlon = min(180.0, dlat / max(math.cos(math.radians(min(89.9, abs(lat)))), 1e-6))
        return {"r": EARTH_RADIUS_M, "lon": lon, "lat": lat, "radius": radius_m,
                "lat0": lat - dlat, "lat1": lat + dlat, "lon0": lon - dlon, "lon1": lon + dlon}

    async def near_and_by_phone(self, lon: float | None, lat: float | None, radius_m: float,
                                phone: str | None, *, category: str | None = None, recent: int = 20) -> CreateReads:
        """Open tickets within radius_m of a point (of `category` when given; number, metres;
        nearest first, at most 50) and the caller's latest open tickets (newest first), with their
        records, in one round trip (`CreateReads` without a number)."""
        return await self._reads(None, lon, lat, radius_m, category, phone, None, recent)

    async def create_reads(self, day: date, *, lon: float | None = None, lat: float | None = None,
                           radius_m: float = 0.0, category: str | None = None, phone: str | None = None,
                           supply_area: str | None = None, recent: int = 20, feeder: str | None = None) -> CreateReads:
        """What creating a ticket reads, in one round trip: the day's next ticket sequence number
        (hand it back with `release_number_seq` when the call is linked as a repeat), the repeat
        candidates of `near_and_by_phone` when a point or phone is given, and the unresolved
        incidents of `supply_area` (and of its `feeder`) when given."""
        return await self._reads(day, lon, lat, radius_m, category, phone, supply_area, recent, feeder)

    async def _reads(self, day: date | None, lon: float | None, lat: float | None, radius_m: float,
                     category: str | None, phone: str | None, supply_area: str | None, recent: int,
                     feeder: str | None = None) -> CreateReads:
        _check_geo(lon, lat)  # before the draw: a refused point takes no number
        return await self._read_batches.submit(
            _ReadRequest(day, lon, lat, radius_m, category, phone, supply_area, recent, feeder))

    async def _read_batch(self, requests: list[_ReadRequest]) -> list[CreateReads]:
        """The reads of a batch of creations in one round trip: a statement each for the repeat
        candidates near the points, by the phones and the areas' incidents, then one draw of
        numbers per day (numbers in the order of the requests)."""
        near = [(i, r) for i, r in enumerate(requests) if r.lon is not None and r.lat is not None]
        phones = [(i, r) for i, r in enumerate(requests) if r.phone]
        areas = [(i, r) for i, r in enumerate(requests) if r.supply_area]
        days: dict[date, list[int]] = {}
        for i, r in enumerate(requests):
            if r.day is not None:
                days.setdefault(r.day, []).append(i)
        found_near: list[list[tuple[str, float]]] = [[] for _ in requests]
        found_phone: list[list[str]] = [[] for _ in requests]
        found_area: list[list[tuple[Incident, int]] | None] = [[] if r.supply_area else None for r in requests]
        raw: list[dict[str, str]] = [{} for _ in requests]
        seqs = [0] * len(requests)
        async with self.db.connection() as conn, conn.pipeline():
            near_cur = phone_cur = area_cur = None
            if near:
                boxes = [self._near_params(r.lon, r.lat, r.radius_m) for _, r in near]  # type: ignore[arg-type]
                near_cur = await conn.execute(_NEAR, {
                    "r": EARTH_RADIUS_M, "i": [i for i, _ in near], "category": [r.category for _, r in near],
                    **{k: [b[k] for b in boxes] for k in ("lon", "lat", "radius", "lat0", "lat1", "lon0", "lon1")}})
            if phones:
                phone_cur = await conn.execute(_BY_PHONE, (
                    [i for i, _ in phones], [r.phone for _, r in phones], [r.recent for _, r in phones]))
            if areas:
                area_cur = await conn.execute(_AREA_INCIDENTS, ([i for i, _ in areas], [r.supply_area for _, r in areas],
                                                                [r.feeder for _, r in areas]))
            # last in the batch: the sequence row is locked only until its commit
            for day, indexes in days.items():
                last = await _draw(conn, "ticket", day, len(indexes))
                for k, i in enumerate(indexes):
                    seqs[i] = last - len(indexes) + 1 + k
            for i, number, dist, record in await near_cur.fetchall() if near_cur else ():
                found_near[i].append((number, float(dist)))
                raw[i][number] = record
            for i, number, record in await phone_cur.fetchall() if phone_cur else ():
                found_phone[i].append(number)
                raw[i][number] = record
            for i, record in await area_cur.fetchall() if area_cur else ():
                found_area[i].append(incident_from_dict(orjson.loads(record)))  # type: ignore[union-attr]
        return [CreateReads(seqs[i], found_near[i], found_phone[i], found_area[i],
                            {n: TicketRecord.from_json(text) for n, text in raw[i].items()}) for i in range(len(requests))]

    async def queue_heads(self, count: int) -> dict[int, list[tuple[str, str, float]]]:
        """For each limit length in use, its `count` earliest (number, stage, deadline) entries."""
        out: dict[int, list[tuple[str, str, float]]] = {}
        async with self.db.connection() as conn:
            for limit_s, number, stage, deadline in await (await conn.execute(_QUEUE_HEADS, (count,))).fetchall():
                out.setdefault(int(limit_s), []).append((number, stage, float(deadline)))
        return out

    async def queue_page(self, now_s: float, offset: int, limit: int) -> tuple[list[TicketRecord], int]:
        """A page of the open queue (least share of the limit left first, then urgency, age and
        number; tickets without a timed stage last, oldest first) and the number of open tickets."""
        need = offset + limit
        async with self.db.connection() as conn:
            async with conn.pipeline():
                timed = await conn.execute(_QUEUE_TIMED, {"now": now_s, "heads": 3 * need, "need": need})
                total = await conn.execute("SELECT count(*) FROM tickets WHERE open")
                rows = [r for (r,) in await timed.fetchall()]
                count = int((await total.fetchone())[0])
            if len(rows) < need:
                more = await conn.execute(_QUEUE_UNTIMED, (need - len(rows),))
                rows += [r for (r,) in await more.fetchall()]
        return [TicketRecord.from_json(r) for r in rows[offset:need]], count

    async def page(self, now_s: float, *, ranked: bool, offset: int, limit: int, crew_id: str | None = None,
                   state: str | None = None, color: str | None = None,
                   phone: str | None = None, units: Sequence[str] | None = None) -> tuple[list[TicketRecord], int]:
        """A page of the tickets matching every filter given, and how many match. `state` is a
        state or "open"; `color` and `crew_id` match open tickets only; `units`: tickets whose
        responsible unit is one of them (a unit's liaison's scope). `ranked`: open tickets
        only, in queue order (least share of the limit left first, then urgency, age, number);
        else newest first."""
        parts: list[str] = []
        params: list[Any] = []
        for condition, value in (("open AND crew_id = %s", crew_id), ("open AND color = %s", color),
                                 ("caller_phone = %s AND caller_phone <> ''", phone),
                                 ("unit_id = ANY(%s)", None if units is None else list(units))):
            if value is not None:
                parts.append(condition)
                params.append(value)
        if state == "open":
            parts.append("open")
        elif state is not None:
            parts.append("state = %s")
            params.append(state)
        condition = " AND ".join(parts) or "true"
        if ranked:
            return await self._ranked(now_s, condition=condition, params=params, offset=offset, limit=limit)
        return await self.newest(condition=condition, params=params, offset=offset, limit=limit)

    async def _ranked(self, now_s: float, *, condition: str, params: Sequence[Any], offset: int,
                      limit: int) -> tuple[list[TicketRecord], int]:
        """A page of the open tickets matching `condition` (SQL over ``tickets t``) in queue
        order, and how many match."""
        async with self.db.connection() as conn, conn.pipeline():
            page = await conn.execute(_RANKED.format(where=condition), (now_s, *params, limit, offset))
            total = await conn.execute(f"SELECT count(*) FROM tickets t WHERE t.open AND {condition}", params)
            rows = await page.fetchall()
            count = int((await total.fetchone())[0])
        return [TicketRecord.from_json(r) for (r,) in rows], count

    async def newest(self, *, condition: str, params: Sequence[Any], offset: int,
                     limit: int) -> tuple[list[TicketRecord], int]:
        """A page of the tickets matching `condition` (SQL over ``tickets t``), newest first, and
        how many match."""
        async with self.db.connection() as conn, conn.pipeline():
            page = await conn.execute(f"SELECT t.record::text FROM tickets t WHERE {condition}"
                                      f" ORDER BY t.created_at DESC, t.{NUMBER_ORDER} DESC LIMIT %s OFFSET %s",
                                      (*params, limit, offset))
            total = await conn.execute(f"SELECT count(*) FROM tickets t WHERE {condition}", params)
            rows = await page.fetchall()
            count = int((await total.fetchone())[0])
        return [TicketRecord.from_json(r) for (r,) in rows], count

    async def numbers_since(self, column: str, since: datetime) -> list[str]:
        """Numbers of the tickets created (``created_at``) or resolved (``resolved_at``) since a time."""
        if column not in ("created_at", "resolved_at"):
            raise ValueError(f"not a time column of tickets: {column!r}")
        rows = await self.db.fetch(f"SELECT number FROM tickets WHERE {column} >= %s", (since,))
        return [row["number"] for row in rows]

    async def index(self, name: str, *, newest_first: bool = True, start: int = 0,
                    stop: int = -1) -> list[str]:
        """Ticket numbers of a listing by name, ordered by creation (callbacks: by resolution):
        open, state:<s>, color:<c> (open), supervise, callbacks, police, phone:<digits>.
        `start`/`stop` are inclusive positions (stop -1: to the end)."""
        condition, params, order = _where(name)
        direction = "DESC" if newest_first else "ASC"
        sql = (f"SELECT number FROM tickets WHERE {condition}"
               f" ORDER BY {order} {direction}, {NUMBER_ORDER} {direction} OFFSET %s")
        args: tuple[Any, ...] = (*params, start)
        if stop >= 0:
            sql += " LIMIT %s"
            args += (max(0, stop - start + 1),)
        return [row["number"] for row in await self.db.fetch(sql, args)]

    async def open_count(self) -> int:
        """Number of open tickets."""
        return int((await self.db.fetchone("SELECT count(*) AS n FROM tickets WHERE open"))["n"])

    async def crew_tickets(self, crew_id: str) -> list[str]:
        """Open tickets assigned to a crew."""
        rows = await self.db.fetch("SELECT number FROM tickets WHERE open AND crew_id = %s ORDER BY "
                                   + NUMBER_ORDER, (crew_id,))
        return [row["number"] for row in rows]

    async def counts(self) -> dict[str, int]:
        """Number of tickets per state (states without tickets left out)."""
        rows = await self.db.fetch("SELECT state, count(*) AS n FROM tickets GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    async def unit_rework(self) -> dict[str, int]:
        """Per responsible unit, the reopenings of its tickets (dissatisfied callbacks): a field
        ticket's reopen counts for the ticket's unit, a rework (转办督查单) for the unit it went
        back to, named in its event. Each arm reads its own partial index."""
        rows = await self.db.fetch(
            "SELECT unit_id, sum(n) AS n FROM ("
            " SELECT t.unit_id, count(*) AS n FROM ticket_events e JOIN tickets t USING (number)"
            " WHERE e.action = 'reopen' AND t.unit_id IS NOT NULL GROUP BY t.unit_id"
            " UNION ALL SELECT e.event->'data'->>'unit_id', count(*) FROM ticket_events e"
            " WHERE e.action = 'rework' GROUP BY 1) counted WHERE unit_id IS NOT NULL GROUP BY unit_id")
        return {row["unit_id"]: int(row["n"]) for row in rows}

    # incidents ---------------------------------------------------------------------------------
    async def incident(self, incident_id: str) -> tuple[Incident, int] | None:
        """An incident and its revision, or None."""
        found = await self.incidents([incident_id])
        return found[0] if found else None

    async def incidents(self, ids: Iterable[str]) -> list[tuple[Incident, int]]:
        """Incidents by id, in the given order (unknown ids skipped)."""
        ids = list(ids)
        if not ids:
            return []
        rows = await self.db.fetch("SELECT incident_id, record::text AS r FROM incidents WHERE incident_id = ANY(%s)",
                                   (ids,))
        found = {row["incident_id"]: row["r"] for row in rows}
        return [incident_from_dict(orjson.loads(found[i])) for i in ids if i in found]

    async def area_incidents(self, supply_area: str, feeder: str | None = None) -> list[tuple[Incident, int]]:
        """Unresolved incidents of a supply area (any of a feeder incident's areas), and of `feeder`."""
        rows = await self.db.fetch(_AREA_INCIDENTS, ([0], [supply_area], [feeder]))
        return [incident_from_dict(orjson.loads(row["record"])) for row in rows]

    async def incident_ids(self, *, open_only: bool, start: int = 0, stop: int = 99) -> list[str]:
        """Incident ids, newest first (positions start..stop, inclusive)."""
        where = "WHERE resolved_at IS NULL" if open_only else ""
        rows = await self.db.fetch(f"SELECT incident_id FROM incidents {where}"
                                   " ORDER BY first_call_at DESC, incident_id DESC OFFSET %s LIMIT %s",
                                   (start, max(0, stop - start + 1)))
        return [row["incident_id"] for row in rows]


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


def _check_geo(lon: float | None, lat: float | None) -> None:
    """CoordinateError for a pair no point can be (a read that slipped past the boundary)."""
    if lon is not None and lat is not None and not geo_pair_ok(float(lon), float(lat)):
        raise CoordinateError("lon", f"invalid longitude,latitude pair {lon},{lat}")
