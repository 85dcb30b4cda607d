"""The simulated Sparkplug B edge nodes answer the center's Rebirth command (NCMD) with NBIRTH and
every DBIRTH, and start a new session (bdSeq + 1) when their connection drops: without and with
the real broker. The whole demo is held to it in tests/test_demo_sparkplug.py."""
from __future__ import annotations

import asyncio
import os

import pytest

from messaging.mqtt import MqttClient
from ingest import sparkplug_b_pb2 as pb
from ingest.sensors import rebirth_command
from ingest.sparkplug import SparkplugState, encode_payload
from simulators.sensors import SensorSimulator
from simulators.sparkplug_node import rebirth_asked
from tests.conftest import wait_for
from tests.sensor_sim import START, Capture, run_steps, sensor_specs

NODE = "spBv1.0/democity/{}/SUB01"


def _decode(payload: bytes) -> pb.Payload:
    return pb.Payload.FromString(payload)


def _bdseq(payload: bytes) -> int:
    return next(m.long_value for m in _decode(payload).metrics if m.name == "bdSeq")


def _feed(state: SparkplugState, messages, node: str = "/SUB01") -> tuple[dict[str, int], set[str]]:
    """Counters and sensors read from one node's messages, as the center's ingest sees them."""
    counts: dict[str, int] = {}
    sensors: set[str] = set()
    for topic, payload in messages:
        if topic.startswith("spBv1.0/") and node in topic and "/NCMD/" not in topic:
            result = state.handle(topic, payload, START)
            sensors |= {r.sensor_id for r in result.readings}
            for key, n in result.counts.items():
                counts[key] = counts.get(key, 0) + n
    return counts, sensors


@pytest.mark.parametrize("payload, asked", [
    (rebirth_command(1_000), True),
    (encode_payload([("Node Control/Rebirth", None, False, "Boolean")], None, 1_000), False),
    (encode_payload([("Node Control/Reboot", None, True, "Boolean")], None, 1_000), False),
    (b"\xff\x00not protobuf", False),
    (b"", False),
])
def test_rebirth_asked(payload, asked):
    assert rebirth_asked(payload) is asked


def test_rebirth_command_births_again_before_more_data():
    cap = Capture()
    sim = SensorSimulator(sensor_specs(), publish=cap, seed=1, period_s=10)
    now = run_steps(sim, 100)
    missed = len(cap.messages)  # a center that subscribed only now: it never saw the first births
    state = SparkplugState(sim.sparkplug_sensor_map())
    now = run_steps(sim, 30, start=now)
    counts, sensors = _feed(state, [(t, p) for t, p, *_ in cap.messages[missed:]])
    assert counts.get("no_birth", 0) >= 1 and not sensors  # what the demo showed: data, never a birth

    sim.node_command("SUB01", b"garbage")
    sim.node_command("SUB01", rebirth_command(1_000))
    assert sim.rebirths_asked == 1
    before = len(cap.messages)
    run_steps(sim, 100, start=now)
    after = [(t, p) for t, p, *_ in cap.messages[before:] if "/SUB01" in t]
    assert [t for t, _ in after[:3]] == [NODE.format("NBIRTH"), NODE.format("DBIRTH") + "/L0001",
                                         NODE.format("DBIRTH") + "/L0002"]
    births = cap.topics(NODE.format("NBIRTH"))
    assert len(births) == 2  # one at connect, one answering the command
    first, again = [p for t, p, *_ in cap.messages if t == NODE.format("NBIRTH")]
    assert _bdseq(again) == _bdseq(first)  # same connection, same will: same bdSeq
    assert _decode(again).seq == 0
    assert [_decode(p).seq for _, p in after[:3]] == [0, 1, 2]
    counts, sensors = _feed(state, after)
    assert not counts.get("no_birth") and not counts.get("seq_gap")
    assert sensors == {"L0001", "L0002"}
    assert not cap.topics("spBv1.0/democity/NBIRTH/SUB02")[1:]  # only the node asked births again


class _Link:
    """A connection that reports itself up, then lost."""

    def __init__(self, publish, will_topic: str, will: bytes, **commands):
        self.publish_to, self.will, self.commands = publish, (will_topic, will), commands
        self.connected, self.lost, self.closed = True, False, False

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        return self.publish_to(topic, payload, qos, retain)

    def kill(self) -> None:
        """Not used here."""

    def close(self) -> None:
        self.closed = True


