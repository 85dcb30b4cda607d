"""amqtt plugin: authentication and topic ACLs from mosquitto's password and ACL files.

The embedded amqtt broker (servers/broker.py) loads ``FileAclPlugin`` with the paths of
the two files that servers.broker_credentials renders for mosquitto, so both brokers enforce one set of
rules from one format. The files are re-read when their mtime changes (checked at most every
RELOAD_CHECK_S).

- CONNECT: anonymous refused; the password must match the user's ``$7$`` hash; a client id that
  is some account's username is only for that account (a device connects with client id ==
  username, so nobody else can take its session over; the center's services use their own ids).
- PUBLISH needs ``write``, SUBSCRIBE ``read`` over the whole filter, and every delivery
  (RECEIVE) ``read`` on the message's topic.
- A session whose credentials stop matching the files (revoked, rotated) may do nothing more.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from servers.broker_credentials import AclRule, allowed, parse_acl_file, parse_password_file, verify_password

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 0.5


class AuthFiles:
    """The two files, parsed, re-read when either's mtime (or size) changes."""

    def __init__(self, password_file: str, acl_file: str) -> None:
        self.paths = (Path(password_file), Path(acl_file))
        self.passwords: dict[str, str] = {}
        self.acls: dict[str, list[AclRule]] = {}
        self._stamp: tuple = ()
        self._checked = 0.0
        self._verified: dict[tuple[str, str, str], bool] = {}  # logins that matched the current files
        self.reloads = 0
        self.errors = 0
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the files if they changed since the last read."""
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_CHECK_S:
            return
        self._checked = now
        try:
            stats = [os.stat(path) for path in self.paths]
            stamp = tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)
            if stamp == self._stamp:
                return
            passwords = parse_password_file(self.paths[0].read_text(encoding="utf-8"))
            acls = parse_acl_file(self.paths[1].read_text(encoding="utf-8"))
        except OSError as exc:  # keep the last good set; a missing file at start refuses everyone
            self.errors += 1
            log.error("broker auth files unreadable (%s); keeping the previous ones", exc)
            return
        self.passwords, self.acls, self._stamp = passwords, acls, stamp
        self._verified.clear()
        self.reloads += 1
        log.info("broker auth files loaded: %d accounts", len(passwords))

    def authenticated(self, username: str | None, password: str | None) -> bool:
        """True when the username exists and the password matches its hash (cached per hash)."""
        if not username or password is None:
            return False
        stored = self.passwords.get(username)
        if stored is None:
            return False
        key = (username, password, stored)
        if key in self._verified:
            return True
        ok = verify_password(password, stored)
        if ok:  # only successes: wrong guesses must not grow the cache
            self._verified[key] = True
        return ok

    def may_use_client_id(self, username: str, client_id: str | None) -> bool:
        """A client id that is an account's username belongs to that account only; a device
        (an account with no ``readwrite #`` rule) must use its username as client id."""
        if not client_id:
            return False
        if client_id in self.passwords and client_id != username:
            return False
        superuser = any(rule.access == "readwrite" and rule.pattern == "#" for rule in self.acls.get(username, ()))
        return superuser or client_id == username


class FileAclPlugin(BaseAuthPlugin, BaseTopicPlugin):
    """amqtt authentication and topic-filtering plugin over mosquitto's password and ACL files."""

    @dataclass
    class Config:
        """Plugin options: the two files' paths."""

        password_file: str = ""
        acl_file: str = ""

    def __init__(self, context) -> None:
        super().__init__(context)
        self.files = AuthFiles(self.config.password_file, self.config.acl_file)

    def allows_connect(self, username: str | None, password: str | None, client_id: str | None) -> bool:
        """The CONNECT check: known user, right password, a client id of its own."""
        self.files.refresh()
        return (self.files.authenticated(username, password)
                and self.files.may_use_client_id(username or "", client_id))

    async def authenticate(self, *, session) -> bool:
        """amqtt's CONNECT hook."""
        ok = self.allows_connect(session.username, session.password, session.client_id)
        if not ok:
            log.warning("MQTT connect refused: client id %r, user %r", session.client_id, session.username)
        return ok

    async def topic_filtering(self, *, session=None, topic: str | None = None, action: Action | None = None) -> bool:
        """amqtt's PUBLISH / SUBSCRIBE / RECEIVE hook."""
        if session is None or topic is None:
            return False
        self.files.refresh()
        if not self.files.authenticated(session.username, session.password):
            return False  # revoked or rotated since it connected
        rules = self.files.acls.get(session.username or "", [])
        if action == Action.PUBLISH:
            ok = allowed(rules, topic, "write")
        elif action == Action.SUBSCRIBE:
            ok = allowed(rules, topic, "read", subscription=True)
        else:
            ok = allowed(rules, topic, "read")
        if not ok and action != Action.RECEIVE:
            log.info("MQTT %s by %r on %r denied", action, session.username, topic)
        return ok
