"""The handling of an incident in the record: its audit trail and its outage notice.

PostgreSQL tables (``store/migrations/0013_incident_handling.sql``), written only here:

- ``incident_events``: one row per change of an incident itself (``etr_set``, ``notice_published``,
  ``notice_updated``, ``notice_withdrawn``, ``resolved``): who, when, a note and the data;
  never updated or deleted.
- ``outage_notices``: an incident's one outage notice (停水/停电通知, `command.outages.Notice`),
  active until withdrawn.

The writes are `Extra`s of `store.tickets.TicketStore.save`: they join the transaction of
the incident's (and its primary ticket's) write, so a change and its audit row commit together.

Redis: after the commit the writer announces the incident on the pub/sub channel
``live:incidents`` (`IncidentStore.publish`: a JSON list of ``{incident_id, rev, action, status,
etr, notice}``); the live feed relays it to the office's and the agents' consoles.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
import psycopg

from store.db import Database
from store.ticket_writes import Extra
from command.outages import IncidentEvent, Notice
from command.ticket_model import Category

log = logging.getLogger(__name__)

LIVE_INCIDENTS = "live:incidents"
_NOTICE_COLUMNS = ("incident_id", "category", "kind", "area_id", "area_text", "starts_at", "etr", "text",
                   "text_custom", "state", "published_by", "published_at", "updated_by", "updated_at",
                   "withdrawn_at", "withdrawn_by")
_UPSERT_NOTICE = (
    f"INSERT INTO outage_notices ({', '.join(_NOTICE_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_NOTICE_COLUMNS))})"
    " ON CONFLICT (incident_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _NOTICE_COLUMNS[1:]))
_SELECT_NOTICES = f"SELECT {', '.join(_NOTICE_COLUMNS)} FROM outage_notices"


def _notice(row: Mapping[str, Any]) -> Notice:
    values = dict(row)
    values["category"] = Category(values["category"])
    return Notice(**values)


class IncidentStore:
    """Typed access to the incidents' audit trail and outage notices, and their announcement."""

    def __init__(self, db: Database, redis: Any = None) -> None:
        self.db = db
        self.redis = redis
        self.publish_failed = 0

    # writes (each joins a TicketStore.save transaction) ------------------------------------------
    @staticmethod
    def event_write(event: IncidentEvent) -> Extra:
        """The INSERT of one incident audit event."""
        async def write(conn: psycopg.AsyncConnection) -> None:
            await conn.execute(
                "INSERT INTO incident_events (incident_id, action, actor_id, role, at, note, data)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)",
                (event.incident_id, event.action, event.actor_id, event.role, event.at, event.note,
                 orjson.dumps(dict(event.data)).decode()))
        return write

    @staticmethod
    def notice_write(notice: Notice) -> Extra:
        """The UPSERT of an incident's notice (one per incident)."""
        values = tuple(notice.category.value if c == "category" else getattr(notice, c) for c in _NOTICE_COLUMNS)

        async def write(conn: psycopg.AsyncConnection) -> None:
            await conn.execute(_UPSERT_NOTICE, values)
        return write

    # reads ---------------------------------------------------------------------------------------
    async def notice(self, incident_id: str) -> Notice | None:
        """The incident's notice (active or withdrawn), or None."""
        row = await self.db.fetchone(_SELECT_NOTICES + " WHERE incident_id = %s", (incident_id,))
        return None if row is None else _notice(row)

    async def notices(self, *, active_only: bool = True, limit: int = 100) -> list[Notice]:
        """Notices, newest first (active ones only, or all)."""
        where = " WHERE state = 'active'" if active_only else ""
        rows = await self.db.fetch(_SELECT_NOTICES + where + " ORDER BY published_at DESC, incident_id LIMIT %s",
                                   (limit,))
        return [_notice(r) for r in rows]

    async def notices_of(self, incident_ids: Iterable[str]) -> dict[str, Notice]:
        """The notices of these incidents, by incident id."""
        ids = list(incident_ids)
        if not ids:
            return {}
        rows = await self.db.fetch(_SELECT_NOTICES + " WHERE incident_id = ANY(%s)", (ids,))
        return {r["incident_id"]: _notice(r) for r in rows}

    async def events(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's audit events in order: id, action, actor_id, role, at, note, data."""
        rows = await self.db.fetch("SELECT id, action, actor_id, role, at, note, data FROM incident_events"
                                   " WHERE incident_id = %s ORDER BY id", (incident_id,))
        return [{**r, "id": str(r["id"]), "at": _iso(r["at"])} for r in rows]

    # announcement --------------------------------------------------------------------------------
    async def publish(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Announce committed incident changes on ``live:incidents``; a Redis failure is logged and
        counted, never raised (the change is committed; consoles read it at their next load)."""
        if not items or self.redis is None:
            return
        try:
            await self.redis.publish(LIVE_INCIDENTS, orjson.dumps(list(items)))
        except Exception as exc:  # noqa: BLE001  (committed already)
            self.publish_failed += 1
            log.warning("incident change %s not announced (%s)", [i.get("incident_id") for i in items], exc)


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
