"""Job leases: which process runs a background job (refunds, expiry, reconciliation) right now.

Every service process starts every job, but a job runs only in the process holding its lease;
the others try to take it every second, so a holder that dies hands its jobs over within a few
seconds. A lease is held until released or until its process dies, and never needs renewing:
the lock is the operating system's or the database's, so it goes away with the process or its
connection, not after a timeout that a slow process could overrun.

A lease is an optimisation of the work, not what keeps it correct: every job decides on streams
with optimistic concurrency, and the refund worker moves its checkpoint forward in the same
append as the refund's effects (a stale holder's append loses with ``CheckpointConflict``), so
two holders for a moment (a lease lost while its job was mid-append) do nothing twice.

One implementation per store backend, chosen by ``lease_for(database)`` from the store's
location, as ``eventstore.open_store`` chooses the store:

- an SQLite file: ``FileLeases``, ``flock`` on ``<database>.jobs/<job>.lock`` beside it. All
  the processes sharing the file are on its machine, so a lock on a file beside it is theirs to
  share; the kernel drops it when the process dies, however it dies.
- PostgreSQL: ``AdvisoryLeases`` (``service.jobs.advisory``), ``pg_try_advisory_lock(key of the
  job)`` on a dedicated connection held open while the lease is; liveness is that connection
  still answering and holding the lock, and a dead process's lock goes with its session, on
  whichever node it ran.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from eventstore import UnsupportedLocation
from eventstore.backends import is_postgresql


class JobLeases(Protocol):
    """The leases of one process's jobs, one per job name."""

    async def acquire(self, job: str) -> bool:
        """Take ``job``'s lease if nobody holds it; never waits. True if this process holds it
        now (also if it held it already)."""

    async def held(self, job: str) -> bool:
        """Whether this process still holds ``job``'s lease (the liveness check): False once it
        was released or lost, and the job must stop."""

    async def release(self, job: str) -> None:
        """Let go of ``job``'s lease (nothing if not held)."""

    async def close(self) -> None:
        """Release every lease this process holds."""


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds a lease, as its lock file says (for operators, and tests)."""

    job: str
    pid: int
    host: str
    since: str


def lease_for(database: str) -> JobLeases:
    """The leases that go with the store at ``database`` (a path or a URL)."""
    if is_postgresql(database):
        from service.jobs.advisory import AdvisoryLeases

        return AdvisoryLeases(database)
    if "://" in database:
        raise UnsupportedLocation(f"no job leases for {database.partition('://')[0]}:// stores")
    return FileLeases(jobs_folder(database))


def jobs_folder(database: str | os.PathLike[str]) -> Path:
    """The folder beside an SQLite database that holds its jobs' lock files."""
    return Path(f"{os.fspath(database)}.jobs")


def read_holder(folder: Path, job: str) -> LeaseHolder | None:
    """The last holder written into ``job``'s lock file; None if nobody took it yet. The holder
    may have died since: the lock, not the text, says whether it is held."""
    try:
        text = (folder / f"{job}.lock").read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ValueError):  # no file yet, or a new holder writing it right now
        return None
    return LeaseHolder(data["job"], data["pid"], data["host"], data["since"])


class FileLeases:
    """``flock`` leases on ``<folder>/<job>.lock``. A lock belongs to an open file, so two
    stores in one process (tests) exclude each other just as two processes do."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._held: dict[str, int] = {}  # job -> the descriptor holding its lock

    async def acquire(self, job: str) -> bool:
        if job in self._held:
            return True
        path = self._folder / f"{job}.lock"
        self._folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process holds it
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._held[job] = fd
        _write_holder(fd, job)
        return True

    async def held(self, job: str) -> bool:
        fd = self._held.get(job)
        if fd is None:
            return False
        # The lock is on this file: if the file was deleted or replaced (someone cleaned the
        # folder), another process can lock the new one, so this lease no longer excludes it.
        try:
            mine, there = os.fstat(fd), (self._folder / f"{job}.lock").stat()
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    async def release(self, job: str) -> None:
        fd = self._held.pop(job, None)
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file drops its flock

    async def close(self) -> None:
        for job in list(self._held):
            await self.release(job)


def _write_holder(fd: int, job: str) -> None:
    """Say in the lock file who holds it, for an operator asking which process runs a job."""
    holder = {
        "job": job,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):  # only information: a full disk must not stop the job
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
