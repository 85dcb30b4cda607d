"""The embedded broker's credential files, kept in step with the DeviceStore.

Under ``DATA_DIR/broker`` (mode 700, files mode 600):

- ``center.secret``: the center's own broker password (user ``center``), generated once;
- ``center.passwd`` / ``center.acl``: the center account alone (``topic readwrite #``), for the
  mosquitto listener the center's services use;
- ``mosquitto.passwd`` / ``mosquitto.acl``: every active device and the center account, for the
  device listener (mosquitto) or the only listener (amqtt, through servers/broker_acl.py).

``BrokerSync`` is a daemon thread in the process that owns the embedded broker: it polls the
device revision of a `DeviceSource` (the device registry in PostgreSQL, ``store.devices.DeviceReader``,
handed in by its caller) every POLL_S, re-renders the files when it changes and makes the broker
reload them (SIGHUP to mosquitto; amqtt's plugin notices the new mtime).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Protocol

from servers.broker_credentials import BrokerAuth, hash_password, new_secret, render, verify_password, write_files, write_private

log = logging.getLogger(__name__)

CENTER_USER = "center"
POLL_S = 1.0


def broker_dir(data_dir: Path) -> Path:
    """Where the embedded broker's credential files live."""
    return data_dir / "broker"


class CenterAccount:
    """The center's broker account: its password generated once into ``center.secret``."""

    def __init__(self, directory: Path) -> None:
        secret_file = directory / "center.secret"
        try:
            self.password = secret_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            self.password = ""
        if not self.password:
            self.password = new_secret()
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
            write_private(secret_file, self.password + "\n")
        self.username = CENTER_USER
        self._hash_file = directory / "center.hash"
        self.password_hash = self._stable_hash()

    def _stable_hash(self) -> str:
        """The password's hash, reused while it matches (a fresh salt each start would rewrite
        the files and make the broker reload for nothing)."""
        try:
            stored = self._hash_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            stored = ""
        if stored and verify_password(self.password, stored):
            return stored
        stored = hash_password(self.password)
        write_private(self._hash_file, stored + "\n")
        return stored


def write_center_files(directory: Path, account: CenterAccount) -> None:
    """``center.passwd``/``center.acl``, and the device files if absent (center only until the
    first sync; existing ones are kept so devices can connect before the first poll)."""
    center = render([], (account.username, account.password_hash))
    write_files(directory, center, prefix="center")
    if not (directory / "mosquitto.passwd").exists() or not (directory / "mosquitto.acl").exists():
        write_files(directory, center, prefix="mosquitto")


def render_devices(directory: Path, devices, center: tuple[str, str] | None) -> bool:
    """Write ``mosquitto.passwd``/``mosquitto.acl`` for these devices (and the center account,
    if given); True when they changed."""
    auth: BrokerAuth = render(devices, center)
    return write_files(directory, auth, prefix="mosquitto")


class DeviceSource(Protocol):
    """Where the sync reads the devices: their revision (a token that changes with them), the
    devices themselves (what `render` takes), and a close when the sync stops."""

    def revision(self) -> str:
        """The current revision."""

    def devices(self) -> list[Any]:
        """Every device."""

    def close(self) -> None:
        """Release what the reads hold."""


class BrokerSync:
    """Keeps an embedded broker's files in step with the device revision (a daemon thread)."""

    def __init__(self, source: DeviceSource, directory: Path, account: CenterAccount, broker=None,
                 reload_signal: int | None = signal.SIGHUP, poll_s: float = POLL_S) -> None:
        self.source = source
        self.directory = directory
        self.account = account
        self.broker = broker  # an EmbeddedProcess (its .process may be replaced by a restart)
        self.reload_signal = reload_signal
        self.poll_s = poll_s
        self.revision: str | None = None
        self.renders = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-sync", daemon=True)

    def start(self) -> "BrokerSync":
        """Sync once now (best effort) and keep polling in the background."""
        self.sync_once()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        else:
            self.source.close()

    def sync_once(self) -> bool:
        """Render if the revision changed; True when the files were rewritten. Errors (the
        database down, the disk full) are logged and counted, and the next poll tries again."""
        try:
            revision = self.source.revision()
            if revision == self.revision:
                return False
            changed = render_devices(self.directory, self.source.devices(),
                                     (self.account.username, self.account.password_hash))
            self.revision = revision
            if changed:
                self.renders += 1
                self._reload()
            return changed
        except Exception as exc:  # PostgreSQL down, disk full: log, count, go on polling
            self.errors += 1
            log.warning("broker credential sync failed (%d so far): %s", self.errors, exc)
            return False

    def _reload(self) -> None:
        proc = getattr(self.broker, "process", None)
        if proc is not None and self.reload_signal is not None and proc.poll() is None:
            proc.send_signal(self.reload_signal)
            log.info("broker credentials re-rendered (revision %s); broker reloads", self.revision)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.poll_s):
                self.sync_once()
        finally:
            self.source.close()
