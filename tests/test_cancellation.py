"""Services stop when told to: a cancellation always ends a service's loops, even one a library
lost on its way, and a web process that cannot listen says so and ends at once."""
from __future__ import annotations

import asyncio
import socket

import pytest

from runtime.lifecycle import StartupError
from store.streams import pause
from services.kpi_service import KpiService
from web import app as webapp
from tests.conftest import test_settings


async def _ends_within(task: asyncio.Task, seconds: float) -> bool:
    done, _ = await asyncio.wait({task}, timeout=seconds)  # wait() never cancels what it waits on
    return task in done


async def test_a_pause_gives_way_to_a_cancellation():
    stop = asyncio.Event()
    task = asyncio.create_task(pause(stop, 30.0))
    await asyncio.sleep(0.05)
    task.cancel()
    assert await _ends_within(task, 2.0)
    assert task.cancelled()


async def test_a_pause_ends_when_stop_is_set_and_after_its_time():
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pause(stop, 0.05)
    assert loop.time() - started >= 0.05
    stop.set()
    started = loop.time()
    await pause(stop, 30.0)
    assert loop.time() - started < 1.0


class _SwallowingStreams:
    """Change-stream reads that lose a cancellation, as a client library may: the loop above
    them must still end."""

    def __init__(self) -> None:
        self.reads = 0
        self.swallowed = 0

    async def after(self, last: str, count: int, block_ms: int) -> list:
        self.reads += 1
        try:
            await asyncio.sleep(block_ms / 1000)
        except asyncio.CancelledError:
            self.swallowed += 1
        return []


async def test_the_kpi_follower_ends_on_a_cancellation_its_redis_read_lost(redis_url, database_url):
    import redis.asyncio as aioredis

    from store.db import Database

    client = aioredis.from_url(redis_url)
    db = Database(database_url)
    service = KpiService(db, client, block_ms=50)
    service.changes = _SwallowingStreams()
    service._ready.set()  # built: the follower only reads the change stream
    task = asyncio.create_task(service._follow())
    await asyncio.sleep(0.12)
    task.cancel()
    try:
        assert await _ends_within(task, 2.0), "the follower went on after it was cancelled"
        assert task.cancelled()
        assert service.changes.swallowed == 1
    finally:
        service._stop.set()
        await client.aclose()
        await db.close()


async def test_a_web_process_whose_port_is_taken_says_so_and_starts_nothing(tmp_path, redis_url, mqtt_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = test_settings(tmp_path, HTTP_PORT=port, ADMIN_PASSWORD="test-pass-1234")
        before = asyncio.all_tasks()
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            await asyncio.wait_for(webapp.serve(settings, redis_url, mqtt_url), 5.0)
        assert asyncio.all_tasks() == before  # nothing left running to stop
