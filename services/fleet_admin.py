"""Fleet administration: the rules of crews (name, unit, station, skills, vehicle, members,
active), vehicles (plate, kind, unit, active), shifts and the account fields that tie a user to a
crew or a unit, over the fleet registry (``store.fleet``, PostgreSQL).

What may change when: a crew id or vehicle id is taken once; deactivating a crew releases its
vehicle and is refused while the crew has tickets in the field; deactivating a vehicle a crew
holds, a plate another vehicle has or a vehicle another crew holds is refused by the registry
(``store.fleet.FleetRefused``). Every change is written with its audit entry (who, when, what)
in one transaction, retried when the record changed between its read and its write. Moving an
account in or out of a crew ends its sessions (the crew is part of the session).

The checks of one request's fields are pure functions (``crew_fields``, ``vehicle_fields``,
``role_fields``, ``member_moves``, ``changes_between``); ``FleetAdmin`` reads what they need and
writes. Refusals are domain errors (``command.errors``): the web's one ``write_error`` answers them.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from command import accounts
from command.errors import NotFound, Refused
from command.ticket_model import Category
from services.crews import VEHICLE_KINDS, crews_from_city, field_tickets, iso_utc, normalize_plate, seed_items
from store.accounts import AccountStore
from store.fleet import AdminStore, Audit, FleetRefused, FleetStore, valid_vehicle_id
from store.live import Store
from store.tickets import TicketStore
from store.units import UnitStore

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MIN_PASSWORD = 8
CATEGORIES = tuple(c.value for c in Category)
RETRIES = 3
Record = dict[str, Any]


def invalid(field: str, message: str) -> Refused:
    """A 400 ``validation_error`` naming the field."""
    return Refused(400, "validation_error", message, field=field)


@dataclass(frozen=True)
class Admin:
    """Who makes a change (an account name and its role) and when (UTC epoch s)."""

    name: str
    role: str
    at: float

    def audit(self, action: str, target: str, changes: Mapping[str, Any]) -> Audit:
        """The audit entry of this change."""
        return Audit(self.name, self.role, action, target, changes, self.at)


def changes_between(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` of the fields that differ (bookkeeping fields left out)."""
    skip = {"updated_at", "updated_by", "source"}
    return {k: [old.get(k), v] for k, v in new.items() if k not in skip and old.get(k) != v}


def check_flag(body: Mapping[str, Any], name: str) -> bool | None:
    """An optional true/false field of a request body (None when absent)."""
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(name, f"{name} must be true or false")
    return value


def reference(body: Mapping[str, Any], name: str, current: str | None, known: Collection[str], kind: str, *,
              required: bool) -> str:
    """A unit or station id from the body: one of ``known`` when the city lists them, else a plain
    id; the current value when the body has none."""
    if name not in body and current:
        return current
    value = body.get(name)
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not ID_RE.match(value) or (known and value not in known):
        raise invalid(name, f"{name} must be the id of a known {kind}")
    return value


def crew_fields(body: Mapping[str, Any], current: Mapping[str, Any], *, units: Collection[str] = (),
                stations: Collection[str] = ()) -> Record:
    """Validated name, unit, station, skills and vehicle of a crew (current values as defaults)."""
    name = body.get("crew_name", current.get("crew_name"))
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 50:
        raise invalid("crew_name", "crew_name must be 1-50 characters")
    skills = body.get("skills", current.get("skills"))
    if isinstance(skills, str):
        skills = [s for s in skills.split(",") if s]
    if not isinstance(skills, list) or not skills or any(s not in CATEGORIES for s in skills):
        raise invalid("skills", f"skills must be a non-empty list of {', '.join(CATEGORIES)}")
    vehicle_id = body.get("vehicle_id", current.get("vehicle_id")) or None
    if vehicle_id is not None and (not isinstance(vehicle_id, str) or not valid_vehicle_id(vehicle_id)):
        raise invalid("vehicle_id", "vehicle_id must be a vehicle id or null")
    return {"crew_name": name.strip(),
            "unit_id": reference(body, "unit_id", current.get("unit_id"), units, "unit", required=True),
            "station_id": reference(body, "station_id", current.get("station_id"), stations, "station",
                                    required=False),
            "skills": sorted(set(skills)), "vehicle_id": vehicle_id}


