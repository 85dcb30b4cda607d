"""`python -m simulators scenario <name>` (or `vehicles`, `sensors`, `police`): run one simulator.

Against a running `make demo`, the broker URL and the demo password are found in DATA_DIR
(var/run/servers.json, var/demo-accounts.txt) when MQTT_URL / DEMO_PASSWORD are not set.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys


def _running_demo_defaults() -> None:
    from servers.embedded import read_run_file
    from config.settings import load

    settings = load()
    recorded = read_run_file(settings.data_dir / "run" / "servers.json") or {}
    if not settings.MQTT_URL and recorded.get("mqtt_url"):
        os.environ["MQTT_URL"] = recorded["mqtt_url"]
    accounts = settings.data_dir / "demo-accounts.txt"
    if not settings.DEMO_PASSWORD and accounts.exists():
        os.environ["DEMO_PASSWORD"] = accounts.read_text(encoding="utf-8").split()[-1]


def main(argv: list[str]) -> int:
    """Dispatch to the named simulator's own command line."""
    commands = ("scenario", "vehicles", "sensors", "police")
    if not argv or argv[0] not in commands:
        print(f"usage: python -m simulators {{{'|'.join(commands)}}} [options]  (--help after the name)")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _running_demo_defaults()
    name, rest = argv[0], argv[1:]
    module = __import__(f"simulators.{name}", fromlist=["main"])
    result = asyncio.run(module.main(rest))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
