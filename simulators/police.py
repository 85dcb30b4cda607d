"""The 110 police side of the linkage (110联动), as an HTTP service for tests and the demo.

Receives our linkage messages at ``POST /110/handover`` and ``POST /110/result``: verifies the
HMAC signature (``command.police_signing.verify``; bad signature, stale time or replayed nonce -> 401),
parses the body (malformed -> 400), de-duplicates by Idempotency-Key (a duplicate gets 409,
which our outbox counts as acknowledged), and answers 200 after ``ack_delay_s``. For every
accepted handover it then sends signed ``police_status`` updates to our inbound endpoint
(received -> dispatched -> on_scene -> closed, at ``status_delays_s``); every
``transfer_every_s`` (on average) it transfers a non-police incident (非警务警情) to us.

The link can be told to misbehave, through the constructor, ``set_mode`` or the control API
``POST /110/control {"mode": "up"|"down"|"slow"|"error", "delay_s": ...}``: ``down`` stops
listening (connection refused), ``slow`` answers after ``delay_s``, ``error`` answers 500.
The control API and ``GET /110/received`` (a log of everything received and sent) are served
on the link port and on a separate control port that stays up while the link is down.

Run alone: ``python -m simulators.police --port 8110 --control-port 8111 --secret S``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import socket
import uuid
from datetime import datetime, timezone
from typing import Awaitable, Callable, Sequence

import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

from command.police import (IncidentTransfer, PoliceMessageError, PoliceStatus, ResultReport, parse_outbound,
                            to_json)
from command.police_signing import SignatureError, sign, verify

log = logging.getLogger(__name__)
UTC = timezone.utc
MODES = ("up", "down", "slow", "error")
STATUS_NOTES = {"received": "110已接警", "dispatched": "已指派属地派出所民警", "on_scene": "民警已到达现场",
                "closed": "警情处置完毕"}
# (category hint, description): non-police incidents callers report to 110.
TRANSFERS = (
    ("power", "路灯不亮，晚上整条路黑乎乎的，行人看不清"),
    ("drainage", "下水道堵塞，污水从井盖里冒出来，味道很大"),
    ("water", "小区停水了，从早上到现在一直没有水"),
    ("water", "路边消防栓漏水，水一直往马路上流"),
    ("heating", "家里暖气不热，屋里只有十二三度"),
    ("sanitation", "垃圾桶满了好几天没人清运，招苍蝇"),
    ("drainage", "雨水井盖丢了，怕有人掉下去"),
    ("power", "整个单元楼道没电，电梯也停了，没有人被困"),
    ("water", "自来水发黄有异味，不敢喝"),
    ("other", "小区门口树枝折断挡住了路"),
)
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"
DEMO_ADDRESSES = (
    ("高密市康成大街269号", 119.7199678, 36.3565594),
    ("高密市康成大街291号", 119.724839, 36.3569206),
    ("高密市平安大街88号", 119.742023, 36.3494104),
    ("高密市夷安大道120号", 119.7533596, 36.3487691),
    ("高密市凤凰大街56号", 119.7351, 36.3721),
    ("高密市人民大街203号", 119.7612, 36.3810),
)

Send = Callable[[str, bytes, dict], Awaitable[int | None]]  # (url, body, headers) -> status or None


class PoliceSimError(ValueError):
    """A control request or option the 110 simulator cannot follow."""


async def _tornado_send(url: str, body: bytes, headers: dict) -> int | None:
    """POST with tornado; the HTTP status, or None on timeout or connection error."""
    client = tornado.httpclient.AsyncHTTPClient()
    try:
        response = await client.fetch(url, method="POST", body=body, raise_error=False,
                                      headers={**headers, "Content-Type": "application/json"},
                                      connect_timeout=5, request_timeout=10)
    except (OSError, tornado.httpclient.HTTPClientError):  # refused, reset, timeout (599)
        return None
    return None if response.code == 599 else response.code


class PoliceSimulator:
    """The 110 side: link and control HTTP servers, status updates and incident transfers."""

    def __init__(self, secret: bytes, *, our_base_url: str = "http://127.0.0.1:8000",
                 status_path: str = "/api/police/status", incidents_path: str = "/api/police/incidents",
                 ack_delay_s: float = 0.0, status_delays_s: Sequence[float] = (1.0, 5.0, 10.0, 20.0),
                 transfer_every_s: float = 0.0, mode: str = "up", delay_s: float = 5.0, seed: int = 1,
                 addresses: Sequence[tuple[str, float, float]] = DEMO_ADDRESSES, host: str = "127.0.0.1",
                 send: Send | None = None, now: Callable[[], datetime] | None = None,
                 retries: int = 5, backoff_s: float = 0.5, max_skew_s: int = 300):
        """``status_delays_s``: waits before received, dispatched, on_scene and closed, in turn."""
        if mode not in MODES:
            raise PoliceSimError(f"mode {mode!r} is not one of {MODES}")
        if len(status_delays_s) != 4:
            raise PoliceSimError("status_delays_s needs four delays: received, dispatched, on_scene, closed")
        self.secret = secret
        self.our_base_url = our_base_url.rstrip("/")
        self.status_path, self.incidents_path = status_path, incidents_path
        self.ack_delay_s, self.status_delays_s = ack_delay_s, tuple(status_delays_s)
        self.transfer_every_s = transfer_every_s
        self.mode, self.delay_s = mode, delay_s
        self.host = host
        self.addresses = list(addresses) or list(DEMO_ADDRESSES)
        self.retries, self.backoff_s, self.max_skew_s = retries, backoff_s, max_skew_s
        self._rng = random.Random(seed)
        self._send = send or _tornado_send
        self._now = now or (lambda: datetime.now(UTC))
        self._nonces: set[str] = set()
        self.accepted: dict[str, dict] = {}   # idempotency key -> the log entry of its acceptance
        self.received: list[dict] = []        # every request to the link endpoints, in order
        self.sent: list[dict] = []            # every status update / transfer we sent, with outcome
        self._incidents = 0
        self._tasks: set[asyncio.Task] = set()
        self._link_server: tornado.httpserver.HTTPServer | None = None
        self._reserved: socket.socket | None = None  # the link port, held while down
        self._control_server: tornado.httpserver.HTTPServer | None = None
        self.port: int | None = None
        self.control_port: int | None = None

    # ------------------------------------------------------------------ life cycle
    def application(self) -> tornado.web.Application:
        """The tornado application (link and control routes)."""
        args = {"sim": self}
        return tornado.web.Application([
            (r"/110/handover", LinkHandler, {**args, "expected": "handover"}),
            (r"/110/result", LinkHandler, {**args, "expected": "result_report"}),
            (r"/110/control", ControlHandler, args),
            (r"/110/received", LogHandler, args),
        ])

    async def start(self, port: int = 0, control_port: int | None = 0) -> tuple[int, int | None]:
        """Listen (port 0: any free port); control_port None: no separate control server."""
        app = self.application()
        self._app = app
        if control_port is not None:
            self._control_server = tornado.httpserver.HTTPServer(app)
            sockets = tornado.netutil.bind_sockets(control_port, self.host)
            self._control_server.add_sockets(sockets)
            self.control_port = sockets[0].getsockname()[1]
        self.port = port
        if self.mode != "down":
            self._listen()
        elif not port:
            raise PoliceSimError("starting down needs a fixed port to come up on later")
        else:
            self._reserve()
        if self.transfer_every_s > 0:
            self._spawn(self._transfer_loop())
        return self.port, self.control_port

    def _reserve(self) -> None:
        """Hold the link port while down: a socket bound to it but not listening refuses
        connections as if nothing were there, and no other socket can take the port before the
        simulator comes up on it again. Bound without SO_REUSEADDR where it can be (no socket,
        tornado's included, can then bind the port); after a spell up, the connections it closed
        may hold the port in TIME_WAIT, and then only with SO_REUSEADDR (a socket without it still
        cannot bind the port)."""
        if self._reserved is not None or not self.port:
            return
        family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0]
        for reuse in (False, True):
            sock = socket.socket(family, kind, proto)
            try:
                if reuse:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
            except OSError:
                sock.close()
                if reuse:
                    raise
                continue
            self._reserved = sock
            return

    def _release(self) -> None:
        sock, self._reserved = self._reserved, None
        if sock is not None:
            sock.close()

    def _listen(self) -> None:
        server = tornado.httpserver.HTTPServer(self._app)
        if self._reserved is not None:  # come up on the port held while down
            sock, self._reserved = self._reserved, None
            # as tornado's own sockets: the connections it closes must not keep the port from a
            # later bind (their TIME_WAIT takes the listener's SO_REUSEADDR)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.listen(128)
            sockets = [sock]
        else:
            sockets = tornado.netutil.bind_sockets(self.port or 0, self.host)
        server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self._link_server = server

    async def _unlisten(self, *, hold: bool = True) -> None:
        server, self._link_server = self._link_server, None
        if server is not None:
            server.stop()
            await server.close_all_connections()
            if hold and self.mode == "down" and self._link_server is None:
                try:
                    self._reserve()
                except OSError as exc:  # taken meanwhile: coming up will say so
                    log.warning("110 simulator: cannot hold port %s while down: %s", self.port, exc)

    async def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        """Change behaviour: up, down (stop listening), slow (answer after delay_s), error (500)."""
        if mode not in MODES:
            raise PoliceSimError(f"mode {mode!r} is not one of {MODES}")
        if delay_s is not None:
            if delay_s < 0:
                raise PoliceSimError("delay_s must not be negative")
            self.delay_s = delay_s
        previous, self.mode = self.mode, mode
        log.info("110 simulator: %s -> %s", previous, mode)
        if mode == "down" and self._link_server is not None:
            await asyncio.sleep(0)  # let a control request on the link port be answered first
            self._spawn(self._unlisten())
        elif mode != "down" and self._link_server is None and self.port is not None:
            self._listen()

    async def stop(self) -> None:
        """Stop serving and cancel pending status updates and transfers."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._unlisten(hold=False)
        self._release()
        if self._control_server is not None:
            self._control_server.stop()
            await self._control_server.close_all_connections()
            self._control_server = None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ receiving
    def _seen_nonce(self, nonce: str) -> bool:
        if nonce in self._nonces:
            return True
        self._nonces.add(nonce)
        return False

    async def receive(self, expected: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        """Handle one linkage request; returns (HTTP status, JSON reply)."""
        entry = {"path": "/110/handover" if expected == "handover" else "/110/result",
                 "at": self._now().isoformat(), "idempotency_key": headers.get("Idempotency-Key", "")}
        self.received.append(entry)
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        if self.mode == "error":
            entry["outcome"] = "error"
            return 500, {"error": "simulated_error", "message": "110 系统内部错误（模拟）"}
        try:
            verify(body, headers, self.secret, self._now(), max_skew_s=self.max_skew_s,
                   seen_nonce=self._seen_nonce)
        except SignatureError as exc:
            entry["outcome"] = f"refused:{exc.code}"
            return 401, {"error": exc.code, "message": str(exc)}
        try:
            message = parse_outbound(body)
        except PoliceMessageError as exc:
            entry["outcome"] = f"bad:{exc.code}"
            return 400, {"error": exc.code, "message": str(exc), "field": exc.field}
        kind = "handover" if not isinstance(message, ResultReport) else "result_report"
        if kind != expected:
            entry["outcome"] = "bad:wrong_endpoint"
            return 400, {"error": "wrong_endpoint", "message": f"a {kind} does not belong here"}
        key = entry["idempotency_key"] or message.idempotency_key
        entry.update(type=kind, message_id=message.message_id, ticket_number=message.ticket_number,
                     idempotency_key=key)
        if key in self.accepted:
            entry["outcome"] = "duplicate"
            return 409, {"status": "duplicate", "police_incident_id": self.accepted[key]["police_incident_id"]}
        incident_id = self._incident_id() if kind == "handover" else message.police_incident_id
        entry.update(outcome="accepted", police_incident_id=incident_id)
        self.accepted[key] = entry  # before the delay: a concurrent duplicate is a duplicate
        if self.ack_delay_s:
            await asyncio.sleep(self.ack_delay_s)
        if kind == "handover":
            self._spawn(self._status_updates(message.ticket_number, incident_id))
        return 200, {"status": "accepted", "police_incident_id": incident_id}

    def _incident_id(self) -> str:
        self._incidents += 1
        return f"JJ{self._now():%Y%m%d}{self._incidents:06d}"

    # ------------------------------------------------------------------ sending
    async def deliver(self, path: str, message, key: str) -> int | None:
        """Sign and POST one message to us, retrying with backoff; returns the last status."""
        body = to_json(message)
        url = self.our_base_url + path
        status: int | None = None
        for attempt in range(self.retries + 1):
            headers = sign(body, self.secret, self._now(), uuid.uuid4().hex, idempotency_key=key)
            status = await self._send(url, body, headers)
            self.sent.append({"url": url, "type": json.loads(body)["type"], "idempotency_key": key,
                              "status": status, "attempt": attempt + 1})
            if status is not None and (200 <= status < 300 or status == 409):
                return status
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                log.warning("110 simulator: %s refused %s with %s", url, key, status)
                return status
            await asyncio.sleep(min(30.0, self.backoff_s * 2 ** attempt))
        return status

    async def _status_updates(self, ticket_number: str, incident_id: str) -> None:
        for n, (status, delay) in enumerate(zip(("received", "dispatched", "on_scene", "closed"),
                                               self.status_delays_s), start=1):
            await asyncio.sleep(delay)
            update = PoliceStatus(message_id=uuid.uuid4().hex, ticket_number=ticket_number,
                                  police_incident_id=incident_id, status=status, at=self._now(),
                                  note=STATUS_NOTES[status])
            await self.deliver(self.status_path, update, f"{incident_id}:status:{n}")

    def make_transfer(self) -> IncidentTransfer:
        """A non-police incident as 110 would transfer it (seeded)."""
        rng = self._rng
        category, description = rng.choice(TRANSFERS)
        address, lon, lat = rng.choice(self.addresses)
        return IncidentTransfer(
            message_id=uuid.UUID(int=rng.getrandbits(128)).hex, police_incident_id=self._incident_id(),
            category_hint=category, description=description, address=address, lon=lon, lat=lat,
            caller_name=rng.choice(SURNAMES) + rng.choice(("先生", "女士")),
            caller_phone="1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9)),
            at=self._now())

    async def transfer_one(self) -> int | None:
        """Transfer one incident to us now; returns our HTTP status."""
        transfer = self.make_transfer()
        return await self.deliver(self.incidents_path, transfer, f"{transfer.police_incident_id}:transfer:1")

    async def _transfer_loop(self) -> None:
        while True:
            await asyncio.sleep(self._rng.expovariate(1.0 / self.transfer_every_s))
            await self.transfer_one()


class _Base(tornado.web.RequestHandler):
    def initialize(self, sim: PoliceSimulator, expected: str = "") -> None:
        self.sim, self.expected = sim, expected

    def reply(self, status: int, body: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body, ensure_ascii=False))


class LinkHandler(_Base):
    """POST /110/handover and /110/result: our signed linkage messages."""

    async def post(self) -> None:
        headers = {k: v for k, v in self.request.headers.get_all()}
        status, body = await self.sim.receive(self.expected, self.request.body, headers)
        self.reply(status, body)


class ControlHandler(_Base):
    """POST /110/control {"mode": ..., "delay_s": ...}: change the link's behaviour."""

    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
            delay = body.get("delay_s")
            await self.sim.set_mode(body.get("mode"), None if delay is None else float(delay))
        except (ValueError, TypeError, AttributeError) as exc:
            self.reply(400, {"error": "bad_control", "message": str(exc)})
            return
        self.reply(200, {"mode": self.sim.mode, "delay_s": self.sim.delay_s})


class LogHandler(_Base):
    """GET /110/received: everything received and sent, for tests and the demo."""

    def get(self) -> None:
        sim = self.sim
        self.reply(200, {"mode": sim.mode, "accepted": len(sim.accepted), "received": sim.received,
                         "sent": sim.sent})


def _options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8110, help="link port (/110/handover, /110/result)")
    parser.add_argument("--control-port", type=int, default=8111, help="control port (stays up when down)")
    parser.add_argument("--our-base", default="http://127.0.0.1:8000", help="base URL of the center")
    parser.add_argument("--status-path", default="/api/police/status", help="our inbound status endpoint")
    parser.add_argument("--incidents-path", default="/api/police/incidents", help="our inbound transfer endpoint")
    parser.add_argument("--secret", default=os.environ.get("POLICE_SECRET", ""),
                        help="shared HMAC secret (default: $POLICE_SECRET)")
    parser.add_argument("--ack-delay", type=float, default=0.5, help="seconds before acknowledging")
    parser.add_argument("--status-delays", default="2,10,30,60",
                        help="seconds before received,dispatched,on_scene,closed")
    parser.add_argument("--transfer-every", type=float, default=300.0, help="mean seconds between transfers (0: none)")
    parser.add_argument("--mode", choices=MODES, default="up", help="starting mode")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> None:
    """Run the 110 simulator until SIGINT/SIGTERM."""
    opts = _options(argv)
    if not opts.secret:
        raise SystemExit("no shared secret: give --secret or set POLICE_SECRET")
    sim = PoliceSimulator(opts.secret.encode("utf-8"), our_base_url=opts.our_base,
                          status_path=opts.status_path, incidents_path=opts.incidents_path,
                          ack_delay_s=opts.ack_delay, transfer_every_s=opts.transfer_every,
                          status_delays_s=[float(x) for x in opts.status_delays.split(",")],
                          mode=opts.mode, seed=opts.seed, host=opts.host)
    port, control = await sim.start(opts.port, opts.control_port)
    log.info("110 simulator: link on %s:%d, control on %s:%s", opts.host, port, opts.host, control)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
