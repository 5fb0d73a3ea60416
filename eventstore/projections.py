"""Inline projections: view code that runs inside the append's own transaction.

A projector's ``apply`` is called on the writer's connection, inside the savepoint of the append
that produced the events, so the view rows commit atomically with their events and a reader never
sees one without the other. Its checkpoint is therefore the log's head by construction. A rebuild
calls ``reset`` and then ``apply`` over the whole log with the very same code.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Protocol

from eventstore.model import RecordedEvent


class Projector(Protocol):
    """A view kept in the same database as the log."""

    name: str

    def setup(self, conn: sqlite3.Connection) -> None:
        """Bring the view's tables up to date; runs at every open, in autocommit mode, so
        that it can use ``apply_migrations`` (each migration is its own transaction)."""

    def reset(self, conn: sqlite3.Connection) -> None:
        """Remove every row of the view, before a rebuild replays the log into it."""

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        """Fold committed-to-be events into the view; raising fails the append that made them."""
