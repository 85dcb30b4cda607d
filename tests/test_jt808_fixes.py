"""Tables for `ingest.jt808_fixes`, the gateway's payload: a location report (go-jt808's 0x0200
test frame, tests/data/jt808/frames.txt) encoded and decoded back to the ingest's `Fix`; payloads
the ingest refuses (counted ``rejected:jt808_bad_payload``) and reports it leaves out (counted,
the rest kept)."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from ingest.jt808 import decode_frame
from ingest.jt808_fixes import MAX_FIXES, decode_payload, encode_payload
from ingest.jt808_items import decode_location
from ingest.readings import RejectedPayload
from simulators.jt808_terminal import location_body

GO_0200 = bytes.fromhex("7e0200001c0123456789010000000004000000080007203b7d0202633df70138000300632410012359591c7e")


def test_reports_round_trip_to_the_ingest_fix():
    message, _ = decode_frame(GO_0200[1:-1])
    (decoded,), bad = decode_payload(encode_payload("123456789", [message.body]))
    assert bad == 0 and decoded.alarms == ("tts_fault",)  # the frame's alarm word is 0x400: bit 10
    assert decoded.fix is None  # its status word 0x8 (west) lacks the positioned bit: a signal only
    t = datetime(2026, 12, 7, 8, 0, 1, tzinfo=timezone.utc)
    report = decode_location(location_body(36.1234567, -120.5, t, speed_kmh=42.5, course=271, alt_m=12))
    (decoded,), bad = decode_payload(encode_payload("123456789", [report]))
    fix = decoded.fix
    assert (fix.time, fix.lat, fix.lon, fix.speed_kmh, fix.course_deg, fix.alt_m, fix.sats) == \
        (t, 36.123457, -120.5, 42.5, 271.0, 12.0, 9)


FIX = {"t": 1796600000.0, "lat": 36.1, "lon": 120.4, "speed_kmh": 20.0, "course_deg": 90, "alt_m": 5, "sats": 9,
       "valid": True, "alarms": [], "status": ["positioned"]}


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"fixes": 3}', b"{}",
                                     orjson.dumps({"fixes": [FIX] * (MAX_FIXES + 1)})])
def test_payloads_refused(payload):
    with pytest.raises(RejectedPayload) as caught:
        decode_payload(payload)
    assert caught.value.reason == "jt808_bad_payload"


@pytest.mark.parametrize("change", [{"t": "1796600000"}, {"lat": None}, {"lon": "120.4"}, {"t": -1.0},
                                    {"alarms": "emergency"}, {"alarms": [1]}])
def test_bad_reports_left_out_and_counted(change):
    bad_fix = {**FIX, **change}
    reports, bad = decode_payload(orjson.dumps({"fixes": [FIX, bad_fix, FIX]}))
    assert (len(reports), bad) == (2, 1)
    assert all(r.fix.time == datetime.fromtimestamp(FIX["t"], timezone.utc) for r in reports)


def test_a_report_without_a_fix_is_a_signal_only():
    (report,), bad = decode_payload(orjson.dumps({"fixes": [{**FIX, "valid": False, "alarms": ["emergency"]}]}))
    assert report.fix is None and report.alarms == ("emergency",) and bad == 0
