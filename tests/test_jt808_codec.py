"""Tables for `ingest.jt808`: frames from public decoders' test suites (tests/data/jt808/frames.txt
names each source, commit and licence) decoded to the values their tests assert or that are
checked by hand against JT/T 808-2013/-2019; the platform's replies byte for byte against
go-jt808's expected replies; escaping, the stream splitter (chunks split anywhere, several frames
in a chunk, garbage, truncation, floods) and hypothesis properties (never raises, every drop
counted, the buffer bounded)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jt808 import (MAX_FRAME, REASONS, Authentication, Batch, FrameSplitter, Header, Heartbeat, Jt808Stream,
                          Location, Registration, TerminalReply, as_fix, checksum, decode_frame, encode_frame,
                          escape, platform_reply, registration_reply)
from ingest.jt808_items import FixFields

UTC = timezone.utc
FRAMES_FILE = Path(__file__).parent / "data" / "jt808" / "frames.txt"


def _load() -> dict[str, bytes]:
    """name -> the frame's bytes, from frames.txt."""
    frames = {}
    for line in FRAMES_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, text = line.split("\t")
            frames[name] = bytes.fromhex(text)
    return frames


FRAMES = _load()


def decode(name: str) -> tuple[object, str]:
    """(message, reason) of a whole frame from the file, flags stripped."""
    frame = FRAMES[name]
    assert frame[0] == frame[-1] == 0x7E
    return decode_frame(frame[1:-1])


def fields(value: object, **expected: object) -> None:
    """Assert each named attribute of `value`."""
    for name, want in expected.items():
        assert getattr(value, name) == want, name


# ---------------------------------------------------------------- public frames: headers and simple bodies
@pytest.mark.parametrize("name, header, body", [
    # go-jt808 TestParse asserts these bodies (SerialNumber 123, ID 456, Result 3; ...).
    ("go_0001", dict(message_id=0x0001, phone="012345678901", serial=0x7FFF, version=None),
     TerminalReply(serial=123, message_id=456, result=3)),
    ("go_0002", dict(message_id=0x0002, phone="012345678901", serial=0, body_length=0), Heartbeat()),
    ("go_0102_2013", dict(message_id=0x0102, version=None), Authentication("17299841738")),
    ("go_0102_2019", dict(message_id=0x0102, version=1, phone="00000000017299841738"),
     Authentication("17299841738", "123456789012345", "3.7.15")),
    ("go_0100_2011", dict(message_id=0x0100, version=None),
     Registration(31, 115, "cd", "www.808.", "7654321", 1, "测A1234", 2011)),
    ("go_0100_2013", dict(message_id=0x0100, version=None),
     Registration(31, 115, "cd", "www.808.com", "7654321", 1, "测A1234", 2013)),
    ("go_0100_2019", dict(message_id=0x0100, version=1, phone="00000000017299841738", body_length=83),
     Registration(31, 115, "cd", "www.808.com", "7654321", 1, "测A1234", 2019)),
    # Traccar's frames (its test only checks they decode): fields read by hand from the hex.
    # 2011 layout (body 33 bytes: model 8 bytes); plate D4C1 = 粤 in GBK.
    ("tc_0100_2011", dict(message_id=0x0100, phone="013345678906", serial=15),
     Registration(44, 303, "70111", "BSJ-M7B ", "0000000", 1, "粤B88888", 2011)),
    # 2013 layout (body 45 bytes); CBD5 = 苏; the last 0x38 before the flag is the check byte.
    ("tc_0100_2013", dict(message_id=0x0100, phone="013511221122", serial=5),
     Registration(0, 0, "70107", "HB-R03GBD", "2366104", 2, "苏BA6860", 2013)),
    ("tc_0102", dict(message_id=0x0102, serial=6), Authentication("authentication")),
    ("tc_0102_digits", dict(message_id=0x0102, phone="094027849470", serial=0x84), Authentication("2011110811332196")),
    ("tc_0002", dict(message_id=0x0002, phone="043048325465", serial=0xB7), Heartbeat()),
])
def test_public_frame_bodies(name: str, header: dict, body: object) -> None:
    """Header fields and the whole decoded body of each public frame."""
    message, reason = decode(name)
    assert reason == "frames_ok"
    fields(message.header, **header)
    assert message.body == body


