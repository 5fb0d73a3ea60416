"""``open_store`` opens a store by where it lives: a path is SQLite's, a URL names its backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventstore import NO_STREAM, NewEvent, UnsupportedLocation, open_store
from eventstore.sqlite import SQLiteEventStore


@pytest.mark.parametrize("as_text", [False, True], ids=["path", "text"])
async def test_a_path_opens_an_sqlite_store_with_its_options(tmp_path: Path, as_text: bool) -> None:
    """A ``Path`` or a ``str`` without a scheme is an SQLite file; options reach its ``open``."""
    path = tmp_path / "events.db"
    async with await open_store(str(path) if as_text else path, page_size=3) as store:
        assert isinstance(store, SQLiteEventStore)
        await store.append("s", [NewEvent("E", {})], NO_STREAM)

    async with await SQLiteEventStore.open(path) as reopened:
        assert await reopened.head_position() == 1


async def test_a_postgresql_url_is_refused_as_not_yet_supported() -> None:
    """No backend opens a URL yet: a clear error naming the scheme, not a file of that name."""
    with pytest.raises(UnsupportedLocation, match=r"postgresql:// .* not yet supported"):
        await open_store("postgresql://localhost/invoices")
