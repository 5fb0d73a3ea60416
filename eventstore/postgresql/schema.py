"""The PostgreSQL store's schema: numbered migrations recorded in the database, the log's guard
triggers, and the server-side function every append goes through.

Migrations are grouped by component, as on SQLite (``eventstore.sqlite.schema``), so that code
built on the store (the service's views) keeps its own numbered list in the same
``schema_migrations`` table with :func:`apply_migrations`. A database that records a migration
this code does not know was written by a newer release and is refused rather than misread.

``eventstore_append`` is the only code that runs under the log's lock (``APPEND_LOCK``): it reads
the head, gives the events their positions, time and hashes, inserts them, moves checkpoints and
sends the wake-up notice, all in one round trip, so the lock is held for as short a time as one
statement and the commit take. Its hash is ``records.chain_hash`` computed by the server:
``sha256`` over the previous hash and the fields joined by the same unit separator, numbers as
their decimal text, which is what Python's ``str`` writes too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import asyncpg

from eventstore.errors import SchemaTooNewError
from eventstore.records import format_time
from eventstore.sqlite.schema import Migration

# pg_advisory_xact_lock keys: one for the log's order, one for migrations ("events", "migrate").
APPEND_LOCK: Final = 0x6576656E7473
MIGRATION_LOCK: Final = 0x6D696772617465
# The channel of the wake-up notice an append sends with its commit (the new head position).
NOTIFY_CHANNEL: Final = "eventstore"

EVENTSTORE_MIGRATIONS: Sequence[Migration] = (
    Migration(
        1,
        "events, checkpoints, append-only triggers and the append function",
        r"""
        CREATE TABLE events (
            position    BIGINT  PRIMARY KEY,  -- global order of commit, gap-free
            event_id    TEXT    NOT NULL UNIQUE,
            stream_id   TEXT    NOT NULL,
            version     INTEGER NOT NULL CHECK (version >= 1),
            type        TEXT    NOT NULL,
            data        TEXT    NOT NULL,     -- the exact JSON text the hash covers
            metadata    TEXT    NOT NULL,
            recorded_at TEXT    NOT NULL,     -- format_time's text: it sorts in time order
            hash        TEXT    NOT NULL,
            -- The writing transaction, for a future reader that orders by it without the lock.
            xact_id     xid8    NOT NULL DEFAULT pg_current_xact_id(),
            UNIQUE (stream_id, version)
        );
        CREATE TABLE checkpoints (
            name       TEXT   PRIMARY KEY,
            position   BIGINT NOT NULL CHECK (position >= 0),
            updated_at TEXT   NOT NULL
        );
        CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP;
        END $$;
        CREATE TRIGGER events_are_append_only BEFORE UPDATE OR DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
        CREATE TRIGGER events_are_append_only_truncate BEFORE TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

        -- Errors: EV001 a checkpoint would not move forward (DETAIL: the stored position),
        -- EV002 a checkpoint past the log's end, EV003 a gap in a stream's versions.
        CREATE FUNCTION eventstore_append(
            p_ids TEXT[], p_streams TEXT[], p_versions INTEGER[], p_types TEXT[],
            p_data TEXT[], p_metadata TEXT[], p_now TEXT,
            p_checkpoint_names TEXT[], p_checkpoint_positions BIGINT[]
        ) RETURNS TABLE (out_first BIGINT, out_time TEXT, out_hashes TEXT[])
        LANGUAGE plpgsql AS $$
        DECLARE
            head_position BIGINT := 0;
            head_hash TEXT := repeat('0', 64);
            head_time TEXT := '';
            n_events INTEGER := coalesce(array_length(p_ids, 1), 0);
            hashes TEXT[] := '{}';
            stored BIGINT;
            i INTEGER;
        BEGIN
            -- Taken last, after the caller's checks: from here to the commit, nobody else can
            -- take a position, so positions are gap-free and committed in their order.
            PERFORM pg_advisory_xact_lock(<APPEND_LOCK>);
            SELECT e.position, e.hash, e.recorded_at INTO head_position, head_hash, head_time
                FROM events e ORDER BY e.position DESC LIMIT 1;
            IF NOT FOUND THEN
                head_position := 0; head_hash := repeat('0', 64); head_time := '';
            END IF;
            -- Time never goes backwards along positions, even when the clock does.
            out_time := greatest(p_now COLLATE "C", head_time COLLATE "C");
            out_first := head_position + 1;
            FOR i IN 1 .. n_events LOOP
                head_hash := encode(sha256(convert_to(concat_ws(E'\x1f', head_hash,
                    (head_position + i)::text, p_ids[i], p_streams[i], p_versions[i]::text,
                    p_types[i], p_data[i], p_metadata[i], out_time), 'UTF8')), 'hex');
                hashes[i] := head_hash;
            END LOOP;
            INSERT INTO events (position, event_id, stream_id, version, type, data, metadata,
                                recorded_at, hash)
            SELECT head_position + u.n, u.id, u.stream, u.version, u.type, u.data, u.metadata,
                   out_time, u.hash
              FROM unnest(p_ids, p_streams, p_versions, p_types, p_data, p_metadata, hashes)
                   WITH ORDINALITY AS u(id, stream, version, type, data, metadata, hash, n);
            -- Versions are contiguous per stream: version n needs n - 1, whoever wrote it.
            -- A scalar subquery, so that it stays an index probe per event: NOT EXISTS may be
            -- planned as an anti-join over the whole table, under the lock.
            IF EXISTS (SELECT 1 FROM unnest(p_streams, p_versions) AS u(stream, version)
                       WHERE u.version > 1 AND (
                           SELECT e.position FROM events e
                            WHERE e.stream_id = u.stream AND e.version = u.version - 1
                       ) IS NULL) THEN
                RAISE EXCEPTION 'stream version gap' USING ERRCODE = 'EV003';
            END IF;
            FOR i IN 1 .. coalesce(array_length(p_checkpoint_names, 1), 0) LOOP
                IF p_checkpoint_positions[i] > head_position + n_events THEN
                    RAISE EXCEPTION 'checkpoint position % is past the log''s end (%)',
                        p_checkpoint_positions[i], head_position + n_events USING ERRCODE = 'EV002';
                END IF;
                -- A compare-and-swap: the row is locked and the condition checked on its
                -- newest version, so a stale worker's move fails here.
                INSERT INTO checkpoints AS c (name, position, updated_at)
                    VALUES (p_checkpoint_names[i], p_checkpoint_positions[i], out_time)
                    ON CONFLICT (name) DO UPDATE
                    SET position = excluded.position, updated_at = excluded.updated_at
                    WHERE excluded.position > c.position;
                IF NOT FOUND THEN
                    SELECT c.position INTO stored FROM checkpoints c
                     WHERE c.name = p_checkpoint_names[i];
                    RAISE EXCEPTION 'checkpoint % is at %', p_checkpoint_names[i], stored
                        USING ERRCODE = 'EV001', DETAIL = stored::text;
                END IF;
            END LOOP;
            IF n_events > 0 THEN
                -- Delivered at commit; only a hint: subscribers poll as well.
                PERFORM pg_notify('<NOTIFY_CHANNEL>', (head_position + n_events)::text);
            END IF;
            out_hashes := hashes;
            RETURN NEXT;
        END $$;
        """.replace("<APPEND_LOCK>", str(APPEND_LOCK)).replace("<NOTIFY_CHANNEL>", NOTIFY_CHANNEL),
    ),
)

# The events table's columns in the order of ``RecordedEvent``'s fields.
EVENT_COLUMNS = "position, event_id, stream_id, version, type, data, metadata, recorded_at, hash"

# The log's own guards; verify() reports any that is missing or disabled.
GUARD_TRIGGERS = ("events_are_append_only", "events_are_append_only_truncate")

# Error codes eventstore_append raises.
CHECKPOINT_CONFLICT = "EV001"
CHECKPOINT_PAST_END = "EV002"
VERSION_GAP = "EV003"

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL,
    PRIMARY KEY (component, version)
)
"""


