"""The hand-written part of the OpenAPI document: component schemas and the operations of every
/api route, keyed by ``"METHOD /path/{}"`` (path parameters written ``{}`` whatever their name).

``web.handlers.openapi`` joins these to the application's real route table. A handler module may
also carry its own ``openapi`` dict with the same keys; those entries win.
"""
from __future__ import annotations

from typing import Any

from command.limit_steps import Step


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] | list[str], **props: Any) -> dict[str, Any]:
    """An object schema (extra properties allowed: clients must ignore what they do not know)."""
    return {"type": "object", "required": list(required), "properties": props}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    """An array schema."""
    return {"type": "array", "items": items}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, or null (OpenAPI 3.0 ``nullable``; a $ref is wrapped, its siblings would be ignored)."""
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


S = {"type": "string"}
N = {"type": "number"}
I = {"type": "integer"}
B = {"type": "boolean"}
T = {"type": "string", "format": "date-time"}
ANY_OBJ = {"type": "object"}
NS, NN, NT = nullable(S), nullable(N), nullable(T)

TICKET_STATES = ["new", "reviewed", "dispatched", "accepted", "en_route", "on_site", "resolved", "callback",
                 "closed", "declined", "returned", "reopened", "transferred", "cancelled", "merged", "assigned", "handling",
                 "in_review"]

SCHEMAS: dict[str, Any] = {
    "Error": obj(["error"], error=obj(["code", "message"], code=S, message=S)),
    "LoginRequest": obj(["username", "password"], username=S, password=S),
    "LoginResponse": obj(["token", "role", "expires_at"], token=S, role=S, crew_id=NS, unit_id=NS, expires_at=N),
    "Ok": obj(["ok"], ok=B),
    "Me": obj(["name", "role", "xsrf"], name=S, role=S, crew_id=NS, unit_id=NS, display=S, xsrf=S),
    "Fix": obj(["t", "lat", "lon"], t=N, lat=N, lon=N, speed_kmh=NN, course_deg=NN, alt_m=NN,
               quality=nullable(I), mode=NS, sats=nullable(I), hdop=NN, talker=NS, time=NT),
    "Vehicle": obj(["id", "state", "fix"], id=S, state={"type": "string", "enum": ["online", "stale", "offline"]},
                   fix_age_s=NN, fix=nullable(ref("Fix")), link=NS, signal=NS, last_seen=NN,
                   counters={"type": "object", "additionalProperties": I}),
    "VehicleList": obj(["vehicles", "now"], vehicles=arr(ref("Vehicle")), now=T),
    "Track": obj(["vehicle_id", "since", "until", "count", "fixes"], vehicle_id=S, since=T, until=T, count=I,
                 fixes=arr(ref("Fix"))),
    "LayerIndex": obj(["layers"], layers=arr(obj(["kind", "features"], kind=S, features=I))),
    "FeatureCollection": obj(["type", "features"], type={"type": "string", "enum": ["FeatureCollection"]},
                             features=arr(ANY_OBJ)),
    "Reading": obj(["value"], value=N, unit=NS, quantity=NS, ts=NN, received_at=NN, source=NS),
    "Sensor": obj(["id", "kind", "reading", "link"], id=S, name=NS, kind=NS, quantity=NS, unit=NS, asset_id=NS,
                  lon=NN, lat=NN, period_s=NN, high_warning=NN, high_critical=NN, low_warning=NN,
                  low_critical=NN, reading=nullable(ref("Reading")), link=NS, link_at=NN),
    "SensorList": obj(["sensors", "count", "now"], sensors=arr(ref("Sensor")), count=I, now=T),
    "Alarm": obj(["alarm_id", "sensor_id", "kind", "severity", "state", "raised_at"], alarm_id=S, sensor_id=S,
                 kind=S, severity={"type": "string", "enum": ["warning", "critical"]},
                 state={"type": "string", "enum": ["raised", "acknowledged", "cleared"]}, raised_at=NN,
                 acked_at=NN, acked_by=NS, cleared_at=NN, value=NN, threshold=NN),
    "AlarmList": obj(["alarms", "count"], alarms=arr(ref("Alarm")), count=I),
    "AlarmAck": obj(["alarm", "applied"], alarm=ref("Alarm"), applied=B, request_id=S),
    "IngestStats": obj(["counters", "rejected", "rejected_total"], counters={"type": "object"},
                       rejected={"type": "object", "additionalProperties": I}, rejected_total=I, messages=I,
                       unknown_sensors=ANY_OBJ, unknown_recent=arr(ANY_OBJ)),
    "TicketCreate": obj(["channel", "category", "type", "description"], channel=S, category=S, type=S,
                        urgency=S, description=S, caller_name=S, caller_phone=S, address=S, lon=N, lat=N,
                        link=B, answer=S, tags=arr(S), unit_id=S, unit_reason=S, follows=S,
                        incident_id=S),  # the desk's 归入事件: an open incident of the call's category
    "Ticket": obj(
        ["number", "state", "version", "category", "type", "urgency", "color", "created_at", "deadlines",
         "allowed_actions", "time_left_s"],
        number={"type": "string", "pattern": r"^GD\d{8}-\d{4,}$"}, channel=S, category=S, type=S, urgency=S,
        description=S, caller_name=S, caller_phone=S, address=S, lon=NN, lat=NN, district=NS, grid=NS,
        unit_id=NS, supply_area=NS, area_class=S, attachments=arr(S), alarm_id=NS,
        state={"type": "string", "enum": TICKET_STATES}, crew_id=NS, incident_id=NS, merged_into=NS,
        repeat_count=I, duplicate_count=I, color={"type": "string", "enum": ["blue", "orange", "red"]}, supervised=B,
        rework_count=I, declined_by=arr(S), satisfaction=NS, resolution=S, version={"type": "integer", "minimum": 1},
        change_version={"type": "integer", "minimum": 0},
        created_at=T, updated_at=T, pending_since=NT, dispatched_at=NT, accepted_at=NT, arrived_at=NT,
        resolved_at=NT, closed_at=NT, deadlines={"type": "object", "additionalProperties": NT},
        police_kind=NS, police_suggested=NS, tags=arr(S), asset_id=NS, calls=I, needs_supervision=B, time_left_s=NN,
        limit_share_left=NN, limit_stage=NS,
        limit_step=nullable({"type": "string", "enum": [s.value for s in Step]}),  # command.limit_steps
        limit_level=nullable({"type": "string", "enum": ["ok", "warning", "overdue"]}), allowed_actions=arr(S),
        route=nullable({"type": "string", "enum": ["answer", "station", "department"]}), route_why=NS,
        request=nullable(obj(["kind", "reason", "at"], kind={"type": "string", "enum": ["return", "extension"]},
                             reason=S, at=T, until=T)),
        extended_until=NT, signed_by=S, follows=NS, review_chain=arr(S), reviewers=arr(S), review_passed=B,
        rework_units={"type": "object", "additionalProperties": I},
        review=nullable(obj(["step", "role", "name", "of"], step=I, role=S, name=S, of=I)),
        # how the server placed a ticket that came with address text and no lon/lat (command.geocoding)
        geocode=nullable(obj(["match"], match={"type": "string", "enum": ["exact", "approximate", "none"]},
                             score=N, address=S))),
    "TicketList": obj(["tickets", "total", "offset", "limit", "now"], tickets=arr(ref("Ticket")), total=I,
                      offset=I, limit=I, now=T),
    "TicketCreated": obj(["linked", "ticket"], linked=B, incident_id=NS,
                         match=nullable({"type": "string", "enum": ["repeat", "duplicate"]}), ticket=ref("Ticket")),
    "TicketEnvelope": obj(["ticket"], ticket=ref("Ticket")),
    "Duplicates": obj(["repeat_of", "radius_m", "candidates"], repeat_of=NS,
                      match=nullable({"type": "string", "enum": ["repeat", "duplicate"]}), radius_m=N,
                      candidates=arr(obj(["ticket", "distance_m"], ticket=ref("Ticket"), distance_m=NN,
                                         same_phone=B, same_category=B))),
    "AuditEvent": obj(["id", "action", "to_state", "actor_id", "role", "at"], id=S, ticket_number=S, action=S,
                      from_state=NS, to_state=S, actor_id=S, role=S, at=T, note=S, data=ANY_OBJ),
    "Timeline": obj(["number", "events"], number=S, events=arr(ref("AuditEvent"))),
    "Action": {"type": "object", "required": ["expected_version"],
               "properties": {"expected_version": {"type": "integer", "minimum": 1}},
               "additionalProperties": True},
    "Callback": obj(["expected_version", "satisfaction"], expected_version=I, satisfaction=S, words=S, truthful=B),
    "TicketCounts": obj(["states", "open", "unit_rework"], states={"type": "object", "additionalProperties": I},
                        open=I, unit_rework={"type": "object", "additionalProperties": I}),
    "Incident": obj(["incident_id", "category", "status", "ticket_numbers", "calls", "rev"], incident_id=S,
                    category=S, supply_area=NS, suspected_asset=NS, primary=S, ticket_numbers=arr(S),
                    first_call_at=T, last_call_at=T, alarm_ids=arr(S), confirmed_at=NT, resolved_at=NT,
                    status={"type": "string", "enum": ["single", "suspected", "confirmed", "resolved"]},
                    calls=I, dispatch_once=B, rev=I, tickets=arr(ref("Ticket")),
                    etr=NT, etr_note=S, etr_by=NS, etr_set_at=NT,  # 预计恢复时间 (command.outages)
                    areas=arr(S), feeder=NS, onset_at=NT, onset_ticket=NS,  # command.grouping: scope and time
                    scope={"type": "string", "enum": ["area", "feeder", "dma"]},
                    dma=NS, dma_wide=B,  # water: the incident's DMA, DMA-scope (pressure alarms, no burst call yet)
                    notice=nullable(ref("Notice")), answer=S,  # the detail: its notice, the caller's answer
                    area_name=NS,  # the detail and near: the supply area's readable name (gis.lookup.area_name)
                    events=arr(obj(["id", "action", "actor_id", "role", "at"], id=S, action=S, actor_id=S, role=S,
                                   at=T, note=S, data=ANY_OBJ))),
    "IncidentList": obj(["incidents"], incidents=arr(ref("Incident"))),
    "Notice": obj(["incident_id", "category", "kind", "area_text", "starts_at", "text", "state", "active"],
                  incident_id=S, category=S, kind={"type": "string", "enum": ["停水", "停电", "停气", "停暖"]},
                  area_id=NS, area_text=S, starts_at=T, etr=NT, text=S, text_custom=B,
                  state={"type": "string", "enum": ["active", "withdrawn"]}, active=B, published_by=S,
                  published_at=T, updated_by=S, updated_at=T, withdrawn_at=NT, withdrawn_by=NS),
    "User": obj(["name", "role", "active"], name=S, role={"type": "string",
                "enum": ["agent", "dispatcher", "crew", "supervisor", "admin", "unit",
                                  "team_leader", "coordinator", "director"]}, display=S, crew_id=NS,
                unit_id=NS, active=B),
    "UserList": obj(["users", "roles"], users=arr(ref("User")), roles=arr(S)),
    "UserCreate": obj(["name", "role"], name=S, role=S, display=S, crew_id=S, unit_id=S, password=S),
    "UserCreated": obj(["user", "password"], user=ref("User"), password=NS),
    "UserUpdate": obj([], role=S, display=S, crew_id=NS, unit_id=NS, active=B),
    "UserUpdated": obj(["user", "sessions_ended"], user=ref("User"), sessions_ended=I),
    "PasswordReset": obj(["name", "password", "sessions_ended"], name=S, password=NS, sessions_ended=I),
    "AdminCrew": obj(["crew_id", "vehicle_id", "on_shift"], crew_id=S, crew_name=NS, vehicle_id=NS, unit_id=NS,
                     station_id=NS, skills=arr(S), plate=NS, on_shift=B, shift_ends_at=NT, shift_set_by=NS,
                     vehicle_state=NS),
    "AdminCrewList": obj(["crews"], crews=arr(ref("AdminCrew"))),
    "ShiftUpdate": obj(["on_shift"], on_shift=B, ends_at=NT),
    "ShiftState": obj(["crew_id", "on_shift"], crew_id=S, on_shift=B, shift_ends_at=NT, shift_set_by=NS),
    "Health": obj(["status", "postgres", "redis", "broker", "services"], status={"type": "string", "enum": ["ok", "degraded"]},
                  postgres=ANY_OBJ, redis=ANY_OBJ, broker=ANY_OBJ, services=ANY_OBJ, checked_ms=N),
    "Recommendation": obj([], candidates=arr(ANY_OBJ)),
    "Assign": obj(["crew_id", "expected_version"], crew_id=S, expected_version=I),
}


def op(summary: str, roles: str, response: str | dict, *, status: int = 200, body: str | dict | None = None,
       query: tuple[tuple[str, str, str], ...] = (), errors: tuple[int, ...] = (400, 401, 403)) -> dict[str, Any]:
    """One operation: summary, who may call it, its JSON response and optional JSON body / query."""
    schema = ref(response) if isinstance(response, str) else response
    out: dict[str, Any] = {
        "summary": summary, "description": f"Roles: {roles}.",
        "responses": {str(status): {"description": "OK", "content": {"application/json": {"schema": schema}}},
                      **{str(code): {"$ref": "#/components/responses/Error"} for code in errors}},
    }
    if body:
        schema = ref(body) if isinstance(body, str) else body
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if query:
        out["parameters"] = [{"name": n, "in": "query", "required": False, "schema": {"type": t},
                              "description": d} for n, t, d in query]
    return out


OFFICE = "agent, dispatcher, supervisor, admin"
READERS = OFFICE + ", crew (own crew's tickets only)"
TICKET_READERS = READERS + ", unit (its unit's and those of the units under it only), team_leader, coordinator, director"
T_ = "/api/tickets/{}"
OPERATIONS: dict[str, dict[str, Any]] = {
    "POST /api/login": op("Log in; returns a bearer token", "anyone", "LoginResponse", body="LoginRequest",
                          errors=(400, 401, 413, 429)),
    "POST /api/logout": op("End the current session", "any logged-in user", "Ok"),
    "GET /api/me": op("The logged-in account and its XSRF token", "any logged-in user", "Me"),
    "GET /api/vehicles": op("Every vehicle's latest state", READERS, "VehicleList"),
    "GET /api/vehicles/{}": op("One vehicle: latest fix, state, counters", READERS, "Vehicle", errors=(401, 403, 404)),
    "GET /api/vehicles/{}/track": op("A vehicle's fixes in time order", "dispatcher, supervisor, admin", "Track",
                                     query=(("since", "string", "ISO 8601 or epoch s"),
                                            ("until", "string", "ISO 8601 or epoch s"))),
    "GET /api/layers": op("The city's map layers with feature counts", "any logged-in user", "LayerIndex"),
    "GET /api/layers/{}": op("One layer as GeoJSON (WGS84)", "any logged-in user",
                             {"$ref": "#/components/schemas/FeatureCollection"}, errors=(401, 404)),
    "GET /api/sensors": op("Registered sensors with latest reading", "agent, dispatcher, supervisor", "SensorList",
                           query=(("kind", "string", "only this sensor kind"),)),
    "GET /api/sensors/unknown": op("Readings of sensors the registry does not know", "agent, dispatcher, supervisor",
                                   obj(["readings", "counts"], readings=arr(ANY_OBJ), counts=ANY_OBJ)),
    "GET /api/sensors/{}": op("One sensor with history and alarms", "agent, dispatcher, supervisor", "Sensor",
                              errors=(401, 403, 404)),
    "GET /api/alarms": op("Alarms still shown, oldest first", "agent, dispatcher, supervisor", "AlarmList",
                          query=(("state", "string", "active|raised|acknowledged|cleared"),)),
    "POST /api/alarms/{}/ack": op("Acknowledge an alarm (202 while still queued)", "dispatcher, supervisor",
                                  "AlarmAck", errors=(401, 403, 404)),
    "GET /api/ingest/stats": op("Ingest counters and rejections by reason", "dispatcher, supervisor", "IngestStats"),
    "GET /api/tickets": op("Tickets; the dispatcher's queue with state=open&sort=time_left (a unit's inbox: the "
                           "same, scoped to its units)", TICKET_READERS, "TicketList",
                           query=(("state", "string", "open or a state"), ("color", "string", "red|orange|blue"),
                                  ("phone", "string", "caller history"), ("sort", "string", "time_left|created"),
                                  ("review_role", "string", "team_leader|coordinator|director: that role's review queue"),
                                  ("limit", "integer", "1..500"), ("offset", "integer", "0..100000"))),
    "POST /api/tickets": op("Take a call: a new ticket (201) or a repeat linked to an open one (200); address "
                            "text without lon/lat is looked up in the address book (the ticket's geocode); incident_id "
                            "joins an open incident of the call's category (400 validation_error otherwise)", OFFICE,
                            "TicketCreated", status=201, body="TicketCreate"),
    "GET /api/tickets/duplicates": op("Possible duplicates and repeat-call match of a call before saving", OFFICE,
                                      "Duplicates", query=(("lon", "number", ""), ("lat", "number", ""),
                                                           ("category", "string", ""), ("type", "string", ""),
                                                           ("phone", "string", ""),
                                                           ("description", "string", "the caller's words (<= 2000)"),
                                                           ("radius_m", "number", "0..5000"))),
    "GET /api/tickets/counts": op("Tickets per state, open total, rework per unit", "dispatcher, supervisor",
                                  "TicketCounts"),
    "GET " + T_: op("One ticket with the caller's allowed actions", TICKET_READERS, "Ticket", errors=(401, 403, 404)),
    "GET " + T_ + "/timeline": op("Every audit event of a ticket in order", TICKET_READERS, "Timeline",
                                  errors=(401, 403, 404)),
    "POST " + T_ + "/actions/{}": op("Apply a lifecycle action (dispatch, accept, ..., transfer, cancel; a unit's "
                                     "assign, unit_accept, hand_to_crew, feedback, request_return, "
                                     "approve_return, reroute_return, refuse_return, request_extension, "
                                     "approve_extension, refuse_extension)", TICKET_READERS,
                                     "TicketEnvelope", body="Action", errors=(400, 401, 403, 404, 409)),
    "POST " + T_ + "/callback": op("Record the callback (回访) result", "agent, supervisor", "TicketEnvelope",
                                   body="Callback", errors=(400, 401, 403, 404, 409)),
    "GET /api/callbacks": op("Resolved tickets awaiting their callback", "agent, supervisor",
                             obj(["tickets"], tickets=arr(ref("Ticket")))),
    "GET /api/incidents": op("Unresolved incidents grouping calls (all=1: every incident)", OFFICE, "IncidentList",
                             query=(("all", "string", "1 for resolved ones too"), ("limit", "integer", "1..500"))),
    "GET /api/incidents/{}": op("An incident with its calls", OFFICE, "Incident", errors=(401, 403, 404)),
    "POST /api/incidents/{}/resolve": op("Resolve every open call of an incident", "dispatcher, supervisor",
                                         "Incident", body=obj(["resolution"], resolution=S), errors=(400, 401, 403, 404)),
    "GET /api/admin/users": op("Every account", "admin", "UserList"),
    "POST /api/admin/users": op("Create an account (password generated when absent)", "admin", "UserCreated",
                                status=201, body="UserCreate", errors=(400, 401, 403, 409)),
    "PATCH /api/admin/users/{}": op("Change role, display, crew, or disable an account", "admin", "UserUpdated",
                                    body="UserUpdate", errors=(400, 401, 403, 404, 409)),
    "POST /api/admin/users/{}/password": op("Reset a password (generated when absent)", "admin", "PasswordReset",
                                            errors=(400, 401, 403, 404)),
    "GET /api/admin/crews": op("Crews, their vehicles and shift flags", "admin, supervisor, dispatcher",
                               "AdminCrewList"),
    "PUT /api/admin/crews/{}/shift": op("Put a crew on or off shift", "admin, supervisor", "ShiftState",
                                        body="ShiftUpdate", errors=(400, 401, 403, 404)),
    "GET /api/openapi.json": op("This document", "anyone", ANY_OBJ, errors=()),
    # dispatch side (services/dispatch handlers): shapes kept loose until they settle
    "GET " + T_ + "/recommendation": op("Top crews for a ticket with ETA (s), distance (m) and route geometry",
                                        "dispatcher, supervisor", "Recommendation", errors=(401, 403, 404)),
    "POST " + T_ + "/assign": op("Assign (or reassign) a crew (a station's liaison: one of its own crews, "
                                 "hand_to_crew)", "dispatcher, supervisor, unit", ANY_OBJ, body="Assign",
                                 errors=(400, 401, 403, 404, 409)),
    "POST " + T_ + "/police": op("Hand a ticket to 110 (转110)", "dispatcher, supervisor", ANY_OBJ, body=ANY_OBJ,
                                 errors=(400, 401, 403, 404, 409)),
    "GET /api/crews": op("The crew board", "dispatcher, supervisor", ANY_OBJ),
    "GET /api/ticket-alarms": op("Ticket limit alarms", "dispatcher, supervisor", ANY_OBJ),
    "POST /api/dispatch/joint": op("Joint assignment of several tickets", "dispatcher, supervisor", ANY_OBJ,
                                   body=ANY_OBJ, errors=(400, 401, 403, 409)),
}

# desk, field, police and dispatch extras (their handler modules may replace these with their own)
OPERATIONS.update({
    "GET /api/address/search": op("Ranked address/POI candidates for free text", OFFICE,
                                  obj(["candidates"], candidates=arr(ANY_OBJ)),
                                  query=(("q", "string", "free text"), ("limit", "integer", "max candidates"))),
    "GET /api/address/reverse": op("The nearest addresses to a point, nearest first", OFFICE,
                                   obj(["candidates"], candidates=arr(ANY_OBJ)),
                                   query=(("lon", "number", "WGS84"), ("lat", "number", "WGS84"),
                                          ("max_m", "number", "search radius"))),
    "GET /api/field/assignments": op("The crew's current and queued tickets with navigation targets", "crew",
                                     ANY_OBJ),
    "POST /api/tickets/{}/photos": {
        **op("Upload one site photo (jpg/png/webp, size-limited)", "crew, dispatcher, supervisor", ANY_OBJ,
             status=201, errors=(400, 401, 403, 404, 413, 415)),
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": obj(["photo"], photo={"type": "string", "format": "binary"})},
            "image/*": {"schema": {"type": "string", "format": "binary"}}}}},
    "GET /api/tickets/{}/photos/{}": {
        "summary": "A stored site photo", "description": f"Roles: {READERS}.",
        "responses": {"200": {"description": "The image", "content": {"image/*": {"schema": {
            "type": "string", "format": "binary"}}}},
            **{str(c): {"$ref": "#/components/responses/Error"} for c in (401, 403, 404)}}},
    "GET /api/tickets/{}/cap": {
        "summary": "The ticket's last police message as CAP 1.2 XML", "description": f"Roles: {OFFICE}.",
        "responses": {"200": {"description": "CAP 1.2", "content": {"application/xml": {"schema": {"type": "string"}}}},
                      **{str(c): {"$ref": "#/components/responses/Error"} for c in (401, 403, 404)}}},
    "POST /api/police/status": op("110's progress on a handover (signed request, no session)", "110 (signature)",
                                  ANY_OBJ, body=ANY_OBJ, errors=(400, 401, 404, 409)),
    "POST /api/police/incidents": op("A non-police incident 110 transfers (signed request, no session)",
                                     "110 (signature)", ANY_OBJ, body=ANY_OBJ, errors=(400, 401, 409)),
    "POST /api/crews/{}/shift": op("Put a crew on or off shift", "dispatcher, supervisor", ANY_OBJ,
                                   body="ShiftUpdate", errors=(400, 401, 403, 404)),
})
