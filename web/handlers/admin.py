"""Administration: the /admin page and its API (users and roles, passwords, crews and shifts).

Users: admin only. Crew shifts: admin and supervisor. Crews and their vehicles come from the
city's ``crews`` layer; the on-shift flag is kept in Redis (``center.store_admin``).
"""
from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from center import accounts
from center.store_admin import AdminStore
from web.base import ApiError, BaseHandler, page
from web.handlers.vehicles import iso, parse_time

NAME_RE = re.compile(r"^[a-z0-9_.-]{2,32}$")
CREW_RE = r"([A-Za-z0-9_-]{1,32})"
MIN_PASSWORD = 8


def user_view(raw: dict[str, str]) -> dict[str, Any]:
    """An account as the admin API shows it (never the hash)."""
    return {"name": raw.get("name"), "role": raw.get("role"), "display": raw.get("display") or "",
            "crew_id": raw.get("crew_id") or None, "active": raw.get("active", "1") == "1"}


class AdminHandler(BaseHandler):
    """Common helpers: the admin store, the city's crews, field validation."""

    @property
    def admin_store(self) -> AdminStore:
        """Shift flags and session clean-up."""
        return AdminStore(self.store.redis)

    def crews(self) -> list[dict[str, Any]]:
        """The city's crews with their vehicles (empty without a crews layer)."""
        city = self.services.city
        frame = city.frame("crews") if city is not None and hasattr(city, "frame") else None
        if frame is None:
            return []
        out = []
        for row in frame.itertuples(index=False):
            skills = getattr(row, "skills", ()) or ()
            if isinstance(skills, str):
                skills = tuple(s for s in skills.split(",") if s)
            out.append({"crew_id": str(row.crew_id), "crew_name": getattr(row, "crew_name", None),
                        "vehicle_id": getattr(row, "vehicle_id", None), "unit_id": getattr(row, "unit_id", None),
                        "station_id": getattr(row, "station_id", None),
                        "skills": [getattr(s, "value", s) for s in skills],
                        "plate": getattr(row, "plate", None)})
        return out

    def check_role(self, body: dict[str, Any], current: dict[str, str] | None) -> dict[str, str]:
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
            known = {c["crew_id"] for c in self.crews()}
            if not isinstance(crew_id, str) or (known and crew_id not in known):
                raise ApiError(400, "validation_error", "a crew member needs the crew_id of a known crew",
                               field="crew_id")
        else:
            crew_id = None
        return {"role": role, "display": display.strip(), "crew_id": crew_id or ""}

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


class AdminPage(AdminHandler):
    """GET /admin: the administration page."""

    @page("admin", "supervisor")
    def get(self) -> None:
        self.render("admin.html", account=self.account, zone=self.config.TIME_ZONE)


class UserCollection(AdminHandler):
    """GET /api/admin/users: every account; POST: create one {name, role, display, crew_id, password?}."""

    async def get(self) -> None:
        self.require("admin")
        self.write_json({"users": [user_view(u) for u in await self.store.users()], "roles": list(accounts.ROLES)})

    async def post(self) -> None:
        self.require("admin")
        body = self.json_body()
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ApiError(400, "validation_error", "name must be 2-32 of a-z 0-9 _ . -", field="name")
        fields = self.check_role(body, None)
        password, generated = self.password_of(body)
        hashed = await asyncio.to_thread(accounts.hash_password, password)
        if not await self.store.put_user(name, {**fields, "active": "1", "hash": hashed}, only_new=True):
            raise ApiError(409, "user_exists", f"user {name} already exists")
        self.write_json({"user": user_view(await self.store.get_user(name)),
                         "password": password if generated else None}, status=201)


