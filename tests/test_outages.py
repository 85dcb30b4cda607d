"""The pure rules of an incident handled once (`command.outages`), table-driven: who sets the ETR
and which times are refused, the notice's kind, area and Chinese text, how it follows the ETR and is
withdrawn, the answer read to a caller, and which incidents are near a place."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from command.errors import Forbidden, ValidationError
from command.grouping import Incident
from command.outages import (
    answer_text, default_area_text, follow_etr, near_incidents, notice_kind, publish_notice, set_etr,
    wall_time, withdraw_notice,
)
from command.ticket_model import Actor, Category, Role

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)  # 10:00 in the center's zone
DISPATCHER = Actor("d1", Role.DISPATCHER)
INCIDENT = Incident("INC20261207-0001", Category.WATER, "SEG0042", None, "GD20261207-0001",
                    ("GD20261207-0001", "GD20261207-0002"), NOW - timedelta(minutes=30), NOW - timedelta(minutes=5))


@pytest.mark.parametrize("actor, crew, allowed", [
    (DISPATCHER, None, True), (Actor("s1", Role.SUPERVISOR), None, True), (Actor("a", Role.ADMIN), None, True),
    (Actor("c1", Role.CREW, "C01"), "C01", True),  # the crew of the primary ticket
    (Actor("c2", Role.CREW, "C02"), "C01", False), (Actor("c3", Role.CREW, "C03"), None, False),
    (Actor("ag", Role.AGENT), None, False), (Actor("u", Role.UNIT), None, False),
])
def test_who_sets_the_etr(actor, crew, allowed):
    etr = NOW + timedelta(hours=2)
    if allowed:
        changed, event = set_etr(INCIDENT, etr.isoformat(), actor=actor, now=NOW, primary_crew_id=crew)
        assert (changed.etr, changed.etr_by, event.actor_id, event.action) == (etr, actor.user_id, actor.user_id, "etr_set")
    else:
        with pytest.raises(Forbidden):
            set_etr(INCIDENT, etr.isoformat(), actor=actor, now=NOW, primary_crew_id=crew)


@pytest.mark.parametrize("value, message", [
    ("2026-12-07T01:59:00Z", "future"), ("2026-12-07T02:00:00Z", "future"), ("2027-01-07T02:00:01Z", "30 days"),
    ("2026-12-07T12:00:00", "zone"), ("soon", "ISO-8601"), (None, "ISO-8601"), (7, "ISO-8601"),
])
def test_refused_etrs(value, message):
    with pytest.raises(ValidationError) as refused:
        set_etr(INCIDENT, value, actor=DISPATCHER, now=NOW)
    assert refused.value.details["field"] == "etr" and message in str(refused.value)


def test_a_resolved_incident_takes_no_etr_and_the_event_says_from_and_to():
    first, _ = set_etr(INCIDENT, "2026-12-07T14:30:00+08:00", note="关阀抢修", actor=DISPATCHER, now=NOW)
    second, event = set_etr(first, "2026-12-07T16:00:00+08:00", actor=DISPATCHER, now=NOW)
    assert event.data == {"etr": "2026-12-07T08:00:00+00:00", "from": "2026-12-07T06:30:00+00:00"}
    assert event.note == "预计恢复时间 12月7日 16:00" and second.etr_note == ""
    with pytest.raises(ValidationError, match="resolved"):
        set_etr(dataclasses.replace(first, resolved_at=NOW), "2026-12-07T16:00:00+08:00", actor=DISPATCHER, now=NOW)


@pytest.mark.parametrize("category, kind", [(Category.WATER, "停水"), (Category.POWER, "停电"), (Category.GAS, "停气"),
                                            (Category.HEATING, "停暖")])
def test_notice_kinds(category, kind):
    assert notice_kind(category).name == kind


def test_no_notice_for_a_trade_without_outages():
    with pytest.raises(ValidationError):
        publish_notice(dataclasses.replace(INCIDENT, category=Category.SANITATION), None, {}, actor=DISPATCHER, now=NOW)


@pytest.mark.parametrize("addresses, area", [
    ((), "SEG0042片区"), (("朝阳新村4号楼", " ", "朝阳新村4号楼", "东风路12号", "银杏苑", "人民医院"),
                         "SEG0042片区（朝阳新村4号楼、东风路12号、银杏苑等）"),
])
def test_default_area_text(addresses, area):
    assert default_area_text(INCIDENT, addresses) == area


def test_the_notice_is_prefilled_follows_the_etr_and_is_withdrawn():
    notice, event = publish_notice(INCIDENT, None, {}, actor=DISPATCHER, now=NOW, addresses=["东风路12号"])
    assert (notice.kind, notice.area_text, notice.starts_at, notice.state, event.action) == (
        "停水", "SEG0042片区（东风路12号等）", INCIDENT.first_call_at, "active", "notice_published")
    assert notice.text == ("【停水通知】因供水管道突发故障，SEG0042片区（东风路12号等）自12月7日 09:30起停水。"
                           "抢修人员正在全力抢修，恢复供水时间待定，我们将及时通告。给您带来不便，敬请谅解。")
    incident, _ = set_etr(INCIDENT, "2026-12-07T15:00:00+08:00", actor=DISPATCHER, now=NOW)
    followed, _ = follow_etr(notice, incident, actor=DISPATCHER, now=NOW)
    assert followed.etr == incident.etr and "预计12月7日 15:00恢复供水" in followed.text
    own, event = publish_notice(incident, followed, {"text": "东风路停水，预计12月7日 15:00恢复。"}, actor=DISPATCHER, now=NOW)
    assert own.text_custom and event.action == "notice_updated" and own.published_at == notice.published_at
    later, _ = set_etr(incident, "2026-12-07T17:30:00+08:00", actor=DISPATCHER, now=NOW)
    assert follow_etr(own, later, actor=DISPATCHER, now=NOW)[0].text == "东风路停水，预计12月7日 17:30恢复。"
    gone, event = withdraw_notice(own, actor=DISPATCHER, now=NOW)
    assert (gone.state, gone.active, gone.withdrawn_by, event.action) == ("withdrawn", False, "d1", "notice_withdrawn")


@pytest.mark.parametrize("body, field", [({"area_text": "x" * 201}, "area_text"), ({"start": "morning"}, "start"),
                                         ({"text": 5}, "text"), ({"etr": "2026-12-07T15:00:00Z"}, "etr")])
def test_refused_notices(body, field):
    with pytest.raises(ValidationError) as refused:
        publish_notice(INCIDENT, None, body, actor=DISPATCHER, now=NOW)
    assert refused.value.details["field"] == field


def test_only_the_office_publishes_a_notice():
    with pytest.raises(Forbidden):
        publish_notice(INCIDENT, None, {}, actor=Actor("c1", Role.CREW, "C01"), now=NOW)


def test_the_answer_names_the_area_and_the_etr():
    assert answer_text(INCIDENT, None) == ("您好，您反映的停水情况我们已经掌握，是SEG0042片区供水管道突发故障引起的，"
                                           "抢修人员正在全力抢修，恢复供水时间确定后我们会及时通知。给您带来不便，敬请谅解。")
    incident, _ = set_etr(INCIDENT, "2026-12-07T15:00:00+08:00", actor=DISPATCHER, now=NOW)
    notice, _ = publish_notice(incident, None, {"area_text": "东风路两侧"}, actor=DISPATCHER, now=NOW)
    assert "是东风路两侧供水管道突发故障引起的" in answer_text(incident, notice)
    assert "预计12月7日 15:00恢复供水" in answer_text(incident, notice)
    assert answer_text(dataclasses.replace(incident, resolved_at=NOW), None) == \
        "您好，SEG0042片区的停水故障已经修复，已恢复供水。如仍有问题，请再告诉我们。"


def _flat(lon1, lat1, lon2, lat2):  # metres on a toy plane: 1 degree = 100,000 m
    return ((lon1 - lon2) ** 2 + (lat1 - lat2) ** 2) ** 0.5 * 100_000


def test_near_incidents_are_those_of_the_category_with_a_call_within_the_radius_nearest_first():
    far = dataclasses.replace(INCIDENT, incident_id="INC-FAR")
    near = dataclasses.replace(INCIDENT, incident_id="INC-NEAR")
    power = dataclasses.replace(INCIDENT, incident_id="INC-POWER", category=Category.POWER)
    resolved = dataclasses.replace(INCIDENT, incident_id="INC-DONE", resolved_at=NOW)
    found = near_incidents(0.0, 0.0, Category.WATER, [
        (far, [(0.0028, 0.0), (0.01, 0.0)]), (near, [(0.001, 0.0)]), (power, [(0.0, 0.0)]), (resolved, [(0.0, 0.0)]),
        (dataclasses.replace(INCIDENT, incident_id="INC-OUT"), [(0.0031, 0.0)]),
        (dataclasses.replace(INCIDENT, incident_id="INC-NOPOINT"), [])], distance_fn=_flat)
    assert [(i.incident_id, round(d)) for i, d in found] == [("INC-NEAR", 100), ("INC-FAR", 280)]


@pytest.mark.parametrize("at, text", [(None, "待定"), (datetime(2026, 12, 31, 16, 5, tzinfo=timezone.utc), "1月1日 00:05")])
def test_wall_time_is_the_centers(at, text):
    assert wall_time(at) == text
