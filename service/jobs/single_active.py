"""Run a background job only while this process holds its lease (``leases``).

Each process runs ``run_single_active`` for each job. The one that takes the lease starts the
job and checks every ``RETRY_SECONDS`` that it still holds it; the others try to take it as
often, so when the holder dies (its lock goes with it) another one starts the job within about
that time. A job that ends or fails lets its lease go and is started again (by whoever takes
the lease) a moment later: a failing job must not keep the lease from a process where it works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from service.jobs.leases import JobLeases

log = structlog.get_logger("service.jobs")

# How often a process without a job's lease tries to take it, and the holder checks that it
# still has it. A dead holder's jobs are taken over within about this time (well within 5 s).
RETRY_SECONDS = 1.0


async def run_single_active(
    leases: JobLeases,
    job: str,
    start: Callable[[], Coroutine[Any, Any, None]],
    *,
    retry: float = RETRY_SECONDS,
) -> None:
    """Run ``start()`` whenever this process holds ``job``'s lease, until cancelled."""
    while True:
        if await leases.acquire(job):
            log.info("job lease taken", job=job)
            try:
                await _run_while_held(leases, job, start, retry)
            finally:
                await leases.release(job)
        raise_if_cancelled()
        await asyncio.sleep(retry)


def raise_if_cancelled() -> None:
    """Raise this task's cancellation if an await of a lease swallowed it.

    An await can lose a cancel and return normally (Python 3.11's ``asyncio.wait_for`` does
    when the awaited thing completes in the same loop turn as the cancel, bpo-42130; a database
    driver's connect or query may too). The job's loop then ran on for ever, and the app's
    cleanup, waiting for it, hung (seen when lease sessions were ended by the server as the app
    stopped). The task still counts the request (``Task.cancelling()``): honour it each turn."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError


async def _run_while_held(
    leases: JobLeases,
    job: str,
    start: Callable[[], Coroutine[Any, Any, None]],
    retry: float,
) -> None:
    task = asyncio.create_task(start(), name=job)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=retry)
            if done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("job failed", job=job, exc_info=task.exception())
                else:
                    log.info("job ended", job=job)
                return
            held = await leases.held(job)
            raise_if_cancelled()
            if not held:
                log.warning("job lease lost: stopping the job", job=job)
                return
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # The job's end, as asked; a cancel of this task itself that arrived meanwhile
                # (the app stopping just as a lease was lost) goes on.
                raise_if_cancelled()
