"""Appends on PostgreSQL: every check first, then one call under the log's lock, then the views.

A batch of appends (the writer's group commit) is one transaction. Before the lock, one query
reads the versions of the streams involved and any stored event with one of the batch's ids,
and :func:`plan` decides each append in Python, in queue order, as if the earlier ones had been
written: a retry gets its stored events, a conflict its error, the rest their rows. Then one
call of ``eventstore_append`` (``schema.py``) takes the lock, assigns positions, time and hashes,
inserts every row and moves the checkpoints; the inline projectors get the recorded events on
the same connection, and the transaction commits.

The database has the last word: ``UNIQUE (stream_id, version)``, the unique event id and the
function's own checks refuse what another process wrote in between. If anything of the batch
fails (such a race, a checkpoint that cannot move, a projector that raises), the transaction is
rolled back and run again with each append in a savepoint of its own, checked afresh (and, if
another process wrote between that check and the lock, once more with the lock taken first), so
a failure fails only its own caller, as SQLite's writer isolates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg

from eventstore.errors import CheckpointConflict, ConcurrencyError, DuplicateEventError
from eventstore.model import Checkpoint, RecordedEvent
from eventstore.postgresql.projection import PostgreSQLProjector
from eventstore.postgresql.schema import (
    APPEND_LOCK,
    CHECKPOINT_CONFLICT,
    CHECKPOINT_PAST_END,
    EVENT_COLUMNS,
    VERSION_GAP,
)
from eventstore.records import EncodedStream, decode_rows
from eventstore.versions import ANY

Row = tuple[str, str, int, str, str, str]  # event id, stream, version, type, data, metadata


@dataclass(slots=True)
class AppendOperation:
    """Append to one or more streams, and move a checkpoint, in one all-or-nothing unit."""

    streams: Sequence[EncodedStream]
    checkpoint: Checkpoint | None
    batchable = True

    def event_ids(self) -> list[str]:
        return [event[0] for stream in self.streams for event in stream.events]

    def split(self, recorded: Sequence[RecordedEvent]) -> list[list[RecordedEvent]]:
        """``recorded`` (this append's events, in order) as one list per stream."""
        parts, start = [], 0
        for stream in self.streams:
            parts.append(list(recorded[start : start + len(stream.events)]))
            start += len(stream.events)
        return parts


class Outcome(NamedTuple):
    result: Any = None
    error: Exception | None = None


@dataclass(slots=True)
class Known:
    """What the log held before the lock: stream versions and stored events by id."""

    versions: dict[str, int]
    stored: dict[str, RecordedEvent]


@dataclass(slots=True)
class Batch:
    """The versions and ids the appends planned so far in this batch will have written."""

    versions: dict[str, int] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Plan:
    rows: list[Row]
    stored: list[list[RecordedEvent]] | None = None  # a retry: its events as stored


class Deferred(Exception):
    """An append whose ids an earlier append of the batch uses too: decided on its own after
    that one is written (it may be that one's retry)."""


async def read_known(conn: asyncpg.Connection, operations: Sequence[AppendOperation]) -> Known:
    streams = sorted({stream.stream_id for op in operations for stream in op.streams})
    ids = [event_id for op in operations for event_id in op.event_ids()]
    if not streams:
        return Known({}, {})
    # One index probe per stream and per id, whatever the log's length: with ``= ANY`` the
    # planner may scan the whole table for a few dozen new streams.
    versions = await conn.fetch(
        "SELECT s.id, (SELECT MAX(e.version) FROM events e WHERE e.stream_id = s.id)"
        " FROM unnest($1::text[]) AS s(id)",
        streams,
    )
    stored = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (SELECT unnest($1::text[]))",
        ids,
    )
    return Known(
        {row[0]: int(row[1]) for row in versions if row[1] is not None},
        {event.event_id: event for event in decode_rows(stored)},
    )


def plan(operation: AppendOperation, known: Known, batch: Batch) -> Plan:
    """Decide ``operation`` on what the log held and what the batch writes before it."""
    wanted = operation.event_ids()
    found = [known.stored[event_id] for event_id in wanted if event_id in known.stored]
    if found:
        return Plan([], _retried(operation, wanted, known.stored))
    if any(event_id in batch.ids for event_id in wanted):
        raise Deferred
    rows: list[Row] = []
    versions: dict[str, int] = {}
    for stream in operation.streams:
        actual = batch.versions.get(stream.stream_id, known.versions.get(stream.stream_id, 0))
        if stream.expected_version not in (ANY, actual):
            raise ConcurrencyError(stream.stream_id, stream.expected_version, actual)
        version = actual
        for event_id, type_, data, metadata in stream.events:
            version += 1
            rows.append((event_id, stream.stream_id, version, type_, data, metadata))
        versions[stream.stream_id] = version
    batch.versions.update(versions)
    batch.ids.update(wanted)
    return Plan(rows)


def _retried(
    operation: AppendOperation, wanted: list[str], stored: dict[str, RecordedEvent]
) -> list[list[RecordedEvent]]:
    """The stored events of a whole retry; ``DuplicateEventError`` for anything else."""
    count = sum(event_id in stored for event_id in wanted)
    if count < len(wanted):
        raise DuplicateEventError(
            f"{count} of the {len(wanted)} event ids are already stored"
            " (a retry must repeat the whole append)"
        )
    for stream in operation.streams:
        for event_id, *_ in stream.events:
            if stored[event_id].stream_id != stream.stream_id:
                raise DuplicateEventError(
                    f"event id {event_id} is stored in stream {stored[event_id].stream_id!r}"
                )
    return operation.split([stored[event_id] for event_id in wanted])


