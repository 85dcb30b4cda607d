"""The routing table's settings file, ROUTING_FILE (TOML, a line of help per entry), read into
the `command.routing.RoutingTable` the ticket manager and the dispatch service use. Empty
setting: the file shipped in ``center/config/routing.toml`` (the built-in default table)."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from center.settings import SettingsError
from command.errors import ValidationError
from command.routing import RoutingTable, table_from_config

SHIPPED_ROUTING = Path(__file__).resolve().parent / "config" / "routing.toml"


def load_routing_file(path: Path = SHIPPED_ROUTING) -> RoutingTable:
    """The routing table of a routing file; SettingsError names the file and the bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"ROUTING_FILE {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"ROUTING_FILE {path}: {exc}") from None
    try:
        return table_from_config(data)
    except ValidationError as exc:
        raise SettingsError(f"ROUTING_FILE {path}: {exc.message}") from None


def load_routing(settings: Any) -> RoutingTable:
    """The routing table of the setting ROUTING_FILE (empty: the shipped file)."""
    return load_routing_file(Path(getattr(settings, "ROUTING_FILE", "") or SHIPPED_ROUTING))
