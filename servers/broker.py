"""The embedded amqtt broker, run as a child process: ``python -m servers.broker '<json>'``.

Options (JSON): ``bind`` ("127.0.0.1:port"), ``password_file`` and ``acl_file`` (mosquitto's
formats, see servers/broker_credentials.py), optional ``certfile``/``keyfile`` for a TLS listener. The
process exits when its stdin reaches EOF (its parent died or closed the pipe) or on SIGTERM.

amqtt 0.12.1 looks up, deletes or takes over the session of a CONNECT's client id before it asks
the authentication plugins: an unauthenticated client sending a connected device's client id
would drop that device's session. ``CenterBroker`` therefore reads the CONNECT packet first,
asks the plugin, refuses with CONNACK 5 (not authorised) and only then lets amqtt go on, replaying
the packet (amqtt's own BufferReader and ConnectPacket; amqtt is pinned for this reason). It
also walks its subscription table over a snapshot (see ``_Subscriptions``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys

from amqtt.adapters import BufferReader
from amqtt.broker import Broker
from amqtt.errors import MQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket

from servers.broker_acl import FileAclPlugin

log = logging.getLogger(__name__)
PLUGIN = "servers.broker_acl.FileAclPlugin"
MAX_CONNECT_BYTES = 64 * 1024


async def _read_packet(reader) -> bytes:
    """The raw bytes of one MQTT packet: fixed header, remaining length, body."""
    head = await reader.read(1)
    if len(head) != 1:
        raise MQTTError("connection closed before CONNECT")
    raw, length, shift = bytearray(head), 0, 0
    for _ in range(4):
        byte = await reader.read(1)
        if len(byte) != 1:
            raise MQTTError("connection closed in CONNECT")
        raw += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if byte[0] < 0x80:
            break
    else:
        raise MQTTError("malformed remaining length")
    if head[0] >> 4 != 1 or length > MAX_CONNECT_BYTES:
        raise MQTTError("first packet is not a CONNECT of a sane size")
    body = b""
    while len(body) < length:
        chunk = await reader.read(length - len(body))
        if not chunk:
            raise MQTTError("connection closed in CONNECT")
        body += chunk
    return bytes(raw) + body


class _Subscriptions(dict):
    """amqtt's subscription table, iterated over a snapshot: amqtt walks it while awaiting the
    topic-filtering plugins, and a client subscribing meanwhile ended that delivery with
    "dictionary changed size during iteration"."""

    def __iter__(self):
        return iter(list(super().keys()))

    def items(self):
        """A snapshot of the (filter, subscribers) pairs."""
        return list(super().items())


class CenterBroker(Broker):
    """amqtt's broker, authenticating a CONNECT before amqtt touches any session."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions = _Subscriptions()

    def _auth_plugin(self) -> FileAclPlugin:
        return next(p for p in self.plugins_manager.plugins if isinstance(p, FileAclPlugin))

    async def _initialize_client_session(self, reader, writer, remote_address, remote_port):
        try:
            raw = await asyncio.wait_for(_read_packet(reader), 30)
            connect = await ConnectPacket.from_stream(BufferReader(raw))
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError, ValueError, MQTTError) as exc:
            # a port probe, a client gone before its CONNECT, or garbage: close and forget it
            with contextlib.suppress(OSError):
                await writer.close()
            raise MQTTError(f"no valid CONNECT from {remote_address}:{remote_port}: {exc!r}") from None
        if connect is None or not self._auth_plugin().allows_connect(connect.username, connect.password,
                                                                     connect.client_id):
            log.warning("MQTT connect refused: %s:%s client id %r user %r", remote_address, remote_port,
                        getattr(connect, "client_id", None), getattr(connect, "username", None))
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise MQTTError("not authorised")
        return await super()._initialize_client_session(BufferReader(raw), writer, remote_address, remote_port)


def config(options: dict) -> dict:
    """amqtt's broker configuration for our options."""
    listener = {"type": "tcp", "bind": options["bind"], "max_connections": options.get("max_connections", 20000)}
    if options.get("certfile"):
        listener.update(ssl=True, certfile=options["certfile"], keyfile=options["keyfile"])
    return {
        "listeners": {"default": listener},
        "plugins": {PLUGIN: {"password_file": options["password_file"], "acl_file": options["acl_file"]}},
    }


async def serve(options: dict) -> None:
    """Run the broker until stdin closes or SIGTERM/SIGINT."""
    broker = CenterBroker(config(options))
    await broker.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not sys.stdin.isatty():
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(4096) else None)
    await stop.wait()
    await broker.shutdown()


def main() -> None:
    """Entry point of the child process."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s amqtt %(levelname)s %(name)s: %(message)s")
    logging.getLogger("amqtt").setLevel(logging.ERROR)  # a warning per port probe (health checks) otherwise
    asyncio.run(serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
