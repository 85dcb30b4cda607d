"""The tornado application: route tables assembled from the handler modules, services handed in."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import tornado.httpserver
import tornado.web

from command import accounts

from store import redis_client
from runtime.clock import Clock
from store.db import Database
from runtime.lifecycle import StartupError, stop_on_signals
from store.outbox import ChangeRelay
from servers.embedded import url_reachable
from config.limit_files import load_policy
from config.review_file import load_review
from config.routing_file import load_routing
from config.settings import Settings
from store.live import Store
from store.accounts import AccountStore
from web.base import MAX_BODY_BYTES, NotFoundHandler, Services, content_security_policy
from services.basemap import BasemapService
from services.devices import DeviceService
from services.jt808_terminals import TerminalService
from services.fleet_admin import FleetAdmin
from services.incidents import IncidentService
from services.kpi_service import KpiService
from services.tickets import build_manager
from services.worker import build as build_dispatch
from services.supervision import SupervisionService
from store.supervision import SupervisionStore
from store.units import UnitStore, nodes_of_city
from web.handlers import (admin, auth, desk, health, ingest_stats, layers, live, openapi, pages, replay, sensors,
                          tickets, vehicles)
from web.handlers import dispatch as dispatch_handlers, police as police_handlers
from web.handlers import hotspots
from web.handlers import tiles
from web.handlers import reports
from web.handlers import devices as device_handlers
from web.handlers import jt808 as jt808_handlers
from web.handlers import admin_users
from web.handlers import units as unit_handlers
from web.handlers import supervision as supervision_handlers
from web.handlers import incidents  # before tickets: /api/incidents/near is no incident id
from web.live import LiveFeed, vehicle_crews_of
from web.static_files import StaticFiles

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
HANDLER_MODULES = (auth, health, pages, vehicles, replay, layers, live, sensors, ingest_stats, incidents, tickets, desk, admin, admin_users, openapi, dispatch_handlers, police_handlers, hotspots, reports, device_handlers, jt808_handlers, unit_handlers, supervision_handlers, tiles)
SERVICES_WATCHED = ("web", "ingest", "ingest-sensors", "simulate", "dispatch")
HEALTH_TIMEOUT_S = 2.0  # /healthz counts PostgreSQL down when SELECT 1 takes longer


def make_app(services: Services, *, cookie_secret: str) -> tornado.web.Application:
    """Assemble the route tables of every handler module into one Application."""
    routes: list[Any] = []
    for module in HANDLER_MODULES:
        routes.extend(module.routes)
    app = tornado.web.Application(
        routes,
        services=services,
        cookie_secret=cookie_secret,
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"samesite": "Strict", "secure": services.settings.COOKIE_SECURE},
        login_url="/login",
        static_path=str(HERE / "static"),
        static_handler_class=StaticFiles,  # 400 for a malformed path (NUL byte, ..), never a 500
        template_path=str(HERE / "templates"),
        default_handler_class=NotFoundHandler,
        websocket_ping_interval=20,
        websocket_ping_timeout=20,
        websocket_max_message_size=64 * 1024,
        compress_response=True,
        # an outside tile server's images are allowed on the pages (BASEMAP_URL), nothing else
        content_security_policy=content_security_policy(services.basemap.image_origin() if services.basemap else ""),
    )
    app.settings["openapi_document"] = orjson.dumps(openapi.build_document(openapi.route_rules(app)))
    return app


def build_services(settings: Settings, store: Store, *, city: Any = None, live: LiveFeed | None = None,
                   health: Any = None, tickets: Any = None, dispatch: Any = None, police: Any = None,
                   kpi: Any = None, addresses: desk.AddressBooks | None = None) -> Services:
    """Every service the handlers use, built once: those given (the ticket manager, dispatch,
    110 linkage, KPIs: None where this process runs without them) and those made from them."""
    return Services(
        settings=settings, store=store, city=city, live=live, health=health, tickets=tickets,
        dispatch=dispatch, police=police, kpi=kpi,
        fleet=FleetAdmin(store, city), devices=DeviceService(store.redis, store.db),
        terminals=TerminalService(store.db),
        addresses=addresses or desk.AddressBooks(city), areas=hotspots.AreaIndex(city), names=reports.city_names(city),
        basemap=BasemapService(settings),
        incidents=None if tickets is None else IncidentService(tickets),
        supervision=None if tickets is None else SupervisionService(
            tickets, SupervisionStore(store.db), UnitStore(store.db)))


async def seed_city(services: Services) -> None:
    """The city's crews and vehicles into the fleet registry and its units into the unit tree,
    those not known yet only (at start-up; nothing without PostgreSQL)."""
    if services.store.db is None:
        return
    await services.fleet.seed()
    await UnitStore(services.store.db).seed(nodes_of_city(getattr(services.city, "city", services.city)), time.time())


async def bootstrap_accounts(store: Store, settings: Settings, *, demo: bool) -> dict[str, str]:
    """Create the admin (and, for the demo, one user per role) once; return new passwords to print."""
    created: dict[str, str] = {}
    known = AccountStore(store.db)
    admin_password = settings.ADMIN_PASSWORD or accounts.generate_password()
    if await known.put("admin", {"role": "admin", "display": "系统管理员", "active": "1",
                                 "hash": accounts.hash_password(admin_password)}, only_new=True):
        created["admin"] = admin_password
    if demo:
        demo_password = settings.DEMO_PASSWORD or accounts.generate_password()
        for user in accounts.demo_accounts():
            fields = {k: v for k, v in user.items() if k != "name"}
            if await known.put(user["name"], {**fields, "active": "1",
                                              "hash": accounts.hash_password(demo_password)},
                               only_new=True):
                created[user["name"]] = demo_password
    return created


def needed_down(redis_ok: bool, broker_ok: bool, svc: dict[str, dict[str, Any]], postgres_ok: bool = True) -> list[str]:
    """The components the center cannot work without that are down: PostgreSQL, Redis, the
    broker, the ingest (no heartbeat, or its own status not ok: it lost the broker or Redis), the
    sensors' ingest when the ingest takes the vehicles' topics alone (INGEST_TOPICS=fleet) and
    the dispatch service (no heartbeat). The simulators are not among them. Without Redis the
    heartbeats cannot be read: then only PostgreSQL, Redis and the broker are named."""
    down = [name for name, ok in (("postgres", postgres_ok), ("redis", redis_ok), ("broker", broker_ok)) if not ok]
    if redis_ok:
        ingest = svc.get("ingest", {})
        if not ingest.get("ok") or ingest.get("status", "ok") != "ok":
            down.append("ingest")
        sensors = svc.get("ingest-sensors", {})
        if ingest.get("topics") == "fleet" and (not sensors.get("ok") or sensors.get("status", "ok") != "ok"):
            down.append("ingest-sensors")
        if not svc.get("dispatch", {}).get("ok"):
            down.append("dispatch")
    return down


async def postgres_answers(db: Database | None, timeout_s: float = HEALTH_TIMEOUT_S) -> tuple[bool, str | None]:
    """(ok, error) of a SELECT 1 through the process's pool within timeout_s; ok without a database."""
    if db is None:
        return True, None
    try:
        await asyncio.wait_for(db.fetchone("SELECT 1"), timeout_s)
        return True, None
    except Exception as exc:  # any failure is the answer (a timeout too)
        return False, str(exc).strip() or type(exc).__name__


