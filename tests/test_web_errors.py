"""The one error contract at the HTTP boundary (``web.base.BaseHandler.write_error``): every domain
error (``command.errors.CommandError`` and the store's and services' refusals derived from it)
answers its own status with ``{"error": {"code", "message", **details}}``; anything unexpected
answers 500 ``internal`` without a traceback. And the pages get the vehicle limits from the
settings (VEHICLE_STALE_S, VEHICLE_OFFLINE_S), not from numbers in the JS.

In-process app on loopback over the session's real Redis and PostgreSQL (tier 2)."""
from __future__ import annotations

import orjson
import pytest
import tornado.httpclient
import tornado.httpserver

from command.coordinates import CoordinateError, OutsideServiceArea
from command.errors import (
    CommandError, Conflict, Forbidden, InvalidTransition, NotFound, Refused, TicketNotFound, ValidationError,
)
from command.grouping import NotThePrimary
from command.police import PoliceMessageError
from command.police_signing import SignatureError
from command.routing import RouteKind, RouteRefused, UnitOverrideRefused
from command.ticket_model import Role
from field.photos import PhotoRejected
from servers.embedded import free_port
from services.devices import DeviceRefused
from services.jt808_terminals import TerminalRefused
from services.kpi_service import KpiUnavailable
from services.police_link import InboundBusy
from services.supervision import SupervisionRefused
from services.ticket_incidents import IncidentNotFound
from store.fleet import FleetRefused
from store.live import Store
from store.supervision import SupervisionChanged
from store.units import UnitNotFound, UnitRefused
from tests.conftest import test_settings
from web import app as webapp
from web.base import BaseHandler

# (error, status, code, details the body carries besides code and message)
ERRORS = [
    (TicketNotFound("GD20261122-0001"), 404, "ticket_not_found", {"number": "GD20261122-0001"}),
    (InvalidTransition("GD20261122-0001", "new", "resolve"), 409, "invalid_transition", {"action": "resolve"}),
    (Conflict("GD20261122-0001", 3, 4), 409, "conflict", {"expected_version": 3, "actual_version": 4}),
    (ValidationError("phone", "must be digits"), 400, "validation_error", {"field": "phone"}),
    (Forbidden("no", role="crew", action="dispatch"), 403, "forbidden", {"role": "crew"}),
    (CoordinateError("lat", "out of range"), 400, "bad_coordinates", {"field": "lat"}),
    (OutsideServiceArea("lon", "outside"), 400, "outside_service_area", {"field": "lon"}),
    (RouteRefused("GD20261122-0001", RouteKind.ANSWER), 409, "route_not_for_crew", {"route": "answer"}),
    (UnitOverrideRefused("unknown_unit", "no such unit", "U9"), 400, "unknown_unit", {"field": "unit_id"}),
    (NotThePrimary("GD20261122-0002", "INC1", "GD20261122-0001"), 409, "incident_not_primary",
     {"primary": "GD20261122-0001"}),
    (PoliceMessageError("missing_field", "type is required", "type"), 400, "missing_field", {"field": "type"}),
    (SignatureError("replay", "nonce seen"), 401, "replay", {}),
    (InboundBusy("key-1"), 503, "in_progress", {}),
    (KpiUnavailable("not ready"), 503, "kpi_unavailable", {}),
    (DeviceRefused(400, "unknown_sensor", "unknown sensors", sensors=["S9"]), 400, "unknown_sensor",
     {"sensors": ["S9"]}),
    (SupervisionRefused(409, "ticket_not_open", "closed"), 409, "ticket_not_open", {}),
    (TerminalRefused(409, "terminal_exists", "terminal 13912345678 is bound already", phone="13912345678"), 409,
     "terminal_exists", {"phone": "13912345678"}),
    (SupervisionChanged("changed meanwhile"), 409, "supervision_changed", {}),
    (UnitNotFound("U9"), 404, "unit_not_found", {}),
    (UnitRefused("cycle", "a unit cannot be under itself"), 400, "cycle", {"field": "parent_id"}),
    (FleetRefused("plate_taken", "V02"), 409, "plate_taken", {"vehicle_id": "V02"}),
    (FleetRefused("unknown_vehicle", "V99"), 400, "unknown_vehicle", {"vehicle_id": "V99"}),
    (FleetRefused("vehicle_assigned", "C02"), 409, "vehicle_assigned", {"crew_id": "C02"}),
    (PhotoRejected(415, "photo_type", "only images"), 415, "photo_type", {}),
    (NotFound("crew_not_found", "no crew C9"), 404, "crew_not_found", {}),
    (IncidentNotFound("INC-X"), 404, "incident_not_found", {}),
    (Refused(409, "crew_busy", "crew C1 has tickets in the field"), 409, "crew_busy", {}),
]


