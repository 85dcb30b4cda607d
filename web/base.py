"""The base handler: typed access to services, authentication, roles and one error contract."""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson
import psycopg
import tornado.httputil
import tornado.web

from store import redis_client
from command.accounts import Account
from command.errors import CommandError
from config.settings import Settings
from store.live import Store

if TYPE_CHECKING:
    from services.devices import DeviceService
    from services.jt808_terminals import TerminalService
    from services.dispatch import DispatchManager
    from services.fleet_admin import FleetAdmin
    from services.incidents import IncidentService
    from services.kpi_service import KpiService
    from services.police_link import PoliceLink
    from services.supervision import SupervisionService
    from services.tickets import TicketManager
    from web.live import LiveFeed

log = logging.getLogger(__name__)

SESSION_COOKIE = "session"

# PostgreSQL away, restarting, failing over (a read-only standby) or the pool out of time: a 503
# (a psycopg OperationalError covers the lost connection, the pool's timeout and admin shutdown)
DATABASE_UNAVAILABLE = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)

SESSION_CACHE_S = 2.0
"""How long a session read from Redis is reused in this process. Bound: a logout or account change
made through another process (or directly in Redis) takes effect here within this many seconds;
one made through this process (any non-GET request of the auth or admin handlers) at once."""
_SESSION_CACHE_MAX = 4096
_SESSION_CLEARING_MODULES = frozenset({"web.handlers.auth", "web.handlers.admin", "web.handlers.admin_users"})


class SessionCache:
    """A small in-process cache of Redis sessions by token, each entry kept `ttl_s` seconds."""

    def __init__(self, ttl_s: float = SESSION_CACHE_S, max_entries: int = _SESSION_CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self.pending: dict[str, asyncio.Future] = {}  # token → the Redis read under way

    def get(self, token: str, now: float) -> tuple[bool, dict[str, Any] | None]:
        """(found, session) for a token still fresh at monotonic time `now`."""
        entry = self._entries.get(token)
        if entry is None or entry[0] <= now:
            return False, None
        return True, entry[1]

    def put(self, token: str, session: dict[str, Any] | None, now: float) -> None:
        """Remember a session (only known ones: an unknown token is asked again next time)."""
        if session is None:
            self._entries.pop(token, None)
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[token] = (now + self.ttl_s, session)

    def clear(self) -> None:
        """Forget every cached session (after a logout or an account change in this process)."""
        self._entries.clear()


def content_security_policy(image_origin: str = "") -> str:
    """The pages' Content-Security-Policy; `image_origin`: an outside tile server whose images
    the maps may show (BASEMAP_URL's scheme and host), none by default."""
    return "; ".join((
        "default-src 'self'",
        "script-src 'self'",  # no inline script, no eval: the pages load their scripts from /static
        # ECharts' tooltips and three legend swatches are HTML strings with style="" attributes
        # (CSSOM changes, as Leaflet makes, need no exception); inline styles cannot run script
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:" + (f" {image_origin}" if image_origin else ""),
        "connect-src 'self'",  # fetch and the /ws/live WebSocket of the same host
        "object-src 'none'", "base-uri 'self'", "form-action 'self'", "frame-ancestors 'none'",
    ))


CONTENT_SECURITY_POLICY = content_security_policy()

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

MAX_BODY_BYTES = 64 * 1024
"""Largest request body read for any route that does not raise its own limit (BoundedBody): web.app
passes it to the HTTP server, which refuses a larger declared body (400, connection closed)
before any handler runs."""
DRAIN_BYTES = 8 * 1024 * 1024
"""A BoundedBody handler reads and drops up to this much beyond its limit, so the client gets its
413 over a healthy connection; a body declared larger is refused at once and the connection closed."""


class SecurityHeaders:
    """Mixin for request handlers: the security headers every response carries (pages, API,
    errors, static files)."""

    def set_default_headers(self) -> None:
        """Tornado calls this for every response, also after clear() for an error."""
        super().set_default_headers()  # type: ignore[misc]
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)  # type: ignore[attr-defined]
        policy = self.application.settings.get("content_security_policy")  # type: ignore[attr-defined]
        if policy:  # the application's own (web.app.make_app: an outside tile server's images)
            self.set_header("Content-Security-Policy", policy)  # type: ignore[attr-defined]


