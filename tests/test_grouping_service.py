"""Incidents by network topology and time through the real web app, TicketManager and dispatch
worker (real PostgreSQL and Redis) on a small hand-built city: water calls group by the
valve-isolation segment of their main, not by DMA; a burst call takes the primary from a
rusty-water call made before it; symptom calls are never dispatched by themselves; a pressure
alarm's ticket is in its main's segment; power calls of two 台区 of one feeder are one incident."""
from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import tornado.httpclient
import tornado.httpserver

from servers.embedded import free_port
from store.live import FixRecord, Store
from store.tickets import TicketStore
from services.tickets import TicketManager
from services.worker import build, watch_changes
from tests.cities import NETWORK_CITY, area, ll, write_city
from tests.conftest import ApiClient, Clock, test_settings, wait_for
from web import app as webapp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
PASSWORD = "test-pass-1234"
T0 = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
class Api(ApiClient):
    """The in-process web app with tickets, dispatch and the worker's change watcher."""

    def __init__(self, base: str, store: Store, parts, clock: Clock) -> None:
        super().__init__(base, PASSWORD)
        self.base, self.store, self.parts, self.clock = base, store, parts, clock
        self.phones = iter(range(13900000001, 13900001000))

    async def call(self, method: str, path: str, user: str = "dispatcher", body=None):
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + path, method=method, headers=await self.auth(user),
            body=None if body is None else json.dumps(body)), raise_error=False)
        return response.code, orjson.loads(response.body) if response.body else None

    async def create(self, xy, description, *, category="water", urgency="normal", minutes=0.0) -> dict:
        """A call at local metres `xy`, `minutes` after T0 (each from another phone)."""
        self.clock.now = T0 + timedelta(minutes=minutes)
        lon, lat = ll(*xy)
        code, reply = await self.call("POST", "/api/tickets", "agent", {
            "channel": "phone", "category": category, "type": "repair", "urgency": urgency,
            "description": description, "caller_phone": str(next(self.phones)), "lon": lon, "lat": lat})
        assert code == 201 and not reply["linked"], reply
        return reply["ticket"]

    async def ticket(self, number: str) -> dict:
        return (await self.call("GET", f"/api/tickets/{number}"))[1]

    async def incident(self, incident_id: str) -> dict:
        code, body = await self.call("GET", f"/api/incidents/{incident_id}")
        assert code == 200, body
        return body

    async def events(self, number: str) -> list[dict]:
        return (await self.call("GET", f"/api/tickets/{number}/timeline"))[1]["events"]

    async def fixes(self) -> None:
        """Both crews' vehicles report where they are, now."""
        for vehicle_id, (lon, lat) in (("V01", ll(100, -10)), ("V02", ll(200, -10))):
            at = self.clock.now.timestamp()
            await self.store.write_fixes([FixRecord(vehicle_id, at, lat, lon, 0.0, None, None, 1, "A", 8, 1.0, "GP",
                                                    True, True)], {}, seen={vehicle_id: at}, retention_s=3600)


@pytest.fixture
async def api(tmp_path, redis_url, database_url):
    async with _serving(tmp_path, redis_url, database_url, NETWORK_CITY) as client:
        yield client


# NETWORK_CITY with the DMA split 5 m south of mains A and B: an address south of them lies in
# DMA02 while the main that supplies it (its segment) lies in DMA01
EDGE_CITY = {**NETWORK_CITY, "dmas": [{"dma_id": "DMA01", "name": "一号计量分区", "g": area(-500, -5, 4000, 4000)},
                                      {"dma_id": "DMA02", "name": "二号计量分区", "g": area(-500, -500, 4000, -5)}]}


@pytest.fixture
async def edge_api(tmp_path, redis_url, database_url):
    async with _serving(tmp_path, redis_url, database_url, EDGE_CITY) as client:
        yield client


