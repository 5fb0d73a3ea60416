"""A small, durable, append-only event store, and the interface every backend of it implements.

Streams of events with versions for optimistic concurrency, a gap-free global order,
subscriptions with stored checkpoints, inline projections and a tamper-evident hash chain. It
knows nothing about the domain stored in it.

``EventStore`` is the backend-neutral interface (``eventstore.interface``); ``open_store`` opens
one by location. The SQLite implementation lives in ``eventstore.sqlite`` (``SQLiteEventStore``);
``Migration`` and ``apply_migrations`` are SQLite's, re-exported here for the views built on it.
Nothing imported here loads asyncio's database drivers: a rebuild's worker process imports this
package only for the replay, and starts that much sooner.
"""

from eventstore.backends import open_store, verify_store
from eventstore.errors import (
    CheckpointConflict,
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    ImportRefused,
    InvalidEvent,
    InvalidStreamId,
    NotADatabaseError,
    RebuildWorkerError,
    SchemaTooNewError,
    SerializationError,
    StoreClosedError,
    StoreWriteError,
    UnsupportedLocation,
)
from eventstore.interface import EventStore
from eventstore.model import (
    Checkpoint,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    VerifyReport,
)
from eventstore.projections import (
    AsyncProjector,
    AsyncReplayer,
    EventSelection,
    Projector,
    Replayer,
)
from eventstore.sqlite.schema import Migration, apply_migrations
from eventstore.versions import ANY, NO_STREAM

__all__ = [
    "ANY",
    "NO_STREAM",
    "AsyncProjector",
    "AsyncReplayer",
    "Checkpoint",
    "CheckpointConflict",
    "ConcurrencyError",
    "DuplicateEventError",
    "EventSelection",
    "EventStore",
    "EventStoreError",
    "ImportRefused",
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
    "UnsupportedLocation",
    "VerifyReport",
    "apply_migrations",
    "open_store",
    "verify_store",
]
