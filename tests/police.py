"""The 110 linkage's test app (the `police_env` fixture of tests/conftest.py): our web app
(tickets and the 110 endpoints), the change watcher, the link and the 110 simulator
(`simulators.police`) in-process on free ports, on one settable clock; and 110's signature."""
from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import datetime, timezone
from typing import AsyncIterator

import orjson
import tornado.httpclient
import tornado.httpserver

from command.police_signing import sign
from servers.embedded import free_port
from services.police_link import PoliceLink
from services.tickets import TicketManager
from services.worker import build, watch_changes
from simulators.police import PoliceSimulator
from store.live import Store
from store.tickets import TicketStore
from tests.conftest import PASSWORD, ApiClient, Clock, test_settings, wait_for
from web import app as webapp

SECRET = "s3cret-110"


def _statuses_sent(sim: PoliceSimulator) -> bool:
    """Every accepted handover's four status updates have been answered."""
    handovers = sum(1 for r in sim.accepted.values() if r.get("type") == "handover")
    answered = {(s["idempotency_key"]) for s in sim.sent if s["type"] == "police_status" and s["status"] is not None}
    return len(answered) >= 4 * handovers


class Env(ApiClient):
    """Our web app (tickets + 110 endpoints), the change watcher, the link and the simulator."""

    def __init__(self, base, store, parts, sim, clock):
        super().__init__(base, PASSWORD)
        self.base, self.store, self.parts, self.sim, self.clock = base, store, parts, sim, clock
        self.link: PoliceLink = parts.police
        self.created = 0

    async def call(self, method, path, user="dispatcher", body=None, headers=None):
        """(status, raw body) of a request by `user` (none: no token)."""
        hdrs = dict(headers or {})
        hdrs.update(await self.auth(user))
        data = body if body is None or isinstance(body, bytes) else json.dumps(body)
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(self.base + path, method=method,
                                                                        headers=hdrs, body=data), raise_error=False)
        return response.code, response.body

    async def create(self, description="闻到很浓的煤气味，楼道里都是", category="gas", phone="13812341234"):
        """The number of a new emergency repair, 1 km from the previous one."""
        self.created += 1  # 1 km apart: never a repeat call of the previous ticket
        code, body = await self.call("POST", "/api/tickets", "agent", {
            "channel": "phone", "category": category, "type": "repair", "urgency": "emergency",
            "description": description, "caller_phone": phone, "address": "高密市康成大街269号",
            "lon": 119.70 + 0.01 * self.created, "lat": 36.356})
        assert code == 201, body
        return orjson.loads(body)["ticket"]["number"]

    async def timeline(self, number):
        """A ticket's audit events."""
        code, body = await self.call("GET", f"/api/tickets/{number}/timeline")
        return [e for e in orjson.loads(body)["events"]]

    async def act(self, number, action, user="dispatcher", **args):
        """A ticket action by `user` at the current version (must succeed)."""
        code, body = await self.call("GET", f"/api/tickets/{number}", user)
        version = orjson.loads(body)["version"]
        code, body = await self.call("POST", f"/api/tickets/{number}/actions/{action}", user,
                                     {"expected_version": version, **args})
        assert code == 200, body

    async def until_acked(self, passes=60, step_s=5.0):
        """Outbox passes `step_s` apart on the clock until nothing is pending."""
        for _ in range(passes):
            await self.link.run_once(self.clock.advance(step_s))
            if not await self.link.store.outbox_pending():
                return
        raise AssertionError("outbox not drained")


@contextlib.asynccontextmanager
async def police_app(tmp_path, redis_url: str, database_url: str) -> AsyncIterator[Env]:
    """Our web app and the worker's change watcher on a settable clock, the link sending to the
    110 simulator (in mode ``down`` until a test brings it up)."""
    clock = Clock(datetime.now(timezone.utc).replace(microsecond=0))
    sim_port, web_port = free_port(), free_port()
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD,
                             POLICE_URL=f"http://127.0.0.1:{sim_port}", POLICE_SECRET=SECRET)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    tickets = TicketStore(store.db, store.redis)
    manager = TicketManager(tickets, None, clock=clock)
    parts = await build(store, settings, None, tickets=manager, clock=clock, jitter=lambda: 1.0, timeout_s=3.0)
    services = webapp.build_services(settings=settings, store=store, tickets=manager, dispatch=parts.dispatch, police=parts.police)
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="test-secret"))
    server.listen(web_port, "127.0.0.1")
    sim = PoliceSimulator(SECRET.encode(), our_base_url=f"http://127.0.0.1:{web_port}", now=clock,
                          status_delays_s=(0.02, 0.02, 0.02, 0.02), mode="down", backoff_s=0.05)
    await sim.start(sim_port, 0)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_changes(parts, stop, block_ms=50))
    yield Env(f"http://127.0.0.1:{web_port}", store, parts, sim, clock)
    await wait_for(lambda: _statuses_sent(sim))  # no status update cut off mid-request
    stop.set()
    await watcher
    await sim.stop()
    server.stop()
    await server.close_all_connections()
    await store.close()


def signed(body: bytes, *, secret=SECRET, at=None, nonce=None, key="k1"):
    """The headers of a request signed as 110 signs it (a fresh nonce, now, unless given)."""
    return sign(body, secret.encode(), at or datetime.now(timezone.utc), nonce or uuid.uuid4().hex, idempotency_key=key)