def crew_update(current: Record | None, crew_id: str, body: Mapping[str, Any], active: bool | None, by: Admin,
                **known: Collection[str]) -> Record:
    """The crew record a change makes of the current one: 404 without one; a deactivated crew
    holds no vehicle."""
    if current is None:
        raise NotFound("crew_not_found", f"no crew {crew_id}")
    fields = crew_fields(body, current, **known)
    now_active = current.get("active", True) if active is None else active
    if not now_active:
        fields["vehicle_id"] = None
    return {**current, **fields, "active": now_active, "updated_at": by.at, "updated_by": by.name}


def vehicle_fields(body: Mapping[str, Any], current: Mapping[str, Any], *, units: Collection[str] = ()) -> Record:
    """Validated plate (normalised), kind and unit of a vehicle (current values as defaults)."""
    plate = normalize_plate(body.get("plate")) if "plate" in body or not current else current.get("plate", "")
    if plate is None:
        raise invalid("plate", "plate must be a licence plate such as 鲁G·U1632")
    kind = body.get("kind", current.get("kind"))
    if kind not in VEHICLE_KINDS:
        raise invalid("kind", f"kind must be one of {', '.join(VEHICLE_KINDS)}")
    return {"plate": plate, "kind": kind,
            "unit_id": reference(body, "unit_id", current.get("unit_id"), units, "unit", required=True)}


def new_record(current: Record | None, code: str, what: str, fields: Record, by: Admin) -> Record:
    """A record to create: 409 ``code`` when one exists already."""
    if current is not None:
        raise Refused(409, code, f"{what} already exists")
    return {**fields, "active": True, "source": "admin", "updated_at": by.at, "updated_by": by.name}


def member_names(body: Mapping[str, Any]) -> list[str] | None:
    """The ``members`` of a crew request: at most 50 user names (None when absent)."""
    members = body.get("members")
    if members is None:
        return None
    if not isinstance(members, list) or len(members) > 50 or not all(isinstance(m, str) for m in members):
        raise invalid("members", "members must be a list of at most 50 user names")
    return sorted(set(members))


def member_moves(crew_id: str, wanted: list[str] | None, had: list[str]) -> dict[str, str]:
    """The account moves that make ``wanted`` the crew's members: name → crew id ('' out)."""
    if wanted is None:
        return {}
    return {name: crew_id if name in wanted else "" for name in sorted(set(wanted) ^ set(had))}


def role_fields(body: Mapping[str, Any], current: Mapping[str, str] | None, *, crews: Collection[str],
                unit_active: bool | None) -> dict[str, str]:
    """Validated role, display, crew_id and unit_id of an account (current values as defaults):
    a crew member names a known crew (any id when none are known), a unit's liaison an active
    unit (``unit_active``: the named unit's state, None when unknown)."""
    current = current or {}
    role = body.get("role", current.get("role"))
    if role not in accounts.ROLES:
        raise invalid("role", f"role must be one of {', '.join(accounts.ROLES)}")
    display = body.get("display", current.get("display", ""))
    if not isinstance(display, str) or len(display) > 50:
        raise invalid("display", "display must be a string of at most 50 characters")
    crew_id = body.get("crew_id", current.get("crew_id") or None) or None
    if role != "crew":
        crew_id = None
    elif not isinstance(crew_id, str) or (crews and crew_id not in crews):
        raise invalid("crew_id", "a crew member needs the crew_id of a known crew")
    unit_id = body.get("unit_id", current.get("unit_id") or None) or None
    if role != "unit":
        unit_id = None
    elif not isinstance(unit_id, str) or not unit_active:
        raise invalid("unit_id", "a unit's liaison needs the unit_id of an active unit")
    return {"role": role, "display": display.strip(), "crew_id": crew_id or "", "unit_id": unit_id or ""}


