"""The ticket API in-process on loopback with real Redis: GIS resolution, repeat calls and their
colour, duplicates, direct close, the whole lifecycle by role, crew isolation and masked phones,
callbacks, conflicts, proactive tickets from alarm events, and kill -9 of Redis."""
from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from servers.embedded import free_port, start_redis
from store.live import Store
from store.sensors import ALARM_EVENTS
from services.ticket_alarms import consume_alarms
from tests.apps import serve_tickets
from tests.conftest import T0, Clock, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
DAY = "20261122"


@pytest.fixture
async def api(tmp_path, redis_url, database_url, city):
    server, client = await serve_tickets(tmp_path, redis_url, database_url, city, Clock(T0))
    yield client
    server.stop()
    await server.close_all_connections()
    await client.store.close()


async def test_create_resolves_the_place_through_gis_and_opens_an_incident(api):
    code, body = await api.create()
    assert code == 201 and body["linked"] is False
    ticket = body["ticket"]
    assert ticket["number"] == f"GD{DAY}-0001"
    assert (ticket["district"], ticket["grid"], ticket["unit_id"], ticket["supply_area"], ticket["area_class"]) == \
        ("D2", "G2", "PWR02", "TA2", "urban")
    assert ticket["created_at"] == "2026-11-22T02:00:00Z" and ticket["deadlines"]["arrive"] == "2026-11-22T02:45:00Z"
    assert ticket["incident_id"] == body["incident_id"] == f"INC{DAY}-0001" and ticket["version"] == 2
    assert ticket["asset_id"] == "T2" and ticket["caller_phone"] == "13812341234"
    code, east = await api.create(caller_phone="13900000000", lon=119.78, lat=36.36, category="water",
                                  description="水管漏水")
    assert (east["ticket"]["unit_id"], east["ticket"]["supply_area"], east["ticket"]["area_class"]) == \
        ("WAT01", "DMA01", "rural")


async def test_repeat_calls_are_linked_and_turn_the_ticket_orange_then_red(api):
    """The caller's own calls about the problem colour it (orange at the 2nd, red at the 3rd); a
    neighbour's call joins its call count as a duplicate without changing the colour."""
    _, first = await api.create()
    number = first["ticket"]["number"]
    api.clock.now = T0 + timedelta(hours=1)
    code, second = await api.create(description="还是没电")  # same phone
    assert code == 200 and second["linked"] is True and second["ticket"]["number"] == number
    assert second["match"] == "repeat"
    assert (second["ticket"]["repeat_count"], second["ticket"]["color"]) == (1, "orange")
    code, third = await api.create(caller_phone="13700000000", lon=119.7203, lat=36.3602)  # ~35 m, same category
    assert code == 200 and third["linked"] is True and third["match"] == "duplicate"
    assert (third["ticket"]["number"], third["ticket"]["color"], third["ticket"]["duplicate_count"],
            third["ticket"]["calls"]) == (number, "orange", 1, 3)
    code, fourth = await api.create(description="第三次打来，还是没电")  # the caller's third call
    assert code == 200 and fourth["match"] == "repeat" and fourth["ticket"]["color"] == "red"
    code, separate = await api.create(link=False)
    assert code == 201 and separate["ticket"]["number"] != number and separate["match"] is None
    code, listing = await api.call("GET", "/api/tickets?color=red", "supervisor")
    assert [t["number"] for t in listing["tickets"]] == [number]
    assert listing["tickets"][0]["needs_supervision"] is True and listing["tickets"][0]["calls"] == 4
    _, timeline = await api.call("GET", f"/api/tickets/{number}/timeline", "agent")
    assert [e["action"] for e in timeline["events"]] == [
        "create", "link_incident", "repeat_call", "duplicate_call", "repeat_call"]
    assert timeline["events"][2]["note"] == "还是没电" and timeline["events"][3]["data"]["phone"] == "13700000000"


