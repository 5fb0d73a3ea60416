"""``import_events`` on PostgreSQL: events of another log, stored unchanged under the log's lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from eventstore.copying import LogEnd, check_continuation
from eventstore.errors import ImportRefused
from eventstore.model import RecordedEvent
from eventstore.postgresql.schema import APPEND_LOCK, NOTIFY_CHANNEL
from eventstore.records import GENESIS_HASH

_COLUMNS = (
    "position",
    "event_id",
    "stream_id",
    "version",
    "type",
    "data",
    "metadata",
    "recorded_at",
    "hash",
)


@dataclass(slots=True)
class ImportOperation:
    """Insert ``events`` as they are, after checking under the lock that they continue the
    log; runs alone, and no projector runs (the copy's views are rebuilt afterwards)."""

    events: Sequence[RecordedEvent]
    batchable = False

    async def run(self, conn: asyncpg.Connection) -> int:
        """Copy; return the log's head afterwards."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            end = check_continuation(await _log_end(conn), self.events)
            try:
                # COPY: the fastest way in, and the rows are the stored text already.
                await conn.copy_records_to_table("events", records=self.events, columns=_COLUMNS)
            except asyncpg.UniqueViolationError as error:  # a stream version already taken
                raise ImportRefused(f"the events do not fit the log's streams: {error}") from error
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(end.position))
        return end.position


async def _log_end(conn: asyncpg.Connection) -> LogEnd:
    row = await conn.fetchrow(
        "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1"
    )
    return LogEnd(row[0], row[1], row[2]) if row else LogEnd(0, GENESIS_HASH, "")
