"""Group commit (`store.coalesce.Coalescer`), pure: a lone request runs at once and alone, the
requests made while a batch runs go together into the next one, each gets its own outcome, a
failing runner fails its batch only, and a cancelled caller leaves the others' batch alone."""
from __future__ import annotations

import asyncio

import pytest

from store.coalesce import Coalescer

pytestmark = pytest.mark.asyncio


class Recorder:
    """A runner that records its batches and can be held open until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_request_runs_at_once_and_alone():
    run = Recorder()
    coalescer = Coalescer(run)
    assert await coalescer.submit(2) == 20
    assert await coalescer.submit(4) == 40
    assert run.batches == [[2], [4]]


async def test_requests_made_while_a_batch_runs_go_together_into_the_next_one():
    run = Recorder()
    run.gate.clear()
    coalescer = Coalescer(run)
    first = asyncio.ensure_future(coalescer.submit(0))
    await asyncio.sleep(0)  # the first batch is running, held at the gate
    rest = [asyncio.ensure_future(coalescer.submit(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0)
    assert run.batches == [[0]]
    run.gate.set()
    assert await first == 0 and await asyncio.gather(*rest) == [20, 40, 60]
    assert run.batches == [[0], [2, 4, 6]]
    assert (coalescer.batches, coalescer.requests) == (2, 4)


async def test_each_request_gets_its_own_outcome():
    run = Recorder()
    run.gate.clear()
    coalescer = Coalescer(run)
    blocker = asyncio.ensure_future(coalescer.submit(0))
    await asyncio.sleep(0)
    futures = [asyncio.ensure_future(coalescer.submit(i)) for i in (1, 2, 3)]
    run.gate.set()
    results = await asyncio.gather(blocker, *futures, return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert [str(r) for r in (results[1], results[3])] == ["odd 1", "odd 3"]
    assert run.batches == [[0], [1, 2, 3]]


async def test_a_batch_is_at_most_max_batch_requests():
    run = Recorder()
    run.gate.clear()
    coalescer = Coalescer(run, max_batch=2)
    futures = [asyncio.ensure_future(coalescer.submit(i)) for i in (0, 2, 4, 6, 8)]
    await asyncio.sleep(0)
    run.gate.set()
    assert await asyncio.gather(*futures) == [0, 20, 40, 60, 80]
    assert run.batches == [[0, 2], [4, 6], [8]]


async def test_a_failing_runner_fails_its_batch_and_the_next_batch_runs():
    calls = []

    async def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("the database went away")
        return items

    coalescer = Coalescer(run)
    with pytest.raises(ConnectionError):
        await coalescer.submit(1)
    assert await coalescer.submit(2) == 2


async def test_a_runner_giving_the_wrong_number_of_outcomes_fails_its_batch():
    async def run(items: list[int]) -> list[int]:
        return []

    with pytest.raises(RuntimeError, match="gave 0 outcomes"):
        await Coalescer(run).submit(1)


async def test_a_cancelled_caller_leaves_the_batch_of_the_others():
    run = Recorder()
    run.gate.clear()
    coalescer = Coalescer(run)
    blocker = asyncio.ensure_future(coalescer.submit(0))
    await asyncio.sleep(0)
    leaving = asyncio.ensure_future(coalescer.submit(2))
    staying = asyncio.ensure_future(coalescer.submit(4))
    await asyncio.sleep(0)
    leaving.cancel()
    run.gate.set()
    assert await blocker == 0 and await staying == 40
    assert leaving.cancelled()
    assert run.batches == [[0], [2, 4]]  # the leaving request was already in the batch: it ran
