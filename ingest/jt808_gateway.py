"""`python -m center jt808`: the JT/T 808 gateway, a TCP server (asyncio) for vehicle terminals
speaking JT/T 808-2013 or -2019.

Per connection a `Jt808Stream` (framing, escapes, checks; `ingest.jt808`) and a `Reassembly`
(sub-packages; `ingest.jt808_packages`). A terminal first registers (0x0100, answered 0x8100 with
the code the center issues, `services.jt808_terminals`) or directly authenticates (0x0102 with
the code it was issued, answered 0x8001). Before authentication nothing else is accepted: such a
message is answered 0x8001 "failed" and counted ``before_auth``. After it, a heartbeat (0x0002),
a location report (0x0200) and a batch (0x0704, 盲区补传) are answered 0x8001 "ok", a message we
do not handle 0x8001 "not supported". A connection silent for JT808_IDLE_S is closed.

Positions go to the ingest over MQTT as the terminal's vehicle: ``fleet/<vehicle_id>/jt808`` (a
0x0200) and ``fleet/<vehicle_id>/jt808/backfill`` (a 0x0704), JSON (`ingest.jt808_fixes`), with
the gateway's own broker credential (device kind ``jt808``: it may publish exactly those topics).
The ingest judges, stores and shows them as it does NMEA fixes.

Every frame is counted by its reason (``ingest.jt808.REASONS``, ``PACKAGE_REASONS``) and every
gateway event by its own (`GATEWAY_REASONS`); the counts are added to the ingest's counters as
``jt808:<reason>`` every few seconds with the heartbeat ``svc:jt808``. Nothing a terminal sends
ends the process.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from typing import Any, Callable

from config.settings import Settings
from ingest.jt808 import (REGISTER_OK, RESULT_FAILED, RESULT_NOT_SUPPORTED, RESULT_OK, Authentication, Batch,
                          Heartbeat, Jt808Stream, Location, Message, Registration, TerminalReply, platform_reply,
                          registration_reply)
from ingest.jt808_fixes import encode_payload
from ingest.jt808_packages import Reassembly
from ingest.tally import RateLimitedLog

log = logging.getLogger(__name__)

GATEWAY_REASONS: dict[str, str] = {
    "connections": "a terminal connected",
    "refused_full": "a connection refused: JT808_MAX_CONNECTIONS were open",
    "closed": "a connection ended (by the terminal, or idle)",
    "idle_closed": "a connection closed after JT808_IDLE_S without a byte",
    "registered": "a registration answered with a new authentication code",
    "register_refused": "a registration refused (no terminal, vehicle, taken: see the 0x8100 result)",
    "auth_ok": "an authentication with the code issued",
    "auth_refused": "an authentication with a wrong code, or of an unknown or unregistered terminal",
    "before_auth": "a message other than registration or authentication before authentication, or with "
                   "another phone number than the one authenticated on the connection: refused",
    "heartbeats": "a heartbeat (0x0002)",
    "locations": "a location report (0x0200) published",
    "batches": "a batch (0x0704) published",
    "blind_area_reports": "reports of 盲区补传 batches",
    "alarm_reports": "location reports with any alarm bit set",
    "not_supported": "a message the gateway does not handle (answered 'not supported')",
    "publish_failed": "a position not published: the broker connection was down",
    "lookup_failed": "a registration or authentication not answered: the database was unreachable",
}
REPORT_INTERVAL_S = 2.0
SWEEP_INTERVAL_S = 5.0
READ_SIZE = 4096


class Connection:
    """One terminal's connection: its decoders, identity and when it last sent a byte."""

    __slots__ = ("stream", "packages", "writer", "phone", "vehicle_id", "serial", "seen")

    def __init__(self, writer: asyncio.StreamWriter, packages: Reassembly, now: float) -> None:
        self.stream = Jt808Stream()
        self.packages = packages
        self.writer = writer
        self.phone = ""  # the authenticated terminal's phone (as its header carries it)
        self.vehicle_id = ""  # set once authenticated
        self.serial = 0  # the platform's serial numbers on this connection
        self.seen = now

    def next_serial(self) -> int:
        """The platform's next serial number."""
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial


