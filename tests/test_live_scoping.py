"""The live feed follows the roles, in-process with real Redis and real WebSocket clients: every
frame a console receives (the snapshot, the vehicles, tickets, alarms and crews deltas, and what a
resume replays) passes the same rule as the REST API for its role. Office roles (dispatcher,
supervisor, admin) see the whole city; an agent sees tickets, vehicles, sensors and alarms but not
the crew board's vehicle → crew mapping; the review roles (team leader, coordinator, director) see
every ticket and nothing else; a crew member sees its own crew's tickets and its own vehicle, and
no sensor, no alarm, no other crew's ticket or vehicle; a unit's liaison sees the tickets of its
unit and of the units under it (a department its stations'), never a sibling unit's, and is told
when one leaves them."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import orjson
import pytest

from store.live import FixRecord, Store
from tests.cities import SENSOR_ROWS, ll
from tests.conftest import close_websocket, wait_for
from tests.river import CREWS, PHONE, SCOPE, LiveApi, Socket, live_app

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
OFFICE_USERS = ("dispatcher", "supervisor", "admin")
OWN = {"crew": ("C01", "V01"), "crew2": ("C02", "V02")}  # user -> (crew, its vehicle)
REVIEWERS = ("team_leader", "coordinator", "director")
REMOVED = {"number", "version", "open", "removed"}  # the keys of a removal


@pytest.fixture
async def api(tmp_path, redis_url, database_url):
    """The river city's app with the live feed, a second crew account and the sensors (`tests.river.live_app`)."""
    async with live_app(tmp_path, redis_url, database_url) as client:
        yield client


async def first_frames(api: LiveApi, users: Iterable[str]) -> dict[str, Socket]:
    """A console of each user, closed after its first frame (the snapshot)."""
    sockets = {user: await api.socket(user) for user in users}
    try:
        for socket in sockets.values():
            await socket.until(lambda frames: bool(frames))
    finally:
        for socket in sockets.values():
            await close_websocket(socket.ws)
    return sockets


async def resumed(api: LiveApi, user: str, seen: Socket) -> Socket:
    """A console of `user` that reconnects with ?since= the snapshot `seen` began with, then sends
    {"resume": that seq}: each time it gets again the frames `seen` got after its snapshot."""
    since, later = seen.frames[0]["seq"], seen.frames[1:]
    replay = await api.socket(user, f"?since={since}")
    try:
        await replay.until(lambda frames: len(frames) >= len(later))
        assert replay.frames == later
        replay.ws.write_message(orjson.dumps({"resume": since}).decode())
        await replay.until(lambda frames: len(frames) >= 2 * len(later))
        assert replay.frames[len(later):2 * len(later)] == later
    finally:
        await close_websocket(replay.ws)
    return replay


async def snapshot_after(api: LiveApi, user: str, since: int) -> Socket:
    """A console of `user` that reconnects with a sequence number not of its view's: a fresh snapshot."""
    ahead = await api.socket(user, f"?since={since}")
    try:
        await ahead.until(lambda frames: bool(frames))
    finally:
        await close_websocket(ahead.ws)
    assert ahead.frames[0]["type"] == "snapshot"
    return ahead


def _alarm(sensor_id: str, at: float) -> dict[str, Any]:
    return {"type": "raised", "at": at, "alarm_id": f"{sensor_id}:high", "sensor_id": sensor_id, "kind": "high",
            "severity": "critical", "state": "raised", "raised_at": at, "acked_at": None, "acked_by": None,
            "cleared_at": None, "value": 0.9, "threshold": 0.6}


async def _raise_alarm(store: Store, sensor_id: str) -> None:
    await store.write_sensor_batch(latest={}, history=[], unknown=[], links={}, events=[_alarm(sensor_id, time.time())],
                                   history_max=10, unknown_max=10)


async def _move(api: LiveApi, vehicle_id: str, x: float) -> None:
    lon, lat = ll(x, 200)
    await api.store.write_fixes([FixRecord(vehicle_id, time.time(), lat, lon, 20.0, 90.0, None, 1, "A", 8, 1.0, "GP",
                                           True, True)], {}, seen={}, retention_s=3600)


