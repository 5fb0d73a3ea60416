"""Job leases (``service.jobs``): one holder at a time, across processes, and the jobs they gate.

Real ``flock`` locks on real files: two ``FileLeases`` in this process (a lock belongs to an open
file, so they exclude each other as two processes do), and a real child process holding a lease
that is killed with SIGKILL, after which the lease is free at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eventstore import UnsupportedLocation
from service.jobs import lease_for, run_single_active
from service.jobs.advisory import AdvisoryLeases
from service.jobs.leases import FileLeases, jobs_folder, read_holder
from tests.integration.cli import REPO_ROOT, environment


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return jobs_folder(tmp_path / "invoices.db")


async def test_one_holder_at_a_time_until_it_releases(folder: Path) -> None:
    first, second = FileLeases(folder), FileLeases(folder)
    assert await first.acquire("expiry-task")
    assert await first.acquire("expiry-task")  # held already: still True
    assert not await second.acquire("expiry-task")
    assert await second.acquire("refund-worker")  # another job, another lease
    assert await first.held("expiry-task")
    assert not await second.held("expiry-task")
    await first.release("expiry-task")
    assert not await first.held("expiry-task")
    assert await second.acquire("expiry-task")
    await first.close()
    await second.close()


async def test_the_lock_file_names_the_holder(folder: Path) -> None:
    leases = FileLeases(folder)
    assert read_holder(folder, "expiry-task") is None
    assert await leases.acquire("expiry-task")
    holder = read_holder(folder, "expiry-task")
    assert holder is not None
    assert (holder.job, holder.pid) == ("expiry-task", os.getpid())
    await leases.close()


async def test_a_deleted_lock_file_is_a_lost_lease(folder: Path) -> None:
    """Someone cleans the folder: another process can now lock a new file of that name, so the
    old holder must see that it no longer holds the lease."""
    first, second = FileLeases(folder), FileLeases(folder)
    assert await first.acquire("expiry-task")
    (folder / "expiry-task.lock").unlink()
    assert not await first.held("expiry-task")
    assert await second.acquire("expiry-task")
    assert not await first.held("expiry-task")
    await first.close()
    await second.close()


async def test_a_killed_holders_lease_is_free_at_once(folder: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from pathlib import Path
        from service.jobs.leases import FileLeases
        assert asyncio.run(FileLeases(Path({str(folder)!r})).acquire("refund-worker"))
        print("held", flush=True)
        time.sleep(60)
        """
    )
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=REPO_ROOT, env=environment(), stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"held\n"
        leases = FileLeases(folder)
        assert not await leases.acquire("refund-worker")
        found = read_holder(folder, "refund-worker")
        assert found is not None
        assert found.pid == holder.pid
        holder.send_signal(signal.SIGKILL)
        await asyncio.wait_for(holder.wait(), 10)
        assert await leases.acquire("refund-worker")
        await leases.close()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


def test_leases_follow_the_store_backend(tmp_path: Path) -> None:
    assert isinstance(lease_for(str(tmp_path / "x.db")), FileLeases)
    assert isinstance(lease_for("postgresql://localhost/invoices"), AdvisoryLeases)
    with pytest.raises(UnsupportedLocation):
        lease_for("mysql://localhost/invoices")


async def test_a_job_runs_in_one_process_and_moves_when_its_holder_stops(folder: Path) -> None:
    """Two runners of one job: only the lease holder's job runs; cancel that runner (its
    process ending) and the other starts the job within its retry interval."""
    running: list[str] = []

    def job(name: str) -> asyncio.Task[None]:
        async def start() -> None:
            running.append(name)
            try:
                await asyncio.sleep(3600)
            finally:
                running.remove(name)

        return asyncio.create_task(
            run_single_active(FileLeases(folder), "expiry-task", start, retry=0.05), name=name
        )

    first = job("first")
    await asyncio.sleep(0.01)
    second = job("second")
    await asyncio.sleep(0.3)
    assert running == ["first"]
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    for _ in range(100):
        if running == ["second"]:
            break
        await asyncio.sleep(0.01)
    assert running == ["second"]
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert running == []


async def test_a_job_that_fails_lets_its_lease_go_and_is_started_again(folder: Path) -> None:
    starts = 0

    async def failing() -> None:
        nonlocal starts
        starts += 1
        raise RuntimeError("a bad moment")

    runner = asyncio.create_task(
        run_single_active(FileLeases(folder), "reconcile-task", failing, retry=0.02)
    )
    await asyncio.sleep(0.3)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert starts >= 3
    other = FileLeases(folder)
    assert await other.acquire("reconcile-task")  # the cancelled runner let it go
    await other.close()


async def test_a_lost_lease_stops_the_job(folder: Path) -> None:
    stopped = asyncio.Event()

    async def start() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    leases = FileLeases(folder)
    runner = asyncio.create_task(run_single_active(leases, "expiry-task", start, retry=0.02))
    await asyncio.sleep(0.05)
    assert await leases.held("expiry-task")
    (folder / "expiry-task.lock").unlink()
    await asyncio.wait_for(stopped.wait(), 2)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
