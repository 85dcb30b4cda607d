"""Login and logout: cookie sessions for pages, bearer tokens for the API, throttled attempts.

The throttle counts every attempt before its password is checked (one Redis script call, so
parallel attempts cannot slip past it) by (account, address) pair and by address:

- a pair gets PAIR_FREE_FAILURES failures; after its n-th it waits 2^(n - 5) s (1 s, 2 s, 4 s, ...,
  at most MAX_WAIT_S) before the next attempt; a right password forgets the pair's failures;
- an address gets ADDRESS_FREE_FAILURES failures (over every account, counted for an hour from
  the first), then waits the same way: many accounts tried from one address slow that address;
- nothing is counted per account alone, so failures elsewhere never hold back a right password
  from an address that has not failed, and one user's typos behind a shared address (a call
  floor behind one NAT) do not hold back the others.

A refused attempt answers 429 ``throttled`` with ``retry_after`` (s) and a Retry-After header.
Unknown and inactive users cost one scrypt too (accounts.dummy_hash), so the time taken does not
tell whether a user exists."""
from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import urllib.parse

import tornado.escape
import tornado.web

from command.accounts import MAX_PASSWORD_CHARS, Account, dummy_hash, verify_password
from store.accounts import AccountStore
from store.units import UnitStore
from web.base import SESSION_COOKIE, ApiError, BaseHandler, BoundedBody

log = logging.getLogger(__name__)

PAIR_FREE_FAILURES = 5
ADDRESS_FREE_FAILURES = 20
MAX_WAIT_S = 900                 # the longest wait between two attempts (15 minutes)
PAIR_MEMORY_S = 24 * 3600        # a pair's failures are forgotten a day after its last attempt
ADDRESS_WINDOW_S = 3600          # an address's failures are counted for an hour from its first
MAX_NAME_CHARS = 128


def clock() -> float:
    """The throttle's clock (UTC epoch seconds); tests replace it."""
    return time.time()


