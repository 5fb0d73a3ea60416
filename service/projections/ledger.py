"""The double-entry ledger view: every posting, and each account's balance, from the log.

Postings come from ``service.domain.ledger.postings`` and sum to zero for every event, so
``SELECT SUM(balance) FROM account_balances`` is 0 after every commit; the tests check it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore import EventSelection, Migration, RecordedEvent, apply_migrations
from service.domain.codec import format_time
from service.domain.events import decode
from service.domain.ledger import postings
from service.projections.invoices import Decoded

MIGRATIONS = (
    Migration(
        1,
        "ledger",
        """
        CREATE TABLE ledger_entries (
            position    INTEGER NOT NULL,
            line        INTEGER NOT NULL,
            account     TEXT    NOT NULL,
            amount      INTEGER NOT NULL,
            event_type  TEXT    NOT NULL,
            invoice     TEXT,
            recorded_at TEXT    NOT NULL,
            PRIMARY KEY (position, line)
        );
        CREATE INDEX ledger_entries_by_account ON ledger_entries (account, position);
        CREATE TABLE account_balances (
            account TEXT    PRIMARY KEY,
            balance INTEGER NOT NULL
        );
        """,
    ),
)

# Event types that can move money; the rest are skipped without decoding them.
MONEY_EVENTS = frozenset(
    {"BalanceToppedUp", "BalanceDebited", "BalanceCredited", "InvoicePaid", "TransactionCompleted"}
)


class LedgerView:
    name = "ledger"
    reads = EventSelection(types=MONEY_EVENTS)
    tables = ("ledger_entries", "account_balances")

    def setup(self, conn: sqlite3.Connection) -> None:
        apply_migrations(conn, "view:ledger", MIGRATIONS)

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM ledger_entries")
        conn.execute("DELETE FROM account_balances")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        money = [recorded for recorded in events if recorded.type in MONEY_EVENTS]
        self.apply_decoded(conn, [(recorded, decode(recorded)) for recorded in money])

    def apply_decoded(self, conn: sqlite3.Connection, events: Sequence[Decoded]) -> None:
        entries: list[tuple[object, ...]] = []
        changes: dict[str, int] = {}
        # Events of one commit share their time: format it once (a replay formats the log's).
        last_time, recorded_at = None, ""
        for recorded, event in events:
            if recorded.type not in MONEY_EVENTS:
                continue
            invoice = getattr(event, "invoice", None)
            if recorded.recorded_at != last_time:
                last_time, recorded_at = recorded.recorded_at, format_time(recorded.recorded_at)
            for line, (account, amount) in enumerate(postings(event)):
                entries.append(
                    (recorded.position, line, account, amount, recorded.type, invoice, recorded_at)
                )
                changes[account] = changes.get(account, 0) + amount
        if not entries:
            return
        conn.executemany("INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?, ?)", entries)
        conn.executemany(
            "INSERT INTO account_balances (account, balance) VALUES (?, ?)"
            " ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance",
            sorted(changes.items()),
        )
