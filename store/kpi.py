"""The KPI facts in PostgreSQL: one row per ticket, folded from its audit events (`services.kpi_service`).

Owns the tables of ``store/migrations/0004_kpi.sql``: ``kpi_facts`` (a ticket's KPI row, the
columns reports select and filter on and the whole row packed), ``kpi_folds`` (the running fold
of its events, to continue from) and ``kpi_names`` (integer codes of the names in packed rows).
Reads, never writes, the tickets' ``ticket_events`` (the audit trail: the source of every fact)
and ``tickets.version`` (to find tickets whose fold is behind), and the Redis stream
``tkt:changes`` (`KpiChanges`: which tickets changed since the last entry read).

Why a facts table rather than folding every event in each process at start-up: a year of a big
line is a million tickets and some ten million events; folding them takes minutes and keeps
gigabytes per web process. A fact row is written once per ticket write (by whichever process
applies the change first; the others' writes are skipped by the ``last_event_id`` guard), kept
across restarts and Redis wipes, and a report reads only its period's rows.

Why reports read packed rows into numpy rather than GROUP BY in SQL: the report holds medians
and p90s per group, rankings and drill-downs (`command.kpi_report`); computing them from the
same columns with the same code keeps one definition of every number (the pure rebuild from the
events gives the same report, by test). A period's rows come out as one ``string_agg`` per six
weeks of the period (at least two; queries run in parallel, each an index-only scan of
``kpi_facts_created``, which includes the packed row; the rows resolved in the period but created
outside it in one more query): fixed-width records that numpy reads as they are (a COPY would hand
them over one Python iteration per row), each field straight into its column.

The row is packed in two parts: ``packed``, the 136 bytes a report reads (`REPORT_FIELDS`), and
``extra``, 40 bytes: the fact id (the ticket's first audit event's id) and the columns only
drill-downs, exports and maps read (first resolution, position, grid, urgency, area class). A
report (``frame(full=False)``) aggregates ``packed`` alone; the rest ``packed || extra``. Why: the
server's aggregate, the transfer and the client's copies cost by the byte, and reading a month
of 300,000 tickets was half of a report's time. Why no summary table per day and group: a
report's medians and p90s (per unit, crew, district, category) do not add up from daily
summaries, so it reads the rows anyway.
"""
from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import psycopg
import redis.asyncio as aioredis

from store.db import Database
from store.ticket_publish import CHANGES_STREAM
from command.kpi import (
    COLUMNS, COUNT_COLUMNS, ENUM_COLUMNS, FLOAT_COLUMNS, ID_COLUMNS, MET_COLUMNS, Codes, KpiFrame,
)
from command.kpi_facts import TicketAccumulator

NAME_KINDS = tuple(ENUM_COLUMNS) + ID_COLUMNS
_KIND = {**{n: ("d", "<f8") for n in FLOAT_COLUMNS}, **{n: ("i", "<i4") for n in ID_COLUMNS},
         **{n: ("h", "<i2") for n in (*ENUM_COLUMNS, *COUNT_COLUMNS)}, **{n: ("b", "i1") for n in MET_COLUMNS},
         "id": ("q", "<i8")}
# What a report reads (`command.kpi_report`), in ``packed``; the rest of the row, in ``extra``.
REPORT_FIELDS = tuple(n for n in FLOAT_COLUMNS if n not in ("first_resolved", "lon", "lat")) + (
    "district", "unit", "crew") + tuple(n for n in ENUM_COLUMNS if n not in ("urgency", "area_class")) + (
    COUNT_COLUMNS + MET_COLUMNS)
EXTRA_FIELDS = ("id", "first_resolved", "lon", "lat", "grid", "urgency", "area_class")
assert sorted(REPORT_FIELDS + EXTRA_FIELDS) == sorted(("id",) + COLUMNS)


