"""Routing by ticket type (分类派转): where a ticket goes once the call is taken (pure).

The routing table says, per ticket type, one of three routes (the 12319 practice, issue #23):

==============  ==========  ======================================================================
type            route       where it goes
==============  ==========  ======================================================================
consultation    answer      咨询: answered on the call and archived (直接办结); never dispatched. A
                            consultation saved without an answer waits for the agent's answer,
                            never for a crew; it has no responsible unit.
service         station     服务: the 三级 station responsible for the place and trade; field
                            crews, dispatched by road as every repair.
repair          station     抢修: idem.
complaint       department  投诉: the 二级 unit above the place's station, which handles it and
                            guides the station; never a field crew.
suggestion      department  建议: idem.
praise          department  表扬: idem.
==============  ==========  ======================================================================

Only a `station` route reaches field crews: automatic dispatch, recommendations and a
dispatcher's manual assignment refuse every other ticket (`check_crew_dispatch`, HTTP 409
``route_not_for_crew``). 110 transfers come in as repairs (station) and an emergency's 110
handover does not depend on the route: both work as before. A department route whose station
hangs straight under the center (no 二级 unit above it) goes to that station, still without crews.

The running system reads the table from the file named by the setting ROUTING_FILE
(`config.routing_file`; the shipped ``config/routing.toml`` is `DEFAULT_ROUTING`). An agent,
dispatcher or supervisor may set another responsible unit with a reason (`set_unit`, audited);
the unit must be known, active and of the ticket's trade (`unit_refusal`).
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from command.errors import CommandError, Forbidden, InvalidTransition, ValidationError
from command.tickets import apply
from command.ticket_model import FIELD_STATES, TERMINAL_STATES, Actor, AuditEvent, Role, Ticket, TicketType

__all__ = ["RouteKind", "Route", "RoutingRow", "RoutingTable", "DEFAULT_ROUTING", "RouteRefused",
           "UnitOverrideRefused", "route", "table_from_config", "check_crew_dispatch", "unit_refusal",
           "may_set_unit", "set_unit", "SET_UNIT", "SET_UNIT_ROLES", "CREW_ACTIONS", "why_of"]


class RouteKind(str, enum.Enum):
    """Where a ticket of a type goes: answered on the call, a 三级 station, a 二级 department."""

    ANSWER = "answer"
    STATION = "station"
    DEPARTMENT = "department"


@dataclass(frozen=True)
class RoutingRow:
    """One entry of the routing table: a ticket type, its route and a line of help."""

    type: TicketType
    kind: RouteKind
    help: str


@dataclass(frozen=True)
class Route:
    """The route of one ticket: its kind, the responsible unit it gets (None: none) and why."""

    kind: RouteKind
    unit_id: str | None
    why: str

    @property
    def reaches_crews(self) -> bool:
        """Whether field crews may be dispatched to it."""
        return self.kind is RouteKind.STATION


_WHY = {
    RouteKind.ANSWER: "座席当场答复并归档，不派单",
    RouteKind.STATION: "交地点所属三级站点，由现场班组处置",
    RouteKind.DEPARTMENT: "交三级站点的上级二级单位办理，不派现场班组",
}
_NO_DEPARTMENT = "站点直属热线中心、无上级二级单位，交该站点办理，不派现场班组"
_NO_UNIT = "地点无所属责任单位，待人工指定"


@dataclass(frozen=True)
class RoutingTable:
    """The route of every ticket type."""

    rows: tuple[RoutingRow, ...]

    def __post_init__(self) -> None:
        types = [r.type for r in self.rows]
        if sorted(types) != sorted(TicketType) or len(set(types)) != len(types):
            raise ValidationError("routes", "the routing table needs one row per ticket type")

    def row(self, ticket_type: TicketType) -> RoutingRow:
        """The row of a ticket type."""
        return next(r for r in self.rows if r.type is ticket_type)

    def kind(self, ticket_type: TicketType) -> RouteKind:
        """The route kind of a ticket type."""
        return self.row(ticket_type).kind


DEFAULT_ROUTING = RoutingTable((
    RoutingRow(TicketType.CONSULTATION, RouteKind.ANSWER,
               "咨询: answered on the call and archived (直接办结); never dispatched, no responsible unit"),
    RoutingRow(TicketType.SERVICE, RouteKind.STATION,
               "服务: the 三级 station of the place and trade; field crews, dispatch by road"),
    RoutingRow(TicketType.REPAIR, RouteKind.STATION,
               "抢修: the 三级 station of the place and trade; field crews, dispatch by road"),
    RoutingRow(TicketType.COMPLAINT, RouteKind.DEPARTMENT,
               "投诉: the 二级 unit above the place's station; never a field crew"),
    RoutingRow(TicketType.SUGGESTION, RouteKind.DEPARTMENT,
               "建议: the 二级 unit above the place's station; never a field crew"),
    RoutingRow(TicketType.PRAISE, RouteKind.DEPARTMENT,
               "表扬: the 二级 unit above the place's station; never a field crew"),
))


def table_from_config(data: Mapping[str, Any], base: RoutingTable = DEFAULT_ROUTING) -> RoutingTable:
    """The table of a routing file's contents, e.g. {"routes": {"complaint": "department"}}: each
    type named there takes that route, the others keep `base`'s. ValidationError names the bad key."""
    unknown = sorted(set(data) - {"routes"})
    if unknown:
        raise ValidationError(unknown[0], "unknown key (a routing file has one table: routes)")
    routes = data.get("routes", {})
    if not isinstance(routes, Mapping):
        raise ValidationError("routes", "must be a table of ticket type = route")
    kinds = {}
    for name, value in routes.items():
        try:
            ticket_type = TicketType(name)
        except ValueError:
            raise ValidationError(f"routes.{name}", "unknown ticket type; one of: "
                                  + ", ".join(t.value for t in TicketType)) from None
        try:
            kinds[ticket_type] = RouteKind(value)
        except ValueError:
            raise ValidationError(f"routes.{name}", f"{value!r} is not a route; one of: "
                                  + ", ".join(k.value for k in RouteKind)) from None
    rows = tuple(dataclasses.replace(r, kind=kinds[r.type]) if r.type in kinds and kinds[r.type] is not r.kind
                 else r for r in base.rows)
    return RoutingTable(rows)


