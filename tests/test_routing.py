"""Routing by ticket type (issue #23): the table (pure rows, parsing with clear errors, the shipped
file equal to the defaults), the responsible unit and route of every type created through the HTTP
API of a running app on the demo city (station or department), a complaint, suggestion, praise or
consultation never reaching a field crew (automatic dispatch, recommendation, manual assignment,
joint assignment), and the responsible unit set with a reason (audited; bad units refused, 400)."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from config.routing_file import SHIPPED_ROUTING, load_routing, load_routing_file
from config.settings import SettingsError
from store.units import UnitStore, nodes_of_city
from command.errors import Conflict, Forbidden, InvalidTransition, ValidationError
from command.routing import (
    DEFAULT_ROUTING, RouteKind, RouteRefused, check_crew_dispatch, may_set_unit, route, set_unit,
    table_from_config, unit_refusal,
)
from command.tickets import apply
from command.ticket_fields import new_ticket
from command.ticket_model import Actor, Role, State, TicketType
from simulators import democity
from gis.layers import load_profile
from tests.apps import serve_tickets
from tests.cities import ll
from tests.conftest import T0, Clock, test_settings, wait_for
from tests.river import TICKET_XY

AGENT = Actor("agent", Role.AGENT)
KINDS = {"consultation": "answer", "service": "station", "repair": "station",
         "complaint": "department", "suggestion": "department", "praise": "department"}


# ---------------------------------------------------------------------------- the table (pure)

@pytest.mark.parametrize("type_, station, department, kind, unit", [
    ("consultation", "WAT01", "WAT00", "answer", None),        # answered on the call: no unit
    ("service", "WAT01", "WAT00", "station", "WAT01"),
    ("repair", "WAT01", "WAT00", "station", "WAT01"),
    ("complaint", "WAT01", "WAT00", "department", "WAT00"),
    ("suggestion", "WAT01", "WAT00", "department", "WAT00"),
    ("praise", "WAT01", "WAT00", "department", "WAT00"),
    ("complaint", "WAT01", None, "department", "WAT01"),        # a station straight under the center
    ("repair", None, None, "station", None),                   # no place: no unit, for a person to set
    ("complaint", None, None, "department", None),
])
def test_route_by_type(type_, station, department, kind, unit):
    found = route(TicketType(type_), station_id=station, department_id=department)
    assert (found.kind.value, found.unit_id) == (kind, unit)
    assert found.why and found.reaches_crews is (kind == "station")


def test_the_default_table_has_a_row_and_a_line_of_help_per_type():
    assert {r.type.value: r.kind.value for r in DEFAULT_ROUTING.rows} == KINDS
    assert all(r.help for r in DEFAULT_ROUTING.rows)


def test_the_shipped_file_is_the_default_table_with_a_line_of_help_per_entry():
    assert load_routing_file(SHIPPED_ROUTING) == DEFAULT_ROUTING
    entries = [line for line in SHIPPED_ROUTING.read_text(encoding="utf-8").splitlines()
               if line and not line.startswith(("#", "["))]
    assert len(entries) == len(TicketType) and all("#" in line for line in entries)


def test_a_routing_file_overrides_some_types_and_keeps_the_others(tmp_path):
    path = tmp_path / "routing.toml"
    path.write_text('[routes]\nsuggestion = "answer"\n', encoding="utf-8")
    table = load_routing(test_settings(tmp_path, ROUTING_FILE=str(path)))
    assert table.kind(TicketType.SUGGESTION) is RouteKind.ANSWER
    assert table.kind(TicketType.COMPLAINT) is RouteKind.DEPARTMENT
    assert load_routing(test_settings(tmp_path)) == DEFAULT_ROUTING  # empty setting: the shipped file


@pytest.mark.parametrize("data, field", [
    ({"routes": {"complaint": "crew"}}, "routes.complaint"),
    ({"routes": {"gossip": "answer"}}, "routes.gossip"),
    ({"routes": ["complaint"]}, "routes"),
    ({"route": {}}, "route"),
])
def test_bad_tables_name_the_key(data, field):
    with pytest.raises(ValidationError) as raised:
        table_from_config(data)
    assert raised.value.field == field


@pytest.mark.parametrize("text, message", [
    ('[routes]\ncomplaint = "crew"\n', "routes.complaint: 'crew' is not a route"),
    ("[routes\n", "ROUTING_FILE"),
])
def test_a_bad_routing_file_names_the_file(tmp_path, text, message):
    path = tmp_path / "routing.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match="ROUTING_FILE .*routing.toml") as raised:
        load_routing_file(path)
    assert message in str(raised.value)
    with pytest.raises(SettingsError, match="absent.toml"):
        load_routing_file(tmp_path / "absent.toml")


def _ticket(type_: str = "complaint", unit: str | None = "WAT00"):
    fields = {"number": "GD20261122-0001", "channel": "phone", "category": "water", "type": type_,
              "description": "水费多收", "caller_phone": "13812341234", "unit_id": unit}
    return new_ticket(fields, now=T0, actor=AGENT)[0]


@pytest.mark.parametrize("type_, refused", [(t, k != "station") for t, k in KINDS.items()])
def test_only_a_station_ticket_may_get_a_crew(type_, refused):
    if refused:
        with pytest.raises(RouteRefused) as raised:
            check_crew_dispatch(_ticket(type_))
        assert raised.value.code == "route_not_for_crew" and "不能派给现场班组" in raised.value.message
    else:
        check_crew_dispatch(_ticket(type_))


UNIT = {"unit_id": "WAT02", "level": 3, "trades": ["water"], "active": True}


@pytest.mark.parametrize("unit, code", [
    (UNIT, None),
    ({**UNIT, "level": 2, "unit_id": "WAT00"}, None),
    (None, "unknown_unit"),
    ({**UNIT, "active": False}, "unit_inactive"),
    ({**UNIT, "trades": ["gas"]}, "unit_other_trade"),
    ({**UNIT, "level": 1, "trades": ["gas", "water"]}, "unit_not_responsible"),
])
def test_unit_refusals(unit, code):
    refusal = unit_refusal("WAT02", unit, "water")
    assert (refusal.code if refusal else None) == code
    if refusal:
        assert refusal.details["field"] == "unit_id"


def test_set_unit_is_a_change_with_who_when_from_to_and_reason():
    ticket = _ticket()
    later = T0 + timedelta(minutes=3)
    changed, event = set_unit(ticket, "WAT02", "投诉对象是营业所", actor=AGENT, now=later, expected_version=1)
    assert (changed.unit_id, changed.version, changed.change_version, changed.state) == ("WAT02", 2, 2, State.NEW)
    assert (event.action, event.actor_id, event.role, event.at, event.note) == ("set_unit", "agent", Role.AGENT,
                                                                                later, "投诉对象是营业所")
    assert event.data == {"from_unit": "WAT00", "unit_id": "WAT02", "reason": "投诉对象是营业所"}
    with pytest.raises(Conflict):  # a note after it would not make version 1 stale; the unit change does
        set_unit(changed, "WAT03", "再改", actor=AGENT, now=later, expected_version=1)
    for bad, error in [({"reason": " "}, ValidationError), ({"unit_id": "WAT00"}, ValidationError),
                       ({"actor": Actor("c", Role.CREW, "C1")}, Forbidden)]:
        args = {"unit_id": "WAT02", "reason": "r", "actor": AGENT, **bad}
        with pytest.raises(error):
            set_unit(ticket, args["unit_id"], args["reason"], actor=args["actor"], now=later)
    dispatched = apply(_ticket("repair", "WAT01"), "dispatch", actor=Actor("d", Role.DISPATCHER), now=later,
                       crew_id="C1")[0]
    assert not may_set_unit(dispatched, AGENT)
    with pytest.raises(InvalidTransition):
        set_unit(dispatched, "WAT02", "r", actor=AGENT, now=later)


# ---------------------------------------------------------------------------- the API on the demo city

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo city (a 二级 department above every 三级 station, every trade)."""
    return load_profile(democity.generate(tmp_path_factory.mktemp("city")))


