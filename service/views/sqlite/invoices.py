"""The invoice view: each invoice's current state, answering ``/invoice/detail`` and the
expiry task's "which PENDING invoices are due".

The row holds the aggregate's own state (``service.domain.invoice.Invoice``), folded by the very
``evolve`` the decisions use, plus indexed columns for the queries. ``seq`` numbers invoices in
the order they were created, which a replay reproduces exactly; the API shows it as ``id``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore import Migration, RecordedEvent, apply_migrations
from eventstore.records import decode_rows
from eventstore.sqlite.schema import EVENT_COLUMNS
from service.domain.codec import format_time
from service.domain.events import Event, InvoiceCreated
from service.domain.invoice import Invoice, evolve
from service.domain.streams import INVOICE_STREAM_PREFIX, invoice_stream
from service.records import decode
from service.views.invoice_state import decode_state, encode_state
from service.views.status_history import (
    StatusHistory,
    decode_history,
    encode_history,
    record_change,
)

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

Decoded = tuple[RecordedEvent, Event]
InvoiceEvent = tuple[str, RecordedEvent, Event]  # (invoice, recorded, event) of an invoice stream


def invoice_event(recorded: RecordedEvent) -> InvoiceEvent:
    """An event of an invoice stream as ``InvoiceView.fold`` takes it: its invoice, the
    recorded event and the domain event."""
    return recorded.stream_id[len(INVOICE_STREAM_PREFIX) :], recorded, decode(recorded)


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
        """Fold events of invoice streams into each invoice's state, reading and writing each
        invoice once per call (a live append brings a few events; a rebuild, a page of them)."""
        if not events:
            return
        created: dict[str, None] = {}  # invoices created in this call, in creation order
        earlier: set[str] = set()  # invoices created before it: their states are in the view
        last: dict[str, RecordedEvent] = {}
        for invoice, recorded, event in events:
            if type(event) is InvoiceCreated:
                created[invoice] = None
            elif invoice not in created:
                earlier.add(invoice)
            last[invoice] = recorded
        states, histories = _load_states(conn, earlier)
        for invoice, recorded, event in events:
            before = states.get(invoice)
            states[invoice] = after = evolve(before, event)
            history = histories.get(invoice)
            if history is not None or before is None:  # NULL in an old row: left for a rebuild
                history = histories.setdefault(invoice, [])
                record_change(history, before, after, recorded)
        _insert(conn, [(states[invoice], histories[invoice], last[invoice]) for invoice in created])
        changed = [
            (
                state.status,
                encode_state(state),
                _history_text(histories.get(invoice)),
                last[invoice].version,
                last[invoice].position,
                invoice,
            )
            for invoice, state in states.items()
            if invoice in earlier
        ]
        if changed:
            conn.executemany(
                "UPDATE invoice_view SET status = ?, state = ?, status_history = ?, version = ?,"
                " position = ?"
                " WHERE invoice = ?",
                changed,
            )


def _history_text(history: StatusHistory | None) -> str | None:
    return None if history is None else encode_history(history)


def _load_states(
    conn: sqlite3.Connection, invoices: set[str]
) -> tuple[dict[str, Invoice], dict[str, StatusHistory]]:
    """The stored states of ``invoices``, and the status histories of those that have one."""
    states: dict[str, Invoice] = {}
    histories: dict[str, StatusHistory] = {}
    names = sorted(invoices)
    for start in range(0, len(names), 500):  # within SQLite's limit of bound parameters
        chunk = names[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT invoice, state, status_history FROM invoice_view WHERE invoice IN ({marks})",
            chunk,
        ).fetchall()
        for invoice, state, history in rows:
            states[invoice] = decode_state(state)
            if history is not None:
                histories[invoice] = decode_history(history)
    return states, histories


def _insert(
    conn: sqlite3.Connection, new: list[tuple[Invoice, StatusHistory, RecordedEvent]]
) -> None:
    """Insert new invoices in creation order, numbering them as SQLite would (max + 1), so a
    replay gives every invoice the same ``seq``."""
    if not new:
        return
    (last_seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM invoice_view").fetchone()
    rows, waybills = [], []
    for seq, (state, history, last) in enumerate(new, start=last_seq + 1):
        created = state.created
        rows.append(
            (
                seq,
                created.invoice,
                created.username,
                created.service,
                state.status,
                format_time(created.expired_at),
                created.gateway_reference,
                encode_state(state),
                encode_history(history),
                last.version,
                last.position,
            )
        )
        numbers = {line.waybill_number for line in created.transactions if line.waybill_number}
        waybills += [(number, seq) for number in sorted(numbers)]
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
