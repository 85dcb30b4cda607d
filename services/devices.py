"""Device credentials: issue, rotate and revoke the MQTT accounts of vehicles and gateways.

A device authenticates to the broker with its id as username and client id and a secret that
this service makes (``servers.broker_credentials.new_secret``) and shows once: only its ``$7$`` hash is
stored (``store.devices.DeviceStore``, PostgreSQL); the broker follows the store within seconds.

- A vehicle credential is issued only for a vehicle of the fleet registry (PostgreSQL,
  ``store.fleet.FleetStore``); a vehicle may publish ``fleet/<its id>/...``.
- A gateway names the registered sensors (the Redis sensor registry the ingest loads) it may
  publish ``scada/<sensor>/...`` for, and whether it is a Sparkplug B edge node (``sparkplug``).
- The JT/T 808 gateway (kind ``jt808``) may publish ``fleet/+/jt808`` and ``fleet/+/jt808/backfill``
  for the vehicles of the terminals it serves (``ingest.jt808_gateway``).
- Revoking keeps the record, inactive (the broker refuses it); issuing again for a revoked id
  makes it active with a new secret.

Every change is an entry of the admin audit trail (the ``admin_audit`` table: who, role, when,
what), written in the credential's transaction, as crews and vehicles are; secrets never reach the
audit or any log.

``seed_demo_devices`` gives the demo's simulated devices their credentials once and keeps their
secrets in a file (mode 600) that the ``simulate`` process reads (see ``simulators.run``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import orjson

from command.errors import Refused
from servers.broker_credentials import hash_password, new_secret, verify_password
from store.db import Database
from store.live import Store
from store.fleet import Audit, FleetStore
from store.devices import KINDS, Device, DeviceStore, valid_device_id

log = logging.getLogger(__name__)

MAX_SENSORS = 10_000


class DeviceRefused(Refused):
    """A device change refused: ``status`` (400, 404, 409) and a stable ``code``
    (``bad_device_id``, ``bad_kind``, ``bad_sensors``, ``unknown_vehicle``, ``unknown_sensor``,
    ``device_not_found``, ``device_exists``), with details such as the unknown sensors."""


@dataclass(frozen=True)
class Actor:
    """Who makes a change: an account name and its role (``system`` for the demo's seeding)."""

    name: str
    role: str = "admin"


SYSTEM = Actor("system", "system")


def device_view(device: Device) -> dict[str, Any]:
    """A device as the admin API shows it: everything but the hash."""
    return {"device_id": device.device_id, "kind": device.kind, "sensors": list(device.sensors),
            "sparkplug": device.sparkplug, "active": device.active, "issued_at": device.issued_at or None,
            "issued_by": device.issued_by or None}


class DeviceService:
    """Issues, rotates and revokes device credentials, with an audit entry for each change."""

    def __init__(self, redis: Any, db: Database | None, *, clock: Callable[[], float] = time.time) -> None:
        self.devices = DeviceStore(db)
        self.fleet = FleetStore(db, redis)
        self.store = Store(redis, db)
        self.clock = clock

    async def list(self) -> list[Device]:
        """Every device, by id."""
        return await self.devices.all()

    async def issue(self, kind: str, device_id: str, sensors: Iterable[str] = (), sparkplug: bool = False, *,
                    by: Actor) -> tuple[Device, str]:
        """A new credential: (device, secret). DeviceRefused for a bad id or kind, an unknown
        vehicle or sensor, or an active device of that id. A revoked id is issued anew."""
        check_id(device_id)
        if kind not in KINDS:
            raise DeviceRefused(400, "bad_kind", f"kind must be one of {', '.join(KINDS)}", field="kind")
        sensors = tuple(dict.fromkeys(sensors))  # sorted as given, duplicates dropped
        if kind == "vehicle":
            if sensors or sparkplug:
                raise DeviceRefused(400, "bad_sensors", "a vehicle publishes only its own fleet topics; "
                                    "sensors and sparkplug are for gateways", field="sensors")
            if await self.fleet.vehicle(device_id) is None:
                raise DeviceRefused(400, "unknown_vehicle", f"no vehicle {device_id} in the fleet registry",
                                    vehicle_id=device_id)
        elif kind == "gateway":
            await self.check_sensors(sensors, sparkplug)
        elif sensors or sparkplug:
            raise DeviceRefused(400, "bad_sensors", "the JT/T 808 gateway publishes only its terminals' fleet/+/jt808 "
                                "topics; sensors and sparkplug are for gateways", field="sensors")
        current = await self.devices.get(device_id)
        if current is not None and current.active:
            raise DeviceRefused(409, "device_exists", f"device {device_id} already has a credential; "
                                "rotate or revoke it", device_id=device_id)
        secret = new_secret()
        device = Device(device_id, kind, await asyncio.to_thread(hash_password, secret), sensors, bool(sparkplug),
                        True, self.clock(), by.name)
        changes = {"kind": [None, kind], "active": [None if current is None else False, True]}
        if sensors:
            changes["sensors"] = [None, list(sensors)]
        if sparkplug:
            changes["sparkplug"] = [None, True]
        await self.devices.put(device, self._audit(by, "device.issue", device_id, changes))
        log.info("devices: %s issued a %s credential for %s", by.name, kind, device_id)
        return device, secret

    async def rotate(self, device_id: str, *, by: Actor) -> tuple[Device, str]:
        """A new secret for an active device (the old one stops working): (device, secret)."""
        current = await self._existing(device_id)
        if not current.active:
            raise DeviceRefused(409, "device_revoked", f"device {device_id} is revoked; issue a new credential",
                                device_id=device_id)
        secret = new_secret()
        device = replace(current, password_hash=await asyncio.to_thread(hash_password, secret),
                         issued_at=self.clock(), issued_by=by.name)
        await self.devices.put(device, self._audit(by, "device.rotate", device_id, {"secret": ["(hidden)", "(new)"]}))
        log.info("devices: %s rotated the credential of %s", by.name, device_id)
        return device, secret

    async def revoke(self, device_id: str, *, by: Actor) -> Device:
        """Deactivate a device's credential (the broker refuses it from then on); idempotent."""
        current = await self._existing(device_id)
        if not current.active:
            return current
        device = replace(current, active=False)
        await self.devices.put(device, self._audit(by, "device.revoke", device_id, {"active": [True, False]}))
        log.info("devices: %s revoked the credential of %s", by.name, device_id)
        return device

    async def check_sensors(self, sensors: Sequence[str], sparkplug: bool) -> None:
        """A gateway's sensors: valid ids, all in the sensor registry; at least one, or Sparkplug."""
        if not isinstance(sparkplug, bool):
            raise DeviceRefused(400, "bad_sensors", "sparkplug must be true or false", field="sparkplug")
        if not sensors and not sparkplug:
            raise DeviceRefused(400, "bad_sensors", "a gateway needs sensors, or sparkplug", field="sensors")
        if len(sensors) > MAX_SENSORS or not all(isinstance(s, str) and valid_device_id(s) for s in sensors):
            raise DeviceRefused(400, "bad_sensors", f"sensors must be at most {MAX_SENSORS} sensor ids",
                                field="sensors")
        known = {row.get("sensor_id") for row in await self.store.sensor_registry()}
        unknown = [s for s in sensors if s not in known]
        if unknown:
            raise DeviceRefused(400, "unknown_sensor", f"not in the sensor registry: {', '.join(unknown[:20])}",
                                sensors=unknown[:100])

    async def _existing(self, device_id: str) -> Device:
        check_id(device_id)
        device = await self.devices.get(device_id)
        if device is None:
            raise DeviceRefused(404, "device_not_found", f"no device {device_id}", device_id=device_id)
        return device

    def _audit(self, by: Actor, action: str, device_id: str, changes: dict[str, Any]) -> Audit:
        return Audit(by.name, by.role, action, f"device:{device_id}", changes, self.clock())


def check_id(device_id: Any) -> str:
    """The device id, or DeviceRefused ``bad_device_id``."""
    if not isinstance(device_id, str) or not valid_device_id(device_id):
        raise DeviceRefused(400, "bad_device_id", "device_id must be 1-64 of A-Z a-z 0-9 _ . - (not . or ..)",
                            field="device_id")
    return device_id


# ---------------------------------------------------------------------- the demo's devices
@dataclass(frozen=True)
class Wanted:
    """A simulated device the demo needs a credential for."""

    kind: str
    device_id: str
    sensors: tuple[str, ...] = ()
    sparkplug: bool = False


def read_secrets(path: Path) -> dict[str, str]:
    """device id -> secret from the demo's device file (``{"devices": {id: secret}}``); {} when
    absent or unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
        return {str(k): str(v) for k, v in dict(data.get("devices") or {}).items()}
    except (OSError, orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}


def sim_devices_path(data_dir: Path) -> Path:
    """Where the demo keeps its simulated devices' secrets: DATA_DIR/sim-devices.json."""
    return Path(data_dir) / "sim-devices.json"  # beside the demo passwords: run/ is emptied at a stop


def write_secrets(path: Path, secrets: dict[str, str]) -> None:
    """Write the demo's device file atomically with mode 600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(orjson.dumps({"devices": dict(sorted(secrets.items()))}, option=orjson.OPT_INDENT_2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


async def seed_demo_devices(service: DeviceService, wanted: Iterable[Wanted], path: Path) -> dict[str, str]:
    """Credentials for the demo's simulated devices, issued once: a device without one is issued,
    one whose secret the file lacks or no longer matches is rotated, a revoked one stays revoked
    (an administrator's decision). Writes the secrets to ``path`` (mode 600); returns what was
    done, device id -> ``issued`` / ``rotated`` / ``revoked`` / ``refused: <code>``."""
    known = read_secrets(path)
    secrets: dict[str, str] = {}
    done: dict[str, str] = {}
    for want in wanted:
        device = await service.devices.get(want.device_id)
        try:
            if device is None:
                _, secrets[want.device_id] = await service.issue(want.kind, want.device_id, want.sensors,
                                                                 want.sparkplug, by=SYSTEM)
                done[want.device_id] = "issued"
            elif not device.active:
                done[want.device_id] = "revoked"
            elif want.device_id in known and await asyncio.to_thread(
                    verify_password, known[want.device_id], device.password_hash):
                secrets[want.device_id] = known[want.device_id]
            else:
                _, secrets[want.device_id] = await service.rotate(want.device_id, by=SYSTEM)
                done[want.device_id] = "rotated"
        except DeviceRefused as exc:
            log.warning("demo: no credential for simulated device %s: %s", want.device_id, exc.message)
            done[want.device_id] = f"refused: {exc.code}"
    if secrets != known or not path.exists():
        write_secrets(path, secrets)
    return done