def test_public_location_go() -> None:
    """go-jt808 TestParse T0x0200: AlarmSign 1024, StatusSign 2048, Latitude 119552894, Longitude
    40058359, Altitude 312, Speed 3, Direction 99, DateTime 2024-10-01 23:59:59 (GMT+8); its
    latitude's last byte is 0x7e, sent escaped as 7d 02."""
    message, reason = decode("go_0200")
    assert reason == "frames_ok"
    fields(message.body, alarm_word=1024, status_word=2048, lat=119.552894, lon=40.058359, alt_m=312,
           speed_kmh=0.3, course_deg=99, time=datetime(2024, 10, 1, 15, 59, 59, tzinfo=UTC),
           alarms=frozenset({"tts_fault"}), status=frozenset({"power_cut"}), extra=(), item_errors=0)


def test_public_location_items_go() -> None:
    """go-jt808 TestLocationAddition, "all known items" (testdata/0x0200_addition_1.txt): mileage 11,
    fuel 22, recorder speed 33 (all in tenths), 0x25 = 99 (low and high beam, reverse, fog lamp),
    0x2A = 10 (sleep, not deep sleep), signal strength 30, satellites 40; 0x04, 0x05, 0x11,
    0x12, 0x13, 0x2B and 0x06 kept raw."""
    message, reason = decode("go_items_all")
    assert reason == "frames_ok"
    report = message.body
    fields(report, mileage_km=1.1, fuel_l=2.2, recorder_speed_kmh=3.3, signal_strength=30, satellites=40,
           signals=frozenset({"low_beam", "high_beam", "reverse", "fog_lamp"}), io=frozenset({"sleep"}),
           time=datetime(2020, 7, 7, 11, 23, 59, tzinfo=UTC), item_errors=0)
    assert [item for item, _ in report.extra] == [0x04, 0x05, 0x11, 0x12, 0x13, 0x2B, 0x06]  # as sent
    assert dict(report.extra)[0x2B] == b"\x00\x00\x00\x14"


@pytest.mark.parametrize("name", ["go_items_overrun", "go_items_no_length"])
def test_public_location_bad_items(name: str) -> None:
    """go-jt808's malformed-item frames (ErrBodyLengthInconsistency there): the last item overruns
    the body, or is an id without its length. The report's own fields still decode; the frame is
    counted bad_item and the items before the bad one are kept."""
    message, reason = decode(name)
    assert reason == "bad_item"
    fields(message.body, item_errors=1, lat=116.307629, satellites=40)


def test_public_location_west_traccar() -> None:
    """Traccar tc_0200_west, by hand: alarm 1 (emergency), status 0x0a (positioned, west), lat
    0x03083db7 = 50871735, lon 0x001329f3 = 1255923 (west: negative), speed 0x14 = 2.0 km/h, time
    13-04-12 16:49:52 GMT+8, item 0x01 = 0x12 (1.8 km), item 0x36 (10 bytes) raw."""
    message, reason = decode("tc_0200_west")
    assert reason == "frames_ok"
    fields(message.header, phone="094027587492", serial=10)
    fields(message.body, alarms=frozenset({"emergency"}), status=frozenset({"positioned", "west"}),
           lat=50.871735, lon=-1.255923, alt_m=0, speed_kmh=2.0, course_deg=0, mileage_km=1.8,
           time=datetime(2013, 4, 12, 8, 49, 52, tzinfo=UTC), extra=((0x36, bytes.fromhex("0002341502cb0c20085c")),))
    assert message.body.positioned


def test_public_location_io_traccar() -> None:
    """Traccar tc_0200_io, by hand: status 0x00040001 (ACC on, GPS; not positioned), lat 0x005de1f7,
    lon 0x065c6cef, items 0x01 = 0xa900 (4326.4 km), 0x2A = 0 (no IO bit), 0x30 = 0x1b, 0x31 = 3."""
    message, reason = decode("tc_0200_io")
    assert reason == "frames_ok"
    fields(message.body, status=frozenset({"acc_on", "gps"}), lat=6.152695, lon=106.720495, mileage_km=4326.4,
           io=frozenset(), signal_strength=27, satellites=3, time=datetime(2017, 1, 17, 2, 4, 42, tzinfo=UTC))
    assert not message.body.positioned


