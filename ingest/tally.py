"""Tally: named counts for the ingest's per-message paths; `RateLimitedLog`, a log that says a
thing at most once an interval. Light on purpose: the JT/T 808 gateway imports them alone."""
from __future__ import annotations

import collections
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class Tally(dict):
    """Counts by name: a dict whose missing names read 0, as `collections.Counter`'s do.

    Counter overrides ``__delitem__``, so CPython gives it a Python-level item-assignment slot
    and every ``counts[name] += 1`` on it calls dict's ``__setitem__`` through a wrapper: about
    twice the cost of this class's, which keeps dict's own slot. The ingest counts several
    things per message."""

    __slots__ = ()

    def __missing__(self, key: str) -> int:
        return 0

    def copy(self) -> "Tally":
        """A Tally of the same counts (dict's own would give a plain dict)."""
        return Tally(self)


class RateLimitedLog:
    """Logs at most one line per key per interval, counting what it suppressed."""

    def __init__(self, interval_s: float = 10.0, logger: logging.Logger = log):
        self.interval_s = interval_s
        self.log = logger
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter = collections.Counter()

    def warning(self, key: str, message: str, *args: Any) -> None:
        """Log a warning unless this key logged within the interval."""
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.interval_s:
            suppressed = self._suppressed.pop(key, 0)
            suffix = f" (+{suppressed} similar suppressed)" if suppressed else ""
            self.log.warning(message + suffix, *args)
            self._last[key] = now
        else:
            self._suppressed[key] += 1
