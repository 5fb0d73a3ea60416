"""The operation the writer runs for appends (with an optional checkpoint move).

Each runs on the writer's thread with the raw connection, inside its own savepoint, and advances
the shared ``Head`` as it inserts: positions, hashes and the commit time are assigned here, in
commit order, by the only writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from eventstore.errors import CheckpointConflict, ConcurrencyError, DuplicateEventError
from eventstore.model import Checkpoint, RecordedEvent
from eventstore.records import EncodedStream, chain_hash, decode_rows
from eventstore.sqlite.projection import SQLiteProjector
from eventstore.sqlite.schema import EVENT_COLUMNS
from eventstore.sqlite.transaction import INSERT_EVENT, Head, Row
from eventstore.versions import ANY


@dataclass(slots=True)
class AppendOperation:
    """Append to one or more streams, move a checkpoint, and run the inline projectors."""

    streams: Sequence[EncodedStream]
    checkpoint: Checkpoint | None
    projectors: Sequence[SQLiteProjector]
    batchable = True

    def apply(self, conn: sqlite3.Connection, head: Head) -> list[list[RecordedEvent]]:
        rows = self.prepare(conn, head)
        if len(rows) == 1:  # the common case; execute() costs less than executemany()
            conn.execute(INSERT_EVENT, rows[0])
        elif rows:
            conn.executemany(INSERT_EVENT, rows)
        return self.complete(conn, head, rows)

    def prepare(self, conn: sqlite3.Connection, head: Head) -> list[Row]:
        # The version check is the INSERT itself: UNIQUE (stream_id, version) refuses a stream
        # that is ahead of the expected version and the contiguity trigger one that is behind;
        # ``recover`` turns either into a ConcurrencyError with the actual version.
        rows: list[Row] = []
        for stream in self.streams:
            version = stream.expected_version
            if version == ANY:
                version = stream_version(conn, stream.stream_id)
            for event_id, type_, data, metadata in stream.events:
                version += 1
                head.position += 1
                row = (
                    head.position,
                    event_id,
                    stream.stream_id,
                    version,
                    type_,
                    data,
                    metadata,
                    head.recorded_at_text,
                )
                head.hash = chain_hash(head.hash, row)
                rows.append((*row, head.hash))
        return rows

    def complete(
        self, conn: sqlite3.Connection, head: Head, rows: list[Row]
    ) -> list[list[RecordedEvent]]:
        if self.checkpoint is not None:
            move_checkpoint(conn, self.checkpoint, head)
        # The stored text itself, so callers and projectors see what a replay sees.
        recorded = decode_rows(rows)
        for projector in self.projectors:
            projector.apply(conn, recorded)
        return self._per_stream(recorded)

    def release(self, conn: sqlite3.Connection) -> None:
        pass  # an append holds nothing beyond its transaction

    def recover(self, conn: sqlite3.Connection, error: Exception) -> list[list[RecordedEvent]]:
        """Explain a failed insert: a retry of a committed append, or a version conflict."""
        if not isinstance(error, sqlite3.IntegrityError):
            raise error
        stored = self._stored_if_retry(conn, error)
        if stored is not None:
            return stored
        for stream in self.streams:
            actual = stream_version(conn, stream.stream_id)
            if stream.expected_version not in (ANY, actual):
                raise ConcurrencyError(stream.stream_id, stream.expected_version, actual) from None
        raise error

    def _stored_if_retry(
        self, conn: sqlite3.Connection, error: Exception
    ) -> list[list[RecordedEvent]] | None:
        """The stored events if every event id of this append is stored already, else None."""
        wanted = [event[0] for stream in self.streams for event in stream.events]
        stored = {event.event_id: event for event in _stored_events(conn, wanted)}
        if not stored:
            return None
        if len(stored) < len(wanted):
            raise DuplicateEventError(
                f"{len(stored)} of the {len(wanted)} event ids are already stored"
                " (a retry must repeat the whole append)"
            ) from error
        for stream in self.streams:
            for event_id, *_ in stream.events:
                if stored[event_id].stream_id != stream.stream_id:
                    raise DuplicateEventError(
                        f"event id {event_id} is stored in stream {stored[event_id].stream_id!r}"
                    ) from error
        return self._per_stream([stored[event[0]] for s in self.streams for event in s.events])

    def _per_stream(self, recorded: list[RecordedEvent]) -> list[list[RecordedEvent]]:
        if len(self.streams) == 1:
            return [recorded]
        parts, start = [], 0
        for stream in self.streams:
            parts.append(recorded[start : start + len(stream.events)])
            start += len(stream.events)
        return parts


def stream_version(conn: sqlite3.Connection, stream_id: str) -> int:
    row = conn.execute(
        "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream_id,)
    ).fetchone()
    return row[0] or 0


def move_checkpoint(conn: sqlite3.Connection, checkpoint: Checkpoint, head: Head) -> None:
    """Advance a checkpoint, refusing to move it backwards, in place or past the log's end."""
    if checkpoint.position > head.position:
        raise ValueError(
            f"checkpoint position {checkpoint.position} is past the log's end ({head.position})"
        )
    moved = conn.execute(
        "INSERT INTO checkpoints (name, position, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
        " updated_at = excluded.updated_at WHERE excluded.position > checkpoints.position",
        (checkpoint.name, checkpoint.position, head.recorded_at_text),
    ).rowcount
    if not moved:
        (stored,) = conn.execute(
            "SELECT position FROM checkpoints WHERE name = ?", (checkpoint.name,)
        ).fetchone()
        raise CheckpointConflict(checkpoint.name, checkpoint.position, stored)


def _stored_events(conn: sqlite3.Connection, event_ids: list[str]) -> list[RecordedEvent]:
    placeholders = ",".join("?" * len(event_ids))
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN ({placeholders})", event_ids
    ).fetchall()
    return decode_rows(rows)