def password_of(body: Mapping[str, Any]) -> tuple[str, bool]:
    """(password, generated): the body's password, or a generated one when absent."""
    password = body.get("password")
    if password in (None, ""):
        return accounts.generate_password(), True
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise invalid("password", f"password must be at least {MIN_PASSWORD} characters")
    return password, False


class FleetAdmin:
    """Crews, vehicles and shifts of the fleet registry: validated, audited changes (built once
    per process, ``web.app.build_services``)."""

    def __init__(self, store: Store, city: Any = None) -> None:
        self.fleet = FleetStore(store.db, store.redis)
        self.admin = AdminStore(store.db, store.redis)
        self.accounts = AccountStore(store.db)
        self.tickets = TicketStore(store.db, store.redis)
        self.units = UnitStore(store.db)
        self.city = city
        self.known = {"units": self._city_ids("units", "unit_id"), "stations": self._city_ids("stations", "station_id")}

    def _city_ids(self, kind: str, column: str) -> frozenset[str]:
        city = self.city
        frame = city.frame(kind) if city is not None and hasattr(city, "frame") else None
        return frozenset() if frame is None or column not in frame.columns else frozenset(str(v) for v in frame[column])

    async def seed(self) -> list[str]:
        """Add the city's crews and vehicles the registry does not know yet (at start-up)."""
        return await self.fleet.seed(seed_items(crews_from_city(self.city), time.time()), time.time())

    async def account_fields(self, body: Mapping[str, Any], current: Mapping[str, str] | None) -> dict[str, str]:
        """`role_fields` against the registry's active crews and the unit tree."""
        crews = {cid for cid, (_, rec) in (await self.fleet.crews()).items() if rec.get("active", True)}
        unit_id = body.get("unit_id", (current or {}).get("unit_id") or None)
        unit = await self.units.get(unit_id) if isinstance(unit_id, str) else None
        return role_fields(body, current, crews=crews, unit_active=None if unit is None else bool(unit["active"]))

    async def create_crew(self, crew_id: Any, body: Mapping[str, Any], by: Admin) -> int:
        """Create a crew with its members; the number of sessions ended."""
        if not isinstance(crew_id, str) or not ID_RE.match(crew_id):
            raise invalid("crew_id", "crew_id must be 1-32 of A-Z a-z 0-9 _ -")
        fields = crew_fields(body, {}, **self.known)
        members = await self.check_members(body)
        moved = member_moves(crew_id, members, [])
        await self._save_crew(crew_id, lambda current: new_record(
            current, "crew_exists", f"crew {crew_id}", {"crew_id": crew_id, **fields}, by),
            by.audit("crew.create", f"crew:{crew_id}", {}), {"members": [[], members]} if members else {}, moved)
        return await self.end_sessions(moved)

    async def update_crew(self, crew_id: str, body: Mapping[str, Any], by: Admin) -> int:
        """Change or deactivate a crew (409 ``crew_busy`` while it has tickets in the field); the
        number of sessions ended."""
        active = check_flag(body, "active")
        members = await self.check_members(body)
        had = sorted((await self.accounts.crew_members()).get(crew_id, []))
        if active is False and crew_id in await field_tickets(self.tickets):
            raise Refused(409, "crew_busy", f"crew {crew_id} has tickets in the field; reassign them first")
        extra = {"members": [had, members]} if members is not None and members != had else {}
        moved = member_moves(crew_id, members, had)
        await self._save_crew(crew_id, lambda current: crew_update(current, crew_id, body, active, by, **self.known),
                              by.audit("crew.update", f"crew:{crew_id}", {}), extra, moved)
        return await self.end_sessions(moved)

    async def check_members(self, body: Mapping[str, Any]) -> list[str] | None:
        """The crew accounts named in ``members`` (None when absent): existing users of role crew."""
        members = member_names(body)
        for name in members or ():
            user = await self.accounts.get(name)
            if user is None or user.get("role") != "crew":
                raise invalid("members", f"{name} is not a crew account")
        return members

    async def end_sessions(self, moved: Mapping[str, str]) -> int:
        """End the sessions of moved accounts (their crew is part of the session); how many."""
        return sum([await self.admin.drop_sessions_of(name) for name in moved])

    async def _save_crew(self, crew_id: str, build: Callable[[Record | None], Record], audit: Audit,
                         extra: Mapping[str, Any], moves: Mapping[str, str]) -> None:
        """Write the record ``build`` makes of the current one, with its audit entry and the
        account moves, in one transaction; retried when the crew changed meanwhile."""
        for _ in range(RETRIES):
            found = await self.fleet.crew(crew_id)
            raw, current = found if found is not None else ("", None)
            record = build(current)
            changes = {**changes_between(current or {}, record), **extra}
            if current is not None and not changes and not moves:
                return
            try:
                await self.fleet.write_crew(crew_id, raw, record, replace(audit, changes=changes), members=moves)
                return
            except FleetRefused as exc:
                if exc.code != "conflict":
                    raise
        raise FleetRefused("conflict", f"crew {crew_id}")

    async def set_shift(self, crew_id: str, on_shift: Any, ends_at: float | None, by: Admin) -> Record:
        """Put a crew on or off shift until ``ends_at`` (UTC epoch s or None): its shift state."""
        if await self.fleet.crew(crew_id) is None:
            raise NotFound("crew_not_found", f"no crew {crew_id}")
        if not isinstance(on_shift, bool):
            raise invalid("on_shift", "on_shift must be true or false")

        def audit(before: Record, after: Record) -> Audit:
            return by.audit("shift.set", f"crew:{crew_id}", changes_between(
                {"on_shift": before["on_shift"], "ends_at": iso_utc(before["ends_at"])},
                {"on_shift": after["on_shift"], "ends_at": iso_utc(after["ends_at"])}))
        return await self.admin.set_shift(crew_id, on_shift, by=by.name, at=by.at, ends_at=ends_at, audit=audit)

    async def create_vehicle(self, vehicle_id: Any, body: Mapping[str, Any], by: Admin) -> None:
        """Register a vehicle."""
        if not isinstance(vehicle_id, str) or not valid_vehicle_id(vehicle_id):
            raise invalid("vehicle_id", "vehicle_id must be 1-64 of A-Z a-z 0-9 _ . : -")
        fields = vehicle_fields(body, {}, units=self.known["units"])
        await self._save_vehicle(vehicle_id, lambda current: new_record(
            current, "vehicle_exists", f"vehicle {vehicle_id}", {"vehicle_id": vehicle_id, **fields}, by),
            by.audit("vehicle.create", f"vehicle:{vehicle_id}", {}))

    async def update_vehicle(self, vehicle_id: str, body: Mapping[str, Any], by: Admin) -> None:
        """Change or deactivate a vehicle (refused by the registry while a crew holds it)."""
        active = check_flag(body, "active")

        def build(current: Record | None) -> Record:
            if current is None:
                raise NotFound("vehicle_not_found", f"no vehicle {vehicle_id}")
            return {**current, **vehicle_fields(body, current, units=self.known["units"]),
                    "active": current.get("active", True) if active is None else active,
                    "updated_at": by.at, "updated_by": by.name}
        await self._save_vehicle(vehicle_id, build, by.audit("vehicle.update", f"vehicle:{vehicle_id}", {}))

    async def _save_vehicle(self, vehicle_id: str, build: Callable[[Record | None], Record], audit: Audit) -> None:
        """Write the record ``build`` makes of the current one, with its audit entry; retried when
        the vehicle changed meanwhile."""
        for _ in range(RETRIES):
            found = await self.fleet.vehicle(vehicle_id)
            raw, current = found if found is not None else ("", None)
            record = build(current)
            changes = changes_between(current or {}, record)
            if current is not None and not changes:
                return
            try:
                await self.fleet.write_vehicle(vehicle_id, raw, record, replace(audit, changes=changes))
                return
            except FleetRefused as exc:
                if exc.code != "conflict":
                    raise
        raise FleetRefused("conflict", f"vehicle {vehicle_id}")

