"""The administration area of the store: the fleet registry (crews and vehicles), the admin
audit trail, crew shifts (kept where dispatch reads them), and ending a disabled user's sessions.

Fleet registry (the system of record for crews and vehicles; the city's ``crews`` layer only
seeds it: a crew or vehicle the registry does not know yet is added once, never overwritten):

- ``fleet:crews`` hash crew id → JSON ``{crew_id, crew_name, unit_id, station_id, skills: [...],
  vehicle_id | null, active, source: "city"|"admin", updated_at (epoch s), updated_by}``.
- ``fleet:vehicles`` hash vehicle id → JSON ``{vehicle_id, plate, kind, unit_id, active, source,
  updated_at, updated_by}``.
- ``fleet:assigned`` hash vehicle id → crew id: which crew holds a vehicle (one crew each).
- ``fleet:plates`` hash plate → vehicle id: plates are unique.
- ``fleet:rev`` integer, incremented by every change: readers (dispatch's crew registry, the live
  feed) reload when it moved. Pub/sub ``live:crews`` carries the new revision at each change.
- ``admin:audit`` stream (capped at about 100,000): one entry per administrative change, fields
  ``at`` (epoch s), ``by``, ``role``, ``action`` (``crew.create``, ``vehicle.update``,
  ``user.create``, ``shift.set``...), ``target`` and ``changes`` (JSON ``{field: [old, new]}``).
  Crew and vehicle writes append theirs in the same script as the change.

Elsewhere:

- Shifts live in ``center.store_dispatch`` (``crews:shift``, one JSON entry per crew: on_shift,
  ends_at, by, at); a crew without an entry is on shift. This module only presents them.
- Accounts (``user:{name}``, ``user:names``) and sessions (``session:{token}``) belong to
  ``center.store``; ``drop_sessions_of`` only scans the session keys that module defines, to log
  a disabled user out everywhere at once.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import orjson
import redis.asyncio as aioredis

from center.store_dispatch import DispatchStore

CREWS, VEHICLES, ASSIGNED, PLATES, REVISION = "fleet:crews", "fleet:vehicles", "fleet:assigned", "fleet:plates", "fleet:rev"
AUDIT = "admin:audit"
AUDIT_MAX = 100_000
LIVE_CREWS = "live:crews"

# Shared tail of the write scripts: bump the revision, append the audit entry, announce.
# ARGV[1..6]: at, by, role, action, target, changes JSON; ARGV[7]: audit maxlen; ARGV[8]: channel.
_AUDIT_TAIL = r"""
local rev = redis.call('INCR', KEYS[4])
local id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 'at', ARGV[1], 'by', ARGV[2],
  'role', ARGV[3], 'action', ARGV[4], 'target', ARGV[5], 'changes', ARGV[6])
redis.call('PUBLISH', ARGV[8], rev)
return {'ok', id, rev}
"""

# KEYS: crews, vehicles, assigned, revision, audit. ARGV[9..13]: crew id, the record as read
# ('' when new), the new record, its vehicle id ('' none), the vehicle id it had ('' none).
WRITE_CREW = r"""
local cur = redis.call('HGET', KEYS[1], ARGV[9])
if (cur or '') ~= ARGV[10] then return {'conflict'} end
local new_v, old_v = ARGV[12], ARGV[13]
if new_v ~= '' and new_v ~= old_v then
  local v = redis.call('HGET', KEYS[2], new_v)
  if not v then return {'unknown_vehicle', new_v} end
  if cjson.decode(v).active == false then return {'vehicle_inactive', new_v} end
  local holder = redis.call('HGET', KEYS[3], new_v)
  if holder and holder ~= ARGV[9] then return {'vehicle_assigned', holder} end
end
if old_v ~= '' and old_v ~= new_v and redis.call('HGET', KEYS[3], old_v) == ARGV[9] then
  redis.call('HDEL', KEYS[3], old_v)
end
if new_v ~= '' then redis.call('HSET', KEYS[3], new_v, ARGV[9]) end
redis.call('HSET', KEYS[1], ARGV[9], ARGV[11])
""" + _AUDIT_TAIL

# KEYS: vehicles, plates, assigned, revision, audit. ARGV[9..13]: vehicle id, the record as read
# ('' when new), the new record, its plate, the plate it had ('' for none); ARGV[14]: '1' when
# the change deactivates the vehicle (refused while a crew holds it).
WRITE_VEHICLE = r"""
local cur = redis.call('HGET', KEYS[1], ARGV[9])
if (cur or '') ~= ARGV[10] then return {'conflict'} end
if ARGV[14] == '1' then
  local holder = redis.call('HGET', KEYS[3], ARGV[9])
  if holder then return {'vehicle_assigned', holder} end
end
if ARGV[12] ~= ARGV[13] then
  local owner = ARGV[12] ~= '' and redis.call('HGET', KEYS[2], ARGV[12])
  if owner and owner ~= ARGV[9] then return {'plate_taken', owner} end
  if ARGV[13] ~= '' and redis.call('HGET', KEYS[2], ARGV[13]) == ARGV[9] then redis.call('HDEL', KEYS[2], ARGV[13]) end
  if ARGV[12] ~= '' then redis.call('HSET', KEYS[2], ARGV[12], ARGV[9]) end
