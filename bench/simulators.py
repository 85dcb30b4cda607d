"""How many vehicles one simulator process drives: 5,000 vehicles at 1 Hz on the demo city's
roads over one shared MQTT connection to an embedded broker, for ~20 s; the figure is the
published NMEA messages per second (target >= 5,000, i.e. every vehicle every second)."""
from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from bench.common import emit, progress

VEHICLES = 5000
DURATION_S = 20.0


def main() -> None:
    """Run the benchmark and print its figure."""
    from center.servers import start_broker
    from gis import democity
    from simulators.vehicles import make_fleet, roadnet_from_city, run_fleet

    with tempfile.TemporaryDirectory() as tmp:
        progress("generating the demo city ...")
        profile = democity.generate(Path(tmp) / "city", seed=democity.DEFAULT_SEED)
        net, ids, starts = roadnet_from_city(str(profile))
        fleet = make_fleet(net, [f"B{i:05d}" for i in range(VEHICLES)], random.Random(1))
        broker = start_broker(Path(tmp))
        try:
            progress(f"driving {VEHICLES} vehicles at 1 Hz for {DURATION_S:.0f} s on {broker.url} ...")
            seconds: list[tuple[float, int]] = []

            async def drive() -> int:
                stop = asyncio.Event()
                asyncio.get_running_loop().call_later(DURATION_S, stop.set)
                return await run_fleet(broker.url, net, fleet, rate_hz=1.0, seed=1, stop=stop,
                                       per_vehicle_connections=False,
                                       on_tick=lambda sent: seconds.append((time.monotonic(), sent)))

            started = time.monotonic()
            sent = asyncio.run(drive())
            elapsed = time.monotonic() - started
        finally:
            broker.stop()
    # steady state: from the end of the first tick to the end of the last
    if len(seconds) >= 2:
        (t0, n0), (t1, n1) = seconds[0], seconds[-1]
        rate = (n1 - n0) / max(t1 - t0, 1e-9)
    else:
        rate = sent / elapsed
    emit("simulators_vehicle_msgs_per_s", round(rate, 1), "msg/s")
    emit("simulators_vehicle_ticks", len(seconds), "ticks")


if __name__ == "__main__":
    main()
