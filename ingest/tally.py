"""Tally: named counts for the ingest's per-message paths."""
from __future__ import annotations


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
