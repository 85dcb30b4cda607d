"""Login security, in-process on loopback with real Redis: the throttle (atomic, by account and
address, growing delays), safe redirects after login, no user enumeration by time, bounded request
bodies, security headers, hashed session keys, Redis on loopback."""
from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import socket
import urllib.parse

import orjson
import pytest
import redis
import tornado.httpclient

from command.accounts import hash_password
from servers.embedded import free_port
from store.live import Store
from store.accounts import AccountStore
from web import app as webapp
from web.handlers import auth
from tests.conftest import Web, test_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
PASSWORD = "test-pass-1234"
T0 = 1_800_000_000.0


class Clock:
    """The throttle's clock, frozen and moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Checks:
    """Counts password checks (every scrypt comparison the login makes)."""

    def __init__(self, real) -> None:
        self.real, self.calls = real, 0

    def __call__(self, password: str, stored: str) -> bool:
        self.calls += 1
        return self.real(password, stored)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    frozen = Clock()
    monkeypatch.setattr(auth, "clock", frozen, raising=False)
    return frozen


@pytest.fixture
def checks(monkeypatch) -> Checks:
    counter = Checks(auth.verify_password)
    monkeypatch.setattr(auth, "verify_password", counter)
    return counter


@pytest.fixture
async def web(tmp_path, redis_url, database_url, mqtt_url, clock):
    port = free_port()
    settings = test_settings(tmp_path, HTTP_PORT=port, ADMIN_PASSWORD=PASSWORD, DEMO_PASSWORD=PASSWORD)
    stop = asyncio.Event()
    task = asyncio.create_task(webapp.serve(settings, redis_url, mqtt_url, demo=True, stop=stop))
    client = Web(f"http://127.0.0.1:{port}", Store.from_url(redis_url, database_url))
    client.port = port
    client.http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=100)
    await wait_for(client.up, timeout=20)
    yield client
    stop.set()
    await task
    client.http.close()
    await client.store.close()


async def login(web: Web, name: str, password: str = PASSWORD):
    """(status, body) of an API login from 127.0.0.1."""
    response = await web.call("POST", "/api/login", body={"username": name, "password": password})
    return response.code, orjson.loads(response.body)


def login_from(port: int, source: str, name: str, password: str = PASSWORD) -> tuple[int, dict]:
    """An API login from another loopback address (127.0.0.x): another client address."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/api/login", json.dumps({"username": name, "password": password}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        conn.close()


# --- the throttle -----------------------------------------------------------------------------

async def test_parallel_wrong_passwords_get_five_checks_then_the_right_one_waits(web, clock, checks):
    results = await asyncio.gather(*(login(web, "admin", f"wrong-{i}") for i in range(99)))
    codes = sorted(code for code, _ in results)
    assert codes.count(401) == 5 and codes.count(429) == 94
    assert checks.calls == 5  # each attempt is counted before its password is checked
    code, body = await login(web, "admin")
    assert code == 429 and body["error"]["code"] == "throttled" and body["error"]["retry_after"] == 1
    assert "token" not in body and checks.calls == 5
    clock.now += 1
    code, body = await login(web, "admin")
    assert code == 200 and body["token"]


async def test_throttled_answer_says_when_to_retry(web, clock):
    for _ in range(5):
        assert (await login(web, "agent", "x"))[0] == 401
    response = await web.call("POST", "/api/login", body={"username": "agent", "password": PASSWORD})
    assert response.code == 429 and response.headers["Retry-After"] == "1"


async def test_delays_grow_with_each_failure_up_to_15_minutes(web, clock):
    for _ in range(5):
        assert (await login(web, "dispatcher", "x"))[0] == 401
    waits = []
    for _ in range(12):
        code, body = await login(web, "dispatcher", "x")
        assert code == 429
        waits.append(body["error"]["retry_after"])
        clock.now += waits[-1]
        assert (await login(web, "dispatcher", "x"))[0] == 401
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]


