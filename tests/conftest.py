"""Fixtures shared by every test: a backend to open event stores on, and a store on it.

The contract tests in ``tests/contract`` are written once against ``eventstore.EventStore`` and
run against every backend in ``BACKENDS``: SQLite on a file in the test's folder, PostgreSQL on
a database the test creates and drops (``INVOICE_TEST_POSTGRES`` names the server; an
unreachable one fails the test, it never skips). A new backend adds a class beside them
(``tests/contract/backends``) and one entry here. Tests of one backend's own behaviour
(``tests/integration``) override ``backend`` with theirs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from eventstore import EventStore
from tests.contract.backends import Backend
from tests.contract.backends.postgresql import PostgreSQLBackend
from tests.contract.backends.sqlite import SQLiteBackend

# Backend name -> its backend on a fresh database (given the test's temporary folder).
BACKENDS: dict[str, Callable[[Path], Backend]] = {
    "sqlite": lambda folder: SQLiteBackend(folder / "events.db"),
    "postgresql": lambda folder: PostgreSQLBackend(),
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = BACKENDS[request.param](tmp_path)
    try:
        yield made
    finally:
        made.dispose()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[EventStore]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()
