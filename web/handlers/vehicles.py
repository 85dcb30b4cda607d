"""Vehicles: latest fixes, state and counters, and track history (WGS84 decimal degrees)."""
from __future__ import annotations

import asyncio
import gzip
import math
from datetime import datetime, timezone

import orjson

from store.fleet import FleetStore
from store.tracks import TrackStore
from store.track_codec import fixes_json
from command.tickets import visible_to
from command.ticket_model import Actor, Role
from web.base import ApiError, BaseHandler
from web.openapi_schemas import I, S, arr, obj, op

READ_ROLES = ("dispatcher", "supervisor", "agent", "crew")
OFFICE_ROLES = ("dispatcher", "supervisor", "agent")
UNKNOWN_LIMIT_MAX = 10_000


MAX_EPOCH_S = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last time ISO 8601 (and datetime) spells
MAX_TRACK_RANGE_S = 31 * 86_400  # one request reads at most a month of track
TRACK_GZIP_LEVEL = 1  # a day of track (13.3 MB): 1.8 MB in 50 ms; level 6: 1.4 MB in 160 ms
TRACK_GZIP_MIN = 1024  # shorter answers are sent as they are (tornado's MIN_LENGTH)


def parse_time(text: str | None, default: float) -> float:
    """A query time as UTC epoch seconds: ISO 8601 (an offset, or UTC if none) or epoch seconds
    within 1970..9999; 400 ``bad_time`` for anything else (NaN, Infinity, garbage, out of range)."""
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            value = parsed.timestamp()
        except (ValueError, OverflowError):
            raise ApiError(400, "bad_time", f"not a time: {text[:40]!r} (ISO 8601 or epoch seconds)") from None
    if not (math.isfinite(value) and 0.0 <= value <= MAX_EPOCH_S):
        raise ApiError(400, "bad_time", f"not a time between 1970 and 9999: {text[:40]!r}")
    return value


