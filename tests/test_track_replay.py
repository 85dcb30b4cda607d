"""Track replay (gis/replay.py) and its exports (gis/track_export.py): pure tables over hand-built
tracks laid out in metres (Gauss-Krüger zone 39, whose central meridian 117°E the tracks start on,
so planar metres are the ground's to well under a metre) and turned into WGS84 fixes."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xmlschema

from gis import replay as rp
from gis.crs import from_metres, gk_zone_epsg, to_metres
from gis.track_export import GPX_NS, GX_NS, KML_NS, TPX_NS, duration_text, iso_utc, to_gpx, to_kml
from store.track_codec import columns, decode_fixes, pack_fix, select

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
EPSG = gk_zone_epsg(117.0)
X0, Y0 = to_metres(117.0, 32.0, epsg=EPSG)
GPX_XSD = Path(__file__).parent / "data" / "gpx" / "gpx-1.1.xsd"


def fixes(rows: list[tuple[float, float, float, float | None]], course: float | None = None) -> list[dict]:
    """Fix dicts of (seconds after T0, x m east, y m north, speed km/h) rows."""
    t, x, y, speed = (np.array(col, dtype=object) for col in zip(*rows))
    lon, lat = from_metres(X0 + x.astype(float), Y0 + y.astype(float), epsg=EPSG)
    return [{"t": T0 + float(a), "lat": float(b), "lon": float(c), "speed_kmh": d, "course_deg": course,
             "alt_m": 12.0, "quality": 1, "sats": 9} for a, b, c, d in zip(t, lat, lon, speed)]


def drive(t0: int, t1: int, x0: float, vx: float, y: float = 0.0) -> list[tuple]:
    """Rows driving east at vx m/s from x0 at t0, a fix a second, t0..t1 inclusive."""
    return [(s, x0 + vx * (s - t0), y, abs(vx) * 3.6) for s in range(t0, t1 + 1)]


def park(t0: int, t1: int, x: float, jitter: float = 0.0, speed: float = 0.0) -> list[tuple]:
    """Rows standing at x from t0 to t1, the inner fixes moved up to `jitter` m north and south."""
    rows = [(s, x, 0.0, speed) for s in range(t0, t1 + 1)]
    return [rows[0]] + [(s, x, jitter * math.sin(s * 1.7), v) for s, x, _, v in rows[1:-1]] + [rows[-1]]


SPIKED = drive(0, 100, 0, 10)
SPIKED[50] = (50, 500.0, 5000.0, 36.0)
SQUARE = (drive(0, 100, 0, 10) + [(s, 1000.0, 10.0 * (s - 100), 36.0) for s in range(101, 201)]
          + [(s, 1000.0 - 10.0 * (s - 200), 1000.0, 36.0) for s in range(201, 301)]
          + [(s, 0.0, 1000.0 - 10.0 * (s - 300), 36.0) for s in range(301, 401)])

# name, rows, distance m, driving s, stopped s, gap s, stops (start s, end s, fixes, centre x), segments, spikes
CASES = [
    ("drive", drive(0, 100, 0, 10), 1000, 100, 0, 0, [], 1, ()),
    ("stop of 5 min", drive(0, 99, 0, 10) + park(100, 400, 1000) + drive(401, 500, 1010, 10),
     2000, 200, 300, 0, [(100, 400, 301, 1000)], 1, ()),
    ("gap while parked", drive(0, 99, 0, 10) + park(100, 160, 1000) + park(700, 760, 1000)
     + drive(761, 860, 1010, 10), 2000, 200, 660, 0, [(100, 760, 122, 1000)], 1, ()),
    ("gap while driving", drive(0, 100, 0, 10) + drive(400, 500, 4000, 10), 2000, 200, 0, 300, [], 2, ()),
    ("jump", drive(0, 100, 0, 10) + drive(101, 200, 50_000, 10), 1990, 199, 0, 1, [], 2, ()),
    ("spike", SPIKED, 1000, 100, 0, 0, [], 1, (50,)),
    ("jitter while parked", park(0, 600, 0, jitter=8.0, speed=0.5), 0, 0, 600, 0, [(0, 600, 601, 0)], 1, ()),
    ("jitter at a red light", drive(0, 99, 0, 10) + park(100, 160, 1000, jitter=3.0)
     + drive(161, 260, 1010, 10), 2000, 260, 0, 0, [], 1, ()),
    ("square", SQUARE, 4000, 400, 0, 0, [], 1, ()),
]


@pytest.mark.parametrize("name,rows,distance,driving,stopped,gap,stops,segments,spikes", CASES,
                         ids=[case[0] for case in CASES])
def test_summary(name, rows, distance, driving, stopped, gap, stops, segments, spikes) -> None:
    """Distance within a metre, exact times, the stops, the segments and the spikes left out."""
    replay = rp.summarize(fixes(rows))
    assert replay.distance_m == pytest.approx(distance, abs=1.0)
    assert (replay.driving_s, replay.stopped_s, replay.gap_s) == (driving, stopped, gap)
    assert replay.driving_s + replay.stopped_s + replay.gap_s == replay.end - replay.start
    assert [(s.start - T0, s.end - T0, s.fixes) for s in replay.stops] == [s[:3] for s in stops]
    for stop, expected in zip(replay.stops, stops):
        x, y = to_metres(stop.lon, stop.lat, epsg=EPSG)
        assert math.hypot(x - X0 - expected[3], y - Y0) < 1.0
        assert stop.duration_s == stop.end - stop.start
    assert len(replay.segments) == segments
    assert replay.spikes == spikes
    if driving:
        assert replay.max_speed_kmh == pytest.approx(36.0)
        assert replay.avg_speed_kmh == pytest.approx(distance / driving * 3.6, abs=0.05)


def test_speeds_unknown_give_the_plain_stay_point_rule() -> None:
    """Without reported speeds no approach fix can be told moving: the stop starts at the first fix
    within the radius of where it stays (960 m, 40 m before), and that approach is not driven."""
    rows = [(t, x, y, None) for t, x, y, _ in drive(0, 99, 0, 10) + park(100, 400, 1000) + drive(401, 500, 1010, 10)]
    replay = rp.summarize(fixes(rows), stop_radius_m=45)
    assert [(s.start - T0, s.end - T0, s.fixes) for s in replay.stops] == [(96, 400, 305)]
    assert (replay.driving_s, replay.stopped_s) == (196, 304)
    assert replay.distance_m == pytest.approx(1960, abs=1.0)


def test_summary_takes_columns_as_the_track_codec_gives() -> None:
    """A mapping of columns (object arrays with None, as track_codec.columns) gives the same."""
    rows = fixes(drive(0, 99, 0, 10) + park(100, 400, 1000) + drive(401, 500, 1010, 10))
    columns = {key: np.array([f[key] for f in rows], dtype=object) for key in rows[0]}
    columns["course_deg"][:] = None
    assert rp.summarize(columns) == rp.summarize(rows)


def test_summary_of_a_track_read_back_from_its_packed_records() -> None:
    """The fixes as the store keeps them (20-byte records: 1e-7 degrees, cm/s) and reads them back,
    as dicts or as columns, give the stop and the distance of the fixes written."""
    rows = fixes(drive(0, 99, 0, 10) + park(100, 400, 1000, jitter=4.0) + drive(401, 500, 1010, 10))
    packed: dict[int, bytes] = {}
    for fix in rows:
        hour, record = pack_fix(SimpleNamespace(**fix))
        packed[hour] = packed.get(hour, b"") + record
    hours = sorted(packed.items())
    read = decode_fixes(hours, T0 - 1, T0 + 1000)
    records, _, t = select(hours, T0 - 1, T0 + 1000)
    for track in (read, {"t": t, **columns(records)}):
        replay = rp.summarize(track)
        assert replay.distance_m == pytest.approx(2000, abs=1.0)
        assert [(s.start - T0, s.end - T0, s.fixes) for s in replay.stops] == [(100, 400, 301)]


def test_empty_track() -> None:
    """No fixes: nothing driven, no stops, no position."""
    replay = rp.summarize([])
    assert (replay.fixes, replay.distance_m, replay.stops, replay.segments) == (0, 0.0, (), ())
    assert rp.position_at([], T0) is None


BAD = [
    ("not_in_order", [{"t": T0 + 1, "lat": 32.0, "lon": 117.0}, {"t": T0, "lat": 32.0, "lon": 117.0}]),
    ("bad_fix", [{"t": T0, "lat": 95.0, "lon": 117.0}]),
    ("bad_fix", [{"t": T0, "lat": None, "lon": 117.0}]),
    ("bad_fix", [{"t": None, "lat": 32.0, "lon": 117.0}]),
    ("outside_zones", [{"t": T0, "lat": 51.5, "lon": -0.13}]),
]


@pytest.mark.parametrize("code,rows", BAD)
def test_bad_tracks_are_refused_with_a_code(code, rows) -> None:
    """Fixes that are not a track raise ReplayError with its code (a 400 for the caller)."""
    with pytest.raises(rp.ReplayError) as caught:
        rp.summarize(rows)
    assert caught.value.code == code


def test_thin_keeps_turns_ends_and_stops() -> None:
    """The square's corners with 5 points; a stop's ends and a gap's ends always; all when few."""
    square = fixes(SQUARE)
    assert rp.thin(square, 5).tolist() == [0, 100, 200, 300, 400]
    assert rp.thin(square, 1000).tolist() == list(range(401))
    track = fixes(drive(0, 99, 0, 10) + park(100, 400, 1000, jitter=5.0) + drive(401, 500, 1010, 10)
                  + drive(800, 900, 5000, 10))
    kept = rp.thin(track, 10).tolist()
    assert len(kept) <= 10 and {0, 100, 400, 500, 501, len(track) - 1} <= set(kept)
    with pytest.raises(rp.ReplayError):
        rp.thin(track, 1)
    spiked = fixes(SPIKED)
    assert 50 not in rp.thin(spiked, 1000).tolist() and 50 not in rp.thin(spiked, 3).tolist()
    assert len(rp.thin(spiked, 1000)) == 100


