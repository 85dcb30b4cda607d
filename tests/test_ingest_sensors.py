"""Sensors end to end on the real broker and Redis: registry, readings, alarms, acknowledgement,
Sparkplug births/deaths/rebirth, unknown sensors and garbage, read back through the web API."""
from __future__ import annotations

import asyncio
import json
import math
import time

import orjson
import pytest

from messaging.mqtt import MqttClient
from store.live import ALARM_EVENTS, LIVE_ALARMS, Store
from ingest import service
from ingest import sparkplug_b_pb2 as pb
from ingest.sensors import SensorRegistry
from ingest.sparkplug import encode_death, encode_payload
from services.ticket_alarms import parse_alarm_event
from tests.cities import SENSOR_ROWS
from tests.conftest import test_settings, wait_for

pytestmark = [pytest.mark.integration]

# -- registry: pure -----------------------------------------------------------------------------

@pytest.mark.parametrize("row, deadband, problem", [
    (SENSOR_ROWS[0], 0.15 * 0.02, None),    # the smaller of the two entry limits (0.55 high, 0.15 low)
    ({"sensor_id": "X1", "unit": "%", "high_critical": 100.0}, 2.0, None),
    ({"sensor_id": "X2", "high_warning": 1.0, "deadband": 0.5}, 0.5, None),
    ({"sensor_id": "X3", "high_warning": 1.0, "low_warning": 2.0}, None, "out of order"),
    ({"sensor_id": "", "high_warning": 1.0}, None, "missing sensor_id"),
    ({"sensor_id": "X4", "high_warning": "high"}, None, "could not convert"),
])
def test_registry_rows(row, deadband, problem):
    registry, problems = SensorRegistry.from_rows([row], deadband_pct=2.0)
    if problem is None:
        assert problems == []
        spec = registry.get(row["sensor_id"])
        assert spec.thresholds.deadband == pytest.approx(deadband)
    else:
        assert len(registry) == 0 and problem in problems[0]


@pytest.mark.parametrize("raw, resolved", [
    ("pump7/meter1/Flow", "F01"),      # explicit sparkplug mapping
    ("edge1/P001/Pressure", "P001"),   # the device id is a registered sensor
    ("L0001/Load", "L0001"),           # the node id is a registered sensor
    ("edge1/dev9/Other", "edge1/dev9/Other"),
])
def test_sparkplug_ids_resolve_to_registry_ids(raw, resolved):
    registry, _ = SensorRegistry.from_rows(SENSOR_ROWS)
    assert registry.resolve(registry.sparkplug_map.get(raw, raw)) == resolved


# -- end to end -----------------------------------------------------------------------------------

async def _ingest(tmp_path, redis_url, database_url, mqtt_url, rows=SENSOR_ROWS, **overrides):
    store = Store.from_url(redis_url, database_url)
    await store.replace_sensor_registry(rows)
    settings = test_settings(tmp_path, REDIS_URL=redis_url, MQTT_URL=mqtt_url, **overrides)
    stop = asyncio.Event()
    holder = {}
    task = asyncio.create_task(service.serve(settings, redis_url, mqtt_url, stop=stop, hook=lambda i: holder.__setitem__("ingest", i)))
    await wait_for(lambda: "ingest" in holder and holder["ingest"].mqtt_ok, timeout=15)
    return store, stop, task, holder["ingest"]


async def _publisher(mqtt_url, name):
    pub = MqttClient(mqtt_url, name)
    pub.start()
    assert await asyncio.to_thread(pub.wait_connected, 10)
    await asyncio.sleep(0.3)  # the ingest's subscriptions are acknowledged by now
    return pub


async def _stop(stop, task, store, *clients):
    for client in clients:
        client.stop()
    stop.set()
    await task
    await store.close()


def _reading(value, unit="MPa", ts=None):
    body = {"value": value, "unit": unit}
    if ts is not None:
        body["ts"] = ts
    return json.dumps(body).encode()


