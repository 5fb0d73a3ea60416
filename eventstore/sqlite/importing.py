"""The writer's operation for ``import_events``: events of another log, stored unchanged."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from eventstore.copying import LogEnd, check_continuation
from eventstore.errors import ImportRefused
from eventstore.model import RecordedEvent
from eventstore.records import GENESIS_HASH
from eventstore.sqlite.transaction import INSERT_EVENT, Head, Row


@dataclass(slots=True)
class ImportOperation:
    """Insert ``events`` as they are, after checking under the write lock that they continue
    the log; the inline projectors do not run (the copy's views are rebuilt afterwards)."""

    events: Sequence[RecordedEvent]
    batchable = False

    def apply(self, conn: sqlite3.Connection, head: Head) -> int:
        end = check_continuation(_log_end(conn), self.events)
        conn.executemany(INSERT_EVENT, self.events)
        head.position, head.hash = end.position, end.hash
        # An append later in this batch is stamped no earlier than the copied events.
        head.recorded_at_text = max(head.recorded_at_text, end.recorded_at_text)
        return end.position

    def recover(self, conn: sqlite3.Connection, error: Exception) -> int:
        if isinstance(error, sqlite3.IntegrityError):  # a stream version taken or skipped
            raise ImportRefused(f"the events do not fit the log's streams: {error}") from error
        raise error

    def prepare(self, conn: sqlite3.Connection, head: Head) -> list[Row]:
        raise NotImplementedError("an import is never batched")

    def complete(self, conn: sqlite3.Connection, head: Head, rows: list[Row]) -> int:
        raise NotImplementedError("an import is never batched")

    def release(self, conn: sqlite3.Connection) -> None:
        pass


def _log_end(conn: sqlite3.Connection) -> LogEnd:
    row = conn.execute(
        "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1"
    ).fetchone()
    return LogEnd(*row) if row else LogEnd(0, GENESIS_HASH, "")
