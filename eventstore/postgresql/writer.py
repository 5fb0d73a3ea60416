"""Group commit on PostgreSQL: one task drains the queue of pending appends into one transaction.

Callers submit operations and wait. The writer takes every append queued (up to ``max_batch``)
and commits them as one transaction on its own connection (``appending.commit_appends``), then
answers every caller; while one batch commits, the next one queues up, so batches grow with load
and the cost of a commit (and of a turn at the log's lock) is shared. An operation that cannot
share a transaction (a rebuild) runs alone, in its place in the queue.

It is a task, not a thread as on SQLite: asyncpg is asynchronous, so the database's work already
overlaps the event loop's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from eventstore.errors import StoreClosedError, StoreWriteError
from eventstore.postgresql.appending import AppendOperation, Outcome, commit_appends
from eventstore.postgresql.projection import PostgreSQLProjector
from eventstore.records import format_time


class AloneOperation(Protocol):
    """An operation that runs in a transaction of its own (a rebuild)."""

    batchable: bool

    async def run(self, conn: asyncpg.Connection) -> Any: ...


class GroupCommitWriter:
    """Owns the write connection; the only path by which this store writes."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        clock: Callable[[], datetime],
        max_batch: int,
        projectors: Sequence[PostgreSQLProjector],
        on_commit: Callable[[int], None],
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._connect = connect
        self._clock = clock
        self._max_batch = max_batch
        self._projectors = projectors
        self._on_commit = on_commit
        self._on_batch = on_batch
        self._pending: deque[tuple[Any, asyncio.Future[Any]]] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, prepare: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        """Connect, run ``prepare`` (migrations, the views' setup) on the connection, serve."""
        self._conn = await self._connect()
        try:
            prepared = await prepare(self._conn)
        except BaseException:
            await self._conn.close()
            self._closed = True
            raise
        self._task = asyncio.create_task(self._run(), name="eventstore-writer")
        return prepared

    async def submit(self, operation: AppendOperation | AloneOperation) -> Any:
        """Queue ``operation``; return its result once the transaction holding it committed."""
        if self._closed:
            raise StoreClosedError("the event store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((operation, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Finish every operation already queued, then close the connection."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    async def _run(self) -> None:
        while self._pending or not self._closed:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take_batch()
            await self._process(batch)

    def _take_batch(self) -> list[tuple[Any, asyncio.Future[Any]]]:
        batch = [self._pending.popleft()]
        if not batch[0][0].batchable:
            return batch
        while self._pending and len(batch) < self._max_batch and self._pending[0][0].batchable:
            batch.append(self._pending.popleft())
        return batch

    async def _process(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        operations = [operation for operation, _ in batch]
        futures = [future for _, future in batch]
        try:
            conn = await self._connection()
            if not operations[0].batchable:
                outcomes = [await _alone(conn, operations[0])]
                head = 0
            else:
                now = format_time(self._clock())
                outcomes, head = await commit_appends(conn, operations, now, self._projectors)
        except Exception as error:  # the transaction itself failed: nobody's write is durable
            failure = StoreWriteError(f"the transaction was not committed: {error}")
            failure.__cause__ = error
            outcomes, head = [Outcome(error=failure)] * len(futures), 0
        if head:
            self._on_commit(head)
            if self._on_batch is not None:
                self._on_batch(len(batch))
        for future, outcome in zip(futures, outcomes, strict=True):
            if future.done():  # the caller was cancelled; its write, if any, stands
                continue
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.result)

    async def _connection(self) -> asyncpg.Connection:
        """The write connection, connected again if the last one was lost."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
        return self._conn


async def _alone(conn: asyncpg.Connection, operation: AloneOperation) -> Outcome:
    try:
        return Outcome(result=await operation.run(conn))
    except (asyncpg.InterfaceError, OSError):
        raise  # the connection failed: a write error, as for a batch
    except Exception as error:
        return Outcome(error=error)
