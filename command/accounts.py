"""Accounts, roles and passwords: scrypt-hashed, with the initial admin and the demo users."""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

log = logging.getLogger(__name__)

ROLES = ("agent", "dispatcher", "crew", "supervisor", "admin", "unit", "team_leader", "coordinator", "director")
ROLE_NAMES_ZH = {"agent": "坐席", "dispatcher": "调度员", "crew": "班组", "supervisor": "值班主管",
                 "admin": "管理员", "unit": "责任单位联络员", "team_leader": "班长（初审）",
                 "coordinator": "督办协调席", "director": "主任（审核）"}
# scrypt cost: about 50 ms per hash on this machine's class of CPU, 16 MiB memory.
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
MAX_PASSWORD_CHARS = 1024
"""Longest password a login checks (a longer one is refused before any hashing)."""


@dataclass(frozen=True)
class Account:
    """A logged-in user: name, role, and the crew they belong to (crew role only); a unit's
    liaison (role unit) has its unit and, read at login, the ids of that unit and every unit
    under it (`unit_ids`: what it may see)."""

    name: str
    role: str
    crew_id: str | None = None
    display: str = ""
    unit_id: str | None = None
    unit_ids: tuple[str, ...] = ()


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A self-describing scrypt hash: ``scrypt$n$r$p$salt_hex$hash_hex``."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of a password against a stored hash; False for malformed hashes."""
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n),
                                r=int(r), p=int(p), maxmem=_SCRYPT["maxmem"], dklen=len(hash_hex) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), hash_hex)


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password nobody knows, checked in place of an unknown or inactive
    user's, so a failed login costs one scrypt whether or not the user exists."""
    return hash_password(secrets.token_urlsafe(24))


def generate_password() -> str:
    """A random password people can type: 4 groups of 4 letters/digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


def mask_phone(phone: str | None) -> str | None:
    """Mask a phone number for roles that do not need it: 13812341234 -> 138****1234."""
    if not phone:
        return phone
    digits = phone.strip()
    if len(digits) >= 7:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:] if len(digits) > 7 else digits[:3] + "****"
    return "*" * len(digits)


def sees_full_phone(role: str) -> bool:
    """Roles that talk to callers see full numbers; crews (and exports) see masked ones."""
    return role in ("agent", "dispatcher", "supervisor", "admin")


def demo_accounts() -> list[dict[str, str]]:
    """One demo user per role (crew user bound to the first demo crew)."""
    return [
        {"name": "agent", "role": "agent", "display": "坐席 王芳"},
        {"name": "dispatcher", "role": "dispatcher", "display": "调度员 李强"},
        {"name": "crew", "role": "crew", "display": "抢修一班 张伟", "crew_id": "C01"},
        {"name": "supervisor", "role": "supervisor", "display": "值班主管 刘洋"},
        {"name": "team_leader", "role": "team_leader", "display": "班长 陈静"},  # the review chain's steps
        {"name": "coordinator", "role": "coordinator", "display": "督办协调席 赵敏"},
        {"name": "director", "role": "director", "display": "主任 孙磊"},
    ]
