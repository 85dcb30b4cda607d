"""The crew registry and live crew state for dispatch.

Crews (one vehicle each at most) live in the fleet registry in PostgreSQL (``store.fleet``):
the city's ``crews`` layer seeds it once, administrators change it on the admin page, and every
`CrewRegistry` follows it (`CrewRegistry.refresh`: one read of the registry's revision, a reload
only when it moved), so a new skill or a new vehicle counts at the next recommendation without a
restart. Whether a crew is on shift comes from the registry's shifts (on shift unless set
otherwise); busy state and workload are derived from the tickets assigned to it in field states
(dispatched, accepted, en route, on site); the vehicle's live position is its latest fix in the
store (``store.live.Store.vehicles``).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from store.live import Store
from store.fleet import Audit, FleetStore
from store.tickets import TicketStore
from command.dispatch import Crew
from command.errors import NotFound
from command.plates import PLATE_RE, normalize_plate  # noqa: F401 - (their home was here)
from command.ticket_model import FIELD_STATES, URGENCY_RANK, Category, Ticket, Urgency


@dataclass(frozen=True, slots=True)
class CrewInfo:
    """A crew as the city defines it: its vehicle, name, unit, station and skills."""

    crew_id: str
    vehicle_id: str
    crew_name: str
    unit_id: str
    station_id: str
    skills: frozenset[Category]
    plate: str = ""


VEHICLE_KINDS = ("repair", "engineering", "aerial", "drainage_pump", "generator", "suction", "other")
"""Kinds of vehicle (抢修车, 工程车, 高空作业车, 排水抢险车, 发电车, 吸污车, 其他); city vehicles are repair."""

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
                     str(r.get("unit_id") or ""), str(r.get("station_id") or ""), _skills(r.get("skills")),
                     str(r.get("plate") or ""))
            for r in frame.drop(columns="geometry").to_dict("records")]


def seed_items(crews: Iterable[CrewInfo], at: float) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(crew record, vehicle record) of city crews, as the fleet registry stores them; a vehicle
    named by two crews goes to the first (the second is seeded without one)."""
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    taken: set[str] = set()
    for info in crews:
        vehicle_id = info.vehicle_id if info.vehicle_id and info.vehicle_id not in taken else None
        crew = {"crew_id": info.crew_id, "crew_name": info.crew_name, "unit_id": info.unit_id,
                "station_id": info.station_id, "skills": sorted(s.value for s in info.skills),
                "vehicle_id": vehicle_id, "active": True, "source": "city", "updated_at": at, "updated_by": "system"}
        vehicle = None
        if vehicle_id:
            taken.add(vehicle_id)
            vehicle = {"vehicle_id": vehicle_id, "plate": normalize_plate(info.plate) or info.plate, "kind": "repair",
                       "unit_id": info.unit_id, "active": True, "source": "city", "updated_at": at,
                       "updated_by": "system"}
        out.append((crew, vehicle))
    return out


def info_from_record(record: Mapping[str, Any]) -> CrewInfo:
    """A fleet registry crew record as the dispatch side's CrewInfo ('' for no vehicle)."""
    return CrewInfo(str(record["crew_id"]), str(record.get("vehicle_id") or ""),
                    str(record.get("crew_name") or record["crew_id"]), str(record.get("unit_id") or ""),
                    str(record.get("station_id") or ""), _skills(record.get("skills")))


async def field_tickets(tickets: TicketStore) -> dict[str, list[Ticket]]:
    """Tickets in field states (dispatched … on site) by crew id."""
    out: dict[str, list[Ticket]] = {}
    for record in await tickets.in_states(FIELD_STATES):
        if record.ticket.crew_id:
            out.setdefault(record.ticket.crew_id, []).append(record.ticket)
    return out


class CrewRegistry:
    """The active crews of the fleet registry (seeded from `crews`) and how to read their live
    state (shifts from PostgreSQL, positions from Redis)."""

    def __init__(self, crews: Sequence[CrewInfo], store: Store, tickets: TicketStore) -> None:
        self.seeds = list(crews)
        self.crews = list(crews)
        self.by_id = {c.crew_id: c for c in self.crews}
        self.store = store
        self.tickets = tickets
        self.fleet = FleetStore(store.db, store.redis)
        self.revision: int | None = None

    def get(self, crew_id: str) -> CrewInfo | None:
        """A crew by id, or None (as of the last `refresh`)."""
        return self.by_id.get(crew_id)

    async def refresh(self) -> bool:
        """Follow the fleet registry: the first call adds the city's crews it does not know yet;
        later calls reload the active crews when its revision moved. True when reloaded."""
        if self.revision is None:
            await self.fleet.seed(seed_items(self.seeds, time.time()), time.time())
        revision = await self.fleet.revision()
        if revision == self.revision:
            return False
        records = await self.fleet.crews()
        crews = sorted((info_from_record(r) for _, r in records.values() if r.get("active", True)),
                       key=lambda c: c.crew_id)
        self.crews, self.by_id, self.revision = crews, {c.crew_id: c for c in crews}, revision
        return True

    async def field_tickets(self) -> dict[str, list[Ticket]]:
        """Tickets in field states by crew id."""
        return await field_tickets(self.tickets)

    async def states(self, now: datetime) -> list[CrewState]:
        """Every active crew's state at `now` (after following the registry)."""
        await self.refresh()
        shifts = await self.fleet.shifts()
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

    async def set_shift(self, crew_id: str, on_shift: bool, ends_at: datetime | None, by: str, at: datetime,
                        *, role: str) -> None:
        """Put a known crew on or off shift, with its ``shift.set`` audit row by ``by`` (``role``) in
        the same transaction; NotFound (404 ``crew_not_found``) for an unknown crew."""
        await self.refresh()
        if crew_id not in self.by_id:
            raise NotFound("crew_not_found", f"no crew {crew_id}")

        def audit(before: Mapping[str, Any], after: Mapping[str, Any]) -> Audit:
            old = {"on_shift": before["on_shift"], "ends_at": iso_utc(before["ends_at"])}
            new = {"on_shift": after["on_shift"], "ends_at": iso_utc(after["ends_at"])}
            return Audit(by, role, "shift.set", f"crew:{crew_id}",
                         {k: [old[k], v] for k, v in new.items() if old[k] != v}, at.timestamp())
        await self.fleet.set_shift(crew_id, on_shift, ends_at, by, at, audit=audit)


def iso_utc(epoch: float | None) -> str | None:
    """UTC epoch seconds as ISO 8601 UTC with Z, as the audit trail keeps shift ends."""
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


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
    return {"crew_id": state.info.crew_id, "crew_name": state.info.crew_name, "vehicle_id": state.info.vehicle_id or None,
            "unit_id": state.info.unit_id, "station_id": state.info.station_id,
            "skills": sorted(s.value for s in state.info.skills), "state": status,
            "current_ticket": current[0].number if current else None,
            "current_state": current[0].state.value if current else None,
            "tickets": [t.number for t in current], "workload": len(current),
            "fix_age_s": None if age is None else round(age, 1),
            "fix_stale": age is None or age > stale_after_s,
            "lon": state.lon, "lat": state.lat,
            "shift_ends_at": None if state.shift_ends_at is None else state.shift_ends_at.isoformat()}
