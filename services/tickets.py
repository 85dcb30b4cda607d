"""TicketManager: the application service behind the ticket API and workers.

It reads the clock, resolves places through the GIS lookup, calls the pure domain
(`command.tickets`, `command.repeats`, `command.grouping`, `command.limits`, `command.police`)
and writes each change atomically through `store.tickets.TicketStore`. It holds no
business rule of its own beyond choosing which domain function to call.

Its parts, one module each, on the base `services.ticket_core.TicketCore` (state, records, the
read-change-save loop): creation and intake (`services.ticket_intake`), incident grouping glue
(`services.ticket_incidents`), the workflow actions and callbacks (`services.ticket_actions`),
reads and lists (`services.ticket_lists`), proactive tickets from alarms
(`services.ticket_alarms`). This module assembles them and builds a manager for a process.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any

from store.tickets import TicketStore
from command.coordinates import ServiceArea
from services.ticket_actions import TicketActions
from services.ticket_alarms import AlarmTickets, sensor_sites
from services.ticket_lists import TicketLists


class TicketManager(AlarmTickets, TicketActions, TicketLists):
    """Create, act on, read and list tickets; incidents, callbacks and proactive tickets."""

    @classmethod
    def for_city(cls, store: TicketStore, city: Any, *, service_area: str = "", **kwargs: Any) -> "TicketManager":
        """A manager over a loaded `gis.layers.City`: its spatial lookup and sensor registry, and
        its service area (`service_area_of`)."""
        from gis.lookup import SpatialLookup

        lookup = SpatialLookup(city)
        return cls(store, lookup, sensors=sensor_sites(city, lookup),
                   service_area=service_area_of(city, service_area), **kwargs)


def service_area_of(city: Any, configured: str = "") -> ServiceArea | None:
    """The service area: the configured box (``SERVICE_AREA``), else the city's extent (its
    districts, else its grids, units or roads) grown by `command.coordinates.DEFAULT_MARGIN_DEG`;
    None without either."""
    area = ServiceArea.parse(configured)
    if area is not None or city is None:
        return area
    for kind in ("districts", "grids", "units", "roads"):  # a City's layers are WGS84
        frame = getattr(city, kind, None)
        if frame is not None and len(frame):
            bounds = [float(v) for v in frame.total_bounds]
            if all(math.isfinite(v) for v in bounds):
                return ServiceArea.around(bounds)
    return None


async def build_manager(db: Any, redis: Any, city: Any = None, *, service_area: str = "",
                        **kwargs: Any) -> TicketManager:
    """A TicketManager over the process's `store.db.Database` and Redis client and, when given, a
    loaded `gis.layers.City` (its lookup and sensor registry are built off the event loop).
    `service_area`: the ``SERVICE_AREA`` setting (empty: the city's extent with a margin)."""
    store = TicketStore(db, redis)
    if city is None:
        return TicketManager(store, None, service_area=ServiceArea.parse(service_area), **kwargs)
    return await asyncio.to_thread(TicketManager.for_city, store, city, service_area=service_area, **kwargs)
