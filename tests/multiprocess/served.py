"""A real ``python -m service serve --workers N`` for the multi-process tests, and its helpers.

The service runs as users run it (from the project folder, development mode, the sandbox
gateway), on a free port and a fresh SQLite file or a PostgreSQL database (several nodes share
one). Requests go through an aiohttp client that
opens a new connection for every request (``force_close``), so the kernel's ``SO_REUSEPORT``
hashing spreads them over the worker processes. The ledger and the log are read straight from
the database (``tests.multiprocess.databases``), as any other process may read it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.servers import Server, ServerFailed, child_environment, free_port
from tests.multiprocess.databases import Database, PostgreSQLDatabase, SQLiteFile, assert_balanced

PRICE = 15100  # checkout_body(stores=1): 10000 + 5000 freight + 100 insurance
SELLER_SHARE, COMMISSION, INSURANCE = 14000, 1000, 100
Answer = tuple[int, dict[str, Any]]


class Service:
    """One ``serve --workers N`` process tree (or one node of several), its database and a
    client for it."""

    def __init__(self, server: Server, database: Database) -> None:
        self.server, self.database = server, database
        self.base_url = server.base_url
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self.tokens: dict[str, str] = {}

    async def close(self) -> None:
        await self.http.close()

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        async with self.http.request(
            method, self.base_url + path, json=body, headers=headers
        ) as response:
            return response.status, await response.json(content_type=None)

    async def bearer(self, username: str) -> dict[str, str]:
        if username not in self.tokens:
            status, body = await self.request(
                "POST", "/auth", {"username": username, "password": username}
            )
            assert status == 200, body
            self.tokens[username] = body["token"]
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    @staticmethod
    def basic(username: str) -> dict[str, str]:
        """Basic credentials of a dev account (its password is its name)."""
        encoded = base64.b64encode(f"{username}:{username}".encode()).decode()
        return {"Authorization": f"Basic {encoded}"}

    async def checkout(self, buyer: str, body: dict[str, Any]) -> Answer:
        return await self.request("POST", "/payment-checkout", body, await self.bearer(buyer))

    async def platform(self, action: str, **body: Any) -> Answer:
        return await self.request(
            "POST", f"/invoice/{action}", {"platform": "ONMARKET", **body}, self.basic("onmarket")
        )

    async def top_up(self, username: str, amount: int) -> None:
        status, body = await self.request(
            "POST", "/balance/topup", {"username": username, "amount": amount}, self.basic("admin")
        )
        assert status == 200, body

    async def balance(self, username: str) -> int:
        status, body = await self.request("GET", "/balance", headers=await self.bearer(username))
        assert status == 200, body
        return int(body["balance"])

    async def health_pid(self) -> int:
        status, body = await self.request("GET", "/health")
        assert status == 200, body
        return int(body["pid"])

    # -- the database, read as another process would (tests/multiprocess/databases.py) -------

    async def accounts(self) -> dict[str, int]:
        return await self.database.accounts()

    async def event_types(self, invoice: str) -> list[str]:
        return await self.database.event_types(invoice)

    async def assert_balanced(self) -> None:
        await assert_balanced(self.database)

    async def verify(self) -> None:
        await self.database.verify()

    async def lease_holder(self, job: str) -> int | None:
        return await self.database.lease_holder(job)

    # -- the processes --------------------------------------------------------------------------

    def worker_pids(self) -> set[int]:
        """The supervisor's live worker processes (not multiprocessing's resource tracker)."""
        pids = set()
        for task in Path(f"/proc/{self.server.pid}/task").iterdir():
            children = (task / "children").read_text().split()
            for child in map(int, children):
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"spawn_main" in cmdline:
                    pids.add(child)
        return pids


def start(
    tmp_path: Path, workers: int, database: str | None = None, **settings: str
) -> tuple[Server, Database]:
    """``python -m service serve --workers N`` ready, on ``database`` (a ``postgresql://`` URL
    that several may share) or else a fresh SQLite file in ``tmp_path``."""
    shared: Database = (
        PostgreSQLDatabase(database)
        if database is not None
        else SQLiteFile(tmp_path / "invoices.db")
    )
    for _ in range(3):  # another program may take the free port before the service binds it
        port = free_port()
        env = child_environment(
            {
                "INVOICE_MODE": "development",
                "INVOICE_GATEWAY": "sandbox",
                "INVOICE_LOG_FORMAT": "json",
                "INVOICE_REFUND_DELAY_SECONDS": "0",
                **{f"INVOICE_{name.upper()}": value for name, value in settings.items()},
            }
        )
        argv = [
            *(sys.executable, "-m", "service", "serve", "--workers", str(workers)),
            *("--port", str(port), "--db", shared.location),
        ]
        server = Server(f"serve --workers {workers}", argv, env, port, tmp_path / f"{port}.log")
        try:
            server.wait_ready(60)
            return server, shared
        except ServerFailed:
            server.stop()
            if "address already in use" not in server.log_path.read_text().lower():
                raise
    raise AssertionError("no free port")


async def wait_for(predicate: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Poll the async ``predicate`` until true; the seconds it took (fails after ``within``)."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def wait_until(predicate: Any, within: float, what: str) -> float:
    """Poll ``predicate`` until true; the seconds it took (fails after ``within``)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) is dead too.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_with(server: Server, signum: int, timeout: float = 30) -> int:
    server.process.send_signal(signum)
    return server.process.wait(timeout)
