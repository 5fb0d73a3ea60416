"""The double-entry ledger view on PostgreSQL: every posting, and each account's balance.

The lines are ``service.views.rows.ledger_lines``' (``service.domain.ledger.postings`` of each
money event), as on SQLite; each append's lines are one insert from arrays, and the balances
they move one upsert, in account order (two appends' upserts never wait on each other in
opposite orders).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from eventstore import Migration, RecordedEvent
from eventstore.postgresql import apply_migrations
from service.views.postgresql.arrays import columns
from service.views.rows import LEDGER_READS, Entry, balance_changes, ledger_lines

MIGRATIONS = (
    Migration(
        1,
        "ledger",
        """
        CREATE TABLE ledger_entries (
            position    BIGINT      NOT NULL,
            line        INTEGER     NOT NULL,
            account     TEXT        NOT NULL,
            amount      BIGINT      NOT NULL,
            event_type  TEXT        NOT NULL,
            invoice     TEXT,
            recorded_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (position, line)
        );
        -- ledger_entries(username): an account's newest postings first.
        CREATE INDEX ledger_entries_by_account ON ledger_entries (account, position, line);
        CREATE TABLE account_balances (
            account TEXT   PRIMARY KEY,
            balance BIGINT NOT NULL
        );
        """,
    ),
)

_INSERT = """
INSERT INTO ledger_entries (position, line, account, amount, event_type, invoice, recorded_at)
SELECT position, line, account, amount, event_type, invoice, recorded_at::timestamptz
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::text[], $6::text[],
            $7::text[])
     AS t(position, line, account, amount, event_type, invoice, recorded_at)
"""
_UPSERT_BALANCES = """
INSERT INTO account_balances (account, balance)
SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (account) DO UPDATE SET balance = account_balances.balance + excluded.balance
"""


class LedgerView:
    name = "ledger"
    reads = LEDGER_READS
    tables = ("ledger_entries", "account_balances")

    async def setup(self, conn: asyncpg.Connection) -> None:
        await apply_migrations(conn, "view:ledger", MIGRATIONS)

    async def reset(self, conn: asyncpg.Connection) -> None:
        # DELETE, not TRUNCATE, as the invoice view's reset: readers go on meanwhile.
        await conn.execute("DELETE FROM ledger_entries")
        await conn.execute("DELETE FROM account_balances")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        changes = balance_changes(await _insert_entries(conn, events))
        if changes:
            await conn.execute(_UPSERT_BALANCES, *columns(changes, 2))

    def replayer(self) -> LedgerReplay:
        return LedgerReplay()


class LedgerReplay:
    """A rebuild's replay of the ledger (after ``reset``): the entries page by page, and each
    account's balance once at the end, summed from its entries, as on SQLite."""

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        await _insert_entries(conn, events)

    async def finish(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO account_balances (account, balance)"
            " SELECT account, SUM(amount) FROM ledger_entries GROUP BY account"
        )


async def _insert_entries(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> list[Entry]:
    """Insert the ledger lines of ``events``; return them."""
    entries = ledger_lines(events)
    if entries:
        await conn.execute(_INSERT, *columns(entries, 7))
    return entries
