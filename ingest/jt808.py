"""JT/T 808-2013 and -2019 codec for the terminals' TCP streams: framing, header, the bodies a
vehicle terminal sends to a dispatch platform, and the platform's replies. Pure: no sockets, no
clock; `ingest.jt808_items` decodes the location report.

A frame on the wire is ``0x7e | header | body | check | 0x7e`` with 0x7e inside escaped as
0x7d 0x02 and 0x7d as 0x7d 0x01; `check` is the XOR of header and body. The header (2013 4.4.3,
2019 4.5.3), big-endian:
  WORD message id, WORD body properties (bits 0-9 body length, 10-12 encryption, 13 sub-package,
  14 the 2019 version flag), [2019: BYTE protocol version], BCD[6] (2019: BCD[10]) terminal phone
  number, WORD serial number, [sub-package: WORD total, WORD index].

`FrameSplitter.feed(chunk)` cuts arbitrary TCP chunks into the escaped frames between flags;
`decode_frame(frame)` returns ``(message, reason)`` where `reason` is the count key (see `REASONS`)
and `message` is None when the frame itself is unusable. Neither ever raises. `Jt808Stream` joins
them for one connection and counts every frame by its reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from command.jt808_registration import (REGISTER_NO_TERMINAL, REGISTER_NO_VEHICLE, REGISTER_OK,
                                        REGISTER_TERMINAL_TAKEN, REGISTER_VEHICLE_TAKEN)
from ingest.jt808_items import BodyError, FixFields, Location, as_fix, decode_location

__all__ = ["Authentication", "Batch", "FixFields", "FrameSplitter", "Header", "Heartbeat", "Jt808Stream",
           "Location", "MAX_FRAME", "Message", "REASONS", "REGISTER_NO_TERMINAL", "REGISTER_NO_VEHICLE",
           "REGISTER_OK", "REGISTER_TERMINAL_TAKEN", "REGISTER_VEHICLE_TAKEN", "RESULT_ALARM_CONFIRMED",
           "RESULT_BAD_MESSAGE", "RESULT_FAILED", "RESULT_NOT_SUPPORTED", "RESULT_OK", "Registration",
           "TerminalReply", "as_fix", "checksum", "decode_body", "decode_frame", "encode_frame", "escape",
           "platform_reply", "registration_reply"]

REASONS: dict[str, str] = {
    "frames_ok": "a frame whose header and body decoded",
    "unknown_message": "a valid frame of a message id we do not decode: header kept, body raw",
    "encrypted": "a valid frame whose body is encrypted (properties bits 10-12): header kept, body raw",
    "sub_package": "a valid frame of a sub-packaged message: header kept, the fragment raw",
    "garbage": "bytes outside any frame (before the first flag of a stream, or a flood without flags)",
    "too_long": "more bytes between two flags than the longest frame the standard allows",
    "bad_escape": "0x7d followed by anything but 0x01 or 0x02",
    "too_short": "a frame or body shorter than its fixed fields",
    "bad_checksum": "the check byte differs from the XOR of header and body",
    "length_mismatch": "the body is not as long as the header's length field says",
    "bad_bcd_time": "a location time that is not BCD YYMMDDhhmmss of a real date",
    "bad_text": "a text field that is not GBK",
    "bad_item": "a location report decoded, but an additional item overruns the body or has the wrong "
                "length (see Location.item_errors)",
    "decode_error": "an unexpected error while decoding (the frame is dropped)",
}

MAX_BODY = 0x3FF  # the length field's 10 bits
MAX_HEADER = 21  # 2019 with sub-package fields
MAX_FRAME = 2 * (MAX_HEADER + MAX_BODY + 1)  # escaped bytes between flags: every byte may double

FLAG = 0x7E
_VERSION_FLAG = 0x4000
_SUB_PACKAGE = 0x2000

# 0x8001 results (2013 table 4); the 0x8100 results are command.jt808_registration's.
RESULT_OK, RESULT_FAILED, RESULT_BAD_MESSAGE, RESULT_NOT_SUPPORTED, RESULT_ALARM_CONFIRMED = range(5)


# ---------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class Header:
    """A frame's header. `phone` is the terminal phone number's BCD digits as sent (12 in 2013, 20
    in 2019; kept as hex digits, so a terminal that puts hex there, as some do, keeps its
    identity, and the reply carries it back unchanged); `version` is the 2019 protocol version byte, None for a 2013 frame; `packages` is
    (total, index) of a sub-packaged message, else None."""

    message_id: int
    body_length: int
    encryption: int
    phone: str
    serial: int
    version: int | None = None
    packages: tuple[int, int] | None = None

    @property
    def is_2019(self) -> bool:
        """True for a frame with the 2019 version flag."""
        return self.version is not None


@dataclass(frozen=True, slots=True)
class TerminalReply:
    """0x0001 terminal general reply: the platform message it answers and the result (0 ok, 1
    failed, 2 message error, 3 not supported)."""

    serial: int
    message_id: int
    result: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """0x0002 terminal heartbeat (empty body)."""


@dataclass(frozen=True, slots=True)
class Registration:
    """0x0100 terminal registration. `edition` is 2011, 2013 or 2019 (the field lengths used);
    `plate_colour` 0 means no plate and `plate` is then the VIN."""

    province: int
    city: int
    maker: str
    model: str
    terminal_id: str
    plate_colour: int
    plate: str
    edition: int


@dataclass(frozen=True, slots=True)
class Authentication:
    """0x0102 terminal authentication: the code the platform issued; 2019 adds IMEI and software
    version (empty in 2013)."""

    code: str
    imei: str = ""
    software_version: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    """0x0704 batch location upload: `blind_area` True for 盲区补传 (type 1), False for a normal
    batch (type 0); the reports in the terminal's order."""

    blind_area: bool
    locations: tuple[Location, ...]