def test_window_is_the_full_resolution_of_a_time_range() -> None:
    """window gives the slice of fixes inside [since, until]."""
    track = fixes(drive(0, 100, 0, 10))
    part = track[rp.window(track, T0 + 10, T0 + 20.5)]
    assert [f["t"] - T0 for f in part] == list(range(10, 21))


POSITIONS = [  # seconds after T0, (x, y) expected or None, course, speed, in_gap
    (-1.0, None, None, None, False),
    (50.0, (500.0, 0.0), 90.0, 36.0, False),
    (50.25, (502.5, 0.0), 90.0, 36.0, False),
    (100.0, (1000.0, 0.0), 90.0, 36.0, False),
    (250.0, (1000.0, 0.0), None, None, True),
    (400.5, (4005.0, 0.0), 90.0, 36.0, False),
    (501.0, None, None, None, False),
]


@pytest.mark.parametrize("at,where,course,speed,in_gap", POSITIONS)
def test_position_at(at, where, course, speed, in_gap) -> None:
    """Interpolated within a step, held across a gap, None outside; course from the step."""
    track = rp.as_track(fixes(drive(0, 100, 0, 10) + drive(400, 500, 4000, 10)))
    position = rp.position_at(track, T0 + at)
    if where is None:
        assert position is None
        return
    x, y = to_metres(position.lon, position.lat, epsg=EPSG)
    assert math.hypot(x - X0 - where[0], y - Y0 - where[1]) < 0.01
    assert position.course_deg == (None if course is None else pytest.approx(course, abs=0.01))
    assert (position.speed_kmh, position.in_gap) == (speed, in_gap)


