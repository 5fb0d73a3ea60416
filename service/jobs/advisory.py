"""Job leases on PostgreSQL: a session-level advisory lock per job, on a connection of its own.

``pg_try_advisory_lock(key)`` never waits, belongs to the session that took it, and goes away
with that session however it ends: a process killed with ``kill -9`` or a node that lost the
network has its sessions closed by the server (at once, or when TCP keepalive gives up), and
another process's next try takes the lease. Each job's lock is taken on a connection of its own,
opened for that lease and closed with it, so releasing one job never drops another's, and the
liveness check (``held``) is that connection still answering and still holding the lock.
Several nodes on one database exclude each other the same way as processes on one machine.
Each lease's connection is named after its job, process and host (``application_name``), so
``pg_stat_activity`` shows who runs which job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket

import asyncpg
import structlog

log = structlog.get_logger("service.jobs")

# How long a liveness check or a try may take before the lease is counted as lost / not taken.
CHECK_TIMEOUT_SECONDS = 2.0


def job_key(job: str) -> int:
    """A stable signed 64-bit key for ``job`` (advisory locks are keyed by bigint), in a range
    of its own so it never meets the event store's append and migration locks."""
    digest = hashlib.sha256(f"invoice-service job {job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def holder_name(job: str) -> str:
    """The ``application_name`` of a lease's connection: which process on which host runs
    ``job``, for an operator (``SELECT application_name FROM pg_stat_activity``) and tests."""
    return f"invoice-job {job} pid={os.getpid()} host={socket.gethostname()}"[:63]


class AdvisoryLeases:
    """The leases of one process's jobs on the PostgreSQL database at ``url``."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._held: dict[str, asyncpg.Connection] = {}

    async def acquire(self, job: str) -> bool:
        if job in self._held:
            return True
        try:
            conn = await asyncpg.connect(
                self._url,
                timeout=CHECK_TIMEOUT_SECONDS,
                server_settings={"application_name": holder_name(job)},
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            log.warning("job lease: database unreachable", job=job, error=str(error))
            return False
        try:
            taken = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", job_key(job), timeout=CHECK_TIMEOUT_SECONDS
            )
        except (OSError, asyncpg.PostgresError, TimeoutError):
            taken = False
        if not taken:
            await _close(conn)
            return False
        self._held[job] = conn
        return True

    async def held(self, job: str) -> bool:
        conn = self._held.get(job)
        if conn is None or conn.is_closed():
            return False
        try:
            # The lock is the session's: the session answering and listing it is the lease.
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND granted"
                    " AND ((classid::bigint << 32) | objid::bigint) = $1)",
                    job_key(job),
                    timeout=CHECK_TIMEOUT_SECONDS,
                )
            )
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            # A check that timed out leaves its query in progress on the connection: the next
            # one is refused ("another operation is in progress"). The lease is lost either way.
            asyncpg.InternalClientError,
            TimeoutError,
        ):
            return False

    async def release(self, job: str) -> None:
        conn = self._held.pop(job, None)
        if conn is not None:
            await _close(conn)  # the session's end drops its lock

    async def close(self) -> None:
        for job in list(self._held):
            await self.release(job)


async def _close(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await asyncio.wait_for(conn.close(), CHECK_TIMEOUT_SECONDS)
    if not conn.is_closed():
        conn.terminate()