Body = TerminalReply | Heartbeat | Registration | Authentication | Location | Batch | bytes


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded frame: its header and body (raw bytes for an unknown message id, an encrypted
    body or a sub-package fragment)."""

    header: Header
    body: Body


# ---------------------------------------------------------------- framing
def checksum(data: bytes) -> int:
    """XOR of every byte of `data`."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def escape(data: bytes) -> bytes:
    """Escape header, body and check for the wire: 0x7d -> 0x7d 0x01, 0x7e -> 0x7d 0x02."""
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def _unescape(frame: bytes) -> bytes | None:
    """The escaped bytes between two flags -> the frame, None when an escape is bad."""
    if 0x7D not in frame:
        return frame
    pairs = frame.count(b"\x7d\x01") + frame.count(b"\x7d\x02")
    if frame.count(b"\x7d") != pairs:
        return None
    return frame.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


class FrameSplitter:
    """Cuts one TCP stream into frames: feed it chunks as they arrive, get back the escaped bytes
    between each pair of flags. Every 0x7e is a boundary, so a frame lost in garbage cannot take
    the next one with it. Holds at most `MAX_FRAME` bytes; what it drops is counted in `counts`
    ("garbage", "too_long")."""

    __slots__ = ("_buffer", "_synced", "_skipping", "_in_garbage", "counts")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._synced = False  # a flag has been seen: the bytes after it are a frame
        self._skipping = False  # the current frame grew too long: dropped up to the next flag
        self._in_garbage = False  # the bytes before the first flag are counted once per run
        self.counts: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Bytes held of an unfinished frame (at most MAX_FRAME)."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The frames this chunk completes (without their flags, still escaped)."""
        frames: list[bytes] = []
        start = 0
        buffer = self._buffer
        while True:
            flag = chunk.find(FLAG, start)
            if flag < 0:
                break
            piece = chunk[start:flag]
            start = flag + 1
            if not self._synced:
                self._synced = True
                if piece and not self._in_garbage:
                    self.counts["garbage"] += 1
                self._in_garbage = False
                continue
            if self._skipping:
                self._skipping = False
                continue
            if buffer:
                buffer += piece
                piece = bytes(buffer)
                buffer.clear()
            if len(piece) > MAX_FRAME:
                self.counts["too_long"] += 1
            elif piece:
                frames.append(piece)
        rest = chunk[start:]
        if rest:
            self._hold(rest)
        return frames

    def _hold(self, rest: bytes) -> None:
        """Keep the start of an unfinished frame, within the bound."""
        if not self._synced:
            if not self._in_garbage:
                self.counts["garbage"] += 1
                self._in_garbage = True
        elif self._skipping:
            return
        elif len(self._buffer) + len(rest) > MAX_FRAME:
            self.counts["too_long"] += 1
            self._buffer.clear()
            self._skipping = True
        else:
            self._buffer += rest