async def insert(
    conn: asyncpg.Connection, rows: list[Row], checkpoints: list[Checkpoint], now_text: str
) -> list[RecordedEvent]:
    """The one locked round trip: positions, time and hashes assigned, rows inserted,
    checkpoints moved. Returns the events as recorded."""
    record = await conn.fetchrow(
        "SELECT * FROM eventstore_append($1::text[], $2::text[], $3::integer[], $4::text[],"
        " $5::text[], $6::text[], $7, $8::text[], $9::bigint[])",
        *([row[field] for row in rows] for field in range(6)),
        now_text,
        [checkpoint.name for checkpoint in checkpoints],
        [checkpoint.position for checkpoint in checkpoints],
    )
    assert record is not None  # the function returns one row
    first, time_text, hashes = record
    return decode_rows(
        (first + n, *row[:5], row[5], time_text, hashes[n]) for n, row in enumerate(rows)
    )


async def commit_appends(
    conn: asyncpg.Connection,
    operations: Sequence[AppendOperation],
    now_text: str,
    projectors: Sequence[PostgreSQLProjector],
) -> tuple[list[Outcome], int]:
    """Commit ``operations`` in one transaction, each failure its own; return the outcomes and
    the highest position written (0 if none)."""
    try:
        return await _together(conn, operations, now_text, projectors)
    except Exception:
        if conn.is_closed():
            raise
    async with conn.transaction():
        outcomes = [await _isolated(conn, op, now_text, projectors) for op in operations]
    return outcomes, _head(outcomes)


async def _together(
    conn: asyncpg.Connection,
    operations: Sequence[AppendOperation],
    now_text: str,
    projectors: Sequence[PostgreSQLProjector],
) -> tuple[list[Outcome], int]:
    outcomes: list[Outcome] = [Outcome()] * len(operations)
    async with conn.transaction():
        known = await read_known(conn, operations)
        batch, planned, deferred = Batch(), [], []
        for index, operation in enumerate(operations):
            try:
                decided = plan(operation, known, batch)
            except Deferred:
                deferred.append(index)
                continue
            except (ConcurrencyError, DuplicateEventError) as error:
                outcomes[index] = Outcome(error=error)
                continue
            if decided.stored is not None:
                outcomes[index] = Outcome(result=decided.stored)
            else:
                planned.append((index, decided))
        if planned:
            rows = [row for _, decided in planned for row in decided.rows]
            checkpoints = [
                checkpoint
                for index, _ in planned
                if (checkpoint := operations[index].checkpoint) is not None
            ]
            recorded = await insert(conn, rows, checkpoints, now_text)
            if recorded:
                for projector in projectors:
                    await projector.apply(conn, recorded)
            start = 0
            for index, decided in planned:
                mine = recorded[start : start + len(decided.rows)]
                outcomes[index] = Outcome(result=operations[index].split(mine))
                start += len(decided.rows)
        for index in deferred:  # after the others are written, in a savepoint each
            outcomes[index] = await _isolated(conn, operations[index], now_text, projectors)
    return outcomes, _head(outcomes)


async def _isolated(
    conn: asyncpg.Connection,
    operation: AppendOperation,
    now_text: str,
    projectors: Sequence[PostgreSQLProjector],
) -> Outcome:
    """Run one append in a savepoint, checked afresh; its failure rolls back only itself.

    If another process wrote one of its streams or ids between the check and the lock, it is
    checked once more with the lock taken first: nobody can write in between then, so the
    second decision is final (a retry, a conflict, or written)."""
    for lock_first in (False, True):
        try:
            async with conn.transaction():
                if lock_first:
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
                decided = plan(operation, await read_known(conn, [operation]), Batch())
                if decided.stored is not None:
                    return Outcome(result=decided.stored)
                checkpoints = [operation.checkpoint] if operation.checkpoint else []
                recorded = await insert(conn, decided.rows, checkpoints, now_text)
                if recorded:
                    for projector in projectors:
                        await projector.apply(conn, recorded)
                return Outcome(result=operation.split(recorded))
        except asyncpg.PostgresError as error:
            raced = isinstance(error, asyncpg.UniqueViolationError) or error.sqlstate == VERSION_GAP
            if raced and not lock_first:
                continue  # another process wrote the version or id meanwhile: look again
            return Outcome(error=_explain(error, operation.checkpoint))
        except Exception as error:
            return Outcome(error=error)
    raise AssertionError("unreachable: the locked attempt always returns")


def _explain(error: asyncpg.PostgresError, checkpoint: Checkpoint | None) -> Exception:
    """The store's own error for one the append function raised."""
    if checkpoint is not None and error.sqlstate == CHECKPOINT_CONFLICT:
        stored = int(getattr(error, "detail", None) or 0)
        return CheckpointConflict(checkpoint.name, checkpoint.position, stored)
    if error.sqlstate == CHECKPOINT_PAST_END:
        return ValueError(str(error))
    return error


def _head(outcomes: Sequence[Outcome]) -> int:
    positions = [
        event.position
        for outcome in outcomes
        if isinstance(outcome.result, list)
        for events in outcome.result
        for event in events
    ]
    return max(positions, default=0)
