"""The crew registry and live crew state for dispatch.

Crews (one vehicle each) come from the city's ``crews`` layer; whether a crew is on shift comes
from the dispatch store (on shift unless set otherwise); busy state and workload are derived from
the tickets assigned to it in field states (dispatched, accepted, en route, on site); the vehicle's
live position is its latest fix in the store (``center.store.Store.vehicles``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from center.store import Store
from center.store_dispatch import DispatchStore
from center.store_tickets import TicketStore
from command.dispatch import Crew
from command.tickets import FIELD_STATES, URGENCY_RANK, Category, Ticket, Urgency


@dataclass(frozen=True, slots=True)
class CrewInfo:
    """A crew as the city defines it: its vehicle, name, unit, station and skills."""

    crew_id: str
    vehicle_id: str
    crew_name: str
    unit_id: str
    station_id: str
    skills: frozenset[Category]


@dataclass(frozen=True, slots=True)
class CrewState:
    """A crew at one moment: shift, the field tickets it holds, and its vehicle's latest fix."""

    info: CrewInfo
    on_shift: bool
    shift_ends_at: datetime | None
    tickets: tuple[Ticket, ...]
    fix_t: float | None
    lon: float | None
    lat: float | None

    @property
    def busy_with(self) -> Urgency | None:
        """The most urgent field ticket's urgency, or None when free."""
        if not self.tickets:
            return None
        return min((t.urgency for t in self.tickets), key=URGENCY_RANK.__getitem__)

    def fix_age_s(self, now: datetime) -> float | None:
        """Seconds since the vehicle's latest fix at `now` (None without a fix)."""
        return None if self.fix_t is None else max(0.0, now.timestamp() - self.fix_t)

    def to_crew(self, now: datetime) -> Crew:
        """The domain's dispatch view of this crew."""
        return Crew(self.info.crew_id, self.info.skills, self.on_shift, self.busy_with, len(self.tickets),
                    self.fix_age_s(now), self.lon, self.lat, self.shift_ends_at)


def _skills(value: Any) -> frozenset[Category]:
    names = [value] if isinstance(value, str) else list(value or ())
    known = {c.value for c in Category}
    return frozenset(Category(n) for n in names if n in known)


def crews_from_city(city: Any) -> list[CrewInfo]:
    """The crews of a loaded `gis.layers.City` (or an object with one as ``.city``)."""
    city = getattr(city, "city", city)
    if city is None:
        return []
    frame = city.crews
    return [CrewInfo(str(r["crew_id"]), str(r["vehicle_id"]), str(r.get("crew_name") or r["crew_id"]),
                     str(r.get("unit_id") or ""), str(r.get("station_id") or ""), _skills(r.get("skills")))
            for r in frame.drop(columns="geometry").to_dict("records")]


class CrewRegistry:
    """The known crews and how to read their live state from Redis."""

    def __init__(self, crews: Sequence[CrewInfo], store: Store, dispatch_store: DispatchStore,
                 tickets: TicketStore) -> None:
        self.crews = list(crews)
        self.by_id = {c.crew_id: c for c in self.crews}
        self.store = store
        self.dispatch_store = dispatch_store
        self.tickets = tickets

    def get(self, crew_id: str) -> CrewInfo | None:
        """A crew by id, or None."""
        return self.by_id.get(crew_id)

    async def field_tickets(self) -> dict[str, list[Ticket]]:
        """Tickets in field states by crew id."""
        numbers: list[str] = []
        for state in FIELD_STATES:
            numbers += await self.tickets.index(f"state:{state.value}")
        out: dict[str, list[Ticket]] = {}
        for record in await self.tickets.get_many(numbers):
            if record is not None and record.ticket.crew_id and record.ticket.state in FIELD_STATES:
                out.setdefault(record.ticket.crew_id, []).append(record.ticket)
        return out

    async def states(self, now: datetime) -> list[CrewState]:
        """Every crew's state at `now`."""
        shifts = await self.dispatch_store.shifts()
        vehicles = {v["id"]: v for v in await self.store.vehicles(now=now.timestamp())}
        busy = await self.field_tickets()
        return [self._state(c, shifts.get(c.crew_id), vehicles.get(c.vehicle_id), busy.get(c.crew_id, []))
                for c in self.crews]

    @staticmethod
    def _state(info: CrewInfo, shift: Mapping[str, Any] | None, vehicle: Mapping[str, Any] | None,
               tickets: Sequence[Ticket]) -> CrewState:
        on_shift, ends = True, None
        if shift is not None:
            on_shift = bool(shift.get("on_shift", True))
            if shift.get("ends_at") is not None:
                ends = datetime.fromtimestamp(float(shift["ends_at"]), timezone.utc)
        fix = (vehicle or {}).get("fix")
        return CrewState(info, on_shift, ends, tuple(tickets), None if fix is None else float(fix["t"]),
                         None if fix is None else float(fix["lon"]), None if fix is None else float(fix["lat"]))

    async def set_shift(self, crew_id: str, on_shift: bool, ends_at: datetime | None, by: str, at: datetime) -> None:
        """Put a known crew on or off shift; KeyError for an unknown crew."""
        if crew_id not in self.by_id:
            raise KeyError(crew_id)
        await self.dispatch_store.set_shift(crew_id, on_shift, ends_at, by, at)


def board_row(state: CrewState, now: datetime, stale_after_s: float) -> dict[str, Any]:
    """One row of the crew board: crew, vehicle, state, current ticket and fix age."""
    age = state.fix_age_s(now)
    if not state.on_shift or (state.shift_ends_at is not None and state.shift_ends_at <= now):
        status = "off_shift"
    elif state.tickets:
        status = "busy"
    else:
        status = "free"
    current = sorted(state.tickets, key=lambda t: (URGENCY_RANK[t.urgency], t.created_at))
    return {"crew_id": state.info.crew_id, "crew_name": state.info.crew_name, "vehicle_id": state.info.vehicle_id,
            "unit_id": state.info.unit_id, "station_id": state.info.station_id,
            "skills": sorted(s.value for s in state.info.skills), "state": status,
            "current_ticket": current[0].number if current else None,
            "current_state": current[0].state.value if current else None,
            "tickets": [t.number for t in current], "workload": len(current),
            "fix_age_s": None if age is None else round(age, 1),
            "fix_stale": age is None or age > stale_after_s,
            "lon": state.lon, "lat": state.lat,
            "shift_ends_at": None if state.shift_ends_at is None else state.shift_ends_at.isoformat()}
