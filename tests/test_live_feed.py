"""The live feed in-process with real Redis: after a snapshot, ticket changes and alarm events
arrive as typed deltas in one increasing sequence with the vehicle frames; a console resumes from
its last sequence, or is told to reload a snapshot; one encoding is shared by every console."""
from __future__ import annotations

import time

import orjson
import pytest

from store.live import FixRecord, Store
from command.ticket_model import Actor, Role
from services.tickets import build_manager
from tests.conftest import wait_for
from web.live import LiveFeed, compact_ticket

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
DISPATCHER = Actor("disp", Role.DISPATCHER)


class Console:
    """A subscriber that keeps every frame it is sent (the same bytes objects)."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []

    def send_frame(self, frame: bytes) -> None:
        self.raw.append(frame)

    @property
    def frames(self) -> list[dict]:
        return [orjson.loads(f) for f in self.raw]


def _alarm_event(kind: str, state: str, at: float, **extra) -> dict:
    return {"type": kind, "at": at, "alarm_id": "P001:high", "sensor_id": "P001", "kind": "high",
            "severity": "critical", "state": state, "raised_at": at, "acked_at": None, "acked_by": None,
            "cleared_at": None, "value": 0.9, "threshold": 0.6, **extra}


@pytest.fixture
async def feed(redis_url, database_url):
    store = Store.from_url(redis_url, database_url)
    live = LiveFeed(store, batch_ms=50, vehicle_crews={"V01": {"crew_id": "C01", "crew_name": "抢修一班"}})
    live.start()
    await wait_for(lambda: _subscribed(store), timeout=5)
    yield live
    await live.stop()
    await store.close()


async def _subscribed(store: Store) -> bool:
    counts = dict(await store.redis.pubsub_numsub("live:vehicles", "live:tickets", "live:alarms"))
    return all(counts.values())


async def _write_sensor_events(store: Store, events: list[dict]) -> None:
    await store.write_sensor_batch(latest={}, history=[], unknown=[], links={}, events=events,
                                   history_max=10, unknown_max=10)


async def test_ticket_and_alarm_changes_arrive_as_ordered_typed_deltas_after_a_snapshot(feed):
    manager = await build_manager(feed.store.db, feed.store.redis)
    first = await manager.create({"channel": "phone", "category": "water", "type": "repair", "urgency": "urgent",
                                  "description": "路面冒水", "caller_phone": "13800001111", "lon": 119.75,
                                  "lat": 36.38}, DISPATCHER)
    await wait_for(lambda: feed.seq == 1, timeout=5)  # its change went out before this console came
    snapshot = orjson.loads(await feed.snapshot())
    assert snapshot["type"] == "snapshot"
    assert [t["number"] for t in snapshot["tickets"]] == [first.record.ticket.number]
    assert snapshot["crews"] == {"V01": {"crew_id": "C01", "crew_name": "抢修一班"}}
    assert "caller_phone" not in snapshot["tickets"][0]  # the compact view carries no caller data
    console = Console()
    feed.add(console)

    second = await manager.create({"channel": "phone", "category": "power", "type": "repair", "urgency": "emergency",
                                   "description": "电线落地冒火花", "caller_phone": "13800002222", "lon": 119.76,
                                   "lat": 36.39}, DISPATCHER)
    await wait_for(lambda: any(f["type"] == "tickets" for f in console.frames), timeout=5)
    now = time.time()
    await _write_sensor_events(feed.store, [_alarm_event("raised", "raised", now),
                                            _alarm_event("acknowledged", "acknowledged", now, acked_at=now + 1,
                                                         acked_by="disp")])
    await feed.store.write_fixes([FixRecord("V01", now, 36.38, 119.75, 12.0, 45.0, None, 1, "A", 8, 1.0, "GP",
                                            True, True)], {}, seen={}, retention_s=3600)
    await wait_for(lambda: {f["type"] for f in console.frames} >= {"tickets", "alarms", "vehicles"}, timeout=5)

    frames = console.frames
    assert [f["seq"] for f in frames] == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(frames)))
    tickets = next(f for f in frames if f["type"] == "tickets")["tickets"]
    assert [(t["number"], t["state"], t["urgency"], t["open"]) for t in tickets] == [
        (second.record.ticket.number, "new", "emergency", True)]
    alarms = [a for f in frames if f["type"] == "alarms" for a in f["alarms"]]
    assert [(a["type"], a["state"], a["acked_by"]) for a in alarms] == [("raised", "raised", None),
                                                                        ("acknowledged", "acknowledged", "disp")]
    day = snapshot["today"]["day"]
    assert snapshot["today"] == {"day": day, "created": 1, "resolved": 0}
    assert next(f for f in frames if f["type"] == "tickets")["today"] == {"day": day, "created": 2, "resolved": 0}
    vehicles = next(f for f in frames if f["type"] == "vehicles")["vehicles"]
    assert [(v["id"], v["lat"], v["lon"]) for v in vehicles] == [("V01", 36.38, 119.75)]

    # a console that saw only the snapshot resumes with exactly the frames after it, same bytes
    assert feed.frames_since(snapshot["seq"]) == console.raw
    assert feed.frames_since(frames[0]["seq"]) == console.raw[1:]
    assert feed.frames_since(feed.seq) == []
    assert feed.frames_since(feed.seq + 5) is None  # from a previous server life: reload a snapshot


async def test_a_closed_ticket_is_sent_with_open_false_and_left_out_of_the_next_snapshot(feed):
    manager = await build_manager(feed.store.db, feed.store.redis)
    created = await manager.create({"channel": "phone", "category": "other", "type": "consultation",
                                    "description": "咨询停水时间", "caller_phone": "13800003333"}, DISPATCHER)
    console = Console()
    feed.add(console)
    number = created.record.ticket.number
    await manager.act(number, "close_direct", {"answer": "明日恢复"}, DISPATCHER,
                      expected_version=created.record.ticket.version)
    await wait_for(lambda: any(t["state"] == "closed" for f in console.frames if f["type"] == "tickets"
                               for t in f["tickets"]), timeout=5)
    last = [t for f in console.frames if f["type"] == "tickets" for t in f["tickets"]][-1]
    assert (last["number"], last["open"], last["version"]) == (number, False, created.record.ticket.version + 1)
    today = [f["today"] for f in console.frames if f["type"] == "tickets"][-1]
    assert (today["created"], today["resolved"]) == (1, 1)  # closed on the call: resolved today, as the reports count it
    await wait_for(lambda: feed.seq > 0)
    snapshot = orjson.loads(await feed.snapshot())
    assert snapshot["tickets"] == []


@pytest.mark.parametrize("views, kept", [
    ([("GD20261122-0001", 2), ("GD20261122-0001", 3)], [("GD20261122-0001", 3)]),
    ([("GD20261122-0001", 3), ("GD20261122-0001", 2)], [("GD20261122-0001", 3)]),
    ([("GD20261122-0001", 1), ("GD20261122-0002", 1)], [("GD20261122-0001", 1), ("GD20261122-0002", 1)]),
])
async def test_pending_ticket_views_keep_the_newest_version(redis_url, database_url, views, kept):
    store = Store.from_url(redis_url, database_url)
    live = LiveFeed(store)
    live.accept_tickets([{"number": n, "version": v} for n, v in views])
    console = Console()
    live.add(console)
    (frame,) = live.flush()
    assert [(t["number"], t["version"]) for t in orjson.loads(frame)["tickets"]] == kept
    assert console.raw == [frame]
    assert live.flush() == []
    await store.close()


async def test_every_console_gets_the_same_encoded_bytes_and_concurrent_snapshots_are_shared(feed):
    consoles = [Console() for _ in range(3)]
    for console in consoles:
        feed.add(console)
    feed.accept_updates([{"id": "V02", "t": 1.0, "lat": 36.0, "lon": 119.0, "spd": None, "crs": None}])
    feed.accept_alarm_events([_alarm_event("raised", "raised", 1.0), {"no_alarm_id": True}])
    frames = feed.flush()
    assert [orjson.loads(f)["type"] for f in frames] == ["vehicles", "alarms"]
    assert all(c.raw == frames and all(a is b for a, b in zip(c.raw, frames)) for c in consoles)
    one, two = await feed.snapshot(), await feed.snapshot()
    assert one is two  # same sequence, within the reuse window: encoded once


async def test_compact_ticket_view_has_what_the_map_needs():
    from datetime import datetime, timezone

    from store.ticket_records import TicketRecord
    from command.ticket_fields import new_ticket

    ticket, _ = new_ticket({"number": "GD20261122-0007", "channel": "web", "category": "gas", "type": "repair",
                            "urgency": "emergency", "description": "燃气味很浓" * 30, "lon": 119.7, "lat": 36.3},
                           now=datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc), actor=DISPATCHER)
    view = compact_ticket(TicketRecord(ticket, {"queue": [["dispatch", 1_800_000_000.0, 300]],
                                                "police_kind": "gas_leak"}))
    assert view["number"] == "GD20261122-0007" and view["color"] == "blue" and view["open"] is True
    assert view["queue"] == [["dispatch", 1_800_000_000.0, 300]] and view["police_kind"] == "gas_leak"
    assert len(view["summary"]) == 80 and (view["lon"], view["lat"]) == (119.7, 36.3)


async def test_ticket_alarm_changes_reach_the_office_view_as_a_count_only(feed):
    """A ticket alarm (工单告警) raised then cleared: the office view's consoles get ``ticket_alarms``
    frames (how many changed, no alarm: they read GET /api/ticket-alarms, which answers each
    role); the agents' view and a crew's get none."""
    from datetime import datetime, timezone

    from store.dispatch import DispatchStore

    office, agents, crew = Console(), Console(), Console()
    feed.add(office, "office")
    feed.add(agents, "agent")
    feed.add(crew, "crew:C01")
    await wait_for(lambda: _heard(feed.store, "live:ticket_alarms"), timeout=5)
    alarms = DispatchStore(feed.store.redis)
    await alarms.raise_alarms([{"alarm_id": "GD20261207-0001|no_candidate", "number": "GD20261207-0001",
                                "kind": "dispatch", "what": "no_candidate", "level": "overdue",
                                "text": "无可派班组，请人工处理", "raised_at": time.time()},
                               {"alarm_id": "GD20261207-0002|declined", "number": "GD20261207-0002",
                                "kind": "dispatch", "what": "declined", "level": "warning",
                                "text": "班组拒单，请重新派单", "raised_at": time.time()}])
    await wait_for(lambda: any(f["type"] == "ticket_alarms" for f in office.frames), timeout=5)
    await alarms.clear_alarms(["GD20261207-0001|no_candidate"], datetime.now(timezone.utc))
    await wait_for(lambda: sum(f.get("ticket_alarms", 0) for f in office.frames) == 3, timeout=5)
    frames = [f for f in office.frames if f["type"] == "ticket_alarms"]
    assert all(isinstance(f["ticket_alarms"], int) for f in frames) and len(frames) <= 2
    assert not [f for f in agents.frames + crew.frames if f["type"] == "ticket_alarms"]


async def _heard(store: Store, channel: str) -> bool:
    return any(count > 0 for count in dict(await store.redis.pubsub_numsub(channel)).values())