def test_public_location_alarm_traccar() -> None:
    """Traccar asserts ALARM_LOW_BATTERY for tc_0200_undervoltage: alarm word 0x80 is bit 7, the
    terminal's main power under voltage. By hand: course 0x155 = 341, altitude 0xEB = 235 m, the
    vendor item 0xEB (36 bytes) kept raw."""
    message, reason = decode("tc_0200_undervoltage")
    assert reason == "frames_ok"
    fields(message.body, alarm_word=0x80, alarms=frozenset({"power_undervoltage"}), course_deg=341, alt_m=235,
           lat=22.641605, lon=114.032486, time=datetime(2021, 7, 26, 12, 35, 31, tzinfo=UTC))
    assert [(item, len(value)) for item, value in message.body.extra] == [(0xEB, 36)]


def test_public_location_south_with_zero_items_traccar() -> None:
    """tc_0200_zero_items, by hand: status 0x1c06 (positioned, south, fuel cut, power cut, doors
    locked), lat 0x01a2f0a8 south, lon 0x091f0bf0, course 0xed; then four empty items of id 0 and
    an id 0 claiming 0x78 bytes that are not there: decoded, counted bad_item."""
    message, reason = decode("tc_0200_zero_items")
    assert reason == "bad_item"
    fields(message.body, lat=-27.455656, lon=153.029616, course_deg=237, item_errors=1,
           status=frozenset({"positioned", "south", "fuel_cut", "power_cut", "doors_locked"}),
           time=datetime(2020, 11, 2, 19, 17, 33, tzinfo=UTC), extra=((0, b""),) * 4)


def test_public_location_escaped_item_traccar() -> None:
    """tc_0200_escaped carries 0x7e inside item 0x87, escaped as 7d 02; tc_0200_unescaped is the
    same device's frame with that 0x7e sent bare: the flag cuts it in two, both counted."""
    message, reason = decode("tc_0200_escaped")
    assert reason == "frames_ok"
    assert dict(message.body.extra)[0x87] == b"\x00\x7e"
    fields(message.body, status_word=0x80000003, lat=22.583576, lon=113.905643, course_deg=269, mileage_km=0.3)
    stream = Jt808Stream()
    assert stream.feed(FRAMES["tc_0200_unescaped"]) == []
    assert stream.counts == {"bad_checksum": 2}


def test_public_batches() -> None:
    """0x0704: go-jt808 asserts Num 2, LocationType 0 and two items equal to its 0x0200; Traccar's
    tc_0704_blind holds 8 reports of type 1 (blind area), the first read by hand; tc_0704_vendor_items
    4 reports with a vendor item each."""
    message, reason = decode("go_0704")
    assert reason == "frames_ok"
    assert isinstance(message.body, Batch) and not message.body.blind_area
    single, _ = decode("go_0200")
    assert message.body.locations == (single.body, single.body)
    message, reason = decode("tc_0704_blind")
    assert reason == "frames_ok" and message.body.blind_area and len(message.body.locations) == 8
    fields(message.body.locations[0], status=frozenset({"acc_on", "positioned"}), lat=22.639634, lon=114.031952,
           alt_m=370, course_deg=1, mileage_km=2.9, recorder_speed_kmh=0.0,
           time=datetime(2016, 5, 27, 1, 6, 24, tzinfo=UTC))
    message, reason = decode("tc_0704_vendor_items")
    assert reason == "frames_ok" and message.body.blind_area and len(message.body.locations) == 4
    assert all(location.extra[0][0] == 0xEB for location in message.body.locations)


def test_public_unknown_message_with_hex_phone() -> None:
    """Traccar's 0x0900 (transparent data) frame: an id we do not decode gives its header and the
    raw body, counted unknown_message; its "phone" is hex, not BCD, and is kept as sent."""
    message, reason = decode("tc_0900_hex_phone")
    assert reason == "unknown_message"
    fields(message.header, message_id=0x0900, phone="4e5de66fba22", body_length=90)
    assert len(message.body) == 90
    assert decode("go_8001")[1] == "unknown_message"  # a platform message is not ours to decode


