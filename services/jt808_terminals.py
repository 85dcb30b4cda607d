"""JT/T 808 terminals: an administrator binds a terminal (its phone number, optionally its terminal
id, maker, model) to a vehicle of the fleet registry; the gateway (``ingest.jt808_gateway``)
asks this service whether a registering terminal may register and whether an authenticating one
presents the code it was issued.

Registration (0x0100) answers, in this order (``command.jt808_registration``, pure):
  REGISTER_NO_TERMINAL   no terminal of this phone number is bound ("数据库中无该终端");
  REGISTER_NO_VEHICLE    its vehicle is deactivated (or gone);
  REGISTER_TERMINAL_TAKEN the phone is bound with another terminal id than the one sent (a second
                         device claiming the number; a binding without terminal id takes the first);
  REGISTER_VEHICLE_TAKEN the plate sent is a registry vehicle bound to another terminal;
  REGISTER_OK            with a new authentication code (鉴权码): 16 random hex digits, of which
                         only the SHA-256 is kept (a random code needs no slow hash: it cannot be
                         guessed from a dictionary). A terminal registering again gets a new code.
Authentication (0x0102) succeeds when the code's SHA-256 is the one kept (constant-time compare).

Binding and unbinding are admin changes: one ``admin_audit`` row each (``jt808.bind``,
``jt808.unbind``, target ``jt808:<phone>``), in the change's transaction. Registrations are the
terminal's, not a person's: they are logged and counted by the gateway, not audited.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from command.errors import Refused
from command.jt808_registration import REGISTER_NO_TERMINAL, REGISTER_OK, registration_result
from command.plates import normalize_plate
from services.devices import Actor
from store.db import Database
from store.fleet import Audit, valid_vehicle_id
from store.jt808 import Terminal, TerminalStore, TerminalTaken

log = logging.getLogger(__name__)

PHONE_RE = re.compile(r"[0-9]{1,20}")
TEXT_MAX = 30  # the longest text field of a 2019 registration


class TerminalRefused(Refused):
    """A terminal change refused: ``bad_phone``, ``bad_field``, ``unknown_vehicle``,
    ``vehicle_inactive``, ``terminal_exists``, ``vehicle_has_terminal``, ``terminal_not_found``."""


def phone_key(phone: str) -> str:
    """A phone number as the table keeps it: the digits without leading zeros (a 2013 header's 12
    digits and a 2019 header's 20 name the same terminal)."""
    return phone.lstrip("0") or "0"


def code_hash(code: str) -> str:
    """The hex SHA-256 kept of an authentication code."""
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def new_code() -> str:
    """A new authentication code: 16 random hex digits."""
    return secrets.token_hex(8)


def terminal_view(terminal: Terminal) -> dict[str, Any]:
    """A terminal as the admin API shows it (never the code or its hash)."""
    return {"phone": terminal.phone, "terminal_id": terminal.terminal_id or None, "maker": terminal.maker or None,
            "model": terminal.model or None, "plate": terminal.plate or None, "vehicle_id": terminal.vehicle_id,
            "registered": terminal.registered, "registered_at": terminal.registered_at,
            "bound_at": terminal.bound_at, "bound_by": terminal.bound_by}


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str) or len(value) > TEXT_MAX:
        raise TerminalRefused(400, "bad_field", f"{name} must be text of at most {TEXT_MAX} characters", field=name)
    return value.strip()


class Registration(Protocol):
    """What a registering terminal sent (``ingest.jt808.Registration``, decoded by the gateway)."""

    maker: str
    model: str
    terminal_id: str
    plate_colour: int
    plate: str


@dataclass(frozen=True)
class Registered:
    """A registration's answer: the 0x8100 result, the code (REGISTER_OK only), the vehicle."""

    result: int
    code: str = ""
    vehicle_id: str = ""


