"""Run a background job in this process whatever the others do, started again if it fails.

For a job whose share of the work is coordinated by the job itself rather than by a lease (the
webhook sender on PostgreSQL, whose messages are claimed one by one): every process runs it.
As under ``run_single_active``, a job that ends or fails is started again a moment later, so
its runner stays alive (what ``/health/ready`` looks at) while the job recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from service.jobs.single_active import RETRY_SECONDS, raise_if_cancelled

log = structlog.get_logger("service.jobs")


async def run_in_every_process(
    job: str,
    start: Callable[[], Coroutine[Any, Any, None]],
    *,
    retry: float = RETRY_SECONDS,
) -> None:
    """Run ``start()`` in this process until cancelled, again ``retry`` after each end."""
    while True:
        log.info("job started", job=job)
        try:
            await start()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job failed", job=job)
        else:
            log.info("job ended", job=job)
        raise_if_cancelled()  # a job that swallowed a cancel is not started again: the app stops
        await asyncio.sleep(retry)
