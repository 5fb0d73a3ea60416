"""Job leases on PostgreSQL (``AdvisoryLeases``) keep the contract ``FileLeases`` keeps
(tests/integration/test_job_leases.py): one holder at a time, across stores and processes, free
at once when the holder's process is killed, lost when its connection is, and a job that runs
only while its lease is held.

Real advisory locks on a real server, a fresh database per test: two ``AdvisoryLeases`` in this
process (each lease has a session of its own, so they exclude each other as two processes do),
a real child process holding a lease killed with SIGKILL, and ``pg_terminate_backend`` of a
lease's session, as an operator or a failover would end it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from service.jobs import lease_for, run_single_active
from service.jobs.advisory import AdvisoryLeases, holder_name, job_key
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


async def terminate(url: str, job: str) -> None:
    """End the session holding ``job``'s lease from the server's side (not the sessions of
    other processes' tries, which carry the same name for a moment)."""
    conn = await asyncpg.connect(url)
    try:
        ended = await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((classid::bigint << 32) | objid::bigint) = $1) AS t",
            job_key(job),
        )
    finally:
        await conn.close()
    assert ended == 1


async def test_one_holder_at_a_time_until_it_releases(url: str) -> None:
    first, second = AdvisoryLeases(url), AdvisoryLeases(url)
    assert await first.acquire("expiry-task")
    assert await first.acquire("expiry-task")  # held already: still True
    assert not await second.acquire("expiry-task")
    assert await second.acquire("refund-worker")  # another job, another lease
    assert await first.held("expiry-task")
    assert not await second.held("expiry-task")
    await first.release("expiry-task")
    assert not await first.held("expiry-task")
    assert await second.acquire("expiry-task")
    assert await second.held("refund-worker")  # releasing one job kept the other's session
    await first.close()
    await second.close()
    assert await holders(url, "expiry-task") == []


async def test_the_session_names_the_holder(url: str) -> None:
    leases = AdvisoryLeases(url)
    assert await holders(url, "refund-worker") == []
    assert await leases.acquire("refund-worker")
    [(_, name)] = await holders(url, "refund-worker")
    assert name == holder_name("refund-worker")
    assert f"pid={os.getpid()}" in name
    await leases.close()


async def test_a_terminated_session_is_a_lost_lease(url: str) -> None:
    """The server ends the lease's session: its lock is gone, another process can take it, so
    the old holder must see that it no longer holds the lease."""
    first, second = AdvisoryLeases(url), AdvisoryLeases(url)
    assert await first.acquire("expiry-task")
    await terminate(url, "expiry-task")
    assert not await first.held("expiry-task")
    assert await second.acquire("expiry-task")
    assert not await first.held("expiry-task")
    await first.close()
    await second.close()


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


def runner(url: str, name: str, running: list[str], stopped: list[str]) -> asyncio.Task[None]:
    """A process's runner of the expiry job, on leases of its own; its job, while it runs, is
    in ``running`` and, once stopped, in ``stopped``."""

    async def start() -> None:
        running.append(name)
        try:
            await asyncio.sleep(3600)
        finally:
            running.remove(name)
            stopped.append(name)

    return asyncio.create_task(
        run_single_active(AdvisoryLeases(url), "expiry-task", start, retry=0.05), name=name
    )


async def until(predicate: Callable[[], bool], within: float = 4.0) -> None:
    for _ in range(int(within / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    assert predicate()


async def cancel(*runners: asyncio.Task[None]) -> None:
    for task in runners:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_job_runs_in_one_process_and_moves_when_its_holder_stops(url: str) -> None:
    """Two runners of one job: only the lease holder's job runs; cancel that runner and the
    other starts the job within its retry interval."""
    running: list[str] = []
    stopped: list[str] = []
    first = runner(url, "first", running, stopped)
    await until(lambda: running == ["first"])
    second = runner(url, "second", running, stopped)
    await asyncio.sleep(0.3)
    assert running == ["first"]
    await cancel(first)
    await until(lambda: running == ["second"])
    await cancel(second)
    assert running == []
    assert stopped == ["first", "second"]


async def test_a_lost_lease_stops_the_job_and_the_other_takes_it(url: str) -> None:
    """The holder's session is terminated: its job stops at the next liveness check, and the
    other runner, whose tries were refused until then, starts it."""
    running: list[str] = []
    stopped: list[str] = []
    first = runner(url, "first", running, stopped)
    await until(lambda: running == ["first"])
    second = runner(url, "second", running, stopped)
    await asyncio.sleep(0.3)
    assert running == ["first"]
    await terminate(url, "expiry-task")
    await until(lambda: stopped == ["first"])  # stopped by the lost lease, not by a cancel
    await cancel(first)  # the first process goes away: the lease must reach the second
    await until(lambda: running == ["second"])
    await cancel(second)
    assert running == []
