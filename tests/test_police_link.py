"""The 110 linkage with real PostgreSQL and Redis, our web app in-process and the 110 simulator
(`simulators.police`) in-process on free ports.

Time is compressed: one settable clock drives our outbox (attempts, backoff, the 60 s ack alarm),
our signature checks and the simulator's signatures. "110 down for 2 minutes" is the simulator in
mode ``down`` (connection refused) while the outbox makes a pass every 5 s of that clock for 120
s (24 passes); then the simulator comes up and passes continue until everything is acknowledged.
A crash of the worker is a cancelled pass (with the message already received by 110 and the reply
lost) and a new `PoliceLink` over a new Redis connection: the outbox entries were persisted (in
PostgreSQL) before sending, and the receiver's idempotency keeps delivery exactly once.
The app, link and simulator: tests/police.py (the `police_env` fixture).
"""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
import xmlschema

from store.db import Database
from servers.embedded import free_port
from store.live import Store
from store.dispatch import DispatchStore
from store.police import PoliceStore
from command.police import DISPATCHER_MANUAL, PoliceStatus, to_json
from services.police_link import POLICE_ACTOR, PoliceLink, http_send
from tests.conftest import wait_for
from tests.police import SECRET, signed

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parent / "data" / "cap" / "CAP-v1.2.xsd"))


async def test_110_down_two_minutes_then_every_message_delivered_once_in_order(police_env):
    first = await police_env.create()
    second = await police_env.create(phone="13900001111", description="燃气管道泄漏，闻到天然气味")
    await wait_for(lambda: _pending(police_env, 2))
    code, body = await police_env.call("POST", f"/api/tickets/{first}/police", body={})  # the dispatcher's 转110 on top
    assert code == 202 and orjson.loads(body)["message"]["seq"] == 2
    code, body = await police_env.call("POST", f"/api/tickets/{first}/police", body={})  # pressed twice: the same message
    assert code == 200 and orjson.loads(body)["created"] is False
    notes = [e for e in await police_env.timeline(first) if e["data"].get("data", {}).get("police") == "handover_queued"]
    assert [n["data"]["data"]["kind"] for n in notes] == [DISPATCHER_MANUAL]  # one note, with its entry
    assert len(await police_env.link.store.outbox_pending()) == 3
    for _ in range(24):  # 2 minutes of 110 down, a pass every 5 s
        await police_env.link.run_once(police_env.clock.advance(5))
    pending = await police_env.link.store.outbox_pending()
    assert {e.state for e, _ in pending} == {"pending"} and police_env.sim.received == []
    heads = {e.ticket_number: e.attempts for e, _ in pending if e.seq_per_ticket == 1}
    assert min(heads.values()) >= 3 and [e.attempts for e, _ in pending if e.seq_per_ticket == 2] == [0]
    code, body = await police_env.call("GET", "/api/ticket-alarms")
    shown = {a["alarm_id"] for a in orjson.loads(body)["alarms"]}
    assert {f"{first}|police_ack", f"{second}|police_ack"} <= shown
    await police_env.sim.set_mode("up")
    await police_env.until_acked()
    accepted = [r for r in police_env.sim.received if r["outcome"] == "accepted"]
    keys = [r["idempotency_key"] for r in accepted]
    assert sorted(keys) == sorted([f"{first}:handover:1", f"{first}:manual:1", f"{second}:handover:1"])
    assert keys.index(f"{first}:handover:1") < keys.index(f"{first}:manual:1")  # in order per ticket
    assert len(police_env.sim.accepted) == 3
    code, body = await police_env.call("GET", "/api/ticket-alarms")
    assert not [a for a in orjson.loads(body)["alarms"] if a["what"] == "police_ack"]
    groups = await wait_for(lambda: _status_groups(police_env, first, 2))  # one 110 incident per handover
    assert list(groups.values()) == [["received", "dispatched", "on_scene", "closed"]] * 2
    acks = [e for e in await police_env.timeline(first) if e["data"].get("data", {}).get("police") == "acked"]
    assert len(acks) == 2 and acks[0]["data"]["data"]["police_incident_id"].startswith("JJ")


async def _pending(police_env, count):
    return len(await police_env.link.store.outbox_pending()) == count


async def _status_groups(police_env, number, incidents):
    """The police statuses on the ticket's timeline per 110 incident, once every incident is closed."""
    groups: dict[str, list[str]] = {}
    for event in await police_env.timeline(number):
        data = event["data"].get("data", {})
        if "police_status" in data:
            groups.setdefault(data["police_incident_id"], []).append(data["police_status"])
    done = len(groups) == incidents and all(g[-1] == "closed" for g in groups.values())
    return groups if done else None


