"""The one module that owns paho-mqtt: paho types never leave it.

Messages become frozen ``ReceivedMessage`` values. The client keeps the wanted subscriptions
itself and replays them on every (re)connect; paho reconnects with backoff. Messages cross from
paho's network thread to the asyncio loop only through ``loop.call_soon_threadsafe``, in
batches: one wake-up carries the messages that arrived since the previous one, at most
``DRAIN_CHUNK`` per loop callback so that other tasks (the Redis writer) run in between.

Back-pressure: when ``MAX_PENDING`` messages wait for the loop, paho's network thread pauses
(up to ``PAUSE_S`` at a time) instead of reading on; the broker's socket buffer fills, and under
QoS 0 overload the broker sheds load rather than this process growing without bound or starving
its own event loop of the GIL. A consumer that falls behind (``ready()`` false) is not handed
messages until it catches up, which brings the same back-pressure into play.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)


class _BufferedSocket:
    """The broker socket with a read buffer: paho reads a packet in 2-4 tiny ``recv`` calls (a
    syscall each); this serves them from 64 KiB reads. ``pending()`` tells paho bytes are waiting
    (as it does for TLS sockets), so it does not sleep in select while the buffer holds some."""

    __slots__ = ("_sock", "_buf", "_pos")

    def __init__(self, sock) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes from the buffer, refilled from the socket when empty."""
        if self._pos >= len(self._buf):
            data = self._sock.recv(65536)  # BlockingIOError / b"" pass through to paho
            if len(data) <= size:
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = start + size
        return self._buf[start:self._pos]

    def pending(self) -> int:
        """Bytes read from the socket and not yet handed to paho."""
        return max(0, len(self._buf) - self._pos)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _PahoClient(paho.Client):
    """paho's client with buffered reads, up to READ_PACKETS packets handled per wake-up
    (paho handles one per select() call otherwise) and direct message delivery."""

    def _create_socket(self):
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1):
        return super().loop_read(max(max_packets, READ_PACKETS))

    def _handle_on_message(self, message) -> None:
        """Hand a message straight to ``on_message``: `MqttClient` registers no per-topic
        callbacks, so paho's topic-filter matching (a trie walk per message) is skipped; errors
        in the callback are handled as paho does."""
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One MQTT message as the rest of the system sees it (received_at: UTC epoch seconds)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float


_MESSAGE_SETTERS = tuple(ReceivedMessage.__dict__[name].__set__ for name in ReceivedMessage.__slots__)


def _new_message(topic, payload, qos, retain, received_at, _new=object.__new__, _s=_MESSAGE_SETTERS):
    """ReceivedMessage(...) for the hot path: fills the slots without the frozen __init__'s
    object.__setattr__ per field (equal field for field)."""
    message = _new(ReceivedMessage)
    _s[0](message, topic)
    _s[1](message, payload)
    _s[2](message, qos)
    _s[3](message, retain)
    _s[4](message, received_at)
    return message


@dataclass(frozen=True, slots=True)
class Will:
    """The last-will message the broker publishes when this client vanishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


Handler = Callable[[list[ReceivedMessage]], None]
MAX_PENDING = 20_000
READ_PACKETS = 200
DRAIN_CHUNK = 500
BUSY_RETRY_S = 0.005
PAUSE_S = 0.5


class MqttClient:
    """A reconnecting MQTT 3.1.1 client (works with mosquitto, rumqttd and EMQX alike)."""

    def __init__(self, url: str, client_id: str, *, on_messages: Handler | None = None,
                 loop: asyncio.AbstractEventLoop | None = None, will: Will | None = None,
                 keepalive: int = 30, on_connection: Callable[[bool], None] | None = None,
                 ready: Callable[[], bool] | None = None):
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "tcp", ""):
            raise ValueError(f"unsupported MQTT URL scheme in {url!r} (use mqtt://host:port)")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 1883
        self.client_id = client_id
        self._handler = on_messages
        self._loop = loop
        self._on_connection = on_connection
        self._ready = ready  # flow control: deliver only while the consumer says it keeps up
        self._subscriptions: dict[str, int] = {}
        self._pending: list[ReceivedMessage] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self._room = threading.Event()
        self._room.set()
        self._connected = threading.Event()
        self._stopping = False
        self.connects = 0
        self.disconnects = 0
        self._client = _PahoClient(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=paho.MQTTv311, clean_session=True)
        if parsed.username:
            self._client.username_pw_set(parsed.username, parsed.password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client.max_queued_messages_set(0)
        self._client.max_inflight_messages_set(1000)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._keepalive = keepalive

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho retries with backoff until the broker answers."""
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self._client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until connected (for start-up and tests); returns whether it connected."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the network thread."""
        self._stopping = True
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._connected.clear()

    def kill(self) -> None:
        """Vanish without DISCONNECT, as a device losing power: the broker publishes the last will."""
        self._stopping = True
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()
        self._connected.clear()

    def subscribe(self, topics: Sequence[str] | str, qos: int = 0) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        for topic in [topics] if isinstance(topics, str) else topics:
            self._subscriptions[topic] = qos
            if self.connected:
                self._client.subscribe(topic, qos)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> bool:
        """Publish; returns False when the message could not be queued (not connected)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS

    # paho's network thread below ------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT %s: connection refused: %s", self.client_id, reason_code)
            return
        self.connects += 1
        for topic, qos in self._subscriptions.items():
            client.subscribe(topic, qos)
        self._connected.set()
        log.info("MQTT %s connected to %s:%d (%d subscriptions)", self.client_id, self.host,
                 self.port, len(self._subscriptions))
        self._notify_connection(True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and self._stopping:
            log.info("MQTT %s disconnected", self.client_id)
        elif was:
            self.disconnects += 1
            log.warning("MQTT %s disconnected (%s); reconnecting with backoff", self.client_id, reason_code)
            self._notify_connection(False)

    def _notify_connection(self, up: bool) -> None:
        if self._on_connection is None:
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_connection, up)
        else:
            self._on_connection(up)

    def _on_message(self, client, userdata, message) -> None:
        received = _new_message(message.topic, message.payload, message.qos, bool(message.retain),
                                time.time())
        if self._handler is None:
            return
        if self._loop is None:
            self._handler([received])
            return
        with self._lock:
            self._pending.append(received)
            if len(self._pending) >= MAX_PENDING:
                self._room.clear()
            if self._scheduled:
                schedule = False
            else:
                schedule = self._scheduled = True
        if schedule:
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # loop closed during shutdown
                return
        if not self._room.is_set():
            self._room.wait(PAUSE_S)  # back-pressure: let the loop catch up before reading on

    def _drain(self) -> None:
        if self._ready is not None and not self._ready() and self._loop is not None:
            self._loop.call_later(BUSY_RETRY_S, self._drain)
            return
        with self._lock:
            pending = self._pending
            if len(pending) > DRAIN_CHUNK:
                batch, self._pending = pending[:DRAIN_CHUNK], pending[DRAIN_CHUNK:]
                more = True
            else:
                batch, self._pending = pending, []
                more = False
                self._scheduled = False
            if len(self._pending) < MAX_PENDING // 2:
                self._room.set()
        if more and self._loop is not None:
            self._loop.call_soon(self._drain)  # after the callbacks already waiting (the writer)
        if batch and self._handler is not None:
            self._handler(batch)
