"""The read model on PostgreSQL: the views' projectors, and ``PostgreSQLReadModel`` over their
tables.

The same views as on SQLite (``service.views.sqlite``), built from the same rows
(``service.views.rows``) with PostgreSQL's SQL: inline, each applied in the append's own
transaction on its connection (an ``asyncpg.Connection``), its tables set up by numbered
migrations (``migrations``) at the store's open. Each projector says which events it reads and
which tables it writes, for the store's rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from eventstore import RecordedEvent
from service.views.postgresql.invoices import InvoiceView
from service.views.postgresql.ledger import LedgerView
from service.views.postgresql.read_model import PostgreSQLReadModel
from service.views.postgresql.users import UsersView
from service.views.postgresql.webhooks import WebhookView
from service.views.rows import INVOICE_AND_USER_READS, invoice_and_user_events


class InvoiceAndUserViews:
    """The invoice view and the users view as one projector, so each event is decoded once."""

    name = "invoice-and-user-views"
    reads = INVOICE_AND_USER_READS
    tables = InvoiceView.tables + UsersView.tables

    def __init__(self) -> None:
        self.invoices, self.users = InvoiceView(), UsersView()

    async def setup(self, conn: asyncpg.Connection) -> None:
        await self.invoices.setup(conn)
        await self.users.setup(conn)

    async def reset(self, conn: asyncpg.Connection) -> None:
        await self.invoices.reset(conn)
        await self.users.reset(conn)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        invoices, users = invoice_and_user_events(events)
        await self.invoices.fold(conn, invoices)
        if users:
            await self.users.apply_decoded(conn, users)


def all_projectors() -> list[InvoiceAndUserViews | LedgerView | WebhookView]:
    """The projectors the service opens a PostgreSQL store with, as on SQLite."""
    return [InvoiceAndUserViews(), LedgerView(), WebhookView()]


__all__ = [
    "InvoiceAndUserViews",
    "LedgerView",
    "PostgreSQLReadModel",
    "WebhookView",
    "all_projectors",
]
