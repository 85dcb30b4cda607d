"""Broker credentials in mosquitto's own formats, shared by every broker we run.

- Passwords: mosquitto 2's ``$7$`` hashes, as ``mosquitto_passwd`` writes them:
  ``$7$<iterations>$<base64 salt (12 bytes)>$<base64 PBKDF2-HMAC-SHA512 (64 bytes)>``.
- The password file: one ``username:hash`` line per account.
- The ACL file: per-user ``user <name>`` sections of ``topic read|write|readwrite <filter>`` lines.

The embedded mosquitto reads both files natively; the embedded amqtt reads the same two files
through our plugin (servers/broker_acl.py), so one rendering serves both.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

HASH_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes
SALT_BYTES = 12


def hash_password(password: str, *, iterations: int = HASH_ITERATIONS, salt: bytes | None = None) -> str:
    """The mosquitto 2 ``$7$`` hash (PBKDF2-HMAC-SHA512) of a password."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash (False for any other or malformed hash)."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    if not 1 <= iterations <= 10_000_000 or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def new_secret() -> str:
    """A random password for a device or service account (URL-safe, 192 bits)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class AclRule:
    """One ``topic`` line: access is ``read``, ``write`` or ``readwrite``."""

    access: str
    pattern: str


@dataclass
class BrokerAuth:
    """Accounts (username -> ``$7$`` hash) and per-user ACL rules, as the two files hold them.

    ``superusers`` get ``topic readwrite #``."""

    passwords: dict[str, str] = field(default_factory=dict)
    acls: dict[str, list[AclRule]] = field(default_factory=dict)

    def password_text(self) -> str:
        """The password file's text."""
        return "".join(f"{user}:{stored}\n" for user, stored in sorted(self.passwords.items()))

    def acl_text(self) -> str:
        """The ACL file's text (users without rules get an empty section: they may do nothing)."""
        lines = []
        for user in sorted(set(self.passwords) | set(self.acls)):
            lines.append(f"user {user}")
            lines.extend(f"topic {rule.access} {rule.pattern}" for rule in self.acls.get(user, ()))
            lines.append("")
        return "\n".join(lines)


def write_private(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` with mode 600, atomically (rename); False when unchanged."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return True


def parse_password_file(text: str) -> dict[str, str]:
    """username -> stored hash from a mosquitto password file (blank and ``#`` lines skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        user, stored = line.split(":", 1)
        out[user] = stored
    return out


def parse_acl_file(text: str) -> dict[str, list[AclRule]]:
    """username -> rules from a mosquitto ACL file of ``user`` sections (``pattern`` lines and
    rules before any ``user`` line are not used by us and are ignored)."""
    out: dict[str, list[AclRule]] = {}
    user: str | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "user":
            user = rest.strip()
            out.setdefault(user, [])
        elif word == "topic" and user is not None:
            access, _, pattern = rest.strip().partition(" ")
            if access in ("read", "write", "readwrite") and pattern.strip():
                out[user].append(AclRule(access, pattern.strip()))
            elif access and not pattern:  # "topic <filter>" means readwrite
                out[user].append(AclRule("readwrite", access))
    return out


def topic_matches(pattern: str, topic: str) -> bool:
    """True when an MQTT topic filter (with ``+`` and ``#``) matches a topic name (or, for a
    subscription check, a filter taken literally). ``$``-topics are not matched by a leading
    wildcard, as MQTT says."""
    if topic.startswith("$") and pattern[:1] in ("+", "#"):
        return False
    p_parts, t_parts = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part != "+" and part != t_parts[i]:
            return False
    return len(p_parts) == len(t_parts)


def filter_covered(pattern: str, wanted: str) -> bool:
    """True when every topic the subscription filter ``wanted`` can match is matched by the ACL
    filter ``pattern`` (a ``#`` or ``+`` in ``wanted`` needs one at the same level in
    ``pattern``): how mosquitto checks a SUBSCRIBE against the ACL."""
    p_parts, w_parts = pattern.split("/"), wanted.split("/")
    for i, part in enumerate(p_parts):
        if part == "#":
            return not (wanted.startswith("$") and i == 0)
        if i >= len(w_parts):
            return False
        w = w_parts[i]
        if w == "#":
            return False
        if part == "+":
            if i == 0 and w.startswith("$"):
                return False
            continue
        if part != w:
            return False
    return len(p_parts) == len(w_parts)


def allowed(rules: list[AclRule], topic: str, access: str, *, subscription: bool = False) -> bool:
    """True when a rule grants ``access`` (``read`` or ``write``) on ``topic``."""
    check = filter_covered if subscription else topic_matches
    return any(rule.access in (access, "readwrite") and check(rule.pattern, topic) for rule in rules)


SPARKPLUG_NODE_PUBLISH = ("NBIRTH", "NDATA", "NDEATH")
SPARKPLUG_DEVICE_PUBLISH = ("DBIRTH", "DDATA", "DDEATH")


def device_rules(device) -> list[AclRule]:
    """What a device (``store.devices.Device``) may do: a vehicle publishes only under
    ``fleet/<id>/``; the JT/T 808 gateway only ``fleet/+/jt808`` and ``fleet/+/jt808/backfill``; a
    gateway only ``scada/<its sensors>/...`` and, with ``sparkplug``, its own
    edge node's births, data and deaths in any group, and it reads the commands sent to it."""
    did = device.device_id
    if device.kind == "vehicle":
        return [AclRule("write", f"fleet/{did}/#")]
    if device.kind == "jt808":  # the JT/T 808 gateway publishes its terminals' positions as their vehicles
        return [AclRule("write", "fleet/+/jt808"), AclRule("write", "fleet/+/jt808/backfill")]
    rules = [AclRule("write", f"scada/{sensor}/#") for sensor in device.sensors]
    if device.sparkplug:
        rules += [AclRule("write", f"spBv1.0/+/{kind}/{did}") for kind in SPARKPLUG_NODE_PUBLISH]
        rules += [AclRule("write", f"spBv1.0/+/{kind}/{did}/#") for kind in SPARKPLUG_DEVICE_PUBLISH]
        rules += [AclRule("read", f"spBv1.0/+/NCMD/{did}"), AclRule("read", f"spBv1.0/+/DCMD/{did}/#")]
    return rules


def render(devices, center: tuple[str, str] | None = None) -> BrokerAuth:
    """The accounts and ACLs for the active ``devices`` and, if given, the center's superuser
    account ``(username, $7$ hash)`` (``topic readwrite #``)."""
    auth = BrokerAuth()
    for device in devices:
        if not device.active or (center is not None and device.device_id == center[0]):
            continue
        auth.passwords[device.device_id] = device.password_hash
        auth.acls[device.device_id] = device_rules(device)
    if center is not None:
        auth.passwords[center[0]] = center[1]
        auth.acls[center[0]] = [AclRule("readwrite", "#")]
    return auth


def write_files(directory: Path, auth: BrokerAuth, *, prefix: str = "mosquitto") -> bool:
    """Write ``<prefix>.passwd`` and ``<prefix>.acl`` under ``directory`` (mode 600); True when
    either changed."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    changed = write_private(directory / f"{prefix}.passwd", auth.password_text())
    return write_private(directory / f"{prefix}.acl", auth.acl_text()) or changed
