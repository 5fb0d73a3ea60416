"""The SQLite store's schema: numbered migrations, each applied in one transaction and recorded
in the database, and the log's guard triggers.

Migrations are grouped by component so that code built on the store (the service's views) can
keep its own numbered list in the same table. A database that records a migration this code does
not know was written by a newer release and is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from eventstore.errors import SchemaTooNewError
from eventstore.records import format_time


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


EVENTSTORE_MIGRATIONS: Sequence[Migration] = (
    Migration(
        1,
        "events, checkpoints and append-only triggers",
        """
        CREATE TABLE events (
            position    INTEGER PRIMARY KEY,  -- global order of commit, gap-free
            event_id    TEXT    NOT NULL UNIQUE,
            stream_id   TEXT    NOT NULL,
            version     INTEGER NOT NULL CHECK (version >= 1),
            type        TEXT    NOT NULL,
            data        TEXT    NOT NULL,
            metadata    TEXT    NOT NULL,
            recorded_at TEXT    NOT NULL,
            hash        TEXT    NOT NULL,
            UNIQUE (stream_id, version)
        );
        -- Versions are contiguous per stream, whoever writes: appending version n needs n - 1.
        CREATE TRIGGER events_versions_are_contiguous BEFORE INSERT ON events
        WHEN NEW.version > 1 AND NOT EXISTS (
            SELECT 1 FROM events WHERE stream_id = NEW.stream_id AND version = NEW.version - 1
        )
        BEGIN
            SELECT RAISE(ABORT, 'stream version gap');
        END;
        -- INSERT OR REPLACE would delete the event it collides with, and SQLite fires no
        -- DELETE trigger for that unless recursive_triggers is on: refuse the collision first.
        CREATE TRIGGER events_are_append_only_replace BEFORE INSERT ON events
        WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position)
          OR EXISTS (SELECT 1 FROM events WHERE event_id = NEW.event_id)
          OR EXISTS (SELECT 1 FROM events WHERE stream_id = NEW.stream_id AND version = NEW.version)
        BEGIN
            SELECT RAISE(ABORT, 'events are append-only: an insert may not replace an event');
        END;
        CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
        BEGIN
            SELECT RAISE(ABORT, 'events are append-only: UPDATE is not allowed');
        END;
        CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
        BEGIN
            SELECT RAISE(ABORT, 'events are append-only: DELETE is not allowed');
        END;
        CREATE TABLE checkpoints (
            name       TEXT    PRIMARY KEY,
            position   INTEGER NOT NULL CHECK (position >= 0),
            updated_at TEXT    NOT NULL
        );
        """,
    ),
)

# The events table's columns in the order of ``RecordedEvent``'s fields, for SELECT and INSERT.
EVENT_COLUMNS = "position, event_id, stream_id, version, type, data, metadata, recorded_at, hash"

# The log's own guards; verify() reports any that is missing.
GUARD_TRIGGERS = (
    "events_are_append_only_update",
    "events_are_append_only_delete",
    "events_are_append_only_replace",
    "events_versions_are_contiguous",
)

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL,
    PRIMARY KEY (component, version)
)
"""


def apply_migrations(
    conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]
) -> list[int]:
    """Apply the migrations of ``component`` not yet recorded; return the versions applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each migration runs in its
    own ``BEGIN IMMEDIATE`` transaction, so two processes opening a new file cannot both apply it.
    """
    conn.execute(_CREATE_MIGRATIONS_TABLE)
    known = {migration.version for migration in migrations}
    _refuse_unknown(conn, component, known)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked again under the write lock: another process may have migrated meanwhile.
            recorded = _refuse_unknown(conn, component, known)
            if migration.version not in recorded:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (component, version, name, applied_at)"
                    " VALUES (?, ?, ?, ?)",
                    (component, migration.version, migration.name, format_time(datetime.now(UTC))),
                )
                applied.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return applied


def _refuse_unknown(conn: sqlite3.Connection, component: str, known: set[int]) -> set[int]:
    """The recorded versions of ``component``; ``SchemaTooNewError`` if any is unknown here."""
    recorded = _recorded_versions(conn, component)
    newer = recorded - known
    if newer:
        raise SchemaTooNewError(
            f"database has {component} schema version {max(newer)}, "
            f"this code knows up to {max(known, default=0)}"
        )
    return recorded


def _recorded_versions(conn: sqlite3.Connection, component: str) -> set[int]:
    rows = conn.execute(
        "SELECT version FROM schema_migrations WHERE component = ?", (component,)
    ).fetchall()
    return {version for (version,) in rows}


def _statements(sql: str) -> list[str]:
    """Split a migration into statements; ``executescript`` would commit our transaction."""
    statements: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements
