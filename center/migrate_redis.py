"""`python -m center migrate-redis`: copy a Redis-only installation's record into PostgreSQL.

Until the record moved to PostgreSQL (issue #22) Redis held everything. This module reads that
old key layout (documented at commit f2cb00e in center/store.py, store_tickets.py,
store_admin.py and store_dispatch.py) and inserts the rows of the new tables:

- ``fleet:vehicles``, ``fleet:crews`` (JSON per id), ``crews:shift`` -> ``vehicles``, ``crews``,
  ``crew_shifts`` (and a bump of ``fleet_revision`` when rows were added, so readers reload);
  ``user:{name}`` hashes -> ``accounts`` (the scrypt hashes as they are: passwords keep working);
  the ``admin:audit`` stream -> ``admin_audit``.
- ``tkt:{number}`` (JSON) with its stream ``tkt:{number}:events`` (field ``e``) -> ``tickets``,
  ``ticket_events``, ``ticket_stages`` through `center.ticket_records` (`ticket_row`,
  `stage_rows`); ``inc:{id}`` -> ``incidents`` (`incident_row`); ``tkt:alarm:{key}`` ->
  ``alarm_tickets``; ``tkt:cid:{id}`` -> ``client_actions``; ``tkt:seq:{day}`` /
  ``inc:seq:{day}`` -> ``day_sequences`` (raised, never lowered, so new numbers follow the
  migrated ones).
- ``p110:out:{id}``, ``p110:in:{key}``, ``p110:nonce:{n}``, ``p110:incident:{id}``,
  ``p110:ticket:{n}``, ``p110:last:{n}`` -> the ``police_*`` tables.

Idempotent: every insert is ``ON CONFLICT DO NOTHING`` on the row's key; a ticket's events and
stages are inserted by the statement that inserts the ticket, so only with a ticket that was not
there yet; an admin audit entry is skipped when a row with its time, author, action and target
exists. No ``ticket_changes`` rows are written: a migrated ticket is not a change to announce.
It only reads Redis (nothing is deleted there) and never updates or deletes a row. Live state
(positions, tracks, readings, alarms, sessions, device credentials) stays in Redis as it is.

At the end `check` counts, per area, the records in Redis and the rows in PostgreSQL that have
their key; an area whose table does not exist counts as not copied.
"""
from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from center.ticket_records import (INCIDENT_COLUMNS, TICKET_COLUMNS, TicketRecord, incident_from_dict,
                                   incident_row, stage_rows, ticket_row)
from command.tickets import NUMBER_RE

BATCH = 500
_DAY_KEY = re.compile(r"^(tkt|inc):seq:(\d{8})$")
_TICKET_DAY = re.compile(r"^GD(\d{8})-(\d+)$")

# one statement per ticket: the ticket row, and only when it was inserted, its events and stages
_INSERT_TICKET = (
    f"WITH t AS (INSERT INTO tickets ({', '.join(TICKET_COLUMNS)})"
    f" VALUES ({', '.join(['%s'] * (len(TICKET_COLUMNS) - 1))}, %s::jsonb)"
    " ON CONFLICT (number) DO NOTHING RETURNING number),"
    " e AS (INSERT INTO ticket_events (number, at, action, event)"
    " SELECT t.number, u.at, u.action, u.event::jsonb FROM t,"
    " unnest(%s::timestamptz[], %s::text[], %s::text[]) WITH ORDINALITY AS u(at, action, event, i)"
    " ORDER BY u.i RETURNING 1),"
    " s AS (INSERT INTO ticket_stages (number, stage, deadline, limit_s)"
    " SELECT t.number, u.stage, u.deadline, u.limit_s FROM t,"
    " unnest(%s::text[], %s::timestamptz[], %s::int[]) AS u(stage, deadline, limit_s) RETURNING 1)"
    " SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM e)")
_INSERT_INCIDENT = (f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)})"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING")


@dataclass
class Tally:
    """One area of the migration: records in Redis, rows inserted by this run, and (after
    `check`) rows in PostgreSQL that have an old record's key."""

    area: str
    table: str
    old: int = 0
    written: int = 0
    found: int | None = None
    failed: int = 0

    @property
    def ok(self) -> bool:
        """Every old record has its row."""
        return self.found == self.old


