"""``open_store`` opens a store by where it lives: a path is SQLite's, a URL names its backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import NO_STREAM, NewEvent, UnsupportedLocation, open_store
from eventstore.postgresql import PostgreSQLEventStore
from eventstore.sqlite import SQLiteEventStore
from tests.contract.backends.postgresql import PostgreSQLBackend


@pytest.mark.parametrize("as_text", [False, True], ids=["path", "text"])
async def test_a_path_opens_an_sqlite_store_with_its_options(tmp_path: Path, as_text: bool) -> None:
    """A ``Path`` or a ``str`` without a scheme is an SQLite file; options reach its ``open``."""
    path = tmp_path / "events.db"
    async with await open_store(str(path) if as_text else path, page_size=3) as store:
        assert isinstance(store, SQLiteEventStore)
        await store.append("s", [NewEvent("E", {})], NO_STREAM)

    async with await SQLiteEventStore.open(path) as reopened:
        assert await reopened.head_position() == 1


async def test_a_url_of_an_unknown_backend_is_refused_as_not_yet_supported() -> None:
    """A scheme no backend opens: a clear error naming the scheme, not a file of that name."""
    with pytest.raises(UnsupportedLocation, match=r"mysql:// .* not yet supported"):
        await open_store("mysql://localhost/invoices")


async def test_a_postgresql_url_opens_a_postgresql_store_with_its_options() -> None:
    """``postgresql://`` (and ``postgres://``) reach the PostgreSQL backend with its options."""
    backend = PostgreSQLBackend()
    try:
        async with await open_store(backend.location, page_size=3) as store:
            assert isinstance(store, PostgreSQLEventStore)
            await store.append("s", [NewEvent("E", {})], NO_STREAM)
        short = backend.location.replace("postgresql://", "postgres://", 1)
        async with await open_store(short) as reopened:
            assert await reopened.head_position() == 1
    finally:
        backend.dispose()
