"""Device credentials in PostgreSQL: the only code that spells the tables ``devices`` and
``device_revision`` (store/migrations/0002_fleet.sql).

- ``devices``: one row per device: a ``Device`` (its MQTT password as a mosquitto ``$7$`` hash,
  never the password itself).
- ``device_revision``: a random token, new at every ``put``; the process that owns an embedded
  broker polls it (``DeviceReader``, a plain connection of its sync thread's own) and re-renders
  the broker's password and ACL files when it changes (``servers.broker_files.BrokerSync``). A token, not a counter: a database restored
  from a backup must not come back to a value the broker already rendered.

A device id is the device's MQTT username and client id: a vehicle id, a gateway's (Sparkplug
edge node's) id, or the JT/T 808 gateway's (kind ``jt808``, migration 0015).
"""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from store.db import Database
from store.accounts import NoDatabase
from store.fleet import Audit, write_audit

log = logging.getLogger(__name__)

_COLUMNS = "device_id, kind, password_hash, sensors, sparkplug, active, issued_at, issued_by"
_PUT = (f"INSERT INTO devices ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET kind = EXCLUDED.kind, password_hash = EXCLUDED.password_hash,"
        " sensors = EXCLUDED.sensors, sparkplug = EXCLUDED.sparkplug, active = EXCLUDED.active,"
        " issued_at = EXCLUDED.issued_at, issued_by = EXCLUDED.issued_by")
_BUMP = ("INSERT INTO device_revision (singleton, rev) VALUES (true, %s)"
         " ON CONFLICT (singleton) DO UPDATE SET rev = EXCLUDED.rev")
# no ":" (the separator of mosquitto's password file), no "/", "+", "#" (topic syntax)
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KINDS = ("vehicle", "gateway", "jt808")


def valid_device_id(device_id: str) -> bool:
    """True for an id usable as MQTT username, client id and one topic level ("." and ".." refused)."""
    return (isinstance(device_id, str) and DEVICE_ID_RE.fullmatch(device_id) is not None
            and device_id not in (".", ".."))


@dataclass(frozen=True)
class Device:
    """A device's broker account: what it may publish follows from ``kind`` (see
    servers/broker_credentials.py device_rules)."""

    device_id: str            # = the MQTT username (a vehicle id, or a gateway / Sparkplug edge-node id)
    kind: str                 # "vehicle" | "gateway" | "jt808" (the JT/T 808 gateway)
    password_hash: str        # mosquitto "$7$" PBKDF2-SHA512 hash (servers.broker_credentials.hash_password)
    sensors: tuple[str, ...] = ()   # gateway: sensor ids it may publish scada/<id>/... for
    sparkplug: bool = False   # gateway: may publish Sparkplug B as edge node <device_id> (any group)
    active: bool = True
    issued_at: float = 0.0    # UTC epoch s
    issued_by: str = ""

    def __post_init__(self) -> None:
        if not valid_device_id(self.device_id):
            raise ValueError(f"invalid device id {self.device_id!r}")
        if self.kind not in KINDS:
            raise ValueError(f"invalid device kind {self.kind!r} (one of {', '.join(KINDS)})")
        bad = [s for s in self.sensors if not valid_device_id(s)]
        if bad:
            raise ValueError(f"invalid sensor id(s) {bad!r}")
        object.__setattr__(self, "sensors", tuple(self.sensors))


def _device(row: Any) -> Device | None:
    """A ``devices`` row as a Device; None (logged) for a row a hand edit made unusable."""
    try:
        return Device(row[0], row[1], row[2], tuple(row[3] or ()), bool(row[4]), bool(row[5]), float(row[6]), row[7])
    except (ValueError, TypeError) as exc:  # that device cannot connect
        log.error("device %r: stored row unreadable (%s); skipped", row[0], exc)
        return None


def _params(device: Device) -> tuple:
    return (device.device_id, device.kind, device.password_hash, list(device.sensors), device.sparkplug,
            device.active, float(device.issued_at), device.issued_by)


class DeviceStore:
    """Device credentials in PostgreSQL (the process's async pool)."""

    def __init__(self, db: Database | None) -> None:
        self.db = db if db is not None else NoDatabase("the device credentials")

    async def get(self, device_id: str) -> Device | None:
        """The device, or None."""
        async with self.db.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM devices WHERE device_id = %s", (device_id,))
            row = await cur.fetchone()
        return None if row is None else _device(row)

    async def all(self) -> list[Device]:
        """Every device, sorted by id."""
        async with self.db.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM devices ORDER BY device_id")
            rows = await cur.fetchall()
        return [d for d in map(_device, rows) if d is not None]

    async def put(self, device: Device, audit: Audit | None = None) -> None:
        """Create or replace a device, with its audit row, and set a new revision: one transaction."""
        async with self.db.transaction() as conn:
            await conn.execute(_PUT, _params(device))
            await conn.execute(_BUMP, (secrets.token_hex(8),))
            if audit is not None:
                await write_audit(conn, audit)

    async def revision(self) -> str:
        """A random token that changes on every put ("" before the first)."""
        row = await self.db.fetchone("SELECT rev FROM device_revision")
        return "" if row is None else row["rev"]


# with a plain (sync) connection: the broker-file renderer's thread and the CLI -----------------
def read_all(conn: psycopg.Connection) -> list[Device]:
    """``DeviceStore.all`` on a sync connection."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM devices ORDER BY device_id").fetchall()
    return [d for d in map(_device, rows) if d is not None]


def read_revision(conn: psycopg.Connection) -> str:
    """``DeviceStore.revision`` on a sync connection."""
    row = conn.execute("SELECT rev FROM device_revision").fetchone()
    return "" if row is None else row[0]


class DeviceReader:
    """The device credentials for a thread (the embedded broker's file sync): `revision` and
    `devices` on a plain autocommit connection of its own (each read sees a committed state),
    opened again after a lost server."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
        return self._conn

    def revision(self) -> str:
        """`read_revision`."""
        return read_revision(self._connection())

    def devices(self) -> list[Device]:
        """`read_all`."""
        return read_all(self._connection())

    def close(self) -> None:
        """Close the connection (the next read opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
