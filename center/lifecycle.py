"""Service life cycle: one stop event that SIGINT and SIGTERM set."""
from __future__ import annotations

import asyncio
import signal


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """The event a service waits on; SIGINT/SIGTERM set it (when running in the main thread)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError):  # not the main thread (tests run services in-process)
            pass
    return stop
