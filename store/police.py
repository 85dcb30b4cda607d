"""The 110 police linkage in the record (PostgreSQL): the outbox, the inbound idempotency replies
and nonces, the links between 110 incidents and our tickets, and each ticket's last police
message. Nobody else spells these tables (``store/migrations/0003_police.sql``); no Redis key.

- ``police_outbox``: one row per outbound message, written before any attempt to send it
  (`add_outbox`, which takes an open connection so that the row joins the transaction of the
  ticket change that decided it); per-ticket ``seq`` drawn under a per-ticket advisory lock; an
  enqueue with a known ``idempotency_key`` returns the existing message and writes nothing.
  Delivery state as `command.police_outbox.OutboxEntry`. A sender takes the entries it will send with
  `lease_due` (``FOR UPDATE SKIP LOCKED`` and a re-check), so two senders never attempt one
  entry at once.
- ``police_inbound``: Idempotency-Key → ``processing`` (60 s) or ``done`` with the reply (7 days).
- ``police_nonces``: nonces of accepted inbound requests until twice the allowed skew; expired
  nonces and replies are purged at most once a minute by each store, on a nonce claim.
- ``police_incidents`` (110 incident id → ticket), ``police_tickets`` (ticket → its latest 110
  link), ``police_last_messages`` (ticket → its last police message, either direction).
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from store.db import Database
from command.police_outbox import OutboxEntry

PROCESSING_TTL_S = 60
INBOUND_REPLY_TTL_S = 7 * 86400
PURGE_EVERY_S = 60.0

_COLUMNS = ("message_id, ticket_number, seq, body, idempotency_key, kind, state, attempts, next_attempt_at,"
            " created_at, first_sent_at, acked_at, alarmed_at, last_error, police_incident_id")


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


def entry_from_row(row: Mapping[str, Any]) -> tuple[OutboxEntry, dict[str, str]]:
    """An outbox row as the domain's OutboxEntry, plus the extra fields (key, kind, created_at
    ISO 8601, police_incident_id or "")."""
    entry = OutboxEntry(
        message_id=row["message_id"], ticket_number=row["ticket_number"], seq_per_ticket=row["seq"],
        body=row["body"].encode("utf-8"), next_attempt_at=_utc(row["next_attempt_at"]),  # type: ignore[arg-type]
        attempts=row["attempts"], state=row["state"], first_sent_at=_utc(row["first_sent_at"]),
        acked_at=_utc(row["acked_at"]), alarmed_at=_utc(row["alarmed_at"]), last_error=row["last_error"])
    extra = {"idempotency_key": row["idempotency_key"], "kind": row["kind"],
             "created_at": _utc(row["created_at"]).isoformat(),  # type: ignore[union-attr]
             "police_incident_id": row["police_incident_id"] or ""}
    return entry, extra


async def add_outbox(conn: psycopg.AsyncConnection, *, number: str, key: str, message_id: str, body: bytes,
                     kind: str, at: datetime) -> tuple[str, bool]:
    """Insert an outbox entry (and make it the ticket's last police message) on an open
    connection, inside the caller's transaction; (message id, created). A known idempotency key
    returns the existing message id and writes nothing."""
    existing = await (await conn.execute(
        "SELECT message_id FROM police_outbox WHERE idempotency_key = %s", (key,))).fetchone()
    if existing is not None:
        return existing[0], False
    # one enqueue per ticket at a time: the next seq is then max + 1 without a race
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('police_outbox:' || %s, 0))", (number,))
    text = body.decode("utf-8")
    row = await (await conn.execute(
        "INSERT INTO police_outbox (message_id, ticket_number, seq, body, idempotency_key, kind,"
        " next_attempt_at, created_at)"
        " SELECT %s, %s, coalesce(max(seq), 0) + 1, %s, %s, %s, %s, %s FROM police_outbox WHERE ticket_number = %s"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING message_id",
        (message_id, number, text, key, kind, at, at, number))).fetchone()
    if row is None:  # the same key committed by a concurrent enqueue meanwhile
        found = await (await conn.execute(
            "SELECT message_id FROM police_outbox WHERE idempotency_key = %s", (key,))).fetchone()
        return found[0], False
    await _put_last(conn, number, "out", text)
    return message_id, True


async def _save_entry(conn: psycopg.AsyncConnection, entry: OutboxEntry, police_incident_id: str | None,
                      lease_attempts: int | None) -> bool:
    query = ("UPDATE police_outbox SET state = %s, attempts = %s, next_attempt_at = %s, first_sent_at = %s,"
             " acked_at = %s, alarmed_at = coalesce(%s, alarmed_at), last_error = %s,"
             " police_incident_id = coalesce(%s, police_incident_id) WHERE message_id = %s")
    params: list[Any] = [entry.state, entry.attempts, entry.next_attempt_at, entry.first_sent_at,
                         entry.acked_at, entry.alarmed_at, entry.last_error, police_incident_id or None,
                         entry.message_id]
    if lease_attempts is not None:
        query += " AND state = 'sent' AND attempts = %s"
        params.append(lease_attempts)
    # RETURNING and a fetch, not rowcount: in a ticket save's pipeline the count is not known yet
    return await (await conn.execute(query + " RETURNING message_id", params)).fetchone() is not None


async def _put_last(conn: psycopg.AsyncConnection, number: str, direction: str, body: str) -> None:
    await conn.execute(
        "INSERT INTO police_last_messages (ticket_number, direction, body) VALUES (%s, %s, %s)"
        " ON CONFLICT (ticket_number) DO UPDATE SET direction = EXCLUDED.direction, body = EXCLUDED.body",
        (number, direction, body))


async def _map(conn: psycopg.AsyncConnection, police_incident_id: str, number: str, direction: str,
               message_id: str) -> None:
    await conn.execute(
        "INSERT INTO police_incidents (police_incident_id, ticket_number) VALUES (%s, %s)"
        " ON CONFLICT (police_incident_id) DO UPDATE SET ticket_number = EXCLUDED.ticket_number",
        (police_incident_id, number))
    await conn.execute(
        "INSERT INTO police_tickets (ticket_number, police_incident_id, direction, message_id)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (ticket_number) DO UPDATE SET"
        " police_incident_id = EXCLUDED.police_incident_id, direction = EXCLUDED.direction,"
        " message_id = EXCLUDED.message_id", (number, police_incident_id, direction, message_id))


async def _finish(conn: psycopg.AsyncConnection, key: str, status: int, body: Mapping[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO police_inbound (idempotency_key, state, reply_status, reply_body, expires_at)"
        " VALUES (%s, 'done', %s, %s, now() + make_interval(secs => %s))"
        " ON CONFLICT (idempotency_key) DO UPDATE SET state = 'done', reply_status = EXCLUDED.reply_status,"
        " reply_body = EXCLUDED.reply_body, expires_at = EXCLUDED.expires_at",
        (key, status, Jsonb(dict(body)), INBOUND_REPLY_TTL_S))


class PoliceStore:
    """Typed access to the 110 tables of the record."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._purge_at = 0.0

    # outbox ---------------------------------------------------------------------------------------
    async def outbox_add(self, *, number: str, key: str, message_id: str, body: bytes, kind: str,
                         at: datetime) -> tuple[str, bool]:
        """`add_outbox` in its own transaction; (message id, created)."""
        async with self.db.transaction() as conn:
            return await add_outbox(conn, number=number, key=key, message_id=message_id, body=body,
                                    kind=kind, at=at)

    def outbox_writer(self, **message: Any) -> Callable[[psycopg.AsyncConnection], Awaitable[tuple[str, bool]]]:
        """`add_outbox` of one message as a callable of an open connection (a ticket save's `extra`)."""
        async def write(conn: psycopg.AsyncConnection) -> tuple[str, bool]:
            return await add_outbox(conn, **message)
        return write

    async def outbox_save(self, entry: OutboxEntry, *, police_incident_id: str | None = None,
                          lease_attempts: int | None = None) -> bool:
        """Write an entry's delivery state; with `lease_attempts`, only while the entry still holds
        that attempt's lease (no other sender took it since). Whether it was written."""
        async with self.db.connection() as conn:
            return await _save_entry(conn, entry, police_incident_id, lease_attempts)

    def ack_writer(self, entry: OutboxEntry, *, police_incident_id: str | None, lease_attempts: int,
                   link: str | None) -> Callable[[psycopg.AsyncConnection], Awaitable[bool]]:
        """An acknowledged entry's writes as a callable of an open connection (for the transaction
        of its note): its state while the lease is still `lease_attempts`' and, with `link` (a
        handover's 110 incident id), the link of incident and ticket. Whether the lease held."""
        async def write(conn: psycopg.AsyncConnection) -> bool:
            if not await _save_entry(conn, entry, police_incident_id, lease_attempts):
                return False
            if link:
                await _map(conn, link, entry.ticket_number, "out", entry.message_id)
            return True
        return write

    async def run(self, write: Callable[[psycopg.AsyncConnection], Awaitable[Any]]) -> Any:
        """Run one of the writers above in its own transaction; what it returns."""
        async with self.db.transaction() as conn:
            return await write(conn)

    async def mark_alarmed(self, message_id: str, at: datetime) -> bool:
        """Record the dispatcher's alarm of an entry once; whether this call recorded it."""
        return await self.db.execute(
            "UPDATE police_outbox SET alarmed_at = %s WHERE message_id = %s AND alarmed_at IS NULL"
            " AND state <> 'acked'", (at, message_id)) == 1

    async def lease_due(self, heads: Sequence[OutboxEntry],
                        lease: Callable[[OutboxEntry], OutboxEntry]) -> list[OutboxEntry]:
        """Take the chosen heads for sending in one transaction: each row is locked with ``FOR
        UPDATE SKIP LOCKED`` (one another sender is leasing is skipped), kept only while it is as
        it was read (same state, attempts and due time: nobody leased or answered it since), and
        written as `lease` makes it. The leased entries."""
        if not heads:
            return []
        wanted = {e.message_id: e for e in heads}
        leased = []
        async with self.db.transaction() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {_COLUMNS} FROM police_outbox WHERE message_id = ANY(%s)"
                              " ORDER BY message_id FOR UPDATE SKIP LOCKED", (list(wanted),))
            for row in await cur.fetchall():
                current, _ = entry_from_row(row)
                read = wanted[current.message_id]
                if (current.state, current.attempts, current.next_attempt_at) != (
                        read.state, read.attempts, read.next_attempt_at):
                    continue
                taken = lease(current)
                await conn.execute(
                    "UPDATE police_outbox SET state = %s, attempts = %s, next_attempt_at = %s, first_sent_at = %s"
                    " WHERE message_id = %s",
                    (taken.state, taken.attempts, taken.next_attempt_at, taken.first_sent_at, taken.message_id))
                leased.append(taken)
        order = {m: i for i, m in enumerate(wanted)}
        return sorted(leased, key=lambda e: order[e.message_id])

    async def message_of_key(self, key: str) -> str | None:
        """The message id queued under an idempotency key, or None."""
        row = await self.db.fetchone("SELECT message_id FROM police_outbox WHERE idempotency_key = %s", (key,))
        return None if row is None else row["message_id"]

    async def outbox_pending(self) -> list[tuple[OutboxEntry, dict[str, str]]]:
        """Every unacknowledged entry, oldest first."""
        return [entry_from_row(r) for r in await self.db.fetch(
            f"SELECT {_COLUMNS} FROM police_outbox WHERE state <> 'acked' ORDER BY created_at, ticket_number, seq")]

    async def outbox_of_ticket(self, number: str) -> list[tuple[OutboxEntry, dict[str, str]]]:
        """Every message of a ticket in its order."""
        return [entry_from_row(r) for r in await self.db.fetch(
            f"SELECT {_COLUMNS} FROM police_outbox WHERE ticket_number = %s ORDER BY seq", (number,))]

    async def outbox_entry(self, message_id: str) -> tuple[OutboxEntry, dict[str, str]] | None:
        """One entry, or None."""
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM police_outbox WHERE message_id = %s", (message_id,))
        return None if row is None else entry_from_row(row)

    # inbound --------------------------------------------------------------------------------------
    async def claim_nonce(self, nonce: str, ttl_s: int) -> bool:
        """Record an inbound nonce; False when it was seen before (a replay) and has not expired."""
        await self._purge_now_and_then()
        row = await self.db.fetchone(
            "INSERT INTO police_nonces (nonce, expires_at) VALUES (%s, now() + make_interval(secs => %s))"
            " ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at"
            " WHERE police_nonces.expires_at <= now() RETURNING nonce", (nonce, ttl_s))
        return row is not None

    async def claim_inbound(self, key: str) -> dict[str, Any] | str | None:
        """Start handling an inbound idempotency key: None when claimed now, ``"processing"``
        when another request holds it, else the stored reply {"status", "body"} of the first."""
        claimed = await self.db.fetchone(
            "INSERT INTO police_inbound (idempotency_key, state, expires_at)"
            " VALUES (%s, 'processing', now() + make_interval(secs => %s))"
            " ON CONFLICT (idempotency_key) DO UPDATE SET state = 'processing', reply_status = NULL,"
            " reply_body = NULL, expires_at = EXCLUDED.expires_at WHERE police_inbound.expires_at <= now()"
            " RETURNING idempotency_key", (key, PROCESSING_TTL_S))
        if claimed is not None:
            return None
        row = await self.db.fetchone(
            "SELECT state, reply_status, reply_body FROM police_inbound WHERE idempotency_key = %s", (key,))
        if row is None or row["state"] == "processing":
            return "processing"
        return {"status": row["reply_status"], "body": row["reply_body"]}

    async def finish_inbound(self, key: str, status: int, body: Mapping[str, Any]) -> None:
        """Keep the reply of a handled inbound request for its replays (7 days)."""
        async with self.db.connection() as conn:
            await _finish(conn, key, status, body)

    def inbound_writer(self, *, key: str, number: str, body: bytes, reply: Mapping[str, Any],
                       transfer: tuple[str, str] | None = None,
                       ) -> Callable[[psycopg.AsyncConnection], Awaitable[None]]:
        """The record of a handled inbound request as a callable of an open connection, for the
        transaction of the ticket write it makes: the ticket's last police message, the reply
        kept for the key's replays, and for a transfer (police incident id, message id) the
        incident's link to the ticket both ways."""
        text = body.decode("utf-8")

        async def write(conn: psycopg.AsyncConnection) -> None:
            if transfer is not None:
                await _map(conn, transfer[0], number, "in", transfer[1])
            await _put_last(conn, number, "in", text)
            await _finish(conn, key, 200, reply)
        return write

    async def release_inbound(self, key: str) -> None:
        """Give up a claim after a failure, so a retry is handled afresh."""
        await self.db.execute("DELETE FROM police_inbound WHERE idempotency_key = %s AND state = 'processing'", (key,))

    async def purge_expired(self) -> int:
        """Delete expired nonces and inbound replies; how many rows went."""
        async with self.db.transaction() as conn:
            nonces = await conn.execute("DELETE FROM police_nonces WHERE expires_at <= now()")
            replies = await conn.execute("DELETE FROM police_inbound WHERE expires_at <= now()")
            return nonces.rowcount + replies.rowcount

    async def _purge_now_and_then(self) -> None:
        if time.monotonic() >= self._purge_at:
            self._purge_at = time.monotonic() + PURGE_EVERY_S
            await self.purge_expired()

    # incidents and links ------------------------------------------------------------------------------
    async def map_incident(self, police_incident_id: str, number: str, direction: str, message_id: str) -> None:
        """Link a 110 incident id and our ticket, both ways (the ticket's link is its latest)."""
        async with self.db.transaction() as conn:
            await _map(conn, police_incident_id, number, direction, message_id)

    async def claim_incident(self, police_incident_id: str) -> str | None:
        """Claim a transferred incident id for a new ticket: None when claimed now, else its
        ticket number, or "" while another request is creating its ticket."""
        claimed = await self.db.fetchone(
            "INSERT INTO police_incidents (police_incident_id) VALUES (%s) ON CONFLICT DO NOTHING"
            " RETURNING police_incident_id", (police_incident_id,))
        if claimed is not None:
            return None
        return await self.ticket_of_incident(police_incident_id) or ""

    async def drop_incident(self, police_incident_id: str) -> None:
        """Forget a claim whose ticket could not be created."""
        await self.db.execute("DELETE FROM police_incidents WHERE police_incident_id = %s AND ticket_number IS NULL",
                              (police_incident_id,))

    async def ticket_of_incident(self, police_incident_id: str) -> str | None:
        """Our ticket number of a 110 incident id, or None."""
        row = await self.db.fetchone("SELECT ticket_number FROM police_incidents WHERE police_incident_id = %s",
                                     (police_incident_id,))
        return None if row is None else row["ticket_number"]

    async def police_ticket(self, number: str) -> dict[str, str]:
        """The 110 link of a ticket (police_incident_id, direction, message_id), empty if none."""
        row = await self.db.fetchone("SELECT police_incident_id, direction, message_id FROM police_tickets"
                                     " WHERE ticket_number = %s", (number,))
        return {} if row is None else dict(row)

    async def put_last_message(self, number: str, direction: str, body: bytes) -> None:
        """Remember the ticket's last police message (for CAP)."""
        async with self.db.connection() as conn:
            await _put_last(conn, number, direction, body.decode("utf-8"))

    async def last_message(self, number: str) -> dict[str, str] | None:
        """The ticket's last police message, {"dir", "body"}, or None."""
        row = await self.db.fetchone("SELECT direction, body FROM police_last_messages WHERE ticket_number = %s",
                                     (number,))
        return None if row is None else {"dir": row["direction"], "body": row["body"]}