async def test_a_new_problem_from_the_same_phone_is_a_new_ticket(api):
    """Issue #24: a water call, then the same caller about a power outage ~3 km away and a
    complaint: each is its own ticket, the water ticket stays blue with one call."""
    _, water = await api.create(category="water", description="水管漏水", lon=119.72, lat=36.36)
    api.clock.now = T0 + timedelta(minutes=20)
    code, power = await api.create(description="家里停电了", lon=119.755, lat=36.36)  # ~3.1 km east
    assert code == 201 and power["linked"] is False and power["match"] is None
    code, complaint = await api.create(category="water", type="complaint", description="投诉抢修人员态度差",
                                       lon=None, lat=None)
    assert code == 201 and complaint["linked"] is False
    code, again = await api.create(category="water", description="还在漏水", lon=119.7201, lat=36.3601)
    assert code == 200 and again["match"] == "repeat" and again["ticket"]["number"] == water["ticket"]["number"]
    numbers = {water["ticket"]["number"], power["ticket"]["number"], complaint["ticket"]["number"]}
    assert len(numbers) == 3
    _, kept = await api.call("GET", f"/api/tickets/{power['ticket']['number']}", "agent")
    assert (kept["category"], kept["color"], kept["calls"]) == ("power", "blue", 1)


@pytest.mark.parametrize("query, repeat, match, numbers", [
    ("lon=119.7201&lat=36.3601&category=power", "first", "duplicate", ["first"]),  # no phone: another caller
    ("lon=119.7201&lat=36.3601&category=power&phone=13812341234", "first", "repeat", ["first"]),
    ("phone=13812341234&category=power&type=repair", "first", "repeat", ["first"]),  # no place: same type
    ("phone=13812341234&category=power&type=complaint", None, None, ["first"]),
    ("lon=119.7201&lat=36.3601&category=power&phone=13812341234&type=complaint", None, None, ["first"]),  # route
    ("phone=13812341234&category=water", None, None, ["first"]),     # the caller, another problem
    ("phone=13812341234", None, None, ["first"]),
    ("lon=119.7201&lat=36.3601&category=water", None, None, ["first"]),   # near, but another category
    ("lon=119.78&lat=36.36&category=power", None, None, []),               # far away
])
async def test_duplicates_endpoint_lists_candidates_before_saving(api, query, repeat, match, numbers):
    _, first = await api.create()
    names = {"first": first["ticket"]["number"]}
    code, body = await api.call("GET", f"/api/tickets/duplicates?{query}", "agent")
    assert code == 200
    assert body["repeat_of"] == (None if repeat is None else names[repeat]) and body["match"] == match
    assert [c["ticket"]["number"] for c in body["candidates"]] == [names[n] for n in numbers]
    if "lon" in query and numbers:
        assert 10 < body["candidates"][0]["distance_m"] < 20


@pytest.mark.parametrize("query, field", [
    ("lon=119.78&lat=36.36&category=power&type=outage", "type"),  # nothing open there: still checked
    ("phone=13812341234&category=electricity", "category"),
])
async def test_duplicates_refuse_an_unknown_type_or_category(api, query, field):
    code, body = await api.call("GET", f"/api/tickets/duplicates?{query}", "agent")
    assert code == 400 and body["error"]["code"] == "validation_error"
    assert body["error"]["message"].startswith(f"{field}: unknown {field}")


async def test_a_consultation_answered_on_the_call_closes_at_once(api):
    code, body = await api.create(type="consultation", description="电费怎么交", answer="可在网上营业厅缴纳")
    assert code == 201 and body["ticket"]["state"] == "closed" and body["ticket"]["resolution"] == "可在网上营业厅缴纳"
    _, timeline = await api.call("GET", f"/api/tickets/{body['ticket']['number']}/timeline", "agent")
    assert [(e["action"], e["to_state"]) for e in timeline["events"]] == [("create", "new"), ("close_direct", "closed")]
    code, refused = await api.create(answer="已答复")  # a repair cannot be closed on the call
    assert code == 409 and refused["error"]["code"] == "invalid_transition"
    assert (await api.call("GET", f"/api/tickets/GD{DAY}-0002", "agent"))[0] == 404  # no number used


