"""The MQTT client (messaging.mqtt) against a real broker: both ways to run it (driven by an
asyncio loop, as the ingest runs it, and on paho's own thread) deliver every message in order,
the loop one in batches on its thread; it holds back while its consumer is busy; it reconnects
after the broker restarts and its subscriptions come back; big, binary and empty payloads and a
failing handler do not stop it; a client that vanishes leaves its will. TLS: test_mqtt_security."""
from __future__ import annotations

import ast
import asyncio
import random
import threading
import time
from pathlib import Path

import pytest

from bench.mqtt_raw import RawPublisher, topic_prefix
from messaging import mqtt
from messaging.mqtt import MqttClient, ReceivedMessage, Will
from servers.embedded import restartable, start_broker

pytestmark = pytest.mark.integration


async def until(condition, timeout: float = 15.0, what: str = "") -> None:
    """Wait on the loop until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(0.02)


class Inbox:
    """What a client's handler got: every batch, and the thread it ran on."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.batches: list[list[ReceivedMessage]] = []
        self.threads: set[int] = set()
        self.fail_on = fail_on

    def __call__(self, batch: list[ReceivedMessage]) -> None:
        self.batches.append(batch)
        self.threads.add(threading.get_ident())
        if self.fail_on is not None and any(m.payload == self.fail_on for m in batch):
            raise RuntimeError("the consumer's bug")

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Every message, in the order handed over."""
        return [m for batch in self.batches for m in batch]


def publish_raw(url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish QoS 0 messages in bulk (bench.mqtt_raw: one write, so the subscriber reads many at once)."""
    publisher = RawPublisher(url, f"test-raw-{random.getrandbits(32):x}")
    try:
        publisher.publish_many((topic_prefix(topic), payload) for topic, payload in messages)
    finally:
        publisher.close()


async def started(client: MqttClient, topics=()) -> MqttClient:
    """Subscribe, start, wait until connected and the subscription is in place."""
    if topics:
        client.subscribe(list(topics))
    client.start()
    await until(lambda: client.connected, what=f"{client.client_id} connected")
    await asyncio.sleep(0.3)  # the SUBACK follows the CONNACK
    return client


async def test_both_ways_deliver_every_message_in_order_the_loop_one_in_batches_on_its_thread(mqtt_url):
    loop_inbox, thread_inbox = Inbox(), Inbox()
    on_loop = MqttClient(mqtt_url, "test-order-loop", on_messages=loop_inbox, loop=asyncio.get_running_loop())
    threaded = MqttClient(mqtt_url, "test-order-thread", on_messages=thread_inbox)
    try:
        await started(on_loop, ["order/+/nmea"])
        await started(threaded, ["order/+/nmea"])
        with pytest.raises(RuntimeError):
            on_loop.wait_connected(1)  # it would block the very loop that drives the client
        sent = [(f"order/V{i % 50:02d}/nmea", f"$GPGGA,{i:06d}".encode()) for i in range(3000)]
        publish_raw(mqtt_url, sent)
        await until(lambda: len(loop_inbox.messages) >= 3000 and len(thread_inbox.messages) >= 3000)
        for inbox in (loop_inbox, thread_inbox):
            assert [(m.topic, m.payload, m.qos, m.retain) for m in inbox.messages] == [(t, p, 0, False) for t, p in sent]
        assert loop_inbox.threads == {threading.get_ident()}
        assert max(len(batch) for batch in loop_inbox.batches) > 1  # one batch per wake-up
        assert len(loop_inbox.batches) < len(sent)
        assert {len(batch) for batch in thread_inbox.batches} == {1}  # each as it arrives, on paho's thread
        assert thread_inbox.threads.isdisjoint({threading.get_ident()})
        message = loop_inbox.messages[0]
        with pytest.raises(AttributeError):
            message.payload = b"changed"  # frozen
        assert abs(message.received_at - time.time()) < 60
    finally:
        on_loop.stop()
        threaded.stop()


async def test_a_busy_consumer_holds_delivery_back_then_gets_everything_in_order(mqtt_url):
    inbox, keeps_up = Inbox(), [False]
    client = MqttClient(mqtt_url, "test-busy", on_messages=inbox, loop=asyncio.get_running_loop(),
                        ready=lambda: keeps_up[0])
    try:
        await started(client, ["busy/#"])
        sent = [(f"busy/{i}", str(i).encode()) for i in range(1000)]
        publish_raw(mqtt_url, sent)
        await asyncio.sleep(0.5)
        assert inbox.batches == [] and client.connected  # nothing handed over while it is busy
        keeps_up[0] = True
        await until(lambda: len(inbox.messages) >= len(sent))
        assert [(m.topic, m.payload) for m in inbox.messages] == sent
    finally:
        client.stop()