async def test_readings_alarm_ack_and_clear_through_the_api(tmp_path, redis_url, database_url, mqtt_url, web):  # noqa: F811
    store, stop, task, ingest = await _ingest(tmp_path, redis_url, database_url, mqtt_url)
    listener = store.redis.pubsub()
    await listener.subscribe(LIVE_ALARMS)
    pub = await _publisher(mqtt_url, "sensor-pub-1")
    try:
        t0 = time.time() - 30
        pub.publish("scada/P001/pressure", _reading(0.30, ts=t0), qos=1)
        pub.publish("scada/P001/pressure", _reading(700.0, unit="kPa", ts=t0 + 10), qos=1)  # 0.70 MPa: critical
        token = await web.login("dispatcher")
        alarms = await wait_for(lambda: _api(web, "/api/alarms?state=active", token, "alarms"), timeout=10)
        assert [(a["alarm_id"], a["severity"], a["state"]) for a in alarms] == [("P001:high", "critical", "raised")]
        assert alarms[0]["value"] == pytest.approx(0.70) and alarms[0]["threshold"] == pytest.approx(0.65)
        detail = orjson.loads((await web.call("GET", "/api/sensors/P001", token=token)).body)
        assert detail["reading"]["value"] == pytest.approx(0.70) and detail["reading"]["unit"] == "MPa"
        assert [h["value"] for h in detail["history"]] == pytest.approx([0.70, 0.30])
        assert [a["kind"] for a in detail["alarms"]] == ["high"]
        listing = orjson.loads((await web.call("GET", "/api/sensors", token=token)).body)
        assert [s["id"] for s in listing["sensors"]] == ["F01", "L0001", "P001"]

        agent = await web.login("agent")
        assert (await web.call("POST", "/api/alarms/P001:high/ack", token=agent, body={})).code == 403
        response = await web.call("POST", "/api/alarms/P001:high/ack", token=token, body={})
        assert response.code == 200, response.body
        acked = orjson.loads(response.body)["alarm"]
        assert acked["state"] == "acknowledged" and acked["acked_by"] == "dispatcher" and acked["acked_at"] > t0
        assert (await web.call("POST", "/api/alarms/NOPE:high/ack", token=token, body={})).code == 404

        pub.publish("scada/P001/pressure", _reading(0.30, ts=t0 + 20), qos=1)  # back to normal: closed
        await wait_for(lambda: _api(web, "/api/alarms", token, "alarms", empty=True), timeout=10)
        events = await store.redis.xrange(ALARM_EVENTS)
        assert [f["type"] for _, f in events] == ["raised", "acknowledged", "cleared"]
        assert orjson.loads(events[1][1]["alarm"])["acked_by"] == "dispatcher"
        # the command side's consumer reads exactly what the ingest writes (the contract of the stream)
        kind, alarm = parse_alarm_event(events[0][1])
        assert (kind, alarm["alarm_id"], alarm["sensor_id"]) == ("raised", "P001:high", "P001")
        live = []

        async def three_live_events():
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:  # None also for the subscription confirmation
                live.append(orjson.loads(message["data"])["type"])
            return len(live) >= 3

        await wait_for(three_live_events, timeout=10)
        assert live == ["raised", "acknowledged", "cleared"]
    finally:
        await listener.aclose()
        await _stop(stop, task, store, pub)


async def _api(web, path, token, key, empty=False):
    body = orjson.loads((await web.call("GET", path, token=token)).body)
    if empty:
        return body[key] == []
    return body[key] or None


async def test_unknown_sensor_is_kept_aside_and_counted(tmp_path, redis_url, database_url, mqtt_url, web):  # noqa: F811
    store, stop, task, ingest = await _ingest(tmp_path, redis_url, database_url, mqtt_url)
    pub = await _publisher(mqtt_url, "sensor-pub-2")
    try:
        pub.publish("scada/Z999/pressure", _reading(0.4), qos=1)
        pub.publish("scada/Z999/pressure", _reading(0.5), qos=1)
        pub.publish("scada/L0001/load", _reading(200.0, unit="kW"), qos=1)  # 200 kW of 400 kVA: 50 %
        await wait_for(lambda: _stats_with(store, "rejected:unknown_sensor", 2), timeout=10)
        token = await web.login("supervisor")
        stats = orjson.loads((await web.call("GET", "/api/ingest/stats", token=token)).body)
        assert stats["rejected"]["unknown_sensor"] == 2 and stats["unknown_sensors"] == {"Z999": 2}
        assert [r["value"] for r in stats["unknown_recent"]] == [0.5, 0.4]
        unknown = orjson.loads((await web.call("GET", "/api/sensors/unknown", token=token)).body)
        assert unknown["counts"] == {"Z999": 2}
        load = await wait_for(lambda: _reading_of(store, "L0001"), timeout=10)
        assert load["value"] == pytest.approx(50.0) and load["unit"] == "%"
    finally:
        await _stop(stop, task, store, pub)


async def _stats_with(store, key, n=1):
    await asyncio.sleep(0)
    stats = await store.ingest_stats()
    return stats if stats.get(key, 0) >= n else None


