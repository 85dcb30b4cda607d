"""The center's one clock for domain time: ticket times, limits, alarms, KPI windows, fix times.

``now = anchor + (wall - anchor) x speedup``. With ``CLOCK_SPEEDUP`` 1 (production) it is the wall
clock exactly. For the demo and the bench (``CLOCK_SPEEDUP`` > 1) every process of one demo
(web, ingest, dispatch, simulate) reads the same ``CLOCK_ANCHOR``, fixed once by the supervisor,
so they agree on the simulated time. Security and transport stay on the wall clock (sessions,
tokens, login throttling, Redis TTLs, heartbeats, timers): they are not domain time.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable

from runtime.lifecycle import StartupError

log = logging.getLogger(__name__)


class ClockError(StartupError, ValueError):
    """A clock that cannot be used as configured (a speed-up without a shared anchor): the
    service does not start (``python -m center`` prints why)."""


class Clock:
    """Domain time: ``anchor + (wall() - anchor) * speedup`` as UTC epoch seconds."""

    def __init__(self, speedup: float = 1.0, anchor: float | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        if not speedup > 0:
            raise ClockError(f"clock speed-up must be positive, not {speedup}")
        self.speedup = float(speedup)
        self._wall = wall
        self.anchor = wall() if anchor is None else float(anchor)

    @classmethod
    def from_settings(cls, settings: Any, wall: Callable[[], float] = time.time) -> "Clock":
        """The clock of ``CLOCK_SPEEDUP`` and ``CLOCK_ANCHOR`` (empty: now)."""
        anchor = settings.CLOCK_ANCHOR
        return cls(settings.CLOCK_SPEEDUP, None if anchor == "" else float(anchor), wall)

    @property
    def accelerated(self) -> bool:
        """Whether domain time runs faster than the wall clock."""
        return self.speedup != 1.0

    def at(self, wall_s: float) -> float:
        """Domain time (epoch s) of a wall-clock instant (epoch s), e.g. when a message arrived."""
        if self.speedup == 1.0:
            return wall_s
        return self.anchor + (wall_s - self.anchor) * self.speedup

    def now(self) -> float:
        """Domain time now, UTC epoch seconds."""
        return self.at(self._wall())

    def now_dt(self) -> datetime:
        """Domain time now, timezone-aware UTC."""
        return datetime.fromtimestamp(self.now(), timezone.utc)

    def span(self, wall_s: float) -> float:
        """Domain seconds that pass in ``wall_s`` wall seconds."""
        return wall_s * self.speedup

    def wall_delay(self, domain_s: float) -> float:
        """Wall seconds that ``domain_s`` domain seconds take."""
        return domain_s / self.speedup


def process_clock(settings: Any, service: str) -> Clock:
    """The clock a service process runs on. A speed-up other than 1 needs a ``CLOCK_ANCHOR`` every
    process shares (the demo's supervisor sets it): without one each process would keep its own
    time, so it is refused; with one it is logged loudly, as it is for the demo and bench only."""
    clock = Clock.from_settings(settings)
    if clock.accelerated:
        if settings.CLOCK_ANCHOR == "":
            raise ClockError(f"{service}: CLOCK_SPEEDUP={clock.speedup:g} without CLOCK_ANCHOR: the processes "
                             "would not agree on the time (run `python -m center demo`, which fixes the anchor)")
        log.warning("%s: CLOCK_SPEEDUP=%g: domain time runs %g times faster than the wall clock, from %s "
                    "(demo and bench only; production keeps 1)", service, clock.speedup, clock.speedup,
                    datetime.fromtimestamp(clock.anchor, timezone.utc).isoformat())
    return clock
