"""The routing table's settings file, ROUTING_FILE (TOML, a line of help per entry), read into
the `command.routing.RoutingTable` the ticket manager and the dispatch service use. Empty
setting: the file shipped in ``config/routing.toml`` (the built-in default table)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from config.files import load_table, path_of
from command.routing import RoutingTable, table_from_config

SHIPPED_ROUTING = Path(__file__).resolve().parent / "routing.toml"


def load_routing_file(path: Path = SHIPPED_ROUTING) -> RoutingTable:
    """The routing table of a routing file; SettingsError names the file and the bad key."""
    return load_table("ROUTING_FILE", path, table_from_config)


def load_routing(settings: Any) -> RoutingTable:
    """The routing table of the setting ROUTING_FILE (empty: the shipped file)."""
    return load_routing_file(path_of(settings, "ROUTING_FILE", SHIPPED_ROUTING))