def test_a_lost_connection_starts_a_new_session_with_the_next_bdseq():
    cap = Capture()
    links: dict[str, list[_Link]] = {}

    def connect(node, will_topic, will, **commands):
        links.setdefault(node, []).append(_Link(cap, will_topic, will, **commands))
        return links[node][-1]

    sim = SensorSimulator(sensor_specs(), publish=cap, seed=1, period_s=10, node_connector=connect)
    now = run_steps(sim, 50)
    first = links["SUB01"][0]
    assert first.commands["commands"] == NODE.format("NCMD")  # it listens to its own NCMD only
    first.commands["on_command"](rebirth_command(1_000))  # as its MQTT thread hands it over
    assert sim.nodes["SUB01"].rebirth
    first.connected, first.lost = False, True
    run_steps(sim, 50, start=now)
    assert first.closed and len(links["SUB01"]) == 2 and len(links["SUB02"]) == 1
    births = [p for t, p, *_ in cap.messages if t == NODE.format("NBIRTH")]
    assert [_bdseq(p) for p in births] == [0, 1]
    assert _bdseq(links["SUB01"][1].will[1]) == 1  # the new will ends the new session
    assert "wait" not in first.commands and links["SUB01"][1].commands["wait"] == 0  # no stalled steps


@pytest.mark.integration
async def test_an_edge_node_answers_the_centers_rebirth_on_the_real_broker(mqtt_url):
    from simulators.sensor_mqtt import MqttTransport

    received: list = []
    center = MqttClient(mqtt_url, f"test-rebirth-center-{os.getpid()}", on_messages=received.extend,
                        loop=asyncio.get_running_loop())
    center.subscribe("spBv1.0/#", qos=1)
    center.start()
    await wait_for(lambda: center.connected)
    await asyncio.sleep(0.3)
    transport = await asyncio.to_thread(MqttTransport, mqtt_url, f"test-rebirth-{os.getpid()}")
    assert await asyncio.to_thread(transport.wait_connected, 10)
    sim = SensorSimulator(sensor_specs(), publish=transport.publish, seed=1, period_s=10,
                          node_connector=transport.connect_node)
    messages = lambda: [(m.topic, m.payload) for m in received]  # noqa: E731
    try:
        now = await asyncio.to_thread(run_steps, sim, 60)
        await wait_for(lambda: any(t == NODE.format("DDATA") + "/L0001" for t, _ in messages()))
        center.publish(NODE.format("NCMD"), encode_payload(
            [("Node Control/Rebirth", None, False, "Boolean")], None, 1_000), qos=1)
        center.publish(NODE.format("NCMD"), rebirth_command(2_000), qos=1)
        await wait_for(lambda: sim.rebirths_asked == 1)  # over the node's own connection
        await asyncio.to_thread(run_steps, sim, 60, 10, now)
        births = lambda: [k for k, (t, _) in enumerate(messages()) if t == NODE.format("NBIRTH")]  # noqa: E731
        await wait_for(lambda: len(births()) == 2)
        await wait_for(lambda: any(t == NODE.format("DDATA") + "/L0002" for t, _ in messages()[births()[1]:]))
        births = births()
        assert len(births) == 2 and _bdseq(messages()[births[1]][1]) == _bdseq(messages()[births[0]][1])
        # a center that lost its state before the command: all it sees is from the second birth on
        counts, sensors = _feed(SparkplugState(sim.sparkplug_sensor_map()), messages()[births[1]:])
        assert not counts.get("no_birth") and sensors == {"L0001", "L0002"}
    finally:
        await asyncio.to_thread(sim.close)
        await asyncio.to_thread(transport.stop)
        center.stop()


@pytest.mark.integration
async def test_a_connection_the_broker_drops_ends_in_a_new_session_on_the_real_broker(mqtt_url):
    from simulators.sensor_mqtt import MqttTransport

    received: list = []
    center = MqttClient(mqtt_url, f"test-session-center-{os.getpid()}", on_messages=received.extend,
                        loop=asyncio.get_running_loop())
    center.subscribe("spBv1.0/#", qos=1)
    center.start()
    await wait_for(lambda: center.connected)
    await asyncio.sleep(0.3)
    prefix = f"test-session-{os.getpid()}"
    transport = await asyncio.to_thread(MqttTransport, mqtt_url, prefix)
    sim = SensorSimulator(sensor_specs(), publish=transport.publish, seed=1, period_s=10,
                          node_connector=transport.connect_node)
    intruder = None
    births = lambda: [m.payload for m in received if m.topic == NODE.format("NBIRTH")]  # noqa: E731
    try:
        now = await asyncio.to_thread(run_steps, sim, 30)
        await wait_for(lambda: len(births()) == 1)
        old = sim.nodes["SUB01"].link
        # another client with the node's client id: the broker drops the node's connection
        intruder = MqttClient(mqtt_url, f"{prefix}-SUB01")
        intruder.start()
        await wait_for(lambda: old.lost)
        intruder.stop()
        await wait_for(lambda: not intruder.connected)
        for _ in range(50):  # steps until the new session has connected and births
            now = await asyncio.to_thread(run_steps, sim, 10, 10, now)
            if sim.nodes["SUB01"].born:
                break
            await asyncio.sleep(0.1)
        await wait_for(lambda: len(births()) == 2)
        assert [_bdseq(p) for p in births()] == [0, 1]
        assert sim.nodes["SUB01"].link is not old and sim.nodes["SUB01"].link.connected
    finally:
        if intruder is not None:
            intruder.stop()  # again when the test failed before it left
        await asyncio.to_thread(sim.close)
        await asyncio.to_thread(transport.stop)
        center.stop()
