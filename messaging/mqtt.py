"""The one module that owns paho-mqtt: paho types never leave it.

Messages become frozen ``ReceivedMessage`` values. The client keeps the wanted subscriptions
itself and replays them on every (re)connect, reconnecting with backoff.

Two ways to run, one API:

- with an asyncio ``loop`` (the ingest): paho is driven by the loop through paho's external
  event-loop interface (socket open/close/register-write callbacks; ``loop_read``,
  ``loop_write``, ``loop_misc`` called from loop callbacks). Messages are handled on the loop's
  own thread: no second thread competing for the GIL, no lock, no wake-up pipe per batch. Only
  the blocking TCP connect runs in the default executor. Back-pressure: while the consumer says
  it does not keep up (``ready()`` false) the socket is not read; the broker's socket buffer
  fills, and under QoS 0 overload the broker sheds load rather than this process growing.
- without a loop (simulators, publishers, tests): paho's own network thread, handing each
  message to ``on_messages`` as it arrives.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import quote, unquote, urlparse

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

    def fill(self) -> bool:
        """Refill an empty buffer with one socket read; False when nothing is waiting (or the
        buffer still holds bytes). A closed or failed socket is left for paho's reader to see."""
        if self._pos < len(self._buf):
            return False
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            return False  # paho's own read hits the error again and handles the lost connection
        if not data:
            self._buf, self._pos = b"", 0
            return False
        self._buf, self._pos = data, 0
        return True

    def take_publishes(self, deliver: Callable[[str, bytes, int, bool], None], limit: int) -> int:
        """Deliver the whole QoS 0 PUBLISH packets (MQTT 3.1.1) at the head of the buffer, up to
        ``limit``; stop at anything else (another packet type, QoS > 0, a packet not wholly
        received, a topic that is not UTF-8), which paho's reader then handles. Returns the count."""
        buf, pos = self._buf, self._pos
        end = len(buf)
        n = 0
        while n < limit and pos < end:
            head = buf[pos]
            if head & 0xF6 != 0x30:  # packet type PUBLISH with QoS bits 0 (DUP/RETAIN free)
                break
            i, length, shift = pos + 1, 0, 0
            while i < end and shift <= 21:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            else:
                break  # remaining length cut off by the buffer end (or malformed: paho's to judge)
            if i + length > end or length < 2:
                break
            topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
            if topic_end > i + length:
                break
            try:
                topic = buf[i + 2:topic_end].decode("utf-8")
            except UnicodeDecodeError:
                break
            deliver(topic, buf[topic_end:i + length], 0, bool(head & 1))
            pos = i + length
            n += 1
        self._pos = pos
        return n

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _PahoClient(paho.Client):
    """paho's client with buffered reads, many packets handled per read (paho's ``loop_read``
    handles one, whatever ``max_packets`` says), and direct message delivery: whole QoS 0
    PUBLISH packets in the read buffer go to ``fast_publish`` without paho's per-packet
    machinery; every other packet (CONNACK, SUBACK, PINGRESP, QoS 1/2, partial ones) is read
    the paho way."""

    fast_publish: Callable[[str, bytes, int, bool], None] | None = None

    def _create_socket(self):
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1):
        sock = self._sock
        fast = self.fast_publish
        if sock is None or fast is None or not isinstance(sock, _BufferedSocket):
            return super().loop_read(max_packets)
        handled = 0
        while handled < READ_PACKETS:
            if self._in_packet["command"] == 0:  # between packets: take the whole publishes
                n = sock.take_publishes(fast, READ_PACKETS - handled)
                if n:
                    handled += n
                    self._last_bytes_received = paho.time_func()
                    continue
                if not sock.pending() and sock.fill():
                    continue
            rc = self._packet_read()  # one packet (or its part) the paho way
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == paho.MQTT_ERR_AGAIN or self._sock is not sock:
                return paho.MQTT_ERR_SUCCESS
            handled += 1
        return paho.MQTT_ERR_SUCCESS

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


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for mqtts://: the CA that signed the broker's certificate (empty: the system's
    CAs) and an optional client certificate and key."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_settings(cls, settings) -> "TlsFiles":
        """MQTT_CA_FILE, MQTT_CERT_FILE and MQTT_KEY_FILE."""
        return cls(settings.MQTT_CA_FILE, settings.MQTT_CERT_FILE, settings.MQTT_KEY_FILE)

    @classmethod
    def from_environ(cls) -> "TlsFiles":
        """The same settings from the environment (where the supervisor hands every setting to
        its children), for clients built without explicit files."""
        env = os.environ
        return cls(env.get("MQTT_CA_FILE", ""), env.get("MQTT_CERT_FILE", ""), env.get("MQTT_KEY_FILE", ""))


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
READ_PACKETS = 200
DRAIN_CHUNK = 500
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
        self._handler = on_messages
        self._loop = loop
        self._on_connection = on_connection
        self._ready = ready  # flow control: deliver only while the consumer says it keeps up
        self._subscriptions: dict[str, int] = {}
        self._pending: list[ReceivedMessage] = []
        self._connected = threading.Event()
        self._stopping = False
        self.connects = 0
        self.disconnects = 0
        # TLS: paho's own socket handling (the buffered fast reader wraps plain TCP sockets only;
        # an SSLSocket keeps its own buffer, which paho asks through pending())
        client_class = paho.Client if secure else _PahoClient
        self._client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id,
                                    protocol=paho.MQTTv311, clean_session=True)
        if secure:
            tls = tls or TlsFiles.from_environ()
            self._client.tls_set(ca_certs=tls.ca_file or None, certfile=tls.cert_file or None,
                                 keyfile=tls.key_file or None)
        if parsed.username:
            self._client.username_pw_set(unquote(parsed.username),
                                         None if parsed.password is None else unquote(parsed.password))
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client.max_queued_messages_set(0)
        self._client.max_inflight_messages_set(1000)
        self._client.reconnect_delay_set(min_delay=int(RECONNECT_MIN_S), max_delay=int(RECONNECT_MAX_S))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        if isinstance(self._client, _PahoClient):
            self._client.fast_publish = self._receive
        self._keepalive = keepalive
        self._driver = _LoopDriver(self, loop) if loop is not None else None

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background, retrying with backoff until the broker answers."""
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive)
        if self._driver is not None:
            self._driver.start()
        else:
            self._client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until connected (for start-up and tests; not on the driving loop)."""
        if self._driver is not None and threading.get_ident() == self._driver.loop_thread:
            raise RuntimeError("wait_connected() would block the loop that drives this client: "
                               "wait for .connected asynchronously instead")
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the network thread or loop driver."""
        self._stopping = True
        try:
            self._client.disconnect()
        finally:
            if self._driver is not None:
                self._driver.stop()
            else:
                self._client.loop_stop()
            self._connected.clear()

    def kill(self) -> None:
        """Vanish without DISCONNECT, as a device losing power: the broker publishes the last will."""
        self._stopping = True
        if self._driver is not None:
            self._driver.stop(close=True)
        else:
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

    # paho's callbacks (its network thread, or the driving loop) ---------------------------------
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
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers refuse such topics; should one come, drop it
            log.warning("MQTT %s: dropped a message whose topic is not UTF-8", self.client_id)
            return
        self._receive(topic, message.payload, message.qos, bool(message.retain))

    def _receive(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        received = _new_message(topic, payload, qos, retain, time.time())
        if self._driver is not None:
            self._pending.append(received)  # handed over in batches after the read (loop thread)
        elif self._handler is not None:
            self._handler([received])


class _LoopDriver:
    """Drives a paho client from an asyncio loop (paho's external event-loop interface).

    The socket is a loop reader (``loop_read`` handles up to READ_PACKETS packets a wake-up) and,
    while paho has bytes to send, a loop writer; ``loop_misc`` runs every second (keepalive).
    Messages collected during a read are handed to the consumer in batches of at most
    DRAIN_CHUNK once the read returns; while the consumer is not ready the reader is removed
    (nothing more is read) and delivery is retried every BUSY_RETRY_S. The blocking TCP connect
    (``reconnect``) runs in the default executor; a lost connection is retried with exponential
    backoff (RECONNECT_MIN_S .. RECONNECT_MAX_S)."""

    def __init__(self, owner: MqttClient, loop: asyncio.AbstractEventLoop):
        self.owner = owner
        self.loop = loop
        self.sock = None
        self.reading = False
        self.read_scheduled = False
        self.lost = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.misc: asyncio.TimerHandle | None = None
        self.loop_thread: int | None = None
        client = owner._client
        client.on_socket_open = lambda c, u, sock: self._on_loop(self._opened, sock)
        client.on_socket_close = lambda c, u, sock: self._on_loop(self._closed, sock)
        client.on_socket_register_write = lambda c, u, sock: self._on_loop(self._want_write, sock)
        client.on_socket_unregister_write = lambda c, u, sock: self._on_loop(self._no_write, sock)

    def start(self) -> None:
        """Begin connecting (call on the loop's thread)."""
        self.loop_thread = threading.get_ident()
        self.task = self.loop.create_task(self._connection(), name=f"mqtt-{self.owner.client_id}")

    def stop(self, *, close: bool = False) -> None:
        """Flush a queued DISCONNECT (unless ``close``: vanish), stop reading and reconnecting."""
        client = self.owner._client
        if not close and self.sock is not None and client.want_write():
            try:
                client.loop_write()
            except Exception as exc:  # the socket may already be gone
                log.debug("MQTT %s: final write failed: %s", self.owner.client_id, exc)
        self._detach()
        if self.task is not None:
            self.task.cancel()

    # socket callbacks: paho calls them on the loop, or on the executor thread during connect ---
    def _on_loop(self, fn, sock) -> None:
        if threading.get_ident() == self.loop_thread:
            fn(sock)
        else:
            self.loop.call_soon_threadsafe(fn, sock)

    def _opened(self, sock) -> None:
        self.sock = sock
        self._read_on()
        if self.misc is None:
            self.misc = self.loop.call_later(MISC_INTERVAL_S, self._misc)

    def _closed(self, sock) -> None:
        if sock is self.sock:
            self._detach()
        self.lost.set()

    def _want_write(self, sock) -> None:
        if sock is self.sock and not self.owner._stopping:
            self.loop.add_writer(sock, self._write)

    def _no_write(self, sock) -> None:
        if sock is self.sock:
            self.loop.remove_writer(sock)

    def _detach(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self._read_off(sock)
            self.loop.remove_writer(sock)
        if self.misc is not None:
            self.misc.cancel()
            self.misc = None

    # reading, writing and delivery ---------------------------------------------------------
    def _read_on(self) -> None:
        if self.sock is not None and not self.reading:
            self.loop.add_reader(self.sock, self._read)
            self.reading = True

    def _read_off(self, sock) -> None:
        if self.reading:
            self.loop.remove_reader(sock)
            self.reading = False

    def _read(self) -> None:
        self.read_scheduled = False
        sock = self.sock
        if sock is None:
            return
        self.owner._client.loop_read(READ_PACKETS)
        self._deliver()
        # bytes already taken from the kernel into the read buffer do not wake the selector
        if self.sock is sock and self.reading and sock.pending() and not self.read_scheduled:
            self.read_scheduled = True
            self.loop.call_soon(self._read)

    def _write(self) -> None:
        if self.sock is not None:
            self.owner._client.loop_write()

    def _misc(self) -> None:
        self.misc = None
        if self.sock is None:
            return
        self.owner._client.loop_misc()
        if self.sock is not None:
            self.misc = self.loop.call_later(MISC_INTERVAL_S, self._misc)

    def _deliver(self) -> None:
        owner = self.owner
        pending = owner._pending
        while pending:
            if owner._ready is not None and not owner._ready():
                if self.sock is not None:
                    self._read_off(self.sock)  # back-pressure: stop reading until it catches up
                self.loop.call_later(BUSY_RETRY_S, self._resume)
                return
            batch = pending[:DRAIN_CHUNK]
            del pending[:DRAIN_CHUNK]
            if owner._handler is None:
                continue
            try:
                owner._handler(batch)
            except Exception:  # the consumer's bug must not stop the connection
                log.exception("MQTT %s: message handler failed on %d messages", owner.client_id, len(batch))

    def _resume(self) -> None:
        self._deliver()
        if not self.owner._pending and self.sock is not None and not self.reading:
            self._read_on()
            if not self.read_scheduled:
                self.read_scheduled = True
                self.loop.call_soon(self._read)

    # connecting -----------------------------------------------------------------------------
    async def _connection(self) -> None:
        owner, client = self.owner, self.owner._client
        delay = RECONNECT_MIN_S
        while not owner._stopping:
            self.lost.clear()
            connects = owner.connects
            try:
                await self.loop.run_in_executor(None, client.reconnect)
            except Exception as exc:  # refused, unreachable, DNS: retry with backoff
                log.warning("MQTT %s: cannot connect to %s:%d (%s); retrying in %.0f s", owner.client_id,
                            owner.host, owner.port, exc, delay)
            else:
                await self.lost.wait()
            if owner._stopping:
                return
            delay = RECONNECT_MIN_S if owner.connects > connects else min(delay * 2, RECONNECT_MAX_S)
            await asyncio.sleep(delay)
