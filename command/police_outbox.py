"""110 police linkage: the outbound messages' delivery policy (pure: ``now`` passed in).

An `OutboxEntry` is one message in the persistent outbox (`store.police`) with its state
(`pending`, `sent` while an attempt is in flight, `acked`, `failed_alarmed`); these functions
say what an attempt, a response and the time do to it, and which entries go next (per ticket in
order, tickets independent).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

OUTBOX_STATES = ("pending", "sent", "acked", "failed_alarmed")


@dataclass(frozen=True)
class OutboxEntry:
    """One outbound message in the persistent outbox, with its delivery state.

    ``sent`` means an attempt is in flight; its ``next_attempt_at`` is the attempt's deadline,
    so after a crash it is simply sent again (the receiver de-duplicates by idempotency key).
    """

    message_id: str
    ticket_number: str
    seq_per_ticket: int
    body: bytes
    next_attempt_at: datetime
    attempts: int = 0
    state: str = "pending"
    first_sent_at: datetime | None = None
    acked_at: datetime | None = None
    alarmed_at: datetime | None = None
    last_error: str = ""

    def __post_init__(self) -> None:
        if self.state not in OUTBOX_STATES:
            raise ValueError(f"outbox state {self.state!r} not in {OUTBOX_STATES}")


def next_attempt(entry: OutboxEntry, now: datetime, *, base_s: float = 2, cap_s: float = 60,
                 jitter: float) -> datetime:
    """When to retry after ``entry.attempts`` failed attempts: base·2^(n-1) capped, equal jitter.

    ``jitter`` in [0, 1] (the worker passes random.random()): the delay is d·(0.5 + 0.5·jitter),
    so for a fixed jitter the schedule is non-decreasing and never above ``cap_s``.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter {jitter} must be within [0, 1]")
    exponent = min(max(entry.attempts - 1, 0), 40)
    delay = min(cap_s, base_s * 2**exponent) * (0.5 + 0.5 * jitter)
    return now + timedelta(seconds=delay)


def on_attempt(entry: OutboxEntry, now: datetime, *, timeout_s: float = 10) -> OutboxEntry:
    """The worker is about to send ``entry``: count the attempt and lease it until the timeout."""
    return dataclasses.replace(
        entry,
        state="sent",
        attempts=entry.attempts + 1,
        first_sent_at=entry.first_sent_at or now,
        next_attempt_at=now + timedelta(seconds=timeout_s),
    )


def needs_alarm(entry: OutboxEntry, now: datetime, ack_deadline_s: float = 60) -> bool:
    """True once an entry sent first ``ack_deadline_s`` ago is still not acknowledged and not yet alarmed."""
    if entry.state in ("acked", "failed_alarmed") or entry.first_sent_at is None or entry.alarmed_at:
        return False
    return now - entry.first_sent_at >= timedelta(seconds=ack_deadline_s)


def mark_alarmed(entry: OutboxEntry, now: datetime) -> OutboxEntry:
    """Record that the dispatcher was alarmed about ``entry`` (it keeps being retried)."""
    return dataclasses.replace(entry, alarmed_at=now)


def on_response(entry: OutboxEntry, status_code: int | None, body: bytes, now: datetime, *,
                jitter: float = 1.0, base_s: float = 2, cap_s: float = 60) -> OutboxEntry:
    """Outcome of one attempt; ``status_code`` None means timeout or connection error.

    2xx, and 409 (the receiver already holds this idempotency key), → acked. 408, 429, 5xx,
    1xx and None → pending with a backed-off ``next_attempt_at``. Any other 4xx and 3xx are
    permanent → failed_alarmed (the dispatcher must act; the ticket's later messages wait).
    """
    if status_code is not None and (200 <= status_code < 300 or status_code == 409):
        return dataclasses.replace(entry, state="acked", acked_at=now, last_error="")
    detail = body[:200].decode("utf-8", "replace")
    if status_code is not None and (300 <= status_code < 400 or (400 <= status_code < 500 and status_code not in (408, 429))):
        return dataclasses.replace(entry, state="failed_alarmed", alarmed_at=entry.alarmed_at or now,
                                   last_error=f"HTTP {status_code}: {detail}")
    error = "timeout or connection error" if status_code is None else f"HTTP {status_code}: {detail}"
    retry_at = next_attempt(entry, now, base_s=base_s, cap_s=cap_s, jitter=jitter)
    return dataclasses.replace(entry, state="pending", next_attempt_at=retry_at, last_error=error)


def requeue(entry: OutboxEntry, now: datetime) -> OutboxEntry:
    """The dispatcher retries a failed_alarmed entry: pending again, due now."""
    if entry.state != "failed_alarmed":
        raise ValueError(f"only failed_alarmed entries are requeued, not {entry.state}")
    return dataclasses.replace(entry, state="pending", next_attempt_at=now)


def deliverable(entries: Iterable[OutboxEntry], now: datetime | None = None) -> list[OutboxEntry]:
    """Entries to send now: per ticket only the lowest-seq unacknowledged one, tickets independent.

    A ticket whose head is failed_alarmed sends nothing until it is requeued; with ``now`` given,
    heads not yet due (``next_attempt_at > now``) are left out too. Sorted by due time.
    """
    heads: dict[str, OutboxEntry] = {}
    for entry in entries:
        if entry.state == "acked":
            continue
        head = heads.get(entry.ticket_number)
        if head is None or (entry.seq_per_ticket, entry.message_id) < (head.seq_per_ticket, head.message_id):
            heads[entry.ticket_number] = entry
    due = [e for e in heads.values() if e.state != "failed_alarmed" and (now is None or e.next_attempt_at <= now)]
    return sorted(due, key=lambda e: (e.next_attempt_at, e.ticket_number, e.seq_per_ticket))