def health_reporter(store: Store, live: LiveFeed | None, mqtt_url: str):
    """Build the /healthz function: PostgreSQL SELECT 1, Redis ping, broker reachability, service
    heartbeats; ``ok`` false and ``down`` naming what is missing when a component the center needs
    is down."""
    async def report() -> dict[str, Any]:
        started = time.perf_counter()
        postgres = asyncio.ensure_future(postgres_answers(store.db))  # alongside the rest
        try:
            await asyncio.wait_for(store.redis.ping(), 2.0)
            redis_ok, redis_error = True, None
        except Exception as exc:  # any failure is the answer
            redis_ok, redis_error = False, str(exc) or type(exc).__name__
        broker_ok = await asyncio.to_thread(url_reachable, mqtt_url)
        beats: dict[str, Any] = {}
        if redis_ok:
            try:
                beats = await asyncio.wait_for(store.services(SERVICES_WATCHED), 2.0)
            except Exception as exc:
                redis_ok, redis_error = False, str(exc) or type(exc).__name__
        now = time.time()
        svc = {name: ({"ok": True, "age_s": round(now - b["at"], 1), **{k: v for k, v in b.items() if k != "at"}}
                      if b else {"ok": False}) for name, b in beats.items()}
        svc["web"] = {"ok": True, "pid": os.getpid(), "consoles": len(live.subscribers) if live else 0}
        if not svc.get("ingest-sensors", {}).get("ok") and svc.get("ingest", {}).get("topics") != "fleet":
            svc.pop("ingest-sensors", None)  # one ingest takes every topic: no sensors' ingest to expect
        postgres_ok, postgres_error = await postgres
        ok = postgres_ok and redis_ok and broker_ok and all(s["ok"] for s in svc.values())
        down = needed_down(redis_ok, broker_ok, svc, postgres_ok)
        return {"ok": not down, "down": down, "status": "ok" if ok and not down else "degraded",
                "postgres": {"ok": postgres_ok, "error": postgres_error},
                "redis": {"ok": redis_ok, "error": redis_error},
                "broker": {"ok": broker_ok}, "services": svc,
                "checked_ms": round((time.perf_counter() - started) * 1000, 1)}
    return report


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """The web's listening socket (non-blocking, as tornado takes it); StartupError naming the
    address when it cannot be had. ``reuse_port``: several web processes share the port and the
    kernel spreads new connections among them. (tornado's bind_sockets leaves the socket open
    when the bind fails; socket.create_server closes it.)"""
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=128, reuse_port=reuse_port)
    except OSError as exc:
        # create_server's message repeats the address; a name lookup's errno is no OS error
        reason = exc.strerror if isinstance(exc, socket.gaierror) or not exc.errno else os.strerror(exc.errno)
        raise StartupError(f"web: cannot listen on {host}:{port}: {reason}") from exc
    sock.setblocking(False)
    return sock


