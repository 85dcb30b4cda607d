"""Track replay (轨迹回放): GET /api/vehicles/<id>/replay?since=&until=&points= (the summary, the
stops, the line to draw) and GET /api/vehicles/<id>/replay.gpx|.kml (the track as a file);
`services.track_replay` does the work."""
from __future__ import annotations

from datetime import datetime, timezone

from command.ticket_model import Ticket
from services.track_replay import MAX_EXPORT_S, MAX_REPLAY_S, POINTS_DEFAULT, POINTS_MAX, export, replay_view
from store.fleet import FleetStore
from store.tracks import TrackStore
from web.base import ApiError, BaseHandler
from web.handlers.vehicles import time_range
from web.openapi_schemas import ANY_OBJ, I, N, S, arr, obj, op

ROLES = ("dispatcher", "supervisor", "admin")
FILE_TYPES = {"gpx": "application/gpx+xml", "kml": "application/vnd.google-earth.kml+xml"}


class _ReplayBase(BaseHandler):
    count_refusals = True

    def _range(self, longest_s: float) -> tuple[float, float]:
        """since and until of the query (`web.handlers.vehicles.time_range`), for the roles that replay."""
        self.require(*ROLES)
        return time_range(self, longest_s)


class VehicleReplay(_ReplayBase):
    """GET /api/vehicles/<id>/replay: a vehicle's movements between since and until."""

    async def get(self, vehicle_id: str) -> None:
        since, until = self._range(MAX_REPLAY_S)
        text = self.get_argument("points", str(POINTS_DEFAULT))
        if not text.isdigit() or not 2 <= int(text) <= POINTS_MAX:
            raise ApiError(400, "bad_points", f"points must be a whole number from 2 to {POINTS_MAX}")
        self.write_json(await replay_view(TrackStore(self.store.db, self.store.redis), vehicle_id, since, until,
                                          int(text), await self._crew_tickets(vehicle_id, since, until)))

    async def _crew_tickets(self, vehicle_id: str, since: float, until: float) -> list[Ticket]:
        """The tickets of the crew that holds the vehicle (in the fleet registry) open at some time
        of the period; none without a crew or a ticket service in this process."""
        crew = (await FleetStore(self.store.db, self.store.redis).assignments()).get(vehicle_id)
        if crew is None or self.services.tickets is None:
            return []
        records = await self.services.tickets.store.worked_between(
            crew, datetime.fromtimestamp(since, timezone.utc), datetime.fromtimestamp(until, timezone.utc))
        return [record.ticket for record in records]


class VehicleReplayFile(_ReplayBase):
    """GET /api/vehicles/<id>/replay.gpx or .kml: the track as a GPX 1.1 or KML 2.2 file."""

    fmt = "gpx"

    async def get(self, vehicle_id: str) -> None:
        since, until = self._range(MAX_EXPORT_S)
        fmt = self.fmt
        body = await export(TrackStore(self.store.db, self.store.redis), vehicle_id, since, until, fmt,
                            name=f"{vehicle_id} 轨迹", description=f"{vehicle_id}: {since:.0f}–{until:.0f} (UTC epoch s)")
        self.set_header("Content-Type", FILE_TYPES[fmt])
        self.set_header("Content-Disposition", f'attachment; filename="{vehicle_id}-{since:.0f}.{fmt}"')
        self.finish(body)


_TIME_RANGE = (("since", "string", "ISO 8601 or epoch s (default: an hour before until)"),
               ("until", "string", "ISO 8601 or epoch s (default: now)"))
_STOP = obj(["start", "end", "duration_s", "lon", "lat", "fixes"], start=N, end=N, duration_s=N, lon=N, lat=N, fixes=I)
_WORKED = obj(["number", "type", "state", "lon", "lat", "stops", "on_site_s", "distance_m"], number=S, type=S,
              state=S, lon=N, lat=N, stops=arr(I), on_site_s=N, distance_m=N)
_REPLAY = obj(["vehicle_id", "since", "until", "fixes", "summary", "stops", "segments", "tickets", "points"],
              vehicle_id=S, since=N, until=N, fixes=I, summary=ANY_OBJ, stops=arr(_STOP), segments=arr(arr(N)),
              tickets=arr(_WORKED), points=ANY_OBJ)


def _file_op(kind: str, media: str) -> dict:
    out = op(f"A vehicle's track as a {kind} file (at most a day)", ", ".join(ROLES), ANY_OBJ, query=_TIME_RANGE)
    out["responses"]["200"]["content"] = {media: {"schema": {"type": "string"}}}
    return out


openapi = {
    "GET /api/vehicles/{}/replay": op(
        "Track replay: distance and time driven, stops (停留点), the line's segments and at most `points` fixes "
        "to draw (at most 7 days)", ", ".join(ROLES), _REPLAY,
        query=(*_TIME_RANGE, ("points", "integer", f"fixes to draw, 2..{POINTS_MAX}, default {POINTS_DEFAULT}"))),
    "GET /api/vehicles/{}/replay.gpx": _file_op("GPX 1.1", FILE_TYPES["gpx"]),
    "GET /api/vehicles/{}/replay.kml": _file_op("KML 2.2", FILE_TYPES["kml"]),
}

class VehicleReplayKml(VehicleReplayFile):
    """GET /api/vehicles/<id>/replay.kml: the track as a KML 2.2 file."""

    fmt = "kml"


routes = [
    (r"/api/vehicles/([A-Za-z0-9_.:-]{1,64})/replay", VehicleReplay),
    (r"/api/vehicles/([A-Za-z0-9_.:-]{1,64})/replay\.gpx", VehicleReplayFile),
    (r"/api/vehicles/([A-Za-z0-9_.:-]{1,64})/replay\.kml", VehicleReplayKml),
]
