"""The benchmarks' bulk QoS 0 publisher (bench.mqtt_raw) speaks MQTT a real broker and paho
accept: every message arrives, in order, with its topic and payload, whatever the length."""
from __future__ import annotations

import random
import threading
import time

import pytest

from bench.mqtt_raw import RawPublisher, publish_packet, topic_prefix, varint
from messaging.mqtt import MqttClient

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("n, encoded", [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
                                        (16384, b"\x80\x80\x01"), (2097152, b"\x80\x80\x80\x01")])
def test_remaining_length_encoding_matches_the_mqtt_examples(n, encoded):
    assert varint(n) == encoded


def test_bulk_published_messages_reach_a_paho_subscriber_through_the_broker(mqtt_url):
    rng = random.Random(5)
    sizes = [0, 1, 100, 127, 128, 300, 16383, 16384, 70_000]
    messages = [(f"raw/{i % 7}/nmea", bytes(rng.getrandbits(8) for _ in range(size)))
                for i, size in enumerate(sizes * 3)]
    got, done = [], threading.Event()

    def on_messages(batch):
        got.extend((m.topic, m.payload, m.qos) for m in batch)
        if len(got) >= len(messages):
            done.set()

    sub = MqttClient(mqtt_url, "raw-sub", on_messages=on_messages)
    sub.subscribe("raw/+/nmea")
    sub.start()
    try:
        assert sub.wait_connected(15)
        time.sleep(0.3)  # the subscription is in place
        pub = RawPublisher(mqtt_url, "raw-pub")
        try:
            sent = pub.publish_many((topic_prefix(t), p) for t, p in messages[:10])
            sent += pub.publish_many((topic_prefix(t), p) for t, p in messages[10:])
        finally:
            pub.close()
        assert sent == len(messages)
        assert done.wait(15)
        assert got == [(t, p, 0) for t, p in messages]
        assert publish_packet(topic_prefix("a/b"), b"x") == b"\x30\x06\x00\x03a/bx"
    finally:
        sub.stop()
