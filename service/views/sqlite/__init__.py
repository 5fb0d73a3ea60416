"""The read model on SQLite: the views' projectors, and ``SQLiteReadModel`` over their tables.

The views are inline, each built from the log in the append's own transaction. Three
projectors: the invoice and users views, the ledger, and the webhooks' endpoints and messages.
A rebuild of a long log replays the ledger and the webhooks in worker processes while this one
replays the invoices (``eventstore.sqlite.rebuild``), so each says which events it reads and
which tables it writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore import Projector, RecordedEvent
from service.views.rows import INVOICE_AND_USER_READS, invoice_and_user_events
from service.views.sqlite.invoices import InvoiceView
from service.views.sqlite.ledger import LedgerView
from service.views.sqlite.read_model import SQLiteReadModel
from service.views.sqlite.users import UsersView
from service.views.sqlite.webhooks import WebhookView


class InvoiceAndUserViews:
    """The invoice view and the users view as one projector, so each event is decoded once."""

    name = "invoice-and-user-views"
    reads = INVOICE_AND_USER_READS
    tables = InvoiceView.tables + UsersView.tables

    def __init__(self) -> None:
        self.invoices, self.users = InvoiceView(), UsersView()

    def setup(self, conn: sqlite3.Connection) -> None:
        self.invoices.setup(conn)
        self.users.setup(conn)

    def reset(self, conn: sqlite3.Connection) -> None:
        self.invoices.reset(conn)
        self.users.reset(conn)

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        invoices, users = invoice_and_user_events(events)
        self.invoices.fold(conn, invoices)
        if users:
            self.users.apply_decoded(conn, users)


def all_projectors() -> list[Projector[sqlite3.Connection]]:
    """The projectors the service opens its store with, the heaviest first: a rebuild replays
    the first in its own process and may hand the others to workers."""
    return [InvoiceAndUserViews(), LedgerView(), WebhookView()]


__all__ = ["InvoiceAndUserViews", "SQLiteReadModel", "all_projectors"]
