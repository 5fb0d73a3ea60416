"""The invoice view: each invoice's current state, answering ``/invoice/detail`` and the
expiry task's "which PENDING invoices are due".

The row holds the aggregate's own state (``service.domain.invoice.Invoice``), folded by the very
``evolve`` the decisions use, plus indexed columns for the queries. ``seq`` numbers invoices in
the order they were created, which a replay reproduces exactly; the API shows it as ``id``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from eventstore import Migration, RecordedEvent, apply_migrations
from service.domain.codec import format_time, from_data, to_data
from service.domain.events import InvoiceCreated, decode
from service.domain.invoice import Invoice, evolve

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
)

INVOICE_STREAM_PREFIX = "invoice-"


def invoice_stream(invoice: str) -> str:
    return f"{INVOICE_STREAM_PREFIX}{invoice}"


class InvoiceView:
    """Inline projector of invoice streams into ``invoice_view``."""

    name = "invoices"

    def setup(self, conn: sqlite3.Connection) -> None:
        apply_migrations(conn, "view:invoices", MIGRATIONS)

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM invoice_waybills")
        conn.execute("DELETE FROM invoice_view")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        for recorded in events:
            if recorded.stream_id.startswith(INVOICE_STREAM_PREFIX):
                self._apply_one(conn, recorded)

    def _apply_one(self, conn: sqlite3.Connection, recorded: RecordedEvent) -> None:
        event = decode(recorded)
        if isinstance(event, InvoiceCreated):
            state = evolve(None, event)
            seq = conn.execute(
                "INSERT INTO invoice_view (invoice, username, service, status, expired_at,"
                " gateway_reference, state, version, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.invoice,
                    event.username,
                    event.service,
                    state.status,
                    format_time(event.expired_at),
                    event.gateway_reference,
                    encode_state(state),
                    recorded.version,
                    recorded.position,
                ),
            ).lastrowid
            waybills = {line.waybill_number for line in event.transactions if line.waybill_number}
            conn.executemany(
                "INSERT INTO invoice_waybills (waybill_number, seq) VALUES (?, ?)",
                [(waybill, seq) for waybill in sorted(waybills)],
            )
            return
        row = conn.execute(
            "SELECT state FROM invoice_view WHERE invoice = ?", (recorded.stream_id[8:],)
        ).fetchone()
        state = evolve(decode_state(row[0]), event)
        conn.execute(
            "UPDATE invoice_view SET status = ?, state = ?, version = ?, position = ?"
            " WHERE invoice = ?",
            (state.status, encode_state(state), recorded.version, recorded.position, state.invoice),
        )


def encode_state(state: Invoice) -> str:
    return orjson.dumps(to_data(state), option=orjson.OPT_SORT_KEYS).decode()


def decode_state(text: str) -> Invoice:
    return from_data(Invoice, orjson.loads(text))
