"""The event store on PostgreSQL (asyncpg): ``eventstore.EventStore`` for several processes and
nodes on one database.

Reached by ``open_store("postgresql://…")`` through ``eventstore.backends``, which calls this
module's :func:`open_url` and :func:`verify_url`. Projectors of this store are
``PostgreSQLProjector``s (``AsyncProjector[asyncpg.Connection]``); views built on it keep their
own numbered migrations with :func:`apply_migrations`, as on SQLite.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from eventstore.errors import EventStoreError
from eventstore.model import VerifyReport
from eventstore.postgresql.projection import PostgreSQLProjector, PostgreSQLReplayer
from eventstore.postgresql.schema import GUARD_TRIGGERS, Migration, apply_migrations
from eventstore.postgresql.store import PostgreSQLEventStore
from eventstore.postgresql.verification import verify_log

# Events read at a time when a whole log is verified from outside a running store.
VERIFY_PAGE = 10_000


async def open_url(url: str, *, projectors: Any = (), **options: Any) -> PostgreSQLEventStore:
    """``PostgreSQLEventStore.open(url, projectors=projectors, **options)``."""
    return await PostgreSQLEventStore.open(url, projectors=projectors, **options)


async def verify_url(url: str) -> VerifyReport:
    """Walk the hash chain of the log at ``url`` on a connection of its own, read-only: nothing
    is migrated or created, so a restored backup can be checked as it is."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as error:
        raise EventStoreError(f"cannot open event store at {url!r}: {error}") from error
    try:
        return await verify_log(conn, VERIFY_PAGE)
    finally:
        await conn.close()


__all__ = [
    "GUARD_TRIGGERS",
    "Migration",
    "PostgreSQLEventStore",
    "PostgreSQLProjector",
    "PostgreSQLReplayer",
    "apply_migrations",
    "open_url",
    "verify_url",
]
