"""The PostgreSQL backend of the contract suite: stores on a database of the test's own.

Each backend creates a uniquely named database (``es_<uuid hex>``) through an admin connection to
the server named by ``INVOICE_TEST_POSTGRES`` (default: the local server's ``postgres`` database
as user ``postgres``) and drops it at :meth:`dispose`. An unreachable server fails the test with
a message saying so: PostgreSQL tests never skip.

The ``Backend`` protocol's hands behind the store's back are synchronous; they run their queries
on a connection of their own in a thread with its own event loop (``run``), as another client
of the database would.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import pytest

from eventstore import RecordedEvent
from eventstore.postgresql import GUARD_TRIGGERS, PostgreSQLEventStore
from eventstore.postgresql.reads import LAST_EVENTS_CHUNK
from tests.contract.backends import Change, OfferedRules, TotalsRules

ADMIN_URL = os.environ.get("INVOICE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

T = TypeVar("T")


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``work()`` makes to its end on a thread and event loop of its own, and
    return its result (or raise its error) here."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, asyncio.run(_awaited(work))))
        except BaseException as error:
            outcome.append((False, error))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


async def _awaited(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def database_url(name: str) -> str:
    """The URL of database ``name`` on the admin URL's server."""
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def admin_connection() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({error}); the PostgreSQL tests need a"
            " server (start it, or set INVOICE_TEST_POSTGRES to an admin URL)",
            pytrace=False,
        )


def create_database() -> str:
    """A new, empty database of a unique name; its name."""
    name = f"es_{uuid.uuid4().hex}"
    admin_statement(f"CREATE DATABASE {name}")
    return name


def drop_database(name: str) -> None:
    admin_statement(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def admin_statement(statement: str) -> None:
    """Run one statement on the admin connection (databases, roles)."""

    async def execute() -> None:
        admin = await admin_connection()
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    run(execute)


class PostgreSQLTotals(TotalsRules):
    """The ``totals`` view in a table of the store's database."""

    async def setup(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS totals (stream_id TEXT PRIMARY KEY, total BIGINT NOT NULL)"
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM totals")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        # Wait off the event loop, so that the store's readers go on answering meanwhile.
        await asyncio.to_thread(self.pause.wait, 5)
        await conn.executemany(
            "INSERT INTO totals VALUES ($1, $2) ON CONFLICT (stream_id)"
            " DO UPDATE SET total = totals.total + excluded.total",
            self.amounts(events),
        )


class PostgreSQLOffered(OfferedRules):
    """The ``offered`` view in a table of the store's database."""

    async def setup(self, conn: asyncpg.Connection) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS offered (position BIGINT PRIMARY KEY)")

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM offered")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        await conn.executemany("INSERT INTO offered VALUES ($1)", [(e.position,) for e in events])


class PostgreSQLBackend:
    """Opens stores on a database of its own, and reaches that database behind their back."""

    name = "postgresql"
    last_events_chunk = LAST_EVENTS_CHUNK
    refused: type[Exception] = asyncpg.PostgresError

    def __init__(self) -> None:
        self.database = create_database()

    @property
    def location(self) -> str:
        return database_url(self.database)

    async def open(self, **options: Any) -> PostgreSQLEventStore:
        return await PostgreSQLEventStore.open(self.location, **options)

    def dispose(self) -> None:
        drop_database(self.database)

    def stored_text(self, position: int) -> tuple[str, str, str]:
        ((data, metadata, recorded_at),) = self.rows(
            "SELECT data, metadata, recorded_at FROM events WHERE position = $1", position
        )
        return data, metadata, recorded_at

    def tamper_data(self, position: int, data_json: str) -> None:
        self.tamper(f"UPDATE events SET data = '{data_json}' WHERE position = {int(position)}")

    def change_event(self, change: Change, position: int) -> None:
        statement = {
            "update": "UPDATE events SET data = '{}' WHERE position = $1",
            "delete": "DELETE FROM events WHERE position = $1",
        }[change]
        self.rows(statement, position)

    def totals_view(self) -> PostgreSQLTotals:
        return PostgreSQLTotals()

    def totals(self) -> dict[str, int]:
        return {stream: total for stream, total in self.rows("SELECT stream_id, total FROM totals")}

    def clear_totals(self) -> None:
        self.rows("DELETE FROM totals")

    def offered_view(self) -> PostgreSQLOffered:
        return PostgreSQLOffered()

    def offered(self) -> list[int]:
        return [position for (position,) in self.rows("SELECT position FROM offered ORDER BY 1")]

    # -- for the PostgreSQL-only tests -------------------------------------------------------

    def rows(self, query: str, *parameters: object) -> list[Any]:
        """The rows of one statement run by a plain client of the database."""

        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(self.location)
            try:
                return [tuple(row) for row in await conn.fetch(query, *parameters)]
            finally:
                await conn.close()

        return run(fetch)

    def tamper(self, *statements: str) -> None:
        """Run ``statements`` with the log's guard triggers dropped, as someone with full
        access to the database could."""
        drops = [f"DROP TRIGGER IF EXISTS {trigger} ON events" for trigger in GUARD_TRIGGERS]
        for statement in [*drops, *statements]:
            self.rows(statement)
