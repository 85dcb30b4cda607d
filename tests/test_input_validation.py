"""Input validation at the boundary (issue #21, "nothing is half-saved"): the one coordinate rule
(`command.coordinates`) as a table; every entry point that takes a point refuses a bad or
out-of-area one with a 400 and a stable code and writes nothing; the ticket store's save script
checks everything that can fail before its first write; the track API and static files answer
malformed input with a 400, never a 500."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from store.tickets import TicketStore
from store.ticket_records import TicketRecord, TicketWrite
from command.coordinates import (
    GEO_LAT_LIMIT, CoordinateError, OutsideServiceArea, ServiceArea, check_optional_point, check_point, parse_point,
)
from command.ticket_fields import new_ticket
from command.ticket_model import SYSTEM_ACTOR
from services.tickets import TicketManager, service_area_of
from tests.apps import serve_tickets
from tests.conftest import T0, Clock

AREA = ServiceArea(119.5, 36.15, 120.0, 36.6)

# ------------------------------------------------------------------------------ tier 1: the rule


@pytest.mark.parametrize("lon, lat, area, expected", [
    (119.72, 36.36, None, (119.72, 36.36)),
    (119, 36, None, (119.0, 36.0)),                        # ints are numbers
    (180, GEO_LAT_LIMIT, None, (180.0, GEO_LAT_LIMIT)),   # the edges
    (-180, -GEO_LAT_LIMIT, None, (-180.0, -GEO_LAT_LIMIT)),
    (119.72, 36.36, AREA, (119.72, 36.36)),
    (119.5, 36.6, AREA, (119.5, 36.6)),                    # the area's edges are in
    (119.72, 86, None, "bad_coordinates"),                 # GEO refuses it: the 500
    (119.72, 89, None, "bad_coordinates"),
    (119.72, 90.5, None, "bad_coordinates"),
    (180.01, 36, None, "bad_coordinates"),
    (math.nan, 36, None, "bad_coordinates"),
    (119, math.inf, None, "bad_coordinates"),
    (-math.inf, 36, None, "bad_coordinates"),
    ("119.7", 36.3, None, "bad_coordinates"),
    (119.7, "36.3", None, "bad_coordinates"),
    (True, 36.3, None, "bad_coordinates"),
    ([119.7], 36.3, None, "bad_coordinates"),
    (10 ** 400, 36.3, None, "bad_coordinates"),
    (None, 36.3, None, "bad_coordinates"),
    (119.7, None, None, "bad_coordinates"),
    (121.0, 36.36, AREA, "outside_service_area"),
    (119.72, 36.7, AREA, "outside_service_area"),
    (119.72, 86, AREA, "bad_coordinates"),                 # out of range says so, not "outside"
])
def test_check_point(lon, lat, area, expected):
    if isinstance(expected, str):
        with pytest.raises(CoordinateError) as caught:
            check_point(lon, lat, area)
        assert caught.value.code == expected
        assert isinstance(caught.value, OutsideServiceArea) == (expected == "outside_service_area")
    else:
        assert check_point(lon, lat, area) == expected


def test_an_optional_point_may_be_absent_but_not_half_given():
    assert check_optional_point(None, None, AREA) is None
    with pytest.raises(CoordinateError):
        check_optional_point(119.7, None, AREA)


@pytest.mark.parametrize("raw_lon, raw_lat, required, expected", [
    ("119.72", "36.36", True, (119.72, 36.36)),
    (" 119.72 ", "36.36", True, (119.72, 36.36)),
    (None, None, False, None),
    ("", "", False, None),
    (None, None, True, "bad_coordinates"),
    ("nan", "36.36", True, "bad_coordinates"),
    ("119.72", "inf", True, "bad_coordinates"),
    ("119.72", "-Infinity", True, "bad_coordinates"),
    ("1e999", "36.36", True, "bad_coordinates"),
    ("abc", "36.36", True, "bad_coordinates"),
    ("119.72", "\x00", True, "bad_coordinates"),
    ("119.72", "", False, "bad_coordinates"),
    ("119.72", "86", True, "bad_coordinates"),
    ("121", "36.36", True, "outside_service_area"),
])
def test_parse_point(raw_lon, raw_lat, required, expected):
    if isinstance(expected, str):
        with pytest.raises(CoordinateError) as caught:
            parse_point(raw_lon, raw_lat, AREA, required=required)
        assert caught.value.code == expected
    else:
        assert parse_point(raw_lon, raw_lat, AREA, required=required) == expected


@pytest.mark.parametrize("text, expected", [
    ("", None),
    ("  ", None),
    ("119.5,36.15,120,36.6", AREA),
    ("119.5, 36.15, 120, 36.6", AREA),
])
def test_service_area_parses(text, expected):
    assert ServiceArea.parse(text) == expected


@pytest.mark.parametrize("text", ["119.5,36.15,120", "120,36.15,119.5,36.6", "119.5,36.6,120,36.15",
                                  "a,b,c,d", "nan,36,120,37", "119,36,181,37", "119,36,120,89"])
def test_a_bad_service_area_is_refused(text):
    with pytest.raises(ValueError):
        ServiceArea.parse(text)


def test_around_grows_the_extent_and_stays_in_range():
    assert ServiceArea.around((119.7, 36.35, 119.8, 36.4), 0.2) == ServiceArea(119.5, 36.15, 120.0, 36.6)
    assert ServiceArea.around((179.9, 84.9, 180, 85), 1.0) == ServiceArea(178.9, 83.9, 180.0, GEO_LAT_LIMIT)


def test_the_service_area_setting_is_validated(tmp_path):
    from config.settings import SettingsError
    from tests.conftest import test_settings

    assert test_settings(tmp_path).SERVICE_AREA == ""
    assert test_settings(tmp_path, SERVICE_AREA="119.5,36.15,120,36.6").SERVICE_AREA == "119.5,36.15,120,36.6"
    from config.settings import load
    with pytest.raises(SettingsError):
        load({"CONFIG_FILE": str(tmp_path / "absent.toml"), "SERVICE_AREA": "119,36,118,37"})


# ------------------------------------------------------------------------------ tier 2: the API


@pytest.fixture
async def vapi(tmp_path, redis_url, database_url, city):  # noqa: F811
    """The ticket API over the test city, with the service area derived from the city."""
    server, client = await serve_tickets(tmp_path, redis_url, database_url, city, Clock(T0))
    client.manager.service_area = service_area_of(city)
    client.server = server
    for user in ("agent", "dispatcher", "admin"):
        await client.token(user)  # logged in before any key set is taken
    yield client
    server.stop()
    await server.close_all_connections()
    await client.store.close()


async def keys(store) -> dict[str, str]:
    """Every Redis key and its type, and the rows of every ticket table (a write of any kind shows)."""
    out = {k: await store.redis.type(k) for k in await store.redis.keys("*")}
    for table in ("tickets", "ticket_events", "ticket_stages", "day_sequences", "incidents", "alarm_tickets",
                  "ticket_changes"):
        out[f"table {table}"] = str(await store.db.fetch(f"SELECT * FROM {table}"))
    return out


async def test_the_default_service_area_is_the_city_extent_with_a_margin(vapi, city):  # noqa: F811
    bounds = city.districts.total_bounds
    assert service_area_of(city) == ServiceArea.around(bounds) == ServiceArea(119.5, 36.15, 120.0, 36.6)
    assert service_area_of(city, "119,36,121,37") == ServiceArea(119, 36, 121, 37)
    assert service_area_of(None) is None
    store = TicketStore(vapi.store.db, vapi.store.redis)
    assert TicketManager.for_city(store, city).service_area == ServiceArea.around(bounds)
    assert TicketManager.for_city(store, city, service_area="119,36,121,37").service_area == \
        ServiceArea(119, 36, 121, 37)


@pytest.mark.parametrize("point, code", [
    ({"lat": 86}, "bad_coordinates"),                     # the issue: a 500 and a half-saved ticket
    ({"lat": 89}, "bad_coordinates"),
    ({"lat": 91}, "bad_coordinates"),
    ({"lon": "119.72"}, "bad_coordinates"),
    ({"lon": True}, "bad_coordinates"),
    ({"lon": None}, "bad_coordinates"),                   # half a point
    ({"lon": 121.0}, "outside_service_area"),
    ({"lat": 30.0, "lon": 110.0}, "outside_service_area"),
])
async def test_a_ticket_with_a_bad_point_is_refused_and_nothing_is_written(vapi, point, code):
    before = await keys(vapi.store)
    status, body = await vapi.create(**point)
    assert status == 400, body
    assert body["error"]["code"] == code
    assert await keys(vapi.store) == before
    assert await vapi.manager.store.open_count() == 0


@pytest.mark.parametrize("raw", [b'{"lat": NaN}', b'{"lat": Infinity}', b'{"lat": 1e999}'])
async def test_non_finite_json_numbers_are_refused(vapi, raw):
    body = {"channel": "phone", "category": "power", "type": "repair", "description": "停电",
            "caller_phone": "13812341234", "lon": 119.72}
    text = json.dumps(body)[:-1].encode() + b", " + raw[1:]  # the JSON with the raw member appended
    before = await keys(vapi.store)
    status, reply = await vapi.call("POST", "/api/tickets", "agent", text)
    assert status == 400 and reply["error"]["code"] in ("bad_json", "bad_coordinates")
    assert await keys(vapi.store) == before


async def test_a_good_point_still_makes_a_ticket(vapi):
    status, body = await vapi.create()
    assert status == 201 and body["ticket"]["district"] == "D2"


async def _store_record(lat: float, number: str = "GD20261122-0001"):
    ticket, created = new_ticket({"number": number, "channel": "phone", "category": "power", "type": "repair",
                                  "description": "停电", "caller_phone": "13812341234", "lon": 119.72,
                                  "lat": lat}, now=T0, actor=SYSTEM_ACTOR)
    return TicketRecord(ticket, {"queue": []}), created


@pytest.mark.parametrize("lat", [86.0, -89.9, 90.0])
async def test_the_save_script_writes_nothing_when_the_geo_pair_is_bad(vapi, lat):
    """Input that slipped past the boundary (a direct store call) still leaves no key behind."""
    store = vapi.manager.store
    record, created = await _store_record(lat)
    before = await keys(vapi.store)
    with pytest.raises(CoordinateError) as caught:
        await store.save([TicketWrite(record, [created])])
    assert caught.value.code == "bad_coordinates"
    assert await keys(vapi.store) == before


async def test_the_save_script_leaves_an_update_untouched_when_the_geo_pair_is_bad(vapi):
    store = vapi.manager.store
    record, created = await _store_record(36.36)
    await store.save([TicketWrite(record, [created])])
    before = await keys(vapi.store)
    moved = TicketRecord(dataclasses.replace(record.ticket, lat=86.0, version=record.ticket.version + 1), record.meta)
    with pytest.raises(CoordinateError):
        await store.save([TicketWrite(moved, [created], record)])
    assert await keys(vapi.store) == before
    near = (await store.near_and_by_phone(119.72, 36.36, 10, None)).near
    assert [n for n, _ in near] == [record.ticket.number]


@pytest.mark.parametrize("query, code", [
    ("lon=nan&lat=36.36", "bad_coordinates"),
    ("lon=119.72&lat=inf", "bad_coordinates"),
    ("lon=119.72&lat=86", "bad_coordinates"),
    ("lon=abc&lat=36.36", "bad_coordinates"),
    ("lon=119.72", "bad_coordinates"),
    ("lon=121&lat=36.36", "outside_service_area"),
])
async def test_duplicates_refuse_a_bad_point(vapi, query, code):
    status, body = await vapi.call("GET", f"/api/tickets/duplicates?{query}&category=power", "agent")
    assert status == 400 and body["error"]["code"] == code, body


@pytest.mark.parametrize("query, code", [
    ("lon=nan&lat=36.36", "bad_coordinates"),
    ("lon=119.72&lat=91", "bad_coordinates"),
    ("lat=36.36", "bad_coordinates"),
    ("", "bad_coordinates"),
    ("lon=121&lat=36.36", "outside_service_area"),
])
async def test_address_reverse_refuses_a_bad_point(vapi, query, code):
    status, body = await vapi.call("GET", f"/api/address/reverse?{query}", "agent")
    assert status == 400 and body["error"]["code"] == code, body


@pytest.mark.parametrize("query", [
    "since=nan", "since=inf", "until=-inf", "since=NaN&until=1", "since=abc", "since=1e999",
    "since=9999999999999", "since=-5", "since=10000-01-01T00:00:00",
    "since=2026-11-22T03:00:00Z&until=2026-11-22T02:00:00Z",   # since after until
    "since=2000-01-01T00:00:00Z&until=2026-11-22T02:00:00Z",   # an absurd range
])
async def test_track_refuses_bad_times(vapi, query):
    status, body = await vapi.call("GET", f"/api/vehicles/V01/track?{query}", "dispatcher")
    assert status == 400 and body["error"]["code"] == "bad_time", (query, body)


async def test_track_with_good_times_answers(vapi):
    status, body = await vapi.call("GET", "/api/vehicles/V01/track?since=2026-11-22T01:00:00Z"
                                          "&until=2026-11-22T02:00:00Z", "dispatcher")
    assert status == 200 and body["count"] == 0


@pytest.mark.parametrize("path", ["/static/..%00/x", "/static/%00", "/static/a%00b.js", "/static/..%2f..%2fREADME.md",
                                  "/static/%2e%2e/%2e%2e/README.md", "/static/..\\..\\README.md"])
async def test_malformed_static_paths_are_refused_without_a_traceback(vapi, path):
    import tornado.httpclient

    response = await vapi.http.fetch(vapi.base + path, raise_error=False)
    assert response.code in (400, 403, 404), (path, response.code)
    assert b"Traceback" not in (response.body or b"") and b"## Settings" not in (response.body or b"")


async def test_a_good_static_file_is_still_served(vapi):
    response = await vapi.http.fetch(vapi.base + "/static/" + _some_static_file(), raise_error=False)
    assert response.code == 200


def _some_static_file() -> str:
    from pathlib import Path

    import web

    root = Path(web.__file__).parent / "static"
    return next(str(p.relative_to(root)) for p in sorted(root.rglob("*.js")))


# ------------------------------------------------------------------------------ every GET route

GARBAGE = ["nan", "-inf", "-1", "abc", "1e999", "\x00", "9" * 40]
ARGS = ["limit", "offset", "since", "until", "before", "lon", "lat", "max_m", "radius_m", "date", "period",
        "window_days", "history", "cell_m", "metric", "group", "key", "state", "color", "sort", "format",
        "category", "district", "unit", "area", "kind", "all", "q", "level", "stored", "phone", "target"]
SAMPLES = ["GD20261122-0001", "INC20261122-0001", "V01", "C01", "power", "L0002", "x", "0" * 32 + ".jpg"]


def _get_routes():
    import re

    import tornado.web

    from web import app as webapp

    out = []
    for module in webapp.HANDLER_MODULES:
        for pattern, handler, *_ in module.routes:
            if not pattern.startswith("/api") or getattr(handler, "get", None) is tornado.web.RequestHandler.get:
                continue
            path = _fill(pattern, re)
            if path is not None:
                out.append(path)
    return out


def _fill(pattern: str, re) -> str | None:
    """The route with each group replaced by a sample value its regex takes (None: no sample fits)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern[i] == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(pattern[j], 0)
                j += 1
            group = pattern[i:j]
            sample = next((s for s in SAMPLES if re.fullmatch(group, s)), None)
            if sample is None:
                return None
            out += sample
            i = j
        else:
            out += pattern[i]
            i += 1
    return out.replace("\\", "")