end
redis.call('HSET', KEYS[1], ARGV[9], ARGV[11])
""" + _AUDIT_TAIL

# KEYS: crews, vehicles, assigned, plates, revision, audit. ARGV[1]: JSON list of items
# [crew id, crew JSON, crew JSON without vehicle, vehicle id or '', vehicle JSON or '', plate];
# ARGV[2]: at; ARGV[3]: audit maxlen; ARGV[4]: channel. Adds what is unknown; returns the ids added.
SEED = r"""
local added = {}
for _, item in ipairs(cjson.decode(ARGV[1])) do
  local cid, crew, bare, vid, vehicle, plate = item[1], item[2], item[3], item[4], item[5], item[6]
  if vid ~= '' and vehicle ~= '' and redis.call('HSETNX', KEYS[2], vid, vehicle) == 1 then
    if plate ~= '' then redis.call('HSETNX', KEYS[4], plate, vid) end
    table.insert(added, 'vehicle:' .. vid)
  end
  if redis.call('HEXISTS', KEYS[1], cid) == 0 then
    if vid ~= '' and redis.call('HSETNX', KEYS[3], vid, cid) == 1 then
      redis.call('HSET', KEYS[1], cid, crew)
    else
      redis.call('HSET', KEYS[1], cid, bare)
    end
    table.insert(added, 'crew:' .. cid)
  end
end
if #added > 0 then
  local rev = redis.call('INCR', KEYS[5])
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], '*', 'at', ARGV[2], 'by', 'system', 'role', 'system',
    'action', 'fleet.seed', 'target', 'city', 'changes', cjson.encode({added = added}))
  redis.call('PUBLISH', ARGV[4], rev)