@pytest.fixture
async def api(tmp_path, redis_url, database_url, demo):
    server, client = await serve_tickets(tmp_path, redis_url, database_url, demo, Clock(T0))
    await UnitStore(client.store.db).seed(nodes_of_city(demo), T0.timestamp())
    where = demo.stations.set_index("station_id").loc["SS01"].geometry
    client.place = {"lon": where.x, "lat": where.y, "category": "water"}
    client.station, client.department = ("WAT01", "WAT00")
    assert client.manager.lookup.locate(where.x, where.y, "water").department_id == "WAT00"
    yield client
    server.stop()
    await server.close_all_connections()
    await client.store.close()


async def _timeline(api, number: str) -> list[dict]:
    code, body = await api.call("GET", f"/api/tickets/{number}/timeline", "supervisor")
    assert code == 200
    return body["events"]


@pytest.mark.integration
@pytest.mark.asyncio
async def test_each_type_gets_its_station_or_department_and_route(api):
    expected_unit = {"answer": None, "station": api.station, "department": api.department}
    for k, (type_, kind) in enumerate(KINDS.items()):
        code, body = await api.create(type=type_, description=f"来电{type_}", caller_phone=f"1380000{k:04d}",
                                      link=False, **api.place)
        assert code == 201, body
        ticket = body["ticket"]
        assert (ticket["route"], ticket["unit_id"]) == (kind, expected_unit[kind]), type_
        assert ticket["route_why"]
        assert "set_unit" in ticket["allowed_actions"]
        create = (await _timeline(api, ticket["number"]))[0]
        assert (create["action"], create["data"]["route"], create["data"]["unit_id"]) == \
            ("create", kind, expected_unit[kind])
        code, seen = await api.call("GET", f"/api/tickets/{ticket['number']}", "dispatcher")
        assert seen["route"] == kind
        assert ("dispatch" in seen["allowed_actions"]) is (kind == "station")  # the console's assign button
    code, body = await api.create(type="consultation", description="水费怎么交", answer="可在网上营业厅缴纳",
                                  caller_phone="13900000001", **api.place)
    assert code == 201 and (body["ticket"]["state"], body["ticket"]["route"], body["ticket"]["unit_id"]) == \
        ("closed", "answer", None)


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_review_that_changes_the_type_routes_the_ticket_again(api):
    _, body = await api.create(type="complaint", description="抄表员态度差", **api.place)
    number = body["ticket"]["number"]
    code, reviewed = await api.act("dispatcher", number, "review", type="repair")
    assert code == 200, reviewed
    assert (reviewed["ticket"]["route"], reviewed["ticket"]["unit_id"]) == ("station", api.station)
    review = (await _timeline(api, number))[-1]
    assert review["data"]["route"] == "station"
    assert (review["data"]["from_unit"], review["data"]["unit_id"]) == (api.department, api.station)


