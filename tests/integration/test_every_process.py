"""``run_in_every_process``: the runner of a job that every process runs (the webhook sender on
PostgreSQL) starts it again after it fails or ends, and stops when cancelled."""

from __future__ import annotations

import asyncio
import contextlib

from service.jobs import run_in_every_process


async def test_a_failing_job_is_started_again_and_the_runner_stays_alive() -> None:
    starts = 0
    running = asyncio.Event()

    async def job() -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise RuntimeError("the first start fails")
        if starts == 2:
            return  # the second ends
        running.set()
        await asyncio.Event().wait()

    runner = asyncio.create_task(run_in_every_process("job", job, retry=0.01))
    async with asyncio.timeout(5):
        await running.wait()
    assert starts == 3
    assert not runner.done()

    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    assert runner.cancelled()


async def test_a_job_that_swallows_the_cancel_is_not_started_again() -> None:
    """A job that returns normally while its runner is being cancelled (an await that lost
    the cancel): the runner ends, rather than starting the job again for ever."""
    starts = 0
    started = asyncio.Event()

    async def swallowing() -> None:
        nonlocal starts
        starts += 1
        started.set()
        if starts > 1:  # started again: this one ends when cancelled, so the test can stop
            await asyncio.Event().wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    runner = asyncio.create_task(run_in_every_process("job", swallowing, retry=0.01))
    await started.wait()
    runner.cancel()
    await asyncio.wait([runner], timeout=2)  # not awaited: a runner going on would hang it
    try:
        assert runner.done()
        assert starts == 1
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
