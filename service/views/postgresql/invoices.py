"""The invoice view on PostgreSQL: each invoice's current state, its status history, and the
columns the read model finds invoices by.

The rows are the SQLite view's (``service.views.rows.InvoiceFold`` computes them for both); the
times a query compares (``expired_at``) are ``timestamptz`` here, converted from the rows' text
in the SQL. A batch is written with one statement per table, from arrays (``unnest``).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from eventstore import Migration
from eventstore.postgresql import apply_migrations
from service.views.postgresql.arrays import columns
from service.views.rows import InvoiceEvent, InvoiceFold

MIGRATIONS = (
    Migration(
        1,
        "invoice view",
        """
        CREATE TABLE invoice_view (
            seq               BIGINT      PRIMARY KEY,
            invoice           TEXT        NOT NULL UNIQUE,
            username          TEXT        NOT NULL,
            service           TEXT        NOT NULL,
            status            TEXT        NOT NULL,
            expired_at        TIMESTAMPTZ NOT NULL,
            gateway_reference TEXT        NOT NULL UNIQUE,
            state             TEXT        NOT NULL,
            status_history    TEXT        NOT NULL,
            version           INTEGER     NOT NULL,
            position          BIGINT      NOT NULL
        );
        -- due_invoices (status = PENDING, expired_at <= now, by expired_at then seq) and
        -- reconcile_candidates (status, expired_at >= since).
        CREATE INDEX invoice_view_due ON invoice_view (status, expired_at, seq);
        CREATE TABLE invoice_waybills (
            waybill_number TEXT   NOT NULL,
            seq            BIGINT NOT NULL,
            PRIMARY KEY (waybill_number, seq)
        );
        """,
    ),
)

_LOAD = "SELECT invoice, state, status_history FROM invoice_view WHERE invoice = ANY($1::text[])"
_INSERT = """
INSERT INTO invoice_view (seq, invoice, username, service, status, expired_at,
                          gateway_reference, state, status_history, version, position)
SELECT seq, invoice, username, service, status, expired_at::timestamptz,
       gateway_reference, state, status_history, version, position
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::int[], $11::bigint[])
     AS t(seq, invoice, username, service, status, expired_at,
          gateway_reference, state, status_history, version, position)
"""
_INSERT_WAYBILLS = """
INSERT INTO invoice_waybills (waybill_number, seq)
SELECT * FROM unnest($1::text[], $2::bigint[])
"""
_UPDATE = """
UPDATE invoice_view v
SET status = t.status, state = t.state, status_history = t.status_history,
    version = t.version, position = t.position
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[])
     AS t(status, state, status_history, version, position, invoice)
WHERE v.invoice = t.invoice
"""


class InvoiceView:
    """Inline projector of invoice streams into ``invoice_view`` and ``invoice_waybills``."""

    name = "invoices"
    tables = ("invoice_view", "invoice_waybills")

    async def setup(self, conn: asyncpg.Connection) -> None:
        await apply_migrations(conn, "view:invoices", MIGRATIONS)

    async def reset(self, conn: asyncpg.Connection) -> None:
        # DELETE, not TRUNCATE: TRUNCATE would lock every reader out until the rebuild commits;
        # a DELETE lets them read the old rows meanwhile.
        await conn.execute("DELETE FROM invoice_waybills")
        await conn.execute("DELETE FROM invoice_view")

    async def fold(self, conn: asyncpg.Connection, events: Sequence[InvoiceEvent]) -> None:
        """Fold events of invoice streams into each invoice's state (``InvoiceFold``)."""
        if not events:
            return
        batch = InvoiceFold(events)
        if batch.earlier:
            for invoice, state, history in await conn.fetch(_LOAD, sorted(batch.earlier)):
                batch.load(invoice, state, history)
        batch.fold()
        if batch.created:
            # The store appends under one lock, so no other append numbers invoices meanwhile.
            last_seq = await conn.fetchval("SELECT COALESCE(MAX(seq), 0) FROM invoice_view")
            rows, waybills = batch.new_rows(last_seq)
            await conn.execute(_INSERT, *columns(rows, 11))
            if waybills:
                await conn.execute(_INSERT_WAYBILLS, *columns(waybills, 2))
        changed = batch.changed_rows()
        if changed:
            await conn.execute(_UPDATE, *columns(changed, 6))
