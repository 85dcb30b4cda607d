"""A vehicle's track as GPX 1.1 and KML 2.2 files (轨迹导出), written with the standard library's
xml.etree: WGS84 coordinates as stored (7 decimals, the packed track's 1e-7 degree), times in UTC
ISO 8601 (milliseconds only when a fix has them).

GPX 1.1 (http://www.topografix.com/GPX/1/1): one ``trk`` with a ``trkseg`` per segment of the
replay (the track split at gaps and jumps, as GPX asks: "start a new Track Segment for each
continuous span"), each ``trkpt`` with ``ele`` when known and ``time``; speed and course go into
a ``trkpt`` extension in Garmin's TrackPointExtension v2 namespace (``gpxtpx:speed`` in m/s,
``gpxtpx:course`` in degrees), when known. Not the GPX 1.0 way (``speed`` and ``course`` as
children of ``trkpt``): GPX 1.1's schema refuses those. Each stop is also a ``wpt`` (before the
track, as the schema orders).

Cost: a day at 1 Hz is 600,000 elements, built and written in Python: 20.6 MB of GPX took 3.8 s
of CPU and about 220 MB of memory at its peak on the shared machine at a load average of 5 (9.4 MB
of KML: 1.1 s, 83 MB), so a caller serving it runs it off the event loop.

KML 2.2 (http://www.opengis.net/kml/2.2, with Google's gx extension for the timed track): a
Placemark with the track as a LineString per segment (a MultiGeometry), a Placemark with a
gx:MultiTrack holding one gx:Track (``when``/``gx:coord``) per segment, and one Placemark per stop
with its time span and its duration in Chinese and English.

The name and description are the caller's text (vehicle, plate, the day in the center's zone).
Pure: bytes out, nothing written.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gis.replay import Replay, Stop, Track, as_track

__all__ = ["GPX_NS", "KML_NS", "GX_NS", "TPX_NS", "iso_times", "iso_utc", "duration_text", "to_gpx", "to_kml"]

GPX_NS = "http://www.topografix.com/GPX/1/1"
TPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"
KML_NS = "http://www.opengis.net/kml/2.2"
GX_NS = "http://www.google.com/kml/ext/2.2"
CREATOR = "dispatch-center"

Fixes = Track | Sequence[Mapping[str, Any]] | Mapping[str, Any]


def iso_times(t: np.ndarray) -> list[str]:
    """Epoch seconds as ISO 8601 UTC with a Z, milliseconds only where a time has them (to the
    millisecond, as the packed track keeps it)."""
    ms = np.round(np.asarray(t, np.float64) * 1000.0).astype(np.int64)
    seconds = np.datetime_as_string((ms // 1000).astype("datetime64[s]"), unit="s").tolist()
    return [s + ("Z" if f == 0 else f".{f:03d}Z") for s, f in zip(seconds, (ms % 1000).tolist())]


def iso_utc(t: float) -> str:
    """One time as `iso_times` spells it."""
    return iso_times(np.array([t]))[0]


def duration_text(seconds: float) -> tuple[str, str]:
    """A duration in whole seconds as (Chinese, English) text: 1小时5分钟 / 1 h 5 min, 45秒 / 45 s."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if total < 60:
        return f"{secs}秒", f"{secs} s"
    zh = (f"{hours}小时" if hours else "") + (f"{minutes}分钟" if minutes or not hours else "")
    en = " ".join(([f"{hours} h"] if hours else []) + ([f"{minutes} min"] if minutes or not hours else []))
    return zh, en


def _nums(values: np.ndarray, places: int) -> list[str | None]:
    """Numbers with `places` decimals (a decimal the schemas accept), None where NaN."""
    spec = f".{places}f"
    return [None if v != v else format(v, spec) for v in np.asarray(values, np.float64).tolist()]


def _num(value: float, places: int) -> str:
    """One number as `_nums` spells it."""
    return format(float(value), f".{places}f")


def _lon(value: Any) -> Any:
    """Longitudes within [-180, 180) (GPX's longitudeType excludes 180)."""
    return np.where(value >= 180.0, value - 360.0, value)


def _texts(track: Track) -> dict[str, list[str | None]]:
    """Each fix's values as the documents spell them (None where unknown), column by column."""
    return {"lat": _nums(track.lat, 7), "lon": _nums(_lon(track.lon), 7), "ele": _nums(track.alt_m, 1),
            "alt": _nums(np.nan_to_num(track.alt_m, nan=0.0), 1), "time": iso_times(track.t),
            "speed": _nums(track.speed_kmh / 3.6, 2), "course": _nums(track.course_deg % 360.0, 2)}


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    """A child element with its text and attributes."""
    child = ET.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def _spans(track: Track, replay: Replay | None) -> list[list[int]]:
    """The fix indices of each segment to write (a replay's segments without its spikes)."""
    n = len(track)
    if replay is None:
        return [list(range(n))] if n else []
    spikes = set(replay.spikes)
    return [[i for i in range(a, b + 1) if i not in spikes] for a, b in replay.segments]


