"""The web service in-process on loopback, with real Redis: login, roles, errors, health, live feed."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import tornado.httpclient
import tornado.websocket

from store.live import FixRecord
from web.live import LiveFeed
from tests.conftest import PASSWORD, close_websocket

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_health_reports_redis_broker_and_services(web):
    response = await web.call("GET", "/healthz")
    body = orjson.loads(response.body)
    assert response.code == 503  # the ingest and dispatch services the center needs are not running
    assert body["ok"] is False and body["down"] == ["ingest", "dispatch"]
    assert body["redis"]["ok"] is True and body["broker"]["ok"] is True
    assert body["services"]["web"]["ok"] is True
    assert body["services"]["ingest"] == {"ok": False}  # not running in this test
    assert body["status"] == "degraded"


@pytest.mark.parametrize("path", ["/api/vehicles", "/api/vehicles/V1", "/api/vehicles/V1/track", "/api/me",
                                  "/api/layers"])
async def test_api_requires_login(web, path):
    response = await web.call("GET", path)
    assert response.code == 401
    assert orjson.loads(response.body)["error"]["code"] == "unauthenticated"


async def test_pages_redirect_to_login(web):
    response = await web.call("GET", "/console")
    assert response.code == 302 and response.headers["Location"].startswith("/login?next=")


async def test_login_token_and_roles(web):
    token = await web.login("dispatcher")
    me = orjson.loads((await web.call("GET", "/api/me", token=token)).body)
    assert me["role"] == "dispatcher"
    crew = await web.login("crew")
    assert (await web.call("GET", "/api/vehicles/V1/track", token=crew)).code == 403
    bad = await web.call("POST", "/api/login", body={"username": "dispatcher", "password": "wrong"})
    assert bad.code == 401 and orjson.loads(bad.body)["error"]["code"] == "bad_credentials"


async def test_login_is_throttled_after_repeated_failures(web, monkeypatch):
    from web.handlers import auth

    monkeypatch.setattr(auth, "clock", lambda: 1_800_000_000.0)  # the 1 s wait after the 5th failure holds
    for _ in range(5):
        assert (await web.call("POST", "/api/login", body={"username": "agent", "password": "x"})).code == 401
    response = await web.call("POST", "/api/login", body={"username": "agent", "password": PASSWORD})
    assert response.code == 429 and orjson.loads(response.body)["error"]["code"] == "throttled"


@pytest.mark.parametrize("body, code", [(b"{not json", "bad_json"), (b"[1,2]", "bad_json"),
                                        (b'{"username": 5, "password": "x"}', "bad_request")])
async def test_bad_request_bodies_get_one_error_shape(web, body, code):
    response = await web.call("POST", "/api/login", body=body)
    assert response.code == 400
    assert orjson.loads(response.body) == {"error": {"code": code, "message": orjson.loads(response.body)["error"]["message"]}}


async def test_unknown_path_is_a_json_404(web):
    response = await web.call("GET", "/api/nothing-here")
    assert response.code == 404 and orjson.loads(response.body)["error"]["code"] == "not_found"


async def test_cookie_login_form_is_xsrf_protected(web):
    response = await web.call("POST", "/login", body="username=dispatcher&password=" + PASSWORD)
    assert response.code == 403  # no XSRF token
    page = await web.call("GET", "/login")
    cookie = page.headers["Set-Cookie"].split(";")[0]
    token = cookie.split("=", 1)[1]
    response = await web.call("POST", "/login", body=f"username=dispatcher&password={PASSWORD}&_xsrf={token}",
                              headers={"Cookie": cookie})
    assert response.code == 302
    set_cookie = "; ".join(response.headers.get_list("Set-Cookie"))
    assert "session=" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie


async def test_vehicle_api_and_track_in_wgs84(web):
    t0 = time.time() - 10
    fixes = [FixRecord("V9", t0 + i, 36.38 + i * 1e-4, 119.75, 30.0, 10.0, 40.0, 1, "A", 9, 0.8, "GN", True, True)
             for i in range(3)]
    await web.store.write_fixes(fixes, {"V9": {"fix_ok": 3}}, seen={"V9": t0 + 3}, retention_s=86400)
    token = await web.login("dispatcher")
    listing = orjson.loads((await web.call("GET", "/api/vehicles", token=token)).body)
    assert [v["id"] for v in listing["vehicles"]] == ["V9"]
    detail = orjson.loads((await web.call("GET", "/api/vehicles/V9", token=token)).body)
    assert detail["fix"]["lat"] == pytest.approx(36.3802) and detail["counters"] == {"fix_ok": 3}
    assert detail["fix"]["time"].endswith("Z")
    track = orjson.loads((await web.call("GET", f"/api/vehicles/V9/track?since={t0 - 1}&until={t0 + 10}",
                                         token=token)).body)
    assert track["count"] == 3 and [round(f["lat"], 4) for f in track["fixes"]] == [36.38, 36.3801, 36.3802]
    bad = await web.call("GET", "/api/vehicles/V9/track?since=yesterday", token=token)
    assert bad.code == 400 and orjson.loads(bad.body)["error"]["code"] == "bad_time"
    assert (await web.call("GET", "/api/vehicles/NOPE", token=token)).code == 404


async def test_websocket_snapshot_then_ordered_batched_deltas_and_resume(web):
    token = await web.login("dispatcher")
    url = web.base.replace("http", "ws") + "/ws/live"
    request = tornado.httpclient.HTTPRequest(url, headers={"Authorization": f"Bearer {token}"})
    ws = await tornado.websocket.websocket_connect(request)
    snapshot = orjson.loads(await ws.read_message())
    assert snapshot["type"] == "snapshot"
    t = time.time()
    for i in range(5):  # five fixes of one vehicle, coalesced into one frame
        await web.store.write_fixes([FixRecord("V7", t + i, 36.38, 119.75 + i * 1e-4, 20.0, 90.0, None, 1, "A", 8,
                                               1.0, "GP", True, True)], {}, seen={}, retention_s=3600)
    frame = orjson.loads(await asyncio.wait_for(ws.read_message(), 5))
    assert frame["type"] == "vehicles" and frame["seq"] == snapshot["seq"] + 1
    assert frame["vehicles"][-1]["id"] == "V7"
    await close_websocket(ws)
    # reconnect with ?since: the frames after that sequence are replayed, no snapshot needed
    request = tornado.httpclient.HTTPRequest(url + f"?since={snapshot['seq']}", headers={"Authorization": f"Bearer {token}"})
    ws = await tornado.websocket.websocket_connect(request)
    replay = orjson.loads(await asyncio.wait_for(ws.read_message(), 5))
    assert replay["type"] == "vehicles" and replay["seq"] == frame["seq"]
    await close_websocket(ws)


async def test_a_frame_ticked_while_a_console_waits_for_its_snapshot_comes_after_the_snapshot(web, monkeypatch):
    build = LiveFeed._build_snapshot

    async def build_then_tick(feed, view):
        seq, frame = await build(feed, view)
        feed.accept_updates([{"id": "V8", "t": 1.0, "lat": 36.38, "lon": 119.75}])
        feed.flush()  # a frame goes out to the consoles while this one is still being set up
        return seq, frame

    monkeypatch.setattr(LiveFeed, "_build_snapshot", build_then_tick)
    token = await web.login("dispatcher")
    request = tornado.httpclient.HTTPRequest(web.base.replace("http", "ws") + "/ws/live",
                                             headers={"Authorization": f"Bearer {token}"})
    ws = await tornado.websocket.websocket_connect(request)
    try:
        first = orjson.loads(await asyncio.wait_for(ws.read_message(), 5))
        second = orjson.loads(await asyncio.wait_for(ws.read_message(), 5))
    finally:
        await close_websocket(ws)
    assert first["type"] == "snapshot"
    assert second["type"] == "vehicles" and second["seq"] == first["seq"] + 1
    assert second["vehicles"] == [{"id": "V8", "t": 1.0, "lat": 36.38, "lon": 119.75}]


async def test_websocket_refuses_anonymous_and_cross_origin(web):
    url = web.base.replace("http", "ws") + "/ws/live"
    with pytest.raises(tornado.httpclient.HTTPClientError) as err:
        await tornado.websocket.websocket_connect(url)
    assert err.value.code == 401
    token = await web.login("dispatcher")
    request = tornado.httpclient.HTTPRequest(url, headers={"Authorization": f"Bearer {token}",
                                                           "Origin": "http://evil.example"})
    with pytest.raises(tornado.httpclient.HTTPClientError) as err:
        await tornado.websocket.websocket_connect(request)
    assert err.value.code == 403
