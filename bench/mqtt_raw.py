"""A load generator's MQTT publisher: MQTT 3.1.1, QoS 0 only, PUBLISH packets encoded in bulk.

The benchmarks run publisher, broker, Redis and the process under test on one small machine, so
the publisher's own CPU is taken from what it measures: paho spends ~30 µs of Python per publish
(a whole core at 20,000 msg/s on a slow CPU). This client connects once and then writes whole
rounds of pre-encoded PUBLISH packets with one ``sendall`` each, a microsecond or two per
message. The broker and the subscribers see ordinary MQTT traffic. Not for product code: no QoS
1/2, no reconnect, no pings: the keepalive is the longest MQTT allows (KEEPALIVE_S, about 18 h),
because some brokers refuse a CONNECT with keepalive 0 (rumqttd closed the connection without a
CONNACK). Credentials come from the URL (mqtt://user:pass@host:port), as for MqttClient.
"""
from __future__ import annotations

import socket
from typing import Iterable
from urllib.parse import unquote, urlparse

PUBLISH_QOS0 = 0x30
CONNECT = 0x10
CONNACK = 0x20
DISCONNECT = b"\xe0\x00"
KEEPALIVE_S = 0xFFFF  # the protocol's maximum; a benchmark run never goes that long without sending


def varint(n: int) -> bytes:
    """MQTT 'remaining length': 7 bits a byte, least significant first, high bit = more."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def topic_prefix(topic: str) -> bytes:
    """The variable-header part of a PUBLISH for this topic (QoS 0: no packet id)."""
    return _utf8(topic.encode())


def publish_packet(prefix: bytes, payload: bytes) -> bytes:
    """One QoS 0 PUBLISH packet: fixed header, remaining length, topic, payload."""
    return bytes((PUBLISH_QOS0,)) + varint(len(prefix) + len(payload)) + prefix + payload


class RawPublisher:
    """Connects (clean session, KEEPALIVE_S), then publishes QoS 0 packets in bulk."""

    def __init__(self, url: str, client_id: str, timeout: float = 10.0):
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 1883), timeout)
        flags, login = 0x02, b""  # clean session; user name and password when the URL has them
        if parsed.username:
            flags |= 0x80 | (0x40 if parsed.password is not None else 0)
            login = _utf8(unquote(parsed.username).encode())
            if parsed.password is not None:
                login += _utf8(unquote(parsed.password).encode())
        body = (_utf8(b"MQTT") + bytes((4, flags)) + KEEPALIVE_S.to_bytes(2, "big") + _utf8(client_id.encode())
                + login)
        self.sock.sendall(bytes((CONNECT,)) + varint(len(body)) + body)
        ack = b""
        while len(ack) < 4:
            chunk = self.sock.recv(4 - len(ack))
            if not chunk:
                raise ConnectionError("MQTT broker closed the connection before CONNACK")
            ack += chunk
        if ack[0] != CONNACK or ack[3] != 0:
            raise ConnectionError(f"MQTT connection refused: CONNACK {ack.hex()}")
        self.sock.settimeout(None)

    def publish_many(self, messages: Iterable[tuple[bytes, bytes]]) -> int:
        """Send (topic prefix, payload) pairs as one write; returns how many."""
        packets = [publish_packet(prefix, payload) for prefix, payload in messages]
        self.sock.sendall(b"".join(packets))
        return len(packets)

    def close(self) -> None:
        """DISCONNECT and close."""
        try:
            self.sock.sendall(DISCONNECT)
        finally:
            self.sock.close()