async def test_outbox_survives_a_worker_crash_and_delivers_exactly_once(police_env, redis_url, database_url):
    await police_env.sim.set_mode("up")
    number = await police_env.create(description="变压器旁有异响", category="power")  # not an emergency kind
    record = await police_env.parts.tickets.store.get(number)
    entry, created = await police_env.link.enqueue_handover(record, DISPATCHER_MANUAL, purpose="manual")
    assert created and entry["state"] == "pending"
    lost = asyncio.Event()

    async def send_then_die(url, body, headers, timeout_s):
        await http_send(url, body, headers, timeout_s)  # 110 receives and acknowledges ...
        lost.set()
        await asyncio.Event().wait()  # ... and the worker dies before reading the reply

    crashing = PoliceLink(police_env.link.store, police_env.link.alarms, police_env.parts.tickets, url=police_env.link.url, secret=SECRET.encode(),
                          clock=police_env.clock, send=send_then_die, timeout_s=3.0)
    attempt = asyncio.create_task(crashing.run_once(police_env.clock.now))
    await asyncio.wait_for(lost.wait(), 10)
    attempt.cancel()
    await asyncio.gather(attempt, return_exceptions=True)
    store = Store.from_url(redis_url, database_url)  # the restarted worker: new connection, nothing in memory
    try:
        restarted = PoliceLink(PoliceStore(store.db), DispatchStore(store.redis), police_env.parts.tickets, url=police_env.link.url,
                               secret=SECRET.encode(), clock=police_env.clock, timeout_s=3.0)
        [(leased, extra)] = await restarted.store.outbox_pending()
        assert (leased.state, leased.attempts, extra["idempotency_key"]) == ("sent", 1, f"{number}:manual:1")
        assert await restarted.run_once(police_env.clock.advance(1)) == 0  # still leased to the dead attempt
        assert await restarted.run_once(police_env.clock.advance(3)) == 1  # lease over: sent again, 409 = already held
    finally:
        await store.close()
    outcomes = [r["outcome"] for r in police_env.sim.received if r["idempotency_key"] == f"{number}:manual:1"]
    assert outcomes == ["accepted", "duplicate"] and len(police_env.sim.accepted) == 1
    assert await police_env.link.store.outbox_pending() == []
    acks = [e for e in await police_env.timeline(number) if e["data"].get("data", {}).get("police") == "acked"]
    assert len(acks) == 1 and acks[0]["data"]["data"]["attempts"] == 2  # recorded once, with its entry


@pytest.mark.parametrize("case", ["no_headers", "wrong_secret", "stale", "tampered", "malformed", "wrong_type"])
async def test_bad_inbound_requests_are_refused_and_change_nothing(police_env, case):
    number = await police_env.create(description="变压器旁有异响", category="power")
    before = await police_env.timeline(number)
    status = PoliceStatus(uuid.uuid4().hex, number, "JJ1", "received", police_env.clock.now, "测试")
    body = to_json(status)
    headers = signed(body, at=police_env.clock.now)
    if case == "no_headers":
        headers = {}
    elif case == "wrong_secret":
        headers = signed(body, secret="guess", at=police_env.clock.now)
    elif case == "stale":
        headers = signed(body, at=police_env.clock.now - timedelta(minutes=10))
    elif case == "tampered":
        body = body.replace(b"received", b"closed")
    elif case == "malformed":
        body = b'{"type": "police_status", "status": '
        headers = signed(body, at=police_env.clock.now)
    elif case == "wrong_type":
        body = body.replace(b'"police_status"', b'"incident_transfer"')
        headers = signed(body, at=police_env.clock.now)
    code, reply = await police_env.call("POST", "/api/police/status", None, body, headers)
    expected = 400 if case in ("malformed", "wrong_type") else 401
    assert code == expected, reply
    assert await police_env.timeline(number) == before


async def test_replayed_nonce_is_refused_and_repeated_key_gets_the_first_reply(police_env):
    number = await police_env.create(description="变压器旁有异响", category="power")
    body = to_json(PoliceStatus(uuid.uuid4().hex, number, "JJ1", "dispatched", police_env.clock.now, ""))
    headers = signed(body, at=police_env.clock.now, key="JJ1:status:2")
    assert (await police_env.call("POST", "/api/police/status", None, body, headers))[0] == 200
    assert (await police_env.call("POST", "/api/police/status", None, body, headers))[0] == 401  # same nonce: replay
    again = signed(body, at=police_env.clock.now, key="JJ1:status:2")  # a retry: new nonce, same key
    code, reply = await police_env.call("POST", "/api/police/status", None, body, again)
    assert code == 200 and orjson.loads(reply)["duplicate"] is True
    notes = [e for e in await police_env.timeline(number) if "police_status" in e["data"].get("data", {})]
    assert len(notes) == 1
    code, _ = await police_env.call("POST", "/api/police/status", None, body.replace(number.encode(), b"GD20200101-9999"),
                                    signed(body.replace(number.encode(), b"GD20200101-9999"), at=police_env.clock.now, key="x2"))
    assert code == 404