async def test_after_the_broker_restarts_both_ways_reconnect_and_resubscribe(tmp_path):
    broker = restartable(start_broker, tmp_path)
    loop_inbox, thread_inbox, links = Inbox(), Inbox(), []
    on_loop = MqttClient(broker.url, "test-restart-loop", on_messages=loop_inbox,
                         loop=asyncio.get_running_loop(), on_connection=links.append)
    threaded = MqttClient(broker.url, "test-restart-thread", on_messages=thread_inbox)
    try:
        await started(on_loop, ["restart/+/nmea", "restart/+/status"])
        await started(threaded, ["restart/+/nmea"])
        publish_raw(broker.url, [("restart/A/nmea", b"before")])
        await until(lambda: loop_inbox.messages and thread_inbox.messages)
        broker.stop()
        await until(lambda: not on_loop.connected and not threaded.connected, what="both see the broker gone")
        assert broker.revive()
        await until(lambda: on_loop.connects == 2 and threaded.connects == 2, timeout=45, what="reconnects")
        await asyncio.sleep(0.5)  # the replayed SUBSCRIBEs are acknowledged
        publish_raw(broker.url, [("restart/B/nmea", b"after"), ("restart/B/status", b"online")])
        await until(lambda: len(loop_inbox.messages) == 3 and len(thread_inbox.messages) == 2)
        assert [m.payload for m in loop_inbox.messages] == [b"before", b"after", b"online"]
        assert [m.payload for m in thread_inbox.messages] == [b"before", b"after"]
        assert links == [True, False, True] and on_loop.disconnects == 1
    finally:
        on_loop.stop()
        threaded.stop()
        broker.stop()


@pytest.mark.allow_logged_errors  # the failing handler is logged with its traceback
async def test_big_binary_and_empty_payloads_and_a_failing_handler_do_not_stop_the_client(mqtt_url):
    inbox = Inbox(fail_on=b"boom")
    client = MqttClient(mqtt_url, "test-payloads", on_messages=inbox, loop=asyncio.get_running_loop())
    rng = random.Random(25)
    big = rng.randbytes(3_000_000)
    binary = bytes([0xFF, 0xFE, 0x00, 0xC3]) + rng.randbytes(500)  # not UTF-8, NULs
    try:
        await started(client, ["payload/#"])
        publish_raw(mqtt_url, [("payload/big", big), ("payload/binary", binary), ("payload/empty", b"")])
        await until(lambda: len(inbox.messages) >= 3, timeout=30)
        publish_raw(mqtt_url, [("payload/bug", b"boom")])
        await until(lambda: len(inbox.messages) >= 4)
        publish_raw(mqtt_url, [("payload/after", b"still here")])
        await until(lambda: len(inbox.messages) >= 5)
        assert [(m.topic, m.payload) for m in inbox.messages] == [
            ("payload/big", big), ("payload/binary", binary), ("payload/empty", b""),
            ("payload/bug", b"boom"), ("payload/after", b"still here")]
        assert client.connected and client.disconnects == 0
    finally:
        client.stop()


async def test_a_loop_client_that_vanishes_leaves_its_will_one_that_stops_does_not(mqtt_url):
    inbox = Inbox()
    watcher = MqttClient(mqtt_url, "test-will-watch", on_messages=inbox, loop=asyncio.get_running_loop())
    await started(watcher, ["willtest/+/status"])
    try:
        for name, vanish in (("KILLED", True), ("STOPPED", False)):
            device = MqttClient(mqtt_url, f"test-will-{name}", loop=asyncio.get_running_loop(), keepalive=2,
                                will=Will(f"willtest/{name}/status", b"offline", qos=1, retain=False))
            await started(device)
            device.kill() if vanish else device.stop()
        await until(lambda: any(m.topic == "willtest/KILLED/status" for m in inbox.messages), timeout=20)
        await asyncio.sleep(4)  # twice the keepalive: the stopped one would have left its will by now
        assert [(m.topic, m.payload) for m in inbox.messages] == [("willtest/KILLED/status", b"offline")]
    finally:
        watcher.stop()


def test_the_client_touches_no_private_member_of_paho_and_subclasses_nothing():
    tree = ast.parse(Path(mqtt.__file__).read_text(encoding="utf-8"))
    private = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and node.attr.startswith("_") and not node.attr.startswith("__")
                      and not (isinstance(node.value, ast.Name) and node.value.id == "self")
                      and node.attr != "_replace"})  # urllib's ParseResult._replace is public API
    assert private == []
    assert [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.bases] == []