def assert_crew_frames(socket: Socket, crew_id: str, vehicle_id: str) -> None:
    """Every frame this crew's console received holds its own crew's work and nothing else."""
    for frame in socket.frames:
        kind = frame["type"]
        assert kind in ("snapshot", "vehicles", "tickets", "crews"), frame
        assert "today" not in frame  # the city's counts are not a crew's
        if kind in ("snapshot", "vehicles"):
            assert {v["id"] for v in frame["vehicles"]} <= {vehicle_id}, frame
        if kind in ("snapshot", "tickets"):
            for ticket in frame["tickets"]:
                assert ticket.get("crew_id") == crew_id or set(ticket) == {"number", "version", "open", "removed"}, \
                    (crew_id, ticket)
        if kind == "snapshot":
            assert frame["sensors"] == [] and frame["alarms"] == []
        if kind in ("snapshot", "crews"):
            assert set(frame["crews"]) <= {vehicle_id} and all(
                c["crew_id"] == crew_id for c in frame["crews"].values()), frame
    assert all(PHONE not in text for text in socket.raw)


async def _city(api: LiveApi) -> dict[str, str]:
    """Three open tickets (one for C01, one for C02, one in the pool) and a raised alarm."""
    numbers = {"c01": await api.create(link=False), "c02": await api.create(xy=(3000, 200), link=False), "pool": await api.create(xy=(500, 0), link=False)}
    await api.assign(numbers["c01"], "C01")
    await api.assign(numbers["c02"], "C02")
    await _raise_alarm(api.store, "P001")
    return numbers


async def test_each_role_gets_a_snapshot_of_what_it_may_see(api):
    numbers = await _city(api)
    await wait_for(lambda: api.feed.seq >= 3, timeout=5)
    sockets = await first_frames(api, (*OFFICE_USERS, "agent", "crew", "crew2"))
    everything = set(numbers.values())
    all_vehicles = {c[1] for c in CREWS if c[3] is not None}
    for user in OFFICE_USERS:
        (snapshot,) = sockets[user].frames
        assert snapshot["type"] == "snapshot"
        assert {t["number"] for t in snapshot["tickets"]} == everything
        assert {v["id"] for v in snapshot["vehicles"]} == all_vehicles
        assert {s["id"] for s in snapshot["sensors"]} == {r["sensor_id"] for r in SENSOR_ROWS}
        assert [a["alarm_id"] for a in snapshot["alarms"]] == ["P001:high"]
        assert set(snapshot["crews"]) == {c[1] for c in CREWS} and snapshot["today"]["day"]
    (agent,) = sockets["agent"].frames
    assert {t["number"] for t in agent["tickets"]} == everything
    assert {v["id"] for v in agent["vehicles"]} == all_vehicles
    assert len(agent["sensors"]) == len(SENSOR_ROWS) and [a["alarm_id"] for a in agent["alarms"]] == ["P001:high"]
    assert agent["crews"] == {}  # the crew board is the dispatchers' (GET /api/crews)
    for user, key in (("crew", "c01"), ("crew2", "c02")):
        crew_id, vehicle_id = OWN[user]
        (snapshot,) = sockets[user].frames
        assert [t["number"] for t in snapshot["tickets"]] == [numbers[key]]
        assert [v["id"] for v in snapshot["vehicles"]] == [vehicle_id]
        assert list(snapshot["crews"]) == [vehicle_id]
        assert_crew_frames(sockets[user], crew_id, vehicle_id)
    for socket in sockets.values():
        assert all(PHONE not in text for text in socket.raw)  # caller phones are never in compact tickets


