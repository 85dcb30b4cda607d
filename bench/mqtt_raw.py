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


# -- the benchmark: `python -m bench.mqtt_raw` -------------------------------------------------
# What the MQTT client alone receives: a RawPublisher floods one topic family (a GGA+RMC payload,
# as a vehicle sends) through the embedded broker into `messaging.mqtt.MqttClient` driven by an
# asyncio loop, as the ingest drives it; the handler only counts. Figures over BENCH_MQTT_S
# seconds after a 1-s warm-up: ``mqtt_client_msgs_per_s`` (received per wall second; on a small
# machine the publisher and broker take the other cores and often set this pace),
# ``mqtt_client_cpu_us_per_msg`` (the receiving process's CPU per message) and
# ``mqtt_client_msgs_per_cpu_s`` (messages per second of its CPU: what one core could take).
BENCH_PAYLOAD = (b"$GPGGA,120000.00,3612.3456789,N,11924.1234567,E,1,10,0.9,45.0,M,6.0,M,,*4A\r\n"
                 b"$GPRMC,120000.00,A,3612.3456789,N,11924.1234567,E,12.5,87.0,071226,,,A*6C\r\n")


def _flood(url: str, seconds: float) -> None:
    """Publish pre-encoded rounds of 500 vehicles' messages as fast as the broker takes them."""
    import time

    publisher = RawPublisher(url, "bench-raw-pub")
    prefixes = [topic_prefix(f"fleet/V{i:05d}/nmea") for i in range(500)]
    round_ = b"".join(publish_packet(prefix, BENCH_PAYLOAD) for prefix in prefixes)
    until = time.monotonic() + seconds
    try:
        while time.monotonic() < until:
            publisher.sock.sendall(round_)
    finally:
        publisher.close()


async def _receive(url: str, seconds: float) -> tuple[int, float, float]:
    """(messages, wall s, CPU s) the client took in ``seconds`` of flood after a warm-up."""
    import asyncio
    import multiprocessing as mp
    import time

    from messaging.mqtt import MqttClient

    counted = [0]
    client = MqttClient(url, "bench-raw-sub", loop=asyncio.get_running_loop(),
                        on_messages=lambda batch: counted.__setitem__(0, counted[0] + len(batch)))
    client.subscribe("fleet/+/nmea")
    client.start()
    flood = None
    try:
        while not client.connected:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the subscription is in place
        flood = mp.get_context("spawn").Process(target=_flood, args=(url, seconds + 2.0), daemon=True)
        flood.start()
        await asyncio.sleep(1.0)
        n0, t0, c0 = counted[0], time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        return counted[0] - n0, time.monotonic() - t0, time.process_time() - c0
    finally:
        client.stop()
        if flood is not None:
            flood.join(seconds + 10)


def main() -> None:
    """Start a broker, measure the client, print the figures."""
    import asyncio
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from bench.common import emit, progress
    from servers.embedded import start_broker

    seconds = float(os.environ.get("BENCH_MQTT_S", "5"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    broker = start_broker(tmp / "broker")
    try:
        messages, wall, cpu = asyncio.run(_receive(broker.url, seconds))
        progress(f"mqtt client ({broker.name}): {messages:,} messages in {wall:.1f} s, {cpu:.1f} s CPU")
        emit("mqtt_client_msgs_per_s", round(messages / wall), "msg/s")
        emit("mqtt_client_cpu_us_per_msg", round(cpu / max(messages, 1) * 1e6, 1), "us")
        emit("mqtt_client_msgs_per_cpu_s", round(messages / max(cpu, 1e-9)), "msg/s")
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
