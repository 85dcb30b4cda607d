"""Track replay (轨迹回放) of one vehicle: its fixes of a time range read from the track store (the
archive and the live hours, `store.tracks`), summarised by `gis.replay` (distance and time driven,
time stopped, the stops 停留点), thinned for drawing, and exported as GPX or KML
(`gis.track_export`). The numpy work and the XML run in a thread, off the event loop.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from command.ticket_model import Ticket
from gis import replay as rp
from gis.track_export import to_gpx, to_kml
from store.track_codec import columns, select
from store.tracks import TrackStore

MAX_REPLAY_S = 7 * 86_400  # one replay covers at most a week (604,800 fixes at 1 Hz)
MAX_EXPORT_S = 86_400  # one GPX or KML file at most a day (a day's GPX: about 20 MB)
POINTS_DEFAULT = 2_000  # fixes drawn at once; play-back asks for a window's full resolution
POINTS_MAX = 20_000


def _track(hours: list[tuple[int, bytes]], since: float, until: float) -> rp.Track:
    rec, _, t = select(hours, since, until)
    return rp.as_track({"t": t, **columns(rec)})


def _worked(summary: rp.Replay, tickets: Sequence[Ticket]) -> list[dict[str, Any]]:
    """The tickets worked on the way (`gis.replay.tickets_on_the_way`: a stop near the ticket's
    place during its field time, from its dispatch, else its creation, to its resolution or
    closing), in the order given."""
    known = {t.number: t for t in tickets if t.lon is not None and t.lat is not None}
    places = [{"id": t.number, "lon": t.lon, "lat": t.lat,
               "start": (t.dispatched_at or t.created_at).timestamp(),
               "end": None if (t.resolved_at or t.closed_at) is None else (t.resolved_at or t.closed_at).timestamp()}
              for t in known.values()]
    return [{"number": w.ticket_id, "type": known[w.ticket_id].type.value, "state": known[w.ticket_id].state.value,
             "lon": known[w.ticket_id].lon, "lat": known[w.ticket_id].lat, "stops": list(w.stops),
             "on_site_s": round(w.on_site_s, 1), "distance_m": round(w.distance_m, 1)}
            for w in rp.tickets_on_the_way(summary, places)]


def _view(track: rp.Track, points: int, tickets: Sequence[Ticket] = ()) -> dict[str, Any]:
    summary = rp.summarize(track)
    drawn = rp.thin(track, points, replay=summary) if len(track) >= 2 else np.arange(len(track))
    picked = {key: getattr(track, key)[drawn] for key in ("t", "lat", "lon", "speed_kmh", "course_deg")}
    return {
        "fixes": len(track),
        "summary": {"start": summary.start, "end": summary.end, "distance_m": round(summary.distance_m, 1),
                    "driving_s": summary.driving_s, "stopped_s": summary.stopped_s, "gap_s": summary.gap_s,
                    "max_speed_kmh": round(summary.max_speed_kmh, 1),
                    "avg_speed_kmh": round(summary.avg_speed_kmh, 1)},
        "stops": [{"start": s.start, "end": s.end, "duration_s": s.duration_s, "lon": round(s.lon, 7),
                   "lat": round(s.lat, 7), "fixes": s.fixes} for s in summary.stops],
        "segments": [[float(track.t[a]), float(track.t[b])] for a, b in summary.segments],  # split at gaps
        "tickets": _worked(summary, tickets),
        "points": {key: [None if v != v else round(v, 3 if key == "t" else 7) for v in values.tolist()]  # NaN: unknown
                   for key, values in picked.items()},
    }


async def replay_view(tracks: TrackStore, vehicle_id: str, since: float, until: float,
                      points: int = POINTS_DEFAULT, tickets: Sequence[Ticket] = ()) -> dict[str, Any]:
    """What the console's replay draws of a vehicle between since and until (UTC epoch s): the
    summary, the stops, the line's segments (split at gaps), at most `points` fixes to draw, and
    of `tickets` (its crew's of the period) those it worked on the way."""
    hours = await tracks.hours(vehicle_id, since, until)
    track = await asyncio.to_thread(_track, hours, since, until)
    return {"vehicle_id": vehicle_id, "since": since, "until": until,
            **await asyncio.to_thread(_view, track, points, tickets)}


async def export(tracks: TrackStore, vehicle_id: str, since: float, until: float, fmt: str, *,
                 name: str, description: str = "") -> bytes:
    """The vehicle's track between since and until as a GPX 1.1 or KML 2.2 file (`fmt`)."""
    hours = await tracks.hours(vehicle_id, since, until)

    def build() -> bytes:
        track = _track(hours, since, until)
        summary = rp.summarize(track)
        writer = to_gpx if fmt == "gpx" else to_kml
        return writer(track, name=name, description=description, replay=summary)
    return await asyncio.to_thread(build)
