"""The PostgreSQL store's reads, on a pool of connections of their own (never the writer's).

Every read is one statement on a pooled connection, so it sees what was committed when it
started and never waits for the writer. Long reads go in pages of ``page_size``, each a query of
its own that starts after the last position (or version) read, so memory does not grow with the
log and no connection is held between pages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import asyncpg

from eventstore.errors import StoreClosedError
from eventstore.model import RecordedEvent
from eventstore.postgresql.schema import EVENT_COLUMNS
from eventstore.records import check_stream_id, decode_rows

# Streams per query of ``last_events``: one array parameter, so only the query's size limits it.
LAST_EVENTS_CHUNK = 1000

_STREAM_PAGE = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2"
    " ORDER BY version LIMIT $3"
)
# One index probe per stream, however long the log (``= ANY`` may be planned as a scan).
_LAST_EVENTS = (
    f"SELECT e.* FROM unnest($1::text[]) AS s(id) CROSS JOIN LATERAL"
    f" (SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = s.id"
    " ORDER BY version DESC LIMIT 1) AS e"
)


class LogReads:
    """The log's queries on the reader pool; every read after :meth:`close` raises
    ``StoreClosedError``."""

    def __init__(self, pool: asyncpg.Pool, page_size: int) -> None:
        self.pool = pool
        self._page_size = page_size
        self._closed = False

    def close(self) -> None:
        self._closed = True

    async def fetch(self, sql: str, *parameters: Any) -> list[Any]:
        """Rows of one query on a connection of the pool."""
        if self._closed:
            raise StoreClosedError("the event store is closed")
        return list(await self.pool.fetch(sql, *parameters))

    async def read_stream(self, stream_id: str, after_version: int) -> AsyncIterator[RecordedEvent]:
        check_stream_id(stream_id)
        version = after_version
        while True:
            events = decode_rows(
                await self.fetch(_STREAM_PAGE, stream_id, version, self._page_size)
            )
            for event in events:
                version = event.version
                yield event
            if len(events) < self._page_size:
                return

    async def read_range(
        self, after_position: int, up_to: int | None, types: Collection[str] | None
    ) -> AsyncIterator[RecordedEvent]:
        """The events after ``after_position`` up to ``up_to`` (if given), of ``types`` (if
        given: the others are skipped by the query), in pages."""
        conditions, bounds = ["position > $1"], list[object]()
        if up_to is not None:
            bounds.append(up_to)
            conditions.append(f"position <= ${len(bounds) + 1}")
        if types is not None:
            bounds.append(sorted(set(types)))
            conditions.append(f"type = ANY(${len(bounds) + 1}::text[])")
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(conditions)}"
            f" ORDER BY position LIMIT ${len(bounds) + 2}"
        )
        position = after_position
        while True:
            events = decode_rows(await self.fetch(sql, position, *bounds, self._page_size))
            for event in events:
                position = event.position
                yield event
            if len(events) < self._page_size:
                return

    async def stream_tail(
        self, stream_id: str, after_version: int, limit: int
    ) -> list[RecordedEvent]:
        check_stream_id(stream_id)
        return decode_rows(await self.fetch(_STREAM_PAGE, stream_id, after_version, limit))

    async def last_events(self, stream_ids: Sequence[str]) -> dict[str, RecordedEvent]:
        """One query per ``LAST_EVENTS_CHUNK`` streams."""
        for stream_id in stream_ids:
            check_stream_id(stream_id)
        names = sorted(set(stream_ids))
        last: dict[str, RecordedEvent] = {}
        for start in range(0, len(names), LAST_EVENTS_CHUNK):
            rows = await self.fetch(_LAST_EVENTS, names[start : start + LAST_EVENTS_CHUNK])
            last.update((event.stream_id, event) for event in decode_rows(rows))
        return last

    async def stream_version(self, stream_id: str) -> int:
        check_stream_id(stream_id)
        rows = await self.fetch("SELECT MAX(version) FROM events WHERE stream_id = $1", stream_id)
        return int(rows[0][0] or 0)

    async def head_position(self) -> int:
        rows = await self.fetch("SELECT MAX(position) FROM events")
        return int(rows[0][0] or 0)

    async def load_checkpoint(self, name: str) -> int:
        rows = await self.fetch("SELECT position FROM checkpoints WHERE name = $1", name)
        return int(rows[0][0]) if rows else 0
