"""The settings tables' files: REVIEW_FILE, ROUTING_FILE, CALENDAR_FILE and LIMITS_FILE, each a
TOML file named by its setting, read by one rule. A file that cannot be read, is not TOML, or holds
an entry its parser refuses stops the start with a SettingsError that names the setting, the file
and what is wrong (``LIMITS_FILE /etc/center/limits.toml: unknown key 'x'``)."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Callable, TypeVar

from config.settings import SettingsError
from command.errors import ValidationError

T = TypeVar("T")


class TableError(ValueError):
    """A settings file's content refused in the parser's own words (what follows the file's name)."""


def load_table(setting: str, path: Path, parse: Callable[[dict[str, Any]], T]) -> T:
    """What ``parse`` makes of the TOML file at ``path`` (named by ``setting``); an unreadable
    file, bad TOML, and a ValidationError or TableError of ``parse`` become a SettingsError."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{setting} {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{setting} {path}: {exc}") from None
    try:
        return parse(data)
    except ValidationError as exc:
        raise SettingsError(f"{setting} {path}: {exc.message}") from None
    except TableError as exc:
        raise SettingsError(f"{setting} {path}: {exc}") from None


def path_of(settings: Any, setting: str, shipped: Path) -> Path:
    """The file a setting names, or the shipped one when it is empty (or not a setting here)."""
    return Path(getattr(settings, setting, "") or shipped)
