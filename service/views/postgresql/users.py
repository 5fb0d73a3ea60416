"""The accounts view on PostgreSQL: who can log in, with which role, their password hash, and
whether the account is enabled (the rows are ``service.views.rows.user_changes``')."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from eventstore import Migration
from eventstore.postgresql import apply_migrations
from service.views.rows import Decoded, user_changes

MIGRATIONS = (
    Migration(
        1,
        "users",
        """
        CREATE TABLE users (
            username      TEXT        PRIMARY KEY,
            role          TEXT        NOT NULL,
            platform      TEXT,
            password_hash TEXT        NOT NULL,
            registered_at TIMESTAMPTZ NOT NULL,
            enabled       BOOLEAN     NOT NULL DEFAULT TRUE
        );
        """,
    ),
)

_REGISTER = (
    "INSERT INTO users (username, role, platform, password_hash, registered_at)"
    " VALUES ($1, $2, $3, $4, $5::text::timestamptz)"
)
_ENABLE = "UPDATE users SET enabled = $1 WHERE username = $2"


class UsersView:
    name = "users"
    tables = ("users",)

    async def setup(self, conn: asyncpg.Connection) -> None:
        await apply_migrations(conn, "view:users", MIGRATIONS)

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM users")  # not TRUNCATE: readers go on meanwhile

    async def apply_decoded(self, conn: asyncpg.Connection, events: Sequence[Decoded]) -> None:
        # Account events are rare (a registration, a disable): one statement each, in order.
        for change, row in user_changes(events):
            await conn.execute(_REGISTER if change == "register" else _ENABLE, *row)
