"""The administration area of the store, in PostgreSQL: the fleet registry (crews and vehicles),
crew shifts, the admin audit trail, and audited account changes; in Redis only the announcement
of a registry change and the ending of a disabled user's sessions.

Tables (store/migrations/0002_fleet.sql), owned here:

- ``vehicles`` (vehicle_id, plate, kind, unit_id, active, source, version, updated_at/by) and
  ``crews`` (crew_id, crew_name, unit_id, station_id, skills, vehicle_id, active, source,
  version, updated_at/by): the system of record for the fleet. The city's ``crews`` layer only
  seeds it: a crew or vehicle the registry does not know yet is added once, never overwritten.
  The database enforces the rules: a unique plate (``vehicles_plate``), one crew per vehicle
  (``crews_one_per_vehicle``), a held vehicle known and active (``crews_vehicle_known``,
  ``crews_vehicle_active``, which also refuses deactivating a held vehicle); refusals come back
  as FleetRefused codes. A write names the version it read (optimistic concurrency).
- ``crew_shifts`` (crew_id, on_shift, ends_at, set_by, set_at); a crew without a row is on shift.
- ``fleet_revision``: one counter, incremented in the transaction of every crew or vehicle
  change; readers (the ingest every 2 s, dispatch's crew registry, the live feed) reload when it
  moved. After the COMMIT the new revision is published on the Redis channel ``live:crews``.
- ``admin_audit`` (id, at, by, role, action, target, changes): one row per administrative change
  (``crew.create``, ``vehicle.update``, ``user.create``, ``shift.set``, ``device.issue``...),
  never trimmed, written in the transaction of the change it records.

Accounts (``accounts``) belong to ``store.accounts``; ``AdminStore.put_account`` writes
one with its audit row. Sessions (``session:*`` in Redis) belong to ``store.login``;
``AdminStore.drop_sessions_of`` only scans them, to log a disabled user out everywhere at once.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

import orjson
import psycopg
from psycopg.types.json import Jsonb
from redis.exceptions import RedisError

from command.errors import Refused
from store import accounts as store_accounts
from store.accounts import NoDatabase
from store.db import Database

log = logging.getLogger(__name__)

LIVE_CREWS = "live:crews"
VEHICLE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # the whole id (fullmatch); "." and ".." are refused too

_VEHICLE_COLUMNS = "vehicle_id, plate, kind, unit_id, active, source, version, updated_at, updated_by"
_CREW_COLUMNS = ("crew_id, crew_name, unit_id, station_id, skills, vehicle_id, active, source, version,"
                 " updated_at, updated_by")
_BUMP = ("INSERT INTO fleet_revision (singleton, rev) VALUES (true, 1)"
         " ON CONFLICT (singleton) DO UPDATE SET rev = fleet_revision.rev + 1 RETURNING rev")
_AUDIT = "INSERT INTO admin_audit (at, by, role, action, target, changes) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id"


def valid_vehicle_id(vehicle_id: str) -> bool:
    """Whether an id follows the vehicle id rule: 1 to 64 of ``A-Z a-z 0-9 _ . : -``, and not
    ``.`` or ``..`` (an id names keys, topics and paths)."""
    return VEHICLE_ID.fullmatch(vehicle_id) is not None and vehicle_id != "." and vehicle_id != ".."



# refusal code → (HTTP status, message, the detail field naming the other party)
_REFUSALS = {"unknown_vehicle": (400, "no such vehicle", "vehicle_id"),
             "vehicle_inactive": (409, "the vehicle is deactivated", "vehicle_id"),
             "vehicle_assigned": (409, "the vehicle is assigned to another crew", "crew_id"),
             "plate_taken": (409, "another vehicle has this plate", "vehicle_id"),
             "conflict": (409, "changed meanwhile, try again", "")}


class FleetRefused(Refused):
    """A fleet write the registry refused: ``code`` (``conflict``, ``unknown_vehicle``,
    ``vehicle_inactive``, ``vehicle_assigned``, ``plate_taken``) and the other party's id
    (``other``, also in the details under ``vehicle_id`` or ``crew_id``)."""

    def __init__(self, code: str, other: str = "") -> None:
        status, text, field = _REFUSALS[code]
        super().__init__(status, code, f"{text}: {other}" if other else text,
                         **({field: other} if field and other else {}))
        self.other = other


@dataclass(frozen=True)
class Audit:
    """Who changed what, when (UTC epoch s): one entry of the admin audit trail."""

    by: str
    role: str
    action: str
    target: str
    changes: Mapping[str, Any]
    at: float


def utc(epoch: float | None) -> datetime | None:
    """An epoch time as an aware UTC datetime (None stays None)."""
    return None if epoch is None else datetime.fromtimestamp(float(epoch), timezone.utc)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


async def write_audit(conn: psycopg.AsyncConnection, entry: Audit) -> str:
    """Insert an audit row on an open connection (the change's transaction); its id."""
    cur = await conn.execute(_AUDIT, (utc(entry.at), entry.by, entry.role, entry.action, entry.target,
                                      Jsonb(dict(entry.changes))))
    return str((await cur.fetchone())[0])


def vehicle_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``vehicles`` row as the registry's vehicle record."""
    return {"vehicle_id": row["vehicle_id"], "plate": row["plate"], "kind": row["kind"], "unit_id": row["unit_id"],
            "active": row["active"], "source": row["source"], "updated_at": _epoch(row["updated_at"]),
            "updated_by": row["updated_by"]}


def crew_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``crews`` row as the registry's crew record."""
    return {"crew_id": row["crew_id"], "crew_name": row["crew_name"], "unit_id": row["unit_id"],
            "station_id": row["station_id"], "skills": list(row["skills"] or ()), "vehicle_id": row["vehicle_id"],
            "active": row["active"], "source": row["source"], "updated_at": _epoch(row["updated_at"]),
            "updated_by": row["updated_by"]}


def _crew_params(crew_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"crew_id": crew_id, "crew_name": record["crew_name"], "unit_id": record.get("unit_id"),
            "station_id": record.get("station_id"), "skills": list(record.get("skills") or ()),
            "vehicle_id": record.get("vehicle_id") or None, "active": bool(record.get("active", True)),
            "source": record.get("source") or "admin", "updated_at": utc(record.get("updated_at")),
            "updated_by": record.get("updated_by") or ""}


def _vehicle_params(vehicle_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"vehicle_id": vehicle_id, "plate": record.get("plate") or "", "kind": record.get("kind") or "repair",
            "unit_id": record.get("unit_id"), "active": bool(record.get("active", True)),
            "source": record.get("source") or "admin", "updated_at": utc(record.get("updated_at")),
            "updated_by": record.get("updated_by") or ""}


_INSERT_CREW = ("INSERT INTO crews (crew_id, crew_name, unit_id, station_id, skills, vehicle_id, active, source,"
                " updated_at, updated_by) VALUES (%(crew_id)s, %(crew_name)s, %(unit_id)s, %(station_id)s,"
                " %(skills)s, %(vehicle_id)s, %(active)s, %(source)s, %(updated_at)s, %(updated_by)s)")
_UPDATE_CREW = ("UPDATE crews SET crew_name = %(crew_name)s, unit_id = %(unit_id)s, station_id = %(station_id)s,"
                " skills = %(skills)s, vehicle_id = %(vehicle_id)s, active = %(active)s, source = %(source)s,"
                " updated_at = %(updated_at)s, updated_by = %(updated_by)s, version = version + 1"
                " WHERE crew_id = %(crew_id)s AND version = %(version)s")
# a seeded crew keeps its city vehicle only when that is active and free; an existing crew is kept
_SEED_CREW = ("INSERT INTO crews (crew_id, crew_name, unit_id, station_id, skills, vehicle_id, active, source,"
              " updated_at, updated_by) VALUES (%(crew_id)s, %(crew_name)s, %(unit_id)s, %(station_id)s, %(skills)s,"
              " (SELECT v.vehicle_id FROM vehicles v WHERE v.vehicle_id = %(vehicle_id)s AND v.active"
              "  AND NOT EXISTS (SELECT 1 FROM crews c WHERE c.vehicle_id = v.vehicle_id)),"
              " %(active)s, %(source)s, %(updated_at)s, %(updated_by)s) ON CONFLICT DO NOTHING")
_INSERT_VEHICLE = ("INSERT INTO vehicles (vehicle_id, plate, kind, unit_id, active, source, updated_at, updated_by)"
                   " VALUES (%(vehicle_id)s, %(plate)s, %(kind)s, %(unit_id)s, %(active)s, %(source)s,"
                   " %(updated_at)s, %(updated_by)s)")
_UPDATE_VEHICLE = ("UPDATE vehicles SET plate = %(plate)s, kind = %(kind)s, unit_id = %(unit_id)s,"
                   " active = %(active)s, source = %(source)s, updated_at = %(updated_at)s,"
                   " updated_by = %(updated_by)s, version = version + 1"
                   " WHERE vehicle_id = %(vehicle_id)s AND version = %(version)s")


class FleetStore:
    """The crews and vehicles registry, its revision, crew shifts and the admin audit trail."""

    def __init__(self, db: Database | None, redis: Any = None) -> None:
        self.db = db if db is not None else NoDatabase("the fleet registry")
        self.redis = redis

    async def revision(self) -> int:
        """The registry's revision (0 before anything was stored)."""
        row = await self.db.fetchone("SELECT rev FROM fleet_revision")
        return 0 if row is None else int(row["rev"])

    async def crews(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every crew: id → (version read, record)."""
        rows = await self.db.fetch(f"SELECT {_CREW_COLUMNS} FROM crews ORDER BY crew_id")
        return {r["crew_id"]: (str(r["version"]), crew_record(r)) for r in rows}

    async def vehicles(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every vehicle: id → (version read, record)."""
        rows = await self.db.fetch(f"SELECT {_VEHICLE_COLUMNS} FROM vehicles ORDER BY vehicle_id")
        return {r["vehicle_id"]: (str(r["version"]), vehicle_record(r)) for r in rows}

    async def vehicle_ids(self) -> set[str]:
        """The ids of every registered vehicle."""
        return {r["vehicle_id"] for r in await self.db.fetch("SELECT vehicle_id FROM vehicles")}

    async def crew(self, crew_id: str) -> tuple[str, dict[str, Any]] | None:
        """One crew as (version read, record), or None."""
        row = await self.db.fetchone(f"SELECT {_CREW_COLUMNS} FROM crews WHERE crew_id = %s", (crew_id,))
        return None if row is None else (str(row["version"]), crew_record(row))

    async def vehicle(self, vehicle_id: str) -> tuple[str, dict[str, Any]] | None:
        """One vehicle as (version read, record), or None."""
        row = await self.db.fetchone(f"SELECT {_VEHICLE_COLUMNS} FROM vehicles WHERE vehicle_id = %s", (vehicle_id,))
        return None if row is None else (str(row["version"]), vehicle_record(row))

    async def assignments(self) -> dict[str, str]:
        """vehicle id → the crew holding it."""
        rows = await self.db.fetch("SELECT vehicle_id, crew_id FROM crews WHERE vehicle_id IS NOT NULL")
        return {r["vehicle_id"]: r["crew_id"] for r in rows}

    async def write_crew(self, crew_id: str, read: str, record: Mapping[str, Any], audit: Audit, *,
                         members: Mapping[str, str] | None = None) -> int:
        """Store a crew if it is still at the version ``read`` ('' for a new one), holding its
        vehicle, with its audit entry, and move the accounts of ``members`` (name → crew id, ''
        for none) in the same transaction; returns the new revision; FleetRefused when refused."""
        params = _crew_params(crew_id, record)
        try:
            async with self.db.transaction() as conn:
                if read:
                    cur = await conn.execute(_UPDATE_CREW, {**params, "version": int(read)})
                else:
                    cur = await conn.execute(_INSERT_CREW + " ON CONFLICT (crew_id) DO NOTHING", params)
                if cur.rowcount != 1:
                    raise FleetRefused("conflict")
                for name, moved_to in (members or {}).items():
                    await store_accounts.upsert(conn, name, {"crew_id": moved_to})
                revision = await self._changed(conn, audit)
        except psycopg.errors.IntegrityError as exc:
            raise await self._crew_refusal(exc, params["vehicle_id"] or "") from None
        await self._announce(revision)
        return revision

    async def write_vehicle(self, vehicle_id: str, read: str, record: Mapping[str, Any], audit: Audit) -> int:
        """Store a vehicle if it is still at the version ``read`` ('' for a new one); the database
        keeps plates unique and refuses to deactivate a vehicle a crew holds; the new revision."""
        params = _vehicle_params(vehicle_id, record)
        try:
            async with self.db.transaction() as conn:
                if read:
                    cur = await conn.execute(_UPDATE_VEHICLE, {**params, "version": int(read)})
                else:
                    cur = await conn.execute(_INSERT_VEHICLE + " ON CONFLICT (vehicle_id) DO NOTHING", params)
                if cur.rowcount != 1:
                    raise FleetRefused("conflict")
                revision = await self._changed(conn, audit)
        except psycopg.errors.IntegrityError as exc:
            raise await self._vehicle_refusal(exc, vehicle_id, params["plate"]) from None
        await self._announce(revision)
        return revision

    async def _changed(self, conn: psycopg.AsyncConnection, audit: Audit | None) -> int:
        cur = await conn.execute(_BUMP)
        revision = int((await cur.fetchone())[0])
        if audit is not None:
            await write_audit(conn, audit)
        return revision

    async def _announce(self, revision: int) -> None:
        """Publish the committed revision on ``live:crews`` (readers also poll the revision)."""
        if self.redis is None:
            return
        try:
            await self.redis.publish(LIVE_CREWS, revision)
        except (RedisError, OSError) as exc:
            log.warning("fleet: revision %d committed but not announced on %s: %s", revision, LIVE_CREWS, exc)

    async def _crew_refusal(self, exc: psycopg.errors.IntegrityError, vehicle_id: str) -> FleetRefused:
        constraint = exc.diag.constraint_name or ""
        if constraint == "crews_one_per_vehicle":
            holder = await self.db.fetchone("SELECT crew_id FROM crews WHERE vehicle_id = %s", (vehicle_id,))
            return FleetRefused("vehicle_assigned", holder["crew_id"] if holder else "")
        if constraint in ("crews_vehicle_known", "crews_vehicle_active"):
            found = await self.vehicle(vehicle_id)
            return FleetRefused("unknown_vehicle" if found is None else "vehicle_inactive", vehicle_id)
        if constraint == "crews_pkey":
            return FleetRefused("conflict")
        raise exc

    async def _vehicle_refusal(self, exc: psycopg.errors.IntegrityError, vehicle_id: str, plate: str) -> FleetRefused:
        constraint = exc.diag.constraint_name or ""
        if constraint == "vehicles_plate":
            owner = await self.db.fetchone("SELECT vehicle_id FROM vehicles WHERE plate = %s", (plate,))
            return FleetRefused("plate_taken", owner["vehicle_id"] if owner else "")
        if constraint == "crews_vehicle_active":
            holder = await self.db.fetchone("SELECT crew_id FROM crews WHERE vehicle_id = %s", (vehicle_id,))
            return FleetRefused("vehicle_assigned", holder["crew_id"] if holder else "")
        if constraint == "vehicles_pkey":
            return FleetRefused("conflict")
        raise exc

    async def register_bare_vehicles(self, ids: Iterable[str], *, by: str, at: float) -> list[str]:
        """Register the ids the registry does not know yet as plain repair vehicles (no plate, no
        unit), each with its audit row by ``by``, in one transaction: for test and bench fleets,
        whose vehicles the ingest must take. Returns the ids added."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO vehicles (vehicle_id, kind, source, updated_at, updated_by)"
                " SELECT id, 'repair', 'admin', %s, %s FROM unnest(%s::text[]) AS id"
                " ON CONFLICT (vehicle_id) DO NOTHING RETURNING vehicle_id", (utc(at), by, wanted))
            added = {r[0] for r in await cur.fetchall()}
            if not added:
                return []
            await conn.execute(
                "INSERT INTO admin_audit (at, by, role, action, target, changes)"
                " SELECT %s, %s, 'admin', 'vehicle.create', 'vehicle:' || id, '{}'::jsonb"
                " FROM unnest(%s::text[]) AS id", (utc(at), by, [v for v in wanted if v in added]))
            revision = await self._changed(conn, None)
        await self._announce(revision)
        return [v for v in wanted if v in added]

    async def seed(self, items: Iterable[tuple[Mapping[str, Any], Mapping[str, Any] | None]], at: float) -> list[str]:
        """Add the (crew, vehicle) records the registry does not know yet, in one transaction (a
        crew keeps its vehicle only when that is active and no other crew holds it); returns the
        ids added (``crew:C01``, ``vehicle:V01``)."""
        items = list(items)
        if not items:
            return []
        added: list[str] = []
        async with self.db.transaction() as conn:
            for crew, vehicle in items:
                if vehicle:
                    cur = await conn.execute(_INSERT_VEHICLE + " ON CONFLICT DO NOTHING",
                                             _vehicle_params(vehicle["vehicle_id"], vehicle))
                    if cur.rowcount == 1:
                        added.append(f"vehicle:{vehicle['vehicle_id']}")
                params = _crew_params(crew["crew_id"], crew)
                cur = await conn.execute(_SEED_CREW, params)
                if cur.rowcount == 1:
                    added.append(f"crew:{crew['crew_id']}")
            if not added:
                return []
            revision = await self._changed(conn, Audit("system", "system", "fleet.seed", "city", {"added": added}, at))
        await self._announce(revision)
        return added

    async def audit(self, entry: Audit) -> str:
        """Record a change stored outside PostgreSQL (device credentials); returns its id."""
        async with self.db.transaction() as conn:
            return await write_audit(conn, entry)

    async def audit_log(self, count: int = 100, before: str | None = None,
                        target: str | None = None) -> list[dict[str, Any]]:
        """The newest audit entries first (with an id below ``before``; only ``target``'s)."""
        rows = await self.db.fetch(
            "SELECT id, at, by, role, action, target, changes FROM admin_audit"
            " WHERE (%(before)s::bigint IS NULL OR id < %(before)s::bigint)"
            " AND (%(target)s::text IS NULL OR target = %(target)s::text) ORDER BY id DESC LIMIT %(count)s",
            {"before": None if before is None else int(before), "target": target, "count": count})
        return [{"id": str(r["id"]), "at": r["at"].timestamp(), "by": r["by"], "role": r["role"],
                 "action": r["action"], "target": r["target"], "changes": r["changes"]} for r in rows]

    # shifts -------------------------------------------------------------------------------------
    async def shifts(self) -> dict[str, dict[str, Any]]:
        """Shift entries by crew id, ``{on_shift, ends_at, by, at}`` (epoch s); crews without
        one are on shift."""
        rows = await self.db.fetch("SELECT crew_id, on_shift, ends_at, set_by, set_at FROM crew_shifts")
        return {r["crew_id"]: {"on_shift": r["on_shift"], "ends_at": _epoch(r["ends_at"]), "by": r["set_by"],
                               "at": _epoch(r["set_at"])} for r in rows}

    async def set_shift(self, crew_id: str, on_shift: bool, ends_at: datetime | None, by: str, at: datetime,
                        *, audit: Callable[[dict[str, Any], dict[str, Any]], Audit] | None = None,
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Put a crew on or off shift (optionally until ``ends_at``); with ``audit`` (a function of
        the shift views before and after) its audit row in the same transaction. Returns the
        views (before, after)."""
        async with self.db.transaction() as conn:
            cur = await conn.execute("SELECT on_shift, ends_at, set_by, set_at FROM crew_shifts"
                                     " WHERE crew_id = %s FOR UPDATE", (crew_id,))
            row = await cur.fetchone()
            before = shift_view(None if row is None else {"on_shift": row[0], "ends_at": _epoch(row[1]),
                                                          "by": row[2], "at": _epoch(row[3])})
            await conn.execute(
                "INSERT INTO crew_shifts (crew_id, on_shift, ends_at, set_by, set_at) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (crew_id) DO UPDATE SET on_shift = EXCLUDED.on_shift, ends_at = EXCLUDED.ends_at,"
                " set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at", (crew_id, bool(on_shift), ends_at, by, at))
            after = shift_view({"on_shift": on_shift, "ends_at": _epoch(ends_at), "by": by, "at": _epoch(at)})
            if audit is not None:
                await write_audit(conn, audit(before, after))
        return before, after


def shift_view(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """A shift entry as shown: ``{on_shift, ends_at, by, at}`` (on shift when never set)."""
    entry = entry or {}
    ends, at = entry.get("ends_at"), entry.get("at")
    return {"on_shift": bool(entry.get("on_shift", True)), "ends_at": None if ends is None else float(ends),
            "by": entry.get("by") or None, "at": None if at is None else float(at)}


class AdminStore:
    """Audited shift and account changes (PostgreSQL) and session clean-up (Redis)."""

    def __init__(self, db: Database, redis: Any) -> None:
        self.fleet = FleetStore(db, redis)
        self.db = self.fleet.db
        self.redis = redis

    async def shifts(self, crew_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Shift state per crew id: ``{on_shift, ends_at, by, at}`` (on shift when never set)."""
        entries = await self.fleet.shifts()
        return {cid: shift_view(entries.get(cid)) for cid in crew_ids}

    async def set_shift(self, crew_id: str, on_shift: bool, *, by: str, at: float, ends_at: float | None = None,
                        audit: Callable[[dict[str, Any], dict[str, Any]], Audit] | None = None) -> dict[str, Any]:
        """Put a crew on or off shift (``ends_at``: when the shift ends, UTC epoch s), with the
        audit row ``audit`` makes of the views before and after; return the new state."""
        _, after = await self.fleet.set_shift(crew_id, on_shift, utc(ends_at), by, utc(at), audit=audit)
        return after

    async def put_account(self, name: str, fields: Mapping[str, Any], audit: Audit, *, only_new: bool = False) -> bool:
        """Create or change an account with its audit row in one transaction; with only_new,
        False (and nothing written) when it exists."""
        async with self.db.transaction() as conn:
            if not await store_accounts.upsert(conn, name, fields, only_new=only_new):
                return False
            await write_audit(conn, audit)
        return True

    async def drop_sessions_of(self, name: str) -> int:
        """End every session of a user (scans ``session:*``); return how many were ended."""
        dropped = 0
        async for key in self.redis.scan_iter(match="session:*", count=500):
            raw = await self.redis.get(key)
            if raw is None:
                continue
            try:
                owner = orjson.loads(raw).get("name")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if owner == name:
                dropped += await self.redis.delete(key)
        return dropped
