"""Who sees what on the live feed: one view per audience, each with its own frames.

The feed encodes each frame once per view, not once per console:

- ``office``: dispatchers, supervisors and administrators, the whole city;
- ``agent``: the call desk, every ticket (for repeats and incidents near the caller), vehicles,
  sensors and alarms, but not the crew board's vehicle → crew mapping (``GET /api/crews`` is the
  dispatchers');
- ``crew:<crew_id>``: one crew, its own crew's tickets and its own vehicle (the one the fleet
  registry binds to it), no sensor, no alarm, no city counts, nothing of another crew.

Tickets follow the ticket API's rule, `command.tickets.visible_to`; a crew's vehicle is the one
whose crew the same rule lets it see. A ticket a crew view was shown and may no longer see (handed
to another crew, returned) is sent once more as ``{number, version, open: false, removed: true}``.
"""
from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from command.tickets import Actor, Role, visible_to

OFFICE_VIEW = "office"
AGENT_VIEW = "agent"
CREW_VIEW = "crew:"
OFFICE_ROLES = frozenset({"dispatcher", "supervisor", "admin"})


class Subscriber(Protocol):
    """What the feed needs from a console connection."""

    def send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame for the console."""


def view_name(role: str, crew_id: str | None) -> str:
    """The view of an account: office roles share one, agents one, each crew its own; any other
    role gets an empty crew view."""
    if role in OFFICE_ROLES:
        return OFFICE_VIEW
    if role == "agent":
        return AGENT_VIEW
    return CREW_VIEW + ((crew_id or "") if role == "crew" else "")


@dataclass(frozen=True)
class Audience:
    """What one view may see: ``actor`` for the ticket rule; ``city`` for sensors, alarms and the
    day's counts; ``crews`` for the whole vehicle → crew mapping."""

    actor: Actor
    city: bool
    crews: bool

    @classmethod
    def of(cls, name: str) -> "Audience":
        """The audience of a view name (see `view_name`)."""
        if name == OFFICE_VIEW:
            return cls(Actor("live:office", Role.DISPATCHER), city=True, crews=True)
        if name == AGENT_VIEW:
            return cls(Actor("live:agent", Role.AGENT), city=True, crews=False)
        if not name.startswith(CREW_VIEW):
            raise ValueError(f"unknown live view {name!r}")
        return cls(Actor(f"live:{name}", Role.CREW, name[len(CREW_VIEW):] or None), city=False, crews=False)

    @property
    def restricted(self) -> bool:
        """A crew's view: tickets and vehicles are filtered, and removals are sent."""
        return self.actor.role is Role.CREW

    def ticket(self, view: Mapping[str, Any]) -> bool:
        """Whether this audience may see a compact ticket."""
        return visible_to(self.actor, view.get("crew_id"), view.get("unit_id"))

    def vehicle(self, vehicle_id: str, vehicle_crews: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether this audience may see a vehicle (a crew: the vehicle bound to it)."""
        return visible_to(self.actor, (vehicle_crews.get(vehicle_id) or {}).get("crew_id"))

    def crews_of(self, vehicle_crews: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The part of the vehicle → crew mapping this audience may see."""
        if self.crews:
            return dict(vehicle_crews)
        if not self.restricted:
            return {}
        return {vid: crew for vid, crew in vehicle_crews.items() if visible_to(self.actor, crew.get("crew_id"))}


def removed(view: Mapping[str, Any]) -> dict[str, Any]:
    """What a crew view is told of a ticket it was shown and may no longer see."""
    return {"number": view["number"], "version": view["version"], "open": False, "removed": True}


@dataclass
class View:
    """One audience's stream: its sequence, its last frames (for resumes), its consoles, its
    snapshot cache, the open tickets it was shown (crew views) and the crews mapping it carries."""

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
