"""Group commit: concurrent requests of one kind in a process run together as one batch.

While a batch runs, new requests wait; when it is done, all that waited run as the next batch (at
most `max_batch`). A request made when nothing runs starts at once, alone: no added delay when
the load is light. Under load, one batch pays once for what each request would pay on its own
(round trips to PostgreSQL, transaction start and commit, the WAL flush, the Redis publication),
which is how a database's own group commit works. `TicketStore` uses it for ticket saves and for
the reads of ticket creation.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# a batch's runner: the outcome of each request in order, a result or the exception to raise
Runner = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """Runs requests through `run` in batches, one batch at a time (see the module docstring).

    `run` gets the waiting requests in arrival order and returns one outcome per request: a
    result, or an exception that `submit` raises to that request's caller alone. An exception
    raised by `run` itself fails every request of the batch."""

    def __init__(self, run: Runner[T, R], *, max_batch: int = 64) -> None:
        self.run = run
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # batches run, and requests in them (for the mean batch size)
        self.requests = 0

    async def submit(self, item: T) -> R:
        """Run `item` in the next batch and return its outcome (or raise its exception)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is not loop:  # a new event loop (tests)
            self._task, self._waiting = None, []
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
            self.batches += 1
            self.requests += len(batch)
            try:
                outcomes = await self.run([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} gave {len(outcomes)} outcomes")
            except BaseException as exc:  # noqa: BLE001  (every caller of the batch gets it)
                outcomes = [exc] * len(batch)
                if isinstance(exc, asyncio.CancelledError):
                    for _, future in batch + self._waiting:
                        if not future.done():
                            future.cancel()
                    raise
            for (_, future), outcome in zip(batch, outcomes):
                if future.done():  # its caller was cancelled: the outcome stands (it may be committed)
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
