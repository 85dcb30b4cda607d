"""GET /healthz: the state of PostgreSQL, Redis, the broker and each service (no login: for monitors)."""
from __future__ import annotations

from web.base import BaseHandler


class Health(BaseHandler):
    """200 when every component the center needs is up; 503 when one is down, named in ``down``
    (``postgres``, ``redis``, ``broker``, ``ingest``, ``dispatch``). The body tells the state of each."""

    async def prepare(self) -> None:
        """No session lookup: health must answer even when Redis is down."""

    async def get(self) -> None:
        report = await self.services.health()
        self.write_json(report, status=200 if report["ok"] else 503)


routes = [(r"/healthz", Health)]