async def apply_migrations(
    conn: asyncpg.Connection, component: str, migrations: Sequence[Migration]
) -> list[int]:
    """Apply the migrations of ``component`` not yet recorded; return the versions applied.

    ``conn`` must be outside a transaction: each migration runs in one of its own under an
    advisory lock, so two processes opening a new database cannot both apply it.
    """
    known = {migration.version for migration in migrations}
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await _create_migrations_table(conn)
            recorded = await _refuse_unknown(conn, component, known)
            if migration.version not in recorded:
                await conn.execute(migration.sql)  # several statements: the simple protocol
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version, name, applied_at)"
                    " VALUES ($1, $2, $3, $4)",
                    component,
                    migration.version,
                    migration.name,
                    format_time(datetime.now(UTC)),
                )
                applied.append(migration.version)
    if not migrations:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await _create_migrations_table(conn)
            await _refuse_unknown(conn, component, known)
    return applied


async def _create_migrations_table(conn: asyncpg.Connection) -> None:
    """Create ``schema_migrations`` unless it exists. Looked up first: ``CREATE TABLE IF NOT
    EXISTS`` needs the right to create tables even when there is nothing to create, which a
    service's role that may only read and append does not have."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        await conn.execute(_CREATE_MIGRATIONS_TABLE)


async def _refuse_unknown(conn: asyncpg.Connection, component: str, known: set[int]) -> set[int]:
    """The recorded versions of ``component``; ``SchemaTooNewError`` if any is unknown here."""
    rows = await conn.fetch("SELECT version FROM schema_migrations WHERE component = $1", component)
    recorded = {int(row[0]) for row in rows}
    newer = recorded - known
    if newer:
        raise SchemaTooNewError(
            f"database has {component} schema version {max(newer)}, "
            f"this code knows up to {max(known, default=0)}"
        )
    return recorded


__all__ = ["EVENTSTORE_MIGRATIONS", "GUARD_TRIGGERS", "Migration", "apply_migrations"]
