"""Administration: the /admin page and its API: crews (name, unit, skills, vehicle, members,
active), vehicles (plate, kind, unit), shifts, the audit trail, and the base the users' and
devices' APIs (``web.handlers.admin_users``, ``web.handlers.devices``) share.

Users, crews, vehicles and the audit trail: admin only. Crew shifts: admin and supervisor; the
crew list is also read by dispatchers. The rules (validation, what may change when, audited
writes) are ``services.fleet_admin.FleetAdmin``'s; these handlers parse the request, call it and
write the answer. Dispatch and the live console follow registry changes without a restart
(``services.crews.CrewRegistry.refresh``, ``web.live.LiveFeed.reload_crews``).
"""
from __future__ import annotations

import re
import time
from typing import Any

from services.crews import VEHICLE_KINDS
from services.fleet_admin import CATEGORIES, Admin, FleetAdmin
from store.accounts import AccountStore
from store.fleet import AdminStore, FleetStore
from web.base import ApiError, BaseHandler, page
from web.handlers.vehicles import iso, parse_time
from web.openapi_schemas import B, I, NS, NT, S, T, arr, obj, op

CREW_RE = r"([A-Za-z0-9_-]{1,32})"
VEHICLE_RE = r"([A-Za-z0-9_.:-]{1,64})"


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
    """Base of the administration handlers: the fleet service, the acting admin, live states.
    Refused requests are counted and logged (``BaseHandler.count_refusals``)."""

    count_refusals = True

    @property
    def fleet_admin(self) -> FleetAdmin:
        """The fleet-administration service."""
        return self.services.fleet

    @property
    def fleet(self) -> FleetStore:
        """The fleet registry (reads)."""
        return self.services.fleet.fleet

    @property
    def accounts(self) -> AccountStore:
        """The accounts table."""
        return self.services.fleet.accounts

    @property
    def admin_store(self) -> AdminStore:
        """Audited shift and account changes, session clean-up."""
        return self.services.fleet.admin

    def admin(self, *roles: str) -> Admin:
        """The account making the change (one of ``roles``, admin by default), now."""
        account = self.require(*(roles or ("admin",)))
        return Admin(account.name, account.role, time.time())

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
    """The crew's answer."""

    async def reply(self, crew_id: str, status: int = 200, **extra: Any) -> None:
        """The crew's current view."""
        record = (await self.fleet.crew(crew_id))[1]
        vehicle = await self.fleet.vehicle(record.get("vehicle_id") or "") if record.get("vehicle_id") else None
        shift = (await self.admin_store.shifts([crew_id]))[crew_id]
        live = (await self.live_vehicles()).get(record.get("vehicle_id") or "")
        members = (await self.accounts.crew_members()).get(crew_id, [])
        self.write_json({"crew": crew_view(record, vehicle and vehicle[1], shift, live, sorted(members)), **extra},
                        status=status)


class CrewList(CrewHandler):
    """GET /api/admin/crews: every crew (active or not) with vehicle, members, live vehicle state
    and shift; POST (admin) {crew_id, crew_name, unit_id, station_id?, skills, vehicle_id?, members?}."""

    async def get(self) -> None:
        self.require("admin", "supervisor", "dispatcher")
        crews, vehicles = await self.fleet.crews(), await self.fleet.vehicles()
        shifts = await self.admin_store.shifts(crews)
        live = await self.live_vehicles()
        members = await self.accounts.crew_members()
        rows = []
        for crew_id, (_, record) in sorted(crews.items()):
            vid = record.get("vehicle_id") or ""
            rows.append(crew_view(record, vehicles.get(vid, ("", None))[1], shifts[crew_id], live.get(vid),
                                  sorted(members.get(crew_id, []))))
        self.write_json({"crews": rows})

    async def post(self) -> None:
        admin = self.admin()
        body = self.json_body()
        ended = await self.fleet_admin.create_crew(body.get("crew_id"), body, admin)
        await self.reply(body["crew_id"], 201, sessions_ended=ended)


class CrewDetail(CrewHandler):
    """PATCH /api/admin/crews/<crew_id> {crew_name?, unit_id?, station_id?, skills?, vehicle_id?
    (null: none), members?, active?}: change a crew; deactivating releases its vehicle and is
    refused while the crew has work in the field."""

    async def patch(self, crew_id: str) -> None:
        admin = self.admin()
        ended = await self.fleet_admin.update_crew(crew_id, self.json_body(), admin)
        await self.reply(crew_id, sessions_ended=ended)


class CrewShift(AdminHandler):
    """PUT /api/admin/crews/<crew_id>/shift {on_shift, ends_at?}: put a crew on or off shift."""

    async def put(self, crew_id: str) -> None:
        admin = self.admin("admin", "supervisor")
        body = self.json_body()
        ends = body.get("ends_at")
        ends_at = None if ends in (None, "") else parse_time(str(ends), 0.0)
        state = await self.fleet_admin.set_shift(crew_id, body.get("on_shift"), ends_at, admin)
        self.write_json({"crew_id": crew_id, "on_shift": state["on_shift"], "shift_ends_at": iso(state["ends_at"]),
                         "shift_set_by": state["by"]})


class VehicleHandler(AdminHandler):
    """The vehicle's answer."""

    async def reply(self, vehicle_id: str, status: int = 200) -> None:
        """The vehicle's current view."""
        record = (await self.fleet.vehicle(vehicle_id))[1]
        holder = (await self.fleet.assignments()).get(vehicle_id)
        crew = (await self.fleet.crew(holder))[1] if holder else None
        live = (await self.live_vehicles()).get(vehicle_id)
        self.write_json({"vehicle": vehicle_view(record, crew, live)}, status=status)


class VehicleList(VehicleHandler):
    """GET /api/admin/vehicles: every vehicle with the crew holding it and its live state;
    POST {vehicle_id, plate, kind, unit_id}: register one."""

    async def get(self) -> None:
        self.require("admin")
        vehicles, crews, holders = await self.fleet.vehicles(), await self.fleet.crews(), await self.fleet.assignments()
        live = await self.live_vehicles()
        rows = [vehicle_view(record, crews.get(holders.get(vid, ""), ("", None))[1], live.get(vid))
                for vid, (_, record) in sorted(vehicles.items())]
        self.write_json({"vehicles": rows, "kinds": list(VEHICLE_KINDS)})

    async def post(self) -> None:
        admin = self.admin()
        body = self.json_body()
        await self.fleet_admin.create_vehicle(body.get("vehicle_id"), body, admin)
        await self.reply(body["vehicle_id"], 201)


class VehicleDetail(VehicleHandler):
    """PATCH /api/admin/vehicles/<vehicle_id> {plate?, kind?, unit_id?, active?}: change a vehicle
    (deactivating is refused while a crew holds it)."""

    async def patch(self, vehicle_id: str) -> None:
        admin = self.admin()
        await self.fleet_admin.update_vehicle(vehicle_id, self.json_body(), admin)
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
        entries = await self.fleet.audit_log(limit, before, target)
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
