"""Track replay through the API (real PostgreSQL and Redis): a vehicle drives 3 km east, stops
five minutes, drives 3 km north; the replay gives the stop, the distance and time driven and a
thinned line; the GPX and KML files hold every fix; bad queries get a 400 with a code."""
from __future__ import annotations

import math
import time
import xml.etree.ElementTree as ET

import orjson
import pytest

from store.fleet import Audit, FleetStore
from store.live import FixRecord
from tests.conftest import register_vehicles

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
LAT0, LON0 = 36.38, 119.75
M_LAT = 111_320.0
M_LON = 111_320.0 * math.cos(math.radians(LAT0))


def _drive(t0: float) -> list[FixRecord]:
    """300 s east at 36 km/h, 300 s parked, 300 s north at 36 km/h: one fix a second."""
    fixes = []
    for i in range(901):
        if i <= 300:
            east, north, kmh, course = 10.0 * i, 0.0, 36.0, 90.0
        elif i <= 600:
            east, north, kmh, course = 3000.0, 0.0, 0.0, None
        else:
            east, north, kmh, course = 3000.0, 10.0 * (i - 600), 36.0, 0.0
        fixes.append(FixRecord("R1", t0 + i, LAT0 + north / M_LAT, LON0 + east / M_LON, kmh, course, 30.0, 1, "A",
                               9, 0.8, "GN", True, True))
    return fixes


async def test_a_replay_gives_the_stop_the_distance_and_a_thinned_line(web):
    t0 = math.floor(time.time()) - 1200
    await web.store.write_fixes(_drive(t0), {"R1": {"fix_ok": 901}}, seen={"R1": t0 + 900}, retention_s=86400)
    token = await web.login("dispatcher")
    reply = await web.call("GET", f"/api/vehicles/R1/replay?since={t0 - 5}&until={t0 + 905}&points=50", token=token)
    assert reply.code == 200, reply.body
    body = orjson.loads(reply.body)
    summary = body["summary"]
    assert body["fixes"] == 901 and (summary["start"], summary["end"]) == (t0, t0 + 900)
    assert summary["distance_m"] == pytest.approx(6000, rel=0.01)
    assert summary["driving_s"] + summary["stopped_s"] + summary["gap_s"] == pytest.approx(900)
    assert summary["max_speed_kmh"] == pytest.approx(36.0, abs=0.1)
    (stop,) = body["stops"]
    assert stop["duration_s"] == pytest.approx(300, abs=2) and stop["start"] == pytest.approx(t0 + 300, abs=2)
    assert (stop["lon"], stop["lat"]) == (pytest.approx(LON0 + 3000 / M_LON, abs=1e-5), pytest.approx(LAT0, abs=1e-5))
    points = body["points"]
    assert 3 <= len(points["t"]) <= 50 and points["t"][0] == t0 and points["t"][-1] == t0 + 900
    assert len(points["lat"]) == len(points["lon"]) == len(points["t"])
    assert body["segments"] == [[t0, t0 + 900]]  # no gap: one line

    gpx = await web.call("GET", f"/api/vehicles/R1/replay.gpx?since={t0 - 5}&until={t0 + 905}", token=token)
    assert gpx.code == 200 and gpx.headers["Content-Type"] == "application/gpx+xml"
    assert gpx.headers["Content-Disposition"].startswith('attachment; filename="R1-')
    root = ET.fromstring(gpx.body)
    assert len(root.findall(".//{http://www.topografix.com/GPX/1/1}trkpt")) == 901
    kml = await web.call("GET", f"/api/vehicles/R1/replay.kml?since={t0 - 5}&until={t0 + 905}", token=token)
    assert kml.code == 200 and kml.headers["Content-Type"] == "application/vnd.google-earth.kml+xml"
    placemarks = ET.fromstring(kml.body).findall(".//{http://www.opengis.net/kml/2.2}Placemark")
    assert len(placemarks) >= 2  # the track and its stop

    empty = orjson.loads((await web.call("GET", f"/api/vehicles/NOBODY/replay?since={t0}&until={t0 + 60}",
                                         token=token)).body)
    assert (empty["fixes"], empty["stops"], empty["points"]["t"]) == (0, [], [])


