"""Who sees what on the live feed: one view per audience, each with its own frames.

The feed encodes each frame once per view, not once per console:

- ``office``: dispatchers, supervisors and administrators, the whole city;
- ``agent``: the call desk, every ticket (for repeats and incidents near the caller), vehicles,
  sensors and alarms, but not the crew board's vehicle → crew mapping (``GET /api/crews`` is the
  dispatchers');
- ``review``: the review chains' team leader, coordinator and director, every ticket (the ticket
  API shows them all) and nothing else: the vehicle, sensor and alarm APIs are not theirs;
- ``crew:<crew_id>``: one crew, its own crew's tickets and its own vehicle (the one the fleet
  registry binds to it), no sensor, no alarm, no city counts, nothing of another crew;
- ``unit:<unit_id>``: a responsible unit's liaison, the tickets of its unit and of the units under
  it (the unit tree, read from the record at each snapshot of the view), nothing else.

Tickets follow the ticket API's rule, `command.tickets.visible_to`; a crew's vehicle is the one
whose crew the same rule lets it see. A ticket a crew or unit view was shown and may no longer see
(handed to another crew, returned, re-routed to another unit) is sent once more as
``{number, version, open: false, removed: true}``.
"""
from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

from command.tickets import visible_to
from command.ticket_model import Actor, Role

OFFICE_VIEW = "office"
AGENT_VIEW = "agent"
REVIEW_VIEW = "review"
CREW_VIEW = "crew:"
UNIT_VIEW = "unit:"
OFFICE_ROLES = frozenset({"dispatcher", "supervisor", "admin"})
REVIEW_ROLES = frozenset({"team_leader", "coordinator", "director"})


class Subscriber(Protocol):
    """What the feed needs from a console connection."""

    def send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame for the console."""


def view_name(role: str, crew_id: str | None, unit_id: str | None = None) -> str:
    """The view of an account: office roles share one, agents one, reviewers one, each crew and
    each unit its own; any other role gets an empty crew view."""
    if role in OFFICE_ROLES:
        return OFFICE_VIEW
    if role == "agent":
        return AGENT_VIEW
    if role in REVIEW_ROLES:
        return REVIEW_VIEW
    if role == "unit":
        return UNIT_VIEW + (unit_id or "")
    return CREW_VIEW + ((crew_id or "") if role == "crew" else "")


def unit_of(name: str) -> str | None:
    """The unit of a unit view's name (None for any other view)."""
    return name[len(UNIT_VIEW):] if name.startswith(UNIT_VIEW) else None


@dataclass(frozen=True)
class Audience:
    """What one view may see: ``actor`` for the ticket rule; ``city`` for sensors, alarms and the
    day's counts; ``crews`` for the whole vehicle → crew mapping; ``fleet`` for vehicles at all
    (a crew: its own)."""

    actor: Actor
    city: bool
    crews: bool
    fleet: bool = True

    @classmethod
    def of(cls, name: str, unit_ids: Iterable[str] | None = None) -> "Audience":
        """The audience of a view name (see `view_name`); a unit view's ``unit_ids`` are its unit
        and the units under it (None: its unit alone)."""
        if name == OFFICE_VIEW:
            return cls(Actor("live:office", Role.DISPATCHER), city=True, crews=True)
        if name == AGENT_VIEW:
            return cls(Actor("live:agent", Role.AGENT), city=True, crews=False)
        if name == REVIEW_VIEW:
            return cls(Actor("live:review", Role.TEAM_LEADER), city=False, crews=False, fleet=False)
        unit = unit_of(name)
        if unit is not None:
            ids = frozenset({unit} - {""} if unit_ids is None else unit_ids)
            return cls(Actor(f"live:{name}", Role.UNIT, unit_ids=ids), city=False, crews=False, fleet=False)
        if not name.startswith(CREW_VIEW):
            raise ValueError(f"unknown live view {name!r}")
        return cls(Actor(f"live:{name}", Role.CREW, name[len(CREW_VIEW):] or None), city=False, crews=False)

    @property
    def restricted(self) -> bool:
        """A crew's or a unit's view: tickets (and a crew's vehicle) are filtered, and removals are sent."""
        return self.actor.role in (Role.CREW, Role.UNIT)

    def ticket(self, view: Mapping[str, Any]) -> bool:
        """Whether this audience may see a compact ticket."""
        return visible_to(self.actor, view.get("crew_id"), view.get("unit_id"))

    def vehicle(self, vehicle_id: str, vehicle_crews: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether this audience may see a vehicle (a crew: the vehicle bound to it)."""
        return self.fleet and visible_to(self.actor, (vehicle_crews.get(vehicle_id) or {}).get("crew_id"))

    def crews_of(self, vehicle_crews: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The part of the vehicle → crew mapping this audience may see."""
        if self.crews:
            return dict(vehicle_crews)
        if not (self.restricted and self.fleet):
            return {}
        return {vid: crew for vid, crew in vehicle_crews.items() if visible_to(self.actor, crew.get("crew_id"))}


def removed(view: Mapping[str, Any]) -> dict[str, Any]:
    """What a crew or unit view is told of a ticket it was shown and may no longer see."""
    return {"number": view["number"], "version": view["version"], "open": False, "removed": True}


@dataclass
class View:
    """One audience's stream: its sequence, its last frames (for resumes), its consoles, its
    snapshot cache, the open tickets it was shown (crew and unit views) and the crews mapping it carries."""

    name: str
    audience: Audience
    keep_frames: int
    seq: int = 0
    subscribers: set = field(default_factory=set)
    shown: set = field(default_factory=set)
    crews: dict = field(default_factory=dict)
    snapshot: tuple[int, float, bytes] | None = None
    building: asyncio.Future | None = None

    def __post_init__(self) -> None:
        self.recent: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=self.keep_frames)

    def frames_since(self, seq: int) -> list[bytes] | None:
        """Frames after seq when all are still kept; None when the console must reload a snapshot."""
        if seq == self.seq:
            return []
        if not self.recent or seq < self.recent[0][0] - 1 or seq > self.seq:
            return None
        return [frame for s, frame in self.recent if s > seq]

    def tickets(self, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The compact tickets of a delta this view may see, and removals of those it no longer may."""
        if not self.audience.restricted:
            return views
        out = []
        for view in views:
            if self.audience.ticket(view):
                out.append(view)
                (self.shown.add if view.get("open") else self.shown.discard)(view["number"])
            elif view["number"] in self.shown:
                self.shown.discard(view["number"])
                out.append(removed(view))
        return out
