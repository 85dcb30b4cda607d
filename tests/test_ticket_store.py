"""The tickets area of the record on a real PostgreSQL (and Redis for the publication): one
transaction per write with its audit events, version conflicts, guards and a failing extra that
write nothing, the daily numbers, the queue order of the limits, and the changes published after
COMMIT (or left in the outbox when Redis is down)."""
from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import redis.asyncio as aioredis

from store.db import Database
from servers.embedded import free_port
from store.tickets import TicketStore
from store.ticket_publish import CHANGES_STREAM, LIVE_TICKETS, publish_changes
from store.ticket_records import GuardFailed, IncidentWrite, TicketWrite
from command.errors import Conflict, InvalidTransition
from command.grouping import open_incident
from command.limits import queue_key
from command.tickets import apply
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Role
from services.tickets import TicketManager
from tests.conftest import Clock

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
AGENT = Actor("agent1", Role.AGENT)
DISPATCHER = Actor("disp1", Role.DISPATCHER)


@pytest.fixture
async def store(redis_url, database_url):
    client = aioredis.from_url(redis_url, decode_responses=True)
    db = Database(database_url)
    yield TicketStore(db, client)
    await db.close()
    await client.aclose()


def _call(number: str, **extra) -> dict:
    fields = {"number": number, "channel": "phone", "category": "water", "type": "repair",
              "description": "停水", "caller_phone": "13812341234", "lon": 119.72, "lat": 36.36,
              "supply_area": "DMA01"}
    fields.update(extra)
    return fields


async def test_create_writes_record_events_and_indexes_atomically(store):
    manager = TicketManager(store, None, clock=Clock(T0))
    ticket, event = new_ticket(_call("GD20261122-0001"), now=T0, actor=AGENT)
    record = manager._record(ticket, {})
    ids = await store.save([TicketWrite(record, [event])])
    assert len(ids) == 1
    back = await store.get("GD20261122-0001")
    assert back.ticket == record.ticket and back.meta["queue"] == record.meta["queue"]
    events = await store.events("GD20261122-0001")
    assert [(sid, e["action"], e["actor_id"], e["to_state"]) for sid, e in events] == [(ids[0], "create", "agent1", "new")]
    assert await store.index("open") == ["GD20261122-0001"]
    assert await store.index("phone:13812341234") == ["GD20261122-0001"]
    assert await store.counts() == {"new": 1}
    reads = await store.near_and_by_phone(119.7201, 36.36, 100, "13812341234")
    assert [n for n, _ in reads.near] == ["GD20261122-0001"] and 5 < reads.near[0][1] < 12
    assert reads.by_phone == ["GD20261122-0001"]
    assert reads.records["GD20261122-0001"].ticket == record.ticket
    assert (await store.near_and_by_phone(119.7201, 36.36, 100, None, category="gas")).near == []  # water only


async def test_a_second_create_of_the_same_number_is_a_conflict_and_writes_nothing(store):
    ticket, event = new_ticket(_call("GD20261122-0001"), now=T0, actor=AGENT)
    manager = TicketManager(store, None, clock=Clock(T0))
    await store.save([TicketWrite(manager._record(ticket, {}), [event])])
    other, event2 = new_ticket(_call("GD20261122-0001", description="另一个"), now=T0, actor=AGENT)
    with pytest.raises(Conflict):
        await store.save([TicketWrite(manager._record(other, {}), [event2])])
    assert (await store.get("GD20261122-0001")).ticket.description == "停水"
    assert len(await store.events("GD20261122-0001")) == 1