def _stop_words(stop: Stop) -> tuple[str, str]:
    """A stop's name and description, in Chinese and English."""
    zh, en = duration_text(stop.duration_s)
    name = f"停留 {zh} / Stop {en}"
    desc = (f"停留 {zh}，{iso_utc(stop.start)} 至 {iso_utc(stop.end)}，{stop.fixes} 个定位点。"
            f" Stopped {en}, {iso_utc(stop.start)} to {iso_utc(stop.end)}, {stop.fixes} fixes.")
    return name, desc


def _xml(root: ET.Element) -> bytes:
    """The document as UTF-8 bytes with its XML declaration (not indented: a day is 86,400 points,
    and indenting them costs a tenth of the time for no reader's benefit)."""
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode()


def to_gpx(fixes: Fixes, *, name: str, description: str = "", replay: Replay | None = None) -> bytes:
    """The track as a GPX 1.1 document (see the module); with a replay, a ``trkseg`` per segment,
    its spikes left out and its stops as waypoints."""
    track = as_track(fixes)
    g, x = f"{{{GPX_NS}}}", f"{{{TPX_NS}}}"
    ET.register_namespace("", GPX_NS)
    ET.register_namespace("gpxtpx", TPX_NS)
    root = ET.Element(f"{g}gpx", {"version": "1.1", "creator": CREATOR})
    meta = _sub(root, f"{g}metadata")
    _sub(meta, f"{g}name", name)
    if description:
        _sub(meta, f"{g}desc", description)
    for stop in replay.stops if replay else ():
        wpt = _sub(root, f"{g}wpt", lat=_num(stop.lat, 7), lon=_num(_lon(stop.lon), 7))
        _sub(wpt, f"{g}time", iso_utc(stop.start))
        stop_name, stop_desc = _stop_words(stop)
        _sub(wpt, f"{g}name", stop_name)
        _sub(wpt, f"{g}desc", stop_desc)
        _sub(wpt, f"{g}type", "stop")
    trk = _sub(root, f"{g}trk")
    _sub(trk, f"{g}name", name)
    if description:
        _sub(trk, f"{g}desc", description)
    text = _texts(track)
    lat, lon, ele, time, speed, course = (text[key] for key in ("lat", "lon", "ele", "time", "speed", "course"))
    for span in _spans(track, replay):
        seg = _sub(trk, f"{g}trkseg")
        for i in span:
            pt = _sub(seg, f"{g}trkpt", lat=lat[i], lon=lon[i])
            if ele[i] is not None:
                _sub(pt, f"{g}ele", ele[i])
            _sub(pt, f"{g}time", time[i])
            if speed[i] is not None or course[i] is not None:
                ext = _sub(_sub(pt, f"{g}extensions"), f"{x}TrackPointExtension")
                if speed[i] is not None:
                    _sub(ext, f"{x}speed", speed[i])
                if course[i] is not None:
                    _sub(ext, f"{x}course", course[i])
    return _xml(root)


def to_kml(fixes: Fixes, *, name: str, description: str = "", replay: Replay | None = None) -> bytes:
    """The track as a KML 2.2 document (see the module); with a replay, a line and a gx:Track per
    segment, its spikes left out, and a Placemark per stop."""
    track = as_track(fixes)
    k, gx = f"{{{KML_NS}}}", f"{{{GX_NS}}}"
    ET.register_namespace("", KML_NS)
    ET.register_namespace("gx", GX_NS)
    root = ET.Element(f"{k}kml")
    doc = _sub(root, f"{k}Document")
    _sub(doc, f"{k}name", name)
    if description:
        _sub(doc, f"{k}description", description)
    spans = [span for span in _spans(track, replay) if span]
    text = _texts(track)
    lon, lat, alt, time = text["lon"], text["lat"], text["alt"], text["time"]

    line = _sub(doc, f"{k}Placemark")
    _sub(line, f"{k}name", f"{name} 轨迹 / track")
    multi = _sub(line, f"{k}MultiGeometry")
    for span in spans:
        _sub(_sub(multi, f"{k}LineString"), f"{k}coordinates", " ".join(f"{lon[i]},{lat[i]},{alt[i]}" for i in span))
    timed = _sub(doc, f"{k}Placemark")
    _sub(timed, f"{k}name", f"{name} 回放 / replay")
    tracks = _sub(timed, f"{gx}MultiTrack")
    _sub(tracks, f"{gx}interpolate", "0")
    for span in spans:
        gx_track = _sub(tracks, f"{gx}Track")
        for i in span:
            _sub(gx_track, f"{k}when", time[i])
        for i in span:
            _sub(gx_track, f"{gx}coord", f"{lon[i]} {lat[i]} {alt[i]}")
    for stop in replay.stops if replay else ():
        mark = _sub(doc, f"{k}Placemark")
        stop_name, stop_desc = _stop_words(stop)
        _sub(mark, f"{k}name", stop_name)
        _sub(mark, f"{k}description", stop_desc)
        span_el = _sub(mark, f"{k}TimeSpan")
        _sub(span_el, f"{k}begin", iso_utc(stop.start))
        _sub(span_el, f"{k}end", iso_utc(stop.end))
        _sub(_sub(mark, f"{k}Point"), f"{k}coordinates", f"{_num(stop.lon, 7)},{_num(stop.lat, 7)}")
    return _xml(root)
