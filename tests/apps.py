"""The in-process apps several test files share: the ticket API tests' app (`serve_tickets`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import tornado.httpclient
import tornado.httpserver

from command import accounts
from gis.lookup import SpatialLookup
from servers.embedded import free_port
from services.ticket_alarms import sensor_sites
from services.tickets import TicketManager
from store.accounts import AccountStore
from store.live import Store
from store.tickets import TicketStore
from tests.conftest import PASSWORD, ApiClient, Clock, test_settings
from web import app as webapp


class TicketApi(ApiClient):
    """A running in-process web app with the ticket manager, and a JSON client."""

    def __init__(self, base: str, store: Store, manager: TicketManager, clock: Clock) -> None:
        super().__init__(base, PASSWORD)
        self.base, self.store, self.manager, self.clock = base, store, manager, clock

    async def call(self, method: str, path: str, user: str | None = None, body=None, headers=None):
        """(status, JSON reply) of a request by `user` (none: no token); bytes go as they are."""
        headers = {**await self.auth(user), **(headers or {})}
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        response = await self.http.fetch(tornado.httpclient.HTTPRequest(
            self.base + path, method=method, headers=headers, body=data), raise_error=False)
        return response.code, orjson.loads(response.body) if response.body else None

    async def create(self, user: str = "agent", **fields):
        """(status, reply) of a new power repair in the west district (`fields` override)."""
        body = {"channel": "phone", "category": "power", "type": "repair", "description": "家里停电了",
                "caller_phone": "13812341234", "lon": 119.72, "lat": 36.36, **fields}
        return await self.call("POST", "/api/tickets", user, body)

    async def act(self, user: str, number: str, action: str, **args):
        """(status, reply) of a ticket action by `user` at the version `user` reads."""
        code, body = await self.call("GET", f"/api/tickets/{number}", user)
        version = body["version"] if code == 200 else 1
        return await self.call("POST", f"/api/tickets/{number}/actions/{action}", user,
                               {"expected_version": version, **args})


async def ticket_stores(tmp_path: Path, redis_url: str, database_url: str) -> tuple[Any, Store, TicketStore]:
    """(settings, store, ticket store) of an in-process ticket app: the demo accounts with the tests'
    password, and a second crew account, crew2 of C02."""
    settings = test_settings(tmp_path, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    store = Store.from_url(redis_url, database_url)
    await webapp.bootstrap_accounts(store, settings, demo=True)
    await AccountStore(store.db).put("crew2", {"role": "crew", "crew_id": "C02", "display": "抢修二班", "active": "1",
                                              "hash": accounts.hash_password(PASSWORD)}, only_new=True)
    return settings, store, TicketStore(store.db, store.redis)


async def serve_tickets(tmp_path: Path, redis_url: str, database_url: str, city, clock: Clock, port: int | None = None):
    """The ticket API tests' app on `city` (the ticket manager with its spatial lookup and sensor sites;
    the accounts of `ticket_stores`), listening on loopback: (server, client); the caller stops both."""
    settings, store, tickets = await ticket_stores(tmp_path, redis_url, database_url)
    lookup = SpatialLookup(city)
    manager = TicketManager(tickets, lookup, sensors=sensor_sites(city, lookup), clock=clock)
    services = webapp.build_services(settings=settings, store=store, tickets=manager)
    server = tornado.httpserver.HTTPServer(webapp.make_app(services, cookie_secret="test-secret"))
    port = port or free_port()
    server.listen(port, "127.0.0.1")
    return server, TicketApi(f"http://127.0.0.1:{port}", store, manager, clock)