def test_public_sub_package() -> None:
    """go-jt808's sub-package frame: 0x0801, package 2 of 26, the 5-byte fragment kept raw."""
    message, reason = decode("go_sub_package")
    assert reason == "sub_package"
    fields(message.header, message_id=0x0801, phone="001234567890", serial=0x02DE, packages=(26, 2))
    assert message.body == bytes.fromhex("2808000102")


@pytest.mark.parametrize("name, reason", [
    ("go_bad_checksum", "bad_checksum"),  # go-jt808: ErrCheckCode
    ("go_length_lies", "length_mismatch"),  # ErrBodyLengthInconsistency: 4 bytes, the header says 5
    ("go_short_header", "too_short"),  # ErrHeaderLength2Short
    ("go_short_sub_header", "too_short"),  # ErrHeaderLength2Short: no room for the package fields
    ("go_short", "too_short"),
    ("go_bad_escape", "bad_escape"),  # go-jt808 tolerates a 0x7d before the flag; we count it
    ("tc_0200_bad_check", "bad_checksum"),  # Traccar's decoder does not check it: XOR is 0x0b, not 0xd0
])
def test_public_malformed(name: str, reason: str) -> None:
    """The sources' malformed frames, each with its count reason and no message."""
    assert decode(name) == (None, reason)


# ---------------------------------------------------------------- replies, byte for byte
@pytest.mark.parametrize("terminal, reply, result", [
    ("go_reply_0002_2013", "go_reply_0002_2013_8001", 0),
    ("go_reply_0002_2019", "go_reply_0002_2019_8001", 0),
    ("go_0102_2013", "go_reply_0102_2013_8001", 1),  # go-jt808 refuses this 2013 authentication
    ("go_0102_2019", "go_reply_0102_2019_8001", 0),
    ("go_reply_0200_2019", "go_reply_0200_2019_8001", 0),
    ("go_reply_0704_2013", "go_reply_0704_2013_8001", 0),
])
def test_platform_reply_matches_go_jt808(terminal: str, reply: str, result: int) -> None:
    """0x8001 to a terminal frame (platform serial 0), in the frame's header version, equals
    go-jt808's expected reply; decoding the reply gives back its header."""
    message, _ = decode(terminal)
    encoded = platform_reply(message.header, 0, result)
    assert encoded == FRAMES[reply]
    back, reason = decode_frame(encoded[1:-1])
    assert reason == "unknown_message"
    fields(back.header, message_id=0x8001, phone=message.header.phone, version=message.header.version)
    assert back.body == (message.header.serial.to_bytes(2, "big") + message.header.message_id.to_bytes(2, "big")
                         + bytes((result,)))


@pytest.mark.parametrize("terminal, reply, code", [
    ("go_0100_2013", "go_reply_0100_2013_8100", "12345678901"),
    ("go_0100_2019", "go_reply_0100_2019_8100", "17299841738"),
])
def test_registration_reply_matches_go_jt808(terminal: str, reply: str, code: str) -> None:
    """0x8100 with the authentication code (go-jt808 issues the phone number as the code)."""
    message, _ = decode(terminal)
    assert registration_reply(message.header, 0, 0, code) == FRAMES[reply]


def test_registration_refused_carries_no_code() -> None:
    """A refused registration (result 3, terminal already registered) has no code."""
    message, _ = decode("go_0100_2013")
    back, _ = decode_frame(registration_reply(message.header, 9, 3, "ignored")[1:-1])
    fields(back.header, message_id=0x8100, serial=9)
    assert back.body == b"\x00\x00\x03"


# ---------------------------------------------------------------- escaping and encoding
@pytest.mark.parametrize("body", [b"", b"\x7e", b"\x7d", b"\x7d\x01", b"\x7d\x02", b"\x7e\x7e\x7d\x7d", bytes(range(256))[:200]])
def test_escape_round_trip(body: bytes) -> None:
    """Any body (flags and escape bytes included) survives encode -> split -> decode; no 0x7e
    remains inside the escaped frame."""
    frame = encode_frame(0x0900, "013800138000", 7, body)
    assert frame.count(b"\x7e") == 2
    message, reason = decode_frame(frame[1:-1])
    assert reason == "unknown_message" and message.body == body