class ApiError(tornado.web.HTTPError):
    """An error with a stable code, returned to clients as JSON."""

    def __init__(self, status: int, code: str, message: str, **details: Any):
        super().__init__(status, reason=None)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Services:
    """Everything handlers use, built once at start-up (``web.app.build_services``) and handed in
    through the application settings; handlers reach each through a typed property. A service
    this process runs without (no dispatch in a test app, say) is None: its handlers answer 503."""

    settings: Settings
    store: Store
    fleet: FleetAdmin
    devices: DeviceService
    addresses: Any  # web.handlers.desk.AddressBooks: the desk's address search, built in the background
    areas: Any  # web.handlers.hotspots.AreaIndex: the city's grids and districts
    names: dict[str, dict[str, str]]  # id → name of districts, units and crews (reports)
    basemap: Any = None  # services.basemap.BasemapService: the maps' tile source and our own tiles
    city: Any = None
    live: LiveFeed | None = None
    health: Callable[[], Awaitable[dict[str, Any]]] | None = None
    tickets: TicketManager | None = None
    incidents: IncidentService | None = None
    supervision: SupervisionService | None = None
    dispatch: DispatchManager | None = None
    police: PoliceLink | None = None
    kpi: KpiService | None = None
    terminals: TerminalService | None = None  # services.jt808_terminals: the JT/T 808 terminals
    sessions: SessionCache = field(default_factory=SessionCache)
    refused: Counter = field(default_factory=Counter)  # refused requests by "Handler:status"


