"""Group commit: one writer drains a queue of pending operations into one transaction.

Callers submit operations (an append, a checkpoint move, a rebuild) and wait. The writer thread
takes everything queued and runs it on its own connection inside ``BEGIN IMMEDIATE``, each
operation in its own savepoint so one failure fails only its own caller, commits once, and only
then answers every caller. With ``synchronous=FULL`` an answered append has been fsync'd.

While one batch commits, the next one queues up, so batches grow with load and the cost of the
commit is shared; with a single caller it degrades to one transaction per append.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import datetime
from queue import SimpleQueue
from threading import Thread
from typing import Any, TypeVar

from eventstore.errors import StoreClosedError, StoreWriteError
from eventstore.sqlite.transaction import Operation, Outcome, commit_batch
from eventstore.sqlite.turns import WriteTurns

T = TypeVar("T")


_STOP = object()


class GroupCommitWriter:
    """Owns the write connection and its thread; the only path by which anything is written.

    The writer is a thread of its own draining a thread-safe queue, not a coroutine: it forms
    the next batch as soon as the previous one commits, while the event loop is still answering
    the previous callers, so the loop's work and the database's work overlap instead of taking
    turns (measured in bench/append.py and docs/performance.md).
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        clock: Callable[[], datetime],
        max_batch: int,
        on_commit: Callable[[int], None],
        turns: WriteTurns | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._connect = connect
        self._turns = turns
        self._clock = clock
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._on_batch = on_batch
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._stopped: asyncio.Future[None] = self._loop.create_future()

    async def start(self, prepare: Callable[[sqlite3.Connection], T]) -> T:
        """Start the thread: it connects, runs ``prepare`` (schema, settings), then serves."""
        ready: asyncio.Future[Any] = self._loop.create_future()
        # A daemon: a store its owner forgot to close must not keep the process from exiting
        # (every acknowledged write is already committed).
        Thread(
            target=self._run, args=(prepare, ready), name="eventstore-writer", daemon=True
        ).start()
        try:
            return await ready  # type: ignore[no-any-return]
        except BaseException:
            self._closed = True
            await asyncio.shield(self._stopped)  # the thread has closed its connection
            raise

    async def submit(self, operation: Operation) -> Any:
        """Queue ``operation``; return its result once the transaction holding it is durable."""
        if self._closed:
            raise StoreClosedError("the event store is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((operation, future))
        return await future

    async def close(self) -> None:
        """Finish every operation already queued, then close the connection and stop."""
        if self._closed:
            return await asyncio.shield(self._stopped)
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.shield(self._stopped)

    # -- the writer thread -------------------------------------------------------------------

    def _run(
        self, prepare: Callable[[sqlite3.Connection], Any], ready: asyncio.Future[Any]
    ) -> None:
        try:
            conn = self._connect()
        except BaseException as error:
            self._deliver([ready], [Outcome(error=_as_exception(error))])
            self._loop.call_soon_threadsafe(_resolve, self._stopped, None)
            return
        try:
            opened = _attempt(lambda: prepare(conn))
            self._deliver([ready], [opened])
            stop = opened.error is not None
            while not stop:
                stop = self._write_next(conn)
        finally:
            conn.close()
            if self._turns is not None:
                self._turns.close()
            self._loop.call_soon_threadsafe(_resolve, self._stopped, None)

    def _write_next(self, conn: sqlite3.Connection) -> bool:
        """Wait for work, take this process's turn at the file, commit everything queued by
        then as one batch; True once the writer is to stop."""
        first = self._queue.get()
        if first is _STOP:
            return True
        if self._turns is None:
            batch, stop = self._take_batch(first)
            self._process(conn, batch)
            return stop
        self._turns.take()
        try:
            batch, stop = self._take_batch(first)  # what queued while waiting joins the batch
            self._process(conn, batch)
        finally:
            self._turns.give()
        return stop

    def _take_batch(self, first: Any) -> tuple[list[Any], bool]:
        batch = [first]
        while len(batch) < self._max_batch and not self._queue.empty():
            item = self._queue.get_nowait()  # this thread is the only consumer: never blocks
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _process(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        operations = [operation for operation, _ in batch]
        futures = [future for _, future in batch]
        try:
            outcomes, head_position = commit_batch(conn, operations, self._clock())
        except Exception as error:  # the transaction itself failed: nobody's write is durable
            failure = StoreWriteError(f"the transaction was not committed: {error}")
            failure.__cause__ = error
            self._deliver(futures, [Outcome(error=failure)] * len(futures))
            return
        self._loop.call_soon_threadsafe(self._on_commit, head_position)
        if self._on_batch is not None:  # called on this thread: it must be thread-safe
            self._on_batch(len(batch))
        self._deliver(futures, outcomes)

    def _deliver(self, futures: list[asyncio.Future[Any]], outcomes: list[Outcome]) -> None:
        self._loop.call_soon_threadsafe(_settle, futures, outcomes)


def _as_exception(error: BaseException) -> Exception:
    return error if isinstance(error, Exception) else StoreClosedError(repr(error))


def _attempt(function: Callable[[], Any]) -> Outcome:
    try:
        return Outcome(result=function())
    except Exception as error:
        return Outcome(error=error)


def _settle(futures: list[asyncio.Future[Any]], outcomes: list[Outcome]) -> None:
    """On the event loop: answer each caller, skipping those cancelled meanwhile."""
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():  # the caller was cancelled; its write, if any, stands
            continue
        if outcome.error is not None:
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome.result)


def _resolve(future: asyncio.Future[None], value: None) -> None:
    if not future.done():
        future.set_result(value)