async def test_a_locked_account_still_logs_in_from_a_clean_address(web, clock):
    for _ in range(8):
        await login(web, "admin", "x")
    assert (await login(web, "admin"))[0] == 429
    code, body = await asyncio.to_thread(login_from, web.port, "127.0.0.2", "admin")
    assert code == 200 and body["role"] == "admin"


async def test_failures_for_one_account_do_not_lock_another_behind_the_same_address(web, clock):
    for _ in range(8):
        await login(web, "agent", "x")
    assert (await login(web, "agent"))[0] == 429
    code, body = await login(web, "dispatcher")  # same address (a call floor behind one NAT)
    assert code == 200 and body["role"] == "dispatcher"


async def test_an_address_failing_across_many_accounts_is_slowed(web, clock):
    for i in range(auth.ADDRESS_FREE_FAILURES):
        assert (await login(web, f"user{i}", "x"))[0] == 401  # one failure per name
    code, body = await login(web, "supervisor")
    assert code == 429 and body["error"]["retry_after"] == 1
    code, _ = await asyncio.to_thread(login_from, web.port, "127.0.0.3", "supervisor")
    assert code == 200


async def test_success_resets_the_account_counter(web, clock):
    for _ in range(4):
        await login(web, "agent", "x")
    assert (await login(web, "agent"))[0] == 200
    for _ in range(4):
        assert (await login(web, "agent", "x"))[0] == 401
    assert (await login(web, "agent"))[0] == 200


# --- no user enumeration by time --------------------------------------------------------------

async def test_unknown_and_inactive_users_cost_one_password_check(web, checks):
    assert (await login(web, "nobody-here", "x"))[0] == 401
    assert checks.calls == 1
    await AccountStore(web.store.db).put("gone", {"role": "agent", "active": "0", "hash": hash_password(PASSWORD)})
    assert (await login(web, "gone"))[0] == 401
    assert checks.calls == 2
    assert (await login(web, "agent", "x"))[0] == 401
    assert checks.calls == 3


async def test_long_passwords_are_refused_before_hashing(web, checks):
    code, body = await login(web, "agent", "p" * 1025)
    assert code == 400 and body["error"]["code"] == "password_too_long"
    assert checks.calls == 0
    assert (await login(web, "agent", "p" * 1024))[0] == 401


# --- redirects after login --------------------------------------------------------------------

async def form_login(web: Web, next_url: str, password: str = PASSWORD) -> tornado.httpclient.HTTPResponse:
    page = await web.call("GET", "/login")
    xsrf = page.headers["Set-Cookie"].split("_xsrf=", 1)[1].split(";", 1)[0]
    body = urllib.parse.urlencode({"username": "dispatcher", "password": password, "_xsrf": xsrf,
                                   "next": next_url})
    return await web.call("POST", "/login", body=body, headers={"Cookie": f"_xsrf={xsrf}"})


@pytest.mark.parametrize("next_url", ["/\\127.0.0.1:8999/x", "//evil.example/x", "/\\/evil.example",
                                      "https://evil.example/", "javascript:alert(1)", "%2F%2Fevil.example",
                                      "/%0d%0aSet-Cookie:x=1", "/\t/evil.example", "\\\\evil.example",
                                      "http:/evil.example", "///evil.example", " //evil.example"])
async def test_login_redirects_only_within_the_site(web, next_url):
    response = await form_login(web, next_url)
    assert response.code == 302
    location = response.headers["Location"]
    assert location == "/" or (location.startswith("/") and not location.startswith("//")
                               and "\\" not in location and "evil" not in location), location


@pytest.mark.parametrize("next_url, expected", [("/console", "/console"), ("/reports?period=week#top",
                                                                            "/reports?period=week#top")])
async def test_login_keeps_a_same_site_next(web, next_url, expected):
    response = await form_login(web, next_url)
    assert response.code == 302 and response.headers["Location"] == expected


async def test_login_page_does_not_echo_an_off_site_next(web):
    response = await web.call("GET", "/login?next=" + urllib.parse.quote("//evil.example/x"))
    assert response.code == 200 and b"evil.example" not in response.body


