"""110 simulator: signatures verified, each message accepted once, misbehaviour on demand, and
signed status updates and transfers our side can verify."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

from command.police import Handover, IncidentTransfer, PoliceStatus, ResultReport, message_key, parse_inbound, to_json
from command.police_signing import sign, verify
from simulators.police import PoliceSimError, PoliceSimulator
from tests.conftest import wait_for

UTC = timezone.utc
SECRET = b"test-shared-secret"


def _handover(ticket: str = "T20261122000001", n: int = 1) -> Handover:
    return Handover(message_id=uuid.uuid4().hex, idempotency_key=message_key(ticket, "handover", n),
                    ticket_number=ticket, kind="gas_leak", summary="居民反映楼道内有浓烈煤气味",
                    address="高密市康成大街269号", lon=119.72, lat=36.357, caller="138****5678",
                    urgency="emergency", created_at=datetime.now(UTC))


def _signed(message, secret: bytes = SECRET) -> tuple[bytes, dict]:
    body = to_json(message)
    headers = sign(body, secret, datetime.now(UTC), uuid.uuid4().hex, idempotency_key=message.idempotency_key)
    return body, headers


async def _post(port: int, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    import json

    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{port}{path}", method="POST", body=body, headers=headers, raise_error=False)
    return response.code, json.loads(response.body or b"{}")


class Receiver:
    """Our inbound endpoints, reduced to verifying signatures and recording bodies."""

    def __init__(self):
        self.messages: list[tuple[str, object, str]] = []
        self.nonces: set[str] = set()

    def seen(self, nonce: str) -> bool:
        if nonce in self.nonces:
            return True
        self.nonces.add(nonce)
        return False

    async def start(self) -> int:
        receiver = self

        class Inbound(tornado.web.RequestHandler):
            def post(self):
                headers = dict(self.request.headers.get_all())
                verify(self.request.body, headers, SECRET, datetime.now(UTC), seen_nonce=receiver.seen)
                receiver.messages.append((self.request.path, parse_inbound(self.request.body),
                                          headers.get("Idempotency-Key", "")))
                self.write({"ok": True})

        app = tornado.web.Application([(r"/api/police/.*", Inbound)])
        self.server = tornado.httpserver.HTTPServer(app)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.server.add_sockets(sockets)
        return sockets[0].getsockname()[1]

    async def stop(self):
        self.server.stop()
        await self.server.close_all_connections()


@pytest.fixture
async def police():
    sim = PoliceSimulator(SECRET, our_base_url="http://127.0.0.1:9", status_delays_s=(60, 60, 60, 60))
    await sim.start()
    yield sim
    await sim.stop()


async def test_accepted_once_duplicate_not_counted_replay_refused(police):
    message = _handover()
    body, headers = _signed(message)
    code, reply = await _post(police.port, "/110/handover", body, headers)
    assert code == 200 and reply["police_incident_id"].startswith("JJ")
    again_body, again_headers = _signed(message)  # the outbox retries: new nonce, same key
    code2, reply2 = await _post(police.port, "/110/handover", again_body, again_headers)
    assert code2 == 409 and reply2["police_incident_id"] == reply["police_incident_id"]
    code3, reply3 = await _post(police.port, "/110/handover", body, headers)  # byte-for-byte replay
    assert code3 == 401 and reply3["error"] == "replay"
    assert len(police.accepted) == 1
    assert [e["outcome"] for e in police.received] == ["accepted", "duplicate", "refused:replay"]


def _tamper_body(body, headers):
    return body.replace("煤气".encode(), "燃气".encode()), headers


def _drop_signature(body, headers):
    return body, {k: v for k, v in headers.items() if k != "X-Signature"}


def _wrong_secret(body, headers):
    return _signed(_handover(), secret=b"another-secret")


@pytest.mark.parametrize("spoil, code", [
    (_tamper_body, "bad_signature"), (_drop_signature, "missing_header"), (_wrong_secret, "bad_signature"),
])
async def test_bad_signatures_get_401(police, spoil, code):
    body, headers = spoil(*_signed(_handover()))
    status, reply = await _post(police.port, "/110/handover", body, headers)
    assert (status, reply["error"]) == (401, code)
    assert not police.accepted


async def test_result_report_and_wrong_endpoint(police):
    report = ResultReport(message_id="m1", idempotency_key="T1:result:1", police_incident_id="JJ1",
                          ticket_number="T1", category="water", outcome="已修复", unit="自来水公司",
                          resolved_at=datetime.now(UTC), created_at=datetime.now(UTC))
    status, _ = await _post(police.port, "/110/handover", *_signed(report))
    assert status == 400
    status, reply = await _post(police.port, "/110/result", *_signed(report))
    assert (status, reply["police_incident_id"]) == (200, "JJ1")


async def test_down_refuses_connections_and_control_port_brings_it_back(police):
    port = police.port
    status, reply = await _post(police.control_port, "/110/control", b'{"mode": "down"}', {})
    assert (status, reply["mode"]) == (200, "down")
    await wait_for(lambda: police._link_server is None)
    with pytest.raises(ConnectionRefusedError):
        await _post(port, "/110/handover", *_signed(_handover()))
    status, _ = await _post(police.control_port, "/110/control", b'{"mode": "up"}', {})
    assert status == 200 and police.port == port
    status, _ = await _post(port, "/110/handover", *_signed(_handover()))
    assert status == 200


async def test_down_holds_its_port_so_it_comes_back_up_on_it():
    """While down, the link port refuses connections but stays the simulator's: nothing else can
    bind it meanwhile (a CI run once lost it to another socket between down and up)."""
    import socket

    from servers.embedded import free_port

    port = free_port()
    sim = PoliceSimulator(SECRET, our_base_url="http://127.0.0.1:9", mode="down")
    await sim.start(port, None)
    try:
        for k in range(2):  # started down, then down again after up
            with pytest.raises(ConnectionRefusedError):
                await _post(port, "/110/handover", *_signed(_handover(n=k + 1)))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other, pytest.raises(OSError):
                other.bind(("127.0.0.1", port))
            await sim.set_mode("up")
            status, _ = await _post(port, "/110/handover", *_signed(_handover(n=k + 1)))
            assert status == 200 and sim.port == port
            await sim.set_mode("down")
            await wait_for(lambda: sim._link_server is None)
    finally:
        await sim.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the closed connections' TIME_WAIT
        other.bind(("127.0.0.1", port))  # released at stop


async def test_error_and_slow_modes(police):
    await police.set_mode("error")
    status, reply = await _post(police.port, "/110/handover", *_signed(_handover()))
    assert (status, reply["error"]) == (500, "simulated_error") and not police.accepted
    await police.set_mode("slow", delay_s=0.5)
    started = time.monotonic()
    status, _ = await _post(police.port, "/110/handover", *_signed(_handover()))
    assert status == 200 and time.monotonic() - started >= 0.5


@pytest.mark.parametrize("body", [b'{"mode": "sideways"}', b'{"mode": "slow", "delay_s": -1}', b"[1]"])
async def test_control_refuses_nonsense(police, body):
    status, reply = await _post(police.control_port, "/110/control", body, {})
    assert (status, reply["error"]) == (400, "bad_control") and police.mode == "up"


def test_constructor_refuses_unknown_mode():
    with pytest.raises(PoliceSimError):
        PoliceSimulator(SECRET, mode="sideways")


async def test_status_updates_and_transfers_are_signed_for_us():
    receiver = Receiver()
    our_port = await receiver.start()
    sim = PoliceSimulator(SECRET, our_base_url=f"http://127.0.0.1:{our_port}", ack_delay_s=0.05,
                          status_delays_s=(0.01, 0.01, 0.01, 0.01))
    await sim.start(control_port=None)
    try:
        message = _handover("T20261122000007")
        status, reply = await _post(sim.port, "/110/handover", *_signed(message))
        assert status == 200
        await wait_for(lambda: len(receiver.messages) == 4)
        statuses = [m for _, m, _ in receiver.messages]
        assert all(isinstance(m, PoliceStatus) for m in statuses)
        assert [m.status for m in statuses] == ["received", "dispatched", "on_scene", "closed"]
        assert {m.ticket_number for m in statuses} == {"T20261122000007"}
        assert {m.police_incident_id for m in statuses} == {reply["police_incident_id"]}
        assert [k for _, _, k in receiver.messages] == [f"{reply['police_incident_id']}:status:{n}" for n in (1, 2, 3, 4)]
        assert await sim.transfer_one() == 200
        path, transfer, _ = receiver.messages[-1]
        assert path == "/api/police/incidents" and isinstance(transfer, IncidentTransfer)
        assert transfer.description and transfer.caller_phone.isdigit() and len(transfer.caller_phone) == 11
    finally:
        await sim.stop()
        await receiver.stop()


async def test_delivery_retries_until_we_answer():
    answers = iter([None, 503, 200])
    calls = []

    async def send(url, body, headers):
        calls.append(headers["X-Nonce"])
        return next(answers)

    sim = PoliceSimulator(SECRET, send=send, backoff_s=0.0)
    assert await sim.transfer_one() == 200
    assert len(calls) == 3 and len(set(calls)) == 3  # each attempt signed afresh
    assert [s["status"] for s in sim.sent] == [None, 503, 200]


def test_transfers_are_seeded():
    def descriptions(seed):
        sim = PoliceSimulator(SECRET, seed=seed, now=lambda: datetime(2026, 11, 22, tzinfo=UTC))
        return [(t.description, t.address, t.caller_phone) for t in (sim.make_transfer() for _ in range(5))]

    assert descriptions(3) == descriptions(3) != descriptions(4)
