"""DispatchManager: automatic dispatch and recommendations by road travel time, dispatcher
assignment, joint assignment of several tickets, and reactions to ticket changes.

It reads the crews' live state (`services.crews`), routes one-to-many on the city's road graph
(`gis.routing.RoadGraph`, built once per process) and calls the pure domain (`command.dispatch`)
for eligibility, ranking, policy and joint assignment. Timers (acceptance timeouts, GPS arrival,
escalation) live in `services.dispatch_timers`; the `dispatch` service process runs both.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from store.dispatch import DispatchStore
from store.ticket_records import TicketRecord
from command import dispatch as domain
from command.errors import Conflict, ValidationError
from command.grouping import Incident, decide, is_symptom_call
from command.routing import RouteKind, check_crew_dispatch, why_of
from command.ticket_model import (
    FIELD_STATES, POOL_STATES, SYSTEM_ACTOR, TERMINAL_STATES, URGENCY_RANK, Actor, Role, Ticket,
)
from gis.crs import distance_m
from gis.routing import RoadGraph, Route
from services.crews import CrewRegistry, CrewState, board_row
from services.tickets import TicketManager

log = logging.getLogger(__name__)

DISPATCH_ALERTS = ("declined", "accept_timeout", "no_candidate", "returned")
ALERT_TEXT = {"declined": "班组拒单，请重新派单", "accept_timeout": "班组超时未接单，请重新派单",
              "no_candidate": "无可派班组，请人工处理", "returned": "班组退单，请重新派单"}


def road_graph(city: Any, cache_dir: Path | None = None) -> RoadGraph | None:
    """The city's road graph, built once; cached as .npz under `cache_dir` keyed by the roads' content."""
    city = getattr(city, "city", city)
    roads = None if city is None else city.roads
    if roads is None or len(roads) == 0:
        return None
    lines = list(roads.geometry)
    speeds = [float(v) for v in roads["speed_kmh"]]
    oneway = [bool(v) for v in roads["oneway"]]
    path = None
    if cache_dir is not None:
        digest = hashlib.sha1(b"".join(shapely.to_wkb(np.asarray(lines, dtype=object))))
        digest.update(np.asarray(speeds).tobytes() + np.asarray(oneway).tobytes())
        path = Path(cache_dir) / f"roads-{digest.hexdigest()[:16]}.npz"
        if path.is_file():
            try:
                return RoadGraph.load(path)
            except ValueError as exc:
                log.warning("road graph cache %s unusable (%s); rebuilding", path, exc)
    graph = RoadGraph.from_lines(lines, speeds, oneway)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        graph.save(tmp)
        os.replace(tmp, path)
    return graph


def is_creation(change: Mapping[str, str]) -> bool:
    """Whether a `tkt:changes` entry is a new ticket: its last action is ``create``, or
    ``link_incident`` at version 2 (a call grouped into an incident as it was created)."""
    action = change.get("action")
    return action == "create" or (action == "link_incident" and change.get("version") == "2")


class DispatchManager:
    """Recommend, assign and re-dispatch crews for tickets."""

    def __init__(self, tickets: TicketManager, crews: CrewRegistry, store: DispatchStore,
                 graph: RoadGraph | None, *, auto: bool = True,
                 accept_timeout_s: float = domain.DEFAULT_ACCEPT_TIMEOUT_S,
                 stale_after_s: float = domain.DEFAULT_STALE_AFTER_S,
                 stale_penalty_s: float = domain.DEFAULT_STALE_PENALTY_S,
                 config: domain.DispatchPolicy | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.tickets = tickets
        self.crews = crews
        self.store = store
        self.graph = graph
        self.auto = auto
        self.stale_after_s = stale_after_s
        self.stale_penalty_s = stale_penalty_s
        self.config = config or domain.DispatchPolicy(accept_timeout_s=accept_timeout_s)
        self.clock = clock or tickets.clock

    @property
    def accept_timeout_s(self) -> float:
        """Seconds a dispatched crew has to accept."""
        return self.config.accept_timeout_s

    # ------------------------------------------------------------------ ranking (no I/O)
    def etas(self, ticket: Ticket, candidates: Sequence[domain.Candidate], *,
             geometry: bool = False) -> list[Route | None]:
        """Road routes from every candidate's vehicle to the ticket, in one one-to-many pass."""
        if self.graph is None or ticket.lon is None or ticket.lat is None or not candidates:
            return [None] * len(candidates)
        origins = [(c.crew.lon, c.crew.lat) for c in candidates]
        return self.graph.one_to_many((ticket.lon, ticket.lat), origins, with_geometry=geometry)  # type: ignore[arg-type]

    def rank(self, ticket: Ticket, crews: Sequence[domain.Crew], now: datetime) -> domain.Ranking:
        """Eligible crews ranked by road ETA (stale fixes penalised), with every skipped crew.

        Only crews that could still make the top N are routed: a crew whose straight-line bound
        (distance at the fastest road speed, plus its stale penalty) is above the N-th best road
        score already found cannot enter it, and is listed as skipped (``slower``) without a
        route. The ranking is the same as routing everyone; it costs two small one-to-many passes.
        """
        candidates, skipped = domain.eligible(crews, ticket, now, stale_after_s=self.stale_after_s)
        routes = self._routes_within_bound(ticket, candidates)
        routed = sorted(routes)
        chosen = [candidates[i] for i in routed]
        etas = [None if routes[i] is None else routes[i].seconds for i in routed]  # type: ignore[union-attr]
        metres = [None if routes[i] is None else routes[i].metres for i in routed]  # type: ignore[union-attr]
        ranking = domain.recommend(ticket, chosen, skipped, etas, metres,
                                   stale_penalty_s=self.stale_penalty_s, config=self.config)
        text = "按直线距离推算不可能快于前几名推荐"
        slower = tuple([domain.Skipped(c.crew.crew_id, "slower", text)
                        for i, c in enumerate(candidates) if i not in routes]) if len(routes) < len(candidates) else ()
        return dataclasses.replace(ranking, skipped=ranking.skipped + slower) if slower else ranking

    def _routes_within_bound(self, ticket: Ticket, candidates: Sequence[domain.Candidate],
                             first: int = 32) -> dict[int, Route | None]:
        """Routes of the candidates that can still make the top N (by candidate index)."""
        if self.graph is None or ticket.lon is None or ticket.lat is None or len(candidates) <= first:
            return dict(enumerate(self.etas(ticket, candidates)))
        lon = np.array([c.crew.lon for c in candidates], dtype=float)
        lat = np.array([c.crew.lat for c in candidates], dtype=float)
        fastest = max(float(self.graph.edge_speed_kmh.max()), self.graph.access_speed_kmh) / 3.6
        penalty = np.array([self.stale_penalty_s if c.stale else 0.0 for c in candidates])
        bound = np.asarray(distance_m(ticket.lon, ticket.lat, lon, lat)) * 0.99 / fastest + penalty
        order = np.argsort(bound, kind="stable")
        routes: dict[int, Route | None] = {}
        pending = np.ones(len(candidates), dtype=bool)
        batch = order[:first].tolist()
        while batch:
            found = self.graph.one_to_many((ticket.lon, ticket.lat), list(zip(lon[batch].tolist(), lat[batch].tolist())))
            routes.update(zip(batch, found))
            pending[batch] = False
            scores = sorted(r.seconds + penalty[i] for i, r in routes.items() if r is not None)
            best = scores[self.config.top - 1] if len(scores) >= self.config.top else math.inf
            batch = np.flatnonzero(pending & (bound <= best)).tolist()
        return routes

    # ------------------------------------------------------------------ recommendations
    async def _states(self, now: datetime) -> list[CrewState]:
        return await self.crews.states(now)

    async def recommend(self, record: TicketRecord, now: datetime | None = None, *,
                        states: Sequence[CrewState] | None = None) -> dict[str, Any]:
        """Rank crews for a ticket, add route geometry for the top ones, store and return the view."""
        now = now or self.clock()
        ticket = record.ticket
        kind = self.tickets.routing.kind(ticket.type)
        if kind is not RouteKind.STATION:  # never a field crew: nothing to rank, nothing stored
            return {"number": ticket.number, "policy": "recommend", "computed_at": now.isoformat(),
                    "version": ticket.version, "state": ticket.state.value, "recommendations": [], "skipped": [],
                    "route": kind.value, "note": f"{why_of(kind)}，不推荐现场班组"}
        incident = await self._symptom_of(ticket)
        if incident is not None:  # a symptom call: the crew goes to the incident's primary, nothing stored
            return {"number": ticket.number, "policy": "recommend", "computed_at": now.isoformat(),
                    "version": ticket.version, "state": ticket.state.value, "recommendations": [], "skipped": [],
                    "incident_id": incident.incident_id, "primary": incident.primary,
                    "note": f"故障事件 {incident.incident_id} 的来电，只派主工单 {incident.primary}"}
        states = await self._states(now) if states is None else states
        ranking = self.rank(ticket, [s.to_crew(now) for s in states], now)
        view = self._view(ticket, ranking, {s.info.crew_id: s for s in states}, now)
        await self.store.put_recommendation(ticket.number, view)
        return view

    def _view(self, ticket: Ticket, ranking: domain.Ranking, by_id: Mapping[str, CrewState],
              now: datetime) -> dict[str, Any]:
        top = ranking.recommendations
        routes: list[Route | None] = [None] * len(top)
        if top and self.graph is not None and ticket.lon is not None:
            origins = [(by_id[r.crew_id].lon, by_id[r.crew_id].lat) for r in top]
            routes = self.graph.one_to_many((ticket.lon, ticket.lat), origins, with_geometry=True)  # type: ignore[arg-type]
        rows = []
        for rec, route in zip(top, routes):
            info = by_id[rec.crew_id].info
            rows.append({"rank": rec.rank, "crew_id": rec.crew_id, "crew_name": info.crew_name,
                         "vehicle_id": info.vehicle_id, "eta_s": round(rec.eta_s, 1),
                         "score_s": round(rec.score_s, 1),
                         "distance_m": None if rec.distance_m is None else round(rec.distance_m, 1),
                         "workload": rec.workload, "stale": rec.stale, "penalty_s": rec.penalty_s,
                         "preempts": rec.preempts, "explanation": rec.explanation,
                         "route": None if route is None or route.geometry is None else
                         [[round(x, 6), round(y, 6)] for x, y in route.geometry]})
        skipped = [{"crew_id": s.crew_id, "crew_name": by_id[s.crew_id].info.crew_name if s.crew_id in by_id else "",
                    "reason": s.reason, "text": s.text} for s in ranking.skipped]
        note = "工单无坐标，无法按道路计算到达时间" if ticket.lon is None else \
            "未加载道路网" if self.graph is None else ""
        return {"number": ticket.number, "policy": ranking.policy, "computed_at": now.isoformat(),
                "version": ticket.version, "state": ticket.state.value,
                "recommendations": rows, "skipped": skipped, "note": note}

    async def stored_recommendation(self, number: str) -> dict[str, Any] | None:
        """The recommendation last stored for a ticket."""
        return await self.store.recommendation(number)

    # ------------------------------------------------------------------ assigning
    async def assign(self, number: str, crew_id: str, actor: Actor, *, expected_version: int,
                     mode: str = "manual", note: str = "") -> TicketRecord:
        """Dispatch a ticket to a crew (a dispatcher confirming or overriding the recommendation; a
        station's liaison handing it to one of the station's own crews: action hand_to_crew)."""
        await self.crews.refresh()  # a crew the administrator just created or deactivated
        crew = self.crews.get(crew_id) if isinstance(crew_id, str) else None
        if crew is None:
            raise ValidationError("crew_id", f"unknown crew {crew_id!r}")
        action = "dispatch"
        if actor.role is Role.UNIT:
            if not {crew.unit_id, crew.station_id} & actor.unit_ids:
                raise ValidationError("crew_id", f"crew {crew_id} is not a crew of your unit")
            action = "hand_to_crew"
        args: dict[str, Any] = {"crew_id": crew_id, "mode": mode}
        stored = await self.store.recommendation(number)
        rows = (stored or {}).get("recommendations") or []
        chosen = next((r for r in rows if r["crew_id"] == crew_id), None)
        if chosen is not None:
            args["eta_s"] = chosen["eta_s"]
        if not note and mode == "manual" and rows:
            note = f"确认推荐第 {chosen['rank']} 名" if chosen else f"改派：未采用推荐（推荐首选 {rows[0]['crew_id']}）"
        if note:
            args["note"] = note
        record = await self.tickets.act(number, action, args, actor, expected_version=expected_version)
        await self.store.clear_alarms([f"{number}|{what}" for what in DISPATCH_ALERTS], self.clock())
        return record

    async def dispatch_pool_ticket(self, number: str, *, reason: str = "",
                                   lift: Ticket | None = None) -> dict[str, Any] | None:
        """A ticket (back) in the dispatch pool: auto-dispatch it (auto policy) or store its
        recommendation and, after a decline/timeout/return, alert the dispatcher. A symptom call of
        a dispatch-once incident gets no crew; when it is more urgent than the incident's waiting
        primary, the primary is dispatched as urgently (`lift`: that call), so an emergency no-water
        call whose primary is the alarm's urgent ticket still dispatches it automatically."""
        for _ in range(3):
            record = await self.tickets.store.get(number)
            ticket = record.ticket
            if ticket.state not in POOL_STATES or self.tickets.routing.kind(ticket.type) is not RouteKind.STATION:
                return None  # only a station's ticket waits for a field crew
            incident = await self._incident_of(ticket)
            if incident is not None and is_symptom_call(ticket.number, incident):
                return None if lift is not None else await self.dispatch_pool_ticket(incident.primary, lift=ticket)
            if incident is not None and await self._another_call_in_field(ticket, incident):
                return None
            now = self.clock()
            lifted = lift is not None and URGENCY_RANK[lift.urgency] < URGENCY_RANK[ticket.urgency]
            if lift is not None and not lifted:
                return None  # the symptom call is no more urgent: the primary's own dispatch stands
            view = await self.recommend(TicketRecord(dataclasses.replace(ticket, urgency=lift.urgency), record.meta)
                                        if lifted else record, now)
            auto = self.auto and view["policy"] == "auto"
            if not auto:
                if reason in DISPATCH_ALERTS:
                    await self._alert(ticket, reason, now, view)
                return view
            top = view["recommendations"]
            if not top:
                await self._alert(ticket, "no_candidate", now, view)
                return view
            best = top[0]
            note = f"自动派单：{best['crew_name']}，{best['explanation']}"
            if lifted:
                note += f"（按故障事件 {ticket.incident_id} 中来电 {lift.number} 的紧急程度）"
            try:
                await self.tickets.act(number, "dispatch", {"crew_id": best["crew_id"], "mode": "auto",
                                                            "eta_s": best["eta_s"], "note": note[:2000]},
                                       SYSTEM_ACTOR, expected_version=ticket.version)
            except Conflict:
                continue  # changed meanwhile: look again
            await self.store.clear_alarms([f"{number}|{what}" for what in DISPATCH_ALERTS], now)
            return view
        return None

    async def _incident_of(self, ticket: Ticket) -> Incident | None:
        """The incident the ticket is a call of, or None."""
        if not ticket.incident_id:
            return None
        found = await self.tickets.store.incident(ticket.incident_id)
        return None if found is None else found[0]

    async def _symptom_of(self, ticket: Ticket) -> Incident | None:
        """The dispatch-once incident whose symptom call (not its primary) the ticket is, or None."""
        incident = await self._incident_of(ticket)
        return incident if incident is not None and is_symptom_call(ticket.number, incident) else None

    async def _another_call_in_field(self, ticket: Ticket, incident: Incident) -> bool:
        """Whether another call of the ticket's dispatch-once incident already has a crew in the
        field (then the incident's crew is that one; a symptom call never gets one either:
        `command.grouping.is_symptom_call`, the manual dispatch refuses it too)."""
        if not decide(incident).dispatch_once:
            return False
        others = [n for n in incident.ticket_numbers if n != ticket.number]
        return any(r is not None and r.ticket.state in FIELD_STATES for r in await self.tickets.store.get_many(others))

    async def _alert(self, ticket: Ticket, what: str, now: datetime, view: Mapping[str, Any]) -> None:
        top = [r["crew_id"] for r in view.get("recommendations") or ()]
        await self.store.raise_alarms([{
            "alarm_id": f"{ticket.number}|{what}", "number": ticket.number, "kind": "dispatch", "what": what,
            "level": "warning" if what != "no_candidate" else "overdue", "text": ALERT_TEXT[what],
            "urgency": ticket.urgency.value, "raised_at": now.timestamp(), "recommended": top}])

    # ------------------------------------------------------------------ joint assignment
    async def joint(self, numbers: Sequence[str], actor: Actor, *, apply: bool = False) -> dict[str, Any]:
        """Assign several pool tickets at once minimising the total urgency-weighted ETA; with the
        greedy baseline's total to show the gain; `apply` dispatches the joint assignment."""
        if not isinstance(numbers, (list, tuple)) or not 1 <= len(numbers) <= 200 or \
                not all(isinstance(n, str) for n in numbers) or len(set(numbers)) != len(numbers):
            raise ValidationError("numbers", "must be a list of 1..200 distinct ticket numbers")
        records = [await self.tickets.get(n, actor) for n in numbers]
        waiting = [r.ticket.number for r in records if r.ticket.state not in POOL_STATES]
        if waiting:
            raise ValidationError("numbers", f"not waiting for dispatch: {', '.join(waiting)}")
        for record in records:  # RouteRefused (409) for a ticket no field crew may take
            check_crew_dispatch(record.ticket, self.tickets.routing)
        now = self.clock()
        states = await self._states(now)
        crews = [s.to_crew(now) for s in states]
        column = {c.crew_id: j for j, c in enumerate(crews)}
        tickets = [r.ticket for r in records]
        matrix: list[list[float | None]] = []
        for ticket in tickets:
            row: list[float | None] = [None] * len(crews)
            candidates, _ = domain.eligible(crews, ticket, now, stale_after_s=self.stale_after_s)
            for candidate, route in zip(candidates, self.etas(ticket, candidates)):
                if route is not None:
                    row[column[candidate.crew.crew_id]] = route.seconds + (self.stale_penalty_s if candidate.stale else 0.0)
            matrix.append(row)
        ids = [c.crew_id for c in crews]
        assignment, total, greedy_total = domain.assign_jointly(tickets, ids, matrix)
        greedy = domain.greedy_assignment(tickets, ids, matrix)

        def rows(found: Mapping[str, str]) -> list[dict[str, Any]]:
            return [{"number": t.number, "urgency": t.urgency.value, "crew_id": found.get(t.number),
                     "eta_s": None if t.number not in found else round(float(matrix[i][column[found[t.number]]]), 1)}
                    for i, t in enumerate(tickets)]
        out: dict[str, Any] = {
            "assignments": rows(assignment), "greedy": rows(greedy),
            "total_weighted_eta_s": round(total, 1), "greedy_total_weighted_eta_s": round(greedy_total, 1),
            "gain_s": round(greedy_total - total, 1),
            "gain_pct": round(100.0 * (greedy_total - total) / greedy_total, 2) if greedy_total > 0 else 0.0,
            "applied": False}
        if apply:
            by_number = {r.ticket.number: r for r in records}
            for number, crew_id in assignment.items():
                eta = matrix[numbers.index(number)][column[crew_id]]
                await self.tickets.act(number, "dispatch", {"crew_id": crew_id, "mode": "manual",
                                                            "eta_s": round(float(eta or 0), 1),
                                                            "note": "联合派单（总加权到达时间最小）"},
                                       actor, expected_version=by_number[number].ticket.version)
            out["applied"] = True
        return out

    # ------------------------------------------------------------------ board and alarms
    async def board(self) -> list[dict[str, Any]]:
        """The crew board: one row per crew."""
        now = self.clock()
        return [board_row(s, now, self.stale_after_s) for s in await self._states(now)]

    async def alarms(self) -> list[dict[str, Any]]:
        """Ticket alarms shown to dispatchers: overdue first, then by when raised."""
        found = list((await self.store.ticket_alarms()).values())
        return sorted(found, key=lambda a: (a.get("level") != "overdue", a.get("deadline") or a.get("raised_at") or 0,
                                            a["alarm_id"]))

    # ------------------------------------------------------------------ ticket changes
    async def on_change(self, change: Mapping[str, str]) -> None:
        """React to one `tkt:changes` entry (number, version, action, state)."""
        action, number, state = change.get("action"), change.get("number", ""), change.get("state")
        if is_creation(change) or action == "reopen":
            await self.dispatch_pool_ticket(number)
        elif action in ("decline", "expire", "return"):
            reason = {"decline": "declined", "expire": "accept_timeout", "return": "returned"}[action]
            await self.dispatch_pool_ticket(number, reason=reason)
        elif action == "dispatch":
            await self.store.clear_alarms([f"{number}|{what}" for what in DISPATCH_ALERTS], self.clock())
        elif action in ("cancel", "merge"):  # an incident's primary gone: its next call takes the crew
            promoted = await self.tickets.promote_primary(number)
            if promoted is not None:
                await self.dispatch_pool_ticket(promoted.primary)
        if state in {s.value for s in TERMINAL_STATES}:
            shown = [a for a in await self.store.ticket_alarms() if a.split("|")[0] == number]
            await self.store.clear_alarms(shown, self.clock())
            await self.store.drop_arrivals([number])
