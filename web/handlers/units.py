"""The organisation tree of responsible units: ``GET /api/units`` (office roles and admin) and
``PATCH /api/admin/units/<id>`` (admin: name, phone, parent, active; audited).

The tree lives in PostgreSQL (``store.units``); each web process seeds it from the city
profile's ``units`` layer on its first units request (as the fleet registry is seeded from the
crews layer), never overwriting a unit an administrator edited.
"""
from __future__ import annotations

import re
import time
from typing import Any

from store.units import CENTER_ID, UnitStore
from web.base import ApiError, BaseHandler
from web.handlers.vehicles import iso
from web.openapi_schemas import B, I, NS, NT, S, arr, obj, op

UNIT_RE = r"([A-Za-z0-9_-]{1,32})"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
PHONE_RE = re.compile(r"^[0-9+\-() ]{0,32}$")
OFFICE = ("agent", "dispatcher", "supervisor")


def unit_view(record: dict[str, Any], depth: int) -> dict[str, Any]:
    """A unit as the API shows it, with its depth in the tree (0: the center)."""
    return {**{k: record[k] for k in ("unit_id", "parent_id", "level", "name", "trades", "phone", "active",
                                      "source", "updated_by")},
            "updated_at": iso(record["updated_at"]), "depth": depth}


def in_tree_order(records: list[dict[str, Any]], root: str) -> list[dict[str, Any]]:
    """The subtree of ``root`` depth first (children by id), each with its depth."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    by_id = {r["unit_id"]: r for r in records}
    for r in records:
        children.setdefault(r["parent_id"], []).append(r)
    out: list[dict[str, Any]] = []
    stack = [(by_id[root], 0)] if root in by_id else []
    while stack:
        record, depth = stack.pop()
        out.append(unit_view(record, depth))
        stack.extend((c, depth + 1) for c in sorted(children.get(record["unit_id"], ()),
                                                    key=lambda c: c["unit_id"], reverse=True))
    return out


class UnitHandler(BaseHandler):
    """The unit store (the city profile's units are seeded at start-up, ``web.app.seed_city``)."""

    @property
    def units(self) -> UnitStore:
        """The unit tree's store."""
        return UnitStore(self.store.db)


class UnitTree(UnitHandler):
    """GET /api/units?under=<id>: the tree (or the subtree under one unit) depth first."""

    async def get(self) -> None:
        self.require(*OFFICE)
        store = self.units
        root = self.get_argument("under", CENTER_ID)
        if not ID_RE.match(root):
            raise ApiError(400, "validation_error", "under must be a unit id", field="under")
        units = in_tree_order(await store.tree(), root)
        if not units:
            raise ApiError(404, "unit_not_found", f"no unit {root}")
        self.write_json({"center_id": CENTER_ID, "units": units})


class UnitDetail(UnitHandler):
    """PATCH /api/admin/units/<id> {name?, phone?, parent_id?, active?}: change a unit."""

    async def patch(self, unit_id: str) -> None:
        account = self.require("admin")
        store = self.units
        changes = self.unit_changes(self.json_body())
        if unit_id == CENTER_ID and changes.get("active") is False:
            raise ApiError(400, "validation_error", "the center cannot be deactivated", field="active")
        unit, diff = await store.update(unit_id, changes, by=account.name, role=account.role, at=time.time())
        self.write_json({"unit": unit_view(unit, len(await store.chain(unit_id)) - 1), "changed": sorted(diff)})

    @staticmethod
    def unit_changes(body: dict[str, Any]) -> dict[str, Any]:
        """The validated fields of a unit edit (only those present)."""
        changes: dict[str, Any] = {}
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not 1 <= len(name.strip()) <= 60:
                raise ApiError(400, "validation_error", "name must be 1-60 characters", field="name")
            changes["name"] = name.strip()
        if "phone" in body:
            phone = body["phone"]
            if not isinstance(phone, str) or not PHONE_RE.match(phone):
                raise ApiError(400, "validation_error", "phone must be at most 32 digits, + - ( ) or spaces",
                               field="phone")
            changes["phone"] = phone.strip()
        if "parent_id" in body:
            parent = body["parent_id"]
            if not isinstance(parent, str) or not ID_RE.match(parent):
                raise ApiError(400, "validation_error", "parent_id must be a unit id", field="parent_id")
            changes["parent_id"] = parent
        if "active" in body:
            if not isinstance(body["active"], bool):
                raise ApiError(400, "validation_error", "active must be true or false", field="active")
            changes["active"] = body["active"]
        if not changes:
            raise ApiError(400, "validation_error", "give at least one of name, phone, parent_id, active")
        return changes


_UNIT = obj(["unit_id", "parent_id", "level", "name", "trades", "phone", "active", "depth"], unit_id=S,
            parent_id=NS, level=I, name=S, trades=arr(S), phone=S, active=B, source=S, updated_at=NT,
            updated_by=S, depth=I)
openapi = {
    "GET /api/units": op("The tree of responsible units (热线中心 → 二级 departments → 三级 stations), depth "
                         "first; `under` gives one unit's subtree", "agent, dispatcher, supervisor, admin",
                         obj(["center_id", "units"], center_id=S, units=arr(_UNIT)),
                         query=(("under", "string", "a unit id (default: the center)"),),
                         errors=(400, 401, 403, 404)),
    "PATCH /api/admin/units/{}": op("Rename a unit, change its phone, move it under another parent or "
                                    "(de)activate it; 400 unknown_parent / cycle / level_mismatch", "admin",
                                    obj(["unit", "changed"], unit=_UNIT, changed=arr(S)),
                                    body=obj([], name=S, phone=S, parent_id=S, active=B),
                                    errors=(400, 401, 403, 404)),
}

routes = [
    (r"/api/units", UnitTree),
    (rf"/api/admin/units/{UNIT_RE}", UnitDetail),
]