def iso(t: float | None) -> str | None:
    """UTC epoch seconds as ISO 8601 UTC."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def _with_iso(view: dict) -> dict:
    fix = view.get("fix")
    if fix:
        fix["time"] = iso(fix["t"])
    return view


async def _visible(handler: BaseHandler, views: list[dict]) -> list[dict]:
    """The vehicles the account may see: a crew member only the one its crew holds in the fleet
    registry (`command.tickets.visible_to`, the rule of the ticket API and the live feed)."""
    account = handler.account
    if account is None or account.role != "crew":
        return views
    holders = await FleetStore(handler.store.db, handler.store.redis).assignments()
    actor = Actor(account.name, Role.CREW, account.crew_id)
    return [v for v in views if visible_to(actor, holders.get(v["id"]))]


class VehicleList(BaseHandler):
    """GET /api/vehicles: every vehicle's latest state (a crew member: its crew's vehicle)."""

    async def get(self) -> None:
        self.require(*READ_ROLES)
        cfg = self.config
        views = await _visible(self, await self.store.vehicles(stale_s=cfg.VEHICLE_STALE_S,
                                                               offline_s=cfg.VEHICLE_OFFLINE_S))
        self.write_json({"vehicles": [_with_iso(v) for v in views], "now": iso(self.store.clock.now())})


class VehicleDetail(BaseHandler):
    """GET /api/vehicles/<id>: latest fix, state and counters (a crew member: only its crew's
    vehicle; another looks absent)."""

    async def get(self, vehicle_id: str) -> None:
        self.require(*READ_ROLES)
        cfg = self.config
        view = await self.store.vehicle(vehicle_id, stale_s=cfg.VEHICLE_STALE_S, offline_s=cfg.VEHICLE_OFFLINE_S)
        if view is None or not await _visible(self, [view]):
            raise ApiError(404, "vehicle_not_found", f"no vehicle {vehicle_id}")
        self.write_json(_with_iso(view))


def time_range(handler: BaseHandler, longest_s: float) -> tuple[float, float]:
    """The ``since`` and ``until`` of a track query (default: the hour before until, and now, on
    the center's clock, as fix times are: runtime.clock); 400 ``bad_time`` when since is after
    until or they are more than longest_s apart."""
    until = parse_time(handler.get_argument("until", None), handler.store.clock.now())
    since = parse_time(handler.get_argument("since", None), until - 3600)
    if since > until:
        raise ApiError(400, "bad_time", "since is after until")
    if until - since > longest_s:
        raise ApiError(400, "bad_time", f"at most {longest_s / 86_400:g} days of track per request")
    return since, until


class VehicleTrack(BaseHandler):
    """GET /api/vehicles/<id>/track?since=&until=: fixes in time order (default: last hour), from
    the archive and the live hours alike (`store.tracks`)."""

    count_refusals = True

    async def get(self, vehicle_id: str) -> None:
        self.require("dispatcher", "supervisor", "admin")
        since, until = time_range(self, MAX_TRACK_RANGE_S)
        # the archive (PostgreSQL) and the live hours (Redis), merged; either down: a 503 (web.base)
        hours = await TrackStore(self.store.db, self.store.redis).hours(vehicle_id, since, until)
        # a day at 1 Hz is 86,400 fixes: their JSON is written column by column (store.track_codec),
        # the very bytes write_json would give for the fix dicts
        count, fixes = fixes_json(hours, since, until)
        head = orjson.dumps({"vehicle_id": vehicle_id, "since": iso(since), "until": iso(until), "count": count,
                             "fixes": []})
        self.set_header("Content-Type", "application/json; charset=utf-8")
        body = b"".join((memoryview(head)[:-len(b"[]}")], fixes, b"}"))  # one copy of 13 MB a day, not two
        if len(body) >= TRACK_GZIP_MIN and "gzip" in self.request.headers.get("Accept-Encoding", ""):
            # compressed here, at level 1 in a thread (zlib lets go of the GIL): tornado's own gzip,
            # level 6 on the event loop, would hold the process's other requests 160 ms for a day
            body = await asyncio.to_thread(gzip.compress, body, TRACK_GZIP_LEVEL, mtime=0)
            self.set_header("Content-Encoding", "gzip")  # tornado's transform leaves it (and adds Vary)
        self.finish(body)


class UnknownVehicles(BaseHandler):
    """GET /api/vehicles/unknown?limit=: vehicles not in the fleet registry whose messages the
    ingest kept aside (not on the map), newest first, with their last topic, time and count."""

    async def get(self) -> None:
        self.require(*OFFICE_ROLES)
        text = self.get_argument("limit", "100")
        if not text.isdigit() or not 1 <= int(text) <= UNKNOWN_LIMIT_MAX:
            raise ApiError(400, "bad_limit", f"limit must be a whole number from 1 to {UNKNOWN_LIMIT_MAX}")
        kept = await self.store.unknown_vehicles(int(text))
        for entry in kept["vehicles"]:
            entry["time"] = iso(entry.pop("at"))
        self.write_json(kept)


_KEPT_ASIDE = obj(["vehicle_id", "topic", "time", "count"], vehicle_id=S, topic=S, time=S, count=I)
openapi = {
    "GET /api/vehicles/unknown": op("Vehicles not in the fleet registry whose messages were kept aside, newest first",
                                    "agent, dispatcher, supervisor",
                                    obj(["vehicles", "total"], vehicles=arr(_KEPT_ASIDE), total=I),
                                    query=(("limit", "integer", f"1..{UNKNOWN_LIMIT_MAX}, default 100"),)),
}

routes = [
    (r"/api/vehicles", VehicleList),
    (r"/api/vehicles/unknown", UnknownVehicles),
    (r"/api/vehicles/([A-Za-z0-9_.:-]{1,64})", VehicleDetail),
    (r"/api/vehicles/([A-Za-z0-9_.:-]{1,64})/track", VehicleTrack),
]