# ---------------------------------------------------------------- decoding
def _header(data: bytes) -> tuple[Header, int] | str:
    """The header and where the body starts, or the count reason."""
    if len(data) < 13:  # 12-byte 2013 header and the check byte
        return "too_short"
    properties = int.from_bytes(data[2:4], "big")
    version = None
    at = 4
    phone_size = 6
    if properties & _VERSION_FLAG:
        version, at, phone_size = data[4], 5, 10
    phone_end = at + phone_size
    size = phone_end + 2 + (4 if properties & _SUB_PACKAGE else 0)
    if len(data) < size + 1:
        return "too_short"
    packages = None
    if properties & _SUB_PACKAGE:
        packages = (int.from_bytes(data[size - 4:size - 2], "big"), int.from_bytes(data[size - 2:size], "big"))
    header = Header(int.from_bytes(data[0:2], "big"), properties & MAX_BODY, properties >> 10 & 7,
                    data[at:phone_end].hex(),
                    int.from_bytes(data[phone_end:phone_end + 2], "big"), version, packages)
    return header, size


def _text(data: bytes) -> str:
    """A GBK text field without its trailing NUL padding."""
    try:
        return data.rstrip(b"\x00").decode("gbk")
    except UnicodeDecodeError:
        raise BodyError("bad_text") from None


def _terminal_reply(body: bytes, header: Header) -> TerminalReply:
    """0x0001: WORD reply serial, WORD reply id, BYTE result."""
    if len(body) != 5:
        raise BodyError("too_short" if len(body) < 5 else "length_mismatch")
    return TerminalReply(int.from_bytes(body[0:2], "big"), int.from_bytes(body[2:4], "big"), body[4])


def _heartbeat(body: bytes, header: Header) -> Heartbeat:
    """0x0002: no body."""
    return Heartbeat()


# registration field lengths by edition: maker, model, terminal id
_REGISTRATION = {2011: (5, 8, 7), 2013: (5, 20, 7), 2019: (11, 30, 30)}


def _registration(body: bytes, header: Header) -> Registration:
    """0x0100: WORD province, WORD city, BYTE[5|11] maker, BYTE[8|20|30] model, BYTE[7|30] terminal
    id, BYTE plate colour, STRING plate. A frame without the 2019 flag is 2013 when its body
    holds the 2013 fields (more than 36 bytes, go-jt808's rule), else 2011."""
    edition = 2019 if header.is_2019 else (2013 if len(body) > 36 else 2011)
    maker, model, terminal = _REGISTRATION[edition]
    colour_at = 4 + maker + model + terminal
    if len(body) < colour_at + 1:
        raise BodyError("too_short")
    fields = []
    at = 4
    for size in (maker, model, terminal):
        fields.append(_text(body[at:at + size]))
        at += size
    return Registration(int.from_bytes(body[0:2], "big"), int.from_bytes(body[2:4], "big"), *fields,
                        body[colour_at], _text(body[colour_at + 1:]), edition)


def _authentication(body: bytes, header: Header) -> Authentication:
    """0x0102: 2013 STRING code (the whole body); 2019 BYTE code length, STRING code, BYTE[15] IMEI,
    BYTE[20] software version."""
    if not header.is_2019:
        return Authentication(_text(body))
    if not body or len(body) < 1 + body[0] + 35:
        raise BodyError("too_short")
    end = 1 + body[0]
    return Authentication(_text(body[1:end]), _text(body[end:end + 15]), _text(body[end + 15:end + 35]))


def _location(body: bytes, header: Header) -> Location:
    """0x0200: see `ingest.jt808_items`."""
    return decode_location(body)


def _batch(body: bytes, header: Header) -> Batch:
    """0x0704: WORD count, BYTE type (0 normal, 1 blind area), then count times WORD length and a
    0x0200 body of that length."""
    if len(body) < 3:
        raise BodyError("too_short")
    count = int.from_bytes(body[0:2], "big")
    locations = []
    at = 3
    for _ in range(count):
        size = int.from_bytes(body[at:at + 2], "big")
        item = body[at + 2:at + 2 + size]
        if at + 2 > len(body) or len(item) != size:
            raise BodyError("length_mismatch")
        locations.append(decode_location(item))
        at += 2 + size
    if at != len(body):
        raise BodyError("length_mismatch")
    return Batch(body[2] == 1, tuple(locations))


_BODIES = {0x0001: _terminal_reply, 0x0002: _heartbeat, 0x0100: _registration, 0x0102: _authentication,
           0x0200: _location, 0x0704: _batch}


def decode_frame(frame: bytes) -> tuple[Message | None, str]:
    """Decode the escaped bytes between two flags. Returns (message or None, count reason); never
    raises. A message comes back with its body raw for an unknown id, an encrypted body or a
    sub-package fragment; a body that does not decode gives None and the body's reason. A
    location report with unreadable additional items comes back with reason "bad_item"."""
    try:
        return _decode(frame)
    except Exception:  # noqa: BLE001 - defensive: no frame may ever raise out of the decoder
        return None, "decode_error"


