"""The tickets area of the store on a real Redis: atomic writes with their audit events, version
conflicts, indexes kept in step, guards that write nothing, and the queue order of the limits."""
from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone

import pytest
import redis.asyncio as aioredis

from center.db import Database
from center.store_tickets import GuardFailed, IncidentWrite, TicketStore, TicketWrite
from command.errors import Conflict, InvalidTransition
from command.grouping import open_incident
from command.limits import queue_key
from command.tickets import Actor, Role, apply, new_ticket
from services.tickets import TicketManager

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
AGENT = Actor("agent1", Role.AGENT)
DISPATCHER = Actor("disp1", Role.DISPATCHER)


class Clock:
    """A settable clock for the manager."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


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
    near, by_phone = await store.near_and_by_phone(119.7201, 36.36, 100, "13812341234")
    assert [n for n, _ in near] == ["GD20261122-0001"] and 5 < near[0][1] < 12
    assert by_phone == ["GD20261122-0001"]


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
    assert (await store.near_and_by_phone(119.72, 36.36, 100, None))[0] == []
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
