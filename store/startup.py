"""The servers of a process, ready for the center: `open_servers`.

`servers.embedded.Servers.resolve` finds or starts PostgreSQL, Redis and the broker and knows
nothing of what they hold; this module adds the two steps that need the store: the record's
migrations (`store.db.migrate`), and, for an embedded broker this process started, the thread that
keeps its credential files in step with the device registry (`servers.broker_files.BrokerSync`
reading `store.devices.DeviceReader`). Every process entry point, the test harness and the
benches open their servers here.
"""
from __future__ import annotations

import signal
from pathlib import Path

from servers.broker_files import BrokerSync
from servers.embedded import EmbeddedProcess, Servers
from store.db import migrate
from store.devices import DeviceReader


def broker_sync(database_url: str, broker: EmbeddedProcess, poll_s: float | None = None) -> BrokerSync:
    """A started `BrokerSync` of an embedded broker (SIGHUP reloads mosquitto; amqtt's plugin
    rereads the files by itself) over the devices of the database at `database_url`."""
    options = {} if poll_s is None else {"poll_s": poll_s}
    return BrokerSync(DeviceReader(database_url), Path(broker.extra["auth_dir"]), broker.extra["account"], broker,
                      reload_signal=signal.SIGHUP if broker.name == "mosquitto" else None, **options).start()


def open_servers(settings, *, start: bool = True) -> Servers:
    """`Servers.resolve` (DATABASE_URL/REDIS_URL/MQTT_URL, else the embedded servers of DATA_DIR,
    started when ``start`` and none runs), with the migrations applied and an embedded broker's
    credential sync started; the servers this process started are stopped again when a step fails."""
    servers = Servers.resolve(settings, start=start)
    try:
        migrate(servers.database_url)
        if servers.broker is not None:
            servers.broker_sync = broker_sync(servers.database_url, servers.broker)
    except BaseException:
        servers.stop()
        raise
    return servers
