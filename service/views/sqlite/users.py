"""The accounts view: who can log in, with which role, and their password hash."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore import Migration, apply_migrations
from service.domain.codec import format_time
from service.domain.events import UserRegistered
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
)


USER_EVENTS = frozenset({"UserRegistered"})


class UsersView:
    name = "users"
    tables = ("users",)

    def setup(self, conn: sqlite3.Connection) -> None:
        apply_migrations(conn, "view:users", MIGRATIONS)

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM users")

    def apply_decoded(self, conn: sqlite3.Connection, events: Sequence[Decoded]) -> None:
        for _, event in events:
            if not isinstance(event, UserRegistered):
                continue
            conn.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                (
                    event.username,
                    event.role,
                    event.platform,
                    event.password_hash,
                    format_time(event.registered_at),
                ),
            )