async def test_each_role_gets_only_the_deltas_it_may_see_and_a_resume_keeps_the_scope(api):
    numbers = await _city(api)
    sockets = {user: await api.socket(user) for user in (*OFFICE_USERS, "agent", "crew", "crew2")}
    try:
        for socket in sockets.values():
            await socket.until(lambda frames: bool(frames))
        crew_snapshot = sockets["crew"].frames[0]["seq"]
        # changes for everyone: every vehicle moves, a new ticket for each crew and one in the pool,
        # an alarm, a crew renamed, and C01's ticket handed to C02
        for vehicle_id, x in (("V01", 1600), ("V02", 3100), ("V03", 200)):
            await _move(api, vehicle_id, x)
        more = {"c01": await api.create(xy=(1200, 200), link=False), "c02": await api.create(xy=(2800, 200), link=False),
                "pool": await api.create(xy=(700, 0), link=False)}
        await api.assign(more["c01"], "C01")
        await api.assign(more["c02"], "C02")
        await api.assign(numbers["c01"], "C02")
        await _raise_alarm(api.store, "F01")
        for crew_id in ("C01", "C03"):
            await api.call("PATCH", f"/api/admin/crews/{crew_id}", "admin", {"crew_name": f"新{crew_id}班"})
        # the office consoles see every change; then a last change of each crew's own work marks the end
        await sockets["dispatcher"].until(lambda frames: (
            any(a["alarm_id"] == "F01:high" for f in frames if f["type"] == "alarms" for a in f["alarms"])
            and any(c.get("crew_name") == "新C03班" for f in frames if f["type"] == "crews" for c in f["crews"].values())
            and {"V01", "V02", "V03"} <= {v["id"] for f in frames if f["type"] == "vehicles" for v in f["vehicles"]}
            and numbers["c01"] in {t["number"] for f in frames if f["type"] == "tickets" for t in f["tickets"]
                                   if t["crew_id"] == "C02"}))
        await _move(api, "V01", 1700)
        await _move(api, "V02", 3200)
        for user in ("crew", "crew2"):
            await sockets[user].until(lambda frames, v=OWN[user][1]: any(
                p["id"] == v and p["lon"] == pytest.approx(ll(1700 if v == "V01" else 3200, 200)[0])
                for f in frames if f["type"] == "vehicles" for p in f["vehicles"]))
        for user in (*OFFICE_USERS, "agent"):
            await sockets[user].until(lambda frames: any(a["alarm_id"] == "F01:high" for f in frames
                                                         if f["type"] == "alarms" for a in f["alarms"])
                                      and any(more["pool"] in {t["number"] for t in f.get("tickets", [])}
                                              for f in frames if f["type"] == "tickets"))
    finally:
        for socket in sockets.values():
            await close_websocket(socket.ws)

    for user in (*OFFICE_USERS, "agent"):
        seen = sockets[user]
        assert set(more.values()) | set(numbers.values()) <= set(seen.tickets())
        assert {"V01", "V02", "V03"} <= seen.vehicle_ids()
        assert any(a["alarm_id"] == "F01:high" for f in seen.of("alarms") for a in f["alarms"])
        assert all(PHONE not in text for text in seen.raw)
    assert any(c["crew_name"] == "新C03班" for f in sockets["dispatcher"].of("crews") for c in f["crews"].values())
    assert all(f["crews"] == {} for f in sockets["agent"].of("crews"))

    crew, crew2 = sockets["crew"], sockets["crew2"]
    for user, socket in (("crew", crew), ("crew2", crew2)):
        assert_crew_frames(socket, *OWN[user])
        assert [f["seq"] for f in socket.frames] == list(range(socket.frames[0]["seq"],
                                                               socket.frames[0]["seq"] + len(socket.frames)))
    assert set(crew.tickets()) == {numbers["c01"], more["c01"]}
    assert crew.tickets()[numbers["c01"]] == {"number": numbers["c01"], "open": False, "removed": True,
                                              "version": crew.tickets()[numbers["c01"]]["version"]}
    assert crew.tickets()[more["c01"]]["crew_id"] == "C01"
    assert set(crew2.tickets()) == {numbers["c02"], more["c02"], numbers["c01"]}
    assert crew2.tickets()[numbers["c01"]]["crew_id"] == "C02"
    assert [c["crew_name"] for f in crew.of("crews") for c in f["crews"].values()] == ["新C01班"]
    assert crew2.of("crews") == []  # another crew's new name is none of its business

    # a crew console that reconnects with ?since= (or sends {"resume": seq}) gets its own frames again, no others
    assert crew.frames[0]["seq"] == crew_snapshot
    assert_crew_frames(await resumed(api, "crew", crew), *OWN["crew"])
    office_seq = sockets["dispatcher"].frames[-1]["seq"]
    assert office_seq > crew.frames[-1]["seq"]
    ahead = await snapshot_after(api, "crew", office_seq)
    assert {t["number"] for t in ahead.frames[0]["tickets"]} == {more["c01"]}
    assert_crew_frames(ahead, *OWN["crew"])


async def test_the_vehicle_api_gives_a_crew_the_same_vehicle_as_its_feed(api):
    everything = {c[1] for c in CREWS if c[3] is not None}
    for user in ("dispatcher", "agent"):
        code, reply = await api.call("GET", "/api/vehicles", user)
        assert code == 200 and {v["id"] for v in reply["vehicles"]} == everything
    for user, (_, vehicle_id) in OWN.items():
        code, reply = await api.call("GET", "/api/vehicles", user)
        assert code == 200 and [v["id"] for v in reply["vehicles"]] == [vehicle_id]
        assert (await api.call("GET", f"/api/vehicles/{vehicle_id}", user))[0] == 200
        other = "V02" if vehicle_id == "V01" else "V01"
        code, reply = await api.call("GET", f"/api/vehicles/{other}", user)
        assert code == 404 and reply["error"]["code"] == "vehicle_not_found"  # as if absent, like a ticket