@pytest.mark.parametrize(("query", "code"), [
    ("points=1", "bad_points"), ("points=abc", "bad_points"), ("points=20001", "bad_points"),
    ("since=yesterday", "bad_time"), ("since=100&until=50", "bad_time"),
    ("since=0&until=700000", "bad_time"),  # more than 7 days
])
async def test_bad_replay_queries_get_a_400_with_a_code(web, query, code):
    token = await web.login("dispatcher")
    reply = await web.call("GET", f"/api/vehicles/R1/replay?{query}", token=token)
    assert reply.code == 400 and orjson.loads(reply.body)["error"]["code"] == code


async def test_a_file_covers_at_most_a_day_and_crews_and_agents_may_not_replay(web):
    token = await web.login("dispatcher")
    reply = await web.call("GET", "/api/vehicles/R1/replay.kml?since=0&until=90000", token=token)
    assert reply.code == 400 and orjson.loads(reply.body)["error"]["code"] == "bad_time"
    for role in ("crew", "agent"):
        other = await web.login(role)
        assert (await web.call("GET", "/api/vehicles/R1/replay", token=other)).code == 403
        assert (await web.call("GET", "/api/vehicles/R1/replay.gpx", token=other)).code == 403


async def test_a_replay_names_the_tickets_its_crew_worked_at_a_stop(web, database_url):
    """Crew C01, holding V01, is sent to two repairs; V01 drives to the first and stops there: the
    replay names that ticket with the stop, not the other; a vehicle no crew holds names none."""
    await register_vehicles(database_url, ["V01"])
    await FleetStore(web.store.db).write_crew(  # the crew that holds V01 in the fleet registry
        "C01", "", {"crew_name": "抢修一班", "vehicle_id": "V01", "updated_at": time.time(), "updated_by": "admin"},
        Audit("admin", "admin", "crew.create", "crew:C01", {"vehicle_id": "V01"}, time.time()))
    agent, dispatcher = await web.login("agent"), await web.login("dispatcher")
    there = (LON0 + 3000 / M_LON, LAT0)
    numbers = []
    for lon, lat in (there, (LON0 + 3000 / M_LON, LAT0 + 0.02)):  # the second 2.2 km north of the stop
        reply = await web.call("POST", "/api/tickets", token=agent, body={
            "channel": "phone", "category": "power", "type": "repair", "urgency": "urgent", "description": "停电",
            "caller_phone": f"1381234{len(numbers):04d}", "lon": lon, "lat": lat, "link": False})
        assert reply.code == 201, reply.body
        ticket = orjson.loads(reply.body)["ticket"]
        reply = await web.call("POST", f"/api/tickets/{ticket['number']}/actions/dispatch", token=dispatcher,
                               body={"expected_version": ticket["version"], "crew_id": "C01"})
        assert reply.code == 200, reply.body
        numbers.append(ticket["number"])
    t0 = math.floor(time.time()) - 300  # drives 300 s to the first ticket, stops there 300 s from now, drives on
    fixes = [f._replace(vehicle_id="V01") for f in _drive(t0)]
    await web.store.write_fixes(fixes, {"V01": {"fix_ok": 901}}, seen={"V01": t0 + 900}, retention_s=86400)
    reply = await web.call("GET", f"/api/vehicles/V01/replay?since={t0 - 5}&until={t0 + 905}", token=dispatcher)
    assert reply.code == 200, reply.body
    body = orjson.loads(reply.body)
    (worked,) = body["tickets"]
    assert worked["number"] == numbers[0] and worked["stops"] == [0] and worked["type"] == "repair"
    assert worked["distance_m"] < 20 and worked["on_site_s"] == pytest.approx(300, abs=5)
    other = await web.call("GET", f"/api/vehicles/R9/replay?since={t0 - 5}&until={t0 + 905}", token=dispatcher)
    assert orjson.loads(other.body)["tickets"] == []  # a vehicle no crew holds
