"""GET /health/live and GET /health/ready on the real app: ready while the database answers
and every background job's runner is alive; 503 NOT_READY naming a job whose runner ended.
(The database gone: tests/multiprocess/test_operations.py drops a PostgreSQL database.)"""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from service.http.keys import JOBS
from tests.e2e.conftest import Api

# On PostgreSQL the webhook sender's runner is ``run_in_every_process``, listed the same.
pytestmark = pytest.mark.backends("sqlite", "postgresql")


async def test_live_and_ready_while_everything_runs(api: Api) -> None:
    response = await api.client.get("/health/live")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "pid": os.getpid()}
    response = await api.client.get("/health/ready")
    assert response.status == 200
    assert await response.json() == {
        "status": "ready",
        "pid": os.getpid(),
        "jobs": ["expiry-task", "refund-worker", "webhook-outbox", "webhook-sender"],
    }


async def test_a_job_runner_that_ended_makes_the_process_not_ready(api: Api) -> None:
    """The expiry task's runner ends (as when its lease store fails): 503 naming it, while
    liveness still answers."""
    runner = api.client.app[JOBS]["expiry-task"]
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    response = await api.client.get("/health/ready")
    assert response.status == 503
    assert await response.json() == {
        "message": "Not ready",
        "code": "NOT_READY",
        "errors": {"jobs": ["expiry-task is not running"]},
    }
    assert (await api.client.get("/health/live")).status == 200
