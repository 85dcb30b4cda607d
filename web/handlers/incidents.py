"""An incident handled once: its restoration time (ETR), its outage notice, the incidents near a
caller's place, over `services.incidents.IncidentService`.

Listed in `web.app.HANDLER_MODULES` before the ticket handlers, so that ``/api/incidents/near`` is
not read as an incident id.
"""
from __future__ import annotations

from typing import Any

from command.outages import NEAR_M, Notice, notice_to_dict
from services.ticket_views import incident_view
from web.base import ApiError
from web.openapi_schemas import N, S, T, arr, nullable, obj, op, ref
from web.handlers.tickets import INCIDENT, OFFICE, TicketHandler


class IncidentHandler(TicketHandler):
    """Base of the incident handlers (``self.incidents``; an unknown incident is the service's
    `IncidentNotFound`: 404 by the one error contract)."""



def notice_view(notice: Notice | None) -> dict[str, Any] | None:
    """A notice as the API returns it."""
    return None if notice is None else notice_to_dict(notice)


class IncidentNear(IncidentHandler):
    """GET /api/incidents/near?lon=&lat=&category=&radius_m=: the open incidents of the category
    whose calls lie within radius_m (default 300 m) of the caller's place, nearest first, each with
    its notice and the answer the agent reads to the caller."""

    async def get(self) -> None:
        self.actor(*OFFICE)
        lon, lat = self.point_arg()
        radius = self.float_arg("radius_m")
        found = await self.incidents.near(lon, lat, self.get_argument("category", ""),
                                          radius_m=NEAR_M if radius is None else radius)
        self.write_json({"radius_m": NEAR_M if radius is None else radius, "incidents": [
            {**incident_view(f["incident"], f["rev"]), "distance_m": f["distance_m"], "area_name": f["area_name"],
             "notice": notice_view(f["notice"]), "answer": f["answer"]} for f in found]})


class IncidentEtr(IncidentHandler):
    """POST /api/incidents/<id>/etr {etr, note}: set or change the estimated restoration time
    (a dispatcher, a supervisor, or the crew of the incident's primary ticket)."""

    async def post(self, incident_id: str) -> None:
        actor = self.actor("dispatcher", "supervisor", "crew")
        body = self.json_body()
        incident, rev = await self.incidents.set_etr(incident_id, body.get("etr"), body.get("note"), actor)
        self.write_json(incident_view(incident, rev))


class IncidentNotice(IncidentHandler):
    """POST /api/incidents/<id>/notice {area_text?, start?, text?}: publish the incident's outage
    notice (停水/停电通知), or change the published one."""

    async def post(self, incident_id: str) -> None:
        actor = self.actor("dispatcher", "supervisor")
        notice = await self.incidents.publish_notice(incident_id, self.json_body(), actor)
        self.write_json(notice_view(notice))


class NoticeList(IncidentHandler):
    """GET /api/notices?all=1: the active outage notices (all=1: withdrawn ones too), newest first."""

    async def get(self) -> None:
        self.actor(*OFFICE)
        found = await self.incidents.notices(active_only=self.get_argument("all", "0") != "1",
                                             limit=self.int_arg("limit", 100, 1, 500))
        self.write_json({"notices": [notice_view(n) for n in found]})


_NEAR = obj(["incidents"], radius_m=N, incidents=arr({"allOf": [ref("Incident"), obj(
    [], distance_m=N, notice=nullable(ref("Notice")), answer=S)]}))
openapi = {
    "GET /api/incidents/near": op("Open incidents of a category whose calls lie within radius_m of a place, nearest "
                                  "first, with their notice and the answer read to the caller (the desk's 归入事件)",
                                  "agent, dispatcher, supervisor, admin", _NEAR,
                                  query=(("lon", "number", "WGS84"), ("lat", "number", "WGS84"),
                                         ("category", "string", "the call's category"),
                                         ("radius_m", "number", "0..2000, default 300"))),
    "POST /api/incidents/{}/etr": op("Set or change the incident's estimated restoration time (预计恢复时间; after "
                                     "now, within 30 days), audited on the incident and the primary's timeline",
                                     "dispatcher, supervisor, admin, the crew of the incident's primary ticket",
                                     "Incident", body=obj(["etr"], etr=T, note=S), errors=(400, 401, 403, 404, 409)),
    "POST /api/incidents/{}/notice": op("Publish the incident's outage notice (停水/停电通知) or change it, audited",
                                        "dispatcher, supervisor, admin", "Notice",
                                        body=obj([], area_text=S, start=T, text=S), errors=(400, 401, 403, 404, 409)),
    "GET /api/notices": op("Active outage notices, newest first (all=1: withdrawn ones too)",
                           "agent, dispatcher, supervisor, admin", obj(["notices"], notices=arr(ref("Notice"))),
                           query=(("all", "string", "1 for withdrawn ones too"), ("limit", "integer", "1..500"))),
}

routes = [
    (r"/api/incidents/near", IncidentNear),
    (rf"/api/incidents/{INCIDENT}/etr", IncidentEtr),
    (rf"/api/incidents/{INCIDENT}/notice", IncidentNotice),
    (r"/api/notices", NoticeList),
]
