"""Every page carries the center's clock (`runtime.clock.Clock`: anchor and speed-up) on its body, so
that its scripts judge ticket limits and fix ages on the clock the server uses (`I18N.now` in
i18n.js; tests/test_browser_clock.py runs that in chromium)."""
from __future__ import annotations

import asyncio
import re
import time

import pytest

from servers.embedded import free_port
from tests.conftest import PASSWORD, Web, test_settings, wait_for
from web import app as webapp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
PAGES = {"/console": "dispatcher", "/wall": "dispatcher", "/reports": "supervisor", "/desk": "agent",
         "/unit": "admin", "/field": "crew", "/admin": "admin"}


async def test_every_page_carries_the_clock_the_server_runs_on(tmp_path, redis_url, database_url, mqtt_url):
    anchor = round(time.time() - 100.0, 3)
    port = free_port()
    settings = test_settings(tmp_path, HTTP_PORT=port, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD,
                             CLOCK_SPEEDUP=60.0, CLOCK_ANCHOR=anchor)
    stop = asyncio.Event()
    task = asyncio.create_task(webapp.serve(settings, redis_url, mqtt_url, demo=True, stop=stop))
    web = Web(f"http://127.0.0.1:{port}", None)
    try:
        await wait_for(web.up, timeout=20)
        for path, user in PAGES.items():
            response = await web.call("GET", path, token=await web.token(user))
            assert response.code == 200, (path, response.code)
            body = re.search(r"<body [^>]*>", response.body.decode()).group(0)
            assert f'data-clock-anchor="{anchor!r}"' in body and 'data-clock-speedup="60.0"' in body, (path, body)
    finally:
        stop.set()
        await task