def _layout(fields: Sequence[str]) -> tuple[np.dtype, struct.Struct]:
    """The numpy dtype and struct of little-endian records of these fields, padded to a multiple
    of 8 bytes (the extra part follows the report part aligned)."""
    size = sum(struct.calcsize("<" + _KIND[n][0]) for n in fields)
    pad = -size % 8
    dtype = np.dtype([(n, _KIND[n][1]) for n in fields] + ([("pad", "V%d" % pad)] if pad else []))
    packer = struct.Struct("<" + "".join(_KIND[n][0] for n in fields) + "x" * pad)
    assert packer.size == dtype.itemsize
    return dtype, packer


REPORT_ROW, _PACK_REPORT = _layout(REPORT_FIELDS)  # 136 bytes a ticket
EXTRA_ROW, _PACK_EXTRA = _layout(EXTRA_FIELDS)  # 40 bytes
PACKED = np.dtype({"names": [*REPORT_FIELDS, *EXTRA_FIELDS],
                   "formats": [REPORT_ROW.fields[n][0] for n in REPORT_FIELDS]
                   + [EXTRA_ROW.fields[n][0] for n in EXTRA_FIELDS],
                   "offsets": [REPORT_ROW.fields[n][1] for n in REPORT_FIELDS]
                   + [REPORT_ROW.itemsize + EXTRA_ROW.fields[n][1] for n in EXTRA_FIELDS],
                   "itemsize": REPORT_ROW.itemsize + EXTRA_ROW.itemsize})  # packed || extra
CHUNK_SPAN = timedelta(days=46)  # a report reads its period in parallel queries of at most this span
MIN_CHUNKS = 2
_N_FLOAT, _N_ENUM, _N_ID = len(FLOAT_COLUMNS), len(ENUM_COLUMNS), len(ID_COLUMNS)
_INT16_MAX = 32767


class FoldRow:
    """What `KpiFacts.pending` reads for one ticket: its fold so far and its new events."""

    __slots__ = ("number", "fact_id", "version", "last_event_id", "fold", "events")

    def __init__(self, number: str, fact_id: int, version: int, last_event_id: int,
                 fold: dict[str, Any] | None) -> None:
        self.number, self.fact_id, self.version, self.last_event_id, self.fold = (
            number, fact_id, version, last_event_id, fold)
        self.events: list[tuple[int, bytes]] = []  # (ticket_events.id, event JSON)


ZERO_ID = "0-0"


