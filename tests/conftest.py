"""Fixtures shared by every test: a backend to open event stores on, and a store on it.

The contract tests in ``tests/contract`` are written once and run against every backend listed
in ``BACKENDS``; a new backend (PostgreSQL) adds itself there with the same few operations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventstore import EventStore
from eventstore.sqlite import GUARD_TRIGGERS, SQLiteEventStore


@dataclass
class SQLiteBackend:
    """Opens stores on one SQLite file, and reaches that file behind the store's back."""

    path: Path
    name: str = "sqlite"

    async def open(self, **options: Any) -> EventStore:
        return await SQLiteEventStore.open(self.path, **options)

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


BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteBackend]:
    if request.param == "sqlite":
        yield SQLiteBackend(tmp_path / "events.db")
    else:  # pragma: no cover - a new backend must be added above
        raise ValueError(request.param)


@pytest.fixture
async def store(backend: SQLiteBackend) -> AsyncIterator[EventStore]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()
