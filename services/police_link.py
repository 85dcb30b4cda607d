"""The 110 police linkage at the edge: the persistent outbox and its sender, and the inbound
status updates and incident transfers.

Outbound: a handover (emergency ticket, or a dispatcher's "转110") or a result report (a
transferred incident resolved) is written to the outbox in PostgreSQL *before* any attempt
(`store.police`, idempotent by key), in the transaction of the ticket event that decides
it: the creation of an emergency ticket and the resolution of a transfer through
`outbox_hook` (`TicketManager.outbox_hook`, the event's data marked ``handover_queued`` /
``result_queued``), the dispatcher's 转110 with its note (`enqueue_handover`); the dispatch
worker's change watcher queues the first two again from the committed change (a no-op when the
key is known) for tickets written by a process that did not send to 110. Then it is sent
signed (`command.police_signing.sign`) to ``POLICE_URL`` + ``/110/handover`` or ``/110/result``. Delivery follows `command.police_outbox`: per
ticket only the oldest unacknowledged message is in flight (in order), retries back off, an
attempt in flight is leased (taken with ``FOR UPDATE SKIP LOCKED``, so two dispatch workers never
send one entry at once; after a crash it is simply sent again and the receiver de-duplicates by
idempotency key), an entry unacknowledged 60 s after its first attempt alarms the dispatcher
(the alarm itself is live state in Redis, `DispatchStore`). Acks and status updates join the
ticket's timeline as ``note`` events with data.

Inbound: HMAC verified (`command.police_signing.verify`), nonces kept in PostgreSQL against replay,
idempotent by Idempotency-Key (a replay gets the first reply, also after a Redis wipe); a
transfer becomes a ``police_110`` ticket, acknowledged at once with its number.
"""
from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import tornado.httpclient

from store.dispatch import DispatchStore
from store.police import PoliceStore
from store.ticket_records import TicketRecord
from store.ticket_writes import Extra
from store.streams import pause, stop_if_cancelled
from command import police, police_outbox, police_signing
from command.cap import to_cap
from command.errors import CommandError, Conflict, InvalidTransition, TicketNotFound, ValidationError
from command.ticket_model import Actor, AuditEvent, Category, Channel, Role, Ticket, TicketType
from services.tickets import TicketManager

log = logging.getLogger(__name__)

POLICE_ACTOR = Actor("110", Role.SYSTEM)
CAP_SENDER = "utility-dispatch-center"
PATHS = {"handover": "/110/handover", "result_report": "/110/result"}
RESOLVING = ("resolve", "resolve_with_incident")  # the actions whose transfer's result goes back to 110
Send = Callable[[str, bytes, dict[str, str], float], Awaitable[tuple[int | None, bytes]]]


async def http_send(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int | None, bytes]:
    """POST with tornado: (status, body), or (None, b"") on timeout or connection error."""
    client = tornado.httpclient.AsyncHTTPClient()
    try:
        response = await client.fetch(url, method="POST", body=body, raise_error=False,
                                      headers={**headers, "Content-Type": "application/json"},
                                      connect_timeout=min(5.0, timeout_s), request_timeout=timeout_s)
    except (OSError, tornado.httpclient.HTTPClientError):
        return None, b""
    return (None, b"") if response.code == 599 else (response.code, response.body or b"")


class _AlreadyQueued(Exception):
    """The message's idempotency key is in the outbox already (rolls the note's transaction back)."""

    def __init__(self, message_id: str) -> None:
        super().__init__(message_id)
        self.message_id = message_id


class _LeaseLost(Exception):
    """Another attempt holds the entry now (rolls the acknowledgement's transaction back)."""


class InboundBusy(CommandError):
    """The same idempotency key is being handled by another request (HTTP 503, retry later)."""

    status = 503
    code = "in_progress"

    def __init__(self, key: str) -> None:
        super().__init__(f"the same Idempotency-Key is being handled; retry ({key})")


