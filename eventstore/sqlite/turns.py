"""Turns at writing for the processes that share one SQLite file.

SQLite lets one writer in at a time and makes the others wait in its busy handler, which polls:
it sleeps 1, 2, 5, 10 … up to 100 ms between tries, so a writer that finds the file locked
sleeps on past the moment it is free. With several service processes on one file (``serve
--workers N``), each commit holds the lock for its fsync, and those sleeps would cost more than
the commits. So each process's writer first takes an exclusive ``flock`` on a file beside the
database, which the kernel hands to the next waiter the moment it is let go, and only then
begins its transaction; it lets go after the commit. While it waits, its process keeps queueing
appends, and the batch it then commits takes all of them.

The flock only orders the writers of processes that take it; SQLite's own lock is still what
keeps the file consistent, for them and for any other program (the busy timeout still applies).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def turns_file(database: Path) -> Path:
    """The lock file beside ``database`` that its writers take turns on."""
    return database.with_name(f"{database.name}.write-turns")


class WriteTurns:
    """One process's place in the line of writers of one SQLite file."""

    def __init__(self, database: Path) -> None:
        self._path = turns_file(database)
        self._fd: int | None = None  # opened at the first write: a store that never writes
        # (or a file that is not a database) gets no file beside it

    def take(self) -> None:
        """Wait until no other process's writer is writing (blocks: the writer's thread)."""
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def give(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