async def test_full_lifecycle_by_role_with_complete_audit_and_callback(api):
    _, body = await api.create()
    n = body["ticket"]["number"]
    steps = [("dispatcher", "review", {}), ("dispatcher", "dispatch", {"crew_id": "C01"}), ("crew", "accept", {}),
             ("crew", "depart", {}), ("crew", "arrive", {}), ("crew", "resolve", {"resolution": "更换熔断器"})]
    for minute, (user, action, args) in enumerate(steps, start=1):
        api.clock.now = T0 + timedelta(minutes=minute)
        code, result = await api.act(user, n, action, **args)
        assert code == 200, result
    assert result["ticket"]["state"] == "resolved"
    _, queue = await api.call("GET", "/api/callbacks", "agent")
    assert [t["number"] for t in queue["tickets"]] == [n]
    code, done = await api.call("POST", f"/api/tickets/{n}/callback", "agent",
                                {"expected_version": result["ticket"]["version"], "satisfaction": "satisfied",
                                 "words": "很快"})
    assert code == 200 and done["ticket"]["state"] == "closed" and done["ticket"]["satisfaction"] == "satisfied"
    assert (await api.call("GET", "/api/callbacks", "agent"))[1]["tickets"] == []
    _, timeline = await api.call("GET", f"/api/tickets/{n}/timeline", "supervisor")
    rows = [(e["action"], e["from_state"], e["to_state"], e["actor_id"], e["role"]) for e in timeline["events"]]
    assert rows == [
        ("create", None, "new", "agent", "agent"), ("link_incident", "new", "new", "system", "system"),
        ("review", "new", "reviewed", "dispatcher", "dispatcher"),
        ("dispatch", "reviewed", "dispatched", "dispatcher", "dispatcher"),
        ("accept", "dispatched", "accepted", "crew", "crew"), ("depart", "accepted", "en_route", "crew", "crew"),
        ("arrive", "en_route", "on_site", "crew", "crew"), ("resolve", "on_site", "resolved", "crew", "crew"),
        ("queue_callback", "resolved", "callback", "agent", "agent"), ("close", "callback", "closed", "agent", "agent")]
    assert timeline["events"][4]["at"] == "2026-11-22T02:03:00Z"
    _, counts = await api.call("GET", "/api/tickets/counts", "dispatcher")
    assert counts["states"] == {"closed": 1} and counts["open"] == 0


async def test_crew_members_see_only_their_crew_tickets_with_masked_phones(api):
    _, mine = await api.create()
    _, other = await api.create(caller_phone="13900001111", lon=119.78, lat=36.39, link=False)
    await api.act("dispatcher", mine["ticket"]["number"], "dispatch", crew_id="C01")
    await api.act("dispatcher", other["ticket"]["number"], "dispatch", crew_id="C02")
    code, detail = await api.call("GET", f"/api/tickets/{mine['ticket']['number']}", "crew")
    assert code == 200 and detail["caller_phone"] == "138****1234"
    assert detail["allowed_actions"] == ["accept", "decline", "return", "note"]
    code, _ = await api.call("GET", f"/api/tickets/{other['ticket']['number']}", "crew")
    assert code == 404
    assert (await api.call("GET", f"/api/tickets/{other['ticket']['number']}/timeline", "crew"))[0] == 404
    code, _ = await api.call("POST", f"/api/tickets/{other['ticket']['number']}/actions/accept", "crew",
                             {"expected_version": 3})
    assert code == 404
    _, listing = await api.call("GET", "/api/tickets", "crew")
    assert [t["number"] for t in listing["tickets"]] == [mine["ticket"]["number"]]
    _, listing2 = await api.call("GET", "/api/tickets", "crew2")
    assert [t["number"] for t in listing2["tickets"]] == [other["ticket"]["number"]]
    assert listing2["tickets"][0]["caller_phone"] == "139****1111"
    _, full = await api.call("GET", f"/api/tickets/{mine['ticket']['number']}", "dispatcher")
    assert full["caller_phone"] == "13812341234"