class UserDetail(AdminHandler):
    """PATCH /api/admin/users/<name> {role?, display?, crew_id?, active?}: change or disable a user."""

    async def patch(self, name: str) -> None:
        admin = self.require("admin")
        current = await self.store.get_user(name)
        if current is None:
            raise ApiError(404, "user_not_found", f"no user {name}")
        body = self.json_body()
        fields = self.check_role(body, current)
        active = body.get("active", current.get("active", "1") == "1")
        if not isinstance(active, bool):
            raise ApiError(400, "validation_error", "active must be true or false", field="active")
        if name == admin.name and (not active or fields["role"] != "admin"):
            raise ApiError(409, "self_lockout", "you cannot disable or demote your own account")
        await self.store.put_user(name, {**fields, "active": "1" if active else "0"})
        dropped = 0
        if not active or fields["role"] != current.get("role") or fields["crew_id"] != current.get("crew_id", ""):
            dropped = await self.admin_store.drop_sessions_of(name)  # new rights apply at the next login
        self.write_json({"user": user_view(await self.store.get_user(name)), "sessions_ended": dropped})


class UserPassword(AdminHandler):
    """POST /api/admin/users/<name>/password {password?}: reset (generated when absent)."""

    async def post(self, name: str) -> None:
        self.require("admin")
        if await self.store.get_user(name) is None:
            raise ApiError(404, "user_not_found", f"no user {name}")
        password, generated = self.password_of(self.json_body())
        hashed = await asyncio.to_thread(accounts.hash_password, password)
        await self.store.put_user(name, {"hash": hashed})
        dropped = await self.admin_store.drop_sessions_of(name)
        self.write_json({"name": name, "password": password if generated else None, "sessions_ended": dropped})


class CrewList(AdminHandler):
    """GET /api/admin/crews: crews with their vehicle, live vehicle state and shift flag."""

    async def get(self) -> None:
        self.require("admin", "supervisor", "dispatcher")
        crews = self.crews()
        shifts = await self.admin_store.shifts(c["crew_id"] for c in crews)
        cfg = self.config
        vehicles = {v["id"]: v for v in await self.store.vehicles(stale_s=cfg.VEHICLE_STALE_S,
                                                                   offline_s=cfg.VEHICLE_OFFLINE_S)}
        out = []
        for crew in crews:
            shift = shifts[crew["crew_id"]]
            vehicle = vehicles.get(crew["vehicle_id"] or "")
            out.append({**crew, "on_shift": shift["on_shift"], "shift_ends_at": iso(shift["ends_at"]),
                        "shift_set_by": shift["by"], "vehicle_state": vehicle["state"] if vehicle else None})
        self.write_json({"crews": out})


class CrewShift(AdminHandler):
    """PUT /api/admin/crews/<crew_id>/shift {on_shift, ends_at?}: put a crew on or off shift."""

    async def put(self, crew_id: str) -> None:
        account = self.require("admin", "supervisor")
        if crew_id not in {c["crew_id"] for c in self.crews()}:
            raise ApiError(404, "crew_not_found", f"no crew {crew_id}")
        body = self.json_body()
        on_shift = body.get("on_shift")
        if not isinstance(on_shift, bool):
            raise ApiError(400, "validation_error", "on_shift must be true or false", field="on_shift")
        ends = body.get("ends_at")
        ends_at = None if ends in (None, "") else parse_time(str(ends), 0.0)
        state = await self.admin_store.set_shift(crew_id, on_shift, by=account.name, at=time.time(), ends_at=ends_at)
        self.write_json({"crew_id": crew_id, "on_shift": state["on_shift"], "shift_ends_at": iso(state["ends_at"]),
                         "shift_set_by": state["by"]})


routes = [
    (r"/admin", AdminPage),
    (r"/api/admin/users", UserCollection),
    (r"/api/admin/users/([a-z0-9_.-]{2,32})", UserDetail),
    (r"/api/admin/users/([a-z0-9_.-]{2,32})/password", UserPassword),
    (r"/api/admin/crews", CrewList),
    (rf"/api/admin/crews/{CREW_RE}/shift", CrewShift),
]