# --- request bodies -----------------------------------------------------------------------------

@pytest.mark.parametrize("path, content_type", [("/api/login", "application/json"),
                                                ("/login", "application/x-www-form-urlencoded")])
async def test_large_login_bodies_get_413(web, path, content_type):
    body = b"username=agent&password=" + b"x" * (1024 * 1024) if path == "/login" else \
        json.dumps({"username": "agent", "password": "x" * (1024 * 1024)}).encode()
    response = await web.call("POST", path, body=body, headers={"Content-Type": content_type})
    assert response.code == 413
    assert orjson.loads(response.body)["error"]["code"] == "body_too_large"


def declare_body(port: int, path: str, length: int) -> bytes:
    """Send only the headers of a request declaring a huge body; return the server's first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {length}\r\n\r\n").encode())
        return sock.recv(4096)


async def test_a_huge_declared_login_body_is_refused_without_reading_it(web):
    answer = await asyncio.to_thread(declare_body, web.port, "/api/login", 99 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert b'"body_too_large"' in answer


async def test_other_routes_refuse_bodies_over_the_server_limit(web):
    token = (await login(web, "agent"))[1]["token"]
    answer = await asyncio.to_thread(declare_body, web.port, "/api/tickets", 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert token  # the server still answers normally afterwards
    assert (await web.call("GET", "/api/me", token=token)).code == 200


# --- security headers -------------------------------------------------------------------------

HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


@pytest.mark.parametrize("path", ["/login", "/api/me", "/healthz", "/static/js/api.js", "/static/favicon.svg",
                                  "/api/nothing-here"])
async def test_security_headers_on_pages_api_and_static_files(web, path):
    response = await web.call("GET", path)
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (path, name)
    csp = response.headers["Content-Security-Policy"]
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in directives["default-src"] and "unsafe-eval" not in csp


async def test_login_page_carries_no_inline_script(web):
    body = (await web.call("GET", "/login")).body.decode()
    assert "<script>" not in body and " onclick=" not in body


# --- sessions ---------------------------------------------------------------------------------

async def test_session_key_in_redis_is_a_hash_of_the_token(web):
    token = (await login(web, "dispatcher"))[1]["token"]
    keys = [key async for key in web.store.redis.scan_iter(match="session:*")]
    assert keys and all(token not in (k.decode() if isinstance(k, bytes) else k) for k in keys)
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert await web.store.redis.exists(f"session:{digest}") == 1
    assert (await web.call("GET", "/api/me", token=token)).code == 200
    assert (await web.call("POST", "/api/logout", token=token, body=b"")).code == 200
    assert await web.store.redis.exists(f"session:{digest}") == 0


# --- servers ----------------------------------------------------------------------------------

@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="an external Redis is configured by its owner")
async def test_embedded_redis_listens_on_loopback_only(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.config_get("bind")["bind"].split() == ["127.0.0.1"]
        assert client.config_get("protected-mode")["protected-mode"] == "yes"
    finally:
        client.close()


async def test_passwords_are_hashed_at_the_production_scrypt_cost_outside_the_tests(monkeypatch):
    """The harness hashes at a low cost (tests/conftest.py); the product's own cost is scrypt
    n=2^14, r=8 (16 MiB), written into each hash, and such a hash verifies only its password."""
    from command import accounts
    from tests.conftest import PRODUCTION_SCRYPT

    assert PRODUCTION_SCRYPT["n"] >= 2 ** 14 and PRODUCTION_SCRYPT["r"] == 8
    monkeypatch.setattr(accounts, "_SCRYPT", dict(PRODUCTION_SCRYPT))
    stored = accounts.hash_password("correct horse")
    assert stored.startswith(f"scrypt${PRODUCTION_SCRYPT['n']}$8$1$")
    assert accounts.verify_password("correct horse", stored)
    assert not accounts.verify_password("correct horsE", stored)
    assert accounts.hash_password("correct horse") != stored  # a salt of its own