@contextlib.asynccontextmanager
async def _serving(tmp_path, redis_url, database_url, layers):
    """The web app, the ticket manager and the dispatch worker's change watcher on a city of `layers`."""
    clock = Clock(T0)
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    (tmp_path / "city").mkdir()
    city = write_city(tmp_path / "city", layers)
    manager = await asyncio.to_thread(TicketManager.for_city, TicketStore(store.db, store.redis), city, clock=clock)
    parts = await build(store, settings, city, tickets=manager, clock=clock)
    services = webapp.build_services(settings=settings, store=store,
                                     tickets=manager, dispatch=parts.dispatch, police=parts.police)
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="test-secret"))
    port = free_port()
    server.listen(port, "127.0.0.1")
    client = Api(f"http://127.0.0.1:{port}", store, parts, clock)
    await client.fixes()
    await parts.dispatch.crews.refresh()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_changes(parts, stop, block_ms=50))
    try:
        yield client
    finally:
        stop.set()
        await watcher
        server.stop()
        await server.close_all_connections()
        await store.close()


async def test_water_calls_group_by_the_segment_of_their_main_not_by_the_dma(api):
    first = await api.create((300, 20), "家里停水了")
    second = await api.create((700, -40), "水龙头没水", minutes=5)  # 400 m along the same main
    assert first["supply_area"] == second["supply_area"] == "SEG0001"
    assert first["incident_id"] == second["incident_id"]
    far = await api.create((500, 3020), "停水一上午了", minutes=6)  # 3 km north: main C, same DMA
    behind = await api.create((1500, 30), "没水了", minutes=7)  # main B, behind its valve
    assert (far["supply_area"], behind["supply_area"]) == ("SEG0003", "SEG0002")
    assert len({first["incident_id"], far["incident_id"], behind["incident_id"]}) == 3
    nowhere = await api.create((3500, 1500), "水压低", minutes=8)  # 1.5 km from any main: the DMA
    assert nowhere["supply_area"] == "DMA01"
    incident = await api.incident(first["incident_id"])
    assert (incident["supply_area"], incident["scope"], incident["calls"], incident["primary"]) == (
        "SEG0001", "area", 2, first["number"])


async def test_a_burst_takes_the_primary_from_a_rusty_call_and_symptom_calls_get_no_crew(api):
    rusty = await api.create((300, 20), "水龙头出水发黄")  # normal: recommended, not sent by itself
    api.clock.now = T0 + timedelta(minutes=10)
    await api.fixes()
    burst = await api.create((600, 0), "路面冒水，水管爆裂，马路上全是积水", urgency="emergency", minutes=10)
    assert burst["incident_id"] == rusty["incident_id"]
    incident = await api.incident(burst["incident_id"])
    assert (incident["primary"], incident["onset_ticket"], incident["onset_at"]) == (
        burst["number"], burst["number"], "2026-12-07T02:10:00Z")
    linked = [e for e in await api.events(burst["number"]) if e["action"] == "link_incident"]
    assert linked[0]["data"]["primary_from"] == rusty["number"] and "成为主工单" in linked[0]["note"]
    moved = [e for e in await api.events(rusty["number"]) if e["action"] == "note"]
    assert moved and moved[-1]["data"]["data"] == {"incident_id": incident["incident_id"], "primary": burst["number"],
                                           "primary_from": rusty["number"]}
    assert await wait_for(lambda: _crew(api, burst["number"])) == "C01"  # the primary goes to the crew
    symptom = await api.create((900, 30), "水压很低", urgency="emergency", minutes=12)
    assert symptom["incident_id"] == incident["incident_id"]
    assert await api.parts.dispatch.dispatch_pool_ticket(symptom["number"]) is None
    code, rec = await api.call("GET", f"/api/tickets/{symptom['number']}/recommendation")
    assert code == 200 and (rec["recommendations"], rec["primary"]) == ([], burst["number"]), rec
    for number in (symptom["number"], rusty["number"]):  # the manual dispatch refuses them
        ticket = await api.ticket(number)
        assert ticket["state"] == "new" and ticket["crew_id"] is None
        code, body = await api.call("POST", f"/api/tickets/{number}/assign",
                                    body={"crew_id": "C01", "expected_version": ticket["version"]})
        assert code == 409 and body["error"]["code"] == "incident_not_primary", body
        assert burst["number"] in body["error"]["message"]
        code, body = await api.call("POST", f"/api/tickets/{number}/actions/dispatch",
                                    body={"crew_id": "C01", "expected_version": ticket["version"]})
        assert code == 409 and body["error"]["code"] == "incident_not_primary", body
    assert [e["action"] for e in await api.events(symptom["number"])] == ["create", "link_incident"]
    # the burst turns out to be a false report: cancelled, its crew released; the next call takes over
    code, body = await api.call("POST", f"/api/tickets/{burst['number']}/actions/cancel",
                                body={"reason": "误报", "expected_version": (await api.ticket(burst["number"]))["version"]})
    assert code == 200, body
    assert (await wait_for(lambda: _primary_moved(api, incident["incident_id"], burst["number"]))) == rusty["number"]
    note = [e for e in await api.events(rusty["number"]) if e["action"] == "note"][-1]
    assert note["data"]["data"]["primary_from"] == burst["number"] and "成为故障事件" in note["note"]
    code, rec = await api.call("GET", f"/api/tickets/{rusty['number']}/recommendation")
    assert code == 200 and rec["recommendations"] and "primary" not in rec


