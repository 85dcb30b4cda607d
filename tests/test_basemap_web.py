"""The base map over HTTP: GET /tiles/<z>/<x>/<y>.png from the MBTiles file (200 PNG with ETag and
Cache-Control, 304, 404 outside, login required, every role), the pages' tile source in
data-basemap, and an outside tile server allowed by the Content-Security-Policy."""
from __future__ import annotations

import html
import json
import re

import pytest
import tornado.httpclient
import tornado.httpserver

from command import accounts
from servers.embedded import free_port
from services.basemap import mbtiles_path
from store.live import Store
from store.mbtiles import write_mbtiles
from tests.conftest import test_settings
from web import app as webapp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PNG = b"\x89PNG\r\n\x1a\n" + b"tile 13/6827/3216"  # the route serves the file's bytes as they are


def put_tiles(web) -> None:
    """A small tile set where the web fixture's web process looks for it (DATA_DIR/basemap)."""
    settings = test_settings(web.tmp_path)
    write_mbtiles(mbtiles_path(settings), {"name": "t", "format": "png", "minzoom": "13", "maxzoom": "14",
                                           "bounds": "119.70,36.35,119.80,36.40"},
                  [(13, 6827, 3216, PNG), (14, 13654, 6432, PNG + b"14")])


@pytest.fixture
async def site(web, tmp_path):
    web.tmp_path = tmp_path
    return web


def basemap_of(page: bytes) -> dict:
    """The data-basemap attribute of a page, parsed."""
    found = re.search(rb'data-basemap="([^"]*)"', page)
    assert found, page[:400]
    return json.loads(html.unescape(found.group(1).decode()))


async def test_a_tile_is_served_with_its_etag_and_a_second_ask_is_not_modified(site):
    put_tiles(site)
    token = await site.token("dispatcher")
    reply = await site.call("GET", "/tiles/13/6827/3216.png", token=token)
    assert reply.code == 200 and reply.body == PNG
    assert reply.headers["Content-Type"] == "image/png"
    assert reply.headers["Cache-Control"] == "private, max-age=3600"
    etag = reply.headers["Etag"]
    again = await site.call("GET", "/tiles/13/6827/3216.png", token=token, headers={"If-None-Match": etag})
    assert again.code == 304
    other = await site.call("GET", "/tiles/14/13654/6432.png", token=token)
    assert other.code == 200 and other.headers["Etag"] != etag


@pytest.mark.parametrize("path", ["/tiles/13/0/0.png", "/tiles/15/27308/12866.png", "/tiles/3/8/1.png",
                                  "/tiles/23/1/1.png"])
async def test_a_tile_outside_the_set_or_the_grid_is_404(site, path):
    put_tiles(site)
    reply = await site.call("GET", path, token=await site.token("dispatcher"))
    assert reply.code == 404 and json.loads(reply.body)["error"]["code"] == "tile_not_found"


async def test_without_a_tile_file_there_are_no_tiles_and_no_base_map(site):
    token = await site.token("dispatcher")
    assert (await site.call("GET", "/tiles/13/6827/3216.png", token=token)).code == 404
    assert basemap_of((await site.call("GET", "/console", token=token)).body) == {}


async def test_tiles_need_a_login_and_every_role_has_them(site):
    put_tiles(site)
    anonymous = await site.call("GET", "/tiles/13/6827/3216.png")
    assert anonymous.code == 302 and anonymous.headers["Location"].startswith("/login")  # as every page
    users = [user["name"] for user in accounts.demo_accounts()] + ["admin"]  # a unit's liaison: test_roles
    for user in users:
        reply = await site.call("GET", "/tiles/13/6827/3216.png", token=await site.token(user))
        assert reply.code == 200, user


async def test_a_damaged_tile_file_is_a_clear_503(site):
    settings = test_settings(site.tmp_path)
    path = mbtiles_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a copied file" * 200)
    reply = await site.call("GET", "/tiles/13/6827/3216.png", token=await site.token("dispatcher"))
    assert reply.code == 503 and json.loads(reply.body)["error"]["code"] == "basemap_unavailable"


@pytest.mark.parametrize("page, user", [("/console", "dispatcher"), ("/desk", "agent"), ("/field", "crew")])
async def test_the_pages_with_a_map_get_the_tile_source(site, page, user):
    put_tiles(site)
    reply = await site.call("GET", page, token=await site.token(user))
    assert reply.code == 200
    config = basemap_of(reply.body)
    assert config["url"] == "/tiles/{z}/{x}/{y}.png" and config["datum"] == "wgs84"
    assert (config["min_native_zoom"], config["max_native_zoom"]) == (13, 14)
    assert config["bounds"] == [[36.35, 119.70], [36.40, 119.80]]
    assert b"js/basemap.js" in reply.body


async def test_an_outside_tile_server_is_allowed_in_the_content_security_policy(tmp_path, redis_url, database_url):
    url = "http://10.20.30.40:8090/vec_w/wmts?SERVICE=WMTS&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}"
    settings = test_settings(tmp_path, BASEMAP_URL=url, BASEMAP_DATUM="cgcs2000")
    store = Store.from_url(redis_url, database_url)
    app = webapp.make_app(webapp.build_services(settings, store), cookie_secret="test-secret")
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    client = tornado.httpclient.AsyncHTTPClient()
    try:
        for path in ("/login", "/static/js/basemap.js"):
            reply = await client.fetch(f"http://127.0.0.1:{port}{path}", raise_error=False)
            policy = reply.headers["Content-Security-Policy"]
            assert "img-src 'self' data: blob: http://10.20.30.40:8090;" in policy, policy
            assert "connect-src 'self'" in policy and "script-src 'self';" in policy
    finally:
        server.stop()
        await store.close()
