"""Sensor simulator: daily curves, JSON and Sparkplug B output the ingest decoders accept,
scenario hooks, seeded determinism, and one run against the real broker."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from messaging.mqtt import MqttClient
from ingest.readings import decode_json_reading
from ingest.sparkplug import SparkplugState
from simulators.sensor_model import load_percent, pressure_offset, substation_of
from simulators.sensors import SensorSimError, SensorSimulator
from simulators.sim_clock import SimClock
from tests.conftest import wait_for
from tests.sensor_sim import START, Capture, run_steps, sensor_specs


@pytest.mark.parametrize("hour, low, high", [
    (4.0, 28.0, 32.0),     # night trough ~30 %
    (20.0, 75.0, 85.0),    # evening peak
    (10.0, 50.0, 65.0),
])
def test_load_curve(hour, low, high):
    assert low <= load_percent(hour) <= high


@pytest.mark.parametrize("hour, sign", [(3.0, 1), (8.0, -1)])  # night rise, morning dip
def test_pressure_curve(hour, sign):
    assert pressure_offset(hour) * sign > 0.02


@pytest.mark.parametrize("feeder, station", [("10kV城区3线", "10kV城区"), ("10kV醴泉12线", "10kV醴泉"), (None, None)])
def test_substation_of(feeder, station):
    assert substation_of(feeder) == station


def test_json_readings_decode_and_stay_in_range():
    cap = Capture()
    sim = SensorSimulator(sensor_specs(), publish=cap, seed=3, sparkplug_nodes=0)
    run_steps(sim, 24 * 3600, step_s=60)
    pressures = [decode_json_reading(t, p, START) for t, p, *_ in cap.messages if t.endswith("/pressure")]
    loads = [decode_json_reading(t, p, START) for t, p, *_ in cap.messages if t.endswith("/load")]
    assert len(pressures) == 4 * 24 * 12  # 4 points, every 300 s for a day
    assert all(0.24 <= r.value <= 0.37 and r.unit == "MPa" for r in pressures)
    assert all(r.ts.tzinfo is not None for r in pressures)
    night = [r.value for r in loads if r.sensor_id == "L0001" and 19 <= r.ts.hour <= 21]  # 03-05 local
    evening = [r.value for r in loads if r.sensor_id == "L0001" and 11 <= r.ts.hour <= 12]  # 19-20 local
    assert sum(night) / len(night) < 40 < 60 < sum(evening) / len(evening)
    assert max(night) < min(evening)


def test_same_seed_same_messages_other_seed_other_values():
    def run(seed):
        cap = Capture()
        sim = SensorSimulator(sensor_specs(), publish=cap, seed=seed)
        now = run_steps(sim, 1800)
        sim.main_burst("DMA01", spread_s=120)
        sim.node_death("SUB01")
        run_steps(sim, 600, start=now)
        return cap.messages

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_sparkplug_output_decodes_with_the_ingest_state():
    cap = Capture()
    sim = SensorSimulator(sensor_specs(), publish=cap, seed=1, sparkplug_nodes=2, period_s=10)
    assert sorted(sim.nodes) == ["SUB01", "SUB02"]
    assert sim.nodes["SUB01"].devices == ["L0001", "L0002"]  # the two 城区 feeders share a station
    now = run_steps(sim, 3000, step_s=10)  # > 256 messages per node: seq wraps
    state = SparkplugState(sim.sparkplug_sensor_map())
    counts, readings = {}, []
    for topic, payload, *_ in cap.messages:
        if topic.startswith("spBv1.0/"):
            result = state.handle(topic, payload, now)
            readings += result.readings
            for key, n in result.counts.items():
                counts[key] = counts.get(key, 0) + n
    assert counts.get("seq_gap", 0) == 0 and counts.get("seq_wrap", 0) >= 1
    assert {r.sensor_id for r in readings} == {"L0001", "L0002", "L0003"}
    assert all(r.unit == "%" for r in readings)
    assert cap.topics("scada/L0004/load")  # the third station stays plain JSON
    assert not cap.topics("scada/L0001/")
    # NBIRTH carries bdSeq; DDATA uses the alias only
    assert cap.topics("spBv1.0/democity/NBIRTH/SUB01") and cap.topics("spBv1.0/democity/DBIRTH/SUB01/L0001")


def test_node_death_then_restore_rebirths_with_next_bdseq():
    cap = Capture()
    sim = SensorSimulator(sensor_specs(), publish=cap, seed=1, period_s=10)
    state = SparkplugState(sim.sparkplug_sensor_map())
    now = run_steps(sim, 100)
    sim.node_death("SUB01")
    now = run_steps(sim, 100, start=now)
    sim.restore("SUB01")
    run_steps(sim, 100, start=now)
    offline_seen, online_again = [], False
    for topic, payload, *_ in cap.messages:
        if topic.startswith("spBv1.0/"):
            result = state.handle(topic, payload, now)
            offline_seen += result.offline
            assert not result.counts.get("stale_death") and not result.counts.get("no_birth")
    deaths = cap.topics("spBv1.0/democity/NDEATH/SUB01")
    births = cap.topics("spBv1.0/democity/NBIRTH/SUB01")
    assert len(deaths) == 1 and len(births) == 2
    assert sorted(offline_seen) == ["L0001", "L0002"]
    online_again = state.is_online("democity", "SUB01", "L0001")
    assert online_again


def test_main_burst_spreads_nearest_first_below_critical():
    cap = Capture()
    sim = SensorSimulator(sensor_specs(), publish=cap, seed=2, sparkplug_nodes=0, period_s=10)
    now = run_steps(sim, 60)
    order = sim.main_burst("DMA01", at=(119.721, 36.38), spread_s=300)
    assert order == ["P003", "P002", "P001"]
    first_low: dict[str, datetime] = {}
    for _ in range(60):
        sim.step(now)
        now += timedelta(seconds=10)
    for topic, payload, *_ in cap.messages:
        reading = decode_json_reading(topic, payload, now)
        if reading.quantity == "pressure" and reading.value < 0.14:
            first_low.setdefault(reading.sensor_id, reading.ts)
    assert list(sorted(first_low, key=first_low.get)) == ["P003", "P002", "P001"]  # P009 is elsewhere
    flows = [decode_json_reading(t, p, now).value for t, p, *_ in cap.messages if t == "scada/F01/flow"]
    assert flows[-1] > 800
    sim.restore("DMA01")
    cap.messages.clear()
    run_steps(sim, 60, start=now)
    assert all(decode_json_reading(t, p, now).value > 0.2 for t, p, *_ in cap.messages if t.endswith("/pressure"))


@pytest.mark.parametrize("hook, args, sensor, check", [
    ("transformer_overload", ("T0004",), "L0004", lambda v: v > 110),
    ("feeder_outage", (["T0004"],), "L0004", lambda v: v == 0.0),
])
def test_load_hooks(hook, args, sensor, check):
    cap = Capture()
    sim = SensorSimulator(sensor_specs(), publish=cap, seed=2, sparkplug_nodes=0, period_s=10)
    now = run_steps(sim, 30)
    getattr(sim, hook)(*args)
    run_steps(sim, 300, start=now)
    values = [decode_json_reading(t, p, now).value for t, p, *_ in cap.messages if t == f"scada/{sensor}/load"]
    assert check(values[-1])


def test_dead_sensor_stops_publishing():
    cap = Capture()
    sim = SensorSimulator(sensor_specs(), publish=cap, seed=2, sparkplug_nodes=0, period_s=10)
    now = run_steps(sim, 30)
    sim.dead_sensor("P002")
    cap.messages.clear()
    now = run_steps(sim, 300, start=now)
    assert not cap.topics("scada/P002/") and cap.topics("scada/P001/")
    sim.restore()
    run_steps(sim, 100, start=now)
    assert cap.topics("scada/P002/")


@pytest.mark.parametrize("hook, args", [
    ("main_burst", ("DMA99",)), ("transformer_overload", ("T9999",)), ("dead_sensor", ("X1",)),
    ("node_death", ("SUB09",)),
])
def test_hooks_refuse_unknown_targets(hook, args):
    sim = SensorSimulator(sensor_specs(), publish=Capture(), seed=1)
    sim.step(START)
    with pytest.raises(SensorSimError):
        getattr(sim, hook)(*args)


def test_sim_clock_compresses_time():
    ticks = iter([100.0, 100.0, 102.5])
    clock = SimClock(START, speedup=60, monotonic=lambda: next(ticks))
    assert clock.now() == START
    assert clock.now() == START + timedelta(seconds=150)  # 2.5 s x 60


@pytest.mark.integration
async def test_against_the_real_broker_with_ndeath_as_will(mqtt_url):
    from simulators.sensor_mqtt import MqttTransport

    received = []
    watcher = MqttClient(mqtt_url, "test-sensor-watch", on_messages=received.extend,
                         loop=asyncio.get_running_loop())
    watcher.subscribe(["scada/#", "spBv1.0/#"], qos=1)
    watcher.start()
    await wait_for(lambda: watcher.connected)  # driven by this loop: wait without blocking it
    await asyncio.sleep(0.3)
    transport = MqttTransport(mqtt_url, "test-sim-sensors")
    assert transport.wait_connected(10)
    sim = SensorSimulator(sensor_specs(), publish=transport.publish, seed=1, period_s=10,
                          node_connector=transport.connect_node)
    try:
        run_steps(sim, 120)
        await wait_for(lambda: any(m.topic == "spBv1.0/democity/DDATA/SUB01/L0001" for m in received))
        await wait_for(lambda: any(m.topic.startswith("scada/P001/") for m in received))
        sim.node_death("SUB01")  # abrupt: only the broker can publish this NDEATH
        await wait_for(lambda: any(m.topic == "spBv1.0/democity/NDEATH/SUB01" for m in received))
        state = SparkplugState(sim.sparkplug_sensor_map())
        offline = []
        for m in received:
            if m.topic.startswith("spBv1.0/democity/") and "/SUB01" in m.topic:
                offline += state.handle(m.topic, m.payload, START).offline
        assert sorted(offline) == ["L0001", "L0002"]
    finally:
        sim.close()
        transport.stop()
        watcher.stop()