async def _reading_of(store, sid):
    view = await store.sensor(sid)
    return view["reading"] if view else None


GARBAGE = [
    (b"\xff\xfe\xfa", "invalid_utf8"),
    (b"[1, 2, 3]", "not_object"),
    (b'{"value": NaN}', "value_not_finite"),
    (b'{"value": "0.3"}', "value_not_number"),
    (b"not json at all", "not_json"),
    (b'{"unit": "MPa"}', "value_missing"),
    (b'{"value": 0.3, "ts": "2024-01-01T00:00:00"}', "bad_ts"),
    (b'{"value": 0.3, "unit": "kg"}', "unit_mismatch"),
    (b'{"value": 1.0}' + b" " * 3000, "payload_too_large"),
]


@pytest.mark.allow_logged_errors
async def test_garbage_on_sensor_topics_is_counted_per_reason(tmp_path, redis_url, database_url, mqtt_url):
    store, stop, task, ingest = await _ingest(tmp_path, redis_url, database_url, mqtt_url, INGEST_MAX_PAYLOAD=2048)
    pub = await _publisher(mqtt_url, "sensor-pub-3")
    try:
        for payload, _reason in GARBAGE:
            pub.publish("scada/P001/pressure", payload, qos=1)
        pub.publish("scada/P001/flow", _reading(1.0), qos=1)  # P001 measures pressure
        pub.publish("spBv1.0/g1/NDATA/node1/extra", b"\x00", qos=1)  # device id on an N* message
        pub.publish("spBv1.0/g1/NBIRTH/node1", b"\xff\xff\xff\xff", qos=1)  # not a protobuf
        pub.publish("scada/P001/pressure", _reading(0.3), qos=1)
        await wait_for(lambda: _reading_of(store, "P001"), timeout=10)
        stats = await wait_for(lambda: _stats_with(store, "rejected:sparkplug_payload"), timeout=10)
        for _payload, reason in GARBAGE:
            assert stats.get("rejected:" + reason, 0) >= 1, (reason, stats)
        assert stats["rejected:quantity_mismatch"] == 1 and stats["rejected:sparkplug_topic"] == 1
        assert not task.done() and stats["readings_ok"] == 1
    finally:
        await _stop(stop, task, store, pub)


def _metric_names(payload: bytes) -> list[str]:
    return [m.name for m in pb.Payload.FromString(payload).metrics]


async def test_sparkplug_birth_data_death_and_rebirth_request(tmp_path, redis_url, database_url, mqtt_url):
    store, stop, task, ingest = await _ingest(tmp_path, redis_url, database_url, mqtt_url)
    commands: list = []
    cmd = MqttClient(mqtt_url, "sparkplug-host-watch", on_messages=commands.extend)
    cmd.subscribe("spBv1.0/+/NCMD/#", qos=1)
    cmd.start()
    pub = await _publisher(mqtt_url, "sensor-pub-4")
    try:
        ms = int(time.time() * 1000)
        pub.publish("spBv1.0/water/DDATA/pump9/meter1", encode_payload([("Flow", None, 10.0, "Double")], 0, ms), qos=1)
        await wait_for(lambda: commands, timeout=10)
        assert commands[0].topic == "spBv1.0/water/NCMD/pump9"
        assert _metric_names(commands[0].payload) == ["Node Control/Rebirth"]

        pub.publish("spBv1.0/water/NBIRTH/pump7", encode_payload([("bdSeq", None, 3, "Int64")], 0, ms), qos=1)
        birth = encode_payload([("Flow", 1, 120.0, "Double")], 1, ms, units={"Flow": "L/s"})
        pub.publish("spBv1.0/water/DBIRTH/pump7/meter1", birth, qos=1)
        pub.publish("spBv1.0/water/DDATA/pump7/meter1", encode_payload([(None, 1, 200.0, "Double")], 2, ms + 1000),
                    qos=1)  # by alias, in L/s: 720 m3/h, above the 600 warning
        alarm = await wait_for(lambda: store.alarm("F01:high"), timeout=10)
        assert alarm["severity"] == "warning" and alarm["value"] == pytest.approx(720.0)
        view = await store.sensor("F01")
        assert view["link"] == "online" and view["reading"]["source"] == "sparkplug"
        pub.publish("spBv1.0/water/NDEATH/pump7", encode_death(3), qos=1)
        await wait_for(lambda: _link(store, "F01", "offline"), timeout=10)
    finally:
        cmd.stop()
        await _stop(stop, task, store, pub)


async def _link(store, sid, link):
    view = await store.sensor(sid)
    return view if view and view["link"] == link else None