async def test_the_review_roles_see_every_ticket_and_nothing_else(api):
    """The review chains' roles read every ticket from the ticket API, but no vehicle, sensor,
    alarm or crew board: their view carries tickets only."""
    numbers = await _city(api)
    sockets = {user: await api.socket(user) for user in REVIEWERS}
    try:
        for socket in sockets.values():
            await socket.until(lambda frames: bool(frames))
        await _move(api, "V01", 1600)
        await _raise_alarm(api.store, "F01")
        await api.call("PATCH", "/api/admin/crews/C01", "admin", {"crew_name": "新C01班"})
        later = await api.create(xy=(900, 0), link=False)
        for socket in sockets.values():
            await socket.until(lambda frames: later in {t["number"] for f in frames[1:] for t in f["tickets"]})
    finally:
        for socket in sockets.values():
            await close_websocket(socket.ws)
    code, listing = await api.call("GET", "/api/tickets?limit=500", "team_leader")
    assert code == 200 and set(numbers.values()) | {later} <= {t["number"] for t in listing["tickets"]}
    for user, socket in sockets.items():
        snapshot = socket.frames[0]
        assert snapshot["type"] == "snapshot" and {t["number"] for t in snapshot["tickets"]} == set(numbers.values())
        assert snapshot["vehicles"] == [] and snapshot["sensors"] == [] and snapshot["alarms"] == []
        assert snapshot["crews"] == {} and "today" not in snapshot
        assert {f["type"] for f in socket.frames[1:]} == {"tickets"}, user  # no vehicles, alarms or crews
        assert all("today" not in f for f in socket.frames) and all(PHONE not in text for text in socket.raw)
    # one view for the three roles: a resume replays its frames
    await resumed(api, "coordinator", sockets["director"])


# ------------------------------------------------------------------ a unit's liaison: unit:<unit_id>

def assert_unit_frames(socket: Socket, units: set[str]) -> None:
    """Every frame a liaison's console received holds tickets of its units (or the removal of one
    that left them), and nothing else: no vehicle, sensor, alarm, crew or count, no caller."""
    for frame in socket.frames:
        assert frame["type"] in ("snapshot", "tickets") and "today" not in frame, frame
        if frame["type"] == "snapshot":
            assert frame["vehicles"] == frame["sensors"] == frame["alarms"] == [] and frame["crews"] == {}
        for ticket in frame["tickets"]:
            assert ticket.get("unit_id") in units or set(ticket) == REMOVED, (units, ticket)
            assert not any(key.startswith("caller") for key in ticket)
    assert all(PHONE not in text for text in socket.raw)


def _has(number: str, **fields: Any) -> Callable[[list[dict[str, Any]]], bool]:
    """A predicate: a ticket frame after the snapshot shows `number` with these fields."""
    return lambda frames: any(t["number"] == number and all(t.get(k) == v for k, v in fields.items())
                              for f in frames[1:] if f["type"] == "tickets" for t in f["tickets"])


async def test_a_liaison_gets_a_snapshot_of_its_units_tickets(unit_api):
    numbers = await unit_api.spread()
    sockets = await first_frames(unit_api, SCOPE)
    for user, units in SCOPE.items():
        (snapshot,) = sockets[user].frames
        assert snapshot["type"] == "snapshot"
        mine = {numbers[u] for u in units}  # unit-pwr00: its own and its two stations'; a station: its own
        assert {t["number"] for t in snapshot["tickets"]} == mine, user
        code, listing = await unit_api.call("GET", "/api/tickets", user)
        assert code == 200 and {t["number"] for t in listing["tickets"]} == mine  # the ticket API's rule
        assert_unit_frames(sockets[user], units)