def id_key(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable (milliseconds, sequence) pair."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class KpiChanges:
    """Reads of ``tkt:changes`` (one entry per committed ticket write: number, version, action, state)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def tail(self) -> str:
        """The id of the newest entry ("0-0" when there is none)."""
        rows = await self.redis.xrevrange(CHANGES_STREAM, "+", "-", count=1)
        return _text(rows[0][0]) if rows else ZERO_ID

    async def lost_after(self, last_id: str) -> bool:
        """Whether entries after `last_id` may be gone: the oldest entry kept is newer than it
        (Redis was wiped, or the stream was trimmed past it)."""
        rows = await self.redis.xrange(CHANGES_STREAM, "-", "+", count=1)
        if not rows or last_id == ZERO_ID:
            return False
        head = tuple(int(part) for part in _text(rows[0][0]).split("-"))
        return head > tuple(int(part) for part in last_id.split("-"))

    async def after(self, last_id: str, count: int, block_ms: int | None = None) -> list[tuple[str, dict[str, str]]]:
        """Entries after `last_id` (at most `count`; waits up to `block_ms` when given)."""
        reply = await self.redis.xread({CHANGES_STREAM: last_id}, count=count, block=block_ms)
        if not reply:
            return []
        return [(_text(sid), {_text(k): _text(v) for k, v in fields.items()}) for sid, fields in reply[0][1]]


def parse_records(buf: bytes | bytearray | memoryview, dtype: np.dtype = PACKED) -> np.ndarray:
    """The rows of ``string_agg(packed || extra, '')`` (or of ``packed`` alone, `REPORT_ROW`) as
    records (ValueError on another width)."""
    if len(buf) % dtype.itemsize:
        raise ValueError("KPI records of an unexpected width")
    return np.frombuffer(buf, dtype=dtype)


class KpiFacts:
    """SQL of the KPI facts: pending folds, writing facts, sweeping, and reading a period's rows."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._codes: dict[str, dict[str, int]] = {kind: {} for kind in NAME_KINDS}

    # ------------------------------------------------------------------ the fold's inputs

    async def stale(self, after: str, limit: int) -> list[str]:
        """Up to `limit` ticket numbers after `after` (in order) whose fold is missing or behind."""
        rows = await self.db.fetch(
            "SELECT t.number FROM tickets t LEFT JOIN kpi_folds f ON f.number = t.number"
            " WHERE t.number > %s AND (f.number IS NULL OR f.version < t.version)"
            " ORDER BY t.number LIMIT %s", (after, limit))
        return [row["number"] for row in rows]

    async def pending(self, numbers: Sequence[str], *, fresh: bool = False) -> list[FoldRow]:
        """For each known ticket: its fold and version so far, and its events after the fold (in
        order); with `fresh`, no fold and every event."""
        if not numbers:
            return []
        async with self.db.connection() as conn:
            folds: dict[str, tuple[int, int, int, Any]] = {}
            if not fresh:
                cur = await conn.execute(
                    "SELECT number, fact_id, version, last_event_id, fold::text FROM kpi_folds WHERE number = ANY(%s)",
                    (list(numbers),))
                folds = {n: (i, v, last, orjson.loads(fold)) for n, i, v, last, fold in await cur.fetchall()}
            after = [folds[n][2] if n in folds else 0 for n in numbers]
            # one statement, one snapshot: the version read belongs with the events read
            cur = await conn.execute(
                "SELECT a.number, t.version, e.id, e.event::text"
                " FROM unnest(%s::text[], %s::bigint[]) AS a(number, after)"
                " JOIN tickets t ON t.number = a.number"
                " LEFT JOIN ticket_events e ON e.number = a.number AND e.id > a.after"
                " ORDER BY a.number, e.id", (list(numbers), after))
            rows = await cur.fetchall()
        out: dict[str, FoldRow] = {}
        for number, version, event_id, event in rows:
            row = out.get(number)
            if row is None:
                fact_id, _, last, fold = folds.get(number, (0, 0, 0, None))
                row = out[number] = FoldRow(number, fact_id, version, last, fold)
            if event_id is not None:
                row.events.append((event_id, event))
                if not row.fact_id:
                    row.fact_id = event_id  # a ticket's facts are keyed by its first event's id
        return list(out.values())

    # ------------------------------------------------------------------ writing facts

    async def _ensure_codes(self, conn: psycopg.AsyncConnection, wanted: Mapping[str, set[str]]) -> None:
        """Give every wanted (kind, name) a code (dense per kind; one writer at a time assigns)."""
        missing = {kind: sorted(n for n in names if n not in self._codes[kind]) for kind, names in wanted.items()}
        if not any(missing.values()):
            return
        kinds = [k for k, names in missing.items() for _ in names]
        names = [n for names in missing.values() for n in names]
        cur = await conn.execute("SELECT kind, name, code FROM kpi_names WHERE (kind, name) IN"
                                 " (SELECT * FROM unnest(%s::text[], %s::text[]))", (kinds, names))
        for kind, name, code in await cur.fetchall():
            self._codes[kind][name] = code
        left = [(k, n) for k, n in zip(kinds, names) if n not in self._codes[k]]
        if not left:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('kpi_names'))")
            for kind, name in left:
                await conn.execute(
                    "INSERT INTO kpi_names (kind, name, code)"
                    " SELECT %s, %s, coalesce(max(code) + 1, 0) FROM kpi_names WHERE kind = %s"
                    " ON CONFLICT (kind, name) DO NOTHING", (kind, name, kind))
            cur = await conn.execute("SELECT kind, name, code FROM kpi_names WHERE (kind, name) IN"
                                     " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                                     ([k for k, _ in left], [n for _, n in left]))
            for kind, name, code in await cur.fetchall():
                self._codes[kind][name] = code

    def pack(self, fact_id: int, values: Sequence[Any]) -> tuple[bytes, bytes]:
        """A ticket's `command.kpi.named_row` as the bytes of ``packed`` (what a report reads) and
        ``extra`` (its fact id and the rest): names as codes (-1 for none), counts capped at int16."""
        codes = self._codes
        row = dict(zip(COLUMNS, values))
        for kind in NAME_KINDS:
            name = row[kind]
            row[kind] = -1 if name is None else codes[kind][str(name)]
        for name in COUNT_COLUMNS:
            row[name] = min(int(row[name]), _INT16_MAX)
        row["id"] = fact_id
        return (_PACK_REPORT.pack(*[row[n] for n in REPORT_FIELDS]),
                _PACK_EXTRA.pack(*[row[n] for n in EXTRA_FIELDS]))

    async def write(self, folded: Sequence[tuple[FoldRow, TicketAccumulator, int, tuple[Any, ...]]], *,
                    force: bool = False) -> None:
        """Write folds and facts: (the row read, its accumulator now, the last event id folded,
        its named row). A row already written from as many events (by another process) is kept,
        unless `force` (a fold made again from every event)."""
        if not folded:
            return
        wanted: dict[str, set[str]] = {kind: set() for kind in NAME_KINDS}
        for _, _, _, values in folded:
            for kind, name in zip(NAME_KINDS, values[_N_FLOAT:_N_FLOAT + _N_ENUM + _N_ID]):
                if name is not None:
                    wanted[kind].add(str(name))
        async with self.db.connection() as conn:
            await self._ensure_codes(conn, wanted)
            facts = [r for r in folded if force or r[2] > r[0].last_event_id]
            cols: dict[str, list[Any]] = {k: [] for k in (
                "id", "number", "last", "created", "resolved", "category", "district", "unit", "crew", "state",
                "packed", "extra")}
            for row, acc, last, values in facts:
                cols["id"].append(row.fact_id)
                cols["number"].append(row.number)
                cols["last"].append(last)
                cols["created"].append(_time(values[0]))
                cols["resolved"].append(_time(values[1]))
                cols["category"].append(acc.attrs.get("category"))
                cols["district"].append(acc.attrs.get("district"))
                cols["unit"].append(acc.attrs.get("unit_id"))
                cols["crew"].append(acc.crew_id())
                cols["state"].append(acc.state)
                packed, extra = self.pack(row.fact_id, values)
                cols["packed"].append(packed)
                cols["extra"].append(extra)
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO kpi_folds (number, fact_id, version, last_event_id, fold)"
                    " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::integer[], %s::bigint[], %s::jsonb[])"
                    " ON CONFLICT (number) DO UPDATE SET fact_id = EXCLUDED.fact_id, version = EXCLUDED.version,"
                    " last_event_id = EXCLUDED.last_event_id, fold = EXCLUDED.fold"
                    " WHERE %s OR (kpi_folds.last_event_id, kpi_folds.version)"
                    " < (EXCLUDED.last_event_id, EXCLUDED.version)",
                    ([r.number for r, _, _, _ in folded], [r.fact_id for r, _, _, _ in folded], [r.version for r, _, _, _ in folded],
                     [last for _, _, last, _ in folded],
                     [orjson.dumps(acc.to_dict()).decode() for _, acc, _, _ in folded], force))
                if facts:
                    await conn.execute(
                        "INSERT INTO kpi_facts (id, number, last_event_id, created, resolved, category, district,"
                        " unit_id, crew_id, state, packed, extra)"
                        " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::timestamptz[], %s::timestamptz[],"
                        " %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bytea[], %s::bytea[])"
                        " ON CONFLICT (number) DO UPDATE SET id = EXCLUDED.id, last_event_id = EXCLUDED.last_event_id,"
                        " created = EXCLUDED.created, resolved = EXCLUDED.resolved,"
                        " category = EXCLUDED.category, district = EXCLUDED.district,"
                        " unit_id = EXCLUDED.unit_id, crew_id = EXCLUDED.crew_id, state = EXCLUDED.state,"
                        " packed = EXCLUDED.packed, extra = EXCLUDED.extra WHERE %s OR kpi_facts.last_event_id < EXCLUDED.last_event_id",
                        (*cols.values(), force))

    async def forget(self) -> None:
        """Drop every fact and fold (a full rebuild from the events follows); names keep their codes."""
        async with self.db.transaction() as conn:
            # in the order `write` takes them (folds, then facts): the other order deadlocks with a
            # fold being written
            await conn.execute("LOCK TABLE kpi_folds, kpi_facts IN ACCESS EXCLUSIVE MODE")
            await conn.execute("TRUNCATE kpi_folds, kpi_facts")

    # ------------------------------------------------------------------ reading a period

    async def names(self) -> dict[str, Codes]:
        """The codes of every kind as `Codes` (a name's code is its index; unused codes are None)."""
        rows = await self.db.fetch("SELECT kind, name, code FROM kpi_names")
        out = {kind: Codes() for kind in NAME_KINDS}
        for row in rows:
            codes = out.get(row["kind"])
            if codes is None:
                continue
            while len(codes.names) <= row["code"]:
                codes.names.append(None)  # type: ignore[arg-type]
            codes.names[row["code"]] = row["name"]
            codes.index[row["name"]] = row["code"]
        return out

    async def _rows(self, where: str, params: Sequence[Any], *, full: bool = True,
                    by_index: bool = False) -> np.ndarray:
        """The rows of the facts matching `where` (whole, or only what a report reads unless `full`),
        aggregated by the server into one bytea
        (a row-by-row COPY costs a Python iteration per ticket). `by_index`: the planner, taking
        created and resolved for independent, expects a period's "resolved in it, created before"
        to be most rows and scans the table; the index (resolved, created) finds the few there are."""
        async with self.db.transaction() as conn:
            # parallel queries of their own (`frame`), each serial: no Gather merging partial aggregates
            await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            if by_index:
                await conn.execute("SET LOCAL enable_seqscan = off")
            record = "packed || extra" if full else "packed"
            cur = await conn.execute(f"SELECT string_agg({record}, ''::bytea) FROM kpi_facts WHERE {where}",
                                     params, binary=True)
            row = await cur.fetchone()
        return parse_records(row[0] if row and row[0] is not None else b"", PACKED if full else REPORT_ROW)

    async def frame(self, start: datetime, end: datetime, *, category: Sequence[str] = (),
                    district: Sequence[str] = (), unit: Sequence[str] = (), numbers: bool = False,
                    full: bool = True) -> KpiFrame:
        """The KPI rows of the tickets created or resolved in [start, end), optionally only some
        categories, districts or units, as a `KpiFrame` (with ticket numbers when asked).
        ``full=False``: only the columns a report reads (`REPORT_FIELDS`, 136 of the 176 bytes a
        ticket); the others are NaN or -1 and the ids -1, so such a frame is for `report` alone,
        never for a drill-down, an export or a selection."""
        if numbers and not full:
            raise ValueError("a report-only frame has no ticket ids to find numbers by")
        filters, params = [], []
        for column, wanted in (("category", category), ("district", district), ("unit_id", unit)):
            if wanted:
                filters.append(f"{column} = ANY(%s)")
                params.append(list(wanted))
        extra = "".join(f" AND {f}" for f in filters)
        chunks = max(MIN_CHUNKS, math.ceil((end - start) / CHUNK_SPAN))  # queries in parallel
        step = (end - start) / chunks
        cuts = [start + step * i for i in range(chunks)] + [end]
        parts = [self._rows("created >= %s AND created < %s" + extra, (a, b, *params), full=full)
                 for a, b in zip(cuts, cuts[1:])]
        # resolved in the period, created outside it: on the index (resolved, created)
        parts.append(self._rows("resolved >= %s AND resolved < %s"
                                " AND (created < %s OR created >= %s OR created IS NULL)" + extra,
                                (start, end, start, end, *params), full=full, by_index=True))
        *chunks_read, codes = await asyncio.gather(*parts, self.names())
        rows = sum(len(chunk) for chunk in chunks_read)
        read = set(chunks_read[0].dtype.names)
        cols = {name: _column(chunks_read, name, np.float64) if name in read else np.full(rows, np.nan)
                for name in FLOAT_COLUMNS}
        for name in ENUM_COLUMNS:
            cols[name] = (_enum_lut(codes[name], name)[_column(chunks_read, name, np.int32) + 1] if name in read
                          else np.full(rows, -1, dtype=np.int32))
        for name in ID_COLUMNS + COUNT_COLUMNS + MET_COLUMNS:
            cols[name] = _column(chunks_read, name, np.int32) if name in read else np.full(rows, -1, dtype=np.int32)
        ids = _column(chunks_read, "id", np.int64) if full else np.full(rows, -1, dtype=np.int64)
        found = None
        if numbers:
            by_id = await self.numbers_of(ids.tolist())
            found = [by_id.get(i, "") for i in ids.tolist()]
        return KpiFrame(cols, {name: codes[name] for name in ID_COLUMNS}, ids, found)

    async def numbers_of(self, ids: Sequence[int]) -> dict[int, str]:
        """Ticket numbers of fact ids."""
        if not len(ids):
            return {}
        rows = await self.db.fetch("SELECT id, number FROM kpi_facts WHERE id = ANY(%s)", (list(ids),))
        return {row["id"]: row["number"] for row in rows}


