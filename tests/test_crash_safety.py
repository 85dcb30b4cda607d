"""Crash safety, process level: a real `python -m center web` over embedded PostgreSQL, Redis and
broker that the test starts (bench/crash.py's rig); under a ticket-creation load the test kills
with SIGKILL, in turn, PostgreSQL, Redis and the web process, brings each back as the supervisor
would, and finds every acknowledged ticket (HTTP 201) in PostgreSQL with its complete timeline,
no ticket stored in part, and every change delivered to Redis (tkt:changes; the outbox empty):
a ticket may commit while Redis is dead (its session check still cached in the web process), and
then the change relay delivers its change once Redis is back."""
from __future__ import annotations

import asyncio
import shutil
import time
from datetime import datetime, timezone

import orjson
import pytest
import redis
import tornado.httpclient
import tornado.websocket

from bench.crash import Rig, run_victim
from messaging.mqtt import MqttClient
from simulators import nmea_out
from tests.conftest import close_websocket

pytestmark = [pytest.mark.process, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """The servers and the web, one set for the three kills (the city is generated once)."""
    started = Rig(tmp_path_factory.mktemp("crash") / "var")
    try:
        started.start_web()
        yield started
    finally:
        started.close()


@pytest.mark.parametrize("victim, down_s", [("postgres", 12.0), ("redis", 12.0), ("web", 1.0)])
def test_every_acknowledged_ticket_survives_a_kill(rig, victim, down_s):
    # a server stays dead longer than the web waits for it (10 s for PostgreSQL, 5 s for Redis)
    outcome = run_victim(rig, victim, before=20, after=20, down_s=down_s)
    assert len(outcome.acknowledged) >= 40
    assert outcome.missing == [] and outcome.incomplete == [], (outcome, rig.log()[-3000:])
    assert outcome.found == len(outcome.acknowledged)
    assert outcome.half_saved == []  # nor any ticket refused or unanswered stored in part
    assert outcome.undelivered == [] and outcome.outbox_left == 0, outcome
    assert 500 not in outcome.refused, (outcome.refused, rig.log()[-3000:])


def _burst(lat: float, lon: float) -> bytes:
    t = datetime.now(timezone.utc).replace(microsecond=0)
    return ("\r\n".join([nmea_out.gga(t, lat, lon), nmea_out.rmc(t, lat, lon, speed_kmh=20.0, course_deg=90.0)])
            + "\r\n").encode()


def _fix_of(rig, token: str, vehicle_id: str) -> dict | None:
    code, body = rig.request("GET", f"/api/vehicles/{vehicle_id}", token=token)
    return (body.get("vehicle") or body).get("fix") if code == 200 else None


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return value


MOVING = ("time_left_s", "limit_share_left", "limit_level")  # a ticket's view that moves with the clock


def _records(rig, token: str, numbers: list[str]) -> dict:
    """What must survive a wipe, read through the API."""
    def get(path: str) -> dict:
        code, body = rig.request("GET", path, token=token)
        assert code == 200, (path, code, body)
        return body

    return {"timelines": {n: get(f"/api/tickets/{n}/timeline")["events"] for n in numbers},
            "tickets": {n: {k: v for k, v in get(f"/api/tickets/{n}").items() if k not in MOVING} for n in numbers},
            "crews": {c["crew_id"]: {k: c.get(k) for k in ("crew_name", "unit_id", "skills", "vehicle_id", "active")}
                      for c in get("/api/admin/crews")["crews"]},
            "vehicles": {v["vehicle_id"]: {k: v.get(k) for k in ("plate", "kind", "unit_id", "active")}
                         for v in get("/api/admin/vehicles")["vehicles"]},
            "users": {u["name"]: {k: u.get(k) for k in ("role", "active", "crew_id")}
                      for u in get("/api/admin/users")["users"]},
            "audit": get("/api/admin/audit?limit=500")["entries"]}


async def _console_snapshot(rig, token: str) -> dict:
    request = tornado.httpclient.HTTPRequest(rig.base.replace("http", "ws") + "/ws/live",
                                             headers={"Authorization": f"Bearer {token}"})
    ws = await tornado.websocket.websocket_connect(request)
    try:
        return orjson.loads(await asyncio.wait_for(ws.read_message(), 10))
    finally:
        await close_websocket(ws)


def test_a_redis_wipe_loses_no_record_and_the_live_state_comes_back_by_itself(rig):
    """FLUSHALL, then redis-server restarted without its AOF: no ticket, audit event, account,
    crew, vehicle or administrative audit entry is lost; logins work again (sessions are live
    state: they end), consoles get their tickets from PostgreSQL, a vehicle is back on the map
    with its next MQTT message, and ticket changes are published again."""
    token = rig.login()
    for body in ({"vehicle_id": "W01", "plate": "鲁G·W0001", "kind": "repair", "unit_id": "PWR01"},):
        assert rig.request("POST", "/api/admin/vehicles", body, token)[0] == 201
    assert rig.request("POST", "/api/admin/crews", {"crew_id": "CW1", "crew_name": "清库测试班", "unit_id": "PWR01",
                                                    "skills": ["power"], "vehicle_id": "W01"}, token)[0] == 201
    assert rig.request("POST", "/api/admin/users", {"name": "wipe-agent", "role": "agent",
                                                    "password": "wipe-pass-12345"}, token)[0] == 201
    numbers = []
    for i in range(5):
        code, reply = rig.request("POST", "/api/tickets", {
            "channel": "phone", "category": "power", "type": "repair", "urgency": "urgent",
            "description": f"清库前的工单 {i}", "caller_phone": f"1390000{i:04d}", "lon": 119.75 + i * 0.001,
            "lat": 36.38, "link": False}, token)
        assert code == 201, reply
        numbers.append(reply["ticket"]["number"])
    ingest = rig.spawn("ingest")
    publisher = MqttClient(rig.servers.mqtt_url, "wipe-test-vehicle")
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        _until(lambda: publisher.publish("fleet/W01/nmea", _burst(36.381, 119.751)) and _fix_of(rig, token, "W01"),
               30, "W01 on the map before the wipe")
        before = _records(rig, token, numbers)

        client = redis.Redis.from_url(rig.servers.redis_url)
        client.flushall()
        client.close()
        server = next(p for p in rig.servers.owned if p.name == "redis-server")
        server.process.kill()
        server.process.wait(10)
        shutil.rmtree(rig.data_dir / "redis" / "appendonlydir", ignore_errors=True)
        _until(lambda: "redis-server" in rig.servers.revive(), 30, "an empty redis-server")
        client = redis.Redis.from_url(rig.servers.redis_url)
        assert client.dbsize() <= 2  # empty but for what the services wrote since (heartbeats)

        _until(lambda: rig.request("GET", "/api/me", token=token)[0] == 401, 10,  # sessions were live state
               "the old session ended (a web process caches one for 2 s)")
        token = _until(lambda: _login_or_none(rig), 30, "a login after the wipe")
        assert rig.request("POST", "/api/login", {"username": "wipe-agent", "password": "wipe-pass-12345"})[0] == 200
        after = _records(rig, token, numbers)
        for name in ("timelines", "tickets", "crews", "vehicles", "users", "audit"):
            assert after[name] == before[name], name
        assert before["crews"]["CW1"]["vehicle_id"] == "W01" and "wipe-agent" in after["users"]

        snapshot = asyncio.run(_console_snapshot(rig, token))  # the console: tickets from PostgreSQL
        assert set(numbers) <= {t["number"] for t in snapshot["tickets"]}
        assert _fix_of(rig, token, "W01") is None  # the live position went with Redis...
        _until(lambda: publisher.publish("fleet/W01/nmea", _burst(36.382, 119.752)) and _fix_of(rig, token, "W01"),
               30, "W01 back on the map from its next message")  # ...and its next message brings it back

        code, reply = rig.request("POST", "/api/tickets", {
            "channel": "phone", "category": "power", "type": "repair", "urgency": "urgent",
            "description": "清库后的工单", "caller_phone": "13900009999", "lon": 119.76, "lat": 36.38, "link": False},
            token)
        assert code == 201
        _until(lambda: any(f.get(b"number") == reply["ticket"]["number"].encode()
                           for _, f in client.xrange("tkt:changes")), 10, "the new change on tkt:changes")
        client.close()
    finally:
        publisher.stop()
        ingest.terminate()
        ingest.wait(15)


def _login_or_none(rig) -> str | None:
    try:
        return rig.login()
    except (RuntimeError, OSError):
        return None
