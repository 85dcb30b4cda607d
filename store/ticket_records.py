"""The stored forms of tickets and incidents, and the pure functions that turn them into the rows of
``store/migrations/0001_tickets.sql`` (tables ``tickets``, ``ticket_stages``, ``incidents``).

No I/O here: `store.tickets` runs the SQL, and a migration tool (copying old records) builds
the same rows with `ticket_row`, `stage_rows` and `incident_row`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from command.coordinates import GEO_LAT_LIMIT, CoordinateError, geo_pair_ok
from command.grouping import Incident
from command.ticket_json import from_dict, to_dict
from command.ticket_model import OPEN_STATES, URGENCY_RANK, AuditEvent, Category, Ticket

# the columns of `tickets`, in the order `ticket_row` gives them (`open` is generated)
TICKET_COLUMNS = ("number", "version", "state", "category", "type", "urgency", "urgency_rank", "color",
                  "supervised", "channel", "caller_phone", "lon", "lat", "district", "unit_id", "crew_id",
                  "incident_id", "supply_area", "police_kind", "created_at", "updated_at", "resolved_at",
                  "closed_at", "record")
INCIDENT_COLUMNS = ("incident_id", "rev", "category", "supply_area", "first_call_at", "resolved_at", "record",
                    "areas", "feeder")


_ALARM_GUARD = "alarm:"  # the guard of an alarm's one proactive ticket (table alarm_tickets)


def alarm_guard(alarm_key: str) -> str:
    """The `GuardFailed.key` of an alarm episode's claim of its one proactive ticket."""
    return _ALARM_GUARD + alarm_key


class GuardFailed(Exception):
    """A precondition of a write did not hold (an incident changed, an alarm already has a ticket).
    `key` names what was guarded: ``incident:<id>``, ``alarm:<alarm_key>`` or ``incident-area:<area>``."""

    def __init__(self, key: str, actual: str) -> None:
        super().__init__(f"guard on {key} failed (current: {actual!r})")
        self.key = key
        self.actual = actual

    @property
    def alarm_claimed(self) -> bool:
        """Whether the guard was an alarm's claim: the alarm has its proactive ticket already."""
        return self.key.startswith(_ALARM_GUARD)


@dataclass(frozen=True)
class TicketRecord:
    """A stored ticket and its metadata (queue stages, 110 flag, alarm link)."""

    ticket: Ticket
    meta: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)  # to_dict(ticket), when known

    def to_json(self) -> bytes:
        """The stored JSON form (column ``tickets.record``): `to_dict` of the ticket plus ``meta``."""
        ticket = to_dict(self.ticket) if self.data is None else self.data  # data is to_dict(ticket) when set
        return orjson.dumps({**ticket, "meta": dict(self.meta)})

    @classmethod
    def from_json(cls, raw: str | bytes) -> "TicketRecord":
        """Rebuild from the stored JSON."""
        data = orjson.loads(raw)
        meta = data.pop("meta", None) or {}
        return cls(from_dict(data), meta, data)


@dataclass(frozen=True)
class TicketWrite:
    """One ticket's part of an atomic write: the new record, its audit events, and the record it
    replaces (None for a new ticket); `alarm_key` claims the alarm's one proactive ticket."""

    record: TicketRecord
    events: Sequence[AuditEvent]
    previous: TicketRecord | None = None
    alarm_key: str | None = None


@dataclass(frozen=True)
class IncidentWrite:
    """One incident's part of an atomic write: new state and revision, and the replaced state."""

    incident: Incident
    rev: int
    previous: Incident | None = None
    # a new incident, or one narrowed to an area by its burst call (which must merge what opened
    # there meanwhile): (area, feeder or DMA, ``id@rev`` of each open incident the writer's read
    # found there); written only while that read would still find exactly those, unchanged (another
    # process may have opened one for the same area meanwhile, or a burst call placed a DMA's
    # pressure drop on that area: GuardFailed, the create reads again and joins it)
    area_seen: tuple[str, str | None, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class CreateReads:
    """`TicketStore.create_reads`: the drawn sequence number, repeat candidates near the point
    (number, metres) and by phone, their records, and the supply area's unresolved incidents with
    their revisions (None: not read)."""

    seq: int
    near: list[tuple[str, float]]
    by_phone: list[str]
    area_incidents: list[tuple[Incident, int]] | None
    records: dict[str, TicketRecord] = field(default_factory=dict)  # the candidates' records by number


def incident_to_dict(incident: Incident, rev: int) -> dict[str, Any]:
    """JSON-safe dict of an incident with its revision."""
    out: dict[str, Any] = {"rev": rev}
    for f in dataclasses.fields(Incident):
        value = getattr(incident, f.name)
        if isinstance(value, datetime):
            value = value.astimezone(timezone.utc).isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Category):
            value = value.value
        out[f.name] = value
    return out