@pytest.mark.integration
@pytest.mark.asyncio
async def test_the_agent_sets_another_unit_with_a_reason_audited(api):
    code, body = await api.create(type="complaint", description="营业所收费不合理", unit_id="WAT02",
                                  unit_reason="来电人所投诉的是第二营业所", **api.place)
    assert code == 201, body
    number = body["ticket"]["number"]
    assert (body["ticket"]["unit_id"], body["ticket"]["route"]) == ("WAT02", "department")
    create = (await _timeline(api, number))[0]
    assert (create["actor_id"], create["at"], create["data"]["unit_id"]) == ("agent", "2026-11-22T02:00:00Z", "WAT02")
    assert create["data"]["unit_override"] == {"from_unit": api.department, "unit_id": "WAT02",
                                               "reason": "来电人所投诉的是第二营业所"}
    api.clock.now = T0 + timedelta(minutes=5)
    code, moved = await api.act("dispatcher", number, "set_unit", unit_id="WAT00", reason="由供水集团统一答复")
    assert code == 200 and moved["ticket"]["unit_id"] == "WAT00"
    event = (await _timeline(api, number))[-1]
    assert (event["action"], event["actor_id"], event["role"], event["at"], event["note"]) == \
        ("set_unit", "dispatcher", "dispatcher", "2026-11-22T02:05:00Z", "由供水集团统一答复")
    assert (event["data"]["from_unit"], event["data"]["unit_id"]) == ("WAT02", "WAT00")
    code, stale = await api.call("POST", f"/api/tickets/{number}/actions/set_unit", "agent",
                                 {"expected_version": 1, "unit_id": "WAT03", "reason": "再改"})
    assert code == 409 and stale["error"]["code"] == "conflict"


