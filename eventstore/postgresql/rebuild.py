"""Rebuilding the inline views on PostgreSQL: empty them and replay the whole log into them.

One transaction, under the log's lock: appends of every process wait for it (their views would
otherwise be folded into rows the rebuild is replacing) and readers see the old views until it
commits, since views are emptied with their ``reset`` (a ``DELETE``), not ``TRUNCATE``, which
would lock readers out. The log is read through a server-side cursor in pages of ``page_size``
of the events some projector reads (``Projector.reads``), so memory stays flat however long the
log; each page goes to the projector's own replayer if it makes one, else to its ``apply``.
A projector's ``tables`` are not used here: every view is emptied by its ``reset``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from eventstore.interface import Progress
from eventstore.postgresql.projection import (
    PostgreSQLProjector,
    PostgreSQLReplayer,
    selection_sql,
    union_of_reads,
)
from eventstore.postgresql.schema import APPEND_LOCK, EVENT_COLUMNS
from eventstore.records import decode_rows


@dataclass(slots=True)
class RebuildOperation:
    """Replay the whole log into every view, emptied first, in one transaction."""

    projectors: Sequence[PostgreSQLProjector]
    page_size: int
    progress: Progress | None
    batchable = False

    async def run(self, conn: asyncpg.Connection) -> int:
        """Replay; return the number of events in the log replayed (its head position)."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            head = int(await conn.fetchval("SELECT COALESCE(MAX(position), 0) FROM events"))
            for projector in self.projectors:
                await projector.reset(conn)
            await replay(conn, self.projectors, head, self.page_size, self.progress)
        return head


async def replay(
    conn: asyncpg.Connection,
    projectors: Sequence[PostgreSQLProjector],
    up_to: int,
    page_size: int,
    progress: Progress | None,
    *,
    source: asyncpg.Connection | None = None,
) -> None:
    """Read the events ``projectors`` read up to position ``up_to`` through a cursor, in pages,
    and apply each page to every projector, on ``conn`` (inside a transaction). The log is read
    on ``source`` when given (a snapshot of another transaction, also inside one), else on
    ``conn``."""
    position = 0
    if projectors:
        selection = union_of_reads(projectors)
        where, parameters = ("", []) if selection is None else selection_sql(selection, 2)
        query = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position <= $1"
            f"{' AND ' + where if where else ''} ORDER BY position"
        )
        replayers = [_replayer(projector) for projector in projectors]
        cursor = await (source or conn).cursor(query, up_to, *parameters)
        while rows := await cursor.fetch(page_size):
            events = decode_rows(rows)
            for replayer in replayers:
                await replayer.apply(conn, events)
            position = events[-1].position
            if progress is not None:
                progress(position, up_to)
        for replayer in replayers:
            finish: Callable[[asyncpg.Connection], object] | None = getattr(
                replayer, "finish", None
            )
            if finish is not None:
                await finish(conn)  # type: ignore[misc]
    if progress is not None and (position < up_to or not projectors):
        progress(up_to, up_to)  # the log ends with events no projector reads


def _replayer(projector: PostgreSQLProjector) -> PostgreSQLReplayer:
    """What replays ``projector``'s view: a new one of its own, or the projector itself."""
    make: Callable[[], PostgreSQLReplayer] | None = getattr(projector, "replayer", None)
    return projector if make is None else make()
