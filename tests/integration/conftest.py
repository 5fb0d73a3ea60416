"""The SQLite store's own tests reach its file behind its back, so their backend is SQLite's
alone, whatever other backends the contract suite runs against (``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.backends.sqlite import SQLiteBackend


@pytest.fixture
def backend(tmp_path: Path) -> SQLiteBackend:
    return SQLiteBackend(tmp_path / "events.db")
