"""Device credentials on the admin API (admin only): list, issue, rotate, revoke.

A device (a vehicle, or a gateway for SCADA sensors and Sparkplug B) logs in to the MQTT broker
with its id as username and client id and the secret answered once by ``issue`` or ``rotate``;
only its hash is kept, so a lost secret is replaced by rotating. ``services.devices`` does the
work and writes the audit entries; this module translates HTTP to it (its refusals are domain
errors, answered by the one ``write_error``). Answers that carry a secret are sent with ``Cache-Control: no-store``.
"""
from __future__ import annotations

from typing import Any

from store.devices import KINDS
from store.devices import Device
from services.devices import Actor, DeviceService, device_view
from web.base import ApiError
from web.handlers.admin import AdminHandler
from web.handlers.vehicles import iso
from web.openapi_schemas import B, NS, NT, S, arr, obj, op


def view(device: Device) -> dict[str, Any]:
    """A device as the API shows it (issued_at in ISO 8601 UTC; never the hash)."""
    return {**device_view(device), "issued_at": iso(device.issued_at) if device.issued_at else None}


class DeviceHandler(AdminHandler):
    """The device service (built once at start-up) and the acting admin."""

    @property
    def devices(self) -> DeviceService:
        """The device-credential service."""
        return self.services.devices

    def actor(self) -> Actor:
        """The admin making the change."""
        account = self.require("admin")
        return Actor(account.name, account.role)

    def write_secret(self, device: Device, secret: str, status: int = 200) -> None:
        """The device and its new secret, not to be cached anywhere."""
        self.set_header("Cache-Control", "no-store")
        self.write_json({"device": view(device), "secret": secret, "username": device.device_id,
                         "client_id": device.device_id}, status=status)


class DeviceList(DeviceHandler):
    """GET /api/admin/devices: every device credential (never a hash or secret);
    POST {kind, device_id, sensors?, sparkplug?}: issue one, answering its secret once."""

    async def get(self) -> None:
        self.require("admin")
        self.write_json({"devices": [view(d) for d in await self.devices.list()], "kinds": list(KINDS)})

    async def post(self) -> None:
        by = self.actor()
        body = self.json_body()
        sensors = body.get("sensors") or []
        if isinstance(sensors, str):
            sensors = [s.strip() for s in sensors.replace("\n", ",").split(",") if s.strip()]
        if not isinstance(sensors, list):
            raise ApiError(400, "bad_sensors", "sensors must be a list of sensor ids", field="sensors")
        sparkplug = body.get("sparkplug", False)
        if not isinstance(sparkplug, bool):
            raise ApiError(400, "bad_sensors", "sparkplug must be true or false", field="sparkplug")
        device, secret = await self.devices.issue(body.get("kind"), body.get("device_id"), sensors, sparkplug,
                                                  by=by)
        self.write_secret(device, secret, 201)


class DeviceRotate(DeviceHandler):
    """POST /api/admin/devices/<device_id>/rotate: a new secret; the old one stops working."""

    async def post(self, device_id: str) -> None:
        by = self.actor()
        device, secret = await self.devices.rotate(device_id, by=by)
        self.write_secret(device, secret)


class DeviceRevoke(DeviceHandler):
    """POST /api/admin/devices/<device_id>/revoke: the broker refuses the device from now on."""

    async def post(self, device_id: str) -> None:
        by = self.actor()
        device = await self.devices.revoke(device_id, by=by)
        self.write_json({"device": view(device)})


_DEVICE = obj(["device_id", "kind", "sensors", "sparkplug", "active"], device_id=S,
              kind={"type": "string", "enum": list(KINDS)}, sensors=arr(S), sparkplug=B, active=B,
              issued_at=NT, issued_by=NS)
_SECRET = obj(["device", "secret", "username", "client_id"], device=_DEVICE, secret=S, username=S, client_id=S)
_ISSUE = obj(["kind", "device_id"], kind={"type": "string", "enum": list(KINDS)}, device_id=S, sensors=arr(S),
             sparkplug=B)
openapi = {
    "GET /api/admin/devices": op("Every device credential (vehicles, gateways); never a secret or hash", "admin",
                                 obj(["devices", "kinds"], devices=arr(_DEVICE), kinds=arr(S))),
    "POST /api/admin/devices": op("Issue a device credential; the secret is answered once (400 bad_device_id, "
                                  "unknown_vehicle, unknown_sensor; 409 device_exists)", "admin", _SECRET,
                                  status=201, body=_ISSUE, errors=(400, 401, 403, 409)),
    "POST /api/admin/devices/{}/rotate": op("A new secret for a device (answered once); the old one stops working",
                                            "admin", _SECRET, errors=(400, 401, 403, 404, 409)),
    "POST /api/admin/devices/{}/revoke": op("Revoke a device credential: the broker refuses it from now on",
                                            "admin", obj(["device"], device=_DEVICE), errors=(400, 401, 403, 404)),
}

routes = [
    (r"/api/admin/devices", DeviceList),
    (r"/api/admin/devices/([^/]{1,200})/rotate", DeviceRotate),
    (r"/api/admin/devices/([^/]{1,200})/revoke", DeviceRevoke),
]
