"""The invoice view: each invoice's current state, answering ``/invoice/detail`` and the
expiry task's "which PENDING invoices are due".

The row holds the aggregate's own state (``service.domain.invoice.Invoice``), folded by the very
``evolve`` the decisions use, plus indexed columns for the queries. ``seq`` numbers invoices in
the order they were created, which a replay reproduces exactly; the API shows it as ``id``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore import Migration, apply_migrations
from eventstore.records import decode_rows
from eventstore.sqlite.schema import EVENT_COLUMNS
from service.domain.invoice import Invoice, evolve
from service.domain.streams import invoice_stream
from service.records import decode
from service.views.rows import InvoiceEvent, InvoiceFold
from service.views.status_history import StatusHistory, encode_history, record_change

MIGRATIONS = (
    Migration(
        1,
        "invoice view",
        """
        CREATE TABLE invoice_view (
            seq               INTEGER PRIMARY KEY,
            invoice           TEXT    NOT NULL UNIQUE,
            username          TEXT    NOT NULL,
            service           TEXT    NOT NULL,
            status            TEXT    NOT NULL,
            expired_at        TEXT    NOT NULL,
            gateway_reference TEXT    NOT NULL UNIQUE,
            state             TEXT    NOT NULL,
            version           INTEGER NOT NULL,
            position          INTEGER NOT NULL
        );
        CREATE INDEX invoice_view_due ON invoice_view (status, expired_at);
        CREATE TABLE invoice_waybills (
            waybill_number TEXT NOT NULL,
            seq            INTEGER NOT NULL,
            PRIMARY KEY (waybill_number, seq)
        );
        """,
    ),
    # Each status the invoice reached, when and by whom (``service.views.status_history``).
    # Rows written before it hold NULL until ``python -m service rebuild``: the detail then
    # reads the history from the invoice's stream instead.
    Migration(2, "status history", "ALTER TABLE invoice_view ADD COLUMN status_history TEXT;"),
)


class InvoiceView:
    """Inline projector of invoice streams into ``invoice_view``."""

    name = "invoices"
    tables = ("invoice_view", "invoice_waybills")

    def setup(self, conn: sqlite3.Connection) -> None:
        apply_migrations(conn, "view:invoices", MIGRATIONS)
        _fill_missing_histories(conn)

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM invoice_waybills")
        conn.execute("DELETE FROM invoice_view")

    def fold(self, conn: sqlite3.Connection, events: Sequence[InvoiceEvent]) -> None:
        """Fold events of invoice streams into each invoice's state (``InvoiceFold``)."""
        if not events:
            return
        batch = InvoiceFold(events)
        _load_states(conn, batch)
        batch.fold()
        (last_seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM invoice_view").fetchone()
        rows, waybills = batch.new_rows(last_seq)
        if rows:
            conn.executemany(
                "INSERT INTO invoice_view (seq, invoice, username, service, status, expired_at,"
                " gateway_reference, state, status_history, version, position)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        if waybills:
            conn.executemany(
                "INSERT INTO invoice_waybills (waybill_number, seq) VALUES (?, ?)", waybills
            )
        changed = batch.changed_rows()
        if changed:
            conn.executemany(
                "UPDATE invoice_view SET status = ?, state = ?, status_history = ?, version = ?,"
                " position = ?"
                " WHERE invoice = ?",
                changed,
            )


def _load_states(conn: sqlite3.Connection, batch: InvoiceFold) -> None:
    """The stored states and status histories of the batch's earlier invoices."""
    names = sorted(batch.earlier)
    for start in range(0, len(names), 500):  # within SQLite's limit of bound parameters
        chunk = names[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT invoice, state, status_history FROM invoice_view WHERE invoice IN ({marks})",
            chunk,
        ).fetchall()
        for invoice, state, history in rows:
            batch.load(invoice, state, history)


def _fill_missing_histories(conn: sqlite3.Connection) -> None:
    """Rows written before the view kept the status history (migration 2) have none: fold it from
    each such invoice's events, once, at the first open after the upgrade, in one transaction,
    so the view equals a replay again (``verify``) without a rebuild. A database from before
    holds only these rows; after this, every row is written with its history."""
    missing = [row[0] for row in conn.execute(_MISSING_HISTORIES)]
    if not missing:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for invoice in missing:
            rows = conn.execute(_INVOICE_EVENTS, (invoice_stream(invoice),)).fetchall()
            history: StatusHistory = []
            state: Invoice | None = None
            for recorded in decode_rows(rows):
                after = evolve(state, decode(recorded))
                record_change(history, state, after, recorded)
                state = after
            conn.execute(_SET_HISTORY, (encode_history(history), invoice))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_MISSING_HISTORIES = "SELECT invoice FROM invoice_view WHERE status_history IS NULL"
_INVOICE_EVENTS = f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? ORDER BY version"
_SET_HISTORY = "UPDATE invoice_view SET status_history = ? WHERE invoice = ?"
