"""`python -m center migrate-redis`: copy a Redis-only installation's record into PostgreSQL.

Until the record moved to PostgreSQL (issue #22) Redis held everything. This module reads that
key layout (documented at commit f2cb00e in store/live.py, store_tickets.py, store_admin.py
and store_dispatch.py) and writes the rows `store.migrate_rows` makes of it:

- ``fleet:vehicles``, ``fleet:crews``, ``crews:shift`` -> ``vehicles``, ``crews``, ``crew_shifts``
  (``fleet_revision`` moves when rows were added, so readers reload); ``user:{name}`` ->
  ``accounts`` (the scrypt hashes as they are); ``dev:all`` -> ``devices`` (the MQTT credentials'
  hashes; ``device_revision`` moves, so an embedded broker re-renders its files); the
  ``admin:audit`` stream -> ``admin_audit``.
- ``tkt:{number}`` with its stream ``tkt:{number}:events`` -> ``tickets``, ``ticket_events``,
  ``ticket_stages``; ``inc:{id}`` -> ``incidents``; ``tkt:alarm:{key}`` -> ``alarm_tickets``;
  ``tkt:cid:{id}`` -> ``client_actions``; ``tkt:seq:{day}``, ``inc:seq:{day}`` -> ``day_sequences``.
- ``p110:out:*``, ``p110:in:*``, ``p110:nonce:*``, ``p110:incident:*``, ``p110:ticket:*``,
  ``p110:last:*`` -> the ``police_*`` tables.

Idempotent: every insert is ``ON CONFLICT DO NOTHING`` on the row's key; a ticket's events and
stages are inserted by the statement that inserts the ticket, so only with a ticket that was not
there; an admin audit entry is skipped when a row has its time, author, action and target; a day
sequence is only ever raised. No row is overwritten or deleted, no ``ticket_changes`` row written
(a migrated ticket is not a change to announce), and nothing in Redis is touched: live state
(positions, tracks, readings, alarms, sessions) stays where it is.

`Migration.check` then counts, per area, the records in Redis whose row PostgreSQL holds: a row
with the record's key and what says it is that record (`IDENTITY`).
"""
from __future__ import annotations

import re
import secrets
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from store import migrate_rows as rows
from store.migrate_rows import COLUMNS
from store.ticket_records import INCIDENT_COLUMNS, TICKET_COLUMNS, incident_from_dict, incident_row
from command.ticket_model import NUMBER_RE

BATCH = 500
# One statement per batch of tickets: a JSON array of `migrate_rows.ticket_item`s, the rows typed
# by the table itself (jsonb_populate_record); the events and stages of the tickets it inserted.
_INSERT_TICKETS = (
    "WITH src AS (SELECT s.i, r.*, s.item -> 'events' AS events, s.item -> 'stages' AS stages"
    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS s(item, i),"
    " LATERAL jsonb_populate_record(NULL::tickets, s.item -> 'row') AS r),"
    f" t AS (INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) SELECT {', '.join(TICKET_COLUMNS)} FROM src"
    " ORDER BY src.i ON CONFLICT (number) DO NOTHING RETURNING number),"
    " e AS (INSERT INTO ticket_events (number, at, action, event)"
    " SELECT src.number, (u.event ->> 'at')::timestamptz, u.event ->> 'action', u.event FROM src JOIN t USING (number),"
    " jsonb_array_elements(src.events) WITH ORDINALITY AS u(event, j) ORDER BY src.i, u.j RETURNING 1),"
    " st AS (INSERT INTO ticket_stages (number, stage, deadline, limit_s)"
    " SELECT src.number, x ->> 0, (x ->> 1)::timestamptz, (x ->> 2)::integer FROM src JOIN t USING (number),"
    " jsonb_array_elements(src.stages) AS x RETURNING 1)"
    " SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM e)")
_INSERT_INCIDENT = (f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)})"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) ON CONFLICT DO NOTHING")
_INSERT_AUDIT = ("INSERT INTO admin_audit (at, by, role, action, target, changes) SELECT %s, %s, %s, %s, %s, %s"
                 " WHERE NOT EXISTS (SELECT 1 FROM admin_audit WHERE target = %s AND at = %s AND by = %s AND action = %s)")