async def test_transfer_becomes_a_110_ticket_and_its_resolution_is_reported_back(police_env):
    await police_env.sim.set_mode("up")
    assert await police_env.sim.transfer_one() == 200
    [sent] = police_env.sim.sent
    incident_id = sent["idempotency_key"].split(":")[0]
    number = await police_env.link.store.ticket_of_incident(incident_id)
    record = await police_env.parts.tickets.store.get(number)
    assert record.ticket.channel.value == "police_110" and incident_id in record.ticket.description
    transfer = police_env.sim.make_transfer()  # the same incident id delivered twice → one ticket
    assert await police_env.sim.deliver(police_env.sim.incidents_path, transfer, "JJ-dup:transfer:1") == 200
    assert await police_env.sim.deliver(police_env.sim.incidents_path, transfer, "JJ-dup:transfer:1") == 200
    assert await police_env.parts.tickets.store.open_count() == 2
    await police_env.act(number, "dispatch", crew_id="C01")
    for action in ("accept", "arrive"):
        await police_env.act(number, action, "crew")
    await police_env.act(number, "resolve", "crew", resolution="已疏通排水管道")
    [(queued, extra)] = await police_env.link.store.outbox_pending()  # queued by the resolution's own transaction
    [resolved] = [e for e in await police_env.timeline(number) if e["action"] == "resolve"]
    assert resolved["data"]["police"] == "result_queued" and resolved["data"]["message_id"] == queued.message_id
    assert extra["kind"] == "result_report"
    await police_env.until_acked()
    [report] = [r for r in police_env.sim.received if r.get("type") == "result_report"]
    assert report["outcome"] == "accepted" and report["police_incident_id"] == incident_id
    code, xml = await police_env.call("GET", f"/api/tickets/{number}/cap")
    assert code == 200
    SCHEMA.validate(xml.decode("utf-8"))
    assert b"<msgType>Update</msgType>" in xml and b"+08:00" in xml and b"Z</sent>" not in xml


async def test_cap_of_a_handover_validates_and_unknown_is_404(police_env):
    number = await police_env.create()
    await wait_for(lambda: _pending(police_env, 1))
    code, xml = await police_env.call("GET", f"/api/tickets/{number}/cap")
    assert code == 200
    SCHEMA.validate(xml.decode("utf-8"))
    assert "燃气泄漏".encode() in xml and b"<msgType>Alert</msgType>" in xml
    other = await police_env.create(description="变压器旁有异响", category="power", phone="13900001111")
    assert (await police_env.call("GET", f"/api/tickets/{other}/cap"))[0] == 404


async def test_a_redis_wipe_loses_no_outbox_entry_link_or_idempotency_reply(police_env):
    number = await police_env.create()  # an emergency: its handover waits in the outbox (110 is down)
    await wait_for(lambda: _pending(police_env, 1))
    transfer = police_env.sim.make_transfer()
    body, key = to_json(transfer), f"{transfer.police_incident_id}:transfer:1"
    headers = signed(body, at=police_env.clock.now, key=key)
    code, reply = await police_env.call("POST", "/api/police/incidents", None, body, headers)
    assert code == 200, reply
    first = orjson.loads(reply)
    await police_env.store.redis.flushall()
    [(entry, extra)] = await police_env.link.store.outbox_pending()
    assert (entry.ticket_number, extra["idempotency_key"]) == (number, f"{number}:handover:1")
    assert await police_env.link.store.ticket_of_incident(transfer.police_incident_id) == first["ticket_number"]
    assert (await police_env.link.store.police_ticket(first["ticket_number"]))["direction"] == "in"
    assert (await police_env.call("POST", "/api/police/incidents", None, body, headers))[0] == 401  # nonce kept too
    code, again = await police_env.call("POST", "/api/police/incidents", None, body,
                                        signed(body, at=police_env.clock.now, key=key))  # 110 resends: new nonce, same key
    assert code == 200 and orjson.loads(again) == {**first, "duplicate": True}
    assert await police_env.parts.tickets.store.open_count() == 2
    await police_env.sim.set_mode("up")
    await police_env.until_acked()
    assert [r["idempotency_key"] for r in police_env.sim.received] == [f"{number}:handover:1"]
    assert len(police_env.sim.accepted) == 1