async def test_a_retried_client_action_answers_with_the_ticket_instead_of_a_conflict(api):
    _, made = await api.create()
    number = made["ticket"]["number"]
    await api.act("dispatcher", number, "dispatch", crew_id="C01")
    version = (await api.call("GET", f"/api/tickets/{number}", "crew"))[1]["version"]
    path, body = f"/api/tickets/{number}/actions/accept", {"expected_version": version}
    once = {"X-Client-Action-Id": "a1b2c3d4-0001"}
    code, first = await api.call("POST", path, "crew", body, once)
    assert code == 200 and first["ticket"]["state"] == "accepted"
    code, again = await api.call("POST", path, "crew", body, once)  # the reply was lost: the phone resends
    assert code == 200 and again["ticket"]["version"] == first["ticket"]["version"]
    code, other = await api.call("POST", path, "crew", body, {"X-Client-Action-Id": "a1b2c3d4-0002"})
    assert code == 409 and other["error"]["code"] == "conflict"  # a different action on a stale version
    code, bad = await api.call("POST", path, "crew", body, {"X-Client-Action-Id": "no spaces!"})
    assert code == 400 and bad["error"]["code"] == "bad_request"
    _, timeline = await api.call("GET", f"/api/tickets/{number}/timeline", "dispatcher")
    assert [e["action"] for e in timeline["events"]].count("accept") == 1


async def test_a_note_between_reading_and_acting_does_not_make_the_action_stale(api):
    _, made = await api.create()
    number = made["ticket"]["number"]
    await api.act("dispatcher", number, "dispatch", crew_id="C01")
    read = (await api.call("GET", f"/api/tickets/{number}", "crew"))[1]["version"]
    code, noted = await api.call("POST", f"/api/tickets/{number}/actions/note", "dispatcher",
                                 {"expected_version": read, "note": "已电话联系班组"})
    assert code == 200 and (noted["ticket"]["version"], noted["ticket"]["change_version"]) == (read + 1, read)
    code, accepted = await api.call("POST", f"/api/tickets/{number}/actions/accept", "crew", {"expected_version": read})
    assert code == 200 and accepted["ticket"]["state"] == "accepted"
    code, stale = await api.call("POST", f"/api/tickets/{number}/actions/arrive", "crew", {"expected_version": read})
    assert code == 409 and stale["error"]["code"] == "conflict"  # the accept was a change, not a note
    _, timeline = await api.call("GET", f"/api/tickets/{number}/timeline", "dispatcher")
    assert [e["action"] for e in timeline["events"]][-2:] == ["note", "accept"]


async def test_dissatisfied_callback_reopens_to_the_same_unit(api):
    _, body = await api.create()
    n = body["ticket"]["number"]
    for user, action, args in [("dispatcher", "dispatch", {"crew_id": "C01"}), ("crew", "accept", {}),
                               ("crew", "arrive", {}), ("crew", "resolve", {"resolution": "已修复"})]:
        code, result = await api.act(user, n, action, **args)
        assert code == 200
    code, reopened = await api.call("POST", f"/api/tickets/{n}/callback", "agent",
                                    {"expected_version": result["ticket"]["version"], "satisfaction": "dissatisfied",
                                     "words": "又停了"})
    t = reopened["ticket"]
    assert code == 200 and (t["state"], t["unit_id"], t["rework_count"], t["crew_id"]) == ("reopened", "PWR02", 1, None)
    _, counts = await api.call("GET", "/api/tickets/counts", "supervisor")
    assert counts["unit_rework"] == {"PWR02": 1}
    _, queue = await api.call("GET", "/api/tickets?state=open", "dispatcher")
    assert [x["number"] for x in queue["tickets"]] == [n]


async def test_concurrent_dispatches_through_the_api_one_wins_one_conflicts(api):
    _, body = await api.create()
    n, version = body["ticket"]["number"], body["ticket"]["version"]
    await api.token("dispatcher"), await api.token("supervisor")
    results = await asyncio.gather(*[
        api.call("POST", f"/api/tickets/{n}/actions/dispatch", user, {"expected_version": version, "crew_id": crew})
        for user, crew in (("dispatcher", "C01"), ("supervisor", "C02"))])
    assert sorted(code for code, _ in results) == [200, 409]
    conflict = next(body for code, body in results if code == 409)
    assert conflict["error"]["code"] == "conflict"