_RAISE_SEQUENCE = ("INSERT INTO day_sequences (kind, day, last) VALUES (%s, %s, %s) ON CONFLICT (kind, day)"
                   " DO UPDATE SET last = EXCLUDED.last WHERE day_sequences.last < EXCLUDED.last")

# area -> the columns that identify an old record's row: its key and what says it is that record
# (a version, a time, a hash), not only its key
IDENTITY: dict[str, tuple[str, ...]] = {
    "vehicles": ("vehicle_id", "updated_at"), "crews": ("crew_id", "updated_at"), "shifts": ("crew_id", "set_at"),
    "accounts": ("name", "password_hash"), "devices": ("device_id", "password_hash"), "tickets": ("number", "version"), "incidents": ("incident_id", "rev"),
    "alarm tickets": ("alarm_key", "number"), "client actions": ("action_id", "applied_to"),
    "110 outbox": ("message_id", "idempotency_key"), "110 inbound replies": ("idempotency_key", "reply_status"),
    "110 nonces": ("nonce",), "110 incidents": ("police_incident_id", "ticket_number"),
    "110 ticket links": ("ticket_number", "police_incident_id"), "110 last messages": ("ticket_number", "body"),
}


@dataclass
class Tally:
    """One area of the migration: records in Redis, rows inserted by this run, and (after
    `Migration.check`) how many of the records PostgreSQL holds."""

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


def _scan(redis: Any, pattern: str, type_: str, prefix: str = "") -> list[str]:
    """The keys matching pattern of a Redis type, sorted, without prefix."""
    return sorted({key.removeprefix(prefix) for key in redis.scan_iter(match=pattern, count=1000, _type=type_)})


def _chunks(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _insert(table: str) -> sql.Composed:
    """INSERT of a `COLUMNS` row of table, nothing on a conflict."""
    columns = COLUMNS[table]
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)))