def _column(chunks: Sequence[np.ndarray], name: str, dtype: type) -> np.ndarray:
    """One field of the chunks' packed records as a column of `dtype`, filled chunk by chunk
    (concatenating the records first would copy every whole record once more)."""
    out = np.empty(sum(len(chunk) for chunk in chunks), dtype=dtype)
    at = 0
    for chunk in chunks:
        out[at:at + len(chunk)] = chunk[name]
        at += len(chunk)
    return out


def _enum_lut(codes: Codes, kind: str) -> np.ndarray:
    """code + 1 → index in the enum's values (`command.kpi.ENUM_COLUMNS`), -1 for none or unknown."""
    values = {v: i for i, v in enumerate(ENUM_COLUMNS[kind])}
    lut = np.full(len(codes.names) + 1, -1, dtype=np.int32)
    for code, name in enumerate(codes.names):
        lut[code + 1] = values.get(name, -1)
    return lut


def _time(epoch: float) -> datetime | None:
    if epoch != epoch:  # NaN
        return None
    return _EPOCH + timedelta(seconds=epoch)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iter_all_events(url: str, *, batch: int = 5000,
                    progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every audit event of every ticket (dicts, in order per ticket) read from PostgreSQL with a
    server-side cursor, so memory holds one batch; `progress(events)` after each batch."""
    with psycopg.connect(url) as conn:
        with conn.cursor(name="kpi_all_events") as cur:
            cur.itersize = batch
            cur.execute("SELECT event::text FROM ticket_events ORDER BY number, id")
            count = 0
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                for (raw,) in rows:
                    yield orjson.loads(raw)
                count += len(rows)
                if progress is not None:
                    progress(count)
