"""The 110 tables of the record (`store.police`) against the session's real PostgreSQL:
the outbox's idempotency and per-ticket order, the sender's lease (``FOR UPDATE SKIP LOCKED``),
the inbound replay store and idempotency replies with their expiry, and the incident claims."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from store.db import Database
from store.police import PoliceStore
from command.police_outbox import on_attempt

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
T0 = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
async def police(database_url):
    db = Database(database_url, max_size=4)
    yield PoliceStore(db)
    await db.close()


async def _add(police, number, key, message_id, at=T0):
    return await police.outbox_add(number=number, key=key, message_id=message_id, body=f'{{"k": "{key}"}}'.encode(),
                                   kind="handover", at=at)


async def test_an_enqueue_is_idempotent_by_key_and_numbered_per_ticket(police):
    assert await _add(police, "T1", "T1:handover:1", "m1") == ("m1", True)
    assert await _add(police, "T1", "T1:handover:1", "m-again") == ("m1", False)  # nothing written
    assert await _add(police, "T1", "T1:manual:1", "m2", T0 + timedelta(seconds=1)) == ("m2", True)
    assert await _add(police, "T2", "T2:handover:1", "m3") == ("m3", True)
    assert [(e.message_id, e.seq_per_ticket) for e, _ in await police.outbox_of_ticket("T1")] == [("m1", 1), ("m2", 2)]
    assert [e.seq_per_ticket for e, _ in await police.outbox_of_ticket("T2")] == [1]
    entry, extra = await police.outbox_entry("m2")
    assert entry.body == b'{"k": "T1:manual:1"}' and entry.next_attempt_at == T0 + timedelta(seconds=1)
    assert extra == {"idempotency_key": "T1:manual:1", "kind": "handover",
                     "created_at": (T0 + timedelta(seconds=1)).isoformat(), "police_incident_id": ""}
    assert await police.last_message("T1") == {"dir": "out", "body": '{"k": "T1:manual:1"}'}
    assert len(await police.outbox_pending()) == 3


async def test_concurrent_enqueues_of_one_ticket_get_distinct_sequence_numbers(police):
    results = await asyncio.gather(*(_add(police, "T1", f"T1:manual:{i}", f"m{i}") for i in range(8)))
    assert all(created for _, created in results)
    assert sorted(e.seq_per_ticket for e, _ in await police.outbox_of_ticket("T1")) == list(range(1, 9))


async def test_a_lease_skips_an_entry_locked_or_changed_by_another_sender(police, database_url):
    for i in (1, 2, 3):
        await _add(police, f"T{i}", f"T{i}:handover:1", f"m{i}")
    heads = [e for e, _ in await police.outbox_pending()]
    now = T0 + timedelta(seconds=5)
    await police.outbox_save(on_attempt(heads[2], now))  # another sender leased m3 since it was read
    async with await psycopg.AsyncConnection.connect(database_url) as other:
        async with other.transaction():  # ... and another sender is leasing m1 right now
            await other.execute("SELECT 1 FROM police_outbox WHERE message_id = 'm1' FOR UPDATE")
            leased = await police.lease_due(heads, lambda e: on_attempt(e, now, timeout_s=10))
    assert [(e.message_id, e.state, e.attempts) for e in leased] == [("m2", "sent", 1)]
    stored = {e.message_id: e for e, _ in await police.outbox_pending()}
    assert (stored["m1"].state, stored["m2"].state, stored["m2"].next_attempt_at) == (
        "pending", "sent", now + timedelta(seconds=10))
    assert stored["m3"].attempts == 1  # not leased a second time


async def test_a_result_is_written_only_under_its_own_lease(police):
    await _add(police, "T1", "T1:handover:1", "m1")
    [(entry, _)] = await police.outbox_pending()
    [first] = await police.lease_due([entry], lambda e: on_attempt(e, T0, timeout_s=10))
    [second] = await police.lease_due([first], lambda e: on_attempt(e, T0 + timedelta(seconds=11), timeout_s=10))
    late = dataclasses.replace(first, state="pending", last_error="timeout")
    assert not await police.outbox_save(late, lease_attempts=first.attempts)  # the first lease ran out
    acked = dataclasses.replace(second, state="acked", acked_at=T0 + timedelta(seconds=12))
    assert await police.outbox_save(acked, police_incident_id="JJ1", lease_attempts=second.attempts)
    assert await police.outbox_pending() == []
    entry, extra = await police.outbox_entry("m1")
    assert (entry.state, entry.attempts, extra["police_incident_id"]) == ("acked", 2, "JJ1")


async def test_an_alarm_is_marked_once(police):
    await _add(police, "T1", "T1:handover:1", "m1")
    assert await police.mark_alarmed("m1", T0)
    assert not await police.mark_alarmed("m1", T0 + timedelta(seconds=1))


async def test_a_nonce_is_refused_until_it_expires_and_expired_rows_are_purged(police):
    assert await police.claim_nonce("n1", 600)
    assert not await police.claim_nonce("n1", 600)
    await police.db.execute("UPDATE police_nonces SET expires_at = now() - interval '1 second' WHERE nonce = 'n1'")
    assert await police.claim_nonce("n1", 600)  # expired: as if it was never seen
    assert await police.claim_nonce("n2", 600)
    await police.db.execute("UPDATE police_nonces SET expires_at = now() - interval '1 second' WHERE nonce = 'n2'")
    await police.claim_inbound("k-old")
    await police.db.execute("UPDATE police_inbound SET expires_at = now() - interval '1 second'")
    assert await police.purge_expired() == 2
    assert [r["nonce"] for r in await police.db.fetch("SELECT nonce FROM police_nonces")] == ["n1"]


async def test_an_inbound_key_is_claimed_once_then_answers_its_first_reply(police):
    assert await police.claim_inbound("JJ1:status:1") is None
    assert await police.claim_inbound("JJ1:status:1") == "processing"
    await police.finish_inbound("JJ1:status:1", 200, {"status": "accepted", "ticket_number": "T1"})
    assert await police.claim_inbound("JJ1:status:1") == {"status": 200, "body": {"status": "accepted",
                                                                                  "ticket_number": "T1"}}
    assert await police.claim_inbound("k2") is None
    await police.release_inbound("k2")  # the handler failed: a retry is handled afresh
    assert await police.claim_inbound("k2") is None
    await police.db.execute("UPDATE police_inbound SET expires_at = now() WHERE idempotency_key = 'k2'")
    assert await police.claim_inbound("k2") is None  # a crashed handler's claim expires (60 s)
    row = await police.db.fetchone("SELECT expires_at - now() AS left FROM police_inbound WHERE idempotency_key = %s",
                                   ("JJ1:status:1",))
    assert timedelta(days=6, hours=23) < row["left"] <= timedelta(days=7)


async def test_incident_claims_and_links(police):
    assert await police.claim_incident("JJ7") is None
    assert await police.claim_incident("JJ7") == ""  # its ticket is being created
    await police.drop_incident("JJ7")
    assert await police.claim_incident("JJ7") is None
    await police.map_incident("JJ7", "T7", "in", "msg-7")
    assert await police.claim_incident("JJ7") == "T7"
    await police.drop_incident("JJ7")  # a mapped incident is not a claim: it stays
    assert await police.ticket_of_incident("JJ7") == "T7"
    assert await police.police_ticket("T7") == {"police_incident_id": "JJ7", "direction": "in", "message_id": "msg-7"}
    await police.map_incident("JJ8", "T7", "out", "msg-8")  # a later handover's ack: the ticket's link is the latest
    assert (await police.police_ticket("T7"))["police_incident_id"] == "JJ8"
    assert await police.police_ticket("T9") == {} and await police.ticket_of_incident("JJ9") is None
    await police.put_last_message("T7", "in", '{"type": "incident_transfer"}'.encode())
    assert await police.last_message("T7") == {"dir": "in", "body": '{"type": "incident_transfer"}'}