def _decode(frame: bytes) -> tuple[Message | None, str]:
    """`decode_frame` without its last guard."""
    data = _unescape(frame)
    if data is None:
        return None, "bad_escape"
    found = _header(data)
    if found.__class__ is str:
        return None, found
    header, start = found
    if checksum(data) != 0:  # the XOR of everything including the check byte
        return None, "bad_checksum"
    body = data[start:-1]
    if len(body) != header.body_length:
        return None, "length_mismatch"
    if header.packages is not None:
        return Message(header, body), "sub_package"
    return decode_body(header, body)


def decode_body(header: Header, body: bytes) -> tuple[Message | None, str]:
    """The message of a header and its whole body (a frame's, or a sub-packaged message's joined
    fragments, `ingest.jt808_packages`), as `decode_frame` returns it."""
    if header.encryption:
        return Message(header, body), "encrypted"
    reader = _BODIES.get(header.message_id)
    if reader is None:
        return Message(header, body), "unknown_message"
    try:
        decoded = reader(body, header)
    except BodyError as error:
        return None, error.reason
    return Message(header, decoded), ("bad_item" if _item_errors(decoded) else "frames_ok")


def _item_errors(body: Body) -> int:
    """How many additional items of a location report or a batch could not be read."""
    if body.__class__ is Location:
        return body.item_errors
    if body.__class__ is Batch:
        return sum(location.item_errors for location in body.locations)
    return 0


class Jt808Stream:
    """One terminal connection's decoder: `feed(chunk)` returns the messages it completes and
    counts every dropped byte run and every frame by its reason in `counts`."""

    __slots__ = ("_splitter", "counts")

    def __init__(self) -> None:
        self._splitter = FrameSplitter()
        self.counts = self._splitter.counts

    def feed(self, chunk: bytes) -> list[Message]:
        """Decoded messages of the frames this chunk completes (bodies raw where `decode_frame`
        keeps them raw)."""
        messages = []
        for frame in self._splitter.feed(chunk):
            message, reason = decode_frame(frame)
            self.counts[reason] += 1
            if message is not None:
                messages.append(message)
        return messages


# ---------------------------------------------------------------- encoding
def encode_frame(message_id: int, phone: str, serial: int, body: bytes, version: int | None = None,
                 packages: tuple[int, int] | None = None) -> bytes:
    """A whole frame with flags: the header (2019 form when `version` is given, `phone` then 20
    digits, else 12; with `packages`, (total, index) of a sub-package), the body, the check byte,
    escaped. `ingest.jt808_packages.encode_packages` cuts a long body into sub-packages."""
    if len(body) > MAX_BODY:
        raise ValueError(f"body of {len(body)} bytes: longer than a frame holds, send sub-packages")
    properties = len(body) | (_VERSION_FLAG if version is not None else 0) | (_SUB_PACKAGE if packages else 0)
    digits = 20 if version is not None else 12
    if len(phone) != digits:
        raise ValueError(f"phone {phone!r}: {digits} digits expected")
    head = message_id.to_bytes(2, "big") + properties.to_bytes(2, "big")
    if version is not None:
        head += bytes((version,))
    data = head + bytes.fromhex(phone) + serial.to_bytes(2, "big")
    if packages:
        data += packages[0].to_bytes(2, "big") + packages[1].to_bytes(2, "big")
    data += body
    return b"\x7e" + escape(data + bytes((checksum(data),))) + b"\x7e"


def platform_reply(to: Header, serial: int, result: int = RESULT_OK) -> bytes:
    """0x8001 platform general reply to the terminal frame `to`: WORD its serial, WORD its id,
    BYTE result; `serial` is the platform's own serial number."""
    body = to.serial.to_bytes(2, "big") + to.message_id.to_bytes(2, "big") + bytes((result,))
    return encode_frame(0x8001, to.phone, serial, body, to.version)


def registration_reply(to: Header, serial: int, result: int, code: str = "") -> bytes:
    """0x8100 registration reply to the terminal frame `to`: WORD its serial, BYTE result, and on
    success the authentication code (STRING)."""
    body = to.serial.to_bytes(2, "big") + bytes((result,))
    if result == REGISTER_OK:
        body += code.encode("gbk")
    return encode_frame(0x8100, to.phone, serial, body, to.version)