def route(ticket_type: TicketType, *, station_id: str | None, department_id: str | None,
          table: RoutingTable = DEFAULT_ROUTING) -> Route:
    """The route of a ticket of `ticket_type` at a place whose 三级 station is `station_id` and
    whose 二级 unit above it is `department_id` (either None when unknown)."""
    kind = table.kind(ticket_type)
    if kind is RouteKind.ANSWER:
        return Route(kind, None, _WHY[kind])
    if kind is RouteKind.STATION or department_id is not None:
        unit = station_id if kind is RouteKind.STATION else department_id
        return Route(kind, unit, _WHY[kind] if unit is not None else _NO_UNIT)
    return Route(kind, station_id, _NO_DEPARTMENT if station_id is not None else _NO_UNIT)


class RouteRefused(CommandError):
    """A field crew for a ticket whose route is not a station (HTTP 409 ``route_not_for_crew``)."""

    status = 409
    code = "route_not_for_crew"

    def __init__(self, number: str, kind: RouteKind) -> None:
        what = {RouteKind.ANSWER: "咨询单由座席当场答复", RouteKind.DEPARTMENT: "该工单由二级责任单位办理",
                RouteKind.STATION: ""}[kind]
        super().__init__(f"工单 {number}：{what}，不能派给现场班组", number=number, route=kind.value)
        self.number = number
        self.kind = kind


def why_of(kind: RouteKind | str) -> str:
    """The usual reason of a route kind, in Chinese (for the ticket view)."""
    return _WHY[RouteKind(kind)]


