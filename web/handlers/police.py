"""110 police linkage over HTTP: the dispatcher's "转110", the inbound endpoints the 110 side
calls (HMAC-signed, no login), and the CAP 1.2 rendering of a ticket's last police message.

Inbound requests are refused with 401 (bad or missing signature, stale timestamp, replayed
nonce) or 400 (malformed body; a point that is not valid WGS84, ``bad_coordinates``, or lies
outside the service area, ``outside_service_area``) before anything is written, and logged; a repeated
Idempotency-Key gets the first reply.
"""
from __future__ import annotations

from command.police import DISPATCHER_MANUAL, IncidentTransfer, PoliceStatus
from web.base import ApiError, BaseHandler
from web.handlers.tickets import NUMBER, TicketHandler


class Handover(TicketHandler):
    """POST /api/tickets/<number>/police: the dispatcher hands the ticket over to 110 (转110)."""

    async def post(self, number: str) -> None:
        actor = self.actor("dispatcher", "supervisor")
        link = self.police
        if not link.outbound_enabled:
            raise ApiError(503, "police_link_disabled", "POLICE_URL and POLICE_SECRET are not set")
        record = await self.tickets.get(number, actor)
        entry, created = await link.enqueue_handover(record, DISPATCHER_MANUAL, purpose="manual", actor=actor)
        self.write_json({"message": entry, "created": created}, status=202 if created else 200)


class Inbound(BaseHandler):
    """Base of the endpoints 110 calls: signed requests, no session, no XSRF cookie."""

    expected: type = PoliceStatus
    count_refusals = True

    def check_xsrf_cookie(self) -> None:
        """Authenticated by the HMAC signature; no ambient credentials to protect."""

    async def post(self) -> None:
        # a refusal (SignatureError 401, PoliceMessageError or CoordinateError 400, InboundBusy 503)
        # comes before anything is written (the claims on the key and the incident are released)
        headers = dict(self.request.headers.get_all())
        status, reply = await self.police.receive(self.request.body, headers, self.expected)
        self.write_json(reply, status=status)


class PoliceStatusIn(Inbound):
    """POST /api/police/status: 110's progress on a handover joins the ticket's timeline."""

    expected = PoliceStatus


class IncidentIn(Inbound):
    """POST /api/police/incidents: a non-police incident 110 transfers becomes a channel-110
    ticket, acknowledged at once with its number."""

    expected = IncidentTransfer


class Cap(TicketHandler):
    """GET /api/tickets/<number>/cap: the ticket's last police message as CAP 1.2 XML."""

    async def get(self, number: str) -> None:
        actor = self.actor("dispatcher", "supervisor")
        await self.tickets.get(number, actor)
        xml = await self.police.cap(number)
        if xml is None:
            raise ApiError(404, "no_police_message", f"ticket {number} has no 110 message")
        self.set_header("Content-Type", "application/cap+xml; charset=utf-8")
        self.finish(xml)


routes = [
    (rf"/api/tickets/{NUMBER}/police", Handover),
    (rf"/api/tickets/{NUMBER}/cap", Cap),
    (r"/api/police/status", PoliceStatusIn),
    (r"/api/police/incidents", IncidentIn),
]