def incident_from_dict(data: Mapping[str, Any]) -> tuple[Incident, int]:
    """Rebuild (incident, rev) from `incident_to_dict` output."""
    values = {k: v for k, v in data.items() if k != "rev"}
    values["category"] = Category(values["category"])
    for name in ("first_call_at", "last_call_at", "confirmed_at", "resolved_at", "etr", "etr_set_at", "onset_at"):
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name]).astimezone(timezone.utc)
    values["ticket_numbers"] = tuple(values.get("ticket_numbers") or ())
    values["alarm_ids"] = tuple(values.get("alarm_ids") or ())
    values["areas"] = tuple(values.get("areas") or ())
    return Incident(**values), int(data.get("rev", 1))


def check_ticket_point(record: TicketRecord) -> None:
    """CoordinateError unless the ticket's point is absent or a finite WGS84 pair (the table's
    CHECK constraints, narrowed to the boundary's `command.coordinates.check_point` range), so
    that a bad point is refused before anything is written."""
    t = record.ticket
    if t.lon is None and t.lat is None:
        return
    if t.lon is None or t.lat is None or not geo_pair_ok(float(t.lon), float(t.lat)):
        raise CoordinateError("lon", f"invalid longitude,latitude pair {t.lon},{t.lat}: not stored "
                                     f"(|lon| <= 180, |lat| <= {GEO_LAT_LIMIT}, as at the boundary)")


def ticket_row(record: TicketRecord) -> tuple[Any, ...]:
    """The values of a ticket's ``tickets`` row, in `TICKET_COLUMNS` order (``record`` as JSON text)."""
    t, meta = record.ticket, record.meta
    return (t.number, t.version, t.state.value, t.category.value, t.type.value, t.urgency.value,
            URGENCY_RANK[t.urgency], t.color.value, bool(t.supervised), t.channel.value, t.caller_phone or "",
            t.lon, t.lat, t.district, t.unit_id, t.crew_id, t.incident_id, t.supply_area,
            meta.get("police_kind") or None, t.created_at, t.updated_at, t.resolved_at, t.closed_at,
            record.to_json().decode())


def ticket_fields(record: TicketRecord) -> dict[str, Any]:
    """`ticket_row` by column name, ``record`` as an `orjson.Fragment` (for a JSON document of rows)."""
    values = dict(zip(TICKET_COLUMNS, ticket_row(record)))
    values["record"] = orjson.Fragment(values["record"])  # JSON text already
    return values


def stage_rows(record: TicketRecord) -> list[tuple[str, datetime, int]]:
    """The ticket's ``ticket_stages`` rows (stage, deadline, limit_s): its open timed stages
    (``meta.queue``) while it is open, none once it is closed, cancelled or merged."""
    if record.ticket.state not in OPEN_STATES:
        return []
    return [(str(stage), datetime.fromtimestamp(float(deadline), timezone.utc), max(1, round(float(limit_s))))
            for stage, deadline, limit_s in record.meta.get("queue") or ()]


def incident_row(incident: Incident, rev: int) -> tuple[Any, ...]:
    """The values of an incident's ``incidents`` row, in `INCIDENT_COLUMNS` order (column ``feeder``:
    a power incident's feeder, a water incident's DMA: the network unit a create reads it by)."""
    return (incident.incident_id, rev, incident.category.value, incident.supply_area, incident.first_call_at,
            incident.resolved_at, orjson.dumps(incident_to_dict(incident, rev)).decode(),
            list(incident.areas or (incident.supply_area,)), incident.feeder or incident.dma)


def incident_fields(incident: Incident, rev: int) -> dict[str, Any]:
    """`incident_row` by column name, ``record`` as an `orjson.Fragment`."""
    values = dict(zip(INCIDENT_COLUMNS, incident_row(incident, rev)))
    values["record"] = orjson.Fragment(values["record"])
    return values
