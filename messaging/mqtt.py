"""The one module that owns paho-mqtt (stock paho, public API only): paho types never leave it.

Messages become frozen ``ReceivedMessage`` values; the client keeps the wanted subscriptions,
replays them on every reconnect and reconnects with backoff. Two ways to run, one API:

- with an asyncio ``loop`` (the ingest), as Home Assistant's MQTT client runs paho: its socket
  callbacks make the socket a loop reader (``loop_read``) and, while paho has bytes to send, a
  writer (``loop_write``); ``loop_misc`` runs every second. What one wake-up reads reaches
  ``on_messages`` as one batch on the loop's thread. Only the blocking connect runs in the
  executor, crossing back through ``loop.call_soon_threadsafe``. While ``ready()`` is false the
  socket is not read: the broker's buffer fills and it sheds QoS 0 load, not this process.
- without a loop (simulators, publishers, tests): paho's own network thread, handing each
  message to ``on_messages`` as it arrives.
"""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import quote, unquote, urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One MQTT message as the rest of the system sees it (received_at: UTC epoch seconds)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float


@dataclass(frozen=True, slots=True)
class Will:
    """The last-will message the broker publishes when this client vanishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for mqtts://: the CA that signed the broker's certificate (empty: the system's
    CAs) and an optional client certificate and key."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


def with_credentials(url: str, username: str, password: str) -> str:
    """``url`` (mqtt:// or mqtts://) with these credentials in it, percent-encoded (replacing any)."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    if parsed.port:
        netloc += f":{parsed.port}"
    return parsed._replace(netloc=netloc).geturl()


def without_credentials(url: str) -> str:
    """``url`` with any user:password removed (for logs and for deriving a device URL)."""
    parsed = urlparse(url)
    netloc = parsed.netloc.rpartition("@")[2]
    return parsed._replace(netloc=netloc).geturl()


def device_url(settings, username: str, password: str) -> str:
    """The broker URL a device uses, with its credentials: MQTT_DEVICE_URL, else MQTT_URL's
    scheme, host and port (for the embedded broker the owner of the servers sets
    MQTT_DEVICE_URL to its device listener). Devices connect with client id == username."""
    base = settings.MQTT_DEVICE_URL or without_credentials(settings.MQTT_URL)
    if not base:
        raise ValueError("no broker URL for devices: set MQTT_DEVICE_URL or MQTT_URL")
    return with_credentials(base, username, password)


Handler = Callable[[list[ReceivedMessage]], None]
READ_PACKETS = 200  # loop_read calls in one wake-up at most (paho reads one packet a call)
BUSY_RETRY_S = 0.005
MISC_INTERVAL_S = 1.0
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0


class MqttClient:
    """A reconnecting MQTT 3.1.1 client (works with mosquitto, amqtt and EMQX alike).

    Credentials come in the URL (mqtt://user:pass@host:port, percent-encoded); mqtts:// connects
    over TLS, verifying the broker's certificate against ``tls.ca_file`` (else the system's
    CAs) and presenting ``tls.cert_file`` / ``tls.key_file`` when given (``tls`` None: the
    MQTT_CA_FILE / MQTT_CERT_FILE / MQTT_KEY_FILE environment)."""

    def __init__(self, url: str, client_id: str, *, on_messages: Handler | None = None,
                 loop: asyncio.AbstractEventLoop | None = None, will: Will | None = None,
                 keepalive: int = 30, on_connection: Callable[[bool], None] | None = None,
                 ready: Callable[[], bool] | None = None, tls: TlsFiles | None = None):
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "tcp", "", "mqtts", "ssl"):
            raise ValueError(f"unsupported MQTT URL scheme in {url!r} (use mqtt://host:port or mqtts://)")
        secure = parsed.scheme in ("mqtts", "ssl")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (8883 if secure else 1883)
        self.client_id = client_id
        self._handler = on_messages or (lambda batch: None)
        self._on_connection = on_connection or (lambda up: None)
        self._ready = ready or (lambda: True)  # flow control: deliver while the consumer keeps up
        self._subscriptions: dict[str, int] = {}
        self._connected = threading.Event()
        self._stopping = False
        self.connects = 0
        self.disconnects = 0
        client = self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                            protocol=paho.MQTTv311, clean_session=True)
        if secure:  # without ``tls``: the environment, where the supervisor hands its children every setting
            tls = tls or TlsFiles(*(os.environ.get(f"MQTT_{name}_FILE", "") for name in ("CA", "CERT", "KEY")))
            client.tls_set(ca_certs=tls.ca_file or None, certfile=tls.cert_file or None,
                           keyfile=tls.key_file or None)
        if parsed.username:
            client.username_pw_set(unquote(parsed.username),
                                   None if parsed.password is None else unquote(parsed.password))
        if will is not None:
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(min_delay=int(RECONNECT_MIN_S), max_delay=int(RECONNECT_MAX_S))
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.host, self.port, keepalive=keepalive)  # where to: no I/O yet
        # driving from an asyncio loop: the socket, the messages of the current wake-up, timers
        self._loop = loop
        self._loop_thread: int | None = None
        self._sock = None
        self._reading = False
        self._pending: list[ReceivedMessage] = []
        self._lost = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._misc: asyncio.TimerHandle | None = None
        if loop is not None:
            client.on_socket_open = lambda c, u, sock: self._on_loop(self._opened, sock)
            client.on_socket_close = lambda c, u, sock: self._on_loop(self._closed, sock)
            client.on_socket_register_write = lambda c, u, sock: self._on_loop(self._want_write, sock)
            client.on_socket_unregister_write = lambda c, u, sock: self._on_loop(self._no_write, sock)

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background, retrying with backoff until the broker answers (with a
        loop: call on the loop's thread)."""
        if self._loop is None:
            self._client.loop_start()
            return
        self._loop_thread = threading.get_ident()
        self._task = self._loop.create_task(self._connection(), name=f"mqtt-{self.client_id}")

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until connected (for start-up and tests; not on the driving loop)."""
        if self._loop is not None and threading.get_ident() == self._loop_thread:
            raise RuntimeError("wait_connected() would block the loop that drives this client: "
                               "wait for .connected asynchronously instead")
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the network thread or loop driving."""
        self._stopping = True
        try:
            self._client.disconnect()
            if self._sock is not None and self._client.want_write():
                self._client.loop_write()  # flush the DISCONNECT before the loop lets go
        finally:
            self._halt()

    def kill(self) -> None:
        """Vanish without DISCONNECT, as a device losing power: the broker publishes the last will."""
        self._stopping = True
        self._halt()
        if (sock := self._client.socket()) is not None:
            sock.close()

    def _halt(self) -> None:
        if self._loop is None:
            self._client.loop_stop()
        else:
            self._detach()
            if self._task is not None:
                self._task.cancel()
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

    # paho's callbacks: on its network thread, or on the driving loop (paho's loop_* calls run there)
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
        self._on_connection(True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and self._stopping:
            log.info("MQTT %s disconnected", self.client_id)
        elif was:
            self.disconnects += 1
            log.warning("MQTT %s disconnected (%s); reconnecting with backoff", self.client_id, reason_code)
            self._on_connection(False)

    def _on_message(self, client, userdata, message) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers refuse such topics; should one come, drop it
            log.warning("MQTT %s: dropped a message whose topic is not UTF-8", self.client_id)
            return
        received = ReceivedMessage(topic, message.payload, message.qos, bool(message.retain), time.time())
        if self._loop is not None:
            self._pending.append(received)  # handed over as one batch after the wake-up's reads
        else:
            self._hand_over([received])

    def _hand_over(self, batch: list[ReceivedMessage]) -> None:
        try:
            self._handler(batch)
        except Exception:  # the consumer's bug must not stop the connection
            log.exception("MQTT %s: message handler failed on %d messages", self.client_id, len(batch))

    # driving from the loop: paho's socket callbacks run on it, or on the connecting thread ------
    def _on_loop(self, fn, sock) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(sock)
        else:
            self._loop.call_soon_threadsafe(fn, sock)

    def _opened(self, sock) -> None:
        self._sock = sock
        self._read_on()
        self._misc = self._loop.call_later(MISC_INTERVAL_S, self._run_misc)

    def _closed(self, sock) -> None:
        if sock is self._sock:
            self._detach()
        self._lost.set()

    def _want_write(self, sock) -> None:
        if sock is self._sock:
            self._loop.add_writer(sock, self._client.loop_write)

    def _no_write(self, sock) -> None:
        if sock is self._sock:
            self._loop.remove_writer(sock)

    def _detach(self) -> None:
        if self._sock is not None:
            self._read_off()
            self._loop.remove_writer(self._sock)
            self._sock = None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def _read_on(self) -> None:
        if self._sock is not None and not self._reading:
            self._loop.add_reader(self._sock, self._read)
            self._reading = True

    def _read_off(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock)
            self._reading = False

    def _read(self) -> None:
        sock, pending = self._sock, self._pending
        for _ in range(READ_PACKETS):
            before = len(pending)
            if self._client.loop_read() or self._sock is not sock or len(pending) == before:
                break  # connection lost, nothing more to read, or a packet that is no message
        self._deliver()
        if self._reading and isinstance(sock, ssl.SSLSocket) and sock.pending():
            self._loop.call_soon(self._read)  # TLS bytes already decrypted wake no selector

    def _deliver(self) -> None:
        if not self._pending:
            return
        if not self._ready():
            self._read_off()  # back-pressure: stop reading until it catches up
            self._loop.call_later(BUSY_RETRY_S, self._resume)
            return
        batch, self._pending = self._pending, []
        self._hand_over(batch)

    def _resume(self) -> None:
        self._deliver()
        if not self._pending:
            self._read_on()
            self._loop.call_soon(self._read)  # what TLS holds decrypted, if anything

    def _run_misc(self) -> None:
        self._misc = None
        if self._sock is not None and self._client.loop_misc() == paho.MQTT_ERR_SUCCESS:
            self._misc = self._loop.call_later(MISC_INTERVAL_S, self._run_misc)

    async def _connection(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._stopping:
            self._lost.clear()
            connects = self.connects
            try:
                await self._loop.run_in_executor(None, self._client.reconnect)
            except Exception as exc:  # refused, unreachable, DNS: retry with backoff
                log.warning("MQTT %s: cannot connect to %s:%d (%s); retrying in %.0f s", self.client_id,
                            self.host, self.port, exc, delay)
            else:
                await self._lost.wait()
            if self._stopping:
                return
            delay = RECONNECT_MIN_S if self.connects > connects else min(delay * 2, RECONNECT_MAX_S)
            await asyncio.sleep(delay)
