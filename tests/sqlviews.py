"""A backend-neutral probe into an app's view tables, for tests that check a view's rows in SQL.

The service reads its views only through the read model; a test that checks a view's rows (the
ledger sums to zero, no invoice row is left behind) asks the store's database directly, and says
so by going through here. Both backends keep the same tables under the same names, so one SQL
text serves both: written with SQLite's ``?`` placeholders, turned into ``$1 …`` for asyncpg and
run on the PostgreSQL store's reader pool. Values come back as SQLite holds them (a
``timestamptz`` as the service's time text, a boolean as 0 or 1), and a ``datetime`` parameter is
given to each backend as it stores times, so assertions need not know the backend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventstore import EventStore
from eventstore.postgresql import PostgreSQLEventStore
from eventstore.sqlite import SQLiteEventStore
from service.domain.codec import format_time

# Each view table and the columns that order its rows (the same on both backends).
VIEW_TABLES = {
    "invoice_view": "seq",
    "invoice_waybills": "waybill_number, seq",
    "ledger_entries": "position, line",
    "account_balances": "account",
    "users": "username",
}

_PLACEHOLDER = re.compile(r"\?")


async def views_query(
    store: EventStore, sql: str, parameters: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """The rows of one read-only query on the views of ``store``'s database, as SQLite's."""
    if isinstance(store, SQLiteEventStore):
        sqlite_parameters = [_sqlite_value(value) for value in parameters]
        return [tuple(row) for row in await store.query(sql, sqlite_parameters)]
    if isinstance(store, PostgreSQLEventStore):
        rows = await store.pool.fetch(_numbered(sql), *parameters)
        return [tuple(_as_sqlite(value) for value in row) for row in rows]
    raise TypeError(f"no view probe for {type(store).__name__}")


async def view_tables(store: EventStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every view table's rows, in a stable order."""
    return {
        table: await views_query(store, f"SELECT * FROM {table} ORDER BY {order}")
        for table, order in VIEW_TABLES.items()
    }


def _numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2 …`` (the probe's SQL holds no ``?`` in a literal)."""
    counter = iter(range(1, 1_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def _sqlite_value(value: Any) -> Any:
    return format_time(value) if isinstance(value, datetime) else value


def _as_sqlite(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return format_time(value)
    return value
