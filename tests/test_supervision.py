"""督办 (supervision orders): the rules as pure tables, and the API in-process on real PostgreSQL
and Redis: issue, urge (count), the unit's answer and one recorded on its behalf, escalation to the
unit above at the deadline (time passed in), the rules' 督办 for a red ticket and an overdue stage
(once per ticket and cause), a unit's liaison scoped to its units, every step on the ticket's
timeline, and the 400/403/404/409 refusals."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from command import accounts
from store.live import Store
from store.accounts import AccountStore
from store.supervision import SupervisionStore
from store.tickets import TicketStore
from store.units import UnitStore
from command import supervision as rules
from command.errors import ValidationError
from command.limits import Level, LimitStatus, Stage
from command.ticket_model import SYSTEM_ACTOR, Category, Channel, Color, State, Ticket, TicketType, Urgency
from gis.lookup import SpatialLookup
from gis.units import CENTER_ID, UnitNode
from services.supervision import SupervisionService, overdue_stages
from services.tickets import TicketManager
from services.worker import build, run_timers
from tests.apps import serve_tickets
from tests.conftest import PASSWORD, T0, Clock, test_settings, wait_for
from tests.openapi_check import validate
from tests.river import river_city

LIVE = (pytest.mark.integration, pytest.mark.asyncio)  # the API tests' marks

TREE = [UnitNode(CENTER_ID, None, 1, "热线中心", ()), UnitNode("PWR00", CENTER_ID, 2, "供电公司", ("power",)),
        UnitNode("PWR01", "PWR00", 3, "东供电所", ("power",)), UnitNode("PWR02", "PWR00", 3, "西供电所", ("power",)),
        UnitNode("WAT01", CENTER_ID, 3, "自来水公司", ("water",)), UnitNode("GAS01", CENTER_ID, 3, "燃气公司", ("gas",))]
LIAISONS = {"liaison-pwr02": "PWR02", "liaison-pwr01": "PWR01", "liaison-pwr00": "PWR00"}


def _ticket(**fields) -> Ticket:
    base = dict(number="GD20261122-0001", channel=Channel.PHONE, category=Category.POWER, type=TicketType.REPAIR,
                urgency=Urgency.NORMAL, description="停电", created_at=T0, updated_at=T0, unit_id="PWR02")
    return Ticket(**{**base, **fields})


# ---------------------------------------------------------------------------------- pure tables
@pytest.mark.parametrize("value, result", [
    (None, T0 + rules.AUTO_DEADLINE),
    ("2026-11-22T04:00:00Z", datetime(2026, 11, 22, 4, tzinfo=timezone.utc)),
    ("2026-11-22T12:00:00+08:00", datetime(2026, 11, 22, 4, tzinfo=timezone.utc)),
    ("2026-11-22T01:00:00Z", "must be in the future"),
    ("2026-11-22T02:00:00Z", "must be in the future"),
    ("2027-01-22T02:00:00Z", "at most 30 days ahead"),
    ("2026-11-22T04:00:00", "must carry its UTC offset"),
    ("tomorrow", "not an ISO-8601 time"),
    (3600, "must be an ISO-8601 time"),
])
def test_deadline_rules(value, result):
    if isinstance(result, str):
        with pytest.raises(ValidationError, match=result):
            rules.check_deadline(value, T0)
    else:
        assert rules.check_deadline(value, T0) == result


@pytest.mark.parametrize("row, state", [
    ({"deadline": T0.timestamp() + 1, "answered_at": None, "closed_at": None}, "open"),
    ({"deadline": T0.timestamp(), "answered_at": None, "closed_at": None}, "due"),
    ({"deadline": T0.timestamp() - 1, "answered_at": 5.0, "closed_at": 5.0}, "answered"),
    ({"deadline": T0.timestamp() - 1, "answered_at": None, "closed_at": 5.0}, "closed"),
])
def test_states(row, state):
    assert rules.state_of(row, T0) == state


def _status(stage: Stage, level: Level, done: bool = False) -> LimitStatus:
    return LimitStatus(stage=stage, level=level, started_at=T0, deadline=T0, limit=timedelta(hours=1), time_left=timedelta(0),
                       used_share=1.0, done=done)


@pytest.mark.parametrize("ticket, stages, route, causes", [
    (_ticket(type=TicketType.COMPLAINT), ("dispatch",), "department", []),  # 交办: the center's own delay
    (_ticket(type=TicketType.CONSULTATION), ("dispatch",), "answer", []),  # 答复 on the call: the agent's
    (_ticket(state=State.RESOLVED), ("callback",), "station", []),  # 回访: the center's
    (_ticket(type=TicketType.COMPLAINT, state=State.HANDLING), ("resolve", "accept"), "department",
     ["overdue:feedback", "overdue:unit_accept"]),
    (_ticket(), ("dispatch",), None, ["overdue:dispatch"]),  # a station's crews: as before
])
def test_the_rules_name_the_step_and_never_send_the_unit_the_centers_own_delay(ticket, stages, route, causes):
    assert rules.causes_for(ticket, stages, route=route) == causes


@pytest.mark.parametrize("ticket, stages, statuses, causes", [
    (_ticket(), (), (), []),
    (_ticket(color=Color.RED), (), (), ["red"]),
    (_ticket(color=Color.ORANGE), ("arrive",), (), ["overdue:arrive"]),
    (_ticket(color=Color.RED), ("arrive", "arrive"), (_status(Stage.RESOLVE, Level.OVERDUE),),
     ["red", "overdue:arrive", "overdue:resolve"]),
    (_ticket(), (), (_status(Stage.ARRIVE, Level.WARNING), _status(Stage.DISPATCH, Level.OVERDUE, done=True)), []),
    (_ticket(color=Color.RED, state=State.CLOSED), ("arrive",), (), []),  # an ended ticket: nothing
])
def test_the_rules_causes(ticket, stages, statuses, causes):
    assert rules.causes_for(ticket, stages, statuses) == causes


@pytest.mark.parametrize("chain, target", [
    ([{"unit_id": "PWR02", "level": 3}, {"unit_id": "PWR00", "level": 2}, {"unit_id": CENTER_ID, "level": 1}], "PWR00"),
    ([{"unit_id": "PWR00", "level": 2}, {"unit_id": CENTER_ID, "level": 1}], None),  # never the center itself
    ([{"unit_id": "WAT01", "level": 3}, {"unit_id": CENTER_ID, "level": 1}], None),
    ([], None),
])
def test_escalation_goes_to_the_unit_above_never_the_center(chain, target):
    assert rules.escalation_target(chain) == target


def test_escalation_targets_of_the_whole_tree():
    rows = [{"unit_id": n.unit_id, "parent_id": n.parent_id, "level": n.level} for n in TREE]
    assert rules.escalation_targets(rows) == {"PWR01": "PWR00", "PWR02": "PWR00"}  # PWR00, WAT01: only the center


def test_cause_words_and_overdue_stages_of_the_dispatchers_alarms():
    assert [rules.cause_text(c) for c in ("red", "overdue:arrive", "overdue:resolve", "overdue:feedback")] == \
        ["红单（多次来电）", "到场超时", "办结超时", "责任单位反馈超时"]
    alarms = {"A|arrive": {"kind": "limit", "level": "overdue", "number": "A", "what": "arrive"},
              "A|resolve": {"kind": "limit", "level": "warning", "number": "A", "what": "resolve"},
              "B|dispatch": {"kind": "limit", "level": "overdue", "number": "B", "what": "dispatch"},
              "S1:low": {"kind": "sensor", "level": "overdue", "number": "C", "what": "x"}}
    assert overdue_stages(alarms) == {"A": ["arrive"], "B": ["dispatch"]}


@pytest.mark.parametrize("kind, args, text", [
    ("issue", {"message": "快", "deadline": T0 + timedelta(hours=4)}, "督办：快（期限 2026-11-22 14:00）"),
    ("issue", {"message": "快", "causes": ["red", "overdue:arrive"]}, "督办［红单（多次来电）；到场超时］：快"),
    ("urge", {"message": "再快", "urgings": 2}, "催办（第 2 次）：再快"),
    ("answer", {"message": "已处理"}, "督办答复：已处理"),
    ("escalate", {"unit_id": "PWR00", "deadline": T0}, "督办逾期未复，升级至 PWR00（期限 2026-11-22 10:00）"),
    ("close", {"message": rules.ENDED_TEXT["cancelled"]}, "督办结束：工单已撤销"),
])
def test_timeline_words_in_the_centers_zone(kind, args, text):
    assert rules.note_for(kind, **args) == text


def test_each_step_is_a_note_that_sets_the_flag():
    ticket, event = rules.annotate(_ticket(), "issue", actor=SYSTEM_ACTOR, now=T0, note="督办：快", data={"x": 1})
    assert ticket.supervised and ticket.state is State.NEW and ticket.version == 2
    assert (event.action, event.note, dict(event.data)) == ("note", "督办：快", {"data": {"supervision": "issue", "x": 1}})
    with pytest.raises(ValidationError):
        rules.annotate(_ticket(), "shout", actor=SYSTEM_ACTOR, now=T0, note="x", data={})


# ---------------------------------------------------------------------------------- the API
@pytest.fixture
async def api(tmp_path, redis_url, database_url, city):  # noqa: F811
    server, client = await serve_tickets(tmp_path, redis_url, database_url, city, Clock(T0))
    await UnitStore(client.store.db).seed(TREE, T0.timestamp())
    for name, unit in LIAISONS.items():
        await AccountStore(client.store.db).put(name, {"role": "unit", "unit_id": unit, "display": name, "active": "1",
                                                       "hash": accounts.hash_password(PASSWORD)}, only_new=True)
    client.service = SupervisionService(client.manager, SupervisionStore(client.store.db), UnitStore(client.store.db))
    _, client.openapi = await client.call("GET", "/api/openapi.json")
    yield client
    server.stop()
    await server.close_all_connections()
    await client.store.close()


async def _new_ticket(api, **fields) -> str:
    code, body = await api.create(link=False, **fields)
    assert code == 201, body
    return body["ticket"]["number"]


async def _supervision(api, number: str, user: str = "supervisor") -> list[dict]:
    code, body = await api.call("GET", f"/api/tickets/{number}/supervision", user)
    assert code == 200, body
    validate(api.openapi, "GET", f"/api/tickets/{number}/supervision", 200, body)
    return body["supervisions"]


async def _steps(api, number: str) -> list[tuple[str, str, str]]:
    _, timeline = await api.call("GET", f"/api/tickets/{number}/timeline", "supervisor")
    return [(e["data"]["data"]["supervision"], e["actor_id"], e["note"]) for e in timeline["events"]
            if e["action"] == "note" and "supervision" in e["data"].get("data", {})]


@LIVE[0]
@LIVE[1]
async def test_a_supervisor_issues_then_urges_and_the_unit_answers(api):
    number = await _new_ticket(api)
    deadline = (T0 + timedelta(hours=4)).isoformat()
    code, body = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor",
                                {"message": "请尽快到场", "deadline": deadline})
    assert code == 201 and body["step"] == "issue", body
    validate(api.openapi, "POST", f"/api/tickets/{number}/supervision", 201, body)
    issued = body["supervision"]
    assert (issued["unit_id"], issued["holder"], issued["urgings"], issued["state"], issued["deadline"]) == \
        ("PWR02", "PWR02", 0, "open", "2026-11-22T06:00:00Z")
    assert (issued["issued_by"], issued["message"], issued["causes"]) == ("supervisor", "请尽快到场", [])
    _, ticket = await api.call("GET", f"/api/tickets/{number}", "supervisor")
    assert ticket["supervised"] is True and ticket["needs_supervision"] is True

    api.clock.now = T0 + timedelta(minutes=30)
    code, body = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor", {"message": "再催一次"})
    assert code == 200 and body["step"] == "urge", body
    urged = body["supervision"]
    assert (urged["id"], urged["urgings"], urged["message"], urged["last_urged_at"]) == \
        (issued["id"], 1, "再催一次", "2026-11-22T02:30:00Z")
    assert urged["deadline"] == "2026-11-23T02:30:00Z"  # no deadline given: a day from now
    code, body = await api.call("POST", f"/api/tickets/{number}/supervision", "admin", {"message": "第三次"})
    assert code == 200 and body["supervision"]["urgings"] == 2

    code, body = await api.call("POST", f"/api/supervisions/{issued['id']}/answer", "liaison-pwr02",
                                {"answer": "已派班组，预计一小时内到场"})
    assert code == 200, body
    validate(api.openapi, "POST", f"/api/supervisions/{issued['id']}/answer", 200, body)
    answered = body["supervision"]
    assert (answered["state"], answered["answered_by"], answered["answer"]) == \
        ("answered", "liaison-pwr02", "已派班组，预计一小时内到场")
    code, body = await api.call("POST", f"/api/supervisions/{issued['id']}/answer", "liaison-pwr02", {"answer": "再答"})
    assert code == 409 and body["error"]["code"] == "supervision_closed"

    steps = await _steps(api, number)
    assert [(s[0], s[1]) for s in steps] == [("issue", "supervisor"), ("urge", "supervisor"), ("urge", "admin"),
                                            ("answer", "liaison-pwr02")]
    assert steps[0][2].startswith("督办：请尽快到场") and steps[1][2].startswith("催办（第 1 次）：再催一次")
    assert steps[3][2] == "督办答复：已派班组，预计一小时内到场"

    # a new 督办 after the answer is a new record
    code, body = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor", {"message": "又有来电"})
    assert code == 201 and body["supervision"]["id"] != issued["id"]
    assert [s["state"] for s in await _supervision(api, number)] == ["open", "answered"]
    assert [s["id"] for s in await _supervision(api, number, "liaison-pwr00")] == \
        [body["supervision"]["id"], issued["id"]]


@LIVE[0]
@LIVE[1]
async def test_an_office_role_records_the_answer_for_the_unit_with_a_note(api):
    number = await _new_ticket(api)
    _, body = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor", {"message": "请答复"})
    sid = body["supervision"]["id"]
    code, body = await api.call("POST", f"/api/supervisions/{sid}/answer", "agent", {"answer": "已处理"})
    assert code == 400 and body["error"]["code"] == "validation_error" and "note" in body["error"]["message"]
    code, body = await api.call("POST", f"/api/supervisions/{sid}/answer", "agent",
                                {"answer": "已处理", "note": "单位电话答复"})
    assert code == 200 and body["supervision"]["answered_by"] == "agent"
    assert body["supervision"]["answer"] == "已处理（agent 代录：单位电话答复）"
    assert (await _steps(api, number))[-1][:2] == ("answer", "agent")


@LIVE[0]
@LIVE[1]
async def test_unanswered_at_its_deadline_it_escalates_to_the_unit_above(api):
    number = await _new_ticket(api)
    _, body = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor",
                             {"message": "限一小时答复", "deadline": (T0 + timedelta(hours=1)).isoformat()})
    sid = body["supervision"]["id"]
    assert await api.service.escalate_due(T0 + timedelta(minutes=59)) == 0
    code, due = await api.call("GET", "/api/supervisions?state=due", "supervisor")
    assert code == 200 and due["total"] == 0

    api.clock.now = later = T0 + timedelta(hours=2)
    code, due = await api.call("GET", "/api/supervisions?state=due", "supervisor")
    assert [s["id"] for s in due["supervisions"]] == [sid] and due["supervisions"][0]["state"] == "due"
    assert await api.service.escalate_due(later) == 1
    [row] = await _supervision(api, number)
    assert (row["unit_id"], row["escalated_to_unit"], row["holder"], row["escalations"], row["state"]) == \
        ("PWR02", "PWR00", "PWR00", 1, "open")
    assert (row["escalated_at"], row["deadline"]) == ("2026-11-22T04:00:00Z", "2026-11-23T04:00:00Z")
    assert (await _steps(api, number))[-1][:2] == ("escalate", "system")
    assert "升级至 PWR00" in (await _steps(api, number))[-1][2]
    assert await api.service.escalate_due(later) == 0  # not due any more

    # due again under the department: nothing above it but the center, so it stays due
    api.clock.now = much_later = T0 + timedelta(days=2)
    assert await api.service.escalate_due(much_later) == 0
    code, due = await api.call("GET", "/api/supervisions?state=due&unit=PWR00", "supervisor")
    assert [s["id"] for s in due["supervisions"]] == [sid]
    code, body = await api.call("POST", f"/api/supervisions/{sid}/answer", "liaison-pwr00", {"answer": "已督促供电所"})
    assert code == 200 and body["supervision"]["state"] == "answered"


@LIVE[0]
@LIVE[1]
async def test_the_rules_issue_once_for_a_red_ticket_and_an_overdue_stage(api):
    red = await _new_ticket(api)
    for _ in range(2):  # the caller's repeat calls: orange, then red (another caller's would not colour it)
        code, body = await api.create(description="还是没电")
        assert body["linked"] is True and body["match"] == "repeat"
    plain = await _new_ticket(api, lon=119.78, caller_phone="13700000000")
    now = T0 + timedelta(hours=2)
    api.clock.now = now
    assert await api.service.tick(now, {plain: ["arrive"]}) == {"issued": 2, "escalated": 0, "closed": 0}
    [on_red] = await _supervision(api, red)
    [on_plain] = await _supervision(api, plain)
    assert (on_red["causes"], on_red["issued_by"], on_red["unit_id"]) == (["red"], "system", "PWR02")
    assert (on_plain["causes"], on_plain["unit_id"]) == (["overdue:arrive"], "PWR01")
    assert on_red["message"] == "请加快办理并答复：红单（多次来电）"
    # the next passes: the same causes do nothing, a new one urges the open 督办
    assert (await api.service.tick(now, {plain: ["arrive"]}))["issued"] == 0
    assert (await api.service.tick(now, {plain: ["arrive", "resolve"], red: ["arrive"]}))["issued"] == 2
    [on_plain] = await _supervision(api, plain)
    assert (on_plain["urgings"], on_plain["causes"]) == (1, ["overdue:arrive", "overdue:resolve"])
    # answered, the cause is still remembered: no new 督办 for it
    code, _ = await api.call("POST", f"/api/supervisions/{on_plain['id']}/answer", "liaison-pwr01", {"answer": "已到场"})
    assert code == 200
    assert (await api.service.tick(now, {plain: ["arrive", "resolve"]}))["issued"] == 0
    assert [s[:2] for s in await _steps(api, plain)] == [("issue", "system"), ("urge", "system"),
                                                         ("answer", "liaison-pwr01")]


@LIVE[0]
@LIVE[1]
async def test_a_ticket_that_ends_closes_its_open_supervision(api):
    number = await _new_ticket(api)
    _, body = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor", {"message": "请答复"})
    code, _ = await api.act("agent", number, "cancel", reason="重复报修")
    assert code == 200
    assert (await api.service.tick(T0, {}))["closed"] == 1
    [row] = await _supervision(api, number)
    assert row["state"] == "closed" and row["closed_at"] == "2026-11-22T02:00:00Z"
    assert (await _steps(api, number))[-1] == ("close", "system", "督办结束：工单已撤销")
    code, body = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor", {"message": "x"})
    assert code == 409 and body["error"]["code"] == "ticket_not_open"


@LIVE[0]
@LIVE[1]
async def test_a_unit_liaison_sees_and_answers_only_its_own_units(api):
    west = await _new_ticket(api)                                      # PWR02
    east = await _new_ticket(api, lon=119.78, caller_phone="13700000000")  # PWR01
    ids = {}
    for number in (west, east):
        _, body = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor", {"message": "请答复"})
        ids[number] = body["supervision"]["id"]
    listed = {}
    for user in ("supervisor", "liaison-pwr02", "liaison-pwr01", "liaison-pwr00"):
        code, body = await api.call("GET", "/api/supervisions", user)
        assert code == 200, body
        validate(api.openapi, "GET", "/api/supervisions", 200, body)
        listed[user] = sorted(s["number"] for s in body["supervisions"])
    assert listed == {"supervisor": sorted([west, east]), "liaison-pwr02": [west], "liaison-pwr01": [east],
                      "liaison-pwr00": sorted([west, east])}
    code, body = await api.call("GET", "/api/supervisions?unit=PWR02", "supervisor")
    assert [s["number"] for s in body["supervisions"]] == [west]
    code, body = await api.call("GET", "/api/supervisions?unit=PWR02", "liaison-pwr01")
    assert code == 403
    code, body = await api.call("GET", f"/api/tickets/{west}/supervision", "liaison-pwr01")
    assert code == 404
    code, body = await api.call("POST", f"/api/supervisions/{ids[west]}/answer", "liaison-pwr01", {"answer": "不是我"})
    assert code == 404 and body["error"]["code"] == "supervision_not_found"
    code, body = await api.call("POST", f"/api/supervisions/{ids[west]}/answer", "liaison-pwr00", {"answer": "已督促"})
    assert code == 200
    code, body = await api.call("GET", "/api/supervisions?state=answered", "liaison-pwr02")
    assert [s["id"] for s in body["supervisions"]] == [ids[west]]


@pytest.mark.parametrize("user, path, body, status, code", [
    ("agent", "/api/tickets/{n}/supervision", {"message": "x"}, 403, "forbidden"),
    ("dispatcher", "/api/tickets/{n}/supervision", {"message": "x"}, 403, "forbidden"),
    ("liaison-pwr02", "/api/tickets/{n}/supervision", {"message": "x"}, 403, "forbidden"),
    ("crew", "/api/supervisions/{s}/answer", {"answer": "x"}, 403, "forbidden"),
    ("supervisor", "/api/tickets/{n}/supervision", {}, 400, "validation_error"),
    ("supervisor", "/api/tickets/{n}/supervision", {"message": "  "}, 400, "validation_error"),
    ("supervisor", "/api/tickets/{n}/supervision", {"message": "x" * 501}, 400, "validation_error"),
    ("supervisor", "/api/tickets/{n}/supervision", {"message": "x", "deadline": "soon"}, 400, "validation_error"),
    ("supervisor", "/api/tickets/{n}/supervision", {"message": "x", "deadline": "2026-11-21T00:00:00Z"}, 400,
     "validation_error"),
    ("supervisor", "/api/tickets/{n}/supervision", {"message": "x", "urgent": True}, 400, "validation_error"),
    ("supervisor", "/api/tickets/{n}/supervision", [1], 400, "bad_json"),
    ("supervisor", "/api/tickets/GD20261122-9999/supervision", {"message": "x"}, 404, "ticket_not_found"),
    ("supervisor", "/api/supervisions/{s}/answer", {"answer": "x", "note": "y", "by": "z"}, 400, "validation_error"),
    ("liaison-pwr02", "/api/supervisions/{s}/answer", {"answer": ""}, 400, "validation_error"),
    ("supervisor", "/api/supervisions/999999/answer", {"answer": "x", "note": "y"}, 404, "supervision_not_found"),
    ("liaison-pwr02", "/api/supervisions/999999/answer", {"answer": "x"}, 404, "supervision_not_found"),
    ("supervisor", "/api/supervisions?state=late", None, 400, "validation_error"),
    ("supervisor", "/api/supervisions?unit=a%20b", None, 400, "validation_error"),
    ("supervisor", "/api/supervisions?limit=0", None, 400, "bad_request"),
    ("crew", "/api/supervisions", None, 403, "forbidden"),
    (None, "/api/supervisions", None, 401, "unauthenticated"),
])
@LIVE[0]
@LIVE[1]
async def test_refusals(api, user, path, body, status, code):
    number = await _new_ticket(api)
    _, issued = await api.call("POST", f"/api/tickets/{number}/supervision", "supervisor", {"message": "请答复"})
    sid = issued["supervision"]["id"]
    method = "GET" if body is None else "POST"
    got, reply = await api.call(method, path.format(n=number, s=sid), user, body)
    assert (got, reply["error"]["code"]) == (status, code), reply
    [row] = await _supervision(api, number)
    assert (row["urgings"], row["state"]) == (0, "open")  # nothing written
    assert [s[0] for s in await _steps(api, number)] == ["issue"]


@LIVE[0]
@LIVE[1]
async def test_the_dispatch_worker_issues_one_for_the_overdue_stage_it_raised(tmp_path, redis_url, database_url,
                                                                             city):  # noqa: F811
    """The worker's round: the timers raise the overdue alarm, its 督办 pass issues one 督办 for it."""
    clock = Clock(T0)
    store = Store.from_url(redis_url, database_url)
    try:
        await UnitStore(store.db).seed(TREE, T0.timestamp())
        manager = TicketManager(TicketStore(store.db, store.redis), SpatialLookup(city), clock=clock)
        parts = await build(store, test_settings(tmp_path), river_city(), tickets=manager, clock=clock)
        parts.dispatch.auto = False
        created = await manager.create({"channel": "phone", "category": "power", "type": "repair", "urgency": "normal",
                                        "description": "停电", "caller_phone": "13812341234", "lon": 119.72, "lat": 36.36},
                                       SYSTEM_ACTOR, link=False)
        number = created.record.ticket.number
        clock.now = T0 + timedelta(minutes=31)  # a normal repair is dispatched within 30 minutes
        stop = asyncio.Event()
        task = asyncio.create_task(run_timers(parts, stop, 0.05))
        found = await wait_for(lambda: SupervisionStore(store.db).open_for(number))
        await asyncio.sleep(0.3)  # a few more rounds
        stop.set()
        await task
        assert (found["causes"], found["issued_by"], found["unit_id"]) == (["overdue:dispatch"], "system", "PWR02")
        assert (await SupervisionStore(store.db).of_ticket(number))[0]["urgings"] == 0  # once, however many rounds
        assert (await manager.store.get(number)).ticket.supervised is True
    finally:
        await store.close()