async def test_two_senders_racing_send_each_entry_once(police_env, redis_url, database_url):
    await police_env.sim.set_mode("up")
    numbers = [await police_env.create(description="变压器旁有异响", category="power", phone=f"1390000{i:04d}")
               for i in range(4)]  # not emergencies: queued by hand below
    for number in numbers:
        await police_env.link.enqueue_handover(await police_env.parts.tickets.store.get(number), DISPATCHER_MANUAL, purpose="manual")
    both_read = asyncio.Barrier(2)
    sent: list[str] = []

    class RacingStore(PoliceStore):
        """Both senders read the same due entries before either leases one."""

        async def outbox_pending(self):
            pending = await super().outbox_pending()
            await both_read.wait()
            return pending

    async def counting_send(url, body, headers, timeout_s):
        sent.append(headers["Idempotency-Key"])
        await asyncio.sleep(0.05)  # the other sender's pass runs meanwhile
        return await http_send(url, body, headers, timeout_s)

    other = Store.from_url(redis_url, database_url)  # a second dispatch worker: its own pool and Redis client
    try:
        links = [PoliceLink(RacingStore(db), DispatchStore(redis), police_env.parts.tickets, url=police_env.link.url,
                            secret=SECRET.encode(), clock=police_env.clock, send=counting_send, timeout_s=3.0)
                 for db, redis in ((police_env.store.db, police_env.store.redis), (other.db, other.redis))]
        now = police_env.clock.advance(1)
        acked = await asyncio.gather(*(link.run_once(now) for link in links))
    finally:
        await other.close()
    assert sum(acked) == 4 and sorted(sent) == sorted(f"{n}:manual:1" for n in numbers)
    assert sorted(r["idempotency_key"] for r in police_env.sim.received) == sorted(sent)
    assert {r["outcome"] for r in police_env.sim.received} == {"accepted"}
    assert await police_env.link.store.outbox_pending() == []


async def test_postgresql_down_an_inbound_request_answers_503_and_writes_nothing(police_env):
    number = await police_env.create(description="变压器旁有异响", category="power")
    before = await police_env.timeline(number)
    body = to_json(PoliceStatus(uuid.uuid4().hex, number, "JJ1", "received", police_env.clock.now, ""))
    headers = signed(body, at=police_env.clock.now, key="JJ1:status:1")
    record_store = police_env.link.store
    police_env.link.store = PoliceStore(Database(f"postgresql://center@127.0.0.1:{free_port()}/center", timeout_s=1.0))
    try:
        code, reply = await police_env.call("POST", "/api/police/status", None, body, headers)
    finally:
        await police_env.link.store.db.close()
        police_env.link.store = record_store
    assert code == 503 and orjson.loads(reply)["error"]["code"] == "database_unavailable"
    assert await police_env.timeline(number) == before
    assert await record_store.claim_inbound("JJ1:status:1") is None  # nothing was claimed: 110's retry is handled
    await record_store.release_inbound("JJ1:status:1")
    code, reply = await police_env.call("POST", "/api/police/status", None, body, headers)  # the same request, retried
    assert code == 200, reply


async def test_an_emergency_and_its_handover_are_one_transaction(police_env, monkeypatch):
    number = await police_env.create()
    [(queued, extra)] = await police_env.link.store.outbox_pending()  # there as soon as the ticket is
    [created] = [e for e in await police_env.timeline(number) if e["action"] == "create"]
    assert created["data"]["police"] == "handover_queued" and created["data"]["message_id"] == queued.message_id
    assert (queued.ticket_number, extra["idempotency_key"]) == (number, f"{number}:handover:1")
    writer = police_env.link.store.outbox_writer

    def failing_writer(**message):
        write = writer(**message)

        async def write_then_fail(conn):
            await write(conn)  # the entry is inserted, then the transaction fails
            raise RuntimeError("disk full")
        return write_then_fail

    monkeypatch.setattr(police_env.link.store, "outbox_writer", failing_writer)
    tickets = await police_env.store.db.fetchone("SELECT count(*) AS n FROM tickets")
    with pytest.raises(RuntimeError):
        await police_env.parts.tickets.create({
            "channel": "phone", "category": "gas", "type": "repair", "urgency": "emergency",
            "description": "闻到很浓的煤气味", "caller_phone": "13812349999", "address": "高密市康成大街1号",
            "lon": 119.75, "lat": 36.37}, POLICE_ACTOR, link=False)
    assert await police_env.store.db.fetchone("SELECT count(*) AS n FROM tickets") == tickets  # no ticket without its entry
    assert [e.message_id for e, _ in await police_env.link.store.outbox_pending()] == [queued.message_id]


