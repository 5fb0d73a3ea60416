"""The contract every job-lease backend keeps (``service.jobs.JobLeases``), run on each: one
holder at a time until it releases, a lease lost behind its holder's back is seen as lost, and a
job run by ``run_single_active`` runs only while its lease is held and moves to another runner
when its holder stops, fails or loses the lease.

``FileLeases`` holds real ``flock`` locks on real files; ``AdvisoryLeases`` real advisory locks
on a real server, in a fresh database per test. Two lease objects in this process exclude each
other as two processes do (a lock belongs to an open file, or to a session). How each backend
loses a lease (a deleted lock file; a terminated session) and what only one backend does live in
tests/integration/test_job_leases.py and test_advisory_leases.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from service.jobs import JobLeases, run_single_active
from service.jobs.advisory import AdvisoryLeases, job_key
from service.jobs.leases import FileLeases, jobs_folder
from tests.pgdb import fresh_database


@dataclass(frozen=True, slots=True)
class LeaseBackend:
    make: Callable[[], JobLeases]  # a new holder, as another process would be
    lose: Callable[[str], Awaitable[None]]  # end the job's lease behind its holder's back


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


@pytest.fixture(params=["file", "advisory"])
async def leases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LeaseBackend]:
    if request.param == "file":
        folder = jobs_folder(tmp_path / "invoices.db")

        async def delete_lock_file(job: str) -> None:
            (folder / f"{job}.lock").unlink()

        yield LeaseBackend(lambda: FileLeases(folder), delete_lock_file)
        return
    async with fresh_database("leases") as url:

        async def terminate_session(job: str) -> None:
            await terminate(url, job)

        yield LeaseBackend(lambda: AdvisoryLeases(url), terminate_session)


async def test_one_holder_at_a_time_until_it_releases(leases: LeaseBackend) -> None:
    first, second = leases.make(), leases.make()
    assert await first.acquire("expiry-task")
    assert await first.acquire("expiry-task")  # held already: still True
    assert not await second.acquire("expiry-task")
    assert await second.acquire("refund-worker")  # another job, another lease
    assert await first.held("expiry-task")
    assert not await second.held("expiry-task")
    await first.release("expiry-task")
    assert not await first.held("expiry-task")
    assert await second.acquire("expiry-task")
    assert await second.held("refund-worker")  # releasing one job kept the other's lease
    await first.close()
    await second.close()


async def test_a_lease_lost_behind_its_holders_back_is_lost(leases: LeaseBackend) -> None:
    """Someone deletes the lock file, or the server ends the session: another process can now
    take the lease, so the old holder must see that it no longer holds it."""
    first, second = leases.make(), leases.make()
    assert await first.acquire("expiry-task")
    await leases.lose("expiry-task")
    assert not await first.held("expiry-task")
    assert await second.acquire("expiry-task")
    assert not await first.held("expiry-task")
    await first.close()
    await second.close()


# -- the jobs they gate ----------------------------------------------------------------------


def runner(
    leases: LeaseBackend, name: str, running: list[str], stopped: list[str]
) -> asyncio.Task[None]:
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
        run_single_active(leases.make(), "expiry-task", start, retry=0.05), name=name
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


async def test_a_job_runs_in_one_process_and_moves_when_its_holder_stops(
    leases: LeaseBackend,
) -> None:
    """Two runners of one job: only the lease holder's job runs; cancel that runner (its
    process ending) and the other starts the job within its retry interval."""
    running: list[str] = []
    stopped: list[str] = []
    first = runner(leases, "first", running, stopped)
    await until(lambda: running == ["first"])
    second = runner(leases, "second", running, stopped)
    await asyncio.sleep(0.3)
    assert running == ["first"]
    await cancel(first)
    await until(lambda: running == ["second"])
    await cancel(second)
    assert running == []
    assert stopped == ["first", "second"]


async def test_a_job_that_fails_lets_its_lease_go_and_is_started_again(
    leases: LeaseBackend,
) -> None:
    starts = 0

    async def failing() -> None:
        nonlocal starts
        starts += 1
        raise RuntimeError("a bad moment")

    task = asyncio.create_task(
        run_single_active(leases.make(), "reconcile-task", failing, retry=0.02)
    )
    await asyncio.sleep(0.3)
    await cancel(task)
    assert starts >= 3
    other = leases.make()
    assert await other.acquire("reconcile-task")  # the cancelled runner let it go
    await other.close()


async def test_a_lost_lease_stops_the_job_and_the_other_takes_it(leases: LeaseBackend) -> None:
    """The holder's lease is lost: its job stops at the next liveness check, and the other
    runner, whose tries were refused until then, starts it."""
    running: list[str] = []
    stopped: list[str] = []
    first = runner(leases, "first", running, stopped)
    await until(lambda: running == ["first"])
    second = runner(leases, "second", running, stopped)
    await asyncio.sleep(0.3)
    assert running == ["first"]
    await leases.lose("expiry-task")
    await until(lambda: stopped == ["first"])  # stopped by the lost lease, not by a cancel
    await cancel(first)  # the first process goes away: the lease must reach the second
    await until(lambda: running == ["second"])
    await cancel(second)
    assert running == []