async def test_silent_sensor_raises_no_data_then_a_reading_clears_it(tmp_path, redis_url, database_url, mqtt_url):
    rows = [{**SENSOR_ROWS[0], "period_s": 0.2}]
    store, stop, task, ingest = await _ingest(tmp_path, redis_url, database_url, mqtt_url, rows=rows, SENSOR_CHECK_S=0.2,
                                              SENSOR_NO_DATA_FACTOR=2.0)
    pub = await _publisher(mqtt_url, "sensor-pub-5")
    try:
        alarm = await wait_for(lambda: store.alarm("P001:no_data"), timeout=10)
        assert alarm["state"] == "raised" and alarm["threshold"] == pytest.approx(0.4)
        pub.publish("scada/P001/pressure", _reading(0.3), qos=1)
        cleared = await wait_for(lambda: _state(store, "P001:no_data", "cleared"), timeout=10)
        assert cleared["acked_at"] is None  # still shown until acknowledged
        assert [a["alarm_id"] for a in await store.alarms("cleared")] == ["P001:no_data"]
        assert math.isfinite(cleared["cleared_at"])
    finally:
        await _stop(stop, task, store, pub)


async def _state(store, aid, state):
    alarm = await store.alarm(aid)
    return alarm if alarm and alarm["state"] == state else None


async def test_alarm_state_survives_an_ingest_restart(tmp_path, redis_url, database_url, mqtt_url):
    store, stop, task, ingest = await _ingest(tmp_path, redis_url, database_url, mqtt_url)
    pub = await _publisher(mqtt_url, "sensor-pub-6")
    pub.publish("scada/L0001/load", _reading(90.0, unit="%"), qos=1)
    await wait_for(lambda: store.alarm("L0001:high"), timeout=10)
    await _stop(stop, task, store)
    store, stop, task, ingest = await _ingest(tmp_path, redis_url, database_url, mqtt_url)
    try:
        assert ingest.sensors.states["L0001"].high.state == "raised"
        pub.publish("scada/L0001/load", _reading(50.0, unit="%"), qos=1)
        await wait_for(lambda: _state(store, "L0001:high", "cleared"), timeout=10)
        events = [f["type"] for _, f in await store.redis.xrange(ALARM_EVENTS)]
        assert events == ["raised", "cleared"]  # not raised twice
    finally:
        await _stop(stop, task, store, pub)


def _point_layer(path, rows):
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}
                for (lon, lat), props in rows]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")


async def test_registry_rows_come_from_the_city_profile_layers(tmp_path):
    from ingest.sensors import load_profile_rows

    _point_layer(tmp_path / "sensors.geojson", [
        ((119.75, 36.38), {"sensor_id": "L0001", "name": "台变负载率", "kind": "transformer_load", "quantity": "load",
                           "unit": "%", "asset_id": "TRF-1", "period_s": 900, "high_warning": 80.0,
                           "high_critical": 100.0}),
        ((119.76, 36.39), {"sensor_id": "P001", "name": "压力监测点", "kind": "pressure", "quantity": "pressure",
                           "unit": "MPa", "asset_id": "WM1", "period_s": 300, "low_warning": 0.2,
                           "high_warning": 0.55})])
    _point_layer(tmp_path / "transformers.geojson", [
        ((119.75, 36.38), {"asset_id": "TRF-1", "name": "台变", "rated_kva": 630, "feeder": "F1"})])
    sections = [f'[layers.{k}]\nkind = "{k}"\nfile = "{k}.geojson"\nformat = "geojson"\ncrs = "EPSG:4326"\n'
                for k in ("sensors", "transformers")]
    (tmp_path / "profile.toml").write_text('[city]\nname = "test"\n\n' + "\n".join(sections), encoding="utf-8")
    rows = await load_profile_rows(tmp_path / "profile.toml")
    by_id = {r["sensor_id"]: r for r in rows}
    assert by_id["L0001"]["rated_kva"] == 630 and by_id["P001"]["rated_kva"] is None
    assert (by_id["P001"]["lon"], by_id["P001"]["lat"]) == (119.76, 36.39)
    registry, problems = SensorRegistry.from_rows(rows)
    assert problems == [] and registry.get("L0001").rated_kva == 630.0
    assert registry.get("P001").thresholds.high_warning == 0.55


# -- the sensors' ingest apart (INGEST_TOPICS) --------------------------------------------------------