def check_crew_dispatch(ticket: Ticket, table: RoutingTable = DEFAULT_ROUTING) -> None:
    """RouteRefused unless a field crew may be sent to this ticket (its type routes to a station)."""
    kind = table.kind(ticket.type)
    if kind is not RouteKind.STATION:
        raise RouteRefused(ticket.number, kind)


class UnitOverrideRefused(CommandError):
    """A responsible unit that cannot take the ticket (HTTP 400): ``code`` unknown_unit,
    unit_inactive, unit_other_trade or unit_not_responsible; `field` is ``unit_id``."""

    def __init__(self, code: str, message: str, unit_id: str) -> None:
        super().__init__(f"unit_id: {message}", field="unit_id", unit_id=unit_id)
        self.code = code
        self.unit_id = unit_id


def unit_refusal(unit_id: str, unit: Mapping[str, Any] | None, category: str) -> UnitOverrideRefused | None:
    """Why the unit record `unit` (`store.units.unit_record`, None: unknown) cannot be the
    responsible unit of a ticket of `category`, or None when it can: known, active, a 二级 or
    三级 unit (not the center), with the ticket's trade among its trades."""
    if unit is None:
        return UnitOverrideRefused("unknown_unit", f"未知的责任单位 {unit_id}", unit_id)
    if not unit.get("active", False):
        return UnitOverrideRefused("unit_inactive", f"责任单位 {unit_id} 已停用", unit_id)
    if int(unit.get("level", 0)) < 2:
        return UnitOverrideRefused("unit_not_responsible", f"{unit_id} 是热线中心，不是责任单位", unit_id)
    if category not in (unit.get("trades") or ()):
        return UnitOverrideRefused("unit_other_trade", f"责任单位 {unit_id} 不办理该行业（{category}）的工单", unit_id)
    return None


SET_UNIT = "set_unit"
SET_UNIT_ROLES = frozenset({Role.AGENT, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMIN})


def may_set_unit(ticket: Ticket, actor: Actor) -> bool:
    """Whether this actor may set the ticket's responsible unit now: an office role, while the
    ticket is open and no field crew has it."""
    return actor.role in SET_UNIT_ROLES and ticket.state not in TERMINAL_STATES | FIELD_STATES


def set_unit(ticket: Ticket, unit_id: Any, reason: Any, *, actor: Actor, now: datetime,
             expected_version: int | None = None) -> tuple[Ticket, AuditEvent]:
    """The ticket with another responsible unit (the unit checked by the caller with
    `unit_refusal`) and its ``set_unit`` event: who, when, from, to and the reason. A change of
    what the ticket says (a stale `expected_version` is a Conflict), not a note."""
    if actor.role not in SET_UNIT_ROLES:
        raise Forbidden(f"role {actor.role.value} may not {SET_UNIT}", role=actor.role.value, action=SET_UNIT)
    if not may_set_unit(ticket, actor):
        raise InvalidTransition(ticket.number, ticket.state.value, SET_UNIT,
                                reason="the unit is set before a field crew takes the ticket")
    if not isinstance(unit_id, str) or not unit_id.strip() or len(unit_id) > 64:
        raise ValidationError("unit_id", "must be a unit id")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("reason", "a reason is required to set the responsible unit")
    if len(reason) > 500:
        raise ValidationError("reason", "longer than 500 characters")
    unit_id, reason = unit_id.strip(), reason.strip()
    if unit_id == ticket.unit_id:
        raise ValidationError("unit_id", f"the ticket is already with {unit_id}")
    noted, event = apply(ticket, "note", actor=actor, now=now, expected_version=expected_version, note=reason)
    changed = dataclasses.replace(noted, unit_id=unit_id, change_version=noted.version)
    event = dataclasses.replace(event, action=SET_UNIT, data={"from_unit": ticket.unit_id, "unit_id": unit_id,
                                                              "reason": reason})
    return changed, event


# actions that put a field crew on a ticket (the dispatcher's dispatch, a station handing it to one
# of its own crews): each refused unless the ticket's route is a station
CREW_ACTIONS = frozenset({"dispatch", "hand_to_crew"})
