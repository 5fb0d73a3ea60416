"""A small, durable, append-only event store on SQLite.

Streams of events with versions for optimistic concurrency, a gap-free global order, group
commit, subscriptions with stored checkpoints, inline projections and a tamper-evident hash
chain. It knows nothing about the domain stored in it.
"""

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
from eventstore.projections import EventSelection, Projector
from eventstore.schema import Migration, apply_migrations
from eventstore.store import EventStore
from eventstore.versions import ANY, NO_STREAM

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
    "SchemaTooNewError",
    "SerializationError",
    "StoreClosedError",
    "StoreWriteError",
    "StreamAppend",
    "VerifyReport",
    "apply_migrations",
]
