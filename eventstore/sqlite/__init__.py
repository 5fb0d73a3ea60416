"""The event store on one SQLite file: the first implementation of ``eventstore.EventStore``.

Everything here is SQLite's own: the group-commit writer, its transactions, the schema and its
migrations, the rebuild with its worker processes, and the file's verification. Projectors of this
store are ``SQLiteProjector``s: they receive the writer's ``sqlite3.Connection``.

``SQLiteEventStore`` (and with it asyncio and aiosqlite) is imported when first asked for: a
rebuild's worker process imports this package only for the replay, and starts that much sooner.
"""

from typing import TYPE_CHECKING, Any

from eventstore.sqlite.projection import SQLiteProjector, SQLiteReplayer
from eventstore.sqlite.schema import GUARD_TRIGGERS, Migration, apply_migrations
from eventstore.sqlite.verification import verify_file

if TYPE_CHECKING:
    from eventstore.sqlite.store import SQLiteEventStore


def __getattr__(name: str) -> Any:
    if name == "SQLiteEventStore":
        from eventstore.sqlite.store import SQLiteEventStore

        return SQLiteEventStore
    raise AttributeError(f"module 'eventstore.sqlite' has no attribute {name!r}")


__all__ = [
    "GUARD_TRIGGERS",
    "Migration",
    "SQLiteEventStore",
    "SQLiteProjector",
    "SQLiteReplayer",
    "apply_migrations",
    "verify_file",
]
