"""110 police linkage: signing and verifying the HTTP requests both ways (pure: ``now`` passed in).

Canonical string signed with HMAC-SHA256 and the shared secret (hex digest in X-Signature):

    b"v1\n" + X-Timestamp + b"\n" + X-Nonce + b"\n" + Idempotency-Key + b"\n" + body

X-Timestamp is epoch seconds (decimal digits), X-Nonce and Idempotency-Key are token characters
(A-Z a-z 0-9 and ._:~-), Idempotency-Key is empty when the header is absent. The body bytes are
signed exactly as sent: never re-serialise before verifying.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import datetime

from command.errors import CommandError
from command.police import TOKEN_PATTERN, check_time


class SignatureError(CommandError, ValueError):
    """A signed request is refused (HTTP 401 whatever the reason); ``code`` is stable."""

    status = 401

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"  # timestamp not digits, nonce or key not token chars
    EXPIRED = "expired"  # timestamp further than max_skew_s from now, either side
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"  # valid signature but the nonce was seen before

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


_SIGNATURE = "X-Signature"
_TIMESTAMP = "X-Timestamp"
_NONCE = "X-Nonce"
_IDEMPOTENCY = "Idempotency-Key"
_DIGITS = re.compile(r"[0-9]{1,12}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def canonical_string(body: bytes, timestamp: str, nonce: str, idempotency_key: str = "") -> bytes:
    """The exact bytes that are signed (see the module's docstring)."""
    return f"v1\n{timestamp}\n{nonce}\n{idempotency_key}\n".encode("ascii") + body


def _digest(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: bytes, now: datetime, nonce: str, *, idempotency_key: str = "") -> dict[str, str]:
    """Headers that sign ``body`` at ``now``; ``nonce`` must be unique per request (uuid4().hex)."""
    check_time("now", now)
    if not TOKEN_PATTERN.fullmatch(nonce):
        raise ValueError(f"nonce {nonce!r} must be 1-200 token characters")
    if idempotency_key and not TOKEN_PATTERN.fullmatch(idempotency_key):
        raise ValueError(f"idempotency key {idempotency_key!r} must be 1-200 token characters")
    timestamp = str(int(now.timestamp()))
    headers = {
        _TIMESTAMP: timestamp,
        _NONCE: nonce,
        _SIGNATURE: _digest(secret, canonical_string(body, timestamp, nonce, idempotency_key)),
    }
    if idempotency_key:
        headers[_IDEMPOTENCY] = idempotency_key
    return headers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lower), None)
    if value is not None and not isinstance(value, str):
        raise SignatureError(SignatureError.MALFORMED_HEADER, f"{name} must be text")
    return value


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: bytes,
    now: datetime,
    *,
    max_skew_s: int = 300,
    seen_nonce: Callable[[str], bool],
) -> None:
    """Accept a signed request or raise SignatureError; headers are looked up case-insensitively.

    ``seen_nonce(nonce)`` must record the nonce and return True when it was already recorded
    (Redis ``SET key 1 NX EX 2*max_skew_s`` returning nil); it is called only once the signature
    is valid and fresh, so forged requests cannot burn nonces.
    """
    values = {}
    for name in (_SIGNATURE, _TIMESTAMP, _NONCE):
        value = _header(headers, name)
        if not value:
            raise SignatureError(SignatureError.MISSING_HEADER, f"{name} header is missing")
        values[name] = value
    key = _header(headers, _IDEMPOTENCY) or ""
    timestamp, nonce, signature = values[_TIMESTAMP], values[_NONCE], values[_SIGNATURE]
    if not _DIGITS.fullmatch(timestamp):
        raise SignatureError(SignatureError.MALFORMED_HEADER, f"{_TIMESTAMP} must be epoch seconds")
    if not TOKEN_PATTERN.fullmatch(nonce) or (key and not TOKEN_PATTERN.fullmatch(key)):
        raise SignatureError(SignatureError.MALFORMED_HEADER, "nonce or idempotency key is not a token")
    if abs(now.timestamp() - int(timestamp)) > max_skew_s:
        raise SignatureError(SignatureError.EXPIRED, f"timestamp {timestamp} is more than {max_skew_s} s off")
    expected = _digest(secret, canonical_string(body, timestamp, nonce, key))
    if not _HEX64.fullmatch(signature) or not hmac.compare_digest(expected, signature.lower()):
        raise SignatureError(SignatureError.BAD_SIGNATURE, "signature does not match body")
    if seen_nonce(nonce):
        raise SignatureError(SignatureError.REPLAY, f"nonce {nonce} was already used")


def accept_once(key: str, seen: set[str]) -> bool:
    """Receiver idempotency: True (and remember ``key``) the first time, False for a duplicate."""
    if not key:
        raise ValueError("idempotency key must not be empty")
    if key in seen:
        return False
    seen.add(key)
    return True