def same_site_path(url: str) -> str:
    """`url` as a path on this site, normalised (non-ASCII and spaces percent-encoded), or "/" when
    it could lead elsewhere: a scheme, a host, a backslash (browsers read it as /), a control
    character (browsers drop tabs and newlines), or a path not starting with exactly one /."""
    if not url.startswith("/") or url.startswith("//") or any(
            ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "/"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    path = urllib.parse.urlunsplit(("", "", parts.path, parts.query, parts.fragment))
    return urllib.parse.quote(path, safe="/?#&=%:@!$'()*+,;-._~")


async def authenticate(handler: BaseHandler, name: str, password: str) -> Account:
    """Check a password with throttling; return the account or raise 400/401/429."""
    if len(password) > MAX_PASSWORD_CHARS:
        raise ApiError(400, "password_too_long", f"a password has at most {MAX_PASSWORD_CHARS} characters")
    if len(name) > MAX_NAME_CHARS:
        raise ApiError(400, "bad_request", f"a user name has at most {MAX_NAME_CHARS} characters")
    store = handler.store
    address = handler.request.remote_ip or ""
    wait = await store.login_attempt(name, address, clock(), pair_free=PAIR_FREE_FAILURES,
                                     address_free=ADDRESS_FREE_FAILURES, max_wait_s=MAX_WAIT_S,
                                     pair_memory_s=PAIR_MEMORY_S, address_window_s=ADDRESS_WINDOW_S)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        log.info("login of %r from %s throttled for %d s", name, address, retry_after)
        raise ApiError(429, "throttled", f"too many failed logins; try again in {retry_after} s",
                       retry_after=retry_after)
    user = await AccountStore(store.db).get(name) if name else None
    active = bool(user) and user.get("active", "1") == "1"
    # Hash off the event loop (scrypt takes tens of milliseconds by design), also for an unknown
    # or inactive user, against a hash nobody knows.
    right = await asyncio.to_thread(verify_password, password, user.get("hash", "") if active else dummy_hash())
    if not (right and active):
        log.info("login of %r from %s failed", name, address)
        raise ApiError(401, "bad_credentials", "wrong user name or password")
    await store.login_succeeded(name, address, address_free=ADDRESS_FREE_FAILURES)
    unit_id = user.get("unit_id") or None
    # a liaison sees its unit and those under it: the subtree as the tree is at login
    unit_ids = tuple(await UnitStore(store.db).descendants(unit_id)) if user["role"] == "unit" and unit_id else ()
    return Account(name, user["role"], user.get("crew_id") or None, user.get("display", ""), unit_id, unit_ids)


async def open_session(handler: BaseHandler, account: Account) -> tuple[str, float]:
    """Create a session; return its token and expiry (UTC epoch seconds)."""
    ttl = int(handler.config.SESSION_HOURS * 3600)
    token = secrets.token_urlsafe(32)
    await handler.store.put_session(token, {"name": account.name, "role": account.role,
                                            "crew_id": account.crew_id, "display": account.display,
                                            "unit_id": account.unit_id, "unit_ids": list(account.unit_ids)}, ttl)
    return token, time.time() + ttl


@tornado.web.stream_request_body
class LoginPage(BoundedBody, BaseHandler):
    """GET shows the login form; POST checks it and sets the session cookie."""

    def get(self) -> None:
        self.render("login.html", error=None, retry_after=None,
                    next_url=same_site_path(self.get_argument("next", "/")))

    async def post(self) -> None:
        self.take_body()
        next_url = same_site_path(self.get_argument("next", "/"))
        try:
            account = await authenticate(self, self.get_argument("username", ""), self.get_argument("password", ""))
        except ApiError as exc:
            self.set_status(exc.status_code)
            retry_after = exc.details.get("retry_after")
            if retry_after:
                self.set_header("Retry-After", str(retry_after))
            self.render("login.html", error=exc.code, retry_after=retry_after, next_url=next_url)
            return
        token, _ = await open_session(self, account)
        self.set_signed_cookie(SESSION_COOKIE, token, expires_days=None, httponly=True, samesite="Strict",
                               secure=self.config.COOKIE_SECURE)
        self.redirect(next_url)


class LogoutPage(BaseHandler):
    """POST ends the cookie session."""

    async def post(self) -> None:
        token = getattr(self, "session_token", None)
        if token:
            await self.store.drop_session(token)
        self.clear_cookie(SESSION_COOKIE)
        self.redirect("/login")


@tornado.web.stream_request_body
class ApiLogin(BoundedBody, BaseHandler):
    """POST /api/login {username, password} -> {token, role, expires_at}."""

    def check_xsrf_cookie(self) -> None:
        """Logging in carries no ambient credentials: nothing to forge."""

    async def post(self) -> None:
        self.take_body()
        body = self.json_body()
        name, password = body.get("username"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise ApiError(400, "bad_request", "username and password (strings) are required")
        account = await authenticate(self, name, password)
        token, expires = await open_session(self, account)
        self.write_json({"token": token, "role": account.role, "crew_id": account.crew_id,
                         "unit_id": account.unit_id, "expires_at": expires})


class ApiLogout(BaseHandler):
    """POST /api/logout ends the current session."""

    async def post(self) -> None:
        self.require()
        await self.store.drop_session(self.session_token)
        self.write_json({"ok": True})


class ApiMe(BaseHandler):
    """GET /api/me: who am I."""

    def get(self) -> None:
        account = self.require()
        self.write_json({"name": account.name, "role": account.role, "crew_id": account.crew_id,
                         "unit_id": account.unit_id, "display": account.display, "xsrf": tornado.escape.to_unicode(self.xsrf_token)})


routes = [
    (r"/login", LoginPage),
    (r"/logout", LogoutPage),
    (r"/api/login", ApiLogin),
    (r"/api/logout", ApiLogout),
    (r"/api/me", ApiMe),
]