class TerminalService:
    """Binds terminals to vehicles (audited) and judges their registrations and authentications."""

    def __init__(self, db: Database | None, *, clock: Callable[[], float] = time.time) -> None:
        self.store = TerminalStore(db)
        self.clock = clock

    async def list(self) -> list[Terminal]:
        """Every bound terminal."""
        return await self.store.all()

    async def bind(self, body: dict[str, Any], *, by: Actor) -> Terminal:
        """Bind a terminal ({phone, vehicle_id, terminal_id?, maker?, model?}) to an active vehicle."""
        phone = body.get("phone")
        if not isinstance(phone, str) or PHONE_RE.fullmatch(phone) is None:
            raise TerminalRefused(400, "bad_phone", "phone must be 1-20 digits (the terminal's SIM number)",
                                  field="phone")
        vehicle_id = body.get("vehicle_id")
        if not isinstance(vehicle_id, str) or not valid_vehicle_id(vehicle_id):
            raise TerminalRefused(400, "unknown_vehicle", "vehicle_id must name a vehicle", field="vehicle_id")
        active = await self.store.vehicle_state(vehicle_id)
        if active is None:
            raise TerminalRefused(400, "unknown_vehicle", f"no vehicle {vehicle_id} in the fleet registry",
                                  vehicle_id=vehicle_id)
        if not active:
            raise TerminalRefused(409, "vehicle_inactive", f"vehicle {vehicle_id} is deactivated",
                                  vehicle_id=vehicle_id)
        now = self.clock()
        terminal = Terminal(phone_key(phone), _text(body, "terminal_id"), _text(body, "maker"), _text(body, "model"),
                            "", vehicle_id, "", None, now, by.name)
        changes = {"vehicle_id": [None, vehicle_id], **({"terminal_id": [None, terminal.terminal_id]}
                                                         if terminal.terminal_id else {})}
        try:
            await self.store.bind(terminal, Audit(by.name, by.role, "jt808.bind", f"jt808:{terminal.phone}",
                                                  changes, now))
        except TerminalTaken as exc:
            if exc.what == "unknown_vehicle":
                raise TerminalRefused(400, "unknown_vehicle", f"no vehicle {vehicle_id}",
                                      vehicle_id=vehicle_id) from None
            if exc.what == "vehicle":
                raise TerminalRefused(409, "vehicle_has_terminal", f"vehicle {vehicle_id} has a terminal already; "
                                      "unbind it first", vehicle_id=vehicle_id) from None
            raise TerminalRefused(409, "terminal_exists", f"terminal {terminal.phone} is bound already; "
                                  "unbind it first", phone=terminal.phone) from None
        log.info("jt808: %s bound terminal %s to vehicle %s", by.name, terminal.phone, vehicle_id)
        return terminal

    async def bind_many(self, pairs: Iterable[tuple[str, str]], *, by: Actor) -> int:
        """Bind (phone, vehicle id) pairs not bound yet, in one statement, with one audit entry for
        the lot (the demo's and the benchmark's terminals); how many were new."""
        now = self.clock()
        terminals = [Terminal(phone_key(phone), "", "", "", "", vid, "", None, now, by.name) for phone, vid in pairs]
        return await self.store.bind_many(terminals, lambda count: Audit(
            by.name, by.role, "jt808.bind", "jt808:*", {"terminals": [None, count]}, now))

    async def unbind(self, phone: str, *, by: Actor) -> Terminal:
        """Unbind a terminal: its code stops working at its next authentication."""
        key = phone_key(phone) if PHONE_RE.fullmatch(phone or "") else None
        if key is None:
            raise TerminalRefused(400, "bad_phone", "phone must be 1-20 digits", field="phone")
        current = await self.store.get(key)
        audit = None if current is None else Audit(by.name, by.role, "jt808.unbind", f"jt808:{key}",
                                                  {"vehicle_id": [current.vehicle_id, None]}, self.clock())
        gone = await self.store.unbind(key, audit) if current is not None else None
        if gone is None:
            raise TerminalRefused(404, "terminal_not_found", f"no terminal {key}", phone=key)
        log.info("jt808: %s unbound terminal %s from vehicle %s", by.name, key, gone.vehicle_id)
        return gone

    async def register(self, phone: str, sent: Registration) -> Registered:
        """Judge a registration; on success issue a new code and keep its hash."""
        key = phone_key(phone)
        terminal = await self.store.get(key)
        if terminal is None:
            return Registered(REGISTER_NO_TERMINAL)
        active = await self.store.vehicle_state(terminal.vehicle_id)
        plate = normalize_plate(sent.plate) if sent.plate_colour else None
        holder = await self.store.plate_holder(plate) if plate else None
        result = registration_result(True, terminal.terminal_id, active, terminal.phone, holder, sent.terminal_id)
        if result != REGISTER_OK:
            return Registered(result, vehicle_id=terminal.vehicle_id)
        code = new_code()
        details = {"maker": sent.maker, "model": sent.model, "terminal_id": sent.terminal_id, "plate": sent.plate}
        await self.store.registered(key, code_hash(code), {k: v[:TEXT_MAX] for k, v in details.items()}, self.clock())
        return Registered(REGISTER_OK, code, terminal.vehicle_id)

    async def authenticate(self, phone: str, code: str) -> str | None:
        """The vehicle id of a terminal presenting the code it was issued, else None."""
        terminal = await self.store.get(phone_key(phone))
        if terminal is None or not terminal.code_hash:
            return None
        if not hmac.compare_digest(code_hash(code), terminal.code_hash):
            return None
        return terminal.vehicle_id
