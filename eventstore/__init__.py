"""A small, durable, append-only event store on SQLite.

Streams of events with versions for optimistic concurrency, a gap-free global order, group
commit, subscriptions with stored checkpoints, inline projections and a tamper-evident hash
chain. It knows nothing about the domain stored in it.

``EventStore`` (and with it asyncio and aiosqlite) is imported when first asked for: a rebuild's
worker process imports this package only for the replay, and starts that much sooner.
"""

from typing import TYPE_CHECKING, Any

from eventstore.errors import (
    CheckpointConflict,
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    InvalidEvent,
    InvalidStreamId,
    NotADatabaseError,
    RebuildWorkerError,
    SchemaTooNewError,
    SerializationError,
    StoreClosedError,
    StoreWriteError,
)
from eventstore.model import (
    Checkpoint,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    VerifyReport,
)
from eventstore.projections import EventSelection, Projector, Replayer
from eventstore.schema import Migration, apply_migrations
from eventstore.versions import ANY, NO_STREAM

if TYPE_CHECKING:
    from eventstore.store import EventStore


def __getattr__(name: str) -> Any:
    if name == "EventStore":
        from eventstore.store import EventStore

        return EventStore
    raise AttributeError(f"module 'eventstore' has no attribute {name!r}")


__all__ = [
    "ANY",
    "NO_STREAM",
    "Checkpoint",
    "CheckpointConflict",
    "ConcurrencyError",
    "DuplicateEventError",
    "EventSelection",
    "EventStore",
    "EventStoreError",
    "InvalidEvent",
    "InvalidStreamId",
    "Migration",
    "NewEvent",
    "NotADatabaseError",
    "Projector",
    "RebuildWorkerError",
    "RecordedEvent",
    "Replayer",
    "SchemaTooNewError",
    "SerializationError",
    "StoreClosedError",
    "StoreWriteError",
    "StreamAppend",
    "VerifyReport",
    "apply_migrations",
]
