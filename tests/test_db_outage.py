"""PostgreSQL down under a running web (in-process, real servers): /healthz names ``postgres``,
a request that needs the record gets a 503 ``database_unavailable`` and nothing of it is saved,
and the web serves again once the server is back on its port, without a restart of its own."""
from __future__ import annotations

import asyncio
import json
import signal

import orjson
import psycopg
import pytest
import tornado.httpclient

from servers import postgres as pg_server
from store.db import migrate
from servers.embedded import free_port
from tests.conftest import test_settings, wait_for
from web import app as webapp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio, pytest.mark.timeout(120)]
PASSWORD = "test-pass-1234"
TICKET = {"channel": "phone", "category": "water", "type": "repair", "urgency": "normal",
          "description": "数据库停止测试", "caller_phone": "13907775678", "lon": 119.755, "lat": 36.381,
          "link": False}


async def _call(base: str, method: str, path: str, *, token: str = "", body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = tornado.httpclient.HTTPRequest(base + path, method=method, headers=headers, request_timeout=30,
                                             body=None if body is None else json.dumps(body))
    return await tornado.httpclient.AsyncHTTPClient().fetch(request, raise_error=False)


def _tickets(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM tickets").fetchone()[0]


async def test_postgres_down_is_named_by_healthz_and_refused_with_a_503(tmp_path, redis_url, mqtt_url):
    data, port = tmp_path / "pg", free_port()
    server, url = await asyncio.to_thread(pg_server.start, data, port)
    await asyncio.to_thread(migrate, url)
    web_port = free_port()
    settings = test_settings(tmp_path, HTTP_PORT=web_port, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD,
                             DATABASE_URL=url)
    stop = asyncio.Event()
    task = asyncio.create_task(webapp.serve(settings, redis_url, mqtt_url, demo=True, stop=stop))
    base = f"http://127.0.0.1:{web_port}"
    try:
        async def health():
            try:
                response = await _call(base, "GET", "/healthz")
            except OSError:
                return None
            return orjson.loads(response.body)

        body = await wait_for(health, timeout=30)
        assert body["postgres"] == {"ok": True, "error": None} and "postgres" not in body["down"]
        login = await _call(base, "POST", "/api/login", body={"username": "agent", "password": PASSWORD})
        token = orjson.loads(login.body)["token"]
        created = await _call(base, "POST", "/api/tickets", token=token, body=TICKET)
        assert created.code in (200, 201), created.body
        before = await asyncio.to_thread(_tickets, url)

        server.kill()  # SIGKILL
        await asyncio.to_thread(server.wait, 10)
        body = await wait_for(lambda: _down(health), timeout=30)
        assert body["ok"] is False and body["postgres"]["ok"] is False and body["postgres"]["error"]
        refused = await _call(base, "POST", "/api/tickets", token=token, body=TICKET)
        assert refused.code == 503, refused.body
        error = orjson.loads(refused.body)["error"]
        assert error["code"] == "database_unavailable" and refused.headers["Retry-After"] == "2"

        server, _ = await asyncio.to_thread(pg_server.start, data, port)  # back on its port, as revive does
        await wait_for(lambda: _up(health), timeout=30)
        again = await _call(base, "POST", "/api/tickets", token=token, body=TICKET)
        assert again.code in (200, 201), again.body
        assert await asyncio.to_thread(_tickets, url) == before + 1  # the refused one left nothing behind
    finally:
        stop.set()
        await task
        if server.poll() is None:
            server.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            await asyncio.to_thread(server.wait, 20)


async def _down(health):
    body = await health()
    return body if body and "postgres" in body["down"] else None


async def _up(health):
    body = await health()
    return body if body and body["postgres"]["ok"] else None
