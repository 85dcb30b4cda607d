"""The Redis side of the tickets area: after COMMIT a writer publishes its committed changes
(rows of the outbox ``ticket_changes``) to the stream ``tkt:changes`` (capped at about 100,000
entries; fields number, version, action, state) and the channel ``live:tickets`` (the batch as
JSON), then deletes those outbox rows; ``store.outbox.ChangeRelay`` publishes the rows left
when Redis failed. Nobody else spells these keys."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

CHANGES_STREAM = "tkt:changes"
CHANGES_MAXLEN = 100_000
LIVE_TICKETS = "live:tickets"


async def publish_changes(redis: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Publish committed ticket changes (rows of ``ticket_changes``: number, version, action,
    state) in one Redis round trip: an entry each on the stream ``tkt:changes`` (approximate
    MAXLEN 100,000) and the batch as JSON on the channel ``live:tickets``. Redis errors are raised
    (the caller keeps the rows for the relay)."""
    if not rows:
        return
    summaries = [{"number": r["number"], "version": int(r["version"]), "action": r["action"], "state": r["state"]}
                 for r in rows]
    pipe = redis.pipeline(transaction=False)
    for s in summaries:
        pipe.xadd(CHANGES_STREAM, {k: str(v) for k, v in s.items()}, maxlen=CHANGES_MAXLEN, approximate=True)
    pipe.publish(LIVE_TICKETS, orjson.dumps(summaries))
    await pipe.execute()


async def delete_changes(conn: psycopg.AsyncConnection, ids: Sequence[int]) -> None:
    """Delete published outbox rows by id."""
    await conn.execute("DELETE FROM ticket_changes WHERE id = ANY(%s)", (list(ids),))