def _utc(epoch: Any) -> datetime | None:
    """An epoch time (number or text; '' or None for none) as an aware UTC datetime."""
    if epoch is None or epoch == "":
        return None
    return datetime.fromtimestamp(float(epoch), timezone.utc)


def _scan(redis: Any, pattern: str, type_: str) -> list[str]:
    """Every key matching pattern of a Redis type, sorted."""
    return sorted(set(redis.scan_iter(match=pattern, count=1000, _type=type_)))


def _chunks(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Migration:
    """Copies the old keys of one Redis (a ``decode_responses`` client) into the PostgreSQL of one
    autocommit connection; `progress` receives a line per area and per batch."""

    def __init__(self, redis: Any, conn: psycopg.Connection, progress: Callable[[str], None] = lambda _: None):
        self.redis = redis
        self.conn = conn
        self.progress = progress
        self.tallies: dict[str, Tally] = {}
        self._keys: dict[str, list[Any]] = {}  # area -> the keys of its old records
        self._idents: dict[str, list[tuple[Any, ...]]] = {}  # area -> identities of its rows (`check`)

    # ------------------------------------------------------------------ helpers
    def _identify(self, area: str, values: tuple[Any, ...]) -> None:
        """Remember the identity `check` looks for of a row about to be written."""
        if area in self._IDENTITY:
            self._idents.setdefault(area, []).append(tuple(values[i] for i in self._IDENTITY[area][1]))

    def _table_exists(self, table: str) -> bool:
        return self.conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None

    def _area(self, area: str, table: str, keys: list[Any]) -> Tally | None:
        """Register an area and its old keys; None (nothing to write) when its table is missing."""
        tally = self.tallies[area] = Tally(area, table, old=len(keys))
        self._keys[area] = keys
        if not self._table_exists(table):
            self.progress(f"{area}: {len(keys)} in Redis; table {table} does not exist: not copied")
            return None
        return tally

    def _rows(self, area: str, table: str, keys: list[Any], statement: str,
              row: Callable[[Any], tuple[Any, ...] | None]) -> None:
        """Insert one row per key (row(key) gives its values, None to skip it), each in a savepoint
        so that a refused row is counted and the others go on; batches of BATCH in a transaction."""
        tally = self._area(area, table, keys)
        if tally is None:
            return
        for chunk in _chunks(keys):
            with self.conn.transaction():
                for key in chunk:
                    try:
                        values = row(key)
                        if values is None:  # gone since the scan (its TTL ran out)
                            tally.old -= 1
                            continue
                        self._identify(area, values)
                        with self.conn.transaction():
                            tally.written += self.conn.execute(statement, values).rowcount
                    except (psycopg.Error, ValueError, TypeError, KeyError) as exc:
                        tally.failed += 1
                        self.progress(f"{area}: {key}: not copied ({exc})")
        self.progress(f"{area}: {tally.old} in Redis, {tally.written} rows written")

    # ------------------------------------------------------------------ areas
    def run(self) -> list[Tally]:
        """Copy every area; the tallies (without `found`: see `check`)."""
        self.fleet()
        self.accounts()
        self.admin_audit()
        self.tickets()
        self.incidents()
        self.ticket_extras()
        self.sequences()
        self.police()
        return list(self.tallies.values())

    def fleet(self) -> None:
        """Vehicles, then crews (a crew's vehicle must exist), then shifts."""
        r = self.redis
        vehicles = {k: orjson.loads(v) for k, v in r.hgetall("fleet:vehicles").items()}
        crews = {k: orjson.loads(v) for k, v in r.hgetall("fleet:crews").items()}
        shifts = {k: orjson.loads(v) for k, v in r.hgetall("crews:shift").items()}

        def vehicle(vid: str) -> tuple[Any, ...]:
            v = vehicles[vid]
            return (vid, v.get("plate") or "", v.get("kind") or "repair", v.get("unit_id"),
                    bool(v.get("active", True)), v.get("source") or "admin",
                    _utc(v.get("updated_at")) or datetime.now(timezone.utc), v.get("updated_by") or "")

        def crew(cid: str) -> tuple[Any, ...]:
            c = crews[cid]
            return (cid, c.get("crew_name") or cid, c.get("unit_id"), c.get("station_id"),
                    list(c.get("skills") or ()), c.get("vehicle_id") or None, bool(c.get("active", True)),
                    c.get("source") or "admin", _utc(c.get("updated_at")) or datetime.now(timezone.utc),
                    c.get("updated_by") or "")

        def shift(cid: str) -> tuple[Any, ...]:
            s = shifts[cid]
            return (cid, bool(s.get("on_shift", True)), _utc(s.get("ends_at")), s.get("by") or "",
                    _utc(s.get("at")) or datetime.now(timezone.utc))

        self._rows("vehicles", "vehicles", sorted(vehicles), (
            "INSERT INTO vehicles (vehicle_id, plate, kind, unit_id, active, source, updated_at, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"), vehicle)
        self._rows("crews", "crews", sorted(crews), (
            "INSERT INTO crews (crew_id, crew_name, unit_id, station_id, skills, vehicle_id, active, source,"
            " updated_at, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"), crew)
        self._rows("shifts", "crew_shifts", sorted(shifts), (
            "INSERT INTO crew_shifts (crew_id, on_shift, ends_at, set_by, set_at) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING"), shift)
        added = sum(self.tallies[a].written for a in ("vehicles", "crews", "shifts"))
        if added and self._table_exists("fleet_revision"):  # readers of the registry reload
            self.conn.execute("INSERT INTO fleet_revision (singleton, rev) VALUES (true, 1)"
                              " ON CONFLICT (singleton) DO UPDATE SET rev = fleet_revision.rev + 1")

    def accounts(self) -> None:
        """``user:{name}`` hashes, password hashes included."""
        names = [k.removeprefix("user:") for k in _scan(self.redis, "user:*", "hash")]

        def account(name: str) -> tuple[Any, ...]:
            u = self.redis.hgetall(f"user:{name}")
            return (name, u["role"], u.get("display") or "", u.get("crew_id") or None,
                    u.get("active", "1") in ("1", "true"), u.get("hash") or "")

        self._rows("accounts", "accounts", names, (
            "INSERT INTO accounts (name, role, display, crew_id, active, password_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"), account)

    def _audit_entries(self) -> list[tuple[Any, ...]]:
        entries = []
        for _id, f in self.redis.xrange("admin:audit"):
            entries.append((_utc(f.get("at")), f.get("by", ""), f.get("role", ""), f.get("action", ""),
                            f.get("target", ""), orjson.loads(f.get("changes") or "{}")))
        return entries

    def admin_audit(self) -> None:
        """The ``admin:audit`` stream, oldest first."""
        self._rows("admin audit", "admin_audit", self._audit_entries(), (
            "INSERT INTO admin_audit (at, by, role, action, target, changes)"
            " SELECT %s, %s, %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM admin_audit"
            " WHERE target = %s AND at = %s AND by = %s AND action = %s)"),
            lambda e: (*e[:5], Jsonb(e[5]), e[4], e[0], e[1], e[3]))

    def tickets(self) -> None:
        """Tickets in number order, each with its whole timeline and its open stages."""
        numbers = [k[4:] for k in _scan(self.redis, "tkt:*", "string") if NUMBER_RE.match(k[4:])]
        numbers.sort(key=lambda n: (n[:10], int(n[11:])))  # day, then sequence
        tally = self._area("tickets", "tickets", numbers)
        events = self.tallies["ticket events"] = Tally("ticket events", "ticket_events")
        if tally is None:
            return
        done = 0
        for chunk in _chunks(numbers):
            pipe = self.redis.pipeline(transaction=False)
            for number in chunk:
                pipe.get(f"tkt:{number}")
                pipe.xrange(f"tkt:{number}:events")
            replies = pipe.execute()
            with self.conn.transaction():
                for i, number in enumerate(chunk):
                    raw, stream = replies[2 * i], replies[2 * i + 1]
                    timeline = [orjson.loads(f["e"]) for _id, f in stream if "e" in f]
                    events.old += len(timeline)
                    try:
                        record = TicketRecord.from_json(raw)
                        stages = stage_rows(record)
                        row = ticket_row(record)
                        self._identify("tickets", row)
                        params = (*row,
                                  [datetime.fromisoformat(e["at"]) for e in timeline],
                                  [e["action"] for e in timeline],
                                  [orjson.dumps(e).decode() for e in timeline],
                                  [s[0] for s in stages], [s[1] for s in stages], [s[2] for s in stages])
                        with self.conn.transaction():
                            inserted, copied = self.conn.execute(_INSERT_TICKET, params).fetchone()
                    except (psycopg.Error, ValueError, TypeError, KeyError) as exc:
                        tally.failed += 1
                        self.progress(f"tickets: {number}: not copied ({exc})")
                        continue
                    tally.written += inserted
                    events.written += copied
            done += len(chunk)
            self.progress(f"tickets: {done}/{tally.old} read, {tally.written} written with {events.written} events")
        self._keys["ticket events"] = numbers

    def incidents(self) -> None:
        """``inc:{id}`` records (not their ``:rev`` copies, the sequences or the indexes)."""
        ids = [k[4:] for k in _scan(self.redis, "inc:*", "string") if ":" not in k[4:]]

        def incident(incident_id: str) -> tuple[Any, ...]:
            return incident_row(*incident_from_dict(orjson.loads(self.redis.get(f"inc:{incident_id}"))))

        self._rows("incidents", "incidents", ids, _INSERT_INCIDENT, incident)

    def ticket_extras(self) -> None:
        """The alarm -> proactive ticket claims and the client action ids still remembered."""
        alarms = [k.removeprefix("tkt:alarm:") for k in _scan(self.redis, "tkt:alarm:*", "string")]
        self._rows("alarm tickets", "alarm_tickets", alarms, (
            "INSERT INTO alarm_tickets (alarm_key, number) SELECT %s, %s"
            " WHERE EXISTS (SELECT 1 FROM tickets WHERE number = %s) ON CONFLICT DO NOTHING"),
            lambda key: (key, n := self.redis.get(f"tkt:alarm:{key}"), n))
        actions = [k.removeprefix("tkt:cid:") for k in _scan(self.redis, "tkt:cid:*", "string")]

        def action(action_id: str) -> tuple[Any, ...] | None:
            applied = self.redis.get(f"tkt:cid:{action_id}")
            ttl = self.redis.ttl(f"tkt:cid:{action_id}")
            if applied is None:
                return None  # expired meanwhile
            return action_id, applied, timedelta(seconds=ttl if ttl > 0 else 86400)

        self._rows("client actions", "client_actions", actions, (
            "INSERT INTO client_actions (action_id, applied_to, expires_at) VALUES (%s, %s, now() + %s)"
            " ON CONFLICT DO NOTHING"), action)

    def sequences(self) -> None:
        """Each day's last drawn ticket and incident number, raised to the highest migrated number."""
        found: dict[tuple[str, date], int] = {}
        for key in _scan(self.redis, "tkt:seq:*", "string") + _scan(self.redis, "inc:seq:*", "string"):
            match = _DAY_KEY.match(key)
            if match:
                kind = "ticket" if match.group(1) == "tkt" else "incident"
                found[(kind, datetime.strptime(match.group(2), "%Y%m%d").date())] = int(self.redis.get(key) or 0)
        for number in self._keys.get("tickets", []):
            match = _TICKET_DAY.match(number)
            if match:
                day = datetime.strptime(match.group(1), "%Y%m%d").date()
                found[("ticket", day)] = max(found.get(("ticket", day), 0), int(match.group(2)))
        self._rows("day sequences", "day_sequences", sorted(found), (
            "INSERT INTO day_sequences (kind, day, last) VALUES (%s, %s, %s) ON CONFLICT (kind, day)"
            " DO UPDATE SET last = EXCLUDED.last WHERE day_sequences.last < EXCLUDED.last"),
            lambda key: (*key, found[key]))
        self._keys["day sequences"] = [(*key, last) for key, last in sorted(found.items())]

    def police(self) -> None:
        """The 110 linkage: outbox, inbound replies, nonces, incident links, last messages."""
        r = self.redis
        out = [k.removeprefix("p110:out:") for k in _scan(r, "p110:out:*", "hash")]

        def outbox(message_id: str) -> tuple[Any, ...]:
            f = r.hgetall(f"p110:out:{message_id}")
            return (f["message_id"], f["ticket_number"], int(f["seq"]), f["body"], f["idempotency_key"],
                    f.get("kind") or "handover", f.get("state") or "pending", int(f.get("attempts") or 0),
                    _utc(f.get("next_attempt_at")) or _utc(f.get("created_at")), _utc(f.get("created_at")),
                    _utc(f.get("first_sent_at")), _utc(f.get("acked_at")), _utc(f.get("alarmed_at")),
                    f.get("last_error", ""), f.get("police_incident_id") or None)

        self._rows("110 outbox", "police_outbox", out, (
            "INSERT INTO police_outbox (message_id, ticket_number, seq, body, idempotency_key, kind, state,"
            " attempts, next_attempt_at, created_at, first_sent_at, acked_at, alarmed_at, last_error,"
            " police_incident_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING"), outbox)
        # replies of finished inbound requests (one 'processing' is a request under way: not copied)
        inbound = {k.removeprefix("p110:in:"): v for k in _scan(r, "p110:in:*", "string")
                   if (v := r.get(k)) not in (None, "processing")}
        self._rows("110 inbound replies", "police_inbound", sorted(inbound), (
            "INSERT INTO police_inbound (idempotency_key, state, reply_status, reply_body, expires_at)"
            " VALUES (%s, 'done', %s, %s, now() + %s) ON CONFLICT DO NOTHING"),
            lambda key: (key, int((reply := orjson.loads(inbound[key]))["status"]), Jsonb(reply.get("body")),
                         timedelta(seconds=max(r.ttl(f"p110:in:{key}"), 1))))
        nonces = [k.removeprefix("p110:nonce:") for k in _scan(r, "p110:nonce:*", "string")]
        self._rows("110 nonces", "police_nonces", nonces, (
            "INSERT INTO police_nonces (nonce, expires_at) VALUES (%s, now() + %s) ON CONFLICT DO NOTHING"),
            lambda nonce: (nonce, timedelta(seconds=max(r.ttl(f"p110:nonce:{nonce}"), 1))))
        incidents = [k.removeprefix("p110:incident:") for k in _scan(r, "p110:incident:*", "string")]
        self._rows("110 incidents", "police_incidents", incidents, (
            "INSERT INTO police_incidents (police_incident_id, ticket_number) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING"),
            lambda pid: (pid, n if NUMBER_RE.match(n := r.get(f"p110:incident:{pid}") or "") else None))
        linked = [k.removeprefix("p110:ticket:") for k in _scan(r, "p110:ticket:*", "hash")]
        self._rows("110 ticket links", "police_tickets", linked, (
            "INSERT INTO police_tickets (ticket_number, police_incident_id, direction, message_id)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"),
            lambda n: (n, (f := r.hgetall(f"p110:ticket:{n}"))["police_incident_id"], f.get("direction") or "out",
                       f.get("message_id") or ""))
        last = [k.removeprefix("p110:last:") for k in _scan(r, "p110:last:*", "string")]
        self._rows("110 last messages", "police_last_messages", last, (
            "INSERT INTO police_last_messages (ticket_number, direction, body) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING"),
            lambda n: (n, (m := orjson.loads(r.get(f"p110:last:{n}")))["dir"], m["body"]))

    # ------------------------------------------------------------------ the check
    # area -> (columns, their positions in the row's values): the identity of an old record's row,
    # its key and what says it is that record (a version, a time, a hash), not only its key
    _IDENTITY = {
        "vehicles": (("vehicle_id", "updated_at"), (0, 6)), "crews": (("crew_id", "updated_at"), (0, 8)),
        "shifts": (("crew_id", "set_at"), (0, 4)), "accounts": (("name", "password_hash"), (0, 5)),
        "tickets": (("number", "version"), (0, 1)), "incidents": (("incident_id", "rev"), (0, 1)),
        "alarm tickets": (("alarm_key", "number"), (0, 1)), "client actions": (("action_id", "applied_to"), (0, 1)),
        "110 outbox": (("message_id", "idempotency_key"), (0, 4)),
        "110 inbound replies": (("idempotency_key", "reply_status"), (0, 1)),
        "110 nonces": (("nonce",), (0,)), "110 incidents": (("police_incident_id", "ticket_number"), (0, 1)),
        "110 ticket links": (("ticket_number", "police_incident_id"), (0, 1)),
        "110 last messages": (("ticket_number", "body"), (0, 2)),
    }

    def check(self) -> list[Tally]:
        """Count, per area, the rows in PostgreSQL that have an old record's key (a ticket's
        events by time and action, an audit entry by time, author, action and target, a day
        sequence at or above the old value); the tallies."""
        for area, tally in self.tallies.items():
            keys = self._keys.get(area, [])
            if not self._table_exists(tally.table):
                tally.found = 0
            elif area in self._IDENTITY:
                columns = self._IDENTITY[area][0]
                idents = self._idents.get(area, [])
                query = sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%s)").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(tally.table),
                    sql.Identifier(columns[0]))
                have = set(self.conn.execute(query, ([i[0] for i in idents],)).fetchall())
                missing = [i[0] for i in idents if i not in have]
                tally.found = len(idents) - len(missing)
                if missing:
                    self.progress(f"{area}: not in PostgreSQL as in Redis: {', '.join(map(str, missing[:5]))}"
                                  + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
            elif area == "ticket events":
                tally.found = self._found_events(keys)
            elif area == "admin audit":
                have = Counter(self.conn.execute("SELECT at, by, action, target FROM admin_audit").fetchall())
                want = Counter((e[0], e[1], e[3], e[4]) for e in keys)
                tally.found = sum(min(n, have[k]) for k, n in want.items())
            elif area == "day sequences":
                tally.found = sum(1 for kind, day, last in keys if (self.conn.execute(
                    "SELECT last FROM day_sequences WHERE kind = %s AND day = %s", (kind, day)).fetchone()
                    or (0,))[0] >= last)
        return list(self.tallies.values())

    def _found_events(self, numbers: list[str]) -> int:
        found = 0
        for chunk in _chunks(numbers):
            pipe = self.redis.pipeline(transaction=False)
            for number in chunk:
                pipe.xrange(f"tkt:{number}:events")
            want = Counter((number, datetime.fromisoformat(orjson.loads(f["e"])["at"]), orjson.loads(f["e"])["action"])
                           for number, stream in zip(chunk, pipe.execute()) for _id, f in stream if "e" in f)
            have = Counter(self.conn.execute("SELECT number, at, action FROM ticket_events WHERE number = ANY(%s)",
                                             (chunk,)).fetchall())
            found += sum(min(n, have[k]) for k, n in want.items())
        return found


def report(tallies: Iterable[Tally]) -> str:
    """The check as a table: area, in Redis, in PostgreSQL, written by this run."""
    lines = [f"{'area':<22} {'redis':>8} {'postgres':>9} {'written':>8}"]
    for t in tallies:
        mark = "" if t.ok else "   <- differs"
        lines.append(f"{t.area:<22} {t.old:>8} {t.found if t.found is not None else '-':>9} {t.written:>8}{mark}")
    return "\n".join(lines)


def migrate(redis_url: str, database_url: str, *, out=sys.stdout, err=sys.stderr) -> int:
    """Copy the record of the Redis at redis_url into the PostgreSQL at database_url (its schema
    migrated), print the check; 0 when every count agrees, else 1."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            migration = Migration(client, conn, progress=lambda line: print(line, file=err, flush=True))
            migration.run()
            tallies = migration.check()
    finally:
        client.close()
    print(report(tallies), file=out, flush=True)
    differ = [t.area for t in tallies if not t.ok]
    if differ:
        print(f"counts differ: {', '.join(differ)}", file=out, flush=True)
        return 1
    print("every record of Redis is in PostgreSQL; the Redis data was left as it was", file=out, flush=True)
    return 0


def command(settings) -> int:
    """`python -m center migrate-redis`: the Redis of REDIS_URL (else the embedded one of
    DATA_DIR, started on its AOF) into the PostgreSQL of DATABASE_URL (else the embedded one of
    DATA_DIR, created if needed; migrations applied). No MQTT broker is started."""
    import redis as redis_lib

    from center.servers import ServerError, Servers

    try:
        servers = Servers.resolve(settings.with_values(MQTT_URL=settings.MQTT_URL or "mqtt://unused"))
    except ServerError as exc:
        print(f"migrate-redis: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"migrate-redis: from {servers.redis_url} into {_without_password(servers.database_url)}",
              file=sys.stderr, flush=True)
        return migrate(servers.redis_url, servers.database_url)
    except (psycopg.Error, redis_lib.RedisError) as exc:
        print(f"migrate-redis: {exc}", file=sys.stderr)
        return 1
    finally:
        servers.stop()


def _without_password(url: str) -> str:
    """A connection URL for a log line: its password left out."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1@", url)