async def _primary_moved(api: Api, incident_id: str, before: str) -> str | None:
    primary = (await api.incident(incident_id))["primary"]
    return primary if primary != before else None


async def _crew(api: Api, number: str) -> str | None:
    ticket = await api.ticket(number)
    return ticket["crew_id"] if ticket["state"] == "dispatched" else None


async def test_a_pressure_alarm_ticket_is_in_the_segment_of_its_sensors_main(api):
    manager = api.parts.tickets
    assert manager.sensors["P001"].supply_area == "SEG0001"
    api.clock.now = T0 + timedelta(minutes=1)
    alarm = {"alarm_id": "P001:low", "sensor_id": "P001", "kind": "low", "severity": "critical", "value": 0.08,
             "threshold": 0.14, "raised_at": T0.isoformat()}
    record = await manager.on_alarm_event({"type": "raised", "alarm": json.dumps(alarm)})
    assert record is not None and record.ticket.supply_area == "SEG0001"
    symptom = await api.create((800, 40), "停水了", minutes=3)
    incident = await api.incident(record.ticket.incident_id)
    assert symptom["incident_id"] == incident["incident_id"]
    assert (incident["primary"], incident["onset_at"], incident["status"], incident["suspected_asset"]) == (
        record.ticket.number, "2026-12-07T02:00:00Z", "confirmed", "A")
    assert (await api.ticket(record.ticket.number))["state"] == "new"  # urgent: recommended, not sent by itself
    # an emergency no-water call joins; the alarm's ticket stays the primary and is now dispatched
    # automatically, as urgently as that call; the call itself gets no crew (a burst call would
    # take the primary: test_a_dmas_pressure_alarms_then_its_burst_call_...)
    await api.fixes()
    urgent = await api.create((300, -30), "停水了，家里有病人急需用水", urgency="emergency", minutes=4)
    assert urgent["incident_id"] == incident["incident_id"]
    assert (await api.incident(incident["incident_id"]))["primary"] == record.ticket.number
    assert await wait_for(lambda: _crew(api, record.ticket.number)) == "C01"
    sent = [e for e in await api.events(record.ticket.number) if e["action"] == "dispatch"]
    assert sent[0]["data"]["mode"] == "auto" and urgent["number"] in sent[0]["note"]
    assert (await api.ticket(urgent["number"]))["crew_id"] is None


async def test_power_calls_of_two_areas_of_one_feeder_are_one_feeder_incident(api):
    first = await api.create((500, 1400), "整条街停电", category="power")
    second = await api.create((1500, 1400), "停电了", category="power", minutes=4)  # TA2, same feeder F1
    other = await api.create((3000, 1400), "停电了", category="power", minutes=5)  # TA3 on F2
    assert (first["supply_area"], second["supply_area"], other["supply_area"]) == ("TA1", "TA2", "TA3")
    assert second["incident_id"] == first["incident_id"] != other["incident_id"]
    third = await api.create((1500, 900), "家里没电", category="power", minutes=8)  # TA2 again: found by its area
    assert third["incident_id"] == first["incident_id"]
    incident = await api.incident(first["incident_id"])
    assert (incident["scope"], incident["areas"], incident["feeder"], incident["suspected_asset"], incident["calls"]) == (
        "feeder", ["TA1", "TA2"], "F1", "F1", 3)
    assert (await api.incident(other["incident_id"]))["scope"] == "area"