def test_play_back_without_spikes() -> None:
    """Played back without its spikes, the vehicle passes the spike's second on its road."""
    track = rp.as_track(fixes(SPIKED))
    at = rp.position_at(track, T0 + 50)
    assert to_metres(at.lon, at.lat, epsg=EPSG)[1] - Y0 == pytest.approx(5000, abs=0.01)
    clean = rp.without_spikes(track, rp.summarize(track))
    at = rp.position_at(clean, T0 + 50)
    assert len(clean) == 100 and to_metres(at.lon, at.lat, epsg=EPSG)[0] - X0 == pytest.approx(500, abs=0.01)


def test_course_turns_the_short_way() -> None:
    """Reported courses 350° and 10° interpolate through north, not through 180°."""
    rows = fixes([(0, 0.0, 0.0, 30.0), (1, 0.0, 8.0, 30.0)])
    rows[0]["course_deg"], rows[1]["course_deg"] = 350.0, 10.0
    assert rp.position_at(rows, T0 + 0.5).course_deg == pytest.approx(0.0, abs=1e-9)
    assert rp.position_at(rows, T0 + 0.75).course_deg == pytest.approx(5.0)


TICKETS = [  # ticket, worked stops, on-site seconds
    ({"id": "T1", "x": 1030, "start": 150, "end": 350}, (0,), 200),
    ({"id": "T2", "x": 1000, "start": 500, "end": 600}, (), 0),
    ({"id": "T3", "x": 5000, "start": None, "end": None}, (), 0),
    ({"id": "T4", "x": 1080, "start": None, "end": None}, (0,), 300),
    ({"id": "T5", "x": 1000, "start": 0, "end": None}, (0,), 300),
]