async def test_two_concurrent_actions_exactly_one_wins(store):
    manager = TicketManager(store, None, clock=Clock(T0))
    ticket, event = new_ticket(_call("GD20261122-0001"), now=T0, actor=AGENT)
    await store.save([TicketWrite(manager._record(ticket, {}), [event])])
    results = await asyncio.gather(
        manager.act("GD20261122-0001", "dispatch", {"crew_id": "C01"}, DISPATCHER, expected_version=1),
        manager.act("GD20261122-0001", "dispatch", {"crew_id": "C02"}, Actor("disp2", Role.DISPATCHER),
                    expected_version=1),
        return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and len(losers) == 1 and isinstance(losers[0], Conflict)
    stored = await store.get("GD20261122-0001")
    assert stored.ticket.version == 2 and stored.ticket.crew_id == winners[0].ticket.crew_id
    assert [e["action"] for _, e in await store.events("GD20261122-0001")] == ["create", "dispatch"]
    assert await store.crew_tickets(stored.ticket.crew_id) == ["GD20261122-0001"]
    other = "C02" if stored.ticket.crew_id == "C01" else "C01"
    assert await store.crew_tickets(other) == []


async def test_stale_expected_version_is_refused_before_any_write(store):
    manager = TicketManager(store, None, clock=Clock(T0))
    ticket, event = new_ticket(_call("GD20261122-0001"), now=T0, actor=AGENT)
    await store.save([TicketWrite(manager._record(ticket, {}), [event])])
    await manager.act("GD20261122-0001", "review", {}, DISPATCHER, expected_version=1)
    with pytest.raises(Conflict) as err:
        await manager.act("GD20261122-0001", "dispatch", {"crew_id": "C01"}, DISPATCHER, expected_version=1)
    assert (err.value.expected, err.value.actual) == (1, 2)
    with pytest.raises(InvalidTransition):
        await manager.act("GD20261122-0001", "resolve", {"resolution": "x"}, DISPATCHER, expected_version=2)


async def test_failed_incident_guard_writes_neither_ticket_nor_events(store):
    manager = TicketManager(store, None, clock=Clock(T0))
    ticket, event = new_ticket(_call("GD20261122-0001"), now=T0, actor=AGENT)
    incident = open_incident("INC20261122-0001", ticket)
    await store.save([], [IncidentWrite(incident, 1)])
    with pytest.raises(GuardFailed):  # claims to create an incident that exists already
        await store.save([TicketWrite(manager._record(ticket, {}), [event])], [IncidentWrite(incident, 1)])
    assert await store.get_many(["GD20261122-0001"]) == [None]
    assert await store.events("GD20261122-0001") == []
    assert await store.counts() == {}


async def test_terminal_state_leaves_the_open_indexes(store):
    manager = TicketManager(store, None, clock=Clock(T0))
    ticket, event = new_ticket(_call("GD20261122-0001"), now=T0, actor=AGENT)
    await store.save([TicketWrite(manager._record(ticket, {}), [event])])
    await manager.act("GD20261122-0001", "dispatch", {"crew_id": "C01"}, DISPATCHER, expected_version=1)
    await manager.act("GD20261122-0001", "cancel", {"reason": "误报"}, DISPATCHER, expected_version=2)
    assert await store.index("open") == [] and await store.crew_tickets("C01") == []
    assert (await store.near_and_by_phone(119.72, 36.36, 100, None)).near == []
    assert (await store.near_and_by_phone(None, None, 100, "13812341234")).by_phone == []  # open tickets only
    assert await store.index("state:cancelled") == ["GD20261122-0001"]
    assert await store.index("phone:13812341234") == ["GD20261122-0001"]  # history stays
    assert await store.counts() == {"cancelled": 1}
    assert await store.queue_heads(10) == {}  # no timed stage left


CATEGORIES = ["water", "power", "gas", "sanitation"]
TYPES = ["repair", "complaint", "service", "consultation"]
URGENCIES = ["emergency", "urgent", "normal"]


@pytest.mark.parametrize("seed, limit, offset", [(1, 10, 0), (2, 25, 5), (3, 60, 0), (4, 7, 30)])
async def test_queue_order_is_the_order_of_command_limits_queue_key(store, seed, limit, offset):
    rng = random.Random(seed)
    clock = Clock(T0)
    manager = TicketManager(store, None, clock=clock)
    tickets = []
    for i in range(60):
        at = T0 + timedelta(minutes=rng.randint(0, 600))
        fields = _call(f"GD20261122-{i + 1:04d}", category=rng.choice(CATEGORIES), type=rng.choice(TYPES),
                       urgency=rng.choice(URGENCIES), area_class=rng.choice(["urban", "rural", "remote"]),
                       caller_phone=f"139{i:08d}")
        ticket, event = new_ticket(fields, now=at, actor=AGENT)
        if rng.random() < 0.4:  # some are in the field: other stages are running
            ticket, e2 = apply(ticket, "dispatch", actor=DISPATCHER, now=at + timedelta(minutes=2), crew_id="C1")
            if rng.random() < 0.5:
                ticket, e3 = apply(ticket, "accept", actor=Actor("c", Role.CREW, "C1"), now=at + timedelta(minutes=3))
        tickets.append(ticket)
        await store.save([TicketWrite(manager._record(ticket, {}), [event])])
    clock.now = T0 + timedelta(hours=11)
    expected = sorted(tickets, key=lambda t: queue_key(t, clock.now))
    page, total = await manager.list(DISPATCHER, limit=limit, offset=offset)
    assert total == 60
    assert [r.ticket.number for r in page] == [t.number for t in expected[offset:offset + limit]]


async def _rows(store: TicketStore) -> dict[str, int]:
    """Row counts of the tables a ticket write touches."""
    out = {}
    for table in ("tickets", "ticket_events", "ticket_stages", "incidents", "alarm_tickets", "ticket_changes"):
        out[table] = (await store.db.fetchone(f"SELECT count(*) AS n FROM {table}"))["n"]
    return out


async def _create(store: TicketStore, number: str = "GD20261122-0001", **kwargs) -> TicketWrite:
    manager = TicketManager(store, None, clock=Clock(T0))
    ticket, event = new_ticket(_call(number), now=T0, actor=AGENT)
    write = TicketWrite(manager._record(ticket, {}), [event], **kwargs)
    await store.save([write])
    return write


async def test_a_stale_version_is_a_conflict_with_the_actual_version_and_writes_nothing(store):
    first = await _create(store)
    manager = TicketManager(store, None, clock=Clock(T0))
    moved, event = apply(first.record.ticket, "review", actor=DISPATCHER, now=T0 + timedelta(minutes=1))
    await store.save([TicketWrite(manager._record(moved, {}), [event], first.record)])
    before = await _rows(store)
    again, event2 = apply(first.record.ticket, "cancel", actor=DISPATCHER, now=T0 + timedelta(minutes=2),
                          reason="误报")
    with pytest.raises(Conflict) as err:  # written against version 1, the stored one is 2
        await store.save([TicketWrite(manager._record(again, {}), [event2], first.record)])
    assert (err.value.number, err.value.expected, err.value.actual) == ("GD20261122-0001", 1, 2)
    assert await _rows(store) == before
    assert (await store.get("GD20261122-0001")).ticket.state.value == "reviewed"


async def test_an_alarm_is_claimed_by_one_ticket_only(store):
    await _create(store, "GD20261122-0001", alarm_key="S01:1")
    assert await store.alarm_ticket("S01:1") == "GD20261122-0001"
    before = await _rows(store)
    with pytest.raises(GuardFailed) as err:
        await _create(store, "GD20261122-0002", alarm_key="S01:1")
    assert err.value.key == "alarm:S01:1" and err.value.actual == "GD20261122-0001" and err.value.alarm_claimed
    assert await _rows(store) == before and await store.get_many(["GD20261122-0002"]) == [None]


async def test_an_incident_write_against_an_old_revision_fails_its_guard(store):
    ticket, _ = new_ticket(_call("GD20261122-0001"), now=T0, actor=AGENT)
    incident = open_incident("INC20261122-0001", ticket)
    await store.save([], [IncidentWrite(incident, 1)])
    later = dataclasses.replace(incident, last_call_at=T0 + timedelta(minutes=5))
    await store.save([], [IncidentWrite(later, 2, incident)])
    with pytest.raises(GuardFailed) as err:  # a second writer that read revision 1
        await store.save([], [IncidentWrite(dataclasses.replace(incident, suspected_asset="T9"), 2, incident)])
    assert err.value.key == "incident:INC20261122-0001" and err.value.actual == "2" and not err.value.alarm_claimed
    found, rev = await store.incident("INC20261122-0001")
    assert rev == 2 and found == later
    assert await store.area_incidents(incident.supply_area) == [(later, 2)]


async def test_a_failing_extra_leaves_no_ticket_event_stage_or_change(store):
    seen = []

    async def outbox(conn):
        await conn.execute("INSERT INTO day_sequences (kind, day, last) VALUES ('probe', '2026-11-22', 7)")
        seen.append((await (await conn.execute("SELECT count(*) FROM tickets")).fetchone())[0])

    async def broken(conn):
        raise RuntimeError("the other store refused")

    manager = TicketManager(store, None, clock=Clock(T0))
    ticket, event = new_ticket(_call("GD20261122-0001"), now=T0, actor=AGENT)
    with pytest.raises(RuntimeError):
        await store.save([TicketWrite(manager._record(ticket, {}), [event])], extra=[outbox, broken])
    assert seen == [1]  # the extra ran inside the transaction, after the ticket's rows
    assert await _rows(store) == dict.fromkeys(await _rows(store), 0)
    assert await store.db.fetch("SELECT * FROM day_sequences") == []
    ids = await store.save([TicketWrite(manager._record(ticket, {}), [event])], extra=[outbox])
    assert len(ids) == 1 and (await _rows(store))["tickets"] == 1
    assert [r["last"] for r in await store.db.fetch("SELECT last FROM day_sequences WHERE kind = 'probe'")] == [7]


async def test_the_daily_number_has_no_duplicate_under_concurrent_creates(store):
    day = T0.date()
    drawn = await asyncio.gather(*[store.next_number_seq(day) for _ in range(40)],
                                 *[store.create_reads(day, phone="13812341234") for _ in range(40)])
    seqs = [d if isinstance(d, int) else d.seq for d in drawn]
    assert sorted(seqs) == list(range(1, 81))
    assert await store.next_incident_seq(day) == 1  # its own sequence
    assert await store.release_number_seq(day, 80) is True and await store.next_number_seq(day) == 80
    assert await store.release_number_seq(day, 3) is False  # not the latest: a gap


async def test_changes_are_published_after_commit_to_the_stream_and_the_channel(store):
    pubsub = store.redis.pubsub()
    await pubsub.subscribe(LIVE_TICKETS)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    await _create(store)
    entries = await store.redis.xrange(CHANGES_STREAM)
    assert [fields for _, fields in entries] == [
        {"number": "GD20261122-0001", "version": "1", "action": "create", "state": "new"}]
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert orjson.loads(message["data"]) == [
        {"number": "GD20261122-0001", "version": 1, "action": "create", "state": "new"}]
    assert (await _rows(store))["ticket_changes"] == 0  # published: the outbox row is gone
    await pubsub.aclose()


async def test_changes_stay_in_the_outbox_when_redis_is_down(database_url):
    port = free_port()  # a Redis nobody listens on
    dead = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    db = Database(database_url)
    try:
        store = TicketStore(db, dead)
        write = await _create(store)  # the request does not fail after COMMIT
        assert store.counters["publish_failed"] == 1
        rows = await db.fetch("SELECT number, version, action, state FROM ticket_changes")
        assert rows == [{"number": "GD20261122-0001", "version": 1, "action": "create", "state": "new"}]
        assert (await store.get("GD20261122-0001")).ticket == write.record.ticket
    finally:
        await db.close()
        await dead.aclose()


async def test_publish_changes_sends_leftover_rows_for_the_relay(store):
    await store.db.execute("INSERT INTO ticket_changes (number, version, action, state)"
                           " VALUES ('GD20261122-0009', 3, 'dispatch', 'dispatched')")
    rows = await store.db.fetch("SELECT id, number, version, action, state FROM ticket_changes")
    await publish_changes(store.redis, rows)
    [(_, fields)] = await store.redis.xrange(CHANGES_STREAM)
    assert fields == {"number": "GD20261122-0009", "version": "3", "action": "dispatch", "state": "dispatched"}


async def test_a_client_action_id_is_remembered_in_the_action_s_transaction_for_its_time(store):
    first = await _create(store)
    manager = TicketManager(store, None, clock=Clock(T0))
    moved, event = apply(first.record.ticket, "review", actor=DISPATCHER, now=T0 + timedelta(minutes=1))
    remember = store.client_action_write("field-0001", "GD20261122-0001/review")
    stale = TicketWrite(manager._record(moved, {}), [event], dataclasses.replace(
        first.record, ticket=dataclasses.replace(first.record.ticket, version=7)))
    with pytest.raises(Conflict):  # the action failed: its id is not remembered
        await store.save([stale], extra=[remember])
    assert await store.client_action("field-0001") is None
    await store.save([TicketWrite(manager._record(moved, {}), [event], first.record)], extra=[remember])
    assert await store.client_action("field-0001") == "GD20261122-0001/review"
    await store.remember_client_action("old-0001", "GD20261122-0001/note", ttl_s=0)
    assert await store.client_action("old-0001") is None  # expired
    await store.remember_client_action("new-0001", "GD20261122-0001/note")  # purges the expired ids
    assert [r["action_id"] for r in await store.db.fetch("SELECT action_id FROM client_actions ORDER BY 1")] == [
        "field-0001", "new-0001"]


async def test_two_writes_of_the_same_tickets_in_opposite_orders_one_wins_with_ids_in_its_order(store):
    manager = TicketManager(store, None, clock=Clock(T0))
    firsts = [await _create(store, f"GD20261122-000{i}") for i in (1, 2)]

    def writes(note: str) -> list[TicketWrite]:
        out = []
        for first in firsts:
            ticket, event = apply(first.record.ticket, "note", actor=DISPATCHER, now=T0, note=note)
            out.append(TicketWrite(manager._record(ticket, {}), [event], first.record))
        return out

    forward, backward = writes("a"), writes("b")[::-1]
    results = await asyncio.gather(store.save(forward), store.save(backward), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "list"]  # one wins, the other conflicts
    [ids] = [r for r in results if isinstance(r, list)]
    winner = forward if isinstance(results[0], list) else backward
    events = {w.record.ticket.number: (await store.events(w.record.ticket.number))[-1][0] for w in winner}
    assert ids == [events[w.record.ticket.number] for w in winner]  # the ids in the order of the writes


async def test_the_list_filters_are_sql_over_the_indexes(store):
    clock = Clock(T0)
    manager = TicketManager(store, None, clock=clock)
    numbers = []
    for i, phone in enumerate(["13800000001", "13800000002", "13800000001"]):
        ticket, event = new_ticket(_call(f"GD20261122-000{i + 1}", caller_phone=phone),
                                   now=T0 + timedelta(minutes=i), actor=AGENT)
        await store.save([TicketWrite(manager._record(ticket, {}), [event])])
        numbers.append(ticket.number)
    a, b, c = numbers
    await manager.act(a, "dispatch", {"crew_id": "C01"}, DISPATCHER, expected_version=1)
    await manager.act(c, "cancel", {"reason": "误报"}, DISPATCHER, expected_version=1)
    crew = Actor("crew1", Role.CREW, "C01")

    async def listed(actor=DISPATCHER, **kwargs):
        records, total = await manager.list(actor, **kwargs)
        return [r.ticket.number for r in records], total

    assert await listed(phone="13800000001") == ([c, a], 2)  # history, newest first
    assert await listed(phone="13800000001", state="open") == ([a], 1)
    assert await listed(phone="13800000001", state="cancelled") == ([c], 1)
    assert await listed(crew) == ([a], 1) and await listed(crew, state="new") == ([], 0)
    assert await listed(state="cancelled") == ([c], 1)
    assert await listed(state="dispatched", sort="created") == ([a], 1)
    assert await listed(state="open", sort="created") == ([b, a], 2)
    assert await listed(color="blue", sort="created") == ([b, a], 2)
    assert (await listed(color="blue"))[1] == 2 and (await listed(color="red"))[1] == 0
    assert await listed(limit=1, offset=1) == ((await listed())[0][1:], 2)
    assert await store.index("state:cancelled") == [c] and await store.index("open", newest_first=False) == [a, b]


async def test_a_redis_wipe_loses_no_ticket_event_incident_or_number(store):
    first = await _create(store, alarm_key="S01:1")
    ticket = first.record.ticket
    await store.save([], [IncidentWrite(open_incident("INC20261122-0001", ticket), 1)])
    seq = await store.next_number_seq(T0.date())
    await store.redis.flushall()
    assert (await store.get(ticket.number)).ticket == ticket
    assert [e["action"] for _, e in await store.events(ticket.number)] == ["create"]
    assert await store.alarm_ticket("S01:1") == ticket.number
    assert await store.incident_ids(open_only=True) == ["INC20261122-0001"]
    assert await store.next_number_seq(T0.date()) == seq + 1  # no number drawn twice
    page, total = await TicketManager(store, None, clock=Clock(T0)).list(DISPATCHER)
    assert [r.ticket.number for r in page] == [ticket.number] and total == 1


async def test_concurrent_saves_commit_together_and_a_refused_one_fails_alone(store):
    """Saves made while another runs are committed in one transaction; when one of them is
    refused because its ticket changed meanwhile, it is written again alone and gets its own
    Conflict, and the others are committed together again with their own events."""
    manager = TicketManager(store, None, clock=Clock(T0))
    first = await _create(store)
    reviewed, event = apply(first.record.ticket, "review", actor=DISPATCHER, now=T0 + timedelta(minutes=1))
    await store.save([TicketWrite(manager._record(reviewed, {}), [event], first.record)])  # now version 2
    stale, stale_event = apply(first.record.ticket, "review", actor=DISPATCHER, now=T0 + timedelta(minutes=2))
    writes = []
    for n in range(2, 6):
        ticket, created = new_ticket(_call(f"GD20261122-{n:04d}", caller_phone=f"1381234{n:04d}"), now=T0, actor=AGENT)
        writes.append(TicketWrite(manager._record(ticket, {}), [created]))
    saves = [store.save([w]) for w in writes[:2]]
    saves.append(store.save([TicketWrite(manager._record(stale, {}), [stale_event], first.record)]))  # version 1: stale
    saves += [store.save([w]) for w in writes[2:]]
    batches = store._saves.batches
    alone = []
    save_one = store._save_one

    async def counted(tickets, incidents, extra):
        alone.append([w.record.ticket.number for w in tickets])
        return await save_one(tickets, incidents, extra)

    store._save_one = counted
    outcomes = await asyncio.gather(*saves, return_exceptions=True)
    assert store._saves.batches - batches == 1  # made together: one batch
    assert isinstance(outcomes[2], Conflict) and (outcomes[2].expected, outcomes[2].actual) == (1, 2)
    assert store.counters["batch_split"] == 1
    assert alone == [["GD20261122-0001"]]  # only the refused save alone; the four others together again
    for write, ids in zip(writes, outcomes[:2] + outcomes[3:]):
        events = await store.events(write.record.ticket.number)
        assert [sid for sid, _ in events] == ids and [e["action"] for _, e in events] == ["create"]
        assert (await store.get(write.record.ticket.number)).ticket == write.record.ticket
    assert (await store.get(first.record.ticket.number)).ticket.version == 2
    assert [e["action"] for _, e in await store.events(first.record.ticket.number)] == ["create", "review"]


async def test_concurrent_create_reads_each_get_their_own_candidates_and_numbers(store):
    await _create(store)  # water at 119.72, 36.36, phone 13812341234
    manager = TicketManager(store, None, clock=Clock(T0))
    ticket, created = new_ticket(_call("GD20261122-0002", caller_phone="13800000002", lon=119.80, lat=36.40,
                                       category="gas"), now=T0, actor=AGENT)
    await store.save([TicketWrite(manager._record(ticket, {}), [created])])
    day = T0.date() + timedelta(days=1)
    reads = await asyncio.gather(
        store.create_reads(day, lon=119.72, lat=36.36, radius_m=100, category="water", phone="13800000002"),
        store.create_reads(day, lon=119.80, lat=36.40, radius_m=100, category="gas", phone="13812341234"),
        store.create_reads(day, lon=119.80, lat=36.40, radius_m=100, category="water"),
        store.create_reads(day, supply_area="DMA01"))
    assert [r.seq for r in reads] == [1, 2, 3, 4]
    assert [[n for n, _ in r.near] for r in reads] == [["GD20261122-0001"], ["GD20261122-0002"], [], []]
    assert [r.by_phone for r in reads] == [["GD20261122-0002"], ["GD20261122-0001"], [], []]
    assert [sorted(r.records) for r in reads] == [["GD20261122-0001", "GD20261122-0002"]] * 2 + [[], []]
    assert [r.area_incidents for r in reads] == [None, None, None, []]
