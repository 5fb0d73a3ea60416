"""The SQLite backend of the contract suite: stores on one file in the test's folder.

Besides what ``Backend`` asks, it hands the SQLite-only tests (``tests/integration``) the file
itself: ``path``, a plain connection (``raw``) and statements run with the guards dropped
(``tamper``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventstore import EventStore, RecordedEvent
from eventstore.sqlite import GUARD_TRIGGERS, SQLiteEventStore
from eventstore.sqlite.reads import LAST_EVENTS_CHUNK
from tests.contract.backends import Change, OfferedRules, TotalsRules


class SQLiteTotals(TotalsRules):
    """The ``totals`` view in a table of the store's file."""

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS totals (stream_id TEXT PRIMARY KEY, total INTEGER NOT NULL)"
        )

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM totals")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        conn.executemany(
            "INSERT INTO totals VALUES (?, ?) ON CONFLICT (stream_id)"
            " DO UPDATE SET total = total + excluded.total",
            self.amounts(events),
        )


class SQLiteOffered(OfferedRules):
    """The ``offered`` view in a table of the store's file."""

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS offered (position INTEGER PRIMARY KEY)")

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM offered")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        conn.executemany("INSERT INTO offered VALUES (?)", [(e.position,) for e in events])


@dataclass
class SQLiteBackend:
    """Opens stores on one SQLite file, and reaches that file behind the store's back."""

    path: Path
    name: str = "sqlite"
    last_events_chunk: int = LAST_EVENTS_CHUNK
    refused: type[Exception] = sqlite3.DatabaseError

    @property
    def location(self) -> str:
        return str(self.path)

    async def open(self, **options: Any) -> EventStore:
        return await SQLiteEventStore.open(self.path, **options)

    def dispose(self) -> None:
        pass  # the file goes with the test's folder

    def stored_text(self, position: int) -> tuple[str, str, str]:
        ((data, metadata, recorded_at),) = self._rows(
            "SELECT data, metadata, recorded_at FROM events WHERE position = ?", position
        )
        return data, metadata, recorded_at

    def tamper_data(self, position: int, data_json: str) -> None:
        with contextlib.closing(self.raw()) as conn:
            for trigger in GUARD_TRIGGERS:
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            conn.execute("UPDATE events SET data = ? WHERE position = ?", (data_json, position))

    def change_event(self, change: Change, position: int) -> None:
        statement = {
            "update": "UPDATE events SET data = '{}' WHERE position = ?",
            "delete": "DELETE FROM events WHERE position = ?",
        }[change]
        with contextlib.closing(self.raw()) as conn:
            conn.execute(statement, (position,))

    def totals_view(self) -> SQLiteTotals:
        return SQLiteTotals()

    def totals(self) -> dict[str, int]:
        return dict(self._rows("SELECT stream_id, total FROM totals"))

    def clear_totals(self) -> None:
        with contextlib.closing(self.raw()) as conn:
            conn.execute("DELETE FROM totals")

    def offered_view(self) -> SQLiteOffered:
        return SQLiteOffered()

    def offered(self) -> list[int]:
        return [position for (position,) in self._rows("SELECT position FROM offered")]

    def _rows(self, query: str, *parameters: object) -> list[Any]:
        with contextlib.closing(self.raw()) as conn:
            return conn.execute(query, parameters).fetchall()

    # -- for the SQLite-only tests -----------------------------------------------------------

    def raw(self) -> sqlite3.Connection:
        """A plain connection, as an attacker or a careless operator would have."""
        return sqlite3.connect(self.path, isolation_level=None)

    def tamper(self, *statements: str) -> None:
        """Run ``statements`` with the log's guard triggers dropped."""
        conn = self.raw()
        try:
            for trigger in GUARD_TRIGGERS:
                conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()
