"""CAP 1.2 rendering of police-linkage messages, validated against the OASIS schema."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st

from command.cap import CapError, cap_time, to_cap
from command.police import Handover, IncidentTransfer, PoliceStatus, ResultReport, message_key

UTC = timezone.utc
T0 = datetime(2026, 11, 22, 5, 30, 0, 250_000, tzinfo=UTC)
NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
SENDER = "dispatch@12345.hotline.example"
SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parent / "data" / "cap" / "CAP-v1.2.xsd"))

HANDOVER = Handover(
    message_id="6f1c2a9e-1d1b-4c55-9a57-3f0a1c1b2d3e",
    idempotency_key=message_key("GD20261122-0001", "handover", 1),
    ticket_number="GD20261122-0001",
    kind="gas_leak",
    summary='楼道内有浓烈煤气味 <3楼> & "4楼"，请速派警',
    address="北京市朝阳区幸福路1号院3号楼",
    lon=116.4833,
    lat=39.9219,
    caller="138****5678",
    urgency="emergency",
    created_at=T0,
)
RESULT = ResultReport(
    message_id="a0b1c2d3-0000-4000-8000-000000000001",
    idempotency_key=message_key("GD20261122-0002", "result", 1),
    police_incident_id="JJ110-20261122-000123",
    ticket_number="GD20261122-0002",
    category="water",
    outcome="已更换破损水表，恢复供水",
    unit="朝阳供水所",
    resolved_at=T0 + timedelta(hours=2),
    created_at=T0 + timedelta(hours=2, minutes=1),
)
TRANSFER = IncidentTransfer(
    message_id="p-2",
    police_incident_id="JJ110-20261122-000123",
    category_hint="water",
    description="小区停水一天，群众情绪激动",
    address="朝阳区望京街10号",
    lon=116.47,
    lat=40.0,
    caller_name="张先生",
    caller_phone="13900001111",
    at=T0,
)


def status(value: str) -> PoliceStatus:
    return PoliceStatus("p-1", "GD20261122-0001", "JJ110-1", value, T0, "民警已到场，疏散群众")


ALL_MESSAGES = [
    HANDOVER,
    dataclasses.replace(HANDOVER, lon=None, lat=None, kind="dispatcher_manual", urgency="normal"),
    RESULT,
    status("received"),
    status("dispatched"),
    status("on_scene"),
    dataclasses.replace(status("closed"), ticket_number=None, note=""),
    TRANSFER,
    dataclasses.replace(TRANSFER, lon=None, lat=None, category_hint="交通"),
]
IDS = ["handover", "manual-no-point", "result", "received", "dispatched", "on_scene", "closed", "transfer", "transfer-no-point"]


def parse(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def text(root: ET.Element, path: str) -> str | None:
    node = root.find(path, NS)
    return None if node is None else node.text


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=IDS)
def test_every_message_validates_against_cap_1_2(msg):
    xml = to_cap(msg, sender=SENDER)
    SCHEMA.validate(xml.decode("utf-8"))
    root = parse(xml)
    assert root.tag == "{urn:oasis:names:tc:emergency:cap:1.2}alert"
    assert text(root, "cap:identifier") == msg.message_id
    assert text(root, "cap:sender") == SENDER
    assert text(root, "cap:status") == "Actual"
    assert text(root, "cap:info/cap:language") == "zh-CN"


@pytest.mark.parametrize("msg", ALL_MESSAGES, ids=IDS)
def test_no_z_times_and_china_offset(msg):
    xml = to_cap(msg, sender=SENDER).decode("utf-8")
    times = re.findall(r"\d{4}-\d\d-\d\dT[0-9:.]+[^<]*", xml)
    assert times
    assert all(t.endswith("+08:00") for t in times), times
    assert not re.search(r"\d\dZ", xml)


@pytest.mark.parametrize(
    "msg, msg_type, categories, ucs",
    [
        (HANDOVER, "Alert", ["Fire", "Safety"], ["Immediate", "Extreme", "Observed"]),
        (dataclasses.replace(HANDOVER, kind="people_trapped", urgency="urgent"), "Alert", ["Rescue"], ["Immediate", "Severe", "Likely"]),
        (dataclasses.replace(HANDOVER, kind="road_collapse", urgency="???"), "Alert", ["Geo", "Transport"], ["Unknown"] * 3),
        (RESULT, "Update", ["Infra"], ["Past", "Minor", "Observed"]),
        (status("received"), "Ack", ["Safety"], ["Immediate", "Unknown", "Observed"]),
        (status("on_scene"), "Update", ["Safety"], ["Immediate", "Unknown", "Observed"]),
        (status("closed"), "Update", ["Safety"], ["Past", "Unknown", "Observed"]),
        (TRANSFER, "Alert", ["Infra"], ["Unknown", "Unknown", "Likely"]),
        (dataclasses.replace(TRANSFER, category_hint="sanitation"), "Alert", ["Env"], ["Unknown", "Unknown", "Likely"]),
    ],
)
def test_mapping(msg, msg_type, categories, ucs):
    root = parse(to_cap(msg, sender=SENDER))
    assert text(root, "cap:msgType") == msg_type
    assert [n.text for n in root.findall("cap:info/cap:category", NS)] == categories
    assert [text(root, f"cap:info/cap:{tag}") for tag in ("urgency", "severity", "certainty")] == ucs


def test_handover_content_round_trips_chinese_and_escapes():
    xml = to_cap(HANDOVER, sender=SENDER)
    assert '&lt;3楼&gt; &amp; "4楼"'.encode("utf-8") in xml
    root = parse(xml)
    assert text(root, "cap:sent") == "2026-11-22T13:30:00+08:00"
    assert text(root, "cap:info/cap:event") == "燃气泄漏"
    assert text(root, "cap:info/cap:description") == HANDOVER.summary
    assert text(root, "cap:info/cap:contact") == "138****5678"
    assert text(root, "cap:info/cap:area/cap:areaDesc") == HANDOVER.address
    assert text(root, "cap:info/cap:area/cap:circle") == "39.921900,116.483300 0.1"
    assert text(root, "cap:incidents") == "GD20261122-0001"


def test_area_left_out_without_address_or_point():
    root = parse(to_cap(RESULT, sender=SENDER))
    assert root.find("cap:info/cap:area", NS) is None
    params = {p.find("cap:valueName", NS).text: p.find("cap:value", NS).text for p in root.findall("cap:info/cap:parameter", NS)}
    assert params["resolved_at"] == "2026-11-22T15:30:00+08:00"
    assert params["police_incident_id"] == "JJ110-20261122-000123"
    assert text(root, "cap:incidents") == "JJ110-20261122-000123 GD20261122-0002"


def test_transfer_without_point_has_area_desc_and_no_circle():
    root = parse(to_cap(dataclasses.replace(TRANSFER, lon=None, lat=None), sender=SENDER))
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "朝阳区望京街10号"
    assert root.find("cap:info/cap:area/cap:circle", NS) is None


@pytest.mark.parametrize(
    "value, tz, expected",
    [
        (T0, ZoneInfo("Asia/Shanghai"), "2026-11-22T13:30:00+08:00"),
        (T0, ZoneInfo("UTC"), "2026-11-22T05:30:00-00:00"),
        (T0, timezone(timedelta(hours=-5)), "2026-11-22T00:30:00-05:00"),
        (T0, timezone(timedelta(hours=5, minutes=45)), "2026-11-22T11:15:00+05:45"),
        (datetime(2026, 11, 22, 23, 59, 59, 999_999, tzinfo=ZoneInfo("Asia/Shanghai")), ZoneInfo("Asia/Shanghai"), "2026-11-22T23:59:59+08:00"),
        (datetime(1890, 1, 1, tzinfo=UTC), ZoneInfo("Asia/Shanghai"), "1890-01-01T08:06:00+08:06"),
    ],
)
def test_cap_time(value, tz, expected):
    assert cap_time(value, tz) == expected


def test_cap_time_refuses_naive():
    with pytest.raises(CapError):
        cap_time(datetime(2026, 11, 22, 5, 30))


def test_utc_rendering_validates():
    xml = to_cap(HANDOVER, sender=SENDER, tz=ZoneInfo("UTC"))
    SCHEMA.validate(xml.decode("utf-8"))
    assert text(parse(xml), "cap:sent") == "2026-11-22T05:30:00-00:00"


@pytest.mark.parametrize("sender", ["", "two words", "a,b", "a<b", "a&b"])
def test_sender_must_be_a_cap_token(sender):
    with pytest.raises(CapError):
        to_cap(HANDOVER, sender=sender)


def test_incident_ids_with_spaces_are_left_out_of_incidents():
    msg = dataclasses.replace(RESULT, police_incident_id="JJ 110")
    root = parse(to_cap(msg, sender=SENDER))
    assert text(root, "cap:incidents") == "GD20261122-0002"
    SCHEMA.validate(to_cap(msg, sender=SENDER).decode("utf-8"))


@given(st.text(max_size=60), st.text(min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_any_text_renders_valid_cap_and_round_trips(summary, address):
    msg = dataclasses.replace(HANDOVER, summary=summary or "x", address=address)
    xml = to_cap(msg, sender=SENDER)
    SCHEMA.validate(xml.decode("utf-8"))
    expected = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]", "\ufffd",
                      (summary or "x").replace("\r\n", "\n").replace("\r", "\n"))
    assert text(parse(xml), "cap:info/cap:description") == expected


@pytest.mark.parametrize("bad_sent", ["2026-11-22T05:30:00Z", "2026-11-22T13:30:00.250+08:00", "2026-11-22T13:30:00"])
def test_schema_itself_refuses_z_fractions_and_naive_times(bad_sent):
    xml = to_cap(HANDOVER, sender=SENDER).decode("utf-8")
    assert SCHEMA.is_valid(xml)
    assert not SCHEMA.is_valid(xml.replace("2026-11-22T13:30:00+08:00", bad_sent))