async def _pressure_alarm(api: Api, sensor: str, minutes: float):
    """A critical low-pressure alarm of `sensor` raised `minutes` after T0, handled by the manager."""
    api.clock.now = T0 + timedelta(minutes=minutes)
    alarm = {"alarm_id": f"{sensor}:low", "sensor_id": sensor, "kind": "low", "severity": "critical", "value": 0.08,
             "threshold": 0.14, "raised_at": api.clock.now.isoformat()}
    record = await api.parts.tickets.on_alarm_event({"type": "raised", "alarm": json.dumps(alarm)})
    assert record is not None
    return record.ticket


async def _no_member_sent(api: Api, incident_id: str) -> None:
    """The incident's primary gets the crew, no other member is dispatched by itself."""
    incident = await api.incident(incident_id)
    assert await wait_for(lambda: _crew(api, incident["primary"])) == "C01"
    for number in incident["ticket_numbers"]:
        if number != incident["primary"]:
            ticket = await api.ticket(number)
            assert (ticket["state"], ticket["crew_id"]) == ("new", None), ticket
            assert await api.parts.dispatch.dispatch_pool_ticket(number) is None


async def test_a_dmas_pressure_alarms_then_its_burst_call_are_one_incident_led_by_the_call(api):
    assert (api.parts.tickets.sensors["P002"].supply_area, api.parts.tickets.sensors["P002"].dma) == ("SEG0003", "DMA01")
    first = await _pressure_alarm(api, "P001", 0)  # main A, SEG0001
    second = await _pressure_alarm(api, "P002", 1)  # main C, SEG0003, 3 km north: the same DMA
    assert first.incident_id == second.incident_id
    incident = await api.incident(first.incident_id)
    assert (incident["scope"], incident["dma"], incident["primary"], incident["calls"], incident["status"]) == (
        "dma", "DMA01", first.number, 2, "confirmed")
    await api.fixes()
    burst = await api.create((1500, 30), "路面冒水，水管爆裂", urgency="emergency", minutes=5)  # main B, SEG0002
    assert burst["incident_id"] == first.incident_id
    incident = await api.incident(first.incident_id)
    assert (incident["scope"], incident["supply_area"], incident["areas"], incident["primary"], incident["calls"]) == (
        "area", "SEG0002", ["SEG0001", "SEG0002"], burst["number"], 3)
    assert incident["area_name"] == "路1段供水管网"  # main B lies under road 路1: the readable name
    assert "路1段供水管网" in incident["answer"] and "SEG" not in incident["answer"]
    linked = [e for e in await api.events(burst["number"]) if e["action"] == "link_incident"]
    assert linked[0]["data"]["primary_from"] == first.number
    later = await api.create((1700, -20), "水压很低", minutes=7)  # the burst's segment: joins
    far = await api.create((950, 3020), "停水了", minutes=8)  # P002's segment: a symptom call, never DMA-wide
    assert later["incident_id"] == first.incident_id != far["incident_id"]
    await _no_member_sent(api, first.incident_id)


async def test_an_alarms_ticket_already_sent_keeps_the_primary_when_the_burst_call_comes(api):
    first = await _pressure_alarm(api, "P001", 0)
    ticket = await api.ticket(first.number)
    code, body = await api.call("POST", f"/api/tickets/{first.number}/assign",
                                body={"crew_id": "C01", "expected_version": ticket["version"]})
    assert code == 200, body
    await api.fixes()
    burst = await api.create((1500, 30), "路面冒水，水管爆裂", urgency="emergency", minutes=5)
    incident = await api.incident(first.incident_id)
    assert burst["incident_id"] == first.incident_id
    assert (incident["scope"], incident["supply_area"], incident["primary"]) == ("area", "SEG0002", first.number)
    assert await api.parts.dispatch.dispatch_pool_ticket(burst["number"]) is None  # one crew: the one sent
    assert (await api.ticket(burst["number"]))["crew_id"] is None


async def test_a_burst_call_then_its_dmas_pressure_alarms_are_one_incident_led_by_the_call(api):
    await api.fixes()
    burst = await api.create((1500, 30), "供水管爆了，道路被淹", urgency="emergency", minutes=0)
    first = await _pressure_alarm(api, "P001", 2)
    second = await _pressure_alarm(api, "P002", 3)
    assert burst["incident_id"] == first.incident_id == second.incident_id
    incident = await api.incident(burst["incident_id"])
    assert (incident["scope"], incident["supply_area"], incident["areas"], incident["primary"], incident["calls"],
            incident["status"], incident["dma"]) == ("area", "SEG0002", ["SEG0002"], burst["number"], 3,
                                                     "confirmed", "DMA01")
    assert incident["alarm_ids"] == ["P001:low", "P002:low"]
    await _no_member_sent(api, burst["incident_id"])


