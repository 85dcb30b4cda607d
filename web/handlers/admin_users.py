"""Administration of accounts: /api/admin/users (users and roles, disabling, passwords), admin
only. An account lives in PostgreSQL (``store.accounts``); each change is written with its
audit row in one transaction (``store.fleet.AdminStore.put_account``), and a change of rights
or password ends the account's sessions (new rights apply at the next login).
"""
from __future__ import annotations

import asyncio
import re
from typing import Any

from command import accounts
from services.fleet_admin import changes_between, password_of
from web.base import ApiError
from web.handlers.admin import AdminHandler

NAME_RE = re.compile(r"^[a-z0-9_.-]{2,32}$")


def user_view(raw: dict[str, str]) -> dict[str, Any]:
    """An account as the admin API shows it (never the hash)."""
    return {"name": raw.get("name"), "role": raw.get("role"), "display": raw.get("display") or "",
            "crew_id": raw.get("crew_id") or None, "unit_id": raw.get("unit_id") or None,
            "active": raw.get("active", "1") == "1"}


class UserCollection(AdminHandler):
    """GET /api/admin/users: every account; POST: create one {name, role, display, crew_id, unit_id,
    password?} (crew_id for a crew member, unit_id for a unit's liaison)."""

    async def get(self) -> None:
        self.require("admin")
        self.write_json({"users": [user_view(u) for u in await self.accounts.all()], "roles": list(accounts.ROLES)})

    async def post(self) -> None:
        admin = self.admin()
        body = self.json_body()
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ApiError(400, "validation_error", "name must be 2-32 of a-z 0-9 _ . -", field="name")
        fields = await self.fleet_admin.account_fields(body, None)
        password, generated = password_of(body)
        hashed = await asyncio.to_thread(accounts.hash_password, password)
        audit = admin.audit("user.create", f"user:{name}", {k: [None, v] for k, v in fields.items() if v})
        if not await self.admin_store.put_account(name, {**fields, "active": "1", "hash": hashed}, audit,
                                                  only_new=True):
            raise ApiError(409, "user_exists", f"user {name} already exists")
        self.write_json({"user": user_view(await self.accounts.get(name)),
                         "password": password if generated else None}, status=201)


class UserDetail(AdminHandler):
    """PATCH /api/admin/users/<name> {role?, display?, crew_id?, unit_id?, active?}: change or disable a user."""

    async def patch(self, name: str) -> None:
        admin = self.admin()
        current = await self.accounts.get(name)
        if current is None:
            raise ApiError(404, "user_not_found", f"no user {name}")
        body = self.json_body()
        fields = await self.fleet_admin.account_fields(body, current)
        active = body.get("active", current.get("active", "1") == "1")
        if not isinstance(active, bool):
            raise ApiError(400, "validation_error", "active must be true or false", field="active")
        if name == admin.name and (not active or fields["role"] != "admin"):
            raise ApiError(409, "self_lockout", "you cannot disable or demote your own account")
        new = {**fields, "active": "1" if active else "0"}
        await self.admin_store.put_account(name, new, admin.audit("user.update", f"user:{name}",
                                                                  changes_between(current, new)))
        dropped = 0
        if not active or fields["role"] != current.get("role") or fields["crew_id"] != current.get("crew_id", "") \
                or fields["unit_id"] != current.get("unit_id", ""):
            dropped = await self.admin_store.drop_sessions_of(name)  # new rights apply at the next login
        self.write_json({"user": user_view(await self.accounts.get(name)), "sessions_ended": dropped})


class UserPassword(AdminHandler):
    """POST /api/admin/users/<name>/password {password?}: reset (generated when absent)."""

    async def post(self, name: str) -> None:
        admin = self.admin()
        if await self.accounts.get(name) is None:
            raise ApiError(404, "user_not_found", f"no user {name}")
        password, generated = password_of(self.json_body())
        hashed = await asyncio.to_thread(accounts.hash_password, password)
        await self.admin_store.put_account(name, {"hash": hashed}, admin.audit(
            "user.password", f"user:{name}", {"password": ["(hidden)", "(generated)" if generated else "(set)"]}))
        dropped = await self.admin_store.drop_sessions_of(name)
        self.write_json({"name": name, "password": password if generated else None, "sessions_ended": dropped})


routes = [
    (r"/api/admin/users", UserCollection),
    (r"/api/admin/users/([a-z0-9_.-]{2,32})", UserDetail),
    (r"/api/admin/users/([a-z0-9_.-]{2,32})/password", UserPassword),
]
