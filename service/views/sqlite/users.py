"""The accounts view: who can log in, with which role, their password hash, and whether the
account is enabled."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore import Migration, apply_migrations
from service.views.rows import Decoded, user_changes

MIGRATIONS = (
    Migration(
        1,
        "users",
        """
        CREATE TABLE users (
            username      TEXT PRIMARY KEY,
            role          TEXT NOT NULL,
            platform      TEXT,
            password_hash TEXT NOT NULL,
            registered_at TEXT NOT NULL
        );
        """,
    ),
    # Every account registered before accounts could be disabled is enabled: the default
    # fills old rows, and a database made before this migration opens as it was.
    Migration(
        2,
        "users.enabled",
        "ALTER TABLE users ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;",
    ),
)


class UsersView:
    name = "users"
    tables = ("users",)

    def setup(self, conn: sqlite3.Connection) -> None:
        apply_migrations(conn, "view:users", MIGRATIONS)

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM users")

    def apply_decoded(self, conn: sqlite3.Connection, events: Sequence[Decoded]) -> None:
        for change, row in user_changes(events):
            if change == "register":
                conn.execute(
                    "INSERT INTO users (username, role, platform, password_hash, registered_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    row,
                )
            else:
                conn.execute("UPDATE users SET enabled = ? WHERE username = ?", row)
