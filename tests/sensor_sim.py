"""The sensor simulator's test set-up: a few sensors' specs, a publish function that records,
and stepping the simulator over simulated time (tests/test_sim_sensors.py, test_sim_sparkplug.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from simulators.sensor_model import SensorSpec
from simulators.sensors import SensorSimulator

UTC = timezone.utc
START = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)  # 00:00 in Asia/Shanghai


def sensor_specs() -> list[SensorSpec]:
    """Three pressure points of DMA01, one of DMA02, a flow meter and four transformers' load."""
    specs = []
    for k in range(3):  # DMA01: three pressure points in a row eastwards
        specs.append(SensorSpec(f"P{k + 1:03d}", "pressure", "pressure", "MPa", f"WM{k}", 300,
                                119.70 + 0.01 * k, 36.38, dma_id="DMA01", low_critical=0.14))
    specs.append(SensorSpec("P009", "pressure", "pressure", "MPa", "WM9", 300, 119.9, 36.3,
                            dma_id="DMA02", low_critical=0.10))
    specs.append(SensorSpec("F01", "flow", "flow", "m3/h", "WM0", 300, 119.70, 36.38, dma_id="DMA01"))
    feeders = ["10kV城区1线", "10kV城区2线", "10kV醴泉1线", "10kV朝阳3线"]
    for k, feeder in enumerate(feeders):
        specs.append(SensorSpec(f"L{k + 1:04d}", "transformer_load", "load", "%", f"T{k + 1:04d}", 900,
                                119.7, 36.4, rated_kva=400, feeder=feeder, high_critical=100.0))
    return specs


class Capture:
    """A fake publish function that records every message."""

    def __init__(self):
        self.messages: list[tuple[str, bytes, int, bool]] = []

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        self.messages.append((topic, payload, qos, retain))
        return True

    def topics(self, prefix: str) -> list[str]:
        """The topics published under `prefix`."""
        return [t for t, *_ in self.messages if t.startswith(prefix)]


def run_steps(sim: SensorSimulator, seconds: int, step_s: int = 10, start: datetime = START) -> datetime:
    """Step the simulator every `step_s` for `seconds` from `start`; the time after."""
    now = start
    for _ in range(seconds // step_s):
        sim.step(now)
        now += timedelta(seconds=step_s)
    return now
