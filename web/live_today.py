"""Today's figures of the city feed (`web.live.LiveFeed`): the tickets created and resolved on the
center's current day, loaded from the record once a day and counted on from the tickets the feed
reads, by the rule the reports use (numbered today; resolved since the day began, so a
consultation closed on the call counts too)."""
from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import Any, Iterable

from store.ticket_records import TicketRecord
from store.tickets import TicketStore


class TodayCounts:
    """The center's day's created and resolved tickets, as sets of numbers."""

    def __init__(self, tickets: TicketStore, zone: tzinfo) -> None:
        self.tickets = tickets
        self.zone = zone
        self.day, self.start = "", 0.0
        self.created: set[str] = set()
        self.resolved: set[str] = set()

    def _day(self, now: float) -> tuple[str, float]:
        local = datetime.fromtimestamp(now, timezone.utc).astimezone(self.zone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return local.strftime("%Y%m%d"), start.timestamp()

    async def load(self, now: float) -> None:
        """Count the day's tickets from the record when the day has changed (a Redis wipe takes
        nothing of it): those numbered for today, and those resolved since the day began."""
        day, start = self._day(now)
        if day == self.day:
            return
        since = datetime.fromtimestamp(start, timezone.utc)
        prefix = f"GD{day}-"
        created = {n for n in await self.tickets.numbers_since("created_at", since) if n.startswith(prefix)}
        resolved = set(await self.tickets.numbers_since("resolved_at", since))
        self.day, self.start, self.created, self.resolved = day, start, created, resolved

    def count(self, records: Iterable[TicketRecord | None]) -> None:
        """Count tickets just read by the rule of `load`."""
        prefix = f"GD{self.day}-"
        for record in records:
            if record is None:
                continue
            ticket = record.ticket
            if ticket.number.startswith(prefix):
                self.created.add(ticket.number)
            if ticket.resolved_at is not None and ticket.resolved_at.timestamp() >= self.start:
                self.resolved.add(ticket.number)

    def figures(self) -> dict[str, Any]:
        """{day, created, resolved} as the feed sends them."""
        return {"day": self.day, "created": len(self.created), "resolved": len(self.resolved)}
