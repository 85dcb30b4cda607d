"""110 police linkage, pure part: messages, emergency rule, signing, outbox policy."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from command.police import (
    EmergencyRule,
    Handover,
    IncidentTransfer,
    PoliceMessageError,
    PoliceStatus,
    ResultReport,
    mask_phone,
    message_key,
    needs_police,
    parse_inbound,
    parse_outbound,
    to_json,
)
from command.police_outbox import (
    OutboxEntry,
    deliverable,
    mark_alarmed,
    needs_alarm,
    next_attempt,
    on_attempt,
    on_response,
    requeue,
)
from command.police_signing import SignatureError, accept_once, canonical_string, sign, verify

UTC = timezone.utc
T0 = datetime(2026, 11, 22, 5, 30, 0, tzinfo=UTC)
SECRET = b"shared-secret-110"
CST = timezone(timedelta(hours=8))


def handover(**changes) -> Handover:
    base = Handover(
        message_id="6f1c2a9e-1d1b-4c55-9a57-3f0a1c1b2d3e",
        idempotency_key=message_key("GD20261122-0001", "handover", 1),
        ticket_number="GD20261122-0001",
        kind="gas_leak",
        summary="居民反映楼道内有浓烈煤气味 <3楼> & 4楼",
        address="北京市朝阳区幸福路1号院3号楼",
        lon=116.4833,
        lat=39.9219,
        caller=mask_phone("13812345678"),
        urgency="emergency",
        created_at=T0,
    )
    return dataclasses.replace(base, **changes)


def result_report() -> ResultReport:
    return ResultReport(
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


STATUS_BODY = {
    "type": "police_status", "message_id": "p-1", "ticket_number": "GD20261122-0001",
    "police_incident_id": "JJ110-1", "status": "on_scene", "at": "2026-11-22T13:40:00+08:00",
    "note": "民警已到场，疏散群众",
}
TRANSFER_BODY = {
    "type": "incident_transfer", "message_id": "p-2", "police_incident_id": "JJ110-20261122-000123",
    "category_hint": "water", "description": "小区停水一天，群众情绪激动", "address": "朝阳区望京街10号",
    "lon": 116.47, "lat": 40.0, "caller_name": "张先生", "caller_phone": "13900001111",
    "at": "2026-11-22T05:00:00Z",
}


def body_of(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def without(obj: dict, key: str) -> dict:
    return {k: v for k, v in obj.items() if k != key}


def with_(obj: dict, **changes) -> dict:
    return {**obj, **changes}


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("msg", [handover(), handover(lon=None, lat=None), result_report()], ids=["handover", "no-point", "result"])
def test_outbound_json_round_trip(msg):
    body = to_json(msg)
    assert parse_outbound(body) == msg
    assert json.loads(body)["type"] in ("handover", "result_report")
    assert "煤气味" in body.decode("utf-8") or "供水" in body.decode("utf-8")  # UTF-8, not \u escapes


def test_json_times_are_utc_iso8601():
    msg = handover(created_at=datetime(2026, 11, 22, 13, 30, tzinfo=CST))
    assert json.loads(to_json(msg))["created_at"] == "2026-11-22T05:30:00+00:00"


def test_parse_valid_status():
    status = parse_inbound(body_of(STATUS_BODY))
    assert parse_inbound(to_json(status)) == status
    assert status == PoliceStatus("p-1", "GD20261122-0001", "JJ110-1", "on_scene",
                                  datetime(2026, 11, 22, 5, 40, tzinfo=UTC), "民警已到场，疏散群众")
    assert status.at.utcoffset() == timedelta(0)


def test_parse_valid_transfer():
    transfer = parse_inbound(body_of(TRANSFER_BODY))
    assert isinstance(transfer, IncidentTransfer)
    assert transfer.police_incident_id == "JJ110-20261122-000123"
    assert (transfer.lon, transfer.lat) == (116.47, 40.0)
    assert transfer.at == datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    assert transfer.caller_name == "张先生"


@pytest.mark.parametrize(
    "obj, expected",
    [
        (without(STATUS_BODY, "note"), ""),
        (with_(STATUS_BODY, note=None), ""),
    ],
)
def test_status_note_is_optional(obj, expected):
    assert parse_inbound(body_of(obj)).note == expected


def test_status_needs_only_one_reference():
    status = parse_inbound(body_of(with_(STATUS_BODY, ticket_number=None)))
    assert status.ticket_number is None and status.police_incident_id == "JJ110-1"


def test_transfer_point_is_optional():
    transfer = parse_inbound(body_of(without(without(TRANSFER_BODY, "lon"), "lat")))
    assert transfer.lon is None and transfer.lat is None


@pytest.mark.parametrize(
    "body, code, field",
    [
        (b"{not json", "malformed_body", None),
        (b"\xff\xfe\x00garbage", "malformed_body", None),
        (b"", "malformed_body", None),
        (b"[1, 2]", "malformed_body", None),
        (b'"police_status"', "malformed_body", None),
        (b"null", "malformed_body", None),
        (b'{"type": "police_status", "lat": NaN}', "malformed_body", None),
        (b"[" * 100_000, "malformed_body", None),
        (body_of(without(STATUS_BODY, "type")), "missing_field", "type"),
        (body_of(with_(STATUS_BODY, type=5)), "wrong_type", "type"),
        (body_of(with_(STATUS_BODY, type="handover")), "unknown_type", "type"),
        (body_of(with_(STATUS_BODY, type="bogus")), "unknown_type", "type"),
        (body_of(without(STATUS_BODY, "message_id")), "missing_field", "message_id"),
        (body_of(without(STATUS_BODY, "status")), "missing_field", "status"),
        (body_of(without(STATUS_BODY, "at")), "missing_field", "at"),
        (body_of(with_(STATUS_BODY, ticket_number=None, police_incident_id=None)), "missing_field", "ticket_number"),
        (body_of(with_(STATUS_BODY, status="arrested")), "bad_value", "status"),
        (body_of(with_(STATUS_BODY, status=3)), "wrong_type", "status"),
        (body_of(with_(STATUS_BODY, at=1795325400)), "wrong_type", "at"),
        (body_of(with_(STATUS_BODY, at="yesterday")), "bad_value", "at"),
        (body_of(with_(STATUS_BODY, at="2026-11-22T13:40:00")), "bad_value", "at"),
        (body_of(with_(STATUS_BODY, at="9999-12-31T23:59:59-23:59")), "bad_value", "at"),
        (body_of(with_(STATUS_BODY, message_id="")), "bad_value", "message_id"),
        (body_of(with_(STATUS_BODY, note=["x"])), "wrong_type", "note"),
        (body_of(without(TRANSFER_BODY, "police_incident_id")), "missing_field", "police_incident_id"),
        (body_of(without(TRANSFER_BODY, "description")), "missing_field", "description"),
        (body_of(without(TRANSFER_BODY, "caller_phone")), "missing_field", "caller_phone"),
        (body_of(with_(TRANSFER_BODY, lon="116.47")), "wrong_type", "lon"),
        (body_of(with_(TRANSFER_BODY, lat=True)), "wrong_type", "lat"),
        (body_of(with_(TRANSFER_BODY, lat=95.0)), "bad_coordinates", "lat"),
        (body_of(with_(TRANSFER_BODY, lat=89.0)), "bad_coordinates", "lat"),  # beyond what GEO takes
        (body_of(without(TRANSFER_BODY, "lat")), "bad_coordinates", "lat"),
        (b'{"type":"incident_transfer","lon":1e400}', "missing_field", "message_id"),
        (body_of(with_(TRANSFER_BODY, lon=10**400)), "bad_value", "lon"),
        (body_of(with_(TRANSFER_BODY, caller_name={"a": 1})), "wrong_type", "caller_name"),
    ],
)
def test_parse_inbound_refuses(body, code, field):
    with pytest.raises(PoliceMessageError) as info:
        parse_inbound(body)
    assert info.value.code == code
    assert info.value.field == field


def test_lone_surrogate_escape_is_refused():
    body = json.dumps(with_(TRANSFER_BODY, description="\ud800")).encode("ascii")
    assert b'"\\ud800"' in body
    with pytest.raises(PoliceMessageError) as info:
        parse_inbound(body)
    assert (info.value.code, info.value.field) == ("bad_value", "description")


def test_parse_outbound_refuses_inbound_types():
    with pytest.raises(PoliceMessageError) as info:
        parse_outbound(body_of(STATUS_BODY))
    assert info.value.code == "unknown_type"


@pytest.mark.parametrize(
    "changes, code",
    [
        ({"created_at": datetime(2026, 11, 22, 5, 30)}, "bad_value"),
        ({"lon": 116.0, "lat": None}, "bad_coordinates"),
        ({"ticket_number": " "}, "bad_value"),
    ],
)
def test_handover_validates_itself(changes, code):
    with pytest.raises(PoliceMessageError) as info:
        handover(**changes)
    assert info.value.code == code


@pytest.mark.parametrize(
    "phone, masked",
    [("13812345678", "138****5678"), ("138-1234-5678", "138****5678"), ("010-62345678", "010****5678"), ("110", "***")],
)
def test_mask_phone(phone, masked):
    assert mask_phone(phone) == masked


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_parse_inbound_raises_only_police_message_error_on_bytes(body):
    try:
        msg = parse_inbound(body)
    except PoliceMessageError as exc:
        assert exc.code in {"malformed_body", "unknown_type", "missing_field", "wrong_type", "bad_value"}
    else:
        assert isinstance(msg, (PoliceStatus, IncidentTransfer))


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json_values = st.recursive(_json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8)
_fields = st.sampled_from(sorted(set(STATUS_BODY) | set(TRANSFER_BODY)))


@given(st.sampled_from([STATUS_BODY, TRANSFER_BODY]), st.dictionaries(_fields, _json_values, max_size=4), st.lists(_fields, max_size=3))
@settings(max_examples=300, deadline=None)
def test_parse_inbound_raises_only_police_message_error_on_mutated_objects(base, changes, dropped):
    obj = {k: v for k, v in {**base, **changes}.items() if k not in dropped}
    try:
        msg = parse_inbound(json.dumps(obj).encode("utf-8"))
    except PoliceMessageError:
        return
    assert parse_inbound(to_json(msg)) == msg


_zones = st.sampled_from([UTC, CST, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])


@given(st.datetimes(timezones=_zones))
@settings(max_examples=200, deadline=None)
def test_any_aware_time_parses_to_the_same_instant_or_is_refused(at):
    try:
        status = parse_inbound(body_of(with_(STATUS_BODY, at=at.isoformat())))
    except PoliceMessageError as exc:
        assert exc.code == "bad_value"  # only at the edges of datetime's range
        assert at.year in (1, 9999)
    else:
        assert status.at == at and status.at.tzinfo == UTC


# --------------------------------------------------------------------------- emergency rule


@pytest.mark.parametrize(
    "category, ticket_type, text, tags, expected",
    [
        ("gas", "repair", "楼道里有很浓的煤气味", (), "gas_leak"),
        ("other", "repair", "闻到燃气味，怀疑燃气泄漏", (), "gas_leak"),
        ("gas", "repair", "厨房管道漏气", (), "gas_leak"),
        ("gas", "repair", "燃气表不走字，没气了", (), None),
        ("gas", "repair", "已经检查过，没有煤气味", (), None),
        ("power", "repair", "小区配电房着火冒烟", (), "electrical_fire"),
        ("other", "repair", "楼下变压器着火了", (), "electrical_fire"),
        ("water", "repair", "着火", (), None),
        ("power", "repair", "大风把电线刮断了，电线落地还在冒火花", (), "fallen_live_wire"),
        ("power", "repair", "停电了，有人被困在电梯里", (), "people_trapped"),
        ("power", "repair", "电梯停了，无人被困", (), None),
        ("drainage", "repair", "人行道塌陷出一个大坑", (), "road_collapse"),
        ("water", "repair", "路口爆管，马路积水很深", (), "main_burst_flooding"),
        ("water", "repair", "自来水管道爆裂，路面被淹", (), "main_burst_flooding"),
        ("water", "repair", "家里水管爆管了", (), None),
        ("water", "repair", "路面积水", (), None),
        ("water", "repair", "家里水管爆管，屋里积水", (), None),
        ("water", "repair", "桥下爆管喷水，车辆无法通行", (), "main_burst_flooding"),
        ("water", "repair", "水龙头水出不来", (), None),
        ("power", "repair", "全小区停电", (), None),
        ("power", "repair", "", ("people_trapped",), "people_trapped"),
        ("power", "repair", "", ("电线落地",), "fallen_live_wire"),
        ("gas", "suggestion", "建议在燃气泄漏时多发短信", (), None),
        ("gas", "praise", "感谢及时处理煤气泄漏", (), None),
        ("gas", "complaint", "现在还有煤气味，没人来", (), "gas_leak"),
    ],
)
def test_needs_police(category, ticket_type, text, tags, expected):
    assert needs_police(category, ticket_type, text, tags) == expected


def test_needs_police_table_is_configurable():
    rules = (EmergencyRule("sewage_gas", (("沼气",), ("井",)), categories=frozenset({"drainage"})),)
    assert needs_police("drainage", "repair", "窨井里有沼气味", rules=rules) == "sewage_gas"
    assert needs_police("water", "repair", "窨井里有沼气味", rules=rules) is None
    assert needs_police("gas", "repair", "煤气味", rules=rules) is None
    assert needs_police("gas", "praise", "煤气味", excluded_types=frozenset()) == "gas_leak"


# --------------------------------------------------------------------------- signing

BODY = to_json(handover())
KEY = handover().idempotency_key


def never_seen(nonce: str) -> bool:
    return False


def test_signature_is_hmac_sha256_over_documented_string():
    headers = sign(BODY, SECRET, T0, "n0nce-1", idempotency_key=KEY)
    timestamp = str(int(T0.timestamp()))
    expected = hmac.new(SECRET, f"v1\n{timestamp}\nn0nce-1\n{KEY}\n".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {"X-Timestamp": "1795325400", "X-Nonce": "n0nce-1", "X-Signature": expected, "Idempotency-Key": KEY}
    assert canonical_string(BODY, timestamp, "n0nce-1", KEY) == f"v1\n{timestamp}\nn0nce-1\n{KEY}\n".encode() + BODY


@pytest.mark.parametrize("key", [KEY, ""])
def test_signature_round_trip(key):
    headers = sign(BODY, SECRET, T0, "abc", idempotency_key=key)
    assert ("Idempotency-Key" in headers) == bool(key)
    verify(BODY, headers, SECRET, T0 + timedelta(seconds=299), seen_nonce=never_seen)


def test_headers_are_case_insensitive():
    headers = {k.lower(): v for k, v in sign(BODY, SECRET, T0, "abc", idempotency_key=KEY).items()}
    verify(BODY, headers, SECRET, T0, seen_nonce=never_seen)


def _signed(**changes) -> dict[str, str]:
    headers = sign(BODY, SECRET, T0, "nonce-42", idempotency_key=KEY)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return headers


@pytest.mark.parametrize(
    "body, headers, secret, now, code",
    [
        (BODY.replace("煤气味".encode(), "水管".encode()), _signed(), SECRET, T0, "bad_signature"),
        (BODY + b" ", _signed(), SECRET, T0, "bad_signature"),
        (BODY, _signed(), b"wrong-secret", T0, "bad_signature"),
        (BODY, _signed(X_Signature="0" * 64), SECRET, T0, "bad_signature"),
        (BODY, _signed(X_Signature="not-hex"), SECRET, T0, "bad_signature"),
        (BODY, _signed(X_Signature="署名"), SECRET, T0, "bad_signature"),
        (BODY, _signed(Idempotency_Key="GD20261122-0001:handover:2"), SECRET, T0, "bad_signature"),
        (BODY, _signed(Idempotency_Key=None), SECRET, T0, "bad_signature"),
        (BODY, _signed(X_Nonce="nonce-43"), SECRET, T0, "bad_signature"),
        (BODY, _signed(X_Timestamp=str(int(T0.timestamp()) + 1)), SECRET, T0, "bad_signature"),
        (BODY, _signed(), SECRET, T0 + timedelta(seconds=301), "expired"),
        (BODY, _signed(), SECRET, T0 - timedelta(seconds=301), "expired"),
        (BODY, _signed(X_Signature=None), SECRET, T0, "missing_header"),
        (BODY, _signed(X_Timestamp=None), SECRET, T0, "missing_header"),
        (BODY, _signed(X_Nonce=None), SECRET, T0, "missing_header"),
        (BODY, _signed(X_Nonce=""), SECRET, T0, "missing_header"),
        (BODY, _signed(X_Timestamp="１７９５３２５４００"), SECRET, T0, "malformed_header"),
        (BODY, _signed(X_Timestamp="1_795_325_400"), SECRET, T0, "malformed_header"),
        (BODY, _signed(X_Timestamp="9" * 40), SECRET, T0, "malformed_header"),
        (BODY, _signed(X_Nonce="空 格"), SECRET, T0, "malformed_header"),
    ],
)
def test_verify_refuses(body, headers, secret, now, code):
    with pytest.raises(SignatureError) as info:
        verify(body, headers, secret, now, seen_nonce=never_seen)
    assert info.value.code == code


def test_reused_nonce_is_a_replay_and_forgeries_do_not_burn_nonces():
    seen: set[str] = set()

    def seen_nonce(nonce: str) -> bool:
        return not accept_once(nonce, seen)

    headers = sign(BODY, SECRET, T0, "once", idempotency_key=KEY)
    with pytest.raises(SignatureError):
        verify(BODY + b"x", headers, SECRET, T0, seen_nonce=seen_nonce)
    assert seen == set()
    verify(BODY, headers, SECRET, T0, seen_nonce=seen_nonce)
    with pytest.raises(SignatureError) as info:
        verify(BODY, headers, SECRET, T0 + timedelta(seconds=5), seen_nonce=seen_nonce)
    assert info.value.code == "replay"


@pytest.mark.parametrize("nonce", ["", "a b", "x" * 201, "中文"])
def test_sign_refuses_bad_nonce(nonce):
    with pytest.raises(ValueError):
        sign(BODY, SECRET, T0, nonce)


_header_names = st.sampled_from(["X-Signature", "x-timestamp", "X-Nonce", "Idempotency-Key", "Other"]) | st.text(max_size=12)


@given(st.dictionaries(_header_names, st.text(max_size=70), max_size=6), st.binary(max_size=64), st.booleans())
@settings(max_examples=400, deadline=None)
def test_verify_raises_only_signature_error_on_arbitrary_headers(headers, body, fill):
    if fill:
        headers = {**sign(body, SECRET, T0, "n1"), **headers}
    try:
        verify(body, headers, SECRET, T0, seen_nonce=never_seen)
    except SignatureError as exc:
        assert exc.code in {"missing_header", "malformed_header", "expired", "bad_signature", "replay"}
    else:
        assert headers["X-Signature"] == sign(body, SECRET, T0, headers["X-Nonce"],
                                              idempotency_key=headers.get("Idempotency-Key", ""))["X-Signature"]


# --------------------------------------------------------------------------- receiver idempotency


def test_accept_once():
    seen: set[str] = set()
    assert [accept_once(k, seen) for k in ["a:handover:1", "a:handover:1", "a:handover:2", "a:handover:1"]] == [
        True, False, True, False]
    with pytest.raises(ValueError):
        accept_once("", seen)


# --------------------------------------------------------------------------- outbox policy


def entry(ticket="T1", seq=1, state="pending", **changes) -> OutboxEntry:
    fields = {"next_attempt_at": T0, **changes}
    return OutboxEntry(message_id=f"{ticket}-{seq}", ticket_number=ticket, seq_per_ticket=seq,
                       body=b"{}", state=state, **fields)


@pytest.mark.parametrize(
    "jitter, delays",
    [
        (1.0, [2, 2, 4, 8, 16, 32, 60, 60, 60]),
        (0.0, [1, 1, 2, 4, 8, 16, 30, 30, 30]),
        (0.5, [1.5, 1.5, 3, 6, 12, 24, 45, 45, 45]),
    ],
)
def test_backoff_schedule(jitter, delays):
    got = [(next_attempt(entry(attempts=n), T0, jitter=jitter) - T0).total_seconds() for n in range(9)]
    assert got == delays


@given(st.floats(0, 1), st.integers(0, 10_000))
def test_backoff_monotone_and_capped(jitter, attempts):
    now_delay = next_attempt(entry(attempts=attempts), T0, jitter=jitter) - T0
    later_delay = next_attempt(entry(attempts=attempts + 1), T0, jitter=jitter) - T0
    assert timedelta(0) < now_delay <= later_delay <= timedelta(seconds=60)


@pytest.mark.parametrize("jitter", [-0.1, 1.5, float("nan")])
def test_backoff_refuses_bad_jitter(jitter):
    with pytest.raises(ValueError):
        next_attempt(entry(), T0, jitter=jitter)


@pytest.mark.parametrize(
    "status, state, retry_in_s",
    [
        (200, "acked", None),
        (202, "acked", None),
        (409, "acked", None),
        (None, "pending", 2),
        (500, "pending", 2),
        (503, "pending", 2),
        (408, "pending", 2),
        (429, "pending", 2),
        (400, "failed_alarmed", None),
        (401, "failed_alarmed", None),
        (404, "failed_alarmed", None),
        (422, "failed_alarmed", None),
        (301, "failed_alarmed", None),
    ],
)
def test_on_response(status, state, retry_in_s):
    sent = on_attempt(entry(), T0)
    after = on_response(sent, status, b"busy", T0 + timedelta(seconds=1), jitter=1.0)
    assert after.state == state
    assert after.attempts == 1
    if state == "acked":
        assert after.acked_at == T0 + timedelta(seconds=1)
    if retry_in_s is not None:
        assert after.next_attempt_at == T0 + timedelta(seconds=1 + retry_in_s)
        assert after.last_error
    if state == "failed_alarmed":
        assert after.alarmed_at == T0 + timedelta(seconds=1)
        assert str(status) in after.last_error


def test_on_attempt_counts_and_leases():
    first = on_attempt(entry(), T0, timeout_s=10)
    second = on_attempt(on_response(first, None, b"", T0 + timedelta(seconds=10), jitter=1), T0 + timedelta(seconds=12))
    assert (first.state, first.attempts, first.first_sent_at, first.next_attempt_at) == (
        "sent", 1, T0, T0 + timedelta(seconds=10))
    assert (second.attempts, second.first_sent_at) == (2, T0)


@pytest.mark.parametrize(
    "item, elapsed_s, expected",
    [
        (entry(), 600, False),  # never sent
        (entry(state="sent", first_sent_at=T0), 59, False),
        (entry(state="sent", first_sent_at=T0), 60, True),
        (entry(state="pending", first_sent_at=T0, attempts=4), 61, True),
        (entry(state="acked", first_sent_at=T0, acked_at=T0), 600, False),
        (entry(state="failed_alarmed", first_sent_at=T0, alarmed_at=T0), 600, False),
        (mark_alarmed(entry(state="pending", first_sent_at=T0), T0 + timedelta(seconds=60)), 120, False),
    ],
)
def test_needs_alarm(item, elapsed_s, expected):
    assert needs_alarm(item, T0 + timedelta(seconds=elapsed_s)) is expected


def test_deliverable_in_order_per_ticket_and_independent_tickets():
    entries = [
        entry("A", 2), entry("A", 1),  # A: 1 first, 2 waits
        entry("B", 1, "acked"), entry("B", 2, next_attempt_at=T0 + timedelta(seconds=5)), entry("B", 3),
        entry("C", 1, "failed_alarmed"), entry("C", 2),  # C blocked behind a failure
        entry("D", 1, "sent", next_attempt_at=T0 + timedelta(seconds=10)),  # in flight
    ]
    assert [e.message_id for e in deliverable(entries)] == ["A-1", "B-2", "D-1"]
    assert [e.message_id for e in deliverable(entries, T0)] == ["A-1"]
    assert [e.message_id for e in deliverable(entries, T0 + timedelta(seconds=10))] == ["A-1", "B-2", "D-1"]
    unblocked = [requeue(e, T0) if e.state == "failed_alarmed" else e for e in entries]
    assert "C-1" in [e.message_id for e in deliverable(unblocked, T0)]


def test_requeue_only_failed_and_states_are_checked():
    with pytest.raises(ValueError):
        requeue(entry(), T0)
    with pytest.raises(ValueError):
        entry(state="lost")


def test_receiver_down_two_minutes_every_message_once_in_order():
    """Pure simulation of issue 5's test: 110 down for 120 s, then back."""
    tickets = {"A": 3, "B": 2, "C": 1}
    outbox = {f"{t}-{s}": entry(t, s) for t, n in tickets.items() for s in range(1, n + 1)}
    seen: set[str] = set()
    received: list[str] = []
    alarms: list[tuple[str, float]] = []
    now = T0
    while now < T0 + timedelta(minutes=10) and any(e.state != "acked" for e in outbox.values()):
        for item in outbox.values():
            if needs_alarm(item, now):
                alarms.append((item.message_id, (now - item.first_sent_at).total_seconds()))
                outbox[item.message_id] = mark_alarmed(item, now)
        for item in deliverable(outbox.values(), now):
            item = on_attempt(item, now)
            if now < T0 + timedelta(seconds=120):
                status = None if item.attempts % 2 else 503  # down: timeouts and 503s
            else:
                status = 200
                if accept_once(item.message_id, seen):
                    received.append(item.message_id)
                if item.attempts % 3 == 0:  # delivered but the ack is lost: sent again later
                    status = None
            outbox[item.message_id] = on_response(item, status, b"", now, jitter=0.7)
        now += timedelta(seconds=1)
    assert all(e.state == "acked" for e in outbox.values())
    assert sorted(received) == sorted(outbox)  # exactly once at the receiver
    for ticket in tickets:
        order = [m for m in received if m.startswith(ticket)]
        assert order == sorted(order, key=lambda m: int(m.split("-")[1]))
    assert sorted(m for m, _ in alarms) == ["A-1", "B-1", "C-1"]  # heads were sent and unacked for 60 s
    assert all(elapsed == 60 for _, elapsed in alarms)
    assert now - T0 < timedelta(seconds=120 + 3 * 60)  # caught up within a few capped backoffs
