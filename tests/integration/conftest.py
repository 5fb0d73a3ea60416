"""The SQLite store's own tests reach its file behind its back, so their backend is SQLite's
alone, whatever other backends the contract suite runs against (``tests/conftest.py``). The
command-line tests share one database filled with invoices in every final state."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.contract.backends.sqlite import SQLiteBackend
from tests.integration.populated import Populated, populate


@pytest.fixture
def backend(tmp_path: Path) -> SQLiteBackend:
    return SQLiteBackend(tmp_path / "events.db")


@pytest.fixture(scope="session")
def final_states_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Populated]:
    """The database ``populate`` filled, made once for every test that copies it (never to be
    changed in place), and what was made in it."""
    path = tmp_path_factory.mktemp("final-states") / "invoices.db"
    made = asyncio.run(populate(path))
    return path, made
