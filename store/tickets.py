"""The tickets area of the record: tickets, their audit trail, incidents, and their publication.

PostgreSQL tables (``store/migrations/0001_tickets.sql``), written only here:

- ``tickets``: one row per ticket; the columns that lists filter and sort on, and ``record``, the
  whole stored ticket (``command.ticket_json.to_dict`` plus ``meta``: ``queue``, the open timed
  stages as ``[stage, deadline_epoch_s, limit_s]``; ``police_kind``; ``tags``; ``alarm_key``;
  ``asset_id``). ``version`` is the optimistic-concurrency version (`TicketStore.save`).
- ``ticket_events``: the audit trail, one row per transition (``event`` =
  ``command.ticket_json.event_to_dict``); never updated or deleted. Its ``id`` is the event id the API
  shows; one ticket's ids grow with its versions.
- ``ticket_stages``: the open timed stages of open tickets (the dispatcher's queue: within one limit
  length the deadline order is the order of "share of the limit left").
- ``day_sequences``: the daily ticket and incident numbers (kinds ``ticket``, ``incident``).
- ``incidents`` (guarded by ``rev``), ``alarm_tickets`` (an alarm's one proactive ticket),
  ``client_actions`` (a client's action ids already applied, for a day).
- ``ticket_changes``: the outbox, one row per ticket write, in the write's transaction.

Redis (live state only): after COMMIT the writer publishes its own changes (`store.ticket_publish`:
the stream ``tkt:changes`` and the channel ``live:tickets``), then deletes its outbox rows. When
Redis fails there the rows stay and ``store.outbox.ChangeRelay`` sends them later.

The SQL is split by use: `store.ticket_writes` (numbers, the one transaction of `save`, its
batching and refusals), `store.ticket_reads` (tickets, queue, pages, incidents), and the stored
forms and their rows in `store.ticket_records`.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from store.coalesce import Coalescer
from store.db import Database
from store.ticket_reads import TicketReads
from store.ticket_writes import TicketWrites


class TicketStore(TicketReads, TicketWrites):
    """Typed access to tickets, their audit trails, queue stages and incidents in PostgreSQL, and
    the publication of each committed change to Redis."""

    def __init__(self, db: Database, redis: Any = None) -> None:
        self.db = db
        self.redis = redis
        self.counters: Counter[str] = Counter()  # publish_failed: changes left to the relay
        self._saves = Coalescer(self._save_batch)
        self._read_batches = Coalescer(self._read_batch)
