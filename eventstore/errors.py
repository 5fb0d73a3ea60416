"""Named exceptions of the event store.

Every failure a caller can act on has its own class, so that a service can map it to an answer
without parsing messages. All derive from :class:`EventStoreError`.
"""

from __future__ import annotations

from eventstore.versions import describe


class EventStoreError(Exception):
    """Base class of every error raised by the event store."""


class ConcurrencyError(EventStoreError):
    """A stream was not at the version the caller expected; nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, expected {describe(expected)}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class CheckpointConflict(EventStoreError):
    """A checkpoint was asked to move to a position it has already reached; nothing was written.

    This is what makes a subscriber exactly-once: a second attempt to process the same event
    fails here instead of applying its effects twice.
    """

    def __init__(self, name: str, requested: int, stored: int) -> None:
        super().__init__(
            f"checkpoint {name!r} is already at position {stored}, cannot move to {requested}"
        )
        self.name = name
        self.requested = requested
        self.stored = stored


class DuplicateEventError(EventStoreError):
    """Some, but not all, of the event ids of an append are already stored, or one id is used
    twice in the same append, or a stored id belongs to another stream.

    A retry of a whole append is a no-op; a request that mixes stored and new ids is refused
    because it cannot be a retry.
    """


class InvalidStreamId(EventStoreError, ValueError):
    """A stream id is empty, not a string, too long, or contains control characters."""


class InvalidEvent(EventStoreError, ValueError):
    """An event is malformed: empty type, data or metadata that is not a JSON object."""


class SerializationError(InvalidEvent):
    """Event data or metadata cannot be stored as JSON (a set, a float NaN, an object...)."""


class ImportRefused(EventStoreError):
    """Events given to ``import_events`` do not continue the log unchanged (a gap, a position
    already taken, a broken hash chain); nothing of them was written."""


class UnsupportedLocation(EventStoreError, ValueError):
    """``open_store`` was given a URL of a kind of database no backend here opens (yet)."""


class NotADatabaseError(EventStoreError):
    """The file exists but is not an SQLite database."""


class SchemaTooNewError(EventStoreError):
    """The database was migrated by a newer version of this package than the running one."""


class StoreWriteError(EventStoreError):
    """A transaction could not be committed: the write lock was held elsewhere past
    ``busy_timeout``, the disk is full, or an I/O error. Nothing of it was written; retry later."""


class StoreClosedError(EventStoreError):
    """The store has been closed; no more appends or reads are accepted."""


class RebuildWorkerError(EventStoreError):
    """A worker process of a parallel rebuild failed; the rebuild wrote nothing."""
