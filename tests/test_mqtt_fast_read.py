"""The MQTT client's fast read path against paho's own reader (pure: a socketpair, no broker).

Whole QoS 0 PUBLISH packets in the read buffer are parsed by `_BufferedSocket.take_publishes`;
everything else (QoS 1, PINGRESP, packets cut by a read boundary) goes through paho. Both paths
must deliver the same messages in the same order, however the bytes are split into reads.
"""
from __future__ import annotations

import socket

from hypothesis import given, settings, strategies as st

from bench.mqtt_raw import varint as _varint
from messaging import mqtt as M


def publish(topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, mid: int = 1) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + (mid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + _varint(len(body)) + body


PINGRESP = b"\xd0\x00"


FAST_COUNT: list[int] = [0]


def _receive(chunks: list[bytes], *, fast: bool) -> list[tuple[str, bytes, int, bool]]:
    """Feed the byte chunks to a connected-looking client; return what it delivered (and count
    in FAST_COUNT the messages that took the fast path)."""
    got: list = []
    client = M.MqttClient("mqtt://127.0.0.1:1", "fast-read-test", on_messages=got.extend)
    paho_client = client._client
    FAST_COUNT[0] = 0
    if fast:
        def counted(*args, _deliver=paho_client.fast_publish):
            FAST_COUNT[0] += 1
            _deliver(*args)
        paho_client.fast_publish = counted
    else:
        paho_client.fast_publish = None
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    paho_client._sock = M._BufferedSocket(ours)
    try:
        for chunk in chunks:
            theirs.sendall(chunk)
            for _ in range(len(chunk) + 2):  # enough reads for one packet per call, too
                assert paho_client.loop_read() == 0
        return [(m.topic, m.payload, m.qos, m.retain) for m in got]
    finally:
        paho_client._sock = None
        ours.close()
        theirs.close()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def test_publishes_of_every_size_class_arrive_whole_and_in_order():
    nmea = b"$GPGGA,120000.00,3612.3456789,N,11924.1234567,E,1,10,0.9,45.0,M,6.0,M,,*4A\r\n" * 3
    packets = [publish("fleet/V1/nmea", b""), publish("fleet/V2/nmea", b"x" * 100),
               publish("fleet/V3/nmea", nmea), publish("fleet/V4/nmea", b"y" * 20_000),
               publish("fleet/V5/status", b"offline", retain=True), publish("scada/S1/pressure", b"{}")]
    got = _receive([b"".join(packets)], fast=True)
    assert got == [("fleet/V1/nmea", b"", 0, False), ("fleet/V2/nmea", b"x" * 100, 0, False),
                   ("fleet/V3/nmea", nmea, 0, False), ("fleet/V4/nmea", b"y" * 20_000, 0, False),
                   ("fleet/V5/status", b"offline", 0, True), ("scada/S1/pressure", b"{}", 0, False)]
    assert FAST_COUNT[0] == 6  # all parsed by the fast path, in one read
    assert got == _receive([b"".join(packets)], fast=False)


def test_other_packets_between_publishes_go_through_paho():
    data = b"".join([publish("a/1", b"one"), PINGRESP, publish("a/2", b"two", qos=1, mid=7),
                     publish("a/3", "三".encode())])
    got = _receive([data], fast=True)
    assert got == [("a/1", b"one", 0, False), ("a/2", b"two", 1, False), ("a/3", "三".encode(), 0, False)]
    assert FAST_COUNT[0] == 2  # the QoS 1 publish and the PINGRESP went through paho


packet_st = st.one_of(
    st.builds(lambda t, p, r: publish(f"fleet/{t}/nmea", p, retain=r),
              st.text("AZ09", min_size=1, max_size=8), st.binary(max_size=400), st.booleans()),
    st.builds(lambda t, p, m: publish(f"scada/{t}/flow", p, qos=1, mid=m),
              st.text("az", min_size=1, max_size=5), st.binary(max_size=50), st.integers(1, 65535)),
    st.just(PINGRESP),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(packet_st, min_size=1, max_size=30), st.lists(st.integers(0, 20_000), max_size=12))
def test_fast_and_paho_paths_agree_however_the_bytes_are_split(packets, cuts):
    data = b"".join(packets)
    chunks = _split(data, cuts)
    fast = _receive(chunks, fast=True)
    assert fast == _receive(chunks, fast=False)
    assert len(fast) == sum(1 for p in packets if p != PINGRESP)
