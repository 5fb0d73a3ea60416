"""Fixtures shared by every test: a backend to open event stores on, and a store on it.

The contract tests in ``tests/contract`` are written once against ``eventstore.EventStore`` and
run against every backend in ``BACKENDS``; a new backend (PostgreSQL) adds a class beside
``SQLiteBackend`` (``tests/contract/backends``) and one entry here. Tests of one backend's own
behaviour (``tests/integration``) override ``backend`` with theirs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from eventstore import EventStore
from tests.contract.backends import Backend
from tests.contract.backends.sqlite import SQLiteBackend

# Backend name -> its backend on a fresh database in the test's temporary folder.
BACKENDS: dict[str, Callable[[Path], Backend]] = {
    "sqlite": lambda folder: SQLiteBackend(folder / "events.db"),
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[EventStore]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()