def test_check_byte_that_needs_escaping() -> None:
    """A frame whose check byte is 0x7e (or 0x7d) sends it escaped and decodes."""
    for wanted in (0x7E, 0x7D):
        body = bytes((wanted ^ checksum(encode_frame(0x0900, "013800138000", 1, b"\0")[1:-2]),))
        frame = encode_frame(0x0900, "013800138000", 1, body)
        assert frame[-3:-1] == (b"\x7d\x02" if wanted == 0x7E else b"\x7d\x01")
        assert decode_frame(frame[1:-1])[1] == "unknown_message"


def test_escape_is_the_standard_mapping() -> None:
    """0x7e -> 7d 02 and 0x7d -> 7d 01, and nothing else changes."""
    assert escape(b"\x30\x7e\x08\x7d\x55") == bytes.fromhex("307d02087d0155")


@pytest.mark.parametrize("frame, reason", [
    (b"\x00\x02\x00\x00\x01\x23\x45\x67\x89\x01\x00\x00\x8a\x7d", "bad_escape"),  # 0x7d at the end
    (b"\x00\x02\x00\x00\x01\x23\x45\x67\x89\x01\x00\x00\x7d\x03\x8a", "bad_escape"),
    (b"\x00\x02\x00\x00\x01\x23\x45\x67\x89\x01\x00\x00\x7d\x7d\x01", "bad_escape"),
])
def test_bad_escapes(frame: bytes, reason: str) -> None:
    """A 0x7d not followed by 01 or 02."""
    assert decode_frame(frame) == (None, reason)


def _location_body(time_bcd: str = "240101120000", items: bytes = b"") -> bytes:
    """A 0x0200 body: alarm 0, status positioned, 30.5 N 104.06 E, 500 m, 36.5 km/h, course 90."""
    return (bytes(4) + (2).to_bytes(4, "big") + (30_500_000).to_bytes(4, "big") + (104_060_000).to_bytes(4, "big")
            + (500).to_bytes(2, "big") + (365).to_bytes(2, "big") + (90).to_bytes(2, "big")
            + bytes.fromhex(time_bcd) + items)


@pytest.mark.parametrize("message_id, body, version, reason", [
    (0x0200, _location_body("24013a120000"), None, "bad_bcd_time"),  # a nibble above 9
    (0x0200, _location_body("241301120000"), None, "bad_bcd_time"),  # month 13
    (0x0200, _location_body("000000000000"), None, "bad_bcd_time"),  # no time yet: month 0
    (0x0200, _location_body()[:27], None, "too_short"),
    (0x0200, _location_body(items=b"\x01\x02\x00\x01"), None, "bad_item"),  # mileage must be 4 bytes
    (0x0100, bytes(4) + b"\xff" * 32 + b"\x01" + "京A12345".encode("gbk"), None, "bad_text"),
    (0x0100, bytes(20), None, "too_short"),
    (0x0102, b"\x05abc", 1, "too_short"),  # 2019: the code, IMEI and version fields missing
    (0x0001, b"\x00\x01\x02\x00", None, "too_short"),
    (0x0001, b"\x00\x01\x02\x00\x00\x00", None, "length_mismatch"),
    (0x0704, b"\x00\x02\x00\x00\x1c" + _location_body(), None, "length_mismatch"),  # 2 announced, 1 sent
    (0x0704, b"\x00\x01\x00\x00\x1c" + _location_body() + b"\x00", None, "length_mismatch"),  # a byte after
])
def test_bad_bodies(message_id: int, body: bytes, version: int | None, reason: str) -> None:
    """A well-framed message whose body is malformed gets the body's reason."""
    phone = "00000000013800138000" if version else "013800138000"
    message, got = decode_frame(encode_frame(message_id, phone, 1, body, version)[1:-1])
    assert got == reason
    assert (message is None) == (reason != "bad_item")


