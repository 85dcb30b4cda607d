"""GET /api/ingest/stats: what ingest accepted and rejected, by reason, and the unknown sensors."""
from __future__ import annotations

from web.base import BaseHandler

STATS_ROLES = ("dispatcher", "supervisor")


class IngestStats(BaseHandler):
    """Counters of every ingest process (``rejected:<reason>`` for each refused message, good
    counts such as ``fix_ok`` and ``readings_ok``), grouped, with the unknown-sensor readings."""

    async def get(self) -> None:
        self.require(*STATS_ROLES)
        stats = await self.store.ingest_stats()
        rejected = {k.split(":", 1)[1]: v for k, v in stats.items() if k.startswith("rejected:")}
        unknown = await self.store.unknown_readings(20)
        self.write_json({"counters": stats, "rejected": rejected,
                         "rejected_total": sum(rejected.values()), "messages": stats.get("messages", 0),
                         "unknown_sensors": unknown["counts"], "unknown_recent": unknown["readings"]})


routes = [(r"/api/ingest/stats", IngestStats)]
