"""One group-commit transaction: run a batch of operations, isolating each one's failure.

The batch runs inside ``BEGIN IMMEDIATE``. The common case, appends that do not conflict, is
written together: every operation assigns its positions and hashes, all rows go in with one
``executemany``, then each operation finishes (checkpoint, projectors). That costs a few
statements per batch instead of three per operation. If anything in it fails (a version
conflict, a duplicate id, a projector error), the batch is rolled back to its start and run again
one savepoint per operation, so a failure fails only its own caller.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from eventstore.records import GENESIS_HASH, format_time

INSERT_EVENT = (
    "INSERT INTO events (position, event_id, stream_id, version, type, data, metadata,"
    " recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[Any, ...]


@dataclass(slots=True)
class Head:
    """The end of the log as this transaction sees it; operations advance it as they insert."""

    position: int
    hash: str
    recorded_at_text: str

    @classmethod
    def read(cls, conn: sqlite3.Connection, now: datetime) -> Head:
        row = conn.execute(
            "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1"
        ).fetchone()
        position, hash_, last_text = row if row else (0, GENESIS_HASH, "")
        now_text = format_time(now)
        # recorded_at never goes backwards along positions, even if the wall clock does, so
        # "as it stood at time T" has one answer. The text format sorts in time order.
        return cls(position, hash_, max(last_text, now_text))


class Operation(Protocol):
    """A unit of work run in the writer's transaction."""

    batchable: bool
    """Whether it can be written together with others through ``prepare``/``complete``."""

    def apply(self, conn: sqlite3.Connection, head: Head) -> Any:
        """Write, advancing ``head`` for every event inserted; raise to roll back."""

    def recover(self, conn: sqlite3.Connection, error: Exception) -> Any:
        """After ``apply`` raised and was rolled back: a result after all, or raise ``error``."""

    def prepare(self, conn: sqlite3.Connection, head: Head) -> list[Row]:
        """The rows to insert, with positions and hashes taken from ``head`` (batchable only)."""

    def complete(self, conn: sqlite3.Connection, head: Head, rows: list[Row]) -> Any:
        """After the rows are inserted: the rest of the work and the result (batchable only)."""

    def release(self, conn: sqlite3.Connection) -> None:
        """After the transaction has ended, committed or not: let go of anything held past it
        (a rebuild's scratch databases, which SQLite cannot detach inside a transaction)."""


class Outcome(NamedTuple):
    result: Any = None
    error: Exception | None = None


def commit_batch(
    conn: sqlite3.Connection, operations: Sequence[Operation], now: datetime
) -> tuple[list[Outcome], int]:
    """Run ``operations`` in one transaction, each failure isolated; commit once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read under the write lock, so positions stay gap-free and the chain unbroken even if
        # another process wrote since our last batch.
        head = Head.read(conn, now)
        outcomes = _run_together(conn, operations, head)
        if outcomes is None:
            outcomes = [_run_in_savepoint(conn, operation, head) for operation in operations]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        for operation in operations:
            operation.release(conn)
    return outcomes, head.position


def _run_together(
    conn: sqlite3.Connection, operations: Sequence[Operation], head: Head
) -> list[Outcome] | None:
    """Write all operations with one insert; None (and nothing written) if any part fails."""
    if len(operations) < 2 or not all(operation.batchable for operation in operations):
        return None
    position, hash_ = head.position, head.hash
    conn.execute("SAVEPOINT batch")
    try:
        rows = [operation.prepare(conn, head) for operation in operations]
        conn.executemany(INSERT_EVENT, [row for op_rows in rows for row in op_rows])
        results = [
            Outcome(result=operation.complete(conn, head, op_rows))
            for operation, op_rows in zip(operations, rows, strict=True)
        ]
    except Exception:
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        head.position, head.hash = position, hash_
        return None
    conn.execute("RELEASE batch")
    return results


def _run_in_savepoint(conn: sqlite3.Connection, operation: Operation, head: Head) -> Outcome:
    position, hash_ = head.position, head.hash
    conn.execute("SAVEPOINT operation")
    try:
        result = operation.apply(conn, head)
    except Exception as error:
        conn.execute("ROLLBACK TO operation")
        conn.execute("RELEASE operation")
        head.position, head.hash = position, hash_
        try:
            return Outcome(result=operation.recover(conn, error))
        except Exception as final:
            return Outcome(error=final)
    conn.execute("RELEASE operation")
    return Outcome(result=result)
