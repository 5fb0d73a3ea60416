"""What the SQLite and the PostgreSQL stores do the same way, written once: appends handed to
the backend's group-commit writer, the reads that go straight to the backend's ``LogReads``,
and the subscription loop.

A backend's store subclasses :class:`LogStore` and supplies its writer, its reads
(:meth:`LogStore._log`), how an append becomes an operation for its writer, its head position and
its own open, close, import, rebuild and verify. Each store's commits call
:meth:`LogStore._note_commit`, which is what wakes its subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

from eventstore.errors import StoreClosedError
from eventstore.model import Checkpoint, NewEvent, RecordedEvent, StreamAppend
from eventstore.records import EncodedStream, encode_appends, encode_stream


def utc_now() -> datetime:
    return datetime.now(UTC)


class LogReader(Protocol):
    """The reads of a backend's ``LogReads`` that both stores pass on unchanged."""

    def read_stream(self, stream_id: str, after_version: int) -> AsyncIterator[RecordedEvent]: ...

    def read_range(
        self, after_position: int, up_to: int | None, types: Collection[str] | None
    ) -> AsyncIterator[RecordedEvent]: ...

    async def load_checkpoint(self, name: str) -> int: ...

    async def stream_version(self, stream_id: str) -> int: ...


class OperationQueue(Protocol):
    """A backend's group-commit writer, as the store uses it."""

    async def submit(self, operation: Any) -> Any: ...


class LogStore(ABC):
    """The part of an event store that does not depend on its database."""

    _writer: OperationQueue

    def __init__(self, poll_interval: float) -> None:
        self._poll_interval = poll_interval
        self._head_position = 0  # the highest this process has seen committed
        self._committed = asyncio.Event()  # set, and replaced, at each commit
        self._closed = False

    @abstractmethod
    def _log(self) -> LogReader:
        """The backend's reads; raises ``StoreClosedError`` once the store is closed."""

    @abstractmethod
    def _append_operation(self, streams: list[EncodedStream], checkpoint: Checkpoint | None) -> Any:
        """The writer's operation that appends ``streams`` (and moves ``checkpoint``)."""

    @abstractmethod
    async def head_position(self) -> int:
        """The position of the last committed event; 0 for an empty log."""

    @abstractmethod
    async def close(self) -> None:
        """Finish queued appends, end subscriptions, and close every connection."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- writing -----------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int,
        *,
        checkpoint: Checkpoint | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events`` to one stream if it is at ``expected_version`` (see
        ``EventStore.append``); events whose ids are all stored already answer as stored."""
        operation = self._append_operation(
            [encode_stream(stream_id, expected_version, events)], checkpoint
        )
        (recorded,) = await self._submit(operation)
        return recorded  # type: ignore[no-any-return]

    async def append_streams(
        self, appends: Sequence[StreamAppend], *, checkpoint: Checkpoint | None = None
    ) -> list[list[RecordedEvent]]:
        """Append to several streams in one all-or-nothing transaction (see
        ``EventStore.append_streams``)."""
        operation = self._append_operation(encode_appends(appends), checkpoint)
        return await self._submit(operation)  # type: ignore[no-any-return]

    async def save_checkpoint(self, name: str, position: int) -> None:
        """Move checkpoint ``name`` forward to ``position`` (a transaction of its own)."""
        await self.append_streams([], checkpoint=Checkpoint(name, position))

    async def _submit(self, operation: Any) -> Any:
        if self._closed:
            raise StoreClosedError("the event store is closed")
        return await self._writer.submit(operation)

    def _note_commit(self, head_position: int) -> None:
        self._head_position = max(self._head_position, head_position)
        self._committed.set()
        self._committed = asyncio.Event()

    # -- reading -----------------------------------------------------------------------------

    def read_stream(self, stream_id: str, after_version: int = 0) -> AsyncIterator[RecordedEvent]:
        """The events of one stream after ``after_version``, oldest first, read in pages."""
        return self._log().read_stream(stream_id, after_version)

    def read_all(
        self, after_position: int = 0, *, types: Collection[str] | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Every event after ``after_position`` in commit order, read in pages; with ``types``,
        only events of those types (the others are skipped by the query, never decoded)."""
        return self._log().read_range(after_position, None, types)

    async def subscribe(
        self,
        name: str,
        after_position: int | None = None,
        *,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Yield events as they commit, in position order, never skipping one; with ``types``,
        only events of those types.

        Starts after ``after_position``, or after checkpoint ``name`` when not given. The
        subscription does not move the checkpoint: pass ``Checkpoint(name, event.position)`` to
        the append that records the event's effects (exactly once), or call
        :meth:`save_checkpoint`. This store's commits wake it at once; other processes' are found
        by polling every ``poll_interval`` seconds (or, on PostgreSQL, by their notice). It ends,
        without error, when the store closes.
        """
        try:
            position = (
                await self.load_checkpoint(name) if after_position is None else after_position
            )
            while not self._closed:
                # Up to the head as one read saw it: every position up to there is committed
                # (positions are given out by one writer at a time, or under the log's lock,
                # and committed in their order), so the range is complete and the next pass
                # starts after it, whatever the filter left out.
                head = await self.head_position()
                if head > position:
                    async for event in self._log().read_range(position, head, types):
                        yield event
                    position = head
                committed = self._committed
                if self._head_position <= position and not self._closed:
                    # asyncio.timeout, not wait_for: on Python 3.11 a wait_for whose wait
                    # ends (a commit) as a cancel arrives drops the cancel, and the
                    # subscription would never end.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_interval):
                            await committed.wait()
        except StoreClosedError:
            return

    async def load_checkpoint(self, name: str) -> int:
        """The stored position of checkpoint ``name``; 0 if it was never saved."""
        return await self._log().load_checkpoint(name)

    async def stream_version(self, stream_id: str) -> int:
        """The version of a stream: the number of events in it (0 if it does not exist)."""
        return await self._log().stream_version(stream_id)