def test_sub_package_header_2019() -> None:
    """The longest header: 2019 with the package fields (21 bytes), built by hand."""
    body = b"\x01\x02\x7e"
    data = (bytes.fromhex("0801") + (len(body) | 0x6000).to_bytes(2, "big") + b"\x01"
            + bytes.fromhex("00000000013800138000") + bytes.fromhex("0005" "0003" "0002") + body)
    message, reason = decode_frame(escape(data + bytes((checksum(data),))))
    assert reason == "sub_package"
    fields(message.header, message_id=0x0801, version=1, phone="00000000013800138000", serial=5, packages=(3, 2))
    assert message.body == body


def test_batch_with_a_bad_item_is_kept_and_counted() -> None:
    """A 0x0704 whose second report has an overrunning item: both reports kept, counted bad_item."""
    good, bad = _location_body(), _location_body(items=b"\x31\x05\x01")
    body = b"\x00\x02\x01" + len(good).to_bytes(2, "big") + good + len(bad).to_bytes(2, "big") + bad
    message, reason = decode_frame(encode_frame(0x0704, "013800138000", 1, body)[1:-1])
    assert reason == "bad_item"
    assert [location.item_errors for location in message.body.locations] == [0, 1]


def test_encrypted_body_is_kept_raw() -> None:
    """Properties bits 10-12 (RSA = bit 10): the header, the body raw, counted encrypted."""
    frame = bytearray(encode_frame(0x0200, "013800138000", 1, _location_body())[1:-1])
    frame[2] |= 0x04
    frame[-1] ^= 0x04
    message, reason = decode_frame(bytes(frame))
    assert reason == "encrypted" and message.header.encryption == 1 and message.body == _location_body()


def test_encoder_checks_its_arguments() -> None:
    """A phone of the wrong length for the version, or a body longer than 1023 bytes, is refused."""
    with pytest.raises(ValueError):
        encode_frame(0x8001, "013800138000", 1, b"", version=1)
    with pytest.raises(ValueError):
        encode_frame(0x8001, "013800138000", 1, bytes(1024))


# ---------------------------------------------------------------- as_fix
def test_as_fix() -> None:
    """The fix fields of a report: time UTC, signed degrees, km/h, course, altitude, satellites,
    and the positioned bit as `valid`."""
    message, _ = decode_frame(encode_frame(0x0200, "013800138000", 1,
                                           _location_body(items=b"\x31\x01\x09"))[1:-1])
    assert as_fix(message.body) == FixFields(datetime(2024, 1, 1, 4, 0, tzinfo=UTC), 30.5, 104.06, 36.5, 90.0,
                                             500.0, 9, True)
    west, _ = decode("tc_0200_io")
    fix = as_fix(west.body)
    assert (fix.valid, fix.sats, fix.lat, fix.lon) == (False, 3, 6.152695, 106.720495)


# ---------------------------------------------------------------- the stream splitter
TWO = FRAMES["go_0001"] + FRAMES["tc_0200_west"]


def _messages(chunks: list[bytes]) -> tuple[list[object], dict[str, int]]:
    """Feed chunks to one stream: (messages, counts)."""
    stream = Jt808Stream()
    messages = [message for chunk in chunks for message in stream.feed(chunk)]
    return messages, dict(stream.counts)


def test_split_at_every_position() -> None:
    """Two frames cut into two chunks at every byte position decode the same as in one chunk."""
    whole, counts = _messages([TWO])
    assert len(whole) == 2 and counts == {"frames_ok": 2}
    for cut in range(len(TWO) + 1):
        assert _messages([TWO[:cut], TWO[cut:]]) == (whole, counts), cut


def test_byte_by_byte_and_many_in_one_chunk() -> None:
    """One byte a chunk, and 50 frames in one chunk."""
    whole, _ = _messages([TWO])
    assert _messages([bytes((b,)) for b in TWO])[0] == whole
    messages, counts = _messages([TWO * 25])
    assert len(messages) == 50 and counts == {"frames_ok": 50}


