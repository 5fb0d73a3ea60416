"""Job leases on PostgreSQL (``AdvisoryLeases``), beyond the contract every lease backend keeps
(tests/integration/test_lease_contract.py, which also ends a lease's session with
``pg_terminate_backend``, as an operator or a failover would): each lease's session is named
after its holder and goes when the leases close, and a lease is free at once when the holder's
process is killed.

Real advisory locks on a real server, a fresh database per test, and a real child process
holding a lease killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.jobs import lease_for
from service.jobs.advisory import AdvisoryLeases, holder_name
from tests.integration.cli import REPO_ROOT, environment
from tests.pgdb import fresh_database


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_database("leases") as database:
        yield database


async def holders(url: str, job: str) -> list[tuple[int, str]]:
    """(pid, application_name) of the sessions named after ``job``'s lease."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE $1",
            f"invoice-job {job} %",
        )
    finally:
        await conn.close()
    return [(row["pid"], row["application_name"]) for row in rows]


async def test_closed_leases_leave_no_session_behind(url: str) -> None:
    first, second = AdvisoryLeases(url), AdvisoryLeases(url)
    assert await first.acquire("expiry-task")
    assert await second.acquire("refund-worker")
    await first.release("expiry-task")
    await first.close()
    await second.close()
    assert await holders(url, "expiry-task") == []
    assert await holders(url, "refund-worker") == []


async def test_the_session_names_the_holder(url: str) -> None:
    leases = AdvisoryLeases(url)
    assert await holders(url, "refund-worker") == []
    assert await leases.acquire("refund-worker")
    [(_, name)] = await holders(url, "refund-worker")
    assert name == holder_name("refund-worker")
    assert f"pid={os.getpid()}" in name
    await leases.close()


async def test_a_killed_holders_lease_is_free_at_once(url: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, time
        from service.jobs.advisory import AdvisoryLeases
        leases = AdvisoryLeases({url!r})
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(leases.acquire("refund-worker"))
        print("held", flush=True)
        time.sleep(60)
        """
    )
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=REPO_ROOT, env=environment(), stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"held\n"
        leases = AdvisoryLeases(url)
        assert not await leases.acquire("refund-worker")
        [(_, name)] = await holders(url, "refund-worker")
        assert f"pid={holder.pid} " in name
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(holder.wait(), 10)
        # The server sees the socket close and ends the session; its lock goes with it.
        for _ in range(100):
            if await leases.acquire("refund-worker"):
                break
            await asyncio.sleep(0.02)
        assert await leases.held("refund-worker")
        await leases.close()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


def test_leases_follow_the_store_backend(url: str) -> None:
    assert isinstance(lease_for(url), AdvisoryLeases)
