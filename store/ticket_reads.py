"""The reads of the tickets area (PostgreSQL): one ticket or many, the audit trail, the reads of
a batch of creations in one round trip (repeat candidates near a point and by phone, a supply
area's incidents, the numbers drawn), the dispatcher's queue and pages in queue order, named
listings, counts, and incidents. Mixed into `store.tickets.TicketStore`."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from store.coalesce import Coalescer
from store.db import Database
from store.ticket_records import CreateReads, TicketRecord, incident_from_dict
from store.ticket_writes import draw_numbers
from command.coordinates import CoordinateError, geo_pair_ok
from command.errors import TicketNotFound
from command.grouping import Incident
from command.ticket_model import State

EARTH_RADIUS_M = 6372797.560856  # the sphere of Redis's GEO distances, kept for the repeat radius
NUMBER_ORDER = 'number COLLATE "C"'
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


class TicketReads:
    """The reads of `store.tickets.TicketStore` (a mixin: the store builds the state)."""

    db: Database
    _read_batches: Coalescer[_ReadRequest, CreateReads]

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
                last = await draw_numbers(conn, "ticket", day, len(indexes))
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

    async def worked_between(self, crew_id: str, since: datetime, until: datetime,
                             limit: int = 200) -> list[TicketRecord]:
        """A crew's tickets that were open at some time between since and until (created before
        until, not resolved or closed before since), oldest first, at most `limit`
        (index tickets_crew_created)."""
        rows = await self.db.fetch(
            "SELECT record::text AS r FROM tickets WHERE crew_id = %s AND created_at <= %s"
            " AND coalesce(resolved_at, closed_at, 'infinity') >= %s ORDER BY created_at LIMIT %s",
            (crew_id, until, since, limit))
        return [TicketRecord.from_json(row["r"]) for row in rows]

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


def _check_geo(lon: float | None, lat: float | None) -> None:
    """CoordinateError for a pair no point can be (a read that slipped past the boundary)."""
    if lon is not None and lat is not None and not geo_pair_ok(float(lon), float(lat)):
        raise CoordinateError("lon", f"invalid longitude,latitude pair {lon},{lat}")