def test_garbage_before_between_and_after() -> None:
    """Bytes before the first flag are garbage (counted once a run); garbage between frames is a
    frame of its own that fails and is counted; the frames around it decode."""
    chunk = b"GET / HTTP/1.1\r\n" + FRAMES["go_0001"] + b"noise\x01\x02" + FRAMES["tc_0002"] + b"\x7e\x7e" + FRAMES["go_0002"]
    messages, counts = _messages([chunk[:5], chunk[5:]])
    assert [m.header.message_id for m in messages] == [0x0001, 0x0002, 0x0002]
    assert counts == {"garbage": 1, "frames_ok": 3, "too_short": 1}


def test_truncated_frame_then_a_good_one() -> None:
    """A frame cut short (the connection lost its tail) fails on its own (its last byte is taken
    for the check byte, which does not match); the next one decodes."""
    cut = FRAMES["tc_0200_west"][:30]
    messages, counts = _messages([cut, FRAMES["go_0001"]])
    assert len(messages) == 1 and counts == {"bad_checksum": 1, "frames_ok": 1}


def test_flood_without_flags_is_bounded() -> None:
    """A megabyte without flags is one garbage run and holds no memory; after a too-long run inside
    a frame the splitter drops up to the next flag and decodes what follows."""
    splitter = FrameSplitter()
    for _ in range(100):
        assert splitter.feed(b"\x55" * 10_000) == []
    assert splitter.pending == 0 and splitter.counts == {"garbage": 1}
    assert splitter.feed(FRAMES["go_0001"]) == [FRAMES["go_0001"][1:-1]]
    for _ in range(100):
        splitter.feed(b"\x7e" + b"\x55" * 10_000)
        assert splitter.pending <= MAX_FRAME
    assert splitter.counts["too_long"] == 100
    assert splitter.feed(FRAMES["go_0001"]) == [FRAMES["go_0001"][1:-1]]


def test_longest_legal_frame_passes() -> None:
    """A 1023-byte body of 0x7e bytes (every byte escaped: the longest frame there is) is kept."""
    frame = encode_frame(0x0900, "00000000013800138000", 1, b"\x7e" * 1023, version=1)
    assert len(frame) - 2 <= MAX_FRAME
    messages, counts = _messages([frame[:700], frame[700:]])
    assert counts == {"unknown_message": 1} and messages[0].body == b"\x7e" * 1023


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes_never_raise_and_every_frame_is_counted(chunks: list[bytes]) -> None:
    """Random chunks: nothing raises, every frame the splitter yields gets one known reason, the
    buffer stays bounded, and random bytes are never silently taken for nothing."""
    splitter, stream = FrameSplitter(), Jt808Stream()
    frames = []
    for chunk in chunks + [b"\x7e"]:
        frames += splitter.feed(chunk)
        stream.feed(chunk)
        assert splitter.pending <= MAX_FRAME
    frame_counts = {k: v for k, v in stream.counts.items() if k not in ("garbage", "too_long")}
    assert sum(frame_counts.values()) == len(frames)
    assert set(stream.counts) <= set(REASONS)
    if any(byte != 0x7E for chunk in chunks for byte in chunk):
        assert sum(stream.counts.values()) > 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=0xFFFF), st.integers(min_value=0, max_value=255))
def test_random_bodies_and_ids_never_raise(body: bytes, message_id: int, version: int) -> None:
    """Any id and body, well framed, in both header versions: a (message or None, reason) pair
    with a known reason, never an exception."""
    for phone, ver in (("013800138000", None), ("00000000013800138000", version)):
        message, reason = decode_frame(encode_frame(message_id, phone, 1, body, ver)[1:-1])
        assert reason in REASONS
        if message is not None:
            assert isinstance(message.header, Header) and message.header.message_id == message_id


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199))
def test_corrupted_public_frame_is_counted(noise: bytes, at: int) -> None:
    """A public frame with bytes overwritten never raises and is either decoded or counted."""
    frame = bytearray(FRAMES["go_items_all"][1:-1])
    at %= len(frame)
    frame[at:at + len(noise)] = noise
    message, reason = decode_frame(bytes(frame))
    assert reason in REASONS
    assert isinstance(message.body if message else None, (Location, bytes, type(None), TerminalReply, Heartbeat,
                                                          Registration, Authentication, Batch))