async def test_a_burst_call_south_of_a_dma_edge_joins_the_pressure_drop_of_its_mains_dma(edge_api):
    """The address lies in DMA02, but the main that supplies it (main B, segment SEG0002) lies in
    DMA01, whose pressure dropped: the call is grouped by its main's DMA and takes the incident
    (the demo's main burst has such calls: 海棠路 lies in DMA02 beside a DMA03 main)."""
    api = edge_api
    assert api.parts.tickets.lookup.locate(*ll(1500, -30), "water").dma_id == "DMA02"
    assert api.parts.tickets.lookup.water.dma_of("SEG0002") == "DMA01"
    alarm = await _pressure_alarm(api, "P001", 0)  # main A: DMA01, DMA-wide
    await api.fixes()
    burst = await api.create((1500, -30), "路面冒水，水管爆裂", urgency="emergency", minutes=2)
    assert burst["incident_id"] == alarm.incident_id
    incident = await api.incident(alarm.incident_id)
    assert (incident["dma"], incident["supply_area"], incident["primary"], incident["calls"]) == (
        "DMA01", "SEG0002", burst["number"], 2)


async def test_a_burst_call_merges_the_incident_symptom_calls_opened_on_its_segment_before_it(api):
    """Alarms first (a DMA-wide incident), then a no-water call on the burst's segment (a symptom
    call never joins a DMA-wide incident: it opens its own), then the burst call: it places the
    pressure drop on its segment and takes that incident over, its call linked again."""
    alarm = await _pressure_alarm(api, "P001", 0)  # main A, SEG0001: DMA-wide
    symptom = await api.create((1400, 30), "家里停水了", minutes=1)  # main B, SEG0002
    assert symptom["incident_id"] not in (None, alarm.incident_id)
    await api.fixes()
    burst = await api.create((1500, 30), "路面冒水，水管爆裂", urgency="emergency", minutes=2)
    assert burst["incident_id"] == alarm.incident_id
    incident = await api.incident(alarm.incident_id)
    assert (incident["supply_area"], incident["primary"], incident["calls"]) == ("SEG0002", burst["number"], 3)
    assert set(incident["ticket_numbers"]) == {alarm.number, symptom["number"], burst["number"]}
    gone = await api.incident(symptom["incident_id"])
    assert (gone["status"], gone["merged_into"], gone["resolved_at"] is not None) == ("merged", alarm.incident_id, True)
    moved = await api.ticket(symptom["number"])
    assert (moved["incident_id"], moved["state"]) == (alarm.incident_id, "new")
    relinked = [e for e in await api.events(symptom["number"]) if e["action"] == "link_incident"][-1]
    assert relinked["data"]["merged_from"] == symptom["incident_id"] and "已并入" in relinked["note"]
    code, listing = await api.call("GET", "/api/incidents")
    assert code == 200 and symptom["incident_id"] not in {i["incident_id"] for i in listing["incidents"]}
    await _no_member_sent(api, alarm.incident_id)


async def test_an_incident_whose_call_has_a_crew_out_is_not_merged(api):
    alarm = await _pressure_alarm(api, "P001", 0)
    symptom = await api.create((1400, 30), "家里停水了", minutes=1)
    ticket = await api.ticket(symptom["number"])
    code, body = await api.call("POST", f"/api/tickets/{symptom['number']}/assign",
                                body={"crew_id": "C01", "expected_version": ticket["version"]})
    assert code == 200, body
    burst = await api.create((1500, 30), "路面冒水，水管爆裂", urgency="emergency", minutes=2)
    assert burst["incident_id"] == alarm.incident_id
    kept = await api.incident(symptom["incident_id"])
    assert (kept["status"], kept["merged_into"]) != ("merged", alarm.incident_id)
    assert (await api.ticket(symptom["number"]))["incident_id"] == symptom["incident_id"]
