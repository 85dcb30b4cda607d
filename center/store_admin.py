"""The administration area of the store: crew shifts (kept where dispatch reads them), and
ending a disabled user's sessions.

- Shifts live in ``center.store_dispatch`` (``crews:shift``, one JSON entry per crew: on_shift,
  ends_at, by, at); a crew without an entry is on shift. This module only presents them.
- Accounts (``user:{name}``, ``user:names``) and sessions (``session:{token}``) belong to
  ``center.store``; ``drop_sessions_of`` only scans the session keys that module defines, to log
  a disabled user out everywhere at once.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import orjson
import redis.asyncio as aioredis

from center.store_dispatch import DispatchStore


def _shift_view(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    entry = entry or {}
    ends, at = entry.get("ends_at"), entry.get("at")
    return {"on_shift": bool(entry.get("on_shift", True)), "ends_at": None if ends is None else float(ends),
            "by": entry.get("by") or None, "at": None if at is None else float(at)}


class AdminStore:
    """Crew shift flags (through the dispatch store) and session clean-up."""

    def __init__(self, client: aioredis.Redis):
        self.redis = client
        self.dispatch = DispatchStore(client)

    async def shifts(self, crew_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Shift state per crew id: ``{on_shift, ends_at, by, at}`` (on shift when never set)."""
        entries = await self.dispatch.shifts()
        return {cid: _shift_view(entries.get(cid)) for cid in crew_ids}

    async def set_shift(self, crew_id: str, on_shift: bool, *, by: str, at: float,
                        ends_at: float | None = None) -> dict[str, Any]:
        """Put a crew on or off shift (``ends_at``: when the shift ends, UTC epoch s); return the state."""
        def utc(epoch: float | None) -> datetime | None:
            return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)
        await self.dispatch.set_shift(crew_id, on_shift, utc(ends_at), by, utc(at))
        return _shift_view({"on_shift": on_shift, "ends_at": ends_at, "by": by, "at": at})

    async def drop_sessions_of(self, name: str) -> int:
        """End every session of a user (scans ``session:*``); return how many were ended."""
        dropped = 0
        async for key in self.redis.scan_iter(match="session:*", count=500):
            raw = await self.redis.get(key)
            if raw is None:
                continue
            try:
                owner = orjson.loads(raw).get("name")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if owner == name:
                dropped += await self.redis.delete(key)
        return dropped
