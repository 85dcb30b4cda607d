"""How many vehicles one simulator process drives: 5,000 vehicles at 1 Hz on the demo city's
roads over one shared MQTT connection to an embedded broker, for ~20 s.

- simulators_vehicle_msgs_per_s: published NMEA messages per second over the whole ticks after
  the first, timed from tick start to tick start (the schedule is drift-free: tick k starts at
  start + k s unless the previous one overran); target >= 5,000, every vehicle every second;
- simulators_tick_busy_pct_p99: the work of a tick as a share of its second (headroom: below
  100 % the 1 Hz schedule holds; 5,000 / share is roughly the vehicles one process could drive).
"""
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
    from servers.embedded import start_broker
    from simulators import democity
    from simulators.roads import roadnet_from_city
    from simulators.vehicles import make_fleet, run_fleet

    with tempfile.TemporaryDirectory() as tmp:
        progress("generating the demo city ...")
        profile = democity.generate(Path(tmp) / "city", seed=democity.DEFAULT_SEED)
        net, ids, starts = roadnet_from_city(str(profile))
        fleet = make_fleet(net, [f"B{i:05d}" for i in range(VEHICLES)], random.Random(1))
        broker = start_broker(Path(tmp))
        try:
            progress(f"driving {VEHICLES} vehicles at 1 Hz for {DURATION_S:.0f} s on {broker.url} ...")
            ticks: list[tuple[float, float, int]] = []  # (end, work s, messages so far)

            async def drive() -> int:
                stop = asyncio.Event()
                asyncio.get_running_loop().call_later(DURATION_S, stop.set)
                return await run_fleet(broker.url, net, fleet, rate_hz=1.0, seed=1, stop=stop,
                                       per_vehicle_connections=False,
                                       on_tick=lambda sent, busy: ticks.append((time.monotonic(), busy, sent)))

            started = time.monotonic()
            sent = asyncio.run(drive())
            elapsed = time.monotonic() - started
        finally:
            broker.stop()
    # steady state: the messages of ticks 2..N over the time from the start of tick 2 to the
    # start of the tick after N (that is, the end of tick N plus the rest of its second, or its end
    # when it overran)
    if len(ticks) >= 3:
        (end0, _, n0), (end1, busy1, n1) = ticks[0], ticks[-1]
        start2 = end0 + max(0.0, 1.0 - ticks[0][1])  # the first tick's second is over
        rate = (n1 - n0) / max(end1 - busy1 + max(1.0, busy1) - start2, 1e-9)
    else:
        rate = sent / elapsed
    busy = sorted(b for _, b, _ in ticks[1:]) or [0.0]
    emit("simulators_vehicle_msgs_per_s", round(rate, 1), "msg/s")
    emit("simulators_tick_busy_pct_p99", round(100 * busy[min(len(busy) - 1, int(0.99 * len(busy)))], 1), "%")
    emit("simulators_vehicle_ticks", len(ticks), "ticks")


if __name__ == "__main__":
    main()
