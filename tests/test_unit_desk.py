"""A responsible unit's liaison (role unit) through the HTTP API of a running app, with real
PostgreSQL, Redis and WebSocket clients: it sees its unit's tickets and those of the units under
it and nothing else, on every endpoint (404 for the others', phones masked; its live feed:
tests/test_live_scoping.py); and its workflow, each step an audit event: 交办 → 受理 → 办理结果反馈
(photos, the leader's signature for a complaint) → the center's callback; 退单 approved, re-routed and refused; 延期
approved (the resolution deadline moves) and refused; a station hands a repair to its own crews.
The unit tree and the app: tests/river.py (the `unit_api` fixture)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import PASSWORD, T0
from tests.river import PHONE, SCOPE, error_field

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


# ------------------------------------------------------------------------------ scoping

async def test_a_liaison_sees_its_units_tickets_and_nothing_else_on_every_endpoint(unit_api):
    numbers = await unit_api.spread()
    for user, units in SCOPE.items():
        mine = {numbers[u] for u in units}
        code, listing = await unit_api.call("GET", "/api/tickets", user)
        assert code == 200 and {t["number"] for t in listing["tickets"]} == mine and listing["total"] == len(mine)
        for query in ("state=assigned", "sort=created", "state=open&sort=created", f"phone={PHONE}", "color=blue"):
            code, listing = await unit_api.call("GET", f"/api/tickets?{query}", user)
            assert code == 200 and {t["number"] for t in listing["tickets"]} == mine, (user, query)
        for key, number in numbers.items():
            visible = number in mine
            code, detail = await unit_api.call("GET", f"/api/tickets/{number}", user)
            assert code == (200 if visible else 404), (user, key)
            if visible:
                assert detail["caller_phone"] == "138****1234" and detail["allowed_actions"] == [
                    "note", "unit_accept", "request_return", "request_extension"]
            code, timeline = await unit_api.call("GET", f"/api/tickets/{number}/timeline", user)
            assert code == (200 if visible else 404)
            if visible:
                assert PHONE not in str(timeline)
            code, reply = await unit_api.act(user, number, "note", note="已知悉")
            assert code == (200 if visible else 404), (user, key, reply)
            code, _ = await unit_api.call("POST", f"/api/tickets/{number}/photos", user, b"GIF89a not ours")
            assert code == (415 if visible else 404)  # a visible ticket takes photos, of the accepted types
            code, _ = await unit_api.call("GET", f"/api/tickets/{number}/photos/{'a' * 32}.jpg", user)
            assert code == 404
    # what is the office's, not a unit's
    for method, path in (("POST", "/api/tickets"), ("GET", "/api/callbacks"), ("GET", "/api/tickets/counts"),
                         ("GET", "/api/incidents"), ("GET", "/api/vehicles"), ("GET", "/api/crews"),
                         ("GET", "/api/reports/kpi"), ("GET", "/api/admin/users"),
                         ("GET", f"/api/tickets/{numbers['PWR01']}/recommendation")):
        code, _ = await unit_api.call(method, path, "unit-pwr01", {} if method == "POST" else None)
        assert code == 403, (method, path)


async def test_an_admin_binds_a_liaison_to_an_active_unit_and_the_login_carries_its_scope(unit_api):
    code, reply = await unit_api.call("POST", "/api/admin/users", "admin", {"name": "li.wat", "role": "unit",
                                                                         "password": PASSWORD})
    assert code == 400 and error_field(reply) == "unit_id"
    code, reply = await unit_api.call("POST", "/api/admin/users", "admin", {"name": "li.wat", "role": "unit",
                                                                         "unit_id": "NOPE", "password": PASSWORD})
    assert code == 400 and error_field(reply) == "unit_id"
    code, reply = await unit_api.call("POST", "/api/admin/users", "admin", {"name": "li.wat", "role": "unit",
                                                                         "unit_id": "WAT01", "password": PASSWORD})
    assert code == 201 and reply["user"]["unit_id"] == "WAT01" and reply["user"]["role"] == "unit"
    code, me = await unit_api.call("GET", "/api/me", "li.wat")
    assert code == 200 and (me["role"], me["unit_id"]) == ("unit", "WAT01")
    code, reply = await unit_api.call("PATCH", "/api/admin/users/li.wat", "admin", {"role": "agent"})
    assert code == 200 and reply["user"]["unit_id"] is None and reply["sessions_ended"] == 1
    rows = await unit_api.store.db.fetch("SELECT action, by, changes FROM admin_audit WHERE target = 'user:li.wat'"
                                         " ORDER BY id")
    assert [(r["action"], r["by"]) for r in rows] == [("user.create", "admin"), ("user.update", "admin")]
    assert rows[0]["changes"]["unit_id"] == [None, "WAT01"] and rows[1]["changes"]["unit_id"] == ["WAT01", ""]


# ------------------------------------------------------------------------------ workflow

async def test_assign_accept_feedback_then_the_centers_callback(unit_api):
    number = await unit_api.new(unit="PWR00")
    code, reply = await unit_api.act("unit-pwr00", number, "close", satisfaction="satisfied")
    assert code == 403  # the unit never closes a ticket
    code, reply = await unit_api.act("unit-pwr00", number, "unit_accept")
    assert code == 200 and reply["ticket"]["state"] == "handling" and reply["ticket"]["accepted_at"]
    code, reply = await unit_api.act("unit-pwr00", number, "feedback", resolution="已约谈抄表员并致歉")
    assert code == 400 and error_field(reply) == "signed_by"  # a complaint's result is signed
    code, photo = await unit_api.call("POST", f"/api/tickets/{number}/photos", "unit-pwr00",
                                      b"\xff\xd8\xff\xe0" + b"\0" * 64 + b"\xff\xd9")
    assert code == 201, photo
    photo_id = photo["id"]
    got = await unit_api.http.fetch(unit_api.base + photo["url"], raise_error=False,
                                    headers={"Authorization": f"Bearer {await unit_api.token('unit-pwr00')}"})
    assert got.code == 200 and got.body.startswith(b"\xff\xd8\xff")
    args = {"resolution": "已约谈抄表员并致歉", "signed_by": "张主任", "attachments": [photo_id]}
    unit_api.clock.now = T0 + timedelta(hours=2)
    code, reply = await unit_api.act("unit-pwr00", number, "feedback", **args)
    assert code == 200, reply
    ticket = reply["ticket"]
    assert (ticket["state"], ticket["signed_by"], ticket["resolution"]) == ("resolved", "张主任", "已约谈抄表员并致歉")
    assert ticket["resolved_at"] == "2026-11-22T04:00:00Z"
    assert photo_id in ticket["attachments"]
    assert (await unit_api.act("unit-pwr00", number, "queue_callback"))[0] == 403
    code, reply = await unit_api.act("agent", number, "queue_callback")
    assert code == 200 and reply["ticket"]["state"] == "callback"
    code, reply = await unit_api.act("agent", number, "close", satisfaction="satisfied")
    assert code == 200 and reply["ticket"]["state"] == "closed"
    events = await unit_api.events(number)
    assert [e for e in events if e[0] not in ("note", "link_incident")] == [
        ("assign", "dispatcher", "new", "assigned"),
        ("unit_accept", "unit-pwr00", "assigned", "handling"),
        ("feedback", "unit-pwr00", "handling", "resolved"),
        ("queue_callback", "agent", "resolved", "callback"),
        ("close", "agent", "callback", "closed"),
    ]


async def test_a_return_approved_goes_back_to_the_pool(unit_api):
    number = await unit_api.new(unit="PWR01")
    code, reply = await unit_api.act("unit-pwr01", number, "request_return")
    assert code == 400 and error_field(reply) == "reason"
    code, reply = await unit_api.act("dispatcher", number, "approve_return")
    assert code == 409  # nothing pending
    code, reply = await unit_api.act("unit-pwr01", number, "request_return", reason="非本所辖区")
    assert code == 200 and reply["ticket"]["state"] == "assigned"
    assert reply["ticket"]["request"]["kind"] == "return" and reply["ticket"]["request"]["reason"] == "非本所辖区"
    assert (await unit_api.act("unit-pwr01", number, "request_extension", reason="x",
                               until="2026-11-30T09:00:00Z"))[0] == 409  # one request at a time
    assert (await unit_api.act("unit-pwr01", number, "approve_return"))[0] == 403  # the center decides
    code, reply = await unit_api.act("dispatcher", number, "approve_return", reason="同意退回")
    assert code == 200 and reply["ticket"]["state"] == "returned" and reply["ticket"]["request"] is None
    code, _ = await unit_api.call("GET", f"/api/tickets/{number}", "unit-pwr01")
    assert code == 200  # still its unit's until the center assigns it again
    assert [e[:2] for e in await unit_api.events(number)][-2:] == [("request_return", "unit-pwr01"),
                                                             ("approve_return", "dispatcher")]


async def test_a_return_rerouted_goes_to_the_other_unit(unit_api):
    number = await unit_api.new(unit="PWR01")
    await unit_api.act("unit-pwr01", number, "unit_accept")
    await unit_api.act("unit-pwr01", number, "request_return", reason="属开发区供电所")
    code, reply = await unit_api.act("dispatcher", number, "reroute_return", unit_id="WAT01")
    assert code == 400 and error_field(reply) == "unit_id"  # another trade
    code, reply = await unit_api.act("dispatcher", number, "reroute_return", unit_id="PWR02", reason="改派开发区")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["unit_id"]) == ("assigned", "PWR02")
    assert (await unit_api.call("GET", f"/api/tickets/{number}", "unit-pwr01"))[0] == 404
    code, reply = await unit_api.act("unit-pwr02", number, "unit_accept")
    assert code == 200 and reply["ticket"]["state"] == "handling"
    assert [e[:2] for e in await unit_api.events(number)][-3:] == [
        ("request_return", "unit-pwr01"), ("reroute_return", "dispatcher"), ("unit_accept", "unit-pwr02")]


async def test_a_return_refused_stays_with_the_unit(unit_api):
    number = await unit_api.new(unit="PWR01")
    await unit_api.act("unit-pwr01", number, "unit_accept")
    await unit_api.act("unit-pwr01", number, "request_return", reason="非本所辖区")
    code, reply = await unit_api.act("dispatcher", number, "refuse_return")
    assert code == 400 and error_field(reply) == "reason"
    code, reply = await unit_api.act("dispatcher", number, "refuse_return", reason="经核实属本所辖区")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["request"]) == ("handling", None)
    code, reply = await unit_api.act("unit-pwr01", number, "feedback", resolution="已回复用户", signed_by="王所长")
    assert code == 200 and reply["ticket"]["state"] == "resolved"
    events = await unit_api.events(number)
    assert ("refuse_return", "dispatcher", "handling", "handling") in events


async def test_an_extension_approved_moves_the_resolution_deadline_and_refused_does_not(unit_api):
    number = await unit_api.new(unit="PWR00")
    await unit_api.act("unit-pwr00", number, "unit_accept")
    code, before = await unit_api.call("GET", f"/api/tickets/{number}", "unit-pwr00")
    deadline = before["deadlines"]["resolve"]
    for bad in ("明天", "2026-11-30T09:00:00", "2026-11-01T09:00:00Z"):
        code, reply = await unit_api.act("unit-pwr00", number, "request_extension", reason="需现场核查", until=bad)
        assert code == 400 and error_field(reply) == "until", bad
    code, reply = await unit_api.act("unit-pwr00", number, "request_extension", reason="需现场核查",
                                     until="2026-12-15T09:00:00Z")
    assert code == 200 and reply["ticket"]["request"]["until"] == "2026-12-15T09:00:00Z"
    assert (await unit_api.act("dispatcher", number, "approve_extension"))[0] == 403  # a supervisor's
    code, reply = await unit_api.act("supervisor", number, "refuse_extension", reason="期限内可办结")
    assert code == 200 and reply["ticket"]["deadlines"]["resolve"] == deadline and reply["ticket"]["request"] is None
    await unit_api.act("unit-pwr00", number, "request_extension", reason="需协调多部门", until="2026-12-15T09:00:00Z")
    code, reply = await unit_api.act("supervisor", number, "approve_extension")
    assert code == 200, reply
    ticket = reply["ticket"]
    assert ticket["deadlines"]["resolve"] == "2026-12-15T09:00:00Z" != deadline
    assert ticket["extended_until"] == "2026-12-15T09:00:00Z" and ticket["request"] is None
    assert ticket["limit_stage"] in ("resolve", "accept", None)
    assert [e[:2] for e in await unit_api.events(number)][-4:] == [
        ("request_extension", "unit-pwr00"), ("refuse_extension", "supervisor"),
        ("request_extension", "unit-pwr00"), ("approve_extension", "supervisor")]


async def test_a_station_hands_a_repair_to_its_own_crews_only(unit_api):
    number = await unit_api.new(type="repair", unit="PWR01")
    code, reply = await unit_api.act("unit-pwr01", number, "hand_to_crew", crew_id="C11")
    assert code == 409  # accepted first
    await unit_api.act("unit-pwr01", number, "unit_accept")
    code, reply = await unit_api.act("unit-pwr01", number, "hand_to_crew", crew_id="C21")
    assert code == 400 and error_field(reply) == "crew_id"  # another station's crew
    code, reply = await unit_api.act("unit-pwr01", number, "hand_to_crew", crew_id="C11")
    assert code == 200 and (reply["ticket"]["state"], reply["ticket"]["crew_id"]) == ("dispatched", "C11")
    assert (await unit_api.act("unit-pwr01", number, "dispatch", crew_id="C11"))[0] == 403  # the center's action
    assert [e[:2] for e in await unit_api.events(number)][-2:] == [("unit_accept", "unit-pwr01"),
                                                             ("hand_to_crew", "unit-pwr01")]
