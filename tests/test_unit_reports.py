"""The unit report (单位考核, issue #23): per 二级 department (its stations summed in) and 三级
station, tickets received, on-time acceptance and feedback (an approved extension honoured),
returns, extensions, 督办, callback satisfaction and rework; the 考核 score and its ranking; the
tickets behind every number; `set_unit` moving the ticket's unit. First on the pure fold of
hand-written events (every number exact), then through the HTTP API of a running app over real
PostgreSQL and Redis (tickets driven by the real TicketManager, the 督办 by the SupervisionService)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from command.kpi import facts_from_events, rebuild
from command.kpi_units import UNIT_DRILLS, drill_unit, score, unit_rows
from command.ticket_model import CENTER_TZ
from services.kpi_service import shipped_policy

UTC = timezone.utc
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai
M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
TREE = [{"unit_id": "CENTER", "parent_id": None, "level": 1, "name": "热线中心"},
        {"unit_id": "PWR00", "parent_id": "CENTER", "level": 2, "name": "供电公司"},
        {"unit_id": "PWR01", "parent_id": "PWR00", "level": 3, "name": "东供电所"},
        {"unit_id": "PWR02", "parent_id": "PWR00", "level": 3, "name": "西供电所"},
        {"unit_id": "WAT00", "parent_id": "CENTER", "level": 2, "name": "水务集团"},
        {"unit_id": "WAT01", "parent_id": "WAT00", "level": 3, "name": "自来水公司"}]
START = datetime(2026, 11, 24, tzinfo=CENTER_TZ)
END = START + 14 * D


def story() -> dict[str, list[dict]]:
    """Four tickets through the unit path (see each line); events per ticket number."""
    out: dict[str, list[dict]] = {}

    def ev(number: str, at: datetime, action: str, **data) -> None:
        out.setdefault(number, []).append({"ticket_number": number, "action": action, "at": at.isoformat(),
                                           "data": data})

    def created(number: str, unit: str, type_: str) -> None:
        ev(number, T0, "create", channel="phone", category="power", type=type_, unit_id=unit)

    # A: PWR01 service, accepted at once, fed back the next day, the citizen satisfied
    created("A", "PWR01", "service")
    ev("A", T0 + 5 * M, "assign", unit_id="PWR01")
    ev("A", T0 + 15 * M, "unit_accept")
    ev("A", T0 + D, "feedback", resolution="已处理")
    ev("A", T0 + D + H, "close", satisfaction="satisfied")
    # B: PWR01 service, accepted late, an extension approved, fed back after 3 working days but
    # before the extension, reworked once (dissatisfied), then satisfied
    created("B", "PWR01", "service")
    ev("B", T0 + 5 * M, "assign", unit_id="PWR01")
    ev("B", T0 + 2 * H, "unit_accept")
    ev("B", T0 + D, "request_extension", reason="需协调", until=(T0 + 10 * D).isoformat())
    ev("B", T0 + D + H, "approve_extension")
    ev("B", T0 + 7 * D, "feedback", resolution="已处理")
    ev("B", T0 + 7 * D + H, "reopen", satisfaction="dissatisfied")
    ev("B", T0 + 8 * D, "feedback", resolution="已返工")
    ev("B", T0 + 8 * D + H, "close", satisfaction="satisfied")
    # C: PWR02 complaint, a 督办 issued and urged, fed back on time, the callback dissatisfied
    created("C", "PWR02", "complaint")
    ev("C", T0 + 5 * M, "assign", unit_id="PWR02")
    ev("C", T0 + 25 * M, "unit_accept")
    ev("C", T0 + H, "note", supervision="issue", supervision_id=1)
    ev("C", T0 + 2 * H, "note", note="催办", data={"supervision": "urge", "supervision_id": 1})  # as stored
    ev("C", T0 + 3 * H, "note", supervision="answer", supervision_id=1)
    ev("C", T0 + 2 * D, "feedback", resolution="已答复")
    ev("C", T0 + 2 * D + H, "reopen", satisfaction="dissatisfied")
    # D: created for PWR02, moved to WAT01 by set_unit, accepted, its return asked and approved
    created("D", "PWR02", "service")
    ev("D", T0 + 2 * M, "set_unit", from_unit="PWR02", unit_id="WAT01", reason="属水务")
    ev("D", T0 + 5 * M, "assign", unit_id="WAT01")
    ev("D", T0 + 10 * M, "unit_accept")
    ev("D", T0 + H, "request_return", reason="非本单位职责")
    ev("D", T0 + 2 * H, "approve_return")
    return out


def state():
    return rebuild([e for events in story().values() for e in events], policy=shipped_policy())


ZERO = dict(return_requests=0, returns_approved=0, extension_requests=0, extensions_approved=0, supervisions=0,
            urgings=0, escalations=0)
EXPECTED = {
    "PWR01": dict(tickets=2, accept_judged=2, accept_on_time=1, feedback_judged=2, feedback_on_time=2,
                  **{**ZERO, "extension_requests": 1, "extensions_approved": 1}, callbacks=2, satisfied=2, rework=1,
                  accept_rate=0.5, feedback_rate=1.0, satisfied_rate=1.0, score=75.0, level=3, rank=2),
    "PWR02": dict(tickets=1, accept_judged=1, accept_on_time=1, feedback_judged=1, feedback_on_time=1,
                  **{**ZERO, "supervisions": 1, "urgings": 1}, callbacks=1, satisfied=0, rework=1,
                  accept_rate=1.0, feedback_rate=1.0, satisfied_rate=0.0, score=40.0, level=3, rank=3),
    "WAT01": dict(tickets=1, accept_judged=1, accept_on_time=1, feedback_judged=0, feedback_on_time=0,
                  **{**ZERO, "return_requests": 1, "returns_approved": 1}, callbacks=0, satisfied=0, rework=0,
                  accept_rate=1.0, feedback_rate=None, satisfied_rate=None, score=100.0, level=3, rank=1),
    "PWR00": dict(tickets=3, accept_judged=3, accept_on_time=2, feedback_judged=3, feedback_on_time=3,
                  **{**ZERO, "extension_requests": 1, "extensions_approved": 1, "supervisions": 1, "urgings": 1},
                  callbacks=3, satisfied=2, rework=2, accept_rate=2 / 3, feedback_rate=1.0, satisfied_rate=2 / 3,
                  score=63.3, level=2, rank=2, stations=2),
    "WAT00": dict(tickets=1, accept_judged=1, accept_on_time=1, feedback_judged=0, feedback_on_time=0,
                  **{**ZERO, "return_requests": 1, "returns_approved": 1}, callbacks=0, satisfied=0, rework=0,
                  accept_rate=1.0, feedback_rate=None, satisfied_rate=None, score=100.0, level=2, rank=1, stations=1),
}


def test_set_unit_moves_the_tickets_unit_in_the_fold():
    facts = facts_from_events(story()["D"])
    assert (facts.first_unit_id, facts.unit_id) == ("PWR02", "WAT01")


def test_every_units_numbers_are_exact_and_ranked_within_its_level():
    s = state()
    rows = unit_rows(s.columns(), s.codes["unit"].names, START, END, TREE)
    assert [(r["level"], r["rank"], r["unit_id"]) for r in rows] == [
        (2, 1, "WAT00"), (2, 2, "PWR00"), (3, 1, "WAT01"), (3, 2, "PWR01"), (3, 3, "PWR02")]
    by_id = {r["unit_id"]: r for r in rows}
    for unit_id, expected in EXPECTED.items():
        got = {k: by_id[unit_id][k] for k in expected}
        assert got == pytest.approx(expected), unit_id
    assert by_id["PWR00"]["name"] == "供电公司" and by_id["PWR01"]["parent_id"] == "PWR00"


def test_the_score_follows_its_formula():
    row = dict(accept_rate=0.5, feedback_rate=None, satisfied_rate=1.0, tickets=4, feedback_judged=0,
               rework=1, supervisions=2, escalations=1)
    assert score(row) == round(15 + 40 + 30 - (20 + 20 + 20) / 4, 1)


DRILLS = [
    ("PWR00", "tickets", {"A", "B", "C"}), ("PWR01", "tickets", {"A", "B"}), ("PWR00", "accept_late", {"B"}),
    ("PWR00", "accept_on_time", {"A", "C"}), ("PWR01", "feedback_on_time", {"A", "B"}),
    ("PWR00", "feedback_late", set()), ("PWR01", "extension_requests", {"B"}),
    ("PWR01", "extensions_approved", {"B"}), ("PWR00", "supervisions", {"C"}), ("PWR02", "urgings", {"C"}),
    ("WAT00", "return_requests", {"D"}), ("WAT01", "returns_approved", {"D"}), ("PWR02", "return_requests", set()),
    ("PWR00", "callbacks", {"A", "B", "C"}), ("PWR00", "satisfied", {"A", "B"}), ("PWR00", "dissatisfied", {"C"}),
    ("PWR00", "rework", {"B", "C"}), ("WAT00", "rework", set()),
]


@pytest.mark.parametrize(("unit_id", "metric", "numbers"), DRILLS)
def test_a_drill_down_lists_exactly_the_tickets_behind_the_number(unit_id, metric, numbers):
    s = state()
    rows = drill_unit(s.columns(), s.codes["unit"].names, START, END, TREE, unit_id, metric)
    assert set(s.numbers(rows)) == numbers


def test_every_drill_metric_is_tested():
    assert {m for _, m, _ in DRILLS} | {"accept_judged", "feedback_judged", "escalations"} == set(UNIT_DRILLS)


def test_a_period_counts_creations_and_last_resolutions_in_it():
    s = state()
    day = date(2026, 12, 2)  # B's second feedback (T0 + 8 days) alone
    start = datetime(day.year, day.month, day.day, tzinfo=CENTER_TZ)
    rows = {r["unit_id"]: r for r in unit_rows(s.columns(), s.codes["unit"].names, start, start + D, TREE)}
    assert set(rows) == {"PWR00", "PWR01"}
    assert (rows["PWR01"]["tickets"], rows["PWR01"]["feedback_judged"], rows["PWR01"]["rework"]) == (0, 1, 1)


# ------------------------------------------------------------------ through the HTTP API

from store.supervision import SupervisionStore  # noqa: E402
from store.units import UnitStore  # noqa: E402
from command.ticket_model import Actor, Role  # noqa: E402
from gis.units import UnitNode  # noqa: E402
from services.supervision import SupervisionService  # noqa: E402
from tests.conftest import T0 as DAY0  # noqa: E402
from tests.reporting import DISPATCHER, WEST  # noqa: E402

SUPERVISOR = Actor("supervisor", Role.SUPERVISOR)
RANGE = "period=range&from=2026-11-22&to=2026-12-05"
NODES = [UnitNode("CENTER", None, 1, "测试市热线中心", ("power", "water", "gas")),
         UnitNode("PWR00", "CENTER", 2, "供电公司", ("power",)), UnitNode("WAT00", "CENTER", 2, "水务集团", ("water",)),
         UnitNode("GAS00", "CENTER", 2, "燃气集团", ("gas",)),
         UnitNode("PWR01", "PWR00", 3, "东供电所", ("power",)), UnitNode("PWR02", "PWR00", 3, "西供电所", ("power",)),
         UnitNode("WAT01", "WAT00", 3, "自来水公司", ("water",)), UnitNode("GAS01", "GAS00", 3, "燃气公司", ("gas",))]


def liaison(unit_id: str) -> Actor:
    return Actor(f"unit-{unit_id.lower()}", Role.UNIT, unit_ids=frozenset({unit_id}))


async def drive_units(reports_app) -> dict[str, str]:
    """A: PWR02's service request (受理 on time, 延期 approved, a 督办, 反馈, the callback
    dissatisfied: rework); B: moved to PWR01 by set_unit, accepted, its 退单 approved."""
    assert await UnitStore(reports_app.store.db).seed(NODES, DAY0.timestamp())
    d, m = reports_app.driver, reports_app.manager
    a = await d.call(DAY0, WEST, type="service", description="电表箱门坏了")
    assert (await m.store.get(a)).ticket.unit_id == "PWR02"
    await d.step(5, a, "assign", DISPATCHER)
    await d.step(10, a, "unit_accept", liaison("PWR02"))
    await d.step(30, a, "request_extension", liaison("PWR02"), reason="需协调物业",
                 until=(DAY0 + timedelta(days=9)).isoformat())
    await d.step(30, a, "approve_extension", SUPERVISOR)
    supervision = SupervisionService(m, SupervisionStore(reports_app.store.db), UnitStore(reports_app.store.db))
    await supervision.issue(a, SUPERVISOR, message="请尽快办理")
    await d.step(60 * 24 * 6, a, "feedback", liaison("PWR02"), resolution="已更换箱门")
    await d.callback(a, "dissatisfied")
    b = await d.call(DAY0 + 10 * M, WEST, type="service", description="路灯不亮")
    await d.step(2, b, "set_unit", DISPATCHER, unit_id="PWR01", reason="属东供电所")
    await d.step(3, b, "assign", DISPATCHER)
    await d.step(10, b, "unit_accept", liaison("PWR01"))
    await d.step(20, b, "request_return", liaison("PWR01"), reason="非本所辖区")
    await d.step(20, b, "approve_return", DISPATCHER)
    return {"A": a, "B": b}


async def test_the_unit_report_api_its_drill_down_export_and_roles(reports_app):
    n = await drive_units(reports_app)
    reply = await reports_app.get(f"/api/reports/units?{RANGE}")
    by_id = {u["unit_id"]: u for u in reply["units"]}
    assert [(u["level"], u["rank"], u["unit_id"]) for u in reply["units"]] == [
        (2, 1, "PWR00"), (3, 1, "PWR01"), (3, 2, "PWR02")]
    assert {k: by_id["PWR02"][k] for k in ("tickets", "accept_on_time", "accept_judged", "feedback_on_time",
                                           "feedback_judged", "extension_requests", "extensions_approved",
                                           "supervisions", "callbacks", "satisfied", "rework", "score")} == dict(
        tickets=1, accept_on_time=1, accept_judged=1, feedback_on_time=1, feedback_judged=1, extension_requests=1,
        extensions_approved=1, supervisions=1, callbacks=1, satisfied=0, rework=1, score=40.0)
    assert {k: by_id["PWR01"][k] for k in ("tickets", "accept_on_time", "return_requests", "returns_approved",
                                           "score")} == dict(tickets=1, accept_on_time=1, return_requests=1,
                                                             returns_approved=1, score=100.0)
    assert (by_id["PWR00"]["tickets"], by_id["PWR00"]["stations"], by_id["PWR00"]["score"]) == (2, 2, 55.0)
    assert reply["score"]["points"]["feedback_rate"] == 40.0 and "rework" in reply["drill_metrics"]

    async def drill(unit_id: str, metric: str) -> set[str]:
        found = await reports_app.get(f"/api/reports/units/drill?{RANGE}&unit_id={unit_id}&metric={metric}")
        assert found["total"] == len(found["tickets"])
        assert all(t["phone"] is None or "*" in t["phone"] for t in found["tickets"])
        return {t["number"] for t in found["tickets"]}

    assert await drill("PWR00", "tickets") == {n["A"], n["B"]}
    assert await drill("PWR00", "supervisions") == await drill("PWR02", "rework") == {n["A"]}
    assert await drill("PWR00", "dissatisfied") == {n["A"]}
    assert await drill("PWR00", "returns_approved") == await drill("PWR01", "tickets") == {n["B"]}
    assert await drill("PWR02", "return_requests") == set()

    bad = await reports_app.get(f"/api/reports/units/drill?{RANGE}&unit_id=PWR00&metric=nope", expect=400)
    assert bad["error"]["field"] == "metric"
    bad = await reports_app.get(f"/api/reports/units/drill?{RANGE}&metric=tickets", expect=400)
    assert bad["error"]["field"] == "unit_id"
    for user, status in (("agent", 403), ("dispatcher", 200), ("admin", 200), (None, 401)):
        await reports_app.get(f"/api/reports/units?{RANGE}", user=user, expect=status)

    response = await reports_app.fetch(f"/api/reports/export?{RANGE}&format=xlsx")
    assert response.code == 200
    import io

    import openpyxl
    sheet = openpyxl.load_workbook(io.BytesIO(response.body))["单位考核"]
    lines = [[c.value for c in row] for row in sheet.iter_rows()]
    assert lines[0][:5] == ["名次", "级别", "单位编号", "单位", "考核得分"]
    assert [line[:5] for line in lines[1:]] == [[1, "二级", "PWR00", "供电公司", 55], [1, "三级", "PWR01", "东供电所", 100],
                                                [2, "三级", "PWR02", "西供电所", 40]]