@pytest.mark.parametrize("user, path, body, status, code", [
    ("agent", "/api/tickets", b"{not json", 400, "bad_json"),
    ("agent", "/api/tickets", {"channel": "phone", "category": "power", "type": "repair"}, 400, "validation_error"),
    ("agent", "/api/tickets", {"channel": "phone", "category": "lava", "type": "repair", "description": "x",
                               "caller_phone": "13812341234"}, 400, "validation_error"),
    ("crew", "/api/tickets", {"channel": "phone"}, 403, "forbidden"),
    ("agent", "/api/tickets/GD20261122-0001/actions/dispatch", {"expected_version": 2, "crew_id": "C01"}, 403, "forbidden"),
    ("dispatcher", "/api/tickets/GD20261122-0001/actions/dispatch", {"crew_id": "C01"}, 400, "validation_error"),
    ("dispatcher", "/api/tickets/GD20261122-0001/actions/resolve", {"expected_version": 2, "resolution": "x"}, 409,
     "invalid_transition"),
    ("dispatcher", "/api/tickets/GD20261122-0001/actions/dispatch", {"expected_version": 1, "crew_id": "C01"}, 409, "conflict"),
    ("dispatcher", "/api/tickets/GD20261122-0999/actions/review", {"expected_version": 1}, 404, "ticket_not_found"),
    ("dispatcher", "/api/tickets/GD20261122-0001/actions/fly", {"expected_version": 2}, 400, "validation_error"),
    ("agent", "/api/tickets/GD20261122-0001/callback", {"expected_version": 2, "satisfaction": "meh"}, 400,
     "validation_error"),
])
async def test_errors_have_one_shape_and_the_right_status(api, user, path, body, status, code):
    await api.create()
    got, reply = await api.call("POST", path, user, body)
    assert got == status and reply["error"]["code"] == code and "Traceback" not in reply["error"]["message"]


async def test_emergency_calls_are_flagged_for_110(api):
    _, body = await api.create(category="gas", description="楼道里闻到燃气味，很浓", caller_phone="13611112222")
    assert body["ticket"]["police_kind"] == "gas_leak"
    _, timeline = await api.call("GET", f"/api/tickets/{body['ticket']['number']}/timeline", "dispatcher")
    assert timeline["events"][0]["data"]["police_kind"] == "gas_leak"
    _, plain = await api.create(description="电表不走了", caller_phone="13611113333", link=False)
    assert plain["ticket"]["police_kind"] is None and plain["ticket"]["police_suggested"] is None


async def test_an_ambiguous_emergency_is_suggested_not_handed_over(api):
    _, stove = await api.create(category="gas", description="燃气灶打不着火", caller_phone="13611114444", link=False)
    assert stove["ticket"]["police_kind"] is None and stove["ticket"]["police_suggested"] is None
    _, maybe = await api.create(category="gas", description="厨房好像有点煤气味", caller_phone="13611115555", link=False)
    assert maybe["ticket"]["police_kind"] is None and maybe["ticket"]["police_suggested"] == "gas_leak"
    _, timeline = await api.call("GET", f"/api/tickets/{maybe['ticket']['number']}/timeline", "dispatcher")
    data = timeline["events"][0]["data"]
    assert data["police_suggested"] == "gas_leak" and "police_kind" not in data


def _alarm(kind: str, **alarm) -> dict:
    base = {"alarm_id": "L0002:high", "sensor_id": "L0002", "kind": "high", "severity": "critical", "value": 131.0,
            "threshold": 100.0, "raised_at": "2026-11-22T01:58:00+00:00"}
    base.update(alarm)
    return {"type": kind, "alarm": json.dumps(base)}