async def test_a_liaison_gets_its_units_deltas_and_removals_and_a_resume_keeps_the_scope(unit_api):
    api = unit_api
    numbers = await api.spread()
    users = ("unit-pwr00", "unit-pwr01", "unit-pwr02", "dispatcher")
    sockets = {user: await api.socket(user) for user in users}
    pwr00, pwr01, pwr02, office = (sockets[u] for u in users)
    try:
        for socket in sockets.values():
            await socket.until(lambda frames: bool(frames))
        start = pwr01.frames[0]["seq"]
        # what is not a unit's: a vehicle moves, an alarm, a crew renamed
        await _move(api, "V11", 1600)
        await _raise_alarm(api.store, "P001")
        await api.call("PATCH", "/api/admin/crews/C11", "admin", {"crew_name": "新C11班"})
        await office.until(lambda frames: {"vehicles", "alarms", "crews"} <= {f["type"] for f in frames})
        # a new ticket: created in the pool (no unit's), then sent (交办) to the station PWR01, which accepts it
        fresh = await api.new(unit="PWR01")
        await api.act("unit-pwr01", fresh, "unit_accept")
        for socket in (pwr00, pwr01):
            await socket.until(_has(fresh, state="handling", unit_id="PWR01"))
        # the sibling station accepts its own
        await api.act("unit-pwr02", numbers["PWR02"], "unit_accept")
        await pwr02.until(_has(numbers["PWR02"], state="handling"))
        # PWR01's first ticket re-routed to PWR02: it leaves PWR01, reaches PWR02, stays the department's
        await api.act("unit-pwr01", numbers["PWR01"], "request_return", reason="属开发区供电所")
        await api.act("dispatcher", numbers["PWR01"], "reroute_return", unit_id="PWR02", reason="改派开发区")
        # the fresh one returned (approved: still PWR01's until sent again), then sent to PWR02
        await api.act("unit-pwr01", fresh, "request_return", reason="非本所辖区")
        await api.act("dispatcher", fresh, "approve_return", reason="同意退回")
        await pwr01.until(_has(fresh, state="returned"))
        await api.act("dispatcher", fresh, "assign", unit_id="PWR02")
        # the department's own ticket: accepted, fed back, called back and closed
        await api.act("unit-pwr00", numbers["PWR00"], "unit_accept")
        await api.act("unit-pwr00", numbers["PWR00"], "feedback", resolution="已约谈抄表员并致歉",
                      signed_by="张主任")
        await api.act("agent", numbers["PWR00"], "queue_callback")
        await api.act("agent", numbers["PWR00"], "close", satisfaction="satisfied")
        await pwr00.until(_has(numbers["PWR00"], state="closed", open=False))
        await pwr00.until(_has(fresh, unit_id="PWR02", state="assigned"))
        await pwr01.until(_has(fresh, removed=True))
        await pwr02.until(_has(fresh, unit_id="PWR02", state="assigned"))
    finally:
        for socket in sockets.values():
            await close_websocket(socket.ws)

    for user in users[:3]:
        socket = sockets[user]
        assert_unit_frames(socket, SCOPE[user])
        first = socket.frames[0]["seq"]
        assert [f["seq"] for f in socket.frames] == list(range(first, first + len(socket.frames)))
    assert set(pwr01.tickets()) == {numbers["PWR01"], fresh}  # never a sibling's ticket
    for number in (numbers["PWR01"], fresh):
        removal = pwr01.tickets()[number]
        assert removal == {"number": number, "version": removal["version"], "open": False, "removed": True}
    assert set(pwr02.tickets()) == {numbers["PWR02"], numbers["PWR01"], fresh}
    assert pwr02.tickets()[numbers["PWR01"]]["unit_id"] == "PWR02" and pwr02.tickets()[numbers["PWR01"]]["open"]
    assert set(pwr00.tickets()) == {numbers[u] for u in ("PWR00", "PWR01", "PWR02")} | {fresh}
    assert not any(t.get("removed") for t in pwr00.tickets().values())  # a move between its stations stays its own
    assert pwr00.tickets()[numbers["PWR01"]]["unit_id"] == "PWR02"

    # a liaison's console that reconnects with ?since= (or sends {"resume": seq}) gets its own frames again
    assert_unit_frames(await resumed(api, "unit-pwr01", pwr01), SCOPE["unit-pwr01"])
    office_seq = api.feed.seq  # the office view's own sequence, ahead of the unit's
    assert office_seq > api.feed.views["unit:PWR00"].seq
    ahead = await snapshot_after(api, "unit-pwr00", office_seq)
    assert {t["number"] for t in ahead.frames[0]["tickets"]} == {numbers["PWR01"], numbers["PWR02"], fresh}
    assert_unit_frames(ahead, SCOPE["unit-pwr00"])
