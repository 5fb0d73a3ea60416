"""What a database holds, read from outside the app: a store's whole log, and the rows of an
SQLite file's view tables. For tests that compare two databases (a copy with its source, a
rebuild with the views the appends kept), and so read every row in a stable order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from eventstore import RecordedEvent, open_store
from service.storage.view_tables import VIEW_TABLES


def read_log(location: str | Path) -> list[RecordedEvent]:
    """Every event of the store at ``location`` (a file or a URL), in position order; from
    synchronous code, so not while an event loop runs on this thread."""

    async def read() -> list[RecordedEvent]:
        async with await open_store(location) as store:
            return [event async for event in store.read_all()]

    return asyncio.run(read())


def sqlite_view_rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view table of the SQLite file ``database``, opened read-only."""
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in VIEW_TABLES.items()
        }
    finally:
        conn.close()


def sqlite_view_text(database: Path) -> dict[str, str]:
    """Every view table's rows as text that tells 1 from 1.0 and '1' from 1 (which compare
    equal as values)."""
    return {table: repr(rows) for table, rows in sqlite_view_rows(database).items()}