class Migration:
    """Copies the old keys of one Redis (a ``decode_responses`` client) into the PostgreSQL of one
    autocommit connection; `progress` receives a line per area and per batch of tickets."""

    def __init__(self, redis: Any, conn: psycopg.Connection, progress: Callable[[str], None] = lambda _: None):
        self.redis = redis
        self.conn = conn
        self.progress = progress
        self.now = datetime.now(timezone.utc)
        self.tallies: dict[str, Tally] = {}
        self._keys: dict[str, list[Any]] = {}  # area -> its old records' keys (or entries)
        self._idents: dict[str, list[tuple[Any, ...]]] = {}  # area -> the identities `check` looks for

    # ------------------------------------------------------------------ writing
    def _identify(self, area: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> None:
        if area in IDENTITY:
            self._idents.setdefault(area, []).append(tuple(values[columns.index(c)] for c in IDENTITY[area]))

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

    def _execute(self, area: str, batch: list[tuple[Any, Any, tuple[Any, ...]]], *, fetch: bool = False) -> list[Any]:
        """Run a batch of (key, statement, params) in one transaction, pipelined; when one fails,
        again with a savepoint each, so that only the refused ones (reported, counted as failed)
        are left out. Per item: its first row (fetch) or its row count; None when refused."""
        try:
            with self.conn.transaction(), self.conn.pipeline():
                cursors = [self.conn.execute(statement, params) for _key, statement, params in batch]
            return [cur.fetchone() if fetch else cur.rowcount for cur in cursors]
        except psycopg.Error:
            pass
        out: list[Any] = []
        with self.conn.transaction():
            for key, statement, params in batch:
                try:
                    with self.conn.transaction():
                        cur = self.conn.execute(statement, params)
                        out.append(cur.fetchone() if fetch else cur.rowcount)
                except psycopg.Error as exc:
                    self.tallies[area].failed += 1
                    self.progress(f"{area}: {key}: not copied ({exc})")
                    out.append(None)
        return out

    def _copy(self, area: str, table: str, keys: list[Any], row: Callable[[Any], tuple[Any, ...] | None],
              statement: Any = None, params: Callable[[tuple[Any, ...]], tuple[Any, ...]] = tuple) -> None:
        """Insert a row per key: row(key) gives its `COLUMNS` values (None: the key is gone since the
        scan), params(values) the statement's (default `_insert(table)`). A record that cannot be
        read or is refused is reported, and the others go on."""
        tally = self._area(area, table, keys)
        if tally is None:
            return
        for chunk in _chunks(keys):
            batch = []
            for key in chunk:
                try:
                    values = row(key)
                except (ValueError, TypeError, KeyError) as exc:
                    tally.failed += 1
                    self.progress(f"{area}: {key}: not copied ({exc!r})")
                    continue
                if values is None:
                    tally.old -= 1
                    continue
                self._identify(area, COLUMNS.get(table, INCIDENT_COLUMNS), values)
                batch.append((key, statement or _insert(table), params(values)))
            tally.written += sum(n for n in self._execute(area, batch) if n is not None)
        self.progress(f"{area}: {tally.old} in Redis, {tally.written} rows written")

    # ------------------------------------------------------------------ the areas
    def run(self) -> list[Tally]:
        """Copy every area; the tallies (without `found`: see `check`)."""
        self.fleet()
        self.accounts()
        self.devices()
        self.admin_audit()
        self.tickets()
        self.incidents()
        self.ticket_extras()
        self.sequences()
        self.police()
        return list(self.tallies.values())

    def fleet(self) -> None:
        """Vehicles, then crews (a crew's vehicle must exist), then shifts."""
        r, now = self.redis, self.now
        vehicles = {k: orjson.loads(v) for k, v in r.hgetall("fleet:vehicles").items()}
        crews = {k: orjson.loads(v) for k, v in r.hgetall("fleet:crews").items()}
        shifts = {k: orjson.loads(v) for k, v in r.hgetall("crews:shift").items()}
        self._copy("vehicles", "vehicles", sorted(vehicles), lambda k: rows.vehicle_row(k, vehicles[k], now))
        self._copy("crews", "crews", sorted(crews), lambda k: rows.crew_row(k, crews[k], now))
        self._copy("shifts", "crew_shifts", sorted(shifts), lambda k: rows.shift_row(k, shifts[k], now))
        added = sum(self.tallies[a].written for a in ("vehicles", "crews", "shifts"))
        if added and self._table_exists("fleet_revision"):  # readers of the registry reload
            self.conn.execute("INSERT INTO fleet_revision (singleton, rev) VALUES (true, 1)"
                              " ON CONFLICT (singleton) DO UPDATE SET rev = fleet_revision.rev + 1")

    def accounts(self) -> None:
        """``user:{name}`` hashes, password hashes included."""
        self._copy("accounts", "accounts", _scan(self.redis, "user:*", "hash", "user:"),
                   lambda name: rows.account_row(name, self.redis.hgetall(f"user:{name}")))

    def devices(self) -> None:
        """The MQTT credentials of vehicles and gateways (``dev:all``)."""
        devices = {k: orjson.loads(v) for k, v in self.redis.hgetall("dev:all").items()}
        self._copy("devices", "devices", sorted(devices), lambda k: rows.device_row(k, devices[k]))
        if self.tallies["devices"].written and self._table_exists("device_revision"):  # brokers re-render
            self.conn.execute("INSERT INTO device_revision (singleton, rev) VALUES (true, %s)"
                              " ON CONFLICT (singleton) DO UPDATE SET rev = EXCLUDED.rev", (secrets.token_hex(8),))

    def admin_audit(self) -> None:
        """The ``admin:audit`` stream, oldest first."""
        entries = [fields for _id, fields in self.redis.xrange("admin:audit")]
        made: list[tuple[Any, ...]] = []  # the rows, for `check`

        def audit(fields: dict[str, str]) -> tuple[Any, ...]:
            made.append(rows.audit_row(fields))
            return made[-1]

        self._copy("admin audit", "admin_audit", entries, audit, _INSERT_AUDIT,
                   lambda e: (*e[:5], Jsonb(e[5]), e[4], e[0], e[1], e[3]))
        self._keys["admin audit"] = made

    def tickets(self) -> None:
        """Tickets in number order, each with its whole timeline and its open stages."""
        numbers = sorted((k for k in _scan(self.redis, "tkt:*", "string", "tkt:") if NUMBER_RE.match(k)),
                         key=rows.ticket_sort_key)
        tally = self._area("tickets", "tickets", numbers)
        events = self.tallies["ticket events"] = Tally("ticket events", "ticket_events")
        self._keys["ticket events"] = numbers
        if tally is None:
            return
        done = 0
        for chunk in _chunks(numbers):
            pipe = self.redis.pipeline(transaction=False)
            for number in chunk:
                pipe.get(f"tkt:{number}")
                pipe.xrange(f"tkt:{number}:events")
            replies = pipe.execute()
            items: list[tuple[str, bytes]] = []
            for number, raw, stream in zip(chunk, replies[::2], replies[1::2]):
                events.old += len(stream)
                try:
                    row, item = rows.ticket_item(raw, [fields["e"] for _id, fields in stream])
                except (ValueError, TypeError, KeyError) as exc:
                    tally.failed += 1
                    self.progress(f"tickets: {number}: not copied ({exc!r})")
                    continue
                self._identify("tickets", TICKET_COLUMNS, row)
                items.append((number, item))
            for result in self._insert_tickets(items):
                if result is not None:
                    tally.written += result[0]
                    events.written += result[1]
            done += len(chunk)
            self.progress(f"tickets: {done}/{tally.old} read, {tally.written} written with {events.written} events")

    def _insert_tickets(self, items: list[tuple[str, bytes]]) -> list[tuple[int, int] | None]:
        """Prepared tickets (number, JSON item) in one statement: [(tickets, events) written];
        when the batch is refused, each ticket alone, so that only the refused ones are left out."""
        def param(part: list[tuple[str, bytes]]) -> tuple[str]:
            return (b"[" + b",".join(item for _number, item in part) + b"]").decode(),

        if not items:
            return []
        try:
            with self.conn.transaction():
                return [self.conn.execute(_INSERT_TICKETS, param(items)).fetchone()]
        except psycopg.Error:
            pass
        return self._execute("tickets", [(n, _INSERT_TICKETS, param([(n, item)])) for n, item in items], fetch=True)

    def incidents(self) -> None:
        """``inc:{id}`` records (not their ``:rev`` copies, the sequences or the indexes)."""
        ids = [k for k in _scan(self.redis, "inc:*", "string", "inc:") if ":" not in k]
        self._copy("incidents", "incidents", ids, lambda incident_id: incident_row(
            *incident_from_dict(orjson.loads(self.redis.get(f"inc:{incident_id}")))), _INSERT_INCIDENT)

    def _string_with_ttl(self, key: str) -> tuple[str | None, int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        value, ttl = pipe.execute()
        return value, ttl

    def ticket_extras(self) -> None:
        """The alarm -> proactive ticket claims and the client action ids still remembered."""
        r, now = self.redis, self.now
        self._copy("alarm tickets", "alarm_tickets", _scan(r, "tkt:alarm:*", "string", "tkt:alarm:"),
                   lambda key: (key, r.get(f"tkt:alarm:{key}")) if r.exists(f"tkt:alarm:{key}") else None)

        def action(action_id: str) -> tuple[Any, ...] | None:
            applied, ttl = self._string_with_ttl(f"tkt:cid:{action_id}")
            return None if applied is None else rows.client_action_row(action_id, applied, ttl, now)

        self._copy("client actions", "client_actions", _scan(r, "tkt:cid:*", "string", "tkt:cid:"), action)

    def sequences(self) -> None:
        """Each day's last drawn ticket and incident number, raised to the highest migrated number."""
        keys = _scan(self.redis, "tkt:seq:*", "string") + _scan(self.redis, "inc:seq:*", "string")
        last = rows.day_sequences(dict(zip(keys, self.redis.mget(keys) if keys else [])), self._keys["tickets"])
        self._copy("day sequences", "day_sequences", sorted(last), lambda day: (*day, last[day]), _RAISE_SEQUENCE)
        self._keys["day sequences"] = [(*day, n) for day, n in sorted(last.items())]

    def police(self) -> None:
        """The 110 linkage: outbox, inbound replies, nonces, incident links, last messages."""
        r, now = self.redis, self.now

        def inbound(key: str) -> tuple[Any, ...] | None:
            value, ttl = self._string_with_ttl(f"p110:in:{key}")
            return None if value is None else rows.inbound_row(key, value, ttl, now)

        def nonce(key: str) -> tuple[Any, ...] | None:
            value, ttl = self._string_with_ttl(f"p110:nonce:{key}")
            return None if value is None else rows.nonce_row(key, ttl, now)

        def present(key: str, make: Callable[[str], tuple[Any, ...]]) -> tuple[Any, ...] | None:
            value = r.get(key)
            return None if value is None else make(value)

        self._copy("110 outbox", "police_outbox", _scan(r, "p110:out:*", "hash", "p110:out:"),
                   lambda m: rows.outbox_row(r.hgetall(f"p110:out:{m}")))
        # a 'processing' key is a request under way when Redis stopped: not a reply, not copied
        finished = [k for k in _scan(r, "p110:in:*", "string", "p110:in:") if r.get(f"p110:in:{k}") != "processing"]
        self._copy("110 inbound replies", "police_inbound", finished, inbound, None,
                   lambda v: (*v[:3], Jsonb(v[3]), v[4]))
        self._copy("110 nonces", "police_nonces", _scan(r, "p110:nonce:*", "string", "p110:nonce:"), nonce)
        self._copy("110 incidents", "police_incidents", _scan(r, "p110:incident:*", "string", "p110:incident:"),
                   lambda i: present(f"p110:incident:{i}", lambda v: rows.police_incident_row(i, v)))
        self._copy("110 ticket links", "police_tickets", _scan(r, "p110:ticket:*", "hash", "p110:ticket:"),
                   lambda n: rows.police_ticket_row(n, r.hgetall(f"p110:ticket:{n}")))
        self._copy("110 last messages", "police_last_messages", _scan(r, "p110:last:*", "string", "p110:last:"),
                   lambda n: present(f"p110:last:{n}", lambda v: rows.last_message_row(n, v)))

    # ------------------------------------------------------------------ the check
    def check(self) -> list[Tally]:
        """Count, per area, the old records whose row PostgreSQL holds: by `IDENTITY`; a ticket's
        events by time and action; an audit entry by time, author, action and target; a day
        sequence at least as high. The tallies."""
        for area, tally in self.tallies.items():
            entries = self._keys.get(area, [])
            if not self._table_exists(tally.table):
                tally.found = 0
            elif area in IDENTITY:
                columns, idents = IDENTITY[area], self._idents.get(area, [])
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
                tally.found = self._found_events(entries)
            elif area == "admin audit":
                have = Counter(self.conn.execute("SELECT at, by, action, target FROM admin_audit").fetchall())
                want = Counter((e[0], e[1], e[3], e[4]) for e in entries)
                tally.found = sum(min(n, have[k]) for k, n in want.items())
            elif area == "day sequences":
                held = {(kind, day): n for kind, day, n in self.conn.execute("SELECT kind, day, last FROM day_sequences")}
                tally.found = sum(1 for kind, day, n in entries if held.get((kind, day), 0) >= n)
        return list(self.tallies.values())

    def _found_events(self, numbers: list[str]) -> int:
        found = 0
        for chunk in _chunks(numbers):
            pipe = self.redis.pipeline(transaction=False)
            for number in chunk:
                pipe.xrange(f"tkt:{number}:events")
            want: Counter[tuple[str, datetime, str]] = Counter()
            for number, stream in zip(chunk, pipe.execute()):
                for event in (orjson.loads(fields["e"]) for _id, fields in stream if "e" in fields):
                    want[(number, datetime.fromisoformat(event["at"]), event["action"])] += 1
            have = Counter(self.conn.execute("SELECT number, at, action FROM ticket_events WHERE number = ANY(%s)",
                                             (chunk,)).fetchall())
            found += sum(min(n, have[k]) for k, n in want.items())
        return found


def report(tallies: list[Tally]) -> str:
    """The check as a table: area, records in Redis, of them in PostgreSQL, rows written by this run."""
    lines = [f"{'area':<22} {'redis':>8} {'postgres':>9} {'written':>8}"]
    for t in tallies:
        mark = "" if t.ok else "   <- differs"
        lines.append(f"{t.area:<22} {t.old:>8} {t.found if t.found is not None else '-':>9} {t.written:>8}{mark}")
    return "\n".join(lines)


def migrate(redis_url: str, database_url: str, *, out=sys.stdout, err=sys.stderr) -> int:
    """Copy the record of the Redis at redis_url into the PostgreSQL at database_url (its schema
    migrated), progress on err, the check on out; 0 when every count agrees, else 1."""
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
    if not any(t.old for t in tallies):
        print("this Redis holds no record of a Redis-only installation: nothing copied (is it the old "
              "installation's REDIS_URL or DATA_DIR?)", file=out, flush=True)
        return 0
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

    from servers.embedded import ServerError
    from store.startup import open_servers

    try:
        servers = open_servers(settings.with_values(MQTT_URL=settings.MQTT_URL or "mqtt://unused"))
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