async def serve(settings: Settings, redis_url: str, mqtt_url: str, *, city: Any = None,
                demo: bool = False, stop: asyncio.Event | None = None) -> None:
    """Run the web service until SIGINT/SIGTERM (or until ``stop`` is set).

    The port is taken first: a web process that cannot listen says so and ends (StartupError)
    before it starts anything that would have to be stopped."""
    sockets = [listen_socket(settings.HTTP_HOST, settings.HTTP_PORT, reuse_port=settings.WEB_PROCESSES > 1)]
    try:
        await _serve(settings, redis_url, mqtt_url, sockets, city=city, demo=demo, stop=stop)
    finally:
        for sock in sockets:  # closed already once the server had them; harmless again
            sock.close()


async def _serve(settings: Settings, redis_url: str, mqtt_url: str, sockets: list, *, city: Any,
                 demo: bool, stop: asyncio.Event | None) -> None:
    # a blocking pool: a reconnect storm of consoles waits for a connection instead of failing;
    # start-up waits out a Redis restart or LOADING, a request (see below) only REQUEST_PATIENCE_S
    db = Database(settings.DATABASE_URL, max_size=settings.DB_POOL_SIZE) if settings.DATABASE_URL else None
    store = Store(redis_client.connect(redis_url, blocking=True, max_connections=256, timeout=10,
                                       health_check_interval=10), db)
    store.clock = Clock.from_settings(settings)  # domain time: tickets, limits, fix ages, reports' today
    stop = stop_on_signals(stop)
    created = await bootstrap_accounts(store, settings, demo=demo)
    for name, password in created.items():
        print(f"account created: {name} / {password}", flush=True)
    feed = LiveFeed(store, batch_ms=settings.WS_BATCH_MS, stale_s=settings.VEHICLE_STALE_S,
                    offline_s=settings.VEHICLE_OFFLINE_S, vehicle_crews=vehicle_crews_of(city),
                    zone=settings.zone, clock=store.clock.now)
    addresses = desk.AddressBooks(city)
    addresses.start()  # the desk's address book, built in the background from now
    manager = await build_manager(store.db, store.redis, getattr(city, "city", city),
                                  service_area=settings.SERVICE_AREA, policy=load_policy(settings, today=date.today()),
                                  routing=load_routing(settings), review=load_review(settings),
                                  clock=store.clock.now_dt, geocoder=desk.address_geocoder(addresses))
    parts = await build_dispatch(store, settings, city, tickets=manager)
    kpi = KpiService(store.db, store.redis, policy=manager.policy, tz=settings.zone)
    await kpi.start(wait=False)  # folds what changed since the last run in the background, then follows tkt:changes
    services = build_services(settings, store, city=city, live=feed, health=health_reporter(store, feed, mqtt_url),
                              tickets=manager, dispatch=parts.dispatch, police=parts.police, kpi=kpi,
                              addresses=addresses)
    await seed_city(services)
    await parts.dispatch.crews.refresh()  # the city's crews into the fleet registry, before the feed reads it
    app = make_app(services, cookie_secret=await store.cookie_secret())
    store.redis.set_retry(redis_client.async_retry(redis_client.REQUEST_PATIENCE_S))  # then a 503
    # a small body limit for every route; the login and photo handlers set their own (BoundedBody)
    server = tornado.httpserver.HTTPServer(app, xheaders=False, max_body_size=MAX_BODY_BYTES)
    server.add_sockets(sockets)
    feed.start()
    log.info("web: console at http://%s:%d/", settings.HTTP_HOST, settings.HTTP_PORT)
    beat = asyncio.create_task(_heartbeat(store, feed))
    # leftover ticket changes to Redis: every web process runs a relay, the lock holder works
    relay = asyncio.create_task(ChangeRelay(db.url, store.redis).run(stop)) if db is not None else None
    try:
        await stop.wait()
    finally:
        server.stop()
        beat.cancel()
        if relay is not None:
            await asyncio.gather(relay, return_exceptions=True)  # ends with stop
        await feed.stop()
        await kpi.stop()
        await asyncio.gather(beat, return_exceptions=True)
        await server.close_all_connections()
        await store.close()


async def _heartbeat(store: Store, feed: LiveFeed) -> None:
    while True:
        try:
            await store.heartbeat("web", {"pid": os.getpid(), "consoles": len(feed.subscribers)})
        except Exception as exc:
            log.warning("web heartbeat failed: %s", exc)
        await asyncio.sleep(3)
