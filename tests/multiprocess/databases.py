"""The database of a running service, read as another process would: an SQLite file (read-only)
or a PostgreSQL database (asyncpg, one connection per read). The multi-process and multi-node
tests ask the same questions of both: the ledger's accounts, an invoice's events, whether the
ledger balanced all along, whether the log verifies, and which process holds a job's lease.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from bench.servers import child_environment
from service.jobs.advisory import job_key
from service.jobs.leases import jobs_folder, read_holder

# Σ of each buyer's and escrow's postings in log order never below 0 (a running balance), as
# (account, lowest running balance) rows: none if no such account ever went negative.
NEGATIVE_RUNNING_BALANCES = (
    "SELECT account, MIN(running) FROM ("
    "  SELECT account, SUM(amount) OVER ("
    "    PARTITION BY account ORDER BY position, line"
    "    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running"
    "  FROM ledger_entries WHERE account LIKE 'buyer:%' OR account LIKE 'escrow:%'"
    ") AS t GROUP BY account HAVING MIN(running) < 0"
)


class Database(Protocol):
    location: str

    async def accounts(self) -> dict[str, int]:
        """Every ledger account that holds money."""

    async def event_types(self, invoice: str) -> list[str]:
        """The types of ``invoice``'s events, in order."""

    async def negative_running_balances(self) -> list[tuple[str, int]]: ...

    async def verify(self) -> None:
        """The log's hash chain and guards verify (and its views, where the CLI checks them)."""

    async def lease_holder(self, job: str) -> int | None:
        """The pid of the process holding ``job``'s lease; None if nobody holds it."""


async def assert_balanced(database: Database) -> None:
    """Σ of the whole ledger is 0, and no buyer or escrow ever went below 0."""
    accounts = await database.accounts()
    assert sum(accounts.values()) == 0, accounts
    negative = await database.negative_running_balances()
    assert negative == [], negative


class SQLiteFile:
    """A service's SQLite file; ``verify`` is ``python -m service verify --db <file>``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            yield conn
        finally:
            conn.close()

    def _rows(self, sql: str, *args: Any) -> list[Any]:
        with self._read() as conn:
            return conn.execute(sql, args).fetchall()

    async def accounts(self) -> dict[str, int]:
        rows = self._rows("SELECT account, balance FROM account_balances")
        return {account: balance for account, balance in rows if balance}

    async def event_types(self, invoice: str) -> list[str]:
        rows = self._rows(
            "SELECT type FROM events WHERE stream_id = ? ORDER BY version", f"invoice-{invoice}"
        )
        return [kind for (kind,) in rows]

    async def negative_running_balances(self) -> list[tuple[str, int]]:
        return [tuple(row) for row in self._rows(NEGATIVE_RUNNING_BALANCES)]

    async def verify(self) -> None:
        await verify_with_the_cli(self.location, self.path.parent)

    async def lease_holder(self, job: str) -> int | None:
        holder = read_holder(jobs_folder(self.path), job)
        return None if holder is None else holder.pid


async def verify_with_the_cli(location: str, workdir: Path) -> None:
    """``python -m service verify --db LOCATION``, as an operator runs it: the hash chain, the
    guards, and every view against a fresh replay of the log."""
    done = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "verify", "--db", location),
        cwd=workdir,
        env=child_environment({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(done.communicate(), 120)
    assert done.returncode == 0, output.decode()
    assert b"views ok" in output, output.decode()


class PostgreSQLDatabase:
    """A service's PostgreSQL database, shared by its nodes."""

    def __init__(self, url: str) -> None:
        self.location = url

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.location)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def accounts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT account, balance FROM account_balances")
        return {row["account"]: row["balance"] for row in rows if row["balance"]}

    async def event_types(self, invoice: str) -> list[str]:
        rows = await self._fetch(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", f"invoice-{invoice}"
        )
        return [row["type"] for row in rows]

    async def negative_running_balances(self) -> list[tuple[str, int]]:
        return [tuple(row) for row in await self._fetch(NEGATIVE_RUNNING_BALANCES)]

    async def verify(self) -> None:
        await verify_with_the_cli(self.location, Path(tempfile.gettempdir()))

    async def lease_holder(self, job: str) -> int | None:
        """From the session holding the job's advisory lock: its ``application_name`` names the
        process (``invoice-job <job> pid=<pid> host=<host>``)."""
        rows = await self._fetch(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
            job_key(job),
        )
        if not rows:
            return None
        name = rows[0]["application_name"]
        return int(name.split(" pid=", 1)[1].split()[0])

    async def webhook_claimants(self) -> dict[str, int]:
        """The webhook messages claimed now (live claims), each with its sender's pid (a
        claimant is ``host:pid:token``, ``service.webhooks.claims.claimant_id``)."""
        rows = await self._fetch(
            "SELECT message, claimed_by FROM webhook_claims WHERE claimed_until > now()"
        )
        return {row["message"]: int(row["claimed_by"].split(":")[1]) for row in rows}
