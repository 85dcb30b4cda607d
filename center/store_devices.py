"""The device-credential part of the store: the only code that spells these Redis keys.

- ``dev:all`` hash: device id -> JSON of a ``Device`` (its MQTT password as a mosquitto ``$7$``
  hash, never the password itself).
- ``dev:rev`` a random token, new at every ``put``; the process that owns an embedded broker polls it
  and re-renders the broker's password and ACL files when it changes.

A device id is the device's MQTT username and client id: a vehicle id, or a gateway's
(Sparkplug edge node's) id.
"""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import asdict, dataclass

import orjson

log = logging.getLogger(__name__)

DEVICES = "dev:all"
REVISION = "dev:rev"
# no ":" (the separator of mosquitto's password file), no "/", "+", "#" (topic syntax)
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KINDS = ("vehicle", "gateway")


def valid_device_id(device_id: str) -> bool:
    """True for an id usable as MQTT username, client id and one topic level ("." and ".." refused)."""
    return (isinstance(device_id, str) and DEVICE_ID_RE.fullmatch(device_id) is not None
            and device_id not in (".", ".."))


@dataclass(frozen=True)
class Device:
    """A device's broker account: what it may publish follows from ``kind`` (see
    center/broker_auth.py device_rules)."""

    device_id: str            # = the MQTT username (a vehicle id, or a gateway / Sparkplug edge-node id)
    kind: str                 # "vehicle" | "gateway"
    password_hash: str        # mosquitto "$7$" PBKDF2-SHA512 hash (center.broker_auth.hash_password)
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

    def to_json(self) -> bytes:
        """The stored JSON."""
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Device":
        """A Device from its stored JSON (unknown fields ignored)."""
        data = orjson.loads(raw)
        fields = cls.__dataclass_fields__
        return cls(**{k: (tuple(v) if k == "sensors" else v) for k, v in data.items() if k in fields})


class DeviceStore:
    """Device credentials in Redis (an asyncio client, or a sync one for the ``*_sync`` methods)."""

    def __init__(self, redis) -> None:
        self.redis = redis

    async def get(self, device_id: str) -> Device | None:
        """The device, or None."""
        raw = await self.redis.hget(DEVICES, device_id)
        return None if raw is None else Device.from_json(raw)

    async def all(self) -> list[Device]:
        """Every device, sorted by id."""
        raw = await self.redis.hgetall(DEVICES)
        return _parse_all(raw)

    async def put(self, device: Device) -> None:
        """Create or replace a device and bump the revision, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(DEVICES, device.device_id, device.to_json())
            pipe.set(REVISION, secrets.token_hex(8))
            await pipe.execute()

    async def revision(self) -> str:
        """A random token that changes on every put ("" before the first). Not a counter: after a
        Redis wipe or restore a counter can come back to a value the broker already rendered."""
        return _text(await self.redis.get(REVISION))

    # sync twins for the broker-file renderer's thread and the CLI --------------------------------
    def all_sync(self) -> list[Device]:
        """``all`` with a sync redis client."""
        return _parse_all(self.redis.hgetall(DEVICES))

    def revision_sync(self) -> str:
        """``revision`` with a sync redis client."""
        return _text(self.redis.get(REVISION))


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _parse_all(raw: dict) -> list[Device]:
    devices = []
    for key in sorted(raw):
        try:
            devices.append(Device.from_json(raw[key]))
        except (ValueError, TypeError) as exc:  # a hand-edited entry: that device cannot connect
            log.error("device %r: stored entry unreadable (%s); skipped", key, exc)
    return devices
