"""`python -m center simulate`: every simulator of the demo, against the running system."""
from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
from pathlib import Path

from simulators.vehicles import make_fleet, roadnet_from_city, run_fleet

log = logging.getLogger(__name__)


async def _heartbeat(redis_url: str, fleet_size: int, counter: list[int]) -> None:
    """Tell /healthz that the simulators run (the simulators themselves only speak MQTT and HTTP)."""
    from center.store import Store

    store = Store.from_url(redis_url)
    try:
        while True:
            try:
                await store.heartbeat("simulate", {"pid": os.getpid(), "vehicles": fleet_size,
                                                   "published": counter[0]})
            except Exception as exc:
                log.warning("simulate heartbeat failed: %s", exc)
            await asyncio.sleep(3)
    finally:
        await store.close()


async def serve(settings, mqtt_url: str, profile: Path, stop: asyncio.Event | None = None,
                redis_url: str | None = None) -> None:
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
    published = [0]
    beat = asyncio.create_task(_heartbeat(redis_url, len(fleet), published)) if redis_url else None
    try:
        await run_fleet(mqtt_url, net, fleet, rate_hz=settings.SIM_RATE_HZ, seed=settings.SIM_SEED, stop=stop,
                        on_tick=lambda n: published.__setitem__(0, n))
    finally:
        if beat:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
