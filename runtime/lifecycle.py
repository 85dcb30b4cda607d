"""Service life cycle: one stop event that SIGINT and SIGTERM set."""
from __future__ import annotations

import asyncio
import gc
import signal


class StartupError(RuntimeError):
    """A service cannot start (its port is taken, say): ``python -m center`` prints the reason
    and exits with status 1, and the demo's supervisor restarts it with backoff."""


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


GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc_for_latency() -> None:
    """Keep the cyclic garbage collector out of a latency-sensitive loop (the ingest).

    Measured on the ingest under load with the default thresholds (700, 10, 10): full (gen2)
    collections of 30-60 ms that found nothing, each a stall of every message behind it (the
    sensor-alarm latency tail). Objects alive at start-up (modules, settings, the sensor
    registry) are frozen out of every collection, and collections run after 20,000 net container
    allocations instead of 700, so the full ones are rare. Reference counting still frees
    everything acyclic at once; cycles are still collected, later.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
