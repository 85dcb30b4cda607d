"""JT/T 808 sub-packages (分包): a message longer than a frame holds comes as fragments, each a
frame whose header has the sub-package bit and (WORD total, WORD index from 1). Pure: no clock,
no sockets; the time comes in as `now`.

`Reassembly` joins the fragments of one connection: the fragments of a message share phone,
message id and total, and their serial numbers run on (a fragment's serial less its index is the
message's key). The message is decoded (`ingest.jt808.decode_body`) when its last fragment came,
in index order whatever the arrival order. It is bounded: at most `max_pending` messages wait at
once (the oldest dropped when one more starts) and a message whose last fragment came more than
`timeout_s` before `now` is dropped. Every drop is counted by its reason in `counts`
(`PACKAGE_REASONS`); nothing raises.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from ingest.jt808 import MAX_BODY, Header, Message, decode_body, encode_frame

__all__ = ["MAX_PACKAGES", "PACKAGE_REASONS", "Reassembly", "encode_packages"]

PACKAGE_REASONS: dict[str, str] = {
    "packages_joined": "a sub-packaged message whose fragments all came, joined and decoded",
    "package_bad_index": "a fragment whose total is 0 or above MAX_PACKAGES, or whose index is 0 or above its total",
    "package_duplicate": "a fragment of an index already held (the first one is kept)",
    "package_expired": "a message whose fragments stopped coming for the timeout: dropped",
    "package_overflow": "a message dropped because more than max_pending messages were waiting",
    "package_too_long": "a message whose fragments hold more than MAX_PACKAGES bodies' bytes: dropped",
}
MAX_PACKAGES = 256  # fragments of one message: 256 kB of body at most


class _Pending:
    """The fragments of one message so far."""

    __slots__ = ("header", "parts", "size", "touched")

    def __init__(self, header: Header, now: float) -> None:
        self.header = header  # the first fragment's (its version and phone)
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.touched = now


class Reassembly:
    """One connection's sub-packaged messages in progress (see the module's docstring)."""

    __slots__ = ("max_pending", "timeout_s", "counts", "_pending")

    def __init__(self, *, max_pending: int = 4, timeout_s: float = 60.0, counts: Counter | None = None) -> None:
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.counts: Counter[str] = Counter() if counts is None else counts
        self._pending: dict[tuple, _Pending] = {}

    @property
    def pending(self) -> int:
        """Messages waiting for fragments."""
        return len(self._pending)

    def add(self, fragment: Message, now: float) -> tuple[Message | None, str | None]:
        """Take one fragment (a message whose header has `packages` and whose body is raw bytes).
        Returns (the joined message, its decode reason) when this fragment completes one (the
        message is None when its joined body does not decode), else (None, None)."""
        if self._pending:
            self.expire(now)
        header = fragment.header
        total, index = header.packages or (0, 0)
        if not (0 < total <= MAX_PACKAGES and 0 < index <= total):
            self.counts["package_bad_index"] += 1
            return None, None
        key = (header.phone, header.message_id, total, (header.serial - index) & 0xFFFF)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                del self._pending[next(iter(self._pending))]  # the oldest started
                self.counts["package_overflow"] += 1
            pending = self._pending[key] = _Pending(header, now)
        if index in pending.parts:
            self.counts["package_duplicate"] += 1
            return None, None
        pending.parts[index] = fragment.body
        pending.size += len(fragment.body)
        pending.touched = now
        if pending.size > MAX_PACKAGES * MAX_BODY:
            del self._pending[key]
            self.counts["package_too_long"] += 1
            return None, None
        if len(pending.parts) < total:
            return None, None
        del self._pending[key]
        body = b"".join(pending.parts[i] for i in range(1, total + 1))
        joined = replace(pending.header, body_length=len(body), packages=None,
                         serial=(header.serial - index + 1) & 0xFFFF)  # the first fragment's
        self.counts["packages_joined"] += 1
        try:
            return decode_body(joined, body)
        except Exception:  # noqa: BLE001 - as decode_frame: no message may raise out of the decoder
            return None, "decode_error"

    def expire(self, now: float) -> int:
        """Drop the messages whose last fragment came more than `timeout_s` before `now`; how many."""
        limit = now - self.timeout_s
        stale = [key for key, pending in self._pending.items() if pending.touched < limit]
        for key in stale:
            del self._pending[key]
        if stale:
            self.counts["package_expired"] += len(stale)
        return len(stale)


def encode_packages(message_id: int, phone: str, serial: int, body: bytes, size: int = MAX_BODY,
                    version: int | None = None) -> list[bytes]:
    """A message cut into sub-package frames of at most `size` body bytes, serials `serial`,
    `serial` + 1, ... (a terminal's side: the simulator and the tests send them)."""
    chunks = [body[at:at + size] for at in range(0, len(body), size)] or [b""]
    total = len(chunks)
    return [encode_frame(message_id, phone, (serial + i) & 0xFFFF, chunk, version, (total, i + 1))
            for i, chunk in enumerate(chunks)]
