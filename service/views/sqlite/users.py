"""The accounts view: who can log in, with which role, their password hash, and whether the
account is enabled."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore import Migration, apply_migrations
from service.domain.codec import format_time
from service.domain.events import UserDisabled, UserEnabled, UserRegistered
from service.views.sqlite.invoices import Decoded

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


USER_EVENTS = frozenset({"UserRegistered", "UserDisabled", "UserEnabled"})


class UsersView:
    name = "users"
    tables = ("users",)

    def setup(self, conn: sqlite3.Connection) -> None:
        apply_migrations(conn, "view:users", MIGRATIONS)

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM users")

    def apply_decoded(self, conn: sqlite3.Connection, events: Sequence[Decoded]) -> None:
        for _, event in events:
            if isinstance(event, UserRegistered):
                conn.execute(
                    "INSERT INTO users (username, role, platform, password_hash, registered_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        event.username,
                        event.role,
                        event.platform,
                        event.password_hash,
                        format_time(event.registered_at),
                    ),
                )
            elif isinstance(event, UserDisabled | UserEnabled):
                enabled = isinstance(event, UserEnabled)
                conn.execute(
                    "UPDATE users SET enabled = ? WHERE username = ?", (enabled, event.username)
                )