@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_bad_unit_is_a_400_and_nothing_is_written(api):
    await UnitStore(api.store.db).update("WAT04", {"active": False}, by="admin", role="admin", at=T0.timestamp())
    bad = [({"unit_id": "NOPE", "unit_reason": "r"}, "unknown_unit"),
           ({"unit_id": "WAT04", "unit_reason": "r"}, "unit_inactive"),
           ({"unit_id": "GAS01", "unit_reason": "r"}, "unit_other_trade"),
           ({"unit_id": "CENTER", "unit_reason": "r"}, "unit_not_responsible"),
           ({"unit_id": "WAT02"}, "validation_error"),                  # no reason
           ({"unit_id": 7, "unit_reason": "r"}, "validation_error")]
    for fields, code_name in bad:
        code, body = await api.create(type="complaint", **api.place, **fields)
        assert (code, body["error"]["code"]) == (400, code_name), fields
    assert (await api.call("GET", "/api/tickets?state=open", "supervisor"))[1]["total"] == 0  # none created
    _, body = await api.create(type="complaint", **api.place)
    number = body["ticket"]["number"]
    for args, code_name in [({"unit_id": "NOPE", "reason": "r"}, "unknown_unit"),
                            ({"unit_id": "GAS01", "reason": "r"}, "unit_other_trade"),
                            ({"unit_id": "WAT02", "reason": ""}, "validation_error"),
                            ({"unit_id": "WAT02", "reason": "r", "crew_id": "C1"}, "validation_error")]:
        code, refused = await api.act("agent", number, "set_unit", **args)
        assert (code, refused["error"]["code"]) == (400, code_name), args
    assert [e["action"] for e in await _timeline(api, number)] == ["create"]


# ---------------------------------------------------------------------------- no field crew (river city)

@pytest.mark.integration
@pytest.mark.asyncio
async def test_a_complaint_never_reaches_a_field_crew(dispatch_api):
    office = {t: await dispatch_api.create(type=t, caller_phone=f"1390000000{k}", description=f"紧急{t}")
              for k, t in enumerate(("complaint", "consultation", "suggestion", "praise"))}
    # an emergency repair at the same place: not a repeat of the open complaint (another route)
    repair = await dispatch_api.create(caller_phone="13900000009")
    assert await wait_for(lambda: dispatch_api.dispatched_to(repair)) == "C01"  # the watcher has seen them all
    lon, lat = ll(*TICKET_XY)
    code, again = await dispatch_api.call("POST", "/api/tickets", "agent", {  # the complaint's caller calls again
        "channel": "phone", "category": "power", "type": "complaint", "description": "还没人处理",
        "caller_phone": "13900000000", "lon": lon, "lat": lat})
    assert code == 200 and again["linked"] and again["ticket"]["number"] == office["complaint"]
    for type_, number in office.items():
        ticket = await dispatch_api.ticket(number)
        assert (ticket["state"], ticket["crew_id"], ticket["route"]) == ("new", None, KINDS[type_]), type_
        assert "dispatch" not in ticket["allowed_actions"]
        assert await dispatch_api.parts.store.recommendation(number) is None
    complaint = office["complaint"]
    code, view = await dispatch_api.call("GET", f"/api/tickets/{complaint}/recommendation")
    assert code == 200 and view["recommendations"] == [] and view["route"] == "department" and "不推荐" in view["note"]
    version = (await dispatch_api.ticket(complaint))["version"]
    for path, body in [(f"/api/tickets/{complaint}/assign", {"crew_id": "C02", "expected_version": version}),
                       (f"/api/tickets/{complaint}/actions/dispatch", {"crew_id": "C02", "expected_version": version}),
                       ("/api/dispatch/joint", {"numbers": [complaint], "apply": True})]:
        code, refused = await dispatch_api.call("POST", path, body=body)
        assert code == 409 and refused["error"]["code"] == "route_not_for_crew", (path, refused)
        assert "不能派给现场班组" in refused["error"]["message"]
    ticket = await dispatch_api.ticket(complaint)
    assert (ticket["state"], ticket["crew_id"], ticket["version"]) == ("new", None, version)
    await dispatch_api.parts.dispatch.dispatch_pool_ticket(complaint)  # asked directly: still nothing
    assert (await dispatch_api.ticket(complaint))["state"] == "new"


def test_route_refused_and_unit_refusals_map_to_409_and_400():
    from command.routing import RouteRefused, UnitOverrideRefused

    assert (RouteRefused.status, UnitOverrideRefused.status) == (409, 400)
    assert dataclasses.is_dataclass(DEFAULT_ROUTING)
