"""Administration: the /admin page and its API: crews (name, unit, skills, vehicle, members,
active), vehicles (plate, kind, unit), shifts, the audit trail, and the helpers the users' API
(``web.handlers.admin_users``) shares.

Users, crews, vehicles and the audit trail: admin only. Crew shifts: admin and supervisor; the
crew list is also read by dispatchers. Crews and vehicles live in the fleet registry
(``store.fleet.FleetStore``, PostgreSQL), seeded once from the city's ``crews`` layer;
dispatch and the live console follow its changes without a restart
(``services.crews.CrewRegistry.refresh``, ``web.live.LiveFeed.reload_crews``). Every change is an
audit entry (who, when, what) written in the change's own transaction.
"""
from __future__ import annotations

import logging
import re
import time
from collections import Counter
from typing import Any, Callable

from command import accounts
from store.accounts import AccountStore
from store.fleet import AdminStore, Audit, FleetRefused, FleetStore
from store.tickets import TicketStore
from store.units import UnitStore
from command.ticket_model import Category
from ingest.vehicles import valid_vehicle_id
from services.crews import VEHICLE_KINDS, crews_from_city, field_tickets, normalize_plate, seed_items
from web.base import ApiError, BaseHandler, page
from web.handlers.vehicles import iso, parse_time
from web.openapi_schemas import B, I, NS, NT, S, T, arr, obj, op

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CREW_RE = r"([A-Za-z0-9_-]{1,32})"
VEHICLE_RE = r"([A-Za-z0-9_.:-]{1,64})"
MIN_PASSWORD = 8
CATEGORIES = tuple(c.value for c in Category)
RETRIES = 3
REFUSALS = {"unknown_vehicle": (400, "no such vehicle"), "vehicle_inactive": (409, "the vehicle is deactivated"),
            "vehicle_assigned": (409, "the vehicle is assigned to another crew"),
            "plate_taken": (409, "another vehicle has this plate")}