class Raiser(BaseHandler):
    """GET /api/test/raise/<n>: raises ERRORS[n]; /api/test/raise/bug: an unexpected exception."""

    async def get(self, which: str) -> None:
        if which == "bug":
            raise RuntimeError("secret internals /etc/passwd")
        raise ERRORS[int(which)][0]


@pytest.fixture
async def client(tmp_path, redis_url, database_url):
    settings = test_settings(tmp_path, VEHICLE_STALE_S=45.0, VEHICLE_OFFLINE_S=450.0)
    store = Store.from_url(redis_url, database_url)
    app = webapp.make_app(webapp.build_services(settings, store), cookie_secret="test-secret")
    app.add_handlers(r".*", [(r"/api/test/raise/(\w+)", Raiser)])
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    http = tornado.httpclient.AsyncHTTPClient()

    async def get(path: str, **headers: str) -> tornado.httpclient.HTTPResponse:
        return await http.fetch(f"http://127.0.0.1:{port}{path}", headers=headers, raise_error=False,
                                follow_redirects=False)
    get.store = store  # type: ignore[attr-defined]
    yield get
    server.stop()
    await store.close()


def test_every_domain_error_class_is_in_the_table():
    """A new domain error gets a row here (its status and code are part of the API)."""
    def leaves(cls: type) -> set[type]:
        return {cls} | {c for sub in cls.__subclasses__() for c in leaves(sub)}
    covered = {type(error) for error, *_ in ERRORS}
    missing = {c.__qualname__ for c in leaves(CommandError) - covered
               if c.__module__.split(".")[0] in ("command", "store", "services", "field")
               and c not in (CommandError, Refused)}
    # KPI audit events that cannot be read never reach a request
    assert missing <= {"EventError", "AlarmEventError"}, missing


@pytest.mark.parametrize("index", range(len(ERRORS)), ids=[type(e[0]).__name__ + ":" + e[2] for e in ERRORS])
async def test_a_domain_error_answers_its_status_and_code(client, index):
    error, status, code, details = ERRORS[index]
    response = await client(f"/api/test/raise/{index}")
    body = orjson.loads(response.body)
    assert response.code == status, body
    assert response.headers["Content-Type"].startswith("application/json")
    assert set(body) == {"error"}
    assert body["error"]["code"] == code and body["error"]["message"] == error.message
    assert {k: body["error"][k] for k in details} == details


@pytest.mark.allow_logged_errors
async def test_an_unexpected_exception_is_a_500_without_a_traceback(client):
    response = await client("/api/test/raise/bug")
    assert response.code == 500
    assert orjson.loads(response.body) == {"error": {"code": "internal", "message": "internal server error"}}
    assert b"Traceback" not in response.body and b"passwd" not in response.body


async def test_an_api_error_keeps_its_shape(client):
    response = await client("/api/no/such/path")
    assert response.code == 404
    assert orjson.loads(response.body)["error"]["code"] == "not_found"


async def test_the_console_and_the_wall_get_the_vehicle_limits_from_the_settings(client):
    await client.store.put_session("tok-dispatcher", {"name": "dispatcher", "role": Role.DISPATCHER.value,
                                                      "crew_id": None, "display": ""}, 60)
    console = await client("/console", Authorization="Bearer tok-dispatcher")
    assert console.code == 200
    assert b'data-stale-s="45.0"' in console.body and b'data-offline-s="450.0"' in console.body
    wall = await client("/wall", Authorization="Bearer tok-dispatcher")
    assert wall.code == 200 and b'data-stale-s="45.0"' in wall.body
