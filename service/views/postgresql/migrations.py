"""Numbered migrations of the views' tables on PostgreSQL, recorded in ``view_migrations``.

Each view component (``view:invoices``, ``view:users``, ``view:ledger``) lists its migrations in
order; ``apply_migrations`` applies those not yet recorded, each in its own transaction together
with its record, and refuses a database that holds a version this code does not know (a newer
release migrated it: running older code on it could write rows the newer one misreads). Several
processes and nodes open one database at once, so each migration takes a transaction-scoped
advisory lock and looks again under it: exactly one of them applies it.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from eventstore import Migration, SchemaTooNewError

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS view_migrations (
    component  TEXT        NOT NULL,
    version    INTEGER     NOT NULL,
    name       TEXT        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""

# One key for every view's migrations: they are few, short, and run only at an open.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('view_migrations'))"


async def apply_migrations(
    conn: asyncpg.Connection, component: str, migrations: Sequence[Migration]
) -> list[int]:
    """Apply the migrations of ``component`` not yet recorded; return the versions applied.
    ``conn`` must be outside any transaction: each migration is one of its own."""
    # Looked up first: CREATE TABLE IF NOT EXISTS needs the right to create tables even when
    # there is nothing to create, which a service's role that only reads and appends lacks.
    if await conn.fetchval("SELECT to_regclass('view_migrations')") is None:
        async with conn.transaction():
            await conn.execute(_LOCK)  # two processes must not both create the table
            await conn.execute(_CREATE_TABLE)
    known = {migration.version for migration in migrations}
    await _refuse_unknown(conn, component, known)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        async with conn.transaction():
            await conn.execute(_LOCK)
            # Looked at again under the lock: another process may have migrated meanwhile.
            if migration.version in await _refuse_unknown(conn, component, known):
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO view_migrations (component, version, name) VALUES ($1, $2, $3)",
                component,
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
    return applied


async def _refuse_unknown(conn: asyncpg.Connection, component: str, known: set[int]) -> set[int]:
    """The recorded versions of ``component``; ``SchemaTooNewError`` if any is unknown here."""
    rows = await conn.fetch("SELECT version FROM view_migrations WHERE component = $1", component)
    recorded = {row["version"] for row in rows}
    newer = recorded - known
    if newer:
        raise SchemaTooNewError(
            f"database has {component} schema version {max(newer)}, "
            f"this code knows up to {max(known, default=0)}"
        )
    return recorded