class PoliceLink:
    """Outbox, sender and inbound handling of the 110 linkage."""

    def __init__(self, store: PoliceStore, alarms: DispatchStore, tickets: TicketManager, *, url: str = "",
                 secret: bytes = b"",
                 clock: Callable[[], datetime] | None = None, send: Send | None = None,
                 ack_deadline_s: float = 60.0, backoff_base_s: float = 2.0, backoff_cap_s: float = 60.0,
                 timeout_s: float = 10.0, max_skew_s: int = 300, jitter: Callable[[], float] = random.random,
                 on_alarm: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
                 signing_clock: Callable[[], datetime] | None = None) -> None:
        """``signing_clock``: the time signatures are made and checked at (default ``clock``; the
        wall clock when the center's clock runs faster: a signature's freshness is security)."""
        self.store = store
        self.alarms = alarms
        self.tickets = tickets
        self.url = url.rstrip("/")
        self.secret = secret
        self.clock = clock or tickets.clock
        self.signing_clock = signing_clock  # None: the domain time of the pass
        self.send = send or http_send
        self.ack_deadline_s = ack_deadline_s
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.timeout_s = timeout_s
        self.max_skew_s = max_skew_s
        self.jitter = jitter

    @property
    def outbound_enabled(self) -> bool:
        """Whether messages are sent to 110 (POLICE_URL and POLICE_SECRET set)."""
        return bool(self.url and self.secret)

    # ------------------------------------------------------------------ outbox
    def _handover(self, t: Ticket, kind: str, purpose: str, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        """A handover of the ticket: (the outbox entry's arguments, the marker of the event that queues it)."""
        key = police.message_key(t.number, purpose, 1)
        message = police.Handover(
            message_id=uuid.uuid4().hex, idempotency_key=key, ticket_number=t.number, kind=kind,
            summary=t.description, address=t.address, lon=t.lon, lat=t.lat,
            caller=police.mask_phone(t.caller_phone), urgency=t.urgency.value, created_at=now)
        return (dict(number=t.number, key=key, message_id=message.message_id, body=police.to_json(message),
                     kind="handover", at=now),
                {"police": "handover_queued", "message_id": message.message_id, "kind": kind, "idempotency_key": key})

    def _result(self, t: Ticket, police_incident_id: str, resolved_at: datetime,
                now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        """The result report of a resolved transfer: (the outbox entry's arguments, the marker)."""
        key = police.message_key(t.number, "result", int(resolved_at.timestamp()))
        message = police.ResultReport(
            message_id=uuid.uuid4().hex, idempotency_key=key, police_incident_id=police_incident_id,
            ticket_number=t.number, category=t.category.value, outcome=t.resolution or "已办结",
            unit=t.unit_id or "", resolved_at=resolved_at, created_at=now)
        return (dict(number=t.number, key=key, message_id=message.message_id, body=police.to_json(message),
                     kind="result_report", at=now),
                {"police": "result_queued", "message_id": message.message_id, "idempotency_key": key})

    async def outbox_hook(self, ticket: Ticket, event: AuditEvent) -> tuple[dict[str, Any], Extra] | None:
        """`TicketManager.outbox_hook`: the outbox entry a ticket's event decides, written in the
        transaction of that event: the handover of a new emergency ticket (not one 110 transferred
        to us) and the result report of a resolved transfer; with the marker for the event's data.
        None for every other event, and while nothing is sent to 110."""
        if not self.outbound_enabled:
            return None
        if event.action == "create":
            kind = event.data.get("police_kind")
            if not kind or ticket.channel is Channel.POLICE_110:
                return None
            message, marker = self._handover(ticket, kind, "handover", self.clock())
        elif event.action in RESOLVING and ticket.channel is Channel.POLICE_110 and ticket.resolved_at is not None:
            link = await self.store.police_ticket(ticket.number)
            if link.get("direction") != "in" or not link.get("police_incident_id"):
                return None
            message, marker = self._result(ticket, link["police_incident_id"], ticket.resolved_at, self.clock())
        else:
            return None
        return marker, self.store.outbox_writer(**message)

    async def enqueue_handover(self, record: TicketRecord, kind: str, *, purpose: str = "handover",
                               actor: Actor = POLICE_ACTOR) -> tuple[dict[str, Any], bool]:
        """Put a handover of the ticket in the outbox (idempotent per ticket and purpose) with its
        note on the timeline, in one transaction; (the outbox entry view, whether it was new)."""
        message, marker = self._handover(record.ticket, kind, purpose, self.clock())
        what = "调度员转110" if kind == police.DISPATCHER_MANUAL else f"紧急工单自动推送110（{kind}）"
        # a 转110 makes it a police ticket: the suggested kind confirmed, or the dispatcher's own
        meta = None if record.meta.get("police_kind") else {"police_kind": record.meta.get("police_suggested") or kind}
        message_id, created = await self._enqueue(message, what, marker, actor, meta)
        return await self.entry_view(message_id), created

    async def enqueue_result(self, record: TicketRecord) -> tuple[dict[str, Any], bool] | None:
        """Report the resolution of a transferred incident back to 110 (once per resolution)."""
        t = record.ticket
        link = await self.store.police_ticket(t.number)
        if link.get("direction") != "in" or not link.get("police_incident_id") or t.resolved_at is None:
            return None
        message, marker = self._result(t, link["police_incident_id"], t.resolved_at, self.clock())
        message_id, created = await self._enqueue(message, "办结结果已排队反馈110", marker, POLICE_ACTOR)
        return await self.entry_view(message_id), created

    async def _enqueue(self, message: dict[str, Any], what: str, data: dict[str, Any],
                       actor: Actor, meta: Mapping[str, Any] | None = None) -> tuple[str, bool]:
        """Write an outbox entry and its note on the ticket's timeline in ONE transaction (the
        note's ticket save carries the outbox insert); (message id, created). A known idempotency
        key writes neither. When the note cannot be written (the ticket kept changing, or refuses
        notes), the entry is written alone: a handover is never lost to its note."""
        known = await self.store.message_of_key(message["key"])
        if known is not None:  # queued already (by the event that decided it, or an earlier press)
            return known, False
        write = self.store.outbox_writer(**message)

        async def insert(conn: Any) -> None:
            message_id, created = await write(conn)
            if not created:
                raise _AlreadyQueued(message_id)

        try:
            await self.tickets.act(message["number"], "note", {"note": what, "data": data}, actor,
                                   expected_version=None, extra=[insert], meta=meta)
        except _AlreadyQueued as raced:
            return raced.message_id, False
        except (Conflict, InvalidTransition) as exc:
            log.warning("110 %s of %s queued without its note: %s", message["kind"], message["number"], exc)
            return await self.store.outbox_add(**message)
        return message["message_id"], True

    async def entry_view(self, message_id: str) -> dict[str, Any]:
        """An outbox entry as the API shows it."""
        found = await self.store.outbox_entry(message_id)
        if found is None:
            raise LookupError(message_id)
        entry, extra = found
        return {"message_id": entry.message_id, "ticket_number": entry.ticket_number, "seq": entry.seq_per_ticket,
                "kind": extra["kind"], "idempotency_key": extra["idempotency_key"], "state": entry.state,
                "attempts": entry.attempts, "last_error": entry.last_error,
                "police_incident_id": extra["police_incident_id"] or None,
                "acked_at": None if entry.acked_at is None else entry.acked_at.isoformat()}

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass of the sender: alarm overdue acks, send each ticket's head; how many acked."""
        if not self.outbound_enabled:
            return 0
        now = now or self.clock()
        pending = await self.store.outbox_pending()
        extras = {e.message_id: x for e, x in pending}
        entries = [e for e, _ in pending]
        alarms = []
        for i, entry in enumerate(entries):
            if police_outbox.needs_alarm(entry, now, self.ack_deadline_s):
                entries[i] = police_outbox.mark_alarmed(entry, now)
                if await self.store.mark_alarmed(entry.message_id, now):  # once, whichever worker
                    alarms.append(self._alarm(entry, now, f"110未在 {self.ack_deadline_s:.0f} 秒内确认，正在重试"))
        await self.alarms.raise_alarms(alarms)
        leased = await self.store.lease_due(police_outbox.deliverable(entries, now),
                                            lambda e: police_outbox.on_attempt(e, now, timeout_s=self.timeout_s))
        results = await asyncio.gather(*(self._deliver(e, extras[e.message_id], now) for e in leased))
        return sum(results)

    def _alarm(self, entry: police_outbox.OutboxEntry, now: datetime, text: str) -> dict[str, Any]:
        return {"alarm_id": f"{entry.ticket_number}|police_ack", "number": entry.ticket_number, "kind": "police",
                "what": "police_ack", "level": "overdue", "text": text, "message_id": entry.message_id,
                "attempts": entry.attempts, "last_error": entry.last_error, "raised_at": now.timestamp()}

    async def _deliver(self, leased: police_outbox.OutboxEntry, extra: Mapping[str, str], now: datetime) -> int:
        """Send one leased entry and record the outcome; 1 when 110 acknowledged it."""
        entry = leased
        key = extra["idempotency_key"]
        signed_at = now if self.signing_clock is None else self.signing_clock()
        headers = police_signing.sign(entry.body, self.secret, signed_at, uuid.uuid4().hex, idempotency_key=key)
        status, reply = await self.send(self.url + PATHS[extra["kind"]], entry.body, headers, self.timeout_s)
        done = police_outbox.on_response(leased, status, reply, now, jitter=self.jitter(),
                                  base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
        if done.state == "acked":
            return await self._acked(done, leased.attempts, extra["kind"], reply, status, now)
        if not await self.store.outbox_save(done, lease_attempts=leased.attempts):
            log.info("110 %s of %s: the lease ran out and another attempt took over", extra["kind"], entry.ticket_number)
            return 0
        if done.state == "failed_alarmed":
            await self.alarms.raise_alarms([self._alarm(done, now, f"110拒收：{done.last_error}")])
        log.info("110 %s of %s not acknowledged: %s", extra["kind"], entry.ticket_number, done.last_error)
        return 0

    async def _acked(self, done: police_outbox.OutboxEntry, lease_attempts: int, kind: str, reply: bytes,
                     status: int | None, now: datetime) -> int:
        """Record 110's acknowledgement: the entry's state, a handover's incident link and the note
        on the timeline in one transaction, while the lease is still this attempt's; 1 when recorded."""
        try:
            incident_id = str(orjson.loads(reply).get("police_incident_id") or "") or None
        except (orjson.JSONDecodeError, AttributeError):
            incident_id = None
        number = done.ticket_number
        link = incident_id if kind == "handover" else None
        write = self.store.ack_writer(done, police_incident_id=incident_id, lease_attempts=lease_attempts, link=link)

        async def record(conn: Any) -> None:
            if not await write(conn):
                raise _LeaseLost(done.message_id)

        what = "110已确认接收转警" if kind == "handover" else "110已确认收到办结反馈"
        data = {"police": "acked", "message_id": done.message_id, "police_incident_id": incident_id,
                "status": status, "attempts": done.attempts}
        try:
            noted = await self._note(number, what, data, extra=[record])
        except _LeaseLost:
            log.info("110 %s of %s: the lease ran out and another attempt took over", kind, number)
            return 0
        except CommandError as exc:  # the ticket refuses the note: the acknowledgement alone
            log.warning("110 acknowledgement of %s recorded without its note: %s", number, exc)
            noted = False
        if not noted and not await self.store.run(write):
            return 0
        await self.alarms.clear_alarms([f"{number}|police_ack"], now)
        return 1

    async def run(self, stop: asyncio.Event, interval_s: float = 0.5) -> None:
        """Send until `stop`; database, Redis or HTTP trouble is logged and retried."""
        while not stop.is_set():
            try:
                sent = await self.run_once()
            except (OSError, ConnectionError, CommandError) as exc:
                log.warning("110 outbox pass failed (%s); retrying", exc)
                sent = 0
            except Exception as exc:  # redis errors and the like: keep the worker alive
                log.warning("110 outbox pass failed (%s: %s); retrying", type(exc).__name__, exc)
                sent = 0
            if sent:
                stop_if_cancelled()
                continue
            await pause(stop, interval_s)

    async def _note(self, number: str, text: str, data: dict[str, Any], actor: Actor = POLICE_ACTOR, *,
                    extra: Sequence[Extra] = ()) -> bool:
        try:  # without expected_version the manager re-applies the note over concurrent changes
            await self.tickets.act(number, "note", {"note": text, "data": data}, actor, expected_version=None,
                                   extra=extra)
        except Conflict:
            log.warning("note %r on %s not written: the ticket kept changing", text, number)
            return False
        return True

    # ------------------------------------------------------------------ inbound
    async def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Accept a signed inbound request or raise SignatureError (bad, stale or replayed)."""
        if not self.secret:
            raise police_signing.SignatureError(police_signing.SignatureError.BAD_SIGNATURE, "no shared secret configured")
        police_signing.verify(body, headers, self.secret, (self.signing_clock or self.clock)(),
                              max_skew_s=self.max_skew_s,
                              seen_nonce=lambda nonce: False)  # signature and time first; the nonce below
        nonce = next(v for k, v in headers.items() if k.lower() == "x-nonce")
        if not await self.store.claim_nonce(nonce, 2 * self.max_skew_s):
            raise police_signing.SignatureError(police_signing.SignatureError.REPLAY, f"nonce {nonce} was already used")

    async def receive(self, body: bytes, headers: Mapping[str, str], expected: type) -> tuple[int, dict[str, Any]]:
        """Handle one inbound request of the `expected` message class; (status, reply).

        Raises SignatureError (401) or PoliceMessageError (400) before anything is written; a
        repeated Idempotency-Key gets the first reply; InboundBusy while the first is in progress.
        """
        await self.verify(body, headers)
        message = police.parse_inbound(body)
        if not isinstance(message, expected):
            raise police.PoliceMessageError(police.PoliceMessageError.UNKNOWN_TYPE,
                                            f"a {type(message).__name__} does not belong here", "type")
        key = next((v for k, v in headers.items() if k.lower() == "idempotency-key"), "") or message.message_id
        claimed = await self.store.claim_inbound(key)
        if claimed == "processing":
            raise InboundBusy(key)
        if claimed is not None:
            return int(claimed["status"]), {**claimed["body"], "duplicate": True}
        try:
            if isinstance(message, police.IncidentTransfer):
                status, reply = await self._transfer(message, body, key)
            else:
                status, reply = await self._status(message, body, key)
        except BaseException:
            await self.store.release_inbound(key)
            raise
        await self.store.finish_inbound(key, status, reply)  # mostly kept already, with the ticket's write
        return status, reply

    async def _status(self, message: police.PoliceStatus, body: bytes, key: str) -> tuple[int, dict[str, Any]]:
        """A status update: a note on the ticket, saved with the ticket's last message and the reply."""
        number = message.ticket_number
        if not number and message.police_incident_id:
            number = await self.store.ticket_of_incident(message.police_incident_id)
        if not number:
            raise TicketNotFound(message.police_incident_id or "")
        await self.tickets.store.get(number)  # TicketNotFound (404) for an unknown ticket
        reply = {"status": "accepted", "ticket_number": number}
        label = {"received": "110已接收", "dispatched": "110已派警", "on_scene": "民警已到场", "closed": "110已结案"}
        noted = await self._note(number, f"{label[message.status]}{'：' + message.note if message.note else ''}",
                                 {"police_status": message.status, "police_incident_id": message.police_incident_id,
                                  "at": message.at.isoformat(), "message_id": message.message_id},
                                 extra=[self.store.inbound_writer(key=key, number=number, body=body, reply=reply)])
        if not noted:
            await self.store.put_last_message(number, "in", body)
        return 200, reply

    async def _transfer(self, message: police.IncidentTransfer, body: bytes, key: str) -> tuple[int, dict[str, Any]]:
        """A transfer: a new ticket, saved with the incident's link, its last message and the reply
        (a crash cannot leave a ticket whose retry makes another)."""
        holder = await self.store.claim_incident(message.police_incident_id)
        if holder:  # "" while another request creates its ticket (its own key): go on as before
            return 200, {"status": "accepted", "ticket_number": holder}
        category = message.category_hint if message.category_hint in {c.value for c in Category} else "other"
        fields: dict[str, Any] = {
            "channel": Channel.POLICE_110.value, "category": category, "type": TicketType.REPAIR.value,
            "urgency": "urgent", "description": f"【110转办 {message.police_incident_id}】{message.description}"[:2000],
            "caller_name": message.caller_name[:50], "address": message.address[:200],
            "caller_phone": message.caller_phone, "lon": message.lon, "lat": message.lat}

        def record_of(ticket: Ticket) -> list[Extra]:
            return [self.store.inbound_writer(key=key, number=ticket.number, body=body,
                                              reply={"status": "accepted", "ticket_number": ticket.number},
                                              transfer=(message.police_incident_id, message.message_id))]

        try:
            try:
                result = await self.tickets.create(fields, POLICE_ACTOR, link=False, extra=record_of)
            except ValidationError as exc:
                if exc.field != "caller_phone":
                    raise
                fields["caller_phone"] = ""
                fields["description"] = f"{fields['description']}（来电 {message.caller_phone[:30]}）"[:2000]
                result = await self.tickets.create(fields, POLICE_ACTOR, link=False, extra=record_of)
        except BaseException:
            await self.store.drop_incident(message.police_incident_id)
            raise
        return 200, {"status": "accepted", "ticket_number": result.record.ticket.number}

    # ------------------------------------------------------------------ CAP
    async def cap(self, number: str) -> bytes | None:
        """The ticket's last police message as CAP 1.2 XML, or None when there is none."""
        last = await self.store.last_message(number)
        if last is None:
            return None
        body = last["body"].encode("utf-8")
        message = police.parse_outbound(body) if last["dir"] == "out" else police.parse_inbound(body)
        return to_cap(message, sender=CAP_SENDER)