async def test_a_transfer_and_its_link_and_reply_are_one_transaction(police_env, monkeypatch):
    transfer = police_env.sim.make_transfer()
    body, key = to_json(transfer), f"{transfer.police_incident_id}:transfer:1"
    writer = police_env.link.store.inbound_writer

    def failing_writer(**record):
        write = writer(**record)

        async def write_then_fail(conn):
            await write(conn)  # link, last message and reply written, then the transaction fails
            raise psycopg.OperationalError("the connection was lost")
        return write_then_fail

    monkeypatch.setattr(police_env.link.store, "inbound_writer", failing_writer)
    code, _ = await police_env.call("POST", "/api/police/incidents", None, body, signed(body, at=police_env.clock.now, key=key))
    assert code == 503
    assert await police_env.parts.tickets.store.open_count() == 0
    assert await police_env.link.store.ticket_of_incident(transfer.police_incident_id) is None
    monkeypatch.undo()
    for _ in range(2):  # 110 retries: one ticket, linked, and the same reply
        code, reply = await police_env.call("POST", "/api/police/incidents", None, body,
                                            signed(body, at=police_env.clock.now, key=key))
        assert code == 200, reply
    number = orjson.loads(reply)["ticket_number"]
    assert await police_env.parts.tickets.store.open_count() == 1
    assert await police_env.link.store.ticket_of_incident(transfer.police_incident_id) == number
    assert (await police_env.link.store.last_message(number))["dir"] == "in"


async def test_a_late_acknowledgement_after_the_lease_ran_out_records_nothing(police_env):
    await police_env.sim.set_mode("up")
    number = await police_env.create(description="变压器旁有异响", category="power")
    await police_env.link.enqueue_handover(await police_env.parts.tickets.store.get(number), DISPATCHER_MANUAL, purpose="manual")
    accepted, reply_back = asyncio.Event(), asyncio.Event()

    async def slow_send(url, body, headers, timeout_s):
        result = await http_send(url, body, headers, timeout_s)  # 110 accepts ...
        accepted.set()
        await reply_back.wait()  # ... and its reply comes back after the lease ran out
        return result

    slow = PoliceLink(police_env.link.store, police_env.link.alarms, police_env.parts.tickets, url=police_env.link.url, secret=SECRET.encode(),
                      clock=police_env.clock, send=slow_send, timeout_s=3.0)
    late = asyncio.create_task(slow.run_once(police_env.clock.now))
    await asyncio.wait_for(accepted.wait(), 10)
    assert await police_env.link.run_once(police_env.clock.advance(4)) == 1  # the next attempt: 409, already held = acked
    reply_back.set()
    assert await late == 0  # the first attempt's acknowledgement writes nothing
    acks = [e for e in await police_env.timeline(number) if e["data"].get("data", {}).get("police") == "acked"]
    assert [a["data"]["data"]["attempts"] for a in acks] == [2]
    [entry] = [e for e, _ in await police_env.link.store.outbox_of_ticket(number)]
    assert (entry.state, entry.attempts) == ("acked", 2)


async def test_an_ambiguous_emergency_waits_for_the_dispatchers_one_click(police_env):
    maybe = await police_env.create(description="厨房好像有点煤气味，不确定")
    sure = await police_env.create(phone="13900002222", description="楼道里煤气味很浓")
    await wait_for(lambda: _pending(police_env, 1))
    code, body = await police_env.call("GET", f"/api/tickets/{maybe}")
    ticket = orjson.loads(body)
    assert code == 200 and ticket["police_suggested"] == "gas_leak" and ticket["police_kind"] is None
    # only the sure one was handed over automatically
    assert [e.ticket_number for e, _ in await police_env.link.store.outbox_pending()] == [sure]
    code, body = await police_env.call("POST", f"/api/tickets/{maybe}/police", body={})  # the console's 确认转110
    assert code == 202
    message = orjson.loads(body)["message"]
    assert message["idempotency_key"] == f"{maybe}:manual:1" and message["kind"] == "handover"
    assert [e.message_id for e, _ in await police_env.link.store.outbox_pending() if e.ticket_number == maybe] == [
        message["message_id"]]
    code, body = await police_env.call("GET", f"/api/tickets/{maybe}")  # now a police ticket: no more "110?"
    assert code == 200 and orjson.loads(body)["police_kind"] == "gas_leak"
