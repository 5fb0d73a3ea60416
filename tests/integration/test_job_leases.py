"""Job leases on files (``FileLeases``), beyond the contract every lease backend keeps
(tests/integration/test_lease_contract.py: one holder at a time, a deleted lock file is a lost
lease, and the jobs they gate): the lock file names its holder, a real child process holding a
lease is killed with SIGKILL, after which the lease is free at once, and ``lease_for`` picks the
backend by the store's location.
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
from service.jobs import lease_for
from service.jobs.advisory import AdvisoryLeases
from service.jobs.leases import FileLeases, jobs_folder, read_holder
from tests.integration.cli import REPO_ROOT, environment


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return jobs_folder(tmp_path / "invoices.db")


async def test_the_lock_file_names_the_holder(folder: Path) -> None:
    leases = FileLeases(folder)
    assert read_holder(folder, "expiry-task") is None
    assert await leases.acquire("expiry-task")
    holder = read_holder(folder, "expiry-task")
    assert holder is not None
    assert (holder.job, holder.pid) == ("expiry-task", os.getpid())
    await leases.close()


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
