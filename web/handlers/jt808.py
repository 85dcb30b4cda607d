"""JT/T 808 terminals on the admin API (admin only): list, bind a terminal to a vehicle, unbind.

A terminal is bound by its phone number (the SIM number its frames carry) to a vehicle of the
fleet registry; the JT/T 808 gateway then answers its registration with an authentication code
(鉴权码) that only it sees. ``services.jt808_terminals`` does the work and writes the audit
entries; this module translates HTTP to it (its refusals are domain errors, answered by the one
``write_error``).
"""
from __future__ import annotations

from typing import Any

from services.devices import Actor
from services.jt808_terminals import TerminalService, terminal_view
from store.jt808 import Terminal
from web.base import ApiError
from web.handlers.admin import AdminHandler
from web.handlers.vehicles import iso
from web.openapi_schemas import B, NS, NT, S, arr, obj, op


def view(terminal: Terminal) -> dict[str, Any]:
    """A terminal as the API shows it (times in ISO 8601 UTC; never the code or its hash)."""
    return {**terminal_view(terminal), "registered_at": iso(terminal.registered_at), "bound_at": iso(terminal.bound_at)}


class TerminalHandler(AdminHandler):
    """The terminal service (built once at start-up) and the acting admin."""

    @property
    def terminals(self) -> TerminalService:
        """The JT/T 808 terminal service."""
        if self.services.terminals is None:
            raise ApiError(503, "unavailable", "the JT/T 808 terminals are not served by this process")
        return self.services.terminals

    def actor(self) -> Actor:
        """The admin making the change."""
        account = self.require("admin")
        return Actor(account.name, account.role)


class TerminalList(TerminalHandler):
    """GET /api/admin/jt808/terminals: every bound terminal; POST {phone, vehicle_id, terminal_id?,
    maker?, model?}: bind one (201)."""

    async def get(self) -> None:
        self.require("admin")
        self.write_json({"terminals": [view(t) for t in await self.terminals.list()]})

    async def post(self) -> None:
        by = self.actor()
        terminal = await self.terminals.bind(self.json_body(), by=by)
        self.write_json({"terminal": view(terminal)}, status=201)


class TerminalUnbind(TerminalHandler):
    """POST /api/admin/jt808/terminals/<phone>/unbind: the terminal's code stops working."""

    async def post(self, phone: str) -> None:
        by = self.actor()
        self.write_json({"terminal": view(await self.terminals.unbind(phone, by=by))})


_TERMINAL = obj(["phone", "vehicle_id", "registered"], phone=S, terminal_id=NS, maker=NS, model=NS, plate=NS,
                vehicle_id=S, registered=B, registered_at=NT, bound_at=NT, bound_by=NS)
_BIND = obj(["phone", "vehicle_id"], phone=S, vehicle_id=S, terminal_id=S, maker=S, model=S)
openapi = {
    "GET /api/admin/jt808/terminals": op("Every JT/T 808 terminal bound to a vehicle (never its code)", "admin",
                                         obj(["terminals"], terminals=arr(_TERMINAL))),
    "POST /api/admin/jt808/terminals": op("Bind a JT/T 808 terminal (its phone number) to a vehicle (400 bad_phone, "
                                          "bad_field, unknown_vehicle; 409 terminal_exists, vehicle_has_terminal, "
                                          "vehicle_inactive)", "admin", obj(["terminal"], terminal=_TERMINAL),
                                          status=201, body=_BIND, errors=(400, 401, 403, 409)),
    "POST /api/admin/jt808/terminals/{}/unbind": op("Unbind a JT/T 808 terminal: its authentication code stops "
                                                    "working", "admin", obj(["terminal"], terminal=_TERMINAL),
                                                    errors=(400, 401, 403, 404)),
}

routes = [
    (r"/api/admin/jt808/terminals", TerminalList),
    (r"/api/admin/jt808/terminals/([^/]{1,200})/unbind", TerminalUnbind),
]