async def test_a_fleet_ingest_and_a_sensors_ingest_take_their_own_topics_and_say_so(
        tmp_path, redis_url, database_url, mqtt_url):
    """As the demo runs them: `ingest` with INGEST_TOPICS=fleet and `ingest-sensors`. Each takes
    only its topics (a reading is judged once, by the sensors' process) and writes its own
    heartbeat; the fleet one's asks for the sensors' one, so /healthz names it when it is silent."""
    from datetime import datetime, timezone

    from simulators import nmea_out
    from tests.conftest import register_vehicles
    from web.app import needed_down

    store = Store.from_url(redis_url, database_url)
    await store.replace_sensor_registry(SENSOR_ROWS)
    stop, started = asyncio.Event(), {}
    tasks = []
    for takes in ("fleet", "sensors"):
        settings = test_settings(tmp_path / takes, REDIS_URL=redis_url, MQTT_URL=mqtt_url, INGEST_TOPICS=takes)
        await register_vehicles(settings.DATABASE_URL, ["Q1"])
        tasks.append(asyncio.create_task(service.serve(settings, redis_url, mqtt_url, stop=stop,
                                                       hook=lambda i, t=takes: started.__setitem__(t, i))))
    await wait_for(lambda: len(started) == 2 and all(i.mqtt_ok for i in started.values()), timeout=15)
    fleet, sensors = started["fleet"], started["sensors"]
    assert (fleet.takes_fleet, fleet.takes_sensors, sensors.takes_fleet, sensors.takes_sensors) == \
        (True, False, False, True)
    pub = await _publisher(mqtt_url, "split-pub")
    try:
        t = datetime.now(timezone.utc).replace(microsecond=0)
        fix = "\r\n".join([nmea_out.gga(t, 36.38, 119.75), nmea_out.rmc(t, 36.38, 119.75, speed_kmh=20.0,
                                                                         course_deg=0.0)]) + "\r\n"
        pub.publish("fleet/Q1/nmea", fix.encode(), qos=1)
        pub.publish("scada/P001/pressure", _reading(0.70), qos=1)  # critical
        await wait_for(lambda: _active(store, "P001:high"), timeout=10)
        await wait_for(lambda: _vehicle(store, "Q1"), timeout=10)
        assert (fleet.stats["messages"], sensors.stats["messages"]) == (1, 1)
        assert (fleet.stats["alarm:raised"], sensors.stats["alarm:raised"]) == (0, 1)
        await fleet.report()
        await sensors.report()
        beats = await store.services(["ingest", "ingest-sensors"])
        assert (beats["ingest"]["topics"], beats["ingest-sensors"]["topics"]) == ("fleet", "sensors")
        assert beats["ingest"]["pid"] == beats["ingest-sensors"]["pid"]  # (both in this test's process)
        svc = {name: {"ok": True, **beat} for name, beat in beats.items()} | {"dispatch": {"ok": True}}
        assert needed_down(True, True, svc) == []
        assert needed_down(True, True, {**svc, "ingest-sensors": {"ok": False}}) == ["ingest-sensors"]
        alone = {"ingest": {**svc["ingest"], "topics": "all"}, "dispatch": {"ok": True}}  # one takes every topic
        assert needed_down(True, True, alone) == []
    finally:
        await _stop(stop, asyncio.gather(*tasks), store, pub)


async def _active(store, alarm_id):
    return any(a["alarm_id"] == alarm_id for a in await store.alarms("active"))


async def _vehicle(store, vehicle_id):
    view = await store.vehicle(vehicle_id)
    return view if view and view.get("fix") else None


async def test_a_sensors_ingest_beside_an_ingest_of_every_topic_says_so(tmp_path, redis_url, database_url,
                                                                       mqtt_url, caplog):
    """An ingest-sensors started while the ingest's heartbeat says it takes every topic logs an
    error (every reading would be judged twice); beside a fleet-only ingest it logs none."""
    import logging

    from ingest.service import Ingest, _check_takes

    store = Store.from_url(redis_url, database_url)
    sensors = Ingest(test_settings(tmp_path, REDIS_URL=redis_url, MQTT_URL=mqtt_url, INGEST_TOPICS="sensors"), store)
    try:
        for takes, logged in (("fleet", []), ("all", ["takes the sensors' topics too"])):
            caplog.clear()
            await store.heartbeat("ingest", {"pid": 1, "topics": takes})
            with caplog.at_level(logging.ERROR, logger="ingest.service"):
                await _check_takes(sensors, store)
            assert [m for m in logged if any(m in r.getMessage() for r in caplog.records)] == logged
            assert len(caplog.records) == len(logged)
    finally:
        await store.close()