class BaseHandler(SecurityHeaders, tornado.web.RequestHandler):
    """Base of every HTTP handler: services, current account, JSON helpers and errors."""

    @property
    def services(self) -> Services:
        """The services container."""
        return self.application.settings["services"]

    @property
    def store(self) -> Store:
        """The Redis store."""
        return self.services.store

    @property
    def config(self) -> Settings:
        """The resolved settings."""
        return self.services.settings

    @property
    def tickets(self) -> TicketManager:
        """The ticket manager (503 when this process runs without one)."""
        return self._needed(self.services.tickets, "tickets_unavailable", "the ticket service is not configured")

    @property
    def incidents(self) -> IncidentService:
        """The incident service over the ticket manager (503 when this process runs without one)."""
        return self._needed(self.services.incidents, "tickets_unavailable", "the ticket service is not configured")

    @property
    def kpi(self) -> KpiService:
        """The KPI service (503 when this process runs without one)."""
        return self._needed(self.services.kpi, "kpi_unavailable", "the KPI service is not configured")

    @property
    def dispatch(self) -> DispatchManager:
        """The dispatch manager (503 when this process runs without one)."""
        return self._needed(self.services.dispatch, "dispatch_unavailable", "dispatch is not configured")

    @property
    def police(self) -> PoliceLink:
        """The 110 linkage (503 when this process runs without one)."""
        return self._needed(self.services.police, "police_unavailable", "the 110 linkage is not configured")

    def get_template_namespace(self) -> dict[str, Any]:
        """Every page also gets the center's clock (`runtime.clock.Clock`: anchor and speed-up), by
        which its scripts judge ticket limits and fix ages (`I18N.now` in i18n.js)."""
        namespace = super().get_template_namespace()
        clock = self.store.clock
        namespace.update(clock_anchor=repr(clock.anchor), clock_speedup=repr(clock.speedup))
        basemap = self.services.basemap  # the maps' tile source (web/static/js/basemap.js reads it)
        namespace.update(basemap=orjson.dumps(basemap.page_config() if basemap else {}).decode())
        return namespace

    @staticmethod
    def _needed(service: Any, code: str, message: str) -> Any:
        if service is None:
            raise ApiError(503, code, message)
        return service

    @property
    def account(self) -> Account | None:
        """The logged-in account (set by prepare), or None."""
        return self.current_user

    async def prepare(self) -> None:
        """Resolve the session from the Bearer token or the session cookie."""
        token = None
        header = self.request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[7:].strip()
            self._bearer = True
        else:
            self._bearer = False
            raw = self.get_signed_cookie(SESSION_COOKIE, max_age_days=2)
            token = raw.decode() if raw else None
        self.current_user = None
        if token:
            session = await self._session(token)
            if session:
                self.current_user = Account(session["name"], session["role"], session.get("crew_id"),
                                            session.get("display", ""), session.get("unit_id"),
                                            tuple(session.get("unit_ids") or ()))
                self.session_token = token

    async def _session(self, token: str) -> dict[str, Any] | None:
        """The session of a token, from the short in-process cache (see SESSION_CACHE_S) or Redis."""
        cache = self.services.sessions
        now = time.monotonic()
        found, session = cache.get(token, now)
        if found:
            return session
        pending = cache.pending.get(token)
        if pending is not None:  # one Redis read per token at a time: concurrent requests share it
            await asyncio.wait([pending])
            if not pending.cancelled():
                return pending.result()
            return await self.store.get_session(token)  # that read failed: try our own
        pending = cache.pending[token] = asyncio.get_running_loop().create_future()
        try:
            session = await self.store.get_session(token)
        except BaseException:
            pending.cancel()
            raise
        finally:
            cache.pending.pop(token, None)
        pending.set_result(session)
        cache.put(token, session, now)
        return session

    count_refusals = False
    """True: every refused request (4xx) of this handler is counted in ``Services.refused`` and logged."""
    error_code: str | None = None
    """The code of the error this request was answered with (set by write_error)."""

    def on_finish(self) -> None:
        """Count a refused request (``count_refusals``); a state-changing request of the auth or
        admin handlers may end sessions: forget them."""
        status = self.get_status()
        if self.count_refusals and 400 <= status < 500:
            key = f"{type(self).__name__}:{status}"
            self.services.refused[key] += 1
            log.info("refused %s %s with %d (%d so far)", self.request.method, self.request.uri, status,
                     self.services.refused[key])
        if self.request.method != "GET" and type(self).__module__ in _SESSION_CLEARING_MODULES:
            self.services.sessions.clear()

    def check_xsrf_cookie(self) -> None:
        """XSRF applies to cookie sessions; bearer-token API calls carry no ambient credentials."""
        if getattr(self, "_bearer", False) or self.request.headers.get("Authorization", "").startswith("Bearer "):
            return
        super().check_xsrf_cookie()

    def write_json(self, data: Any, status: int = 200) -> None:
        """Send a JSON response."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 with a clear message."""
        try:
            data = orjson.loads(self.request.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "bad_json", f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_json", "request body must be a JSON object")
        return data

    def require(self, *roles: str) -> Account:
        """The current account if it has one of the roles; 401/403 otherwise."""
        account = self.account
        if account is None:
            raise ApiError(401, "unauthenticated", "login required")
        if roles and account.role not in roles and account.role != "admin":
            raise ApiError(403, "forbidden", f"role {account.role} may not do this")
        return account

    def log_exception(self, typ, value, tb) -> None:
        """Client errors are logged briefly; server errors with their traceback."""
        if isinstance(value, (tornado.web.HTTPError, CommandError)):
            log.info("%s %s -> %s", self.request.method, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, redis_client.UNAVAILABLE) and not self._finished:  # restarting or loading
            log.warning("%s %s -> 503: Redis unavailable (%s)", self.request.method, self.request.uri, e)
            unavailable = ApiError(503, "redis_unavailable", "the data store is unavailable; try again shortly",
                                   retry_after=2)
            self.send_error(503, exc_info=(ApiError, unavailable, e.__traceback__))
            return
        if isinstance(e, DATABASE_UNAVAILABLE) and not self._finished:  # its transaction was not committed
            log.warning("%s %s -> 503: PostgreSQL unavailable (%s)", self.request.method, self.request.uri,
                        str(e).strip() or type(e).__name__)
            unavailable = ApiError(503, "database_unavailable", "the database is unavailable; try again shortly",
                                   retry_after=2)
            self.send_error(503, exc_info=(ApiError, unavailable, e.__traceback__))
            return
        if isinstance(e, CommandError) and not self._finished:  # a domain error: its own status
            self.log_exception(type(e), e, e.__traceback__)
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one error contract: {"error": {"code", "message", **details}} for an ApiError or a
        domain error (command.errors.CommandError: its status and code), {"code": "internal"} for
        anything unexpected; never a traceback."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, (ApiError, CommandError)):
            body = {**exc.details, "code": exc.code, "message": exc.message}
            if "retry_after" in exc.details:
                self.set_header("Retry-After", str(exc.details["retry_after"]))
        elif isinstance(exc, tornado.web.HTTPError):
            body = {"code": f"http_{status_code}", "message": exc.log_message or self._reason}
        else:
            body = {"code": "internal", "message": "internal server error"}
        self.error_code = body["code"]
        if not self.request.path.startswith("/api") and status_code == 401:
            self.redirect(self.get_login_url() + "?next=" + tornado.escape.url_escape(self.request.uri))
            return
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(orjson.dumps({"error": body}, default=str))

    def get_current_user(self) -> Account | None:
        return getattr(self, "current_user", None)


def page(*roles: str) -> Callable:
    """Decorator for page handlers: redirect to login when anonymous, 403 on a wrong role."""
    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        async def inner(self: BaseHandler, *args: Any, **kwargs: Any) -> Any:
            if self.account is None:
                self.redirect(self.get_login_url() + "?next=" + tornado.escape.url_escape(self.request.uri))
                return None
            self.require(*roles)
            result = method(self, *args, **kwargs)
            if hasattr(result, "__await__"):
                result = await result
            return result
        return inner
    return wrap


class BoundedBody:
    """Mixin for a handler decorated with ``tornado.web.stream_request_body`` (put it first among the
    bases): the body arrives in chunks and is kept up to ``body_limit`` bytes. A larger one is
    answered 413 with the error shape: at once when its declared length is more than DRAIN_BYTES
    beyond (the rest is never read), else once it has been read and dropped. The method calls
    ``take_body()`` first; a form's XSRF token arrives with the body and is checked there."""

    body_limit = MAX_BODY_BYTES
    too_large = ("body_too_large", "the request body is too large")
    body_needs_login = False  # True: refuse an anonymous request (401) before reading its body
    _xsrf_later = False

    def check_xsrf_cookie(self) -> None:
        """A token in a header is checked now; one in a form, after the body (take_body)."""
        headers = self.request.headers  # type: ignore[attr-defined]
        form = headers.get("Content-Type", "").startswith(("application/x-www-form-urlencoded",
                                                            "multipart/form-data"))
        if form and "X-Xsrftoken" not in headers and "X-Csrftoken" not in headers:
            self._xsrf_later = True
        else:
            super().check_xsrf_cookie()  # type: ignore[misc]

    async def prepare(self) -> None:
        """Resolve the session, then judge the declared length before any of the body is read."""
        self._chunks = bytearray()
        self._over = False
        await super().prepare()  # type: ignore[misc]
        if self.body_needs_login and self.current_user is None:  # type: ignore[attr-defined]
            raise ApiError(401, "unauthenticated", "login required")
        declared = self.request.headers.get("Content-Length", "")  # type: ignore[attr-defined]
        if declared.isdigit() and int(declared) > self.body_limit + DRAIN_BYTES:
            raise self._too_large()
        self.request.connection.set_max_body_size(self.body_limit + DRAIN_BYTES)  # type: ignore[attr-defined]

    def data_received(self, chunk: bytes) -> None:
        """Keep the body up to the limit; past it, drop what comes."""
        if self._over or len(self._chunks) + len(chunk) > self.body_limit:
            self._over = True
            self._chunks = bytearray()
        else:
            self._chunks += chunk

    def take_body(self) -> None:
        """Make the streamed body the request's body and form arguments (413 when it was too
        large, 400 when the form cannot be parsed), then check a form's XSRF token."""
        if self._over:
            raise self._too_large()
        request = self.request  # type: ignore[attr-defined]
        request.body = bytes(self._chunks)
        try:
            tornado.httputil.parse_body_arguments(request.headers.get("Content-Type", ""), request.body,
                                                  request.body_arguments, request.files, request.headers)
        except tornado.httputil.HTTPInputError as exc:
            raise ApiError(400, "bad_body", f"the request body cannot be read: {exc}") from None
        for name, values in request.body_arguments.items():
            request.arguments.setdefault(name, []).extend(values)
        if self._xsrf_later:
            super().check_xsrf_cookie()  # type: ignore[misc]

    def _too_large(self) -> ApiError:
        code, message = self.too_large
        log.info("%s %s: body over %d bytes refused", self.request.method, self.request.path,  # type: ignore[attr-defined]
                 self.body_limit)
        return ApiError(413, code, message, limit_bytes=self.body_limit)


class NotFoundHandler(BaseHandler):
    """Unknown paths: JSON 404 for the API."""

    def prepare(self) -> None:  # type: ignore[override]
        raise ApiError(404, "not_found", f"no such path: {self.request.path}")