@pytest.fixture
async def full_api(vapi, tmp_path):
    """`vapi` with the dispatch manager, the 110 link and the KPI service in place, as in `web`."""
    from services.kpi_service import KpiService
    from services.worker import build
    from tests.conftest import test_settings

    settings = vapi.server.request_callback.settings
    parts = await build(vapi.store, test_settings(tmp_path), None, tickets=vapi.manager, clock=vapi.clock)
    kpi = KpiService(vapi.store.db, vapi.store.redis, policy=vapi.manager.policy)
    await kpi.start()
    settings["services"] = dataclasses.replace(settings["services"], dispatch=parts.dispatch, police=parts.police,
                                               kpi=kpi)
    yield vapi
    await kpi.stop()


async def test_no_get_route_answers_garbage_query_values_with_a_500(full_api, monkeypatch):
    """Each /api GET route, each query argument any handler reads, one at a time, with each
    garbage value. Which arguments a route reads is recorded on the first value (every read goes
    through RequestHandler._get_arguments): whether a handler reads an argument is settled before
    it sees the value, so the other values are sent only where they are read."""
    from urllib.parse import urlencode

    import tornado.web

    read: set[tuple[str, str]] = set()
    original = tornado.web.RequestHandler._get_arguments

    def recording(handler, name, source, strip=True):
        read.add((handler.request.path, name))
        return original(handler, name, source, strip)

    monkeypatch.setattr(tornado.web.RequestHandler, "_get_arguments", recording)
    await full_api.create()
    headers = {"Authorization": f"Bearer {await full_api.token('admin')}"}
    failures = []
    for value in GARBAGE:
        for path in _get_routes():
            for name in ARGS:
                if value != GARBAGE[0] and (path, name) not in read:
                    continue
                response = await full_api.http.fetch(f"{full_api.base}{path}?{urlencode({name: value})}",
                                                     headers=headers, raise_error=False)
                if response.code >= 500 and b'"addresses_unavailable"' not in response.body:  # the test city has none
                    failures.append((path, name, value, response.code, response.body[:200]))
    assert len({name for _, name in read} & set(ARGS)) >= 20  # the recording saw the handlers read
    assert failures == [], "\n".join(map(str, failures))


async def test_refused_input_is_counted_per_handler_and_status(vapi):
    counted = {"input_rejected": vapi.server.request_callback.settings["services"].refused}
    await vapi.create(lat=86)
    await vapi.create(lon=121.0)
    await vapi.call("GET", "/api/tickets/duplicates?lon=nan&lat=36.36", "agent")
    await vapi.call("GET", "/api/vehicles/V01/track?since=nan", "dispatcher")
    await vapi.create()  # a good one is not counted
    assert counted["input_rejected"]["TicketCollection:400"] == 2
    assert counted["input_rejected"]["TicketDuplicates:400"] == 1
    assert counted["input_rejected"]["VehicleTrack:400"] == 1
    assert sum(counted["input_rejected"].values()) == 4
