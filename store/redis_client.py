"""Every Redis client of the center is made here, with one retry policy for restarts and LOADING.

A Redis that restarts (the supervisor revives a killed embedded one on the same port and data
directory) first refuses connections, then answers ``LOADING`` while it reads its AOF. A client
made here retries a command on BusyLoadingError, ConnectionError and TimeoutError with
exponential backoff (BACKOFF_BASE_S doubling to BACKOFF_CAP_S) for about ``patience_s`` seconds
(redis-py's own Retry, reconnecting between attempts) before the error reaches the caller, who
then answers 503 (web) or retries in its own loop (services).
"""
from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError
from redis.retry import Retry

RETRY_ON = (BusyLoadingError, ConnectionError, TimeoutError)
UNAVAILABLE = RETRY_ON  # what a caller sees once the patience is spent: Redis is away or loading
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
PATIENCE_S = 30.0  # services: long enough for a restart and the reading of a large AOF
REQUEST_PATIENCE_S = 5.0  # a web request: then a 503 rather than a client left waiting


def retries_for(patience_s: float) -> int:
    """How many retries of the backoff add up to at least ``patience_s`` seconds of waiting."""
    waited, retries = 0.0, 0
    while waited < patience_s:
        retries += 1
        waited += ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S).compute(retries)
    return retries


def _options(patience_s: float, retry_class: type) -> dict[str, Any]:
    backoff = ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)
    return {"retry": retry_class(backoff, retries_for(patience_s), supported_errors=RETRY_ON),
            "retry_on_error": list(RETRY_ON)}


def async_retry(patience_s: float) -> AsyncRetry:
    """The asyncio retry policy for ``patience_s`` (for ``Redis.set_retry`` on a running client)."""
    return _options(patience_s, AsyncRetry)["retry"]


def connect(url: str, *, patience_s: float = PATIENCE_S, decode_responses: bool = True,
            max_connections: int | None = None, blocking: bool = False, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client of the Redis at ``url`` (connecting lazily) that waits out a restart or
    LOADING for ``patience_s``. ``blocking``: its pool of ``max_connections`` makes a caller wait
    for a free connection rather than fail."""
    options = {**_options(patience_s, AsyncRetry), "decode_responses": decode_responses, **kwargs}
    if blocking:
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections or 50, **options)
        return aioredis.Redis.from_pool(pool)
    if max_connections is not None:
        options["max_connections"] = max_connections
    return aioredis.from_url(url, **options)


def connect_sync(url: str, *, patience_s: float = PATIENCE_S, **kwargs: Any) -> redis.Redis:
    """A blocking client of the Redis at ``url`` with the same retry policy as `connect`."""
    return redis.Redis.from_url(url, **{**_options(patience_s, Retry), **kwargs})
