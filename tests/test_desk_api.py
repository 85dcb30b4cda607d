"""The desk and field APIs in-process on loopback with real Redis: address search with noisy input
and reverse geocoding, the crew's assignments with GCJ-02 navigation targets, site photos (size and
type checks, safe storage, crew isolation), and the desk/field pages by role."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import geopandas as gpd
import orjson
import pytest
import tornado.httpclient
import tornado.httpserver
from shapely.geometry import Point

from config.city import CityLayers
from servers.embedded import free_port
from store.live import FixRecord, Store
from gis.crs import distance_m
from services.tickets import TicketManager
from tests.apps import ticket_stores
from tests.conftest import PASSWORD, ApiClient
from web import app as webapp
from field.photos import MAX_PHOTO_BYTES, PhotoRejected, photo_kind

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)

# Three roads 0.001° of latitude apart; house n sits at lon = 119.75 + n * 0.0001 (about 9 m a number).
ROADS = {"人民路": (36.380, [1, 3, 5, 101, 103, 105, 201]), "光明街": (36.381, [2, 4, 8, 10]),
         "凤凰大街": (36.382, [6, 8, 33, 35])}
POIS = [("P1", "人民医院", "高密市人民路99号", 119.7600, 36.3805), ("P2", "幸福小区", "高密市光明街12号", 119.7612, 36.3812)]
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(100)


def _city() -> CityLayers:
    rows = [{"addr_id": f"A{i:04d}", "address": f"高密市{road}{n}号", "kind": "address", "name": None,
             "g": Point(119.75 + n * 0.0001, lat)}
            for i, (road, lat, n) in enumerate((r, lat, n) for r, (lat, ns) in ROADS.items() for n in ns)]
    rows += [{"addr_id": i, "address": a, "kind": "poi", "name": name, "g": Point(lon, lat)}
             for i, name, a, lon, lat in POIS]
    addresses = gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "g"} for r in rows],
                                 geometry=[r["g"] for r in rows], crs="EPSG:4326")
    crews = gpd.GeoDataFrame([{"vehicle_id": "V01", "crew_id": "C01"}, {"vehicle_id": "V02", "crew_id": "C02"}],
                             geometry=[Point(119.74, 36.37), Point(119.74, 36.37)], crs="EPSG:4326")
    return CityLayers(SimpleNamespace(addresses=addresses, crews=crews))


class Api(ApiClient):
    """The in-process app and a client that speaks bearer tokens, JSON and raw bodies."""

    def __init__(self, base: str, store: Store, data_dir) -> None:
        super().__init__(base, PASSWORD)
        self.base, self.store, self.data_dir = base, store, data_dir

    async def call(self, method: str, path: str, user: str | None = None, body=None, headers=None):
        hdrs = dict(headers or {})
        hdrs.update(await self.auth(user))
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + path, method=method, headers=hdrs, body=data, follow_redirects=False), raise_error=False)
        kind = response.headers.get("Content-Type", "")
        return response.code, (orjson.loads(response.body) if kind.startswith("application/json") and response.body
                               else response.body)

    async def cookie(self, user: str) -> str:
        """The session cookie of a form login (pages take cookies, not bearer tokens)."""
        page = await self.http.fetch(self.base + "/login")
        xsrf = page.headers["Set-Cookie"].split("_xsrf=", 1)[1].split(";", 1)[0]
        body = f"username={user}&password={PASSWORD}&_xsrf={xsrf}&next=/"
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + "/login", method="POST", body=body, headers={"Cookie": f"_xsrf={xsrf}"},
            follow_redirects=False), raise_error=False)
        session = [c for c in response.headers.get_list("Set-Cookie") if c.startswith("session=")][0]
        return session.split(";", 1)[0] + f"; _xsrf={xsrf}"

    async def dispatched(self, crew_id: str = "C01", **fields) -> dict:
        """A ticket created by the agent and dispatched to a crew."""
        body = {"channel": "phone", "category": "power", "type": "repair", "description": "停电",
                "caller_phone": "13812341234", "lon": 119.7603, "lat": 36.380, "address": "高密市人民路103号",
                **fields}
        code, created = await self.call("POST", "/api/tickets", "agent", {**body, "link": False})
        assert code == 201, created
        ticket = created["ticket"]
        code, out = await self.call("POST", f"/api/tickets/{ticket['number']}/actions/dispatch", "dispatcher",
                                    {"expected_version": ticket["version"], "crew_id": crew_id})
        assert code == 200, out
        return out["ticket"]


@pytest.fixture
async def api(tmp_path, redis_url, database_url):
    settings, store, tickets = await ticket_stores(tmp_path, redis_url, database_url)
    manager = TicketManager(tickets, None, clock=lambda: T0)
    services = webapp.build_services(settings=settings, store=store, city=_city(), tickets=manager)
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="test-secret"))
    port = free_port()
    server.listen(port, "127.0.0.1")
    yield Api(f"http://127.0.0.1:{port}", store, settings.data_dir)
    server.stop()
    await store.close()


@pytest.mark.parametrize("query, best", [
    ("人民路103号", "高密市人民路103号"),            # exact
    ("高密市人民路 一百零三号", "高密市人民路103号"),   # prefix, space, Chinese numeral
    ("人民璐103号", "高密市人民路103号"),              # one wrong character
    ("人民路104号", "高密市人民路103号"),              # a number that does not exist: the nearest (103 before 105)
    ("光明街８号", "高密市光明街8号"),                 # full-width digit
    ("幸福小区", "幸福小区（高密市光明街12号）"),        # a POI by its name, shown with its address
])
async def test_address_search_ranks_noisy_input(api, query, best):
    code, body = await api.call("GET", "/api/address/search?q=" + tornado.escape.url_escape(query), "agent")
    assert code == 200, body
    labels = [c["label"] for c in body["candidates"]]
    assert labels[0] == best
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert len(labels) == len(set(c["id"] for c in body["candidates"]))


async def test_address_search_candidate_has_coordinates_and_limits(api):
    code, body = await api.call("GET", "/api/address/search?q=" + tornado.escape.url_escape("人民路103号") + "&limit=3",
                                "agent")
    top = body["candidates"][0]
    assert (top["lon"], top["lat"], top["kind"], top["score"]) == (pytest.approx(119.7603), 36.38, "address", 100.0)
    assert len(body["candidates"]) == 3
    code, body = await api.call("GET", "/api/address/search?q=", "agent")
    assert (code, body["candidates"]) == (200, [])
    code, body = await api.call("GET", "/api/address/search?q=x&limit=99", "agent")
    assert (code, body["error"]["code"]) == (400, "bad_request")


@pytest.mark.parametrize("lon, lat, first, within", [
    (119.7603, 36.3801, "高密市人民路103号", 12),       # ~11 m north of No. 103
    (119.7508, 36.3820, "高密市凤凰大街8号", 2),        # on No. 8
    (119.7600, 36.3805, "人民医院（高密市人民路99号）", 1),  # on the hospital
])
async def test_reverse_geocoding_nearest_first(api, lon, lat, first, within):
    code, body = await api.call("GET", f"/api/address/reverse?lon={lon}&lat={lat}", "agent")
    assert code == 200, body
    assert body["candidates"][0]["label"] == first
    assert body["candidates"][0]["distance_m"] <= within
    distances = [c["distance_m"] for c in body["candidates"]]
    assert distances == sorted(distances)


@pytest.mark.parametrize("path, code", [
    ("/api/address/reverse?lon=119.0&lat=36.0", 200),        # far from everything: no candidates
    ("/api/address/reverse?lon=abc&lat=36.0", 400),
    ("/api/address/reverse?lat=36.0", 400),
    ("/api/address/reverse?lon=200&lat=36.0", 400),
    ("/api/address/reverse?lon=119.7&lat=36.38&max_m=5000", 400),
])
async def test_reverse_geocoding_checks_its_input(api, path, code):
    got, body = await api.call("GET", path, "agent")
    assert got == code, body
    if code == 200:
        assert body["candidates"] == []


@pytest.mark.parametrize("user, path, code", [
    (None, "/api/address/search?q=人民路", 401),
    ("crew", "/api/address/search?q=人民路", 403),
    ("dispatcher", "/api/address/search?q=人民路", 200),
    ("agent", "/api/field/assignments", 403),
    ("dispatcher", "/api/field/assignments", 403),
    (None, "/api/field/assignments", 401),
])
async def test_roles(api, user, path, code):
    got, body = await api.call("GET", path.replace("人民路", "%E4%BA%BA%E6%B0%91%E8%B7%AF"), user)
    assert got == code, body


@pytest.mark.parametrize("user, path, code, location", [
    (None, "/desk", 302, "/login?next=%2Fdesk"),
    (None, "/field", 302, "/login?next=%2Ffield"),
    ("agent", "/", 302, "/desk"),
    ("crew", "/", 302, "/field"),
    ("dispatcher", "/", 302, "/console"),
    ("agent", "/desk", 200, None),
    ("supervisor", "/desk", 200, None),
    ("crew", "/field", 200, None),
    ("crew", "/desk", 403, None),
    ("agent", "/field", 403, None),
])
async def test_pages_by_role(api, user, path, code, location):
    headers = {"Cookie": await api.cookie(user)} if user else {}
    response = await api.http.fetch(tornado.httpclient.HTTPRequest(api.base + path, headers=headers,
                                                                    follow_redirects=False), raise_error=False)
    assert response.code == code
    assert response.headers.get("Location") == location
    if code == 200:
        assert b'data-zone="Asia/Shanghai"' in response.body and b"i18n.js" in response.body


async def test_field_assignments_carry_gcj02_navigation(api):
    ticket = await api.dispatched("C01")
    await api.dispatched("C02", lon=119.7010, lat=36.381)
    now = time.time()
    await api.store.write_fixes([FixRecord("V01", now, 36.37, 119.74, 0.0, 0.0, None, 1, "A", 9, 0.8, "GN", True, True)],
                                {}, seen={"V01": now}, retention_s=3600)
    code, body = await api.call("GET", "/api/field/assignments", "crew")
    assert code == 200, body
    assert body["crew_id"] == "C01"
    assert [a["number"] for a in body["assignments"]] == [ticket["number"]]   # not crew C02's ticket
    mine = body["assignments"][0]
    assert mine["caller_phone"] == "138****1234"
    nav = mine["nav"]
    assert nav["wgs84"] == [119.7603, 36.380]
    shift = distance_m(119.7603, 36.380, *nav["gcj02"])
    assert 200 < shift < 800                    # GCJ-02 is offset by a few hundred metres in China
    assert nav["gcj02"][0] > 119.7603           # here to the east (and north)
    assert nav["amap_uri"].startswith(f"https://uri.amap.com/marker?position={nav['gcj02'][0]:.6f},{nav['gcj02'][1]:.6f}")
    assert "coordinate=gaode" in nav["amap_uri"]
    assert body["vehicle"]["id"] == "V01" and body["vehicle"]["fix"]["lat"] == 36.37
    assert mine["distance_m"] == pytest.approx(distance_m(119.74, 36.37, 119.7603, 36.380), abs=0.1)


async def test_field_assignments_put_the_current_one_first(api):
    first = await api.dispatched("C01")
    second = await api.dispatched("C01", lon=119.7010, lat=36.381)
    code, out = await api.call("POST", f"/api/tickets/{second['number']}/actions/accept", "crew",
                               {"expected_version": second["version"]})
    assert code == 200, out
    code, body = await api.call("GET", "/api/field/assignments", "crew")
    assert [(a["number"], a["state"]) for a in body["assignments"]] == [(second["number"], "accepted"),
                                                                        (first["number"], "dispatched")]
    assert body["vehicle"] == {"id": "V01", "state": "offline", "fix": None}  # no fix yet


@pytest.mark.parametrize("data, content_type, ext", [
    (JPEG, "image/jpeg", "jpg"), (PNG, "image/png", "png"), (WEBP, "image/webp", "webp"),
    (PNG, "image/jpeg", "png"),   # the bytes decide, not the declared type
])
async def test_photo_upload_stores_a_safe_name_and_notes_the_ticket(api, data, content_type, ext):
    ticket = await api.dispatched("C01")
    number = ticket["number"]
    code, body = await api.call("POST", f"/api/tickets/{number}/photos", "crew", data,
                                headers={"Content-Type": content_type})
    assert code == 201, body
    photo_id = body["id"]
    assert photo_id.endswith("." + ext) and len(photo_id) == 32 + 1 + len(ext)
    assert body["bytes"] == len(data) and body["ticket"]["version"] == ticket["version"] + 1
    stored = api.data_dir / "photos" / number / photo_id
    assert stored.read_bytes() == data
    assert list(stored.parent.iterdir()) == [stored]            # no temporary file left behind
    code, timeline = await api.call("GET", f"/api/tickets/{number}/timeline", "dispatcher")
    notes = [e for e in timeline["events"] if e["action"] == "note"]
    assert notes[-1]["data"]["data"] == {"photo": photo_id, "bytes": len(data)} and notes[-1]["role"] == "crew"
    for user in ("crew", "dispatcher", "agent"):
        code, got = await api.call("GET", body["url"], user)
        assert (code, got) == (200, data)
    code, got = await api.call("GET", body["url"], "crew2")     # another crew: the ticket is absent
    assert code == 404


async def test_photo_upload_multipart_ignores_the_client_file_name(api):
    ticket = await api.dispatched("C01")
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"../../etc/passwd.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + JPEG + f"\r\n--{boundary}--\r\n".encode()
    code, out = await api.call("POST", f"/api/tickets/{ticket['number']}/photos", "crew", body,
                               headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 201, out
    assert "passwd" not in out["id"] and out["id"].endswith(".jpg")
    assert [p.name for p in (api.data_dir / "photos" / ticket["number"]).iterdir()] == [out["id"]]


@pytest.mark.parametrize("user, data, code, error", [
    ("crew", b"GIF89a" + bytes(100), 415, "photo_type"),
    ("crew", b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "photo_type"),
    ("crew", b"\xff\xd8\xff" + bytes(MAX_PHOTO_BYTES), 413, "photo_too_large"),
    ("crew", b"", 400, "validation_error"),
    ("crew2", JPEG, 404, "ticket_not_found"),        # not this crew's ticket
    ("agent", JPEG, 403, "forbidden"),
    (None, JPEG, 403, "http_403"),             # no token: the XSRF check refuses
])
async def test_photo_upload_rejections_store_nothing(api, user, data, code, error):
    ticket = await api.dispatched("C01")
    got, body = await api.call("POST", f"/api/tickets/{ticket['number']}/photos", user, data,
                               headers={"Content-Type": "application/octet-stream"})
    assert (got, body["error"]["code"]) == (code, error)
    assert not (api.data_dir / "photos" / ticket["number"]).exists() or \
        list((api.data_dir / "photos" / ticket["number"]).iterdir()) == []
    code2, fresh = await api.call("GET", f"/api/tickets/{ticket['number']}", "dispatcher")
    assert fresh["version"] == ticket["version"]


@pytest.mark.parametrize("path, code", [
    ("/api/tickets/{n}/photos/0123456789abcdef0123456789abcdef.jpg", 404),
    ("/api/tickets/{n}/photos/..%2F..%2Fsecret.jpg", 404),
    ("/api/tickets/{n}/photos/0123456789abcdef0123456789abcdef.exe", 404),
])
async def test_photo_download_only_known_safe_names(api, path, code):
    ticket = await api.dispatched("C01")
    got, body = await api.call("GET", path.format(n=ticket["number"]), "crew")
    assert got == code and isinstance(body, dict) and "error" in body


@pytest.mark.parametrize("data, expected", [
    (JPEG, "jpg"), (PNG, "png"), (WEBP, "webp"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt ", PhotoRejected), (b"\xff\xd8", PhotoRejected), (b"%PDF-1.7", PhotoRejected),
])
async def test_photo_kind_by_magic_bytes(data, expected):
    if expected is PhotoRejected:
        with pytest.raises(PhotoRejected):
            photo_kind(data)
    else:
        assert photo_kind(data) == expected
