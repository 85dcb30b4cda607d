"""The login part of the store (keys listed in store/live.py's docstring): sessions, kept under a
hash of their token, the secret that signs the session cookies, and the login throttle. Mixed into ``store.live.Store``; nobody else spells
these keys (``store.fleet.AdminStore.drop_sessions_of`` scans ``session:*`` to end a user's
sessions). The accounts themselves are in PostgreSQL (``store.accounts``)."""
from __future__ import annotations

import hashlib
import secrets
from typing import Any, Mapping

import orjson

# A login attempt (web.handlers.auth), counted before its password is checked. KEYS[1] the
# (account, address) pair's hash, KEYS[2] the address's; ARGV: now (epoch s), the pair's and the
# address's free attempts, the longest wait (s), how long a pair's count lasts after its last
# attempt (s), how long an address's count lasts after its first (s). While either ``until`` lies
# ahead the attempt is refused (the reply is the wait, in s) and not counted; otherwise ``n`` of
# both goes up by one and, from the free count on, ``until`` becomes now + 2^(n - free) s, at
# most the longest wait (the reply is '0'). A right password takes its attempt back
# (LOGIN_SUCCEEDED), so ``n`` counts failures and the attempts under way.
LOGIN_ATTEMPT = """
local now = tonumber(ARGV[1])
local wait = 0
for i = 1, 2 do
  local u = tonumber(redis.call('HGET', KEYS[i], 'until') or '0')
  if u - now > wait then wait = u - now end
end
if wait > 0 then return string.format('%.3f', wait) end
for i = 1, 2 do
  local n = redis.call('HINCRBY', KEYS[i], 'n', 1)
  local free = tonumber(ARGV[1 + i])
  if n >= free then
    local delay = math.min(tonumber(ARGV[4]), 2 ^ (n - free))
    redis.call('HSET', KEYS[i], 'until', string.format('%.3f', now + delay))
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
return '0'
"""
# A right password: forget the pair, take the attempt back from the address (ARGV[1]: its free
# attempts; below them it has no wait).
LOGIN_SUCCEEDED = """
redis.call('DEL', KEYS[1])
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if n > 0 then n = redis.call('HINCRBY', KEYS[2], 'n', -1) end
if n < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[2], 'until') end
return n
"""


COOKIE_SECRET = "config:cookie_secret"


def session_key(token: str) -> str:
    """The Redis key of a session: a SHA-256 of its token, so the keys (in a dump, in the AOF, in
    SCAN or MONITOR output) do not give sessions away."""
    return "session:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


class LoginStoreMixin:
    """Sessions and the login throttle (needs ``self.redis``)."""

    redis: Any

    async def cookie_secret(self) -> str:
        """The shared cookie-signing secret: created once, the same for every web process."""
        await self.redis.set(COOKIE_SECRET, secrets.token_urlsafe(48), nx=True)
        raw = await self.redis.get(COOKIE_SECRET)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def put_session(self, token: str, data: Mapping[str, Any], ttl_s: int) -> None:
        """Store a login session under a hash of its unguessable token."""
        await self.redis.set(session_key(token), orjson.dumps(dict(data)), ex=ttl_s)

    async def get_session(self, token: str) -> dict[str, Any] | None:
        """The session for a token, or None when unknown or expired."""
        raw = await self.redis.get(session_key(token))
        return orjson.loads(raw) if raw else None

    async def drop_session(self, token: str) -> None:
        """Log a session out."""
        await self.redis.delete(session_key(token))

    async def login_attempt(self, name: str, address: str, now: float, *, pair_free: int, address_free: int,
                            max_wait_s: float, pair_memory_s: int, address_window_s: int) -> float:
        """Count a login attempt of `name` from `address` before its password is checked (one
        script call, so parallel attempts cannot all pass): 0 when it may go on, else the seconds
        to wait (the attempt is then not counted). See LOGIN_ATTEMPT."""
        wait = await self.redis.eval(LOGIN_ATTEMPT, 2, f"login:pair:{address} {name}", f"login:addr:{address}",
                                     repr(now), pair_free, address_free, max_wait_s, pair_memory_s,
                                     address_window_s)
        return float(wait)

    async def login_succeeded(self, name: str, address: str, *, address_free: int) -> None:
        """A right password: forget the pair's failures and take the attempt back from the address."""
        await self.redis.eval(LOGIN_SUCCEEDED, 2, f"login:pair:{address} {name}", f"login:addr:{address}",
                              address_free)
