"""Tables for `ingest.jt808_packages`: a long 0x0704 batch (盲区补传) cut into sub-packages by
`encode_packages` and joined again by `Reassembly` whatever the fragments' order, through the
terminal's stream (`Jt808Stream`) as the gateway feeds it; and the bounds: bad indexes,
duplicates, too many messages waiting, fragments that stop coming (dropped after the timeout
given as `now`), each counted by its reason, never an exception."""
from __future__ import annotations

import pytest

from ingest.jt808 import Batch, Jt808Stream, Message, decode_frame
from ingest.jt808_packages import MAX_PACKAGES, PACKAGE_REASONS, Reassembly, encode_packages

PHONE = "013912345678"
GO_0200 = bytes.fromhex("7e0200001c0123456789010000000004000000080007203b7d0202633df70138000300632410012359591c7e")


def _location_body() -> bytes:
    """The body of go-jt808's 0x0200 test frame (tests/data/jt808/frames.txt, go_0200)."""
    message, reason = decode_frame(GO_0200[1:-1])
    assert reason == "frames_ok"
    data = GO_0200[1:-1].replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")
    return data[12:-1]


def batch_body(count: int) -> bytes:
    """A 0x0704 body of `count` copies of that report, type 1 (blind area)."""
    item = _location_body()
    return count.to_bytes(2, "big") + b"\x01" + (len(item).to_bytes(2, "big") + item) * count


def fragments(count: int = 100, size: int = 512, serial: int = 7) -> list[Message]:
    """The sub-package frames of a batch of `count` reports, decoded (raw fragments)."""
    out = []
    for frame in encode_packages(0x0704, PHONE, serial, batch_body(count), size):
        message, reason = decode_frame(frame[1:-1])
        assert reason == "sub_package"
        out.append(message)
    return out


@pytest.mark.parametrize("order", ["in order", "reversed", "interleaved"])
def test_fragments_join_in_index_order(order):
    parts = fragments()
    assert len(parts) == 6 and all(p.header.packages[0] == 6 for p in parts)  # 3,003 bytes of body
    if order == "reversed":
        parts = parts[::-1]
    elif order == "interleaved":
        parts = parts[1::2] + parts[0::2]
    joiner = Reassembly()
    results = [joiner.add(part, now=100.0 + i) for i, part in enumerate(parts)]
    assert all(r == (None, None) for r in results[:-1])
    message, reason = results[-1]
    assert reason == "frames_ok"
    assert isinstance(message.body, Batch) and message.body.blind_area and len(message.body.locations) == 100
    assert message.header.packages is None and message.header.serial == 7 and message.header.phone == PHONE
    assert joiner.counts == {"packages_joined": 1} and joiner.pending == 0


def test_stream_chunks_then_join():
    """As the gateway does: the whole byte stream in odd chunks, fragments to the reassembly."""
    wire = b"".join(encode_packages(0x0704, PHONE, 65534, batch_body(40), 300))  # serials wrap past 0xFFFF
    stream, joiner = Jt808Stream(), Reassembly()
    joined = []
    for at in range(0, len(wire), 97):
        for message in stream.feed(wire[at:at + 97]):
            found, reason = joiner.add(message, now=0.0)
            if found is not None:
                joined.append((found, reason))
    assert stream.counts["sub_package"] == 5
    assert [(len(m.body.locations), r) for m, r in joined] == [(40, "frames_ok")]


@pytest.mark.parametrize("total, index", [(0, 0), (3, 0), (3, 4), (MAX_PACKAGES + 1, 1)])
def test_bad_index_counted(total, index):
    part = fragments(count=10)[0]
    header = part.header.__class__(**{**{f: getattr(part.header, f) for f in part.header.__slots__},
                                      "packages": (total, index)})
    joiner = Reassembly()
    assert joiner.add(Message(header, part.body), now=0.0) == (None, None)
    assert joiner.counts == {"package_bad_index": 1} and joiner.pending == 0


def test_duplicate_kept_once():
    parts = fragments(count=30)
    joiner = Reassembly()
    joiner.add(parts[0], 0.0)
    assert joiner.add(parts[0], 0.0) == (None, None)
    for part in parts[1:]:
        message, reason = joiner.add(part, 0.0)
    assert reason == "frames_ok" and len(message.body.locations) == 30
    assert joiner.counts == {"package_duplicate": 1, "packages_joined": 1}


def test_timeout_drops_a_message_whose_fragments_stopped():
    parts = fragments()
    joiner = Reassembly(timeout_s=60.0)
    for part in parts[:3]:
        joiner.add(part, now=1000.0)
    assert joiner.expire(now=1059.0) == 0 and joiner.pending == 1
    assert joiner.expire(now=1060.5) == 1 and joiner.pending == 0
    for part in parts[3:]:  # the rest, late: never a message
        assert joiner.add(part, now=1061.0) == (None, None)
    assert joiner.counts["package_expired"] == 1 and "packages_joined" not in joiner.counts


def test_too_many_pending_drops_the_oldest():
    joiner = Reassembly(max_pending=2)
    first, second, third = (fragments(count=30, serial=serial) for serial in (100, 200, 300))
    for parts in (first, second, third):
        joiner.add(parts[0], 0.0)
    assert joiner.pending == 2 and joiner.counts == {"package_overflow": 1}
    for part in first[1:]:  # the oldest was dropped: its rest starts over, and is dropped in turn
        joiner.add(part, 0.0)
    done = [joiner.add(part, 0.0) for part in third[1:]]
    assert done[-1][1] == "frames_ok"
    assert set(joiner.counts) <= set(PACKAGE_REASONS)


def test_joined_body_that_does_not_decode():
    """A batch whose joined body lies about its count: the message's reason, no exception."""
    body = batch_body(20)
    body = (99).to_bytes(2, "big") + body[2:]
    joiner = Reassembly()
    results = [joiner.add(decode_frame(frame[1:-1])[0], 0.0) for frame in encode_packages(0x0704, PHONE, 1, body, 200)]
    assert results[-1] == (None, "length_mismatch")

