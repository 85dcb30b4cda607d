"""`python -m center simulate`: every simulator of the demo, against the running system."""
from __future__ import annotations

import asyncio
import logging
import random
import signal
from pathlib import Path

from simulators.vehicles import make_fleet, roadnet_from_city, run_fleet

log = logging.getLogger(__name__)


async def serve(settings, mqtt_url: str, profile: Path, stop: asyncio.Event | None = None) -> None:
    """Run the simulators until SIGINT/SIGTERM (or until ``stop`` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError):
            pass
    net, ids, starts = await asyncio.to_thread(roadnet_from_city, str(profile))
    rng = random.Random(settings.SIM_SEED)
    count = settings.SIM_VEHICLES
    ids = ids[:count] + [f"S{i:05d}" for i in range(len(ids), count)]
    fleet = make_fleet(net, ids, rng, starts=starts)
    log.info("simulate: %d vehicles at %.1f Hz", len(fleet), settings.SIM_RATE_HZ)
    await run_fleet(mqtt_url, net, fleet, rate_hz=settings.SIM_RATE_HZ, seed=settings.SIM_SEED, stop=stop)
