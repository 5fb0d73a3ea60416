"""The event store as the service sees it: a backend-neutral ``typing.Protocol``.

This is all the service and its workers may ask of a store, whichever database holds the log.
The docstrings are the contract a backend must honour, and ``tests/contract`` checks it against
every backend; ``eventstore.sqlite.SQLiteEventStore`` is the first. The guarantees, in short:

- **One log, one order.** Every event gets a global *position*: 1, 2, 3 … in commit order,
  without gaps, whoever writes (another process, another node). A commit never fills in a
  position below one a reader has already seen, so reading "after position p" never skips one.
- **Streams with versions.** Within a stream, versions are 1, 2, 3 … without gaps; an append
  names the version it was decided on (or ``NO_STREAM`` / ``ANY``) and a stream at another
  version raises ``ConcurrencyError`` with the actual one, having written nothing.
- **All or nothing.** An append, to one stream or several, with its checkpoint move and its
  inline projections, commits as one transaction or not at all. An acknowledged append is
  durable.
- **Idempotent retries.** An append whose event ids are all stored already (in the same streams)
  returns the stored events and writes nothing; one that mixes stored and new ids, or reuses an
  id of another stream, raises ``DuplicateEventError``.
- **One hash chain.** Each event's ``hash`` is ``records.chain_hash`` of the previous event's hash
  (``records.GENESIS_HASH`` before the first) and its stored fields, data and metadata as
  ``records.encode_event`` writes them and the time as ``records.format_time`` does. Every
  backend computes it identically, so a log copied from one backend to another still verifies.
- **Time moves forward.** ``recorded_at`` never goes backwards along positions, even when the
  clock does.
- **Checkpoints move only forward**, and in the same transaction as the append they are given
  to: a subscriber that records an event's effects with ``Checkpoint(name, event.position)``
  applies them exactly once.
- **Validation first.** Bad input (``InvalidStreamId``, ``InvalidEvent``, ``SerializationError``,
  ``ValueError``) is refused before anything is queued or written, and fails only its caller.

What is deliberately not here: SQL. A backend may offer its own queries for a read model built on
it (the SQLite store's ``query`` and ``lookup``), but the service reaches them through its read
side, never through this interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from types import TracebackType
from typing import Protocol, Self

from eventstore.model import Checkpoint, NewEvent, RecordedEvent, StreamAppend, VerifyReport

Progress = Callable[[int, int], None]
"""``progress(done, total)``: positions replayed so far, and the log's head."""


class EventStore(Protocol):
    """An append-only log of events in streams, read in one global order. Use it as an async
    context manager, or call :meth:`close`."""

    # -- writing -----------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int,
        *,
        checkpoint: Checkpoint | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events`` (at least one) to one stream if it is at ``expected_version``.

        ``expected_version`` is an exact version, ``NO_STREAM`` or ``ANY``. A stream at another
        version raises ``ConcurrencyError`` with the actual version, and nothing is written.
        Returns the events as recorded: versions, positions, commit time and hashes assigned,
        and ``data_json`` / ``metadata_json`` exactly the stored text. ``checkpoint``, if given,
        moves in the same transaction (see :meth:`save_checkpoint`). The inline projectors run
        in that transaction too; one that raises fails this append, and only this append.
        """
        ...

    async def append_streams(
        self, appends: Sequence[StreamAppend], *, checkpoint: Checkpoint | None = None
    ) -> list[list[RecordedEvent]]:
        """Append to several streams in one all-or-nothing transaction.

        Returns the recorded events of each stream, in the order given; positions follow that
        order too. A conflict on any stream writes nothing on any. A stream named twice raises
        ``ValueError`` before anything is queued. With no appends, only ``checkpoint`` moves.
        """
        ...

    async def save_checkpoint(self, name: str, position: int) -> None:
        """Move checkpoint ``name`` forward to ``position``, in a transaction of its own.

        A checkpoint only moves forward: a position at or before the stored one raises
        ``CheckpointConflict``; one past the log's head raises ``ValueError``. Either way
        nothing of the transaction is written.
        """
        ...

    async def load_checkpoint(self, name: str) -> int:
        """The stored position of checkpoint ``name``; 0 if it was never saved."""
        ...

    async def import_events(self, events: Sequence[RecordedEvent]) -> int:
        """Store events recorded in another log exactly as they are (position, id, stream,
        version, type, data, metadata, time and hash), for moving a whole log between stores;
        return the log's head afterwards.

        They must continue this log unchanged (``eventstore.copying.check_continuation``): the
        first at the head's position + 1, each hash chained from the event before, times never
        going back; otherwise ``ImportRefused`` is raised and nothing is written. The inline
        projectors do not run: rebuild the views once the last page is in.
        """
        ...

    # -- reading -----------------------------------------------------------------------------

    def read_stream(self, stream_id: str, after_version: int = 0) -> AsyncIterator[RecordedEvent]:
        """The events of one stream after ``after_version``, oldest first (none for a stream
        that does not exist). Read in pages: memory does not grow with the stream."""
        ...

    def read_all(
        self, after_position: int = 0, *, types: Collection[str] | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Every event after ``after_position`` in position order, read in pages; with
        ``types``, only events of those types."""
        ...

    def subscribe(
        self,
        name: str,
        after_position: int | None = None,
        *,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Yield events as they commit, in position order, never skipping one; with ``types``,
        only events of those types.

        Starts after ``after_position``, or after checkpoint ``name`` when not given. Commits
        made through this store wake it at once; commits made elsewhere (another process, another
        node) are found within a backend-defined delay. It does not move the checkpoint: pass
        ``Checkpoint(name, event.position)`` to the append that records the event's effects, or
        call :meth:`save_checkpoint`. It ends, without error, when the store closes.
        """
        ...

    async def stream_tail(
        self, stream_id: str, after_version: int, limit: int = 100
    ) -> list[RecordedEvent]:
        """At most ``limit`` events of one stream after ``after_version``, oldest first: for
        bringing a cached state up to date, where there are usually none or a few, so a backend
        should make this its cheapest read."""
        ...

    async def last_events(self, stream_ids: Sequence[str]) -> dict[str, RecordedEvent]:
        """The last event of each stream in ``stream_ids`` that exists (missing streams are
        absent; a name given twice is answered once), however many streams: for streams whose
        last event is their whole state, read together instead of one round trip each."""
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The version of a stream: the number of events in it (0 if it does not exist)."""
        ...

    async def head_position(self) -> int:
        """The position of the last committed event; 0 for an empty log."""
        ...

    # -- integrity and views -----------------------------------------------------------------

    async def verify(self) -> VerifyReport:
        """Walk the hash chain from the first event, on one consistent snapshot, and report the
        first position whose hash or place in the sequence does not match; also not ``ok`` when
        a guard that keeps the log append-only in the database itself is missing."""
        ...

    async def rebuild_projections(self, progress: Progress | None = None) -> int:
        """Replay the whole log into every inline view, emptied first; return the number of
        events in the log (its head position).

        One transaction: readers see the old views until the new ones are committed, and appends
        queued meanwhile are counted once, after it. ``progress(done, total)`` is called as the
        replay goes (possibly from another thread), and last with ``done == total``.
        """
        ...

    async def checkpointed(self) -> None:
        """Wait for any background work a rebuild left to make its result durable in place
        (SQLite copies its pages from the WAL); returns at once when there is none."""
        ...

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish the appends already queued, end subscriptions, and let go of every
        connection. Afterwards every call raises ``StoreClosedError``; closing again is
        harmless."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
