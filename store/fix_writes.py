"""One ingest batch of fixes as the Redis write script (`store.live.WRITE_FIXES`) takes it:
`FixRecord` is one fix as the ingest hands it over; `prepare` gives the script's arguments with
no I/O; `fix_text` is a vehicle's value in the ``veh:fix`` hash. `store.live.Store.write_fixes`
sends them.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple

import orjson

from store.track_codec import pack_fix

__all__ = ["GEO_LAT_LIMIT", "FixRecord", "fix_text", "prepare"]

# Redis GEO's latitude bound (the Web Mercator limit): GEOADD refuses a member beyond it, and a
# refused GEOADD would fail the whole script, so such a position stays out of ``veh:geo``.
GEO_LAT_LIMIT = 85.05112878


class FixRecord(NamedTuple):
    """One accepted fix: where it goes (live position, track) and its values; ``t`` is UTC epoch
    seconds (``fix.time.timestamp()``)."""

    vehicle_id: str
    t: float
    lat: float
    lon: float
    speed_kmh: float | None
    course_deg: float | None
    alt_m: float | None
    quality: int | None
    mode: str | None
    sats: int | None
    hdop: float | None
    talker: str
    live: bool
    track: bool


def _rounded(value: Any, digits: int) -> Any:
    """A float rounded to `digits` decimals, as the latest fix stores it; anything else as it is."""
    return round(value, digits) if type(value) is float else value


def fix_text(fix: FixRecord, seen: float | None = None, rounded: tuple[Any, Any, Any] | None = None) -> str:
    """A vehicle's value in the ``veh:fix`` hash: `store.live.FIX_FIELDS` joined by commas (empty
    for unknown; ``seen`` left out when None), one value a fix rather than twelve. Numbers are
    orjson's text; lat and lon are rounded to 1e-9 degree, the speed to 0.001 km/h (``rounded``:
    those three, when the caller has them) and ``seen`` to the millisecond, which keeps the text
    about 80 characters rather than 117."""
    values = (fix.t, *(rounded or _rounded_position(fix)), *fix[5:12])
    if seen is not None:
        values += (_rounded(seen, 3),)
    return orjson.dumps(values)[1:-1].decode().replace('"', "").replace("null", "")


def _rounded_position(fix: FixRecord) -> tuple[Any, Any, Any]:
    """The latitude, longitude and speed of a fix as the latest fix stores them (`fix_text`)."""
    return _rounded(fix.lat, 9), _rounded(fix.lon, 9), _rounded(fix.speed_kmh, 3)


def _tracks(records: Iterable[FixRecord]) -> dict[tuple[str, int], list[bytes]]:
    """The packed records of the track fixes, by (vehicle, hour) track, in order."""
    tracks: dict[tuple[str, int], list[bytes]] = {}
    for fix in records:
        if fix.track:
            hour, record = pack_fix(fix)
            tracks.setdefault((fix.vehicle_id, hour), []).append(record)
    return tracks


def prepare(fixes: Iterable[FixRecord], counters: Mapping[str, Mapping[str, int]], seen: Mapping[str, float],
            retention_s: float, signals: Mapping[str, str] | None, indexed: dict | None,
            known: set | None, track: Iterable[FixRecord] | None = None
            ) -> tuple[list[dict[str, Any]], list | None, list, set]:
    """One batch as `store.live.WRITE_FIXES` takes it: ``(updates, args, new_hours, ids)`` where
    ``updates`` are the live messages, ``args`` the script's arguments (None when there is nothing
    to write), ``new_hours`` the (vehicle, hour) tracks indexed by this write and ``ids`` the
    vehicle ids it adds to ``veh:ids`` (see `store.live.Store.write_fixes` for the caches).
    The track part of ``fixes`` is written, or, when ``track`` is given, that of ``track``'s."""
    fixes = list(fixes)
    latest: dict[str, FixRecord] = {}
    for fix in fixes:
        if fix.live:
            prev = latest.get(fix.vehicle_id)
            if prev is None or fix.t > prev.t:
                latest[fix.vehicle_id] = fix
    tracks = _tracks(fixes if track is None else track)
    signals = signals or {}
    updates, fix_rows, seen_rows, signal_rows, geo = [], [], [], [], []
    for vid, fix in latest.items():
        lat, lon, speed = rounded = _rounded_position(fix)
        fix_rows += [vid, fix_text(fix, seen.get(vid, fix.t), rounded)]
        signal = signals.get(vid)
        if signal:
            signal_rows += [vid, signal]
        if -180.0 <= fix.lon <= 180.0 and -GEO_LAT_LIMIT <= fix.lat <= GEO_LAT_LIMIT:
            geo += [fix.lon, fix.lat, vid]  # JSON numbers: Lua hands GEOADD their exact text
        update = {"id": vid, "t": fix.t, "lat": lat, "lon": lon, "spd": speed, "crs": fix.course_deg}
        if signal:  # set after the fix in this batch (a terminal's alarm bits): it stands
            update["sig"] = signal
        updates.append(update)
    for vid, when in seen.items():
        if vid not in latest:
            seen_rows += [vid, repr(when)]
            if signals.get(vid):
                signal_rows += [vid, signals[vid]]
    blob, trk, idx, new_hours = [], [], [], []
    for (vid, hour), records in tracks.items():
        data = b"".join(records)
        key = f"trk:{vid}:{hour}"
        trk += [key, len(data)]
        blob.append(data)
        if indexed is None or (vid, hour) not in indexed:
            idx += [key, vid, str(hour)]
            new_hours.append((vid, hour))
    cnt = [x for vid, deltas in counters.items() for name, delta in deltas.items() for x in (vid, name, delta)]
    ids = set(seen) | set(counters)
    if known is not None:
        ids -= known
    if not (fix_rows or seen_rows or trk or cnt or ids):
        return updates, None, new_hours, ids
    doc = {"ttl": int(retention_s) + 3600, "ids": list(ids), "fix": fix_rows, "geo": geo, "seen": seen_rows,
           "sig": signal_rows, "trk": trk, "idx": idx, "cnt": cnt}
    return updates, [orjson.dumps(doc), b"".join(blob), orjson.dumps(updates) if updates else b""], new_hours, ids