@pytest.mark.parametrize("ticket,stops,on_site", TICKETS, ids=[t[0]["id"] for t in TICKETS])
def test_tickets_on_the_way(ticket, stops, on_site) -> None:
    """A ticket is worked when a stop within the radius overlaps its field time."""
    track = fixes(drive(0, 99, 0, 10) + park(100, 400, 1000) + drive(401, 500, 1010, 10))
    lon, lat = from_metres(X0 + ticket["x"], Y0, epsg=EPSG)
    place = {"id": ticket["id"], "lon": lon, "lat": lat,
             "start": None if ticket["start"] is None else T0 + ticket["start"],
             "end": None if ticket["end"] is None else T0 + ticket["end"]}
    worked = rp.tickets_on_the_way(rp.summarize(track), [place], radius_m=100)
    assert [(w.ticket_id, w.stops, w.on_site_s) for w in worked] == ([(ticket["id"], stops, on_site)] if stops else [])
    assert rp.tickets_on_the_way(track, [place], radius_m=100) == worked


def test_a_full_day_at_1_hz() -> None:
    """86,400 fixes (a stop of an hour every two hours, jitter included) summarise and thin."""
    rows, x, vx = [], 0.0, 10.0
    for hour in range(0, 24, 2):  # east and back west, so the day stays near the zone's meridian
        start = hour * 3600
        rows += drive(start, start + 3599, x, vx)
        x += vx * 3600
        vx = -vx
        rows += park(start + 3600, start + 7199, x, jitter=6.0)
    t, xs, ys, speed = (np.array(col, dtype=float) for col in zip(*rows))
    lon, lat = from_metres(X0 + xs, Y0 + ys, epsg=EPSG)
    track = rp.as_track({"t": T0 + t, "lat": lat, "lon": lon, "speed_kmh": speed})
    replay = rp.summarize(track)
    assert replay.fixes == 86_400 and len(replay.stops) == 12
    assert [s.duration_s for s in replay.stops] == [3599.0] * 12
    assert replay.distance_m == pytest.approx(12 * 36_000, abs=12.0)
    kept = rp.thin(track, 2000, replay=replay)
    assert len(kept) <= 2000 and {s.first for s in replay.stops} <= set(kept.tolist())


@pytest.mark.parametrize("seconds,zh,en", [
    (45, "45秒", "45 s"), (300, "5分钟", "5 min"), (3600, "1小时", "1 h"), (3900.4, "1小时5分钟", "1 h 5 min"),
])
def test_duration_text(seconds, zh, en) -> None:
    """Durations in Chinese and English."""
    assert duration_text(seconds) == (zh, en)


@pytest.mark.parametrize("t,text", [(T0, "2027-01-15T08:00:00Z"), (T0 + 0.25, "2027-01-15T08:00:00.250Z")])
def test_iso_utc(t, text) -> None:
    """UTC ISO 8601 with a Z, milliseconds only when present."""
    assert iso_utc(t) == text