async def test_alarm_events_open_one_proactive_ticket_that_later_calls_join(api, redis_url):
    redis = aioredis.from_url(redis_url, decode_responses=True)
    stop = asyncio.Event()
    await redis.xadd(ALARM_EVENTS, _alarm("raised", severity="warning", value=85.0))  # warning: no ticket
    await redis.xadd(ALARM_EVENTS, _alarm("escalated"))
    await redis.xadd(ALARM_EVENTS, _alarm("raised"))  # the same episode again: idempotent
    consumer = asyncio.create_task(consume_alarms(api.manager, redis, stop, block_ms=100))
    await wait_for(lambda: api.manager.store.index("open"))
    await wait_for(lambda: _acked(redis))
    numbers = await api.manager.store.index("open")
    assert len(numbers) == 1
    code, ticket = await api.call("GET", f"/api/tickets/{numbers[0]}", "dispatcher")
    assert (ticket["channel"], ticket["type"], ticket["supply_area"], ticket["asset_id"], ticket["alarm_id"]) == \
        ("sensor", "repair", "TA2", "T2", "L0002:high")
    assert (ticket["lon"], ticket["lat"]) == (119.72, 36.37) and ticket["tags"] == ["transformer_overload"]
    assert ticket["description"].endswith("值 131.0 % 阈值 100.0 %")  # the reading with its sensor's unit
    _, incident = await api.call("GET", f"/api/incidents/{ticket['incident_id']}", "dispatcher")
    assert incident["status"] == "confirmed" and incident["alarm_ids"] == ["L0002:high"]
    api.clock.now = T0 + timedelta(hours=2)  # long after the window: a confirmed incident still absorbs calls
    _, call = await api.create(caller_phone="13500001111", lon=119.71, lat=36.39)
    assert call["linked"] is False and call["ticket"]["incident_id"] == ticket["incident_id"]
    await redis.xadd(ALARM_EVENTS, _alarm("cleared"))
    await wait_for(lambda: _acked(redis))
    _, after = await api.call("GET", f"/api/tickets/{numbers[0]}", "dispatcher")
    assert after["state"] == "new"  # clearing the alarm does not close the ticket
    _, timeline = await api.call("GET", f"/api/tickets/{numbers[0]}/timeline", "dispatcher")
    last = timeline["events"][-1]
    assert (last["action"], last["note"], last["data"]) == \
        ("note", "传感器告警已恢复", {"data": {"alarm_id": "L0002:high", "alarm": "cleared"}})
    _, incident = await api.call("GET", f"/api/incidents/{ticket['incident_id']}", "dispatcher")
    assert incident["calls"] == 2 and incident["dispatch_once"] is True
    stop.set()
    await consumer
    await redis.aclose()


async def _acked(redis) -> bool:
    groups = await redis.xinfo_groups(ALARM_EVENTS)
    info = groups[0]
    last = (await redis.xinfo_stream(ALARM_EVENTS))["last-generated-id"]
    return info["pending"] == 0 and info["last-delivered-id"] == last  # all delivered and acknowledged


async def test_acknowledged_tickets_survive_kill_9_of_redis(database_url, tmp_path, city):
    port = free_port()
    redis_proc = start_redis(tmp_path / "r", port=port)
    server = None
    try:
        server, api = await serve_tickets(tmp_path, f"redis://127.0.0.1:{port}/0", database_url, city, Clock(T0))
        made = []
        for i in range(20):
            code, body = await api.create(caller_phone=f"1390000{i:04d}", lon=119.70 + i * 0.004, lat=36.36,
                                          link=False)
            assert code == 201
            made.append(body["ticket"])
        code, acted = await api.act("dispatcher", made[0]["number"], "dispatch", crew_id="C01")
        assert code == 200
        os.kill(redis_proc.process.pid, signal.SIGKILL)  # no shutdown, no final fsync
        redis_proc.process.wait(10)
        redis_proc = start_redis(tmp_path / "r", port=port)
        await wait_for(lambda: _pingable(api.store))
        _, listing = await api.call("GET", "/api/tickets?sort=created&limit=100", "dispatcher")
        assert sorted(t["number"] for t in listing["tickets"]) == sorted(t["number"] for t in made)
        _, first = await api.call("GET", f"/api/tickets/{made[0]['number']}", "dispatcher")
        assert (first["state"], first["version"], first["crew_id"]) == ("dispatched", acted["ticket"]["version"], "C01")
        _, timeline = await api.call("GET", f"/api/tickets/{made[0]['number']}/timeline", "dispatcher")
        assert [e["action"] for e in timeline["events"]] == ["create", "link_incident", "dispatch"]
        code, nxt = await api.create(caller_phone="13911112222", link=False)  # numbering continues
        assert code == 201 and nxt["ticket"]["number"] == f"GD{DAY}-0021"
    finally:
        if server is not None:
            server.stop()
            await server.close_all_connections()
            await api.store.close()
        redis_proc.stop()


async def _pingable(store: Store) -> bool:
    try:
        return await store.redis.ping()
    except Exception:
        return False