class Gateway:
    """The terminals' connections, their counts, and what they publish (``publish(topic, payload)``
    returns False when the broker is away)."""

    def __init__(self, settings: Settings, terminals: Any, publish: Callable[[str, bytes], bool], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.terminals = terminals  # services.jt808_terminals.TerminalService
        self.publish = publish
        self.clock = clock
        self.counts: collections.Counter[str] = collections.Counter()
        self.connections: set[Connection] = set()
        self.rlog = RateLimitedLog(logger=log)
        self.mqtt_ok = False
        self.redis_ok = True

    @property
    def authenticated(self) -> int:
        """Connections of authenticated terminals."""
        return sum(1 for c in self.connections if c.vehicle_id)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, until the terminal leaves or is closed as idle."""
        if len(self.connections) >= self.settings.JT808_MAX_CONNECTIONS:
            self.counts["refused_full"] += 1
            writer.close()
            return
        settings = self.settings
        conn = Connection(writer, Reassembly(max_pending=settings.JT808_PACKAGES_PENDING,
                                             timeout_s=settings.JT808_PACKAGE_TIMEOUT_S,
                                             counts=self.counts), self.clock())
        self.connections.add(conn)
        self.counts["connections"] += 1
        try:
            while True:
                try:
                    chunk = await reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    break
                if not chunk:
                    break
                conn.seen = self.clock()
                for message in conn.stream.feed(chunk):
                    try:
                        await self.on_message(conn, message)
                    except Exception as exc:  # a message must never end the connection's loop
                        self.counts["error:" + type(exc).__name__] += 1
                        self.rlog.warning("message", "jt808: %s from %s: %s", type(exc).__name__, conn.phone, exc)
                self._add_counts(conn)
        finally:
            self._add_counts(conn)
            self.connections.discard(conn)
            self.counts["closed"] += 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _add_counts(self, conn: Connection) -> None:
        """Move the connection's frame counts into the gateway's."""
        if conn.stream.counts:
            self.counts.update(conn.stream.counts)
            conn.stream.counts.clear()

    async def on_message(self, conn: Connection, message: Message) -> None:
        """Answer one decoded message (sub-package fragments joined first)."""
        if message.header.packages is not None:
            message, reason = conn.packages.add(message, self.clock())
            if reason is not None:
                self.counts[reason] += 1
            if message is None:
                return
        header, body = message.header, message.body
        kind = body.__class__
        if kind is Registration:
            await self._register(conn, message)
        elif kind is Authentication:
            await self._authenticate(conn, message)
        elif not conn.vehicle_id or header.phone != conn.phone:  # (another phone: not the one authenticated)
            self.counts["before_auth"] += 1
            self._reply(conn, platform_reply(header, conn.next_serial(), RESULT_FAILED))
        elif kind is Location:
            if self._send(conn, "jt808", (body,)) and body.alarm_word:
                self.counts["alarm_reports"] += 1
            self._reply(conn, platform_reply(header, conn.next_serial(), RESULT_OK))
        elif kind is Batch:
            if body.blind_area:
                self.counts["blind_area_reports"] += len(body.locations)
            if body.locations:
                self._send(conn, "jt808/backfill", body.locations, "batches")
            self._reply(conn, platform_reply(header, conn.next_serial(), RESULT_OK))
        elif kind is Heartbeat:
            self.counts["heartbeats"] += 1
            self._reply(conn, platform_reply(header, conn.next_serial(), RESULT_OK))
        elif kind is TerminalReply:
            pass  # the terminal's answer to a platform message: nothing is sent that needs one
        else:
            self.counts["not_supported"] += 1
            self._reply(conn, platform_reply(header, conn.next_serial(), RESULT_NOT_SUPPORTED))

    def _send(self, conn: Connection, kind: str, reports, count: str = "locations") -> bool:
        """Publish reports as the connection's vehicle."""
        ok = self.publish(f"fleet/{conn.vehicle_id}/{kind}", encode_payload(conn.phone.lstrip("0"), reports))
        self.counts[count if ok else "publish_failed"] += 1
        return ok

    async def _register(self, conn: Connection, message: Message) -> None:
        header = message.header
        try:
            answer = await self.terminals.register(header.phone, message.body)
        except Exception as exc:
            self.counts["lookup_failed"] += 1
            self.rlog.warning("lookup", "jt808: registration of %s not answered: %s", header.phone, exc)
            return
        if answer.result == REGISTER_OK:
            self.counts["registered"] += 1
            log.info("jt808: terminal %s registered for vehicle %s", header.phone, answer.vehicle_id)
        else:
            self.counts["register_refused"] += 1
            self.counts[f"register_refused:{answer.result}"] += 1
            self.rlog.warning("register", "jt808: registration of %s refused (result %d)", header.phone,
                              answer.result)
        self._reply(conn, registration_reply(header, conn.next_serial(), answer.result, answer.code))

    async def _authenticate(self, conn: Connection, message: Message) -> None:
        header = message.header
        try:
            vehicle_id = await self.terminals.authenticate(header.phone, message.body.code)
        except Exception as exc:
            self.counts["lookup_failed"] += 1
            self.rlog.warning("lookup", "jt808: authentication of %s not answered: %s", header.phone, exc)
            return
        if vehicle_id is None:
            self.counts["auth_refused"] += 1
            self.rlog.warning("auth", "jt808: authentication of %s refused", header.phone)
            self._reply(conn, platform_reply(header, conn.next_serial(), RESULT_FAILED))
            return
        conn.phone, conn.vehicle_id = header.phone, vehicle_id
        self.counts["auth_ok"] += 1
        self._reply(conn, platform_reply(header, conn.next_serial(), RESULT_OK))

    def _reply(self, conn: Connection, frame: bytes) -> None:
        if not conn.writer.is_closing():
            conn.writer.write(frame)

    async def sweeper(self) -> None:
        """Close the connections silent for JT808_IDLE_S (their handlers then end)."""
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL_S, self.settings.JT808_IDLE_S / 2))
            limit = self.clock() - self.settings.JT808_IDLE_S
            for conn in [c for c in self.connections if c.seen < limit]:
                self.counts["idle_closed"] += 1
                conn.writer.close()
            for conn in self.connections:
                if conn.packages.pending:
                    conn.packages.expire(self.clock())

    def health(self) -> dict[str, Any]:
        """The gateway's own view for its heartbeat."""
        return {"pid": os.getpid(), "port": self.settings.JT808_PORT, "connections": len(self.connections),
                "authenticated": self.authenticated, "mqtt_ok": self.mqtt_ok, "redis_ok": self.redis_ok,
                "locations": self.counts["locations"],
                "status": "ok" if self.mqtt_ok and self.redis_ok else "degraded"}


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft limit of open files towards `wanted` (at most the hard limit):
    each terminal holds a socket. The limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def _reporter(gateway: Gateway, store) -> None:
    """Every few seconds: the counts' deltas into the ingest's counters (``jt808:<reason>``) and the
    heartbeat ``svc:jt808``."""
    flushed: collections.Counter[str] = collections.Counter()
    while True:
        await asyncio.sleep(REPORT_INTERVAL_S)
        deltas = {"jt808:" + k: v - flushed[k] for k, v in gateway.counts.items() if v != flushed[k]}
        try:
            await store.add_ingest_stats(deltas)
            flushed.update({k[6:]: v for k, v in deltas.items()})
            await store.heartbeat("jt808", gateway.health())
            gateway.redis_ok = True
        except Exception as exc:
            gateway.redis_ok = False
            gateway.rlog.warning("reporter", "jt808: cannot report: %s", exc)