def changes_between(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` of the fields that differ (bookkeeping fields left out)."""
    skip = {"updated_at", "updated_by", "source"}
    return {k: [old.get(k), v] for k, v in new.items() if k not in skip and old.get(k) != v}


def refused(exc: FleetRefused) -> ApiError:
    """The HTTP error of a write the fleet registry refused."""
    status, text = REFUSALS.get(exc.code, (409, "changed meanwhile, try again"))
    other = {"vehicle_assigned": "crew_id", "plate_taken": "vehicle_id", "unknown_vehicle": "vehicle_id",
             "vehicle_inactive": "vehicle_id"}.get(exc.code)
    code = exc.code if exc.code in REFUSALS else "conflict"
    return ApiError(status, code, f"{text}: {exc.other}" if exc.other else text, **({other: exc.other} if other else {}))


def crew_view(record: dict[str, Any], vehicle: dict[str, Any] | None, shift: dict[str, Any],
              live: dict[str, Any] | None, members: list[str]) -> dict[str, Any]:
    """A crew as the admin API shows it: the registry record, its vehicle, shift and members."""
    return {"crew_id": record["crew_id"], "crew_name": record.get("crew_name"), "unit_id": record.get("unit_id"),
            "station_id": record.get("station_id") or None, "skills": list(record.get("skills") or ()),
            "vehicle_id": record.get("vehicle_id") or None, "plate": (vehicle or {}).get("plate"),
            "vehicle_kind": (vehicle or {}).get("kind"), "active": bool(record.get("active", True)),
            "members": members, "on_shift": shift["on_shift"], "shift_ends_at": iso(shift["ends_at"]),
            "shift_set_by": shift["by"], "vehicle_state": live["state"] if live else None,
            "source": record.get("source"), "updated_at": iso(record.get("updated_at")),
            "updated_by": record.get("updated_by")}


def vehicle_view(record: dict[str, Any], crew: dict[str, Any] | None, live: dict[str, Any] | None) -> dict[str, Any]:
    """A vehicle as the admin API shows it, with the crew holding it and its live state."""
    return {"vehicle_id": record["vehicle_id"], "plate": record.get("plate"), "kind": record.get("kind"),
            "unit_id": record.get("unit_id"), "active": bool(record.get("active", True)),
            "crew_id": (crew or {}).get("crew_id"), "crew_name": (crew or {}).get("crew_name"),
            "state": live["state"] if live else None, "source": record.get("source"),
            "updated_at": iso(record.get("updated_at")), "updated_by": record.get("updated_by")}


class AdminHandler(BaseHandler):
    """Common helpers: the stores, the city's reference lists, validation, audit, refusal counts."""

    @property
    def admin_store(self) -> AdminStore:
        """Audited shift and account changes, session clean-up."""
        return AdminStore(self.store.db, self.store.redis)

    @property
    def accounts(self) -> AccountStore:
        """The accounts table."""
        return AccountStore(self.store.db)

    async def fleet(self) -> FleetStore:
        """The fleet registry, with the city's crews added once per process (unknown ones only)."""
        fleet = FleetStore(self.store.db, self.store.redis)
        if not self.services.extra.get("fleet_seeded"):
            await fleet.seed(seed_items(crews_from_city(self.services.city), time.time()), time.time())
            self.services.extra["fleet_seeded"] = True
        return fleet

    def on_finish(self) -> None:
        """Count and log every refused request, per handler and status."""
        super().on_finish()
        status = self.get_status()
        if 400 <= status < 500:
            rejected: Counter = self.application.settings.setdefault("admin_rejected", Counter())
            key = f"{type(self).__name__}:{status}"
            rejected[key] += 1
            log.info("admin: refused %s %s with %d (%d so far)", self.request.method, self.request.uri,
                     status, rejected[key])

    def audit_entry(self, action: str, target: str, changes: dict[str, Any]) -> Audit:
        """An audit entry of the current account's change, now."""
        account = self.account
        return Audit(account.name, account.role, action, target, changes, time.time())

    def city_ids(self, kind: str, column: str) -> set[str]:
        """Ids of a city layer (units, stations); empty when the city has no such layer."""
        city = self.services.city
        frame = city.frame(kind) if city is not None and hasattr(city, "frame") else None
        return set() if frame is None or column not in frame.columns else {str(v) for v in frame[column]}

    def check_ref(self, body: dict[str, Any], name: str, current: str | None, kind: str, *,
                  required: bool) -> str:
        """A unit or station id from the body: known to the city when it lists them, else a plain
        id; the current value when the body has none."""
        if name not in body and current:
            return current
        value = body.get(name)
        if value in (None, "") and not required:
            return ""
        known = self.city_ids(kind, name)
        if not isinstance(value, str) or not ID_RE.match(value) or (known and value not in known):
            raise ApiError(400, "validation_error", f"{name} must be the id of a known {kind[:-1]}", field=name)
        return value

    async def active_crew_ids(self) -> set[str]:
        """Ids of the registry's active crews."""
        return {cid for cid, (_, rec) in (await (await self.fleet()).crews()).items() if rec.get("active", True)}

    async def check_role(self, body: dict[str, Any], current: dict[str, str] | None) -> dict[str, str]:
        """Validated role, display and crew_id from a request body (current values as defaults)."""
        current = current or {}
        role = body.get("role", current.get("role"))
        if role not in accounts.ROLES:
            raise ApiError(400, "validation_error", f"role must be one of {', '.join(accounts.ROLES)}", field="role")
        display = body.get("display", current.get("display", ""))
        if not isinstance(display, str) or len(display) > 50:
            raise ApiError(400, "validation_error", "display must be a string of at most 50 characters",
                           field="display")
        crew_id = body.get("crew_id", current.get("crew_id") or None) or None
        if role == "crew":
            known = await self.active_crew_ids()
            if not isinstance(crew_id, str) or (known and crew_id not in known):
                raise ApiError(400, "validation_error", "a crew member needs the crew_id of a known crew",
                               field="crew_id")
        else:
            crew_id = None
        unit_id = body.get("unit_id", current.get("unit_id") or None) or None
        if role == "unit":
            unit = await UnitStore(self.store.db).get(unit_id) if isinstance(unit_id, str) else None
            if unit is None or not unit["active"]:
                raise ApiError(400, "validation_error", "a unit's liaison needs the unit_id of an active unit",
                               field="unit_id")
        else:
            unit_id = None
        return {"role": role, "display": display.strip(), "crew_id": crew_id or "", "unit_id": unit_id or ""}

    @staticmethod
    def password_of(body: dict[str, Any]) -> tuple[str, bool]:
        """(password, generated): the body's password, or a generated one when absent."""
        password = body.get("password")
        if password in (None, ""):
            return accounts.generate_password(), True
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise ApiError(400, "validation_error", f"password must be at least {MIN_PASSWORD} characters",
                           field="password")
        return password, False

    async def live_vehicles(self) -> dict[str, dict[str, Any]]:
        """Live state of every vehicle with a fix or status, by id."""
        cfg = self.config
        return {v["id"]: v for v in await self.store.vehicles(stale_s=cfg.VEHICLE_STALE_S,
                                                               offline_s=cfg.VEHICLE_OFFLINE_S)}


class AdminPage(AdminHandler):
    """GET /admin: the administration page."""

    @page("admin", "supervisor")
    def get(self) -> None:
        city = self.services.city
        units = city.frame("units") if city is not None and hasattr(city, "frame") else None
        unit_rows = [] if units is None else sorted(
            (str(u.unit_id), str(getattr(u, "name", u.unit_id))) for u in units.itertuples(index=False)
            if getattr(u, "level", 3) != 2)  # crews and vehicles belong to stations, not departments
        self.render("admin.html", account=self.account, zone=self.config.TIME_ZONE, categories=CATEGORIES,
                    vehicle_kinds=VEHICLE_KINDS, units=unit_rows)


class CrewHandler(AdminHandler):
    """Crew validation and the read-check-write loop of crew changes."""

    def crew_fields(self, body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """Validated name, unit, station, skills and vehicle (current values as defaults)."""
        name = body.get("crew_name", current.get("crew_name"))
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 50:
            raise ApiError(400, "validation_error", "crew_name must be 1-50 characters", field="crew_name")
        skills = body.get("skills", current.get("skills"))
        if isinstance(skills, str):
            skills = [s for s in skills.split(",") if s]
        if not isinstance(skills, list) or not skills or any(s not in CATEGORIES for s in skills):
            raise ApiError(400, "validation_error", f"skills must be a non-empty list of {', '.join(CATEGORIES)}",
                           field="skills")
        vehicle_id = body.get("vehicle_id", current.get("vehicle_id")) or None
        if vehicle_id is not None and (not isinstance(vehicle_id, str) or not valid_vehicle_id(vehicle_id)):
            raise ApiError(400, "validation_error", "vehicle_id must be a vehicle id or null", field="vehicle_id")
        return {"crew_name": name.strip(), "unit_id": self.check_ref(body, "unit_id", current.get("unit_id"), "units",
                                                                     required=True),
                "station_id": self.check_ref(body, "station_id", current.get("station_id"), "stations", required=False),
                "skills": sorted(set(skills)), "vehicle_id": vehicle_id}

    async def check_members(self, body: dict[str, Any]) -> list[str] | None:
        """The crew accounts named in ``members`` (None when absent): existing users of role crew."""
        members = body.get("members")
        if members is None:
            return None
        if not isinstance(members, list) or len(members) > 50 or not all(isinstance(m, str) for m in members):
            raise ApiError(400, "validation_error", "members must be a list of at most 50 user names", field="members")
        for name in members:
            user = await self.accounts.get(name)
            if user is None or user.get("role") != "crew":
                raise ApiError(400, "validation_error", f"{name} is not a crew account", field="members")
        return sorted(set(members))

    async def members_of(self) -> dict[str, list[str]]:
        """Crew accounts by crew id."""
        return await self.accounts.crew_members()

    async def save(self, crew_id: str, build: Callable[[dict[str, Any] | None], dict[str, Any]], action: str,
                   extra: dict[str, Any], moves: dict[str, str] | None = None) -> dict[str, Any]:
        """Write the record ``build`` makes from the current one, with its audit entry and the
        account moves (name → crew id, '' for none) in one transaction; retried when the crew
        changed between the read and the write."""
        fleet = await self.fleet()
        for _ in range(RETRIES):
            found = await fleet.crew(crew_id)
            raw, current = found if found is not None else ("", None)
            record = build(current)
            changes = {**changes_between(current or {}, record), **extra}
            if current is not None and not changes and not moves:
                return record
            try:
                await fleet.write_crew(crew_id, raw, record, self.audit_entry(action, f"crew:{crew_id}", changes),
                                       members=moves)
                return record
            except FleetRefused as exc:
                if exc.code != "conflict":
                    raise refused(exc) from None
        raise ApiError(409, "conflict", f"crew {crew_id} changed meanwhile, try again")

    @staticmethod
    def moves(crew_id: str, wanted: list[str] | None, had: list[str]) -> dict[str, str]:
        """The account moves that make ``wanted`` the crew's members: name → crew id ('' out)."""
        if wanted is None:
            return {}
        return {name: crew_id if name in wanted else "" for name in sorted(set(wanted) ^ set(had))}

    async def end_sessions(self, moved: dict[str, str]) -> int:
        """End the sessions of moved accounts (their crew is part of the session); how many."""
        ended = 0
        for name in moved:
            ended += await self.admin_store.drop_sessions_of(name)
        return ended

    async def reply(self, crew_id: str, status: int = 200, **extra: Any) -> None:
        """The crew's current view."""
        fleet = await self.fleet()
        found = await fleet.crew(crew_id)
        record = found[1]
        vehicle = await fleet.vehicle(record.get("vehicle_id") or "") if record.get("vehicle_id") else None
        shift = (await self.admin_store.shifts([crew_id]))[crew_id]
        live = (await self.live_vehicles()).get(record.get("vehicle_id") or "")
        members = (await self.members_of()).get(crew_id, [])
        self.write_json({"crew": crew_view(record, vehicle and vehicle[1], shift, live, sorted(members)), **extra},
                        status=status)


class CrewList(CrewHandler):
    """GET /api/admin/crews: every crew (active or not) with vehicle, members, live vehicle state
    and shift; POST (admin) {crew_id, crew_name, unit_id, station_id?, skills, vehicle_id?, members?}."""

    async def get(self) -> None:
        self.require("admin", "supervisor", "dispatcher")
        fleet = await self.fleet()
        crews, vehicles = await fleet.crews(), await fleet.vehicles()
        shifts = await self.admin_store.shifts(crews)
        live = await self.live_vehicles()
        members = await self.members_of()
        rows = []
        for crew_id, (_, record) in sorted(crews.items()):
            vid = record.get("vehicle_id") or ""
            rows.append(crew_view(record, vehicles.get(vid, ("", None))[1], shifts[crew_id], live.get(vid),
                                  sorted(members.get(crew_id, []))))
        self.write_json({"crews": rows})

    async def post(self) -> None:
        account = self.require("admin")
        body = self.json_body()
        crew_id = body.get("crew_id")
        if not isinstance(crew_id, str) or not ID_RE.match(crew_id):
            raise ApiError(400, "validation_error", "crew_id must be 1-32 of A-Z a-z 0-9 _ -", field="crew_id")
        fields = self.crew_fields(body, {})
        members = await self.check_members(body)

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is not None:
                raise ApiError(409, "crew_exists", f"crew {crew_id} already exists")
            return {"crew_id": crew_id, **fields, "active": True, "source": "admin", "updated_at": time.time(),
                    "updated_by": account.name}
        moved = self.moves(crew_id, members, [])
        await self.save(crew_id, build, "crew.create", {"members": [[], members]} if members else {}, moved)
        ended = await self.end_sessions(moved)
        await self.reply(crew_id, 201, sessions_ended=ended)


class CrewDetail(CrewHandler):
    """PATCH /api/admin/crews/<crew_id> {crew_name?, unit_id?, station_id?, skills?, vehicle_id?
    (null: none), members?, active?}: change a crew; deactivating releases its vehicle and is
    refused while the crew has work in the field."""

    async def patch(self, crew_id: str) -> None:
        account = self.require("admin")
        body = self.json_body()
        active = body.get("active")
        if active is not None and not isinstance(active, bool):
            raise ApiError(400, "validation_error", "active must be true or false", field="active")
        members = await self.check_members(body)
        had = (await self.members_of()).get(crew_id, [])
        if active is False and crew_id in await field_tickets(TicketStore(self.store.db, self.store.redis)):
            raise ApiError(409, "crew_busy", f"crew {crew_id} has tickets in the field; reassign them first")

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None:
                raise ApiError(404, "crew_not_found", f"no crew {crew_id}")
            fields = self.crew_fields(body, current)
            now_active = current.get("active", True) if active is None else active
            if not now_active:
                fields["vehicle_id"] = None
            return {**current, **fields, "active": now_active, "updated_at": time.time(), "updated_by": account.name}
        extra = {"members": [sorted(had), members]} if members is not None and members != sorted(had) else {}
        moved = self.moves(crew_id, members, had)
        await self.save(crew_id, build, "crew.update", extra, moved)
        ended = await self.end_sessions(moved)
        await self.reply(crew_id, sessions_ended=ended)


class CrewShift(AdminHandler):
    """PUT /api/admin/crews/<crew_id>/shift {on_shift, ends_at?}: put a crew on or off shift."""

    async def put(self, crew_id: str) -> None:
        account = self.require("admin", "supervisor")
        if await (await self.fleet()).crew(crew_id) is None:
            raise ApiError(404, "crew_not_found", f"no crew {crew_id}")
        body = self.json_body()
        on_shift = body.get("on_shift")
        if not isinstance(on_shift, bool):
            raise ApiError(400, "validation_error", "on_shift must be true or false", field="on_shift")
        ends = body.get("ends_at")
        ends_at = None if ends in (None, "") else parse_time(str(ends), 0.0)

        def audit(before: dict[str, Any], after: dict[str, Any]) -> Audit:
            return self.audit_entry("shift.set", f"crew:{crew_id}", changes_between(
                {"on_shift": before["on_shift"], "ends_at": iso(before["ends_at"])},
                {"on_shift": after["on_shift"], "ends_at": iso(after["ends_at"])}))
        state = await self.admin_store.set_shift(crew_id, on_shift, by=account.name, at=time.time(), ends_at=ends_at,
                                                 audit=audit)
        self.write_json({"crew_id": crew_id, "on_shift": state["on_shift"], "shift_ends_at": iso(state["ends_at"]),
                         "shift_set_by": state["by"]})


class VehicleHandler(AdminHandler):
    """Vehicle validation and the read-check-write loop of vehicle changes."""

    def vehicle_fields(self, body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """Validated plate (normalised), kind and unit from the body (current values as defaults)."""
        plate = normalize_plate(body.get("plate")) if "plate" in body or not current else current.get("plate", "")
        if plate is None:
            raise ApiError(400, "validation_error", "plate must be a licence plate such as 鲁G·U1632", field="plate")
        kind = body.get("kind", current.get("kind"))
        if kind not in VEHICLE_KINDS:
            raise ApiError(400, "validation_error", f"kind must be one of {', '.join(VEHICLE_KINDS)}", field="kind")
        return {"plate": plate, "kind": kind,
                "unit_id": self.check_ref(body, "unit_id", current.get("unit_id"), "units", required=True)}

    async def save(self, vehicle_id: str, build: Callable[[dict[str, Any] | None], dict[str, Any]],
                   action: str) -> None:
        """Write the record ``build`` makes from the current one, with its audit entry; retried
        when the vehicle changed between the read and the write."""
        fleet = await self.fleet()
        for _ in range(RETRIES):
            found = await fleet.vehicle(vehicle_id)
            raw, current = found if found is not None else ("", None)
            record = build(current)
            changes = changes_between(current or {}, record)
            if current is not None and not changes:
                return
            try:
                await fleet.write_vehicle(vehicle_id, raw, record,
                                          self.audit_entry(action, f"vehicle:{vehicle_id}", changes))
                return
            except FleetRefused as exc:
                if exc.code != "conflict":
                    raise refused(exc) from None
        raise ApiError(409, "conflict", f"vehicle {vehicle_id} changed meanwhile, try again")

    async def reply(self, vehicle_id: str, status: int = 200) -> None:
        """The vehicle's current view."""
        fleet = await self.fleet()
        record = (await fleet.vehicle(vehicle_id))[1]
        holder = (await fleet.assignments()).get(vehicle_id)
        crew = (await fleet.crew(holder))[1] if holder else None
        live = (await self.live_vehicles()).get(vehicle_id)
        self.write_json({"vehicle": vehicle_view(record, crew, live)}, status=status)


class VehicleList(VehicleHandler):
    """GET /api/admin/vehicles: every vehicle with the crew holding it and its live state;
    POST {vehicle_id, plate, kind, unit_id}: register one."""

    async def get(self) -> None:
        self.require("admin")
        fleet = await self.fleet()
        vehicles, crews, holders = await fleet.vehicles(), await fleet.crews(), await fleet.assignments()
        live = await self.live_vehicles()
        rows = [vehicle_view(record, crews.get(holders.get(vid, ""), ("", None))[1], live.get(vid))
                for vid, (_, record) in sorted(vehicles.items())]
        self.write_json({"vehicles": rows, "kinds": list(VEHICLE_KINDS)})

    async def post(self) -> None:
        account = self.require("admin")
        body = self.json_body()
        vehicle_id = body.get("vehicle_id")
        if not isinstance(vehicle_id, str) or not valid_vehicle_id(vehicle_id):
            raise ApiError(400, "validation_error", "vehicle_id must be 1-64 of A-Z a-z 0-9 _ . : -",
                           field="vehicle_id")
        fields = self.vehicle_fields(body, {})

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is not None:
                raise ApiError(409, "vehicle_exists", f"vehicle {vehicle_id} already exists")
            return {"vehicle_id": vehicle_id, **fields, "active": True, "source": "admin", "updated_at": time.time(),
                    "updated_by": account.name}
        await self.save(vehicle_id, build, "vehicle.create")
        await self.reply(vehicle_id, 201)


class VehicleDetail(VehicleHandler):
    """PATCH /api/admin/vehicles/<vehicle_id> {plate?, kind?, unit_id?, active?}: change a vehicle
    (deactivating is refused while a crew holds it)."""

    async def patch(self, vehicle_id: str) -> None:
        account = self.require("admin")
        body = self.json_body()
        active = body.get("active")
        if active is not None and not isinstance(active, bool):
            raise ApiError(400, "validation_error", "active must be true or false", field="active")

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None:
                raise ApiError(404, "vehicle_not_found", f"no vehicle {vehicle_id}")
            return {**current, **self.vehicle_fields(body, current),
                    "active": current.get("active", True) if active is None else active,
                    "updated_at": time.time(), "updated_by": account.name}
        await self.save(vehicle_id, build, "vehicle.update")
        await self.reply(vehicle_id)


class AuditLog(AdminHandler):
    """GET /api/admin/audit?limit=&before=&target=: administrative changes, newest first."""

    async def get(self) -> None:
        self.require("admin")
        try:
            limit = int(self.get_argument("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 500:
            raise ApiError(400, "validation_error", "limit must be 1..500", field="limit")
        before = self.get_argument("before", None) or None
        if before is not None and not re.fullmatch(r"\d{1,18}", before):
            raise ApiError(400, "validation_error", "before must be an entry id such as 1234", field="before")
        target = self.get_argument("target", None) or None
        entries = await (await self.fleet()).audit_log(limit, before, target)
        self.write_json({"entries": [{**e, "at": iso(e["at"])} for e in entries]})


_CREW = obj(["crew_id", "vehicle_id", "on_shift", "active", "skills", "members"], crew_id=S, crew_name=NS,
            vehicle_id=NS, unit_id=NS, station_id=NS, skills=arr(S), plate=NS, vehicle_kind=NS, active=B,
            members=arr(S), on_shift=B, shift_ends_at=NT, shift_set_by=NS, vehicle_state=NS, source=NS,
            updated_at=NT, updated_by=NS)
_VEHICLE = obj(["vehicle_id", "plate", "kind", "active"], vehicle_id=S, plate=S, kind=S, unit_id=NS, active=B,
               crew_id=NS, crew_name=NS, state=NS, source=NS, updated_at=NT, updated_by=NS)
_CREW_BODY = obj(["crew_id", "crew_name", "unit_id", "skills"], crew_id=S, crew_name=S, unit_id=S, station_id=S,
                 skills=arr({"type": "string", "enum": list(CATEGORIES)}), vehicle_id=NS, members=arr(S))
_CREW_PATCH = obj([], crew_name=S, unit_id=S, station_id=S, skills=arr({"type": "string", "enum": list(CATEGORIES)}),
                  vehicle_id=NS, members=arr(S), active=B)
_VEHICLE_BODY = obj(["vehicle_id", "plate", "kind", "unit_id"], vehicle_id=S, plate=S,
                    kind={"type": "string", "enum": list(VEHICLE_KINDS)}, unit_id=S)
_VEHICLE_PATCH = obj([], plate=S, kind={"type": "string", "enum": list(VEHICLE_KINDS)}, unit_id=S, active=B)
_CREW_REPLY = obj(["crew"], crew=_CREW, sessions_ended=I)
openapi = {
    "GET /api/admin/crews": op("Every crew with its vehicle, members, shift and live vehicle state",
                               "admin, supervisor, dispatcher", obj(["crews"], crews=arr(_CREW))),
    "POST /api/admin/crews": op("Create a crew (skills, vehicle, members)", "admin", _CREW_REPLY, status=201,
                                body=_CREW_BODY, errors=(400, 401, 403, 409)),
    "PATCH /api/admin/crews/{}": op("Change or deactivate a crew (vehicle null: none)", "admin", _CREW_REPLY,
                                    body=_CREW_PATCH, errors=(400, 401, 403, 404, 409)),
    "GET /api/admin/vehicles": op("Every vehicle with the crew holding it and its live state", "admin",
                                  obj(["vehicles", "kinds"], vehicles=arr(_VEHICLE), kinds=arr(S))),
    "POST /api/admin/vehicles": op("Register a vehicle (plate 车牌, kind, unit)", "admin",
                                   obj(["vehicle"], vehicle=_VEHICLE), status=201, body=_VEHICLE_BODY,
                                   errors=(400, 401, 403, 409)),
    "PATCH /api/admin/vehicles/{}": op("Change or deactivate a vehicle", "admin", obj(["vehicle"], vehicle=_VEHICLE),
                                       body=_VEHICLE_PATCH, errors=(400, 401, 403, 404, 409)),
    "GET /api/admin/audit": op("Administrative changes, newest first (who, when, what)", "admin",
                               obj(["entries"], entries=arr(obj(
                                   ["id", "at", "by", "role", "action", "target", "changes"], id=S, at=T, by=S,
                                   role=S, action=S, target=S, changes={"type": "object"}))),
                               query=(("limit", "integer", "1..500, default 100"),
                                      ("before", "string", "entries older than this id"),
                                      ("target", "string", "only this target, e.g. crew:C01"))),
}

routes = [
    (r"/admin", AdminPage),
    (r"/api/admin/crews", CrewList),
    (rf"/api/admin/crews/{CREW_RE}", CrewDetail),
    (rf"/api/admin/crews/{CREW_RE}/shift", CrewShift),
    (r"/api/admin/vehicles", VehicleList),
    (rf"/api/admin/vehicles/{VEHICLE_RE}", VehicleDetail),
    (r"/api/admin/audit", AuditLog),
]