end
return added
"""


class FleetRefused(Exception):
    """A fleet write the registry refused: ``code`` (``conflict``, ``unknown_vehicle``,
    ``vehicle_inactive``, ``vehicle_assigned``, ``plate_taken``) and the other party's id."""

    def __init__(self, code: str, other: str = "") -> None:
        super().__init__(f"{code} {other}".strip())
        self.code = code
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

    def argv(self) -> list[Any]:
        """The script arguments ARGV[1..8] of this entry."""
        return [repr(self.at), self.by, self.role, self.action, self.target,
                orjson.dumps(dict(self.changes)), AUDIT_MAX, LIVE_CREWS]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _shift_view(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    entry = entry or {}
    ends, at = entry.get("ends_at"), entry.get("at")
    return {"on_shift": bool(entry.get("on_shift", True)), "ends_at": None if ends is None else float(ends),
            "by": entry.get("by") or None, "at": None if at is None else float(at)}


def encode(record: Mapping[str, Any]) -> str:
    """A registry record as stored (keys sorted, so equal records are equal strings)."""
    return orjson.dumps(dict(record), option=orjson.OPT_SORT_KEYS).decode()


class FleetStore:
    """The crews and vehicles registry, its revision and the admin audit trail."""

    def __init__(self, client: aioredis.Redis):
        self.redis = client
        self._write_crew = client.register_script(WRITE_CREW)
        self._write_vehicle = client.register_script(WRITE_VEHICLE)
        self._seed = client.register_script(SEED)

    async def revision(self) -> int:
        """The registry's revision (0 before anything was stored)."""
        return int(await self.redis.get(REVISION) or 0)

    async def crews(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every crew: id → (raw record, decoded record)."""
        return {_text(k): (_text(v), orjson.loads(v)) for k, v in (await self.redis.hgetall(CREWS)).items()}

    async def vehicles(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every vehicle: id → (raw record, decoded record)."""
        return {_text(k): (_text(v), orjson.loads(v)) for k, v in (await self.redis.hgetall(VEHICLES)).items()}

    async def crew(self, crew_id: str) -> tuple[str, dict[str, Any]] | None:
        """One crew as (raw, decoded), or None."""
        raw = await self.redis.hget(CREWS, crew_id)
        return None if raw is None else (_text(raw), orjson.loads(raw))

    async def vehicle(self, vehicle_id: str) -> tuple[str, dict[str, Any]] | None:
        """One vehicle as (raw, decoded), or None."""
        raw = await self.redis.hget(VEHICLES, vehicle_id)
        return None if raw is None else (_text(raw), orjson.loads(raw))

    async def assignments(self) -> dict[str, str]:
        """vehicle id → the crew holding it."""
        return {_text(k): _text(v) for k, v in (await self.redis.hgetall(ASSIGNED)).items()}

    async def write_crew(self, crew_id: str, read: str, record: Mapping[str, Any], audit: Audit) -> int:
        """Store a crew if it is still as ``read`` ('' for a new one), holding its vehicle, with its
        audit entry; returns the new revision; FleetRefused when the registry refuses."""
        before = orjson.loads(read).get("vehicle_id") if read else None
        result = await self._write_crew(keys=[CREWS, VEHICLES, ASSIGNED, REVISION, AUDIT], args=[
            *audit.argv(), crew_id, read, encode(record), record.get("vehicle_id") or "", before or ""])
        return self._outcome(result)

    async def write_vehicle(self, vehicle_id: str, read: str, record: Mapping[str, Any], audit: Audit) -> int:
        """Store a vehicle if it is still as ``read`` ('' for a new one), keeping plates unique and
        refusing to deactivate a vehicle a crew holds; returns the new revision."""
        before = orjson.loads(read) if read else {}
        deactivating = bool(before.get("active", True)) and not record.get("active", True) if read else False
        result = await self._write_vehicle(keys=[VEHICLES, PLATES, ASSIGNED, REVISION, AUDIT], args=[
            *audit.argv(), vehicle_id, read, encode(record), record["plate"], before.get("plate", ""),
            "1" if deactivating else "0"])
        return self._outcome(result)

    async def register_bare_vehicles(self, ids: Iterable[str], *, by: str, at: float) -> list[str]:
        """Register the ids the registry does not know yet as plain repair vehicles (no plate, no
        unit), each with its audit event by ``by``: for test and bench fleets, whose vehicles the
        ingest must take. Returns the ids added."""
        known = set(await self.vehicles())
        new = [vid for vid in dict.fromkeys(ids) if vid not in known]
        for start in range(0, len(new), 500):  # a few hundred script calls at a time
            await asyncio.gather(*(self.write_vehicle(
                vid, "", {"vehicle_id": vid, "plate": "", "kind": "repair", "unit_id": None, "active": True,
                          "source": "admin", "updated_at": at, "updated_by": by},
                Audit(by, "admin", "vehicle.create", vid, {}, at)) for vid in new[start:start + 500]))
        return new

    @staticmethod
    def _outcome(result: Sequence[Any]) -> int:
        status = _text(result[0])
        if status != "ok":
            raise FleetRefused(status, _text(result[1]) if len(result) > 1 else "")
        return int(result[2])

    async def seed(self, items: Iterable[tuple[Mapping[str, Any], Mapping[str, Any] | None]], at: float) -> list[str]:
        """Add the (crew, vehicle) records the registry does not know yet (a crew keeps its vehicle
        only when no other crew holds it); returns the ids added (``crew:C01``, ``vehicle:V01``)."""
        packed = []
        for crew, vehicle in items:
            bare = {**crew, "vehicle_id": None}
            packed.append([crew["crew_id"], encode(crew), encode(bare), (vehicle or {}).get("vehicle_id") or "",
                           encode(vehicle) if vehicle else "", (vehicle or {}).get("plate") or ""])
        if not packed:
            return []
        added = await self._seed(keys=[CREWS, VEHICLES, ASSIGNED, PLATES, REVISION, AUDIT],
                                 args=[orjson.dumps(packed), repr(at), AUDIT_MAX, LIVE_CREWS])
        return [_text(a) for a in added]

    async def audit(self, entry: Audit) -> str:
        """Append an audit entry for a change stored elsewhere (accounts, shifts); returns its id."""
        args = entry.argv()
        return _text(await self.redis.xadd(AUDIT, {"at": args[0], "by": entry.by, "role": entry.role,
                                                   "action": entry.action, "target": entry.target,
                                                   "changes": args[5]}, maxlen=AUDIT_MAX, approximate=True))

    async def audit_log(self, count: int = 100, before: str | None = None,
                        target: str | None = None) -> list[dict[str, Any]]:
        """The newest audit entries first (older than stream id ``before``; only ``target``'s)."""
        top = "+" if not before else f"({before}"
        out: list[dict[str, Any]] = []
        while len(out) < count:
            entries = await self.redis.xrevrange(AUDIT, max=top, min="-", count=max(count, 100))
            for entry_id, fields in entries:
                row = {_text(k): _text(v) for k, v in fields.items()}
                if target is None or row.get("target") == target:
                    out.append({"id": _text(entry_id), "at": float(row["at"]), "by": row.get("by", ""),
                                "role": row.get("role", ""), "action": row.get("action", ""),
                                "target": row.get("target", ""), "changes": orjson.loads(row.get("changes") or "{}")})
            if len(entries) < max(count, 100):
                break
            top = f"({_text(entries[-1][0])}"
        return out[:count]


class AdminStore:
    """Crew shift flags (through the dispatch store) and session clean-up."""

    def __init__(self, client: aioredis.Redis):
        self.redis = client
        self.dispatch = DispatchStore(client)

    async def shifts(self, crew_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Shift state per crew id: ``{on_shift, ends_at, by, at}`` (on shift when never set)."""
        entries = await self.dispatch.shifts()
        return {cid: _shift_view(entries.get(cid)) for cid in crew_ids}

    async def set_shift(self, crew_id: str, on_shift: bool, *, by: str, at: float,
                        ends_at: float | None = None) -> dict[str, Any]:
        """Put a crew on or off shift (``ends_at``: when the shift ends, UTC epoch s); return the state."""
        def utc(epoch: float | None) -> datetime | None:
            return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)
        await self.dispatch.set_shift(crew_id, on_shift, utc(ends_at), by, utc(at))
        return _shift_view({"on_shift": on_shift, "ends_at": ends_at, "by": by, "at": at})

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
