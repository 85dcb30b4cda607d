"""Simulated time for the simulators: ``start + speedup x (monotonic elapsed)``, or the center's."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable

__all__ = ["SimClock"]

UTC = timezone.utc


class SimClock:
    """Simulated time: ``start + speedup x (monotonic elapsed)``."""

    def __init__(self, start: datetime | None = None, speedup: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic):
        if speedup <= 0:
            raise ValueError(f"speed-up must be positive, not {speedup}")
        self.start = start or datetime.now(UTC)
        self.speedup = speedup
        self._monotonic = monotonic
        self._t0 = monotonic()

    def now(self) -> datetime:
        """The simulated time now."""
        return self.start + timedelta(seconds=(self._monotonic() - self._t0) * self.speedup)

    def wall_delay(self, sim_seconds: float) -> float:
        """Wall seconds that ``sim_seconds`` of simulated time take."""
        return sim_seconds / self.speedup

    @classmethod
    def following(cls, clock) -> "SimClock":
        """Simulated time that is the center's clock (`runtime.clock.Clock`): starts at its time now
        and runs at its speed-up, so calls, curves and the center agree on the time."""
        return cls(clock.now_dt(), clock.speedup)
