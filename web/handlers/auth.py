"""Login and logout: cookie sessions for pages, bearer tokens for the API, throttled failures."""
from __future__ import annotations

import asyncio
import secrets
import time

import tornado.escape

from center.accounts import Account, verify_password
from web.base import SESSION_COOKIE, ApiError, BaseHandler

MAX_FAILURES = 5          # failed logins per user (and per address) ...
FAILURE_WINDOW_S = 900    # ... within 15 minutes, then refused until the window passes


async def authenticate(handler: BaseHandler, name: str, password: str) -> Account:
    """Check a password with throttling; return the account or raise 401/429."""
    store = handler.store
    keys = [f"user:{name}", f"ip:{handler.request.remote_ip}"]
    for key in keys:
        if await store.login_failures(key) >= MAX_FAILURES:
            raise ApiError(429, "throttled", "too many failed logins; try again in 15 minutes")
    user = await store.get_user(name) if name else None
    # Hash off the event loop: scrypt takes tens of milliseconds by design.
    ok = bool(user) and user.get("active", "1") == "1" and await asyncio.to_thread(
        verify_password, password, user.get("hash", ""))
    if not ok:
        for key in keys:
            await store.count_login_failure(key, FAILURE_WINDOW_S)
        raise ApiError(401, "bad_credentials", "wrong user name or password")
    await store.clear_login_failures(keys[0])
    return Account(name, user["role"], user.get("crew_id") or None, user.get("display", ""))


async def open_session(handler: BaseHandler, account: Account) -> tuple[str, float]:
    """Create a session; return its token and expiry (UTC epoch seconds)."""
    ttl = int(handler.config.SESSION_HOURS * 3600)
    token = secrets.token_urlsafe(32)
    await handler.store.put_session(token, {"name": account.name, "role": account.role,
                                            "crew_id": account.crew_id, "display": account.display}, ttl)
    return token, time.time() + ttl


class LoginPage(BaseHandler):
    """GET shows the login form; POST checks it and sets the session cookie."""

    def get(self) -> None:
        self.render("login.html", error=None, next_url=self.get_argument("next", "/"))

    async def post(self) -> None:
        next_url = self.get_argument("next", "/")
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = "/"
        try:
            account = await authenticate(self, self.get_argument("username", ""), self.get_argument("password", ""))
        except ApiError as exc:
            self.set_status(exc.status_code)
            self.render("login.html", error=exc.code, next_url=next_url)
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


class ApiLogin(BaseHandler):
    """POST /api/login {username, password} -> {token, role, expires_at}."""

    def check_xsrf_cookie(self) -> None:
        """Logging in carries no ambient credentials: nothing to forge."""

    async def post(self) -> None:
        body = self.json_body()
        name, password = body.get("username"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise ApiError(400, "bad_request", "username and password (strings) are required")
        account = await authenticate(self, name, password)
        token, expires = await open_session(self, account)
        self.write_json({"token": token, "role": account.role, "crew_id": account.crew_id,
                         "expires_at": expires})


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
                         "display": account.display, "xsrf": tornado.escape.to_unicode(self.xsrf_token)})


routes = [
    (r"/login", LoginPage),
    (r"/logout", LogoutPage),
    (r"/api/login", ApiLogin),
    (r"/api/logout", ApiLogout),
    (r"/api/me", ApiMe),
]