def _exported():
    """A track with a stop, a gap and a spike, and its replay."""
    rows = drive(0, 99, 0, 10) + park(100, 400, 1000) + drive(401, 500, 1010, 10) + drive(800, 900, 5000, 10)
    rows[20] = (20, 200.0, 9000.0, 36.0)
    track = fixes(rows, course=90.0)
    return track, rp.summarize(track)


def test_gpx_parses_back_and_validates_against_the_schema() -> None:
    """GPX 1.1: a trkseg per segment, every kept fix once with its time, speed in m/s; valid."""
    track, replay = _exported()
    data = to_gpx(track, name="B01 京A12345", description="2027-01-15 车辆轨迹", replay=replay)
    xmlschema.XMLSchema(GPX_XSD).validate(data.decode())
    root = ET.fromstring(data)
    ns = {"g": GPX_NS, "x": TPX_NS}
    segments = root.findall("g:trk/g:trkseg", ns)
    assert len(segments) == 2
    points = root.findall("g:trk/g:trkseg/g:trkpt", ns)
    assert len(points) == len(track) - 1
    assert [p.findtext("g:time", namespaces=ns) for p in points] == [
        iso_utc(f["t"]) for i, f in enumerate(track) if i != 20]
    assert float(points[0].get("lat")) == pytest.approx(track[0]["lat"], abs=1e-7)
    assert points[0].findtext("g:extensions/x:TrackPointExtension/x:speed", namespaces=ns) == "10.00"
    assert root.findtext("g:metadata/g:name", namespaces=ns) == "B01 京A12345"
    assert [w.findtext("g:name", namespaces=ns) for w in root.findall("g:wpt", ns)] == ["停留 5分钟 / Stop 5 min"]


def test_kml_parses_back_with_the_track_and_a_stop() -> None:
    """KML 2.2: a LineString and a gx:Track per segment, when/coord pairs, a stop Placemark."""
    track, replay = _exported()
    root = ET.fromstring(to_kml(track, name="B01", description="2027-01-15", replay=replay))
    ns = {"k": KML_NS, "gx": GX_NS}
    assert len(root.findall(".//k:LineString", ns)) == 2
    gx_tracks = root.findall(".//gx:Track", ns)
    assert [len(t.findall("k:when", ns)) for t in gx_tracks] == [len(t.findall("gx:coord", ns)) for t in gx_tracks]
    whens = [w.text for t in gx_tracks for w in t.findall("k:when", ns)]
    assert whens == [iso_utc(f["t"]) for i, f in enumerate(track) if i != 20]
    lon, lat, alt = (float(v) for v in gx_tracks[0].find("gx:coord", ns).text.split())
    assert (lon, lat, alt) == (pytest.approx(track[0]["lon"], abs=1e-7), pytest.approx(track[0]["lat"], abs=1e-7), 12.0)
    stops = [p for p in root.findall(".//k:Placemark", ns) if p.find("k:Point", ns) is not None]
    assert len(stops) == 1
    assert stops[0].findtext("k:name", namespaces=ns) == "停留 5分钟 / Stop 5 min"
    assert "Stopped 5 min" in stops[0].findtext("k:description", namespaces=ns)
    assert stops[0].findtext("k:TimeSpan/k:begin", namespaces=ns) == iso_utc(T0 + 100)


def test_exports_without_a_replay_are_one_segment() -> None:
    """No replay: every fix in one segment, no stops; unknown values left out; the GPX still valid
    (and with a name that needs escaping)."""
    track = fixes(drive(0, 10, 0, 10))
    track[3].update(alt_m=None, speed_kmh=None)
    data = to_gpx(track, name="B01 <&> \"车\"")
    xmlschema.XMLSchema(GPX_XSD).validate(data.decode())
    points = ET.fromstring(data).findall(f".//{{{GPX_NS}}}trkpt")
    assert len(points) == 11 and [child.tag.rpartition("}")[2] for child in points[3]] == ["time"]
    assert ET.fromstring(data).findtext(f"{{{GPX_NS}}}metadata/{{{GPX_NS}}}name") == 'B01 <&> "车"'
    assert len(ET.fromstring(to_kml(track, name="B01")).findall(f".//{{{GX_NS}}}coord")) == 11
