"""The SQLite store behind an app's ``EventStore``, for tests that read its view tables in SQL.

The service reads its views only through the read model; a test that checks a view's rows
(the ledger sums to zero, no invoice row is left behind) asks the SQLite store directly, and
says so by going through here. A second backend gives such tests its own way in.
"""

from __future__ import annotations

from eventstore import EventStore
from eventstore.sqlite import SQLiteEventStore


def sql_store(store: EventStore) -> SQLiteEventStore:
    """``store`` as the SQLite store it is (the tests' apps open SQLite files)."""
    assert isinstance(store, SQLiteEventStore), f"not an SQLite store: {store!r}"
    return store