async def broker_url(settings: Settings, store) -> str:
    """The broker URL with the gateway's credential: JT808_MQTT_URL, else its own device
    credential (kind jt808, JT808_DEVICE_ID), issued once and kept in DATA_DIR/jt808-gateway.json
    (mode 600), rotated when that file is lost (`services.devices.seed_demo_devices`)."""
    if settings.JT808_MQTT_URL:
        return settings.JT808_MQTT_URL
    from messaging.mqtt import device_url
    from services.devices import DeviceService, Wanted, read_secrets, seed_demo_devices

    path = settings.data_dir / "jt808-gateway.json"
    await seed_demo_devices(DeviceService(store.redis, store.db), [Wanted("jt808", settings.JT808_DEVICE_ID)], path)
    secret = read_secrets(path).get(settings.JT808_DEVICE_ID)
    if secret is None:
        raise RuntimeError(f"no credential for the JT/T 808 gateway {settings.JT808_DEVICE_ID} (revoked?)")
    return device_url(settings, settings.JT808_DEVICE_ID, secret)


async def serve(settings: Settings, redis_url: str, stop: asyncio.Event | None = None,
                hook: Callable[[Gateway], None] | None = None) -> None:
    """Run the gateway until SIGINT/SIGTERM (or ``stop``); ``hook`` gets the Gateway once it listens."""
    from messaging.mqtt import MqttClient
    from runtime.lifecycle import stop_on_signals
    from services.jt808_terminals import TerminalService
    from store.live import Store

    stop = stop_on_signals(stop)
    store = Store.from_url(redis_url, settings.DATABASE_URL, db_pool_size=settings.DB_POOL_SIZE,
                           socket_timeout=5, patience_s=1.0)
    gateway = Gateway(settings, TerminalService(store.db), lambda topic, payload: client.publish(topic, payload))
    client = MqttClient(await broker_url(settings, store), settings.JT808_DEVICE_ID, loop=asyncio.get_running_loop(),
                        on_connection=lambda up: setattr(gateway, "mqtt_ok", up))
    client.start()
    server = await asyncio.start_server(gateway.handle, settings.JT808_HOST, settings.JT808_PORT,
                                        backlog=1024, limit=READ_SIZE * 4)
    gateway.settings = settings.with_values(JT808_PORT=server.sockets[0].getsockname()[1])
    tasks = [asyncio.create_task(gateway.sweeper(), name="jt808-sweeper"),
             asyncio.create_task(_reporter(gateway, store), name="jt808-reporter")]
    log.info("jt808: listening on %s:%d", settings.JT808_HOST, gateway.settings.JT808_PORT)
    if hook is not None:
        hook(gateway)
    try:
        await stop.wait()
    finally:
        server.close()
        for conn in list(gateway.connections):
            conn.writer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 3.0)
        client.stop()
        with contextlib.suppress(Exception):
            await store.heartbeat("jt808", {**gateway.health(), "status": "stopped"}, ttl_s=1)
        await store.close()
