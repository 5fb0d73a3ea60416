"""``SQLiteReadModel``: the read model's questions as SQL over the SQLite views and log.

Each question runs on the store's reader pool (``query``) or, for a lookup by key that SQLite
answers from its cache in microseconds, on the calling thread (``lookup``): handing such a
lookup to a reader thread and back would cost ten times the lookup itself. The choice is made
per question below and matters for a detail's latency; anything that scans uses the pool.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from service.domain.codec import format_time, parse_time
from service.domain.invoice import Invoice
from service.domain.streams import INVOICE_STREAM_PREFIX
from service.views.invoice_state import decode_state
from service.views.read_model import (
    HourlyVolume,
    LedgerEntry,
    UserRecord,
    Viewer,
    VisibleInvoice,
)
from service.views.sqlite.webhooks import SQLiteWebhookReads
from service.views.status_history import decode_history

# Decoded states remembered per read model, by their stored text (see ``_state``).
STATE_CACHE_SIZE = 2048


class SQLiteQueries(Protocol):
    """What the read model needs of the SQLite event store: its two ways to run a query."""

    async def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]: ...

    async def lookup(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]: ...


class SQLiteReadModel(SQLiteWebhookReads):
    """The ``ReadModel`` over one SQLite store's views (the views live in the log's file)."""

    def __init__(self, store: SQLiteQueries) -> None:
        self._store = store
        # The states of the invoices read lately, by their stored text: a buyer waiting for a
        # payment asks for the same invoice again and again, and decoding its state was an
        # eighth of a detail's time. The text is the key, so a changed invoice (new text) is
        # never answered from an old entry; the states are frozen, so sharing one is safe.
        self._state = functools.lru_cache(maxsize=STATE_CACHE_SIZE)(decode_state)

    # -- invoices -------------------------------------------------------------------------------

    async def invoice(self, invoice_id: str, viewer: Viewer) -> VisibleInvoice | None:
        where, params = _visibility(viewer)
        sql = f"SELECT seq, state, status_history FROM invoice_view v WHERE invoice = ? {where}"
        return self._visible(await self._store.lookup(sql, (invoice_id, *params)))

    async def invoice_by_waybill(
        self, waybill_number: str, viewer: Viewer
    ) -> VisibleInvoice | None:
        where, params = _visibility(viewer)
        sql = (
            "SELECT v.seq, v.state, v.status_history"
            " FROM invoice_waybills w JOIN invoice_view v ON v.seq = w.seq"
            f" WHERE w.waybill_number = ? {where} ORDER BY v.seq DESC LIMIT 1"
        )
        return self._visible(await self._store.query(sql, (waybill_number, *params)))

    def _visible(self, rows: list[Any]) -> VisibleInvoice | None:
        if not rows:
            return None
        seq, text, history = rows[0]
        return VisibleInvoice(
            seq, self._state(text), None if history is None else decode_history(history)
        )

    async def invoice_exists(self, invoice_id: str) -> bool:
        sql = "SELECT 1 FROM invoice_view WHERE invoice = ?"
        return bool(await self._store.query(sql, (invoice_id,)))

    async def waybill_exists(self, waybill_number: str) -> bool:
        sql = "SELECT 1 FROM invoice_waybills WHERE waybill_number = ?"
        return bool(await self._store.query(sql, (waybill_number,)))

    async def invoice_by_gateway_reference(self, reference: str) -> Invoice | None:
        sql = "SELECT state FROM invoice_view WHERE gateway_reference = ?"
        rows = await self._store.query(sql, (reference,))
        return decode_state(rows[0][0]) if rows else None

    # -- money ----------------------------------------------------------------------------------

    async def balances(self, username: str) -> tuple[int, int]:
        buyer, seller = _accounts(username)
        rows = await self._store.query(
            "SELECT account, balance FROM account_balances WHERE account IN (?, ?)",
            (buyer, seller),
        )
        balances = dict(rows)
        return balances.get(buyer, 0), balances.get(seller, 0)

    async def ledger_entries(self, username: str, limit: int) -> list[LedgerEntry]:
        rows = await self._store.query(
            "SELECT position, account, amount, event_type, invoice, recorded_at FROM ledger_entries"
            " WHERE account IN (?, ?) ORDER BY position DESC, line DESC LIMIT ?",
            (*_accounts(username), limit),
        )
        return [
            LedgerEntry(position, account, amount, event_type, invoice, parse_time(recorded_at))
            for position, account, amount, event_type, invoice, recorded_at in rows
        ]

    # -- the log --------------------------------------------------------------------------------

    async def commit_time(self, position: int) -> datetime | None:
        rows = await self._store.query(
            "SELECT recorded_at FROM events WHERE position <= ? ORDER BY position DESC LIMIT 1",
            (position,),
        )
        return parse_time(rows[0][0]) if rows else None

    async def streams_holding(self, event_ids: Collection[str]) -> set[str]:
        ids = sorted(set(event_ids))
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        sql = f"SELECT stream_id FROM events WHERE event_id IN ({marks})"
        return {stream for (stream,) in await self._store.query(sql, ids)}

    # -- accounts -------------------------------------------------------------------------------

    async def user(self, username: str) -> UserRecord | None:
        # A lookup by primary key, on the calling thread: every authenticated request checks
        # its account (through the authenticator's short cache), so it must stay microseconds.
        rows = await self._store.lookup(
            "SELECT role, platform, password_hash, enabled FROM users WHERE username = ?",
            (username,),
        )
        if not rows:
            return None
        role, platform, password_hash, enabled = rows[0]
        return UserRecord(username, role, platform, password_hash, bool(enabled))

    # -- the workers' scans ---------------------------------------------------------------------

    async def due_invoices(self, now: datetime, limit: int) -> list[str]:
        rows = await self._store.query(
            "SELECT invoice FROM invoice_view WHERE status = 'PENDING' AND expired_at <= ?"
            " ORDER BY expired_at LIMIT ?",
            (format_time(now), limit),
        )
        return [invoice for (invoice,) in rows]

    async def invoice_status_counts(self) -> dict[str, int]:
        rows = await self._store.query("SELECT status, COUNT(*) FROM invoice_view GROUP BY status")
        return {status: count for status, count in rows}

    async def refund_backlog(self) -> int:
        rows = await self._store.query(
            "SELECT COUNT(*) FROM invoice_view, json_each(invoice_view.state, '$.transactions') t"
            " WHERE invoice_view.status = 'PAID'"
            " AND json_extract(t.value, '$.status') = 'REFUND_IN_PROCESS'"
        )
        return int(rows[0][0])

    async def oldest_refund_requested_at(self) -> datetime | None:
        # A transaction is refunded once: its one RefundRequested, found by the invoice's
        # stream (indexed) among the few invoices with a refund waiting.
        rows = await self._store.query(
            "SELECT MIN(json_extract(e.data, '$.requested_at'))"
            " FROM invoice_view v, json_each(v.state, '$.transactions') t"
            " JOIN events e ON e.stream_id = ? || v.invoice AND e.type = 'RefundRequested'"
            " AND json_extract(e.data, '$.invoice_onmarket')"
            " = json_extract(t.value, '$.line.invoice_onmarket')"
            " WHERE v.status = 'PAID' AND json_extract(t.value, '$.status') = 'REFUND_IN_PROCESS'",
            (INVOICE_STREAM_PREFIX,),
        )
        oldest = rows[0][0]
        return None if oldest is None else parse_time(oldest)

    async def hourly_volume(self, since: datetime) -> list[HourlyVolume]:
        # An invoice expires after it was created: the expiry bound skips older rows before
        # their state is parsed. Times are the same sortable UTC text everywhere.
        rows = await self._store.query(
            "SELECT substr(json_extract(state, '$.created.created_at'), 1, 13) AS hour,"
            " COUNT(*), SUM(json_extract(state, '$.created.total_amount'))"
            " FROM invoice_view WHERE expired_at >= ?"
            " AND json_extract(state, '$.created.created_at') >= ?"
            " GROUP BY hour ORDER BY hour",
            (format_time(since), format_time(since)),
        )
        return [HourlyVolume(hour, int(count), int(amount)) for hour, count, amount in rows]

    async def reconcile_candidates(self, since: datetime) -> list[str]:
        # A BALANCE invoice's reference starts with "balance-": no gateway knows of it. A paid
        # one that has seen no gateway payment was marked paid out of band: the buyer may have
        # paid at the gateway too, before its invoice there was expired.
        rows = await self._store.query(
            "SELECT invoice FROM invoice_view WHERE gateway_reference NOT LIKE 'balance-%'"
            " AND (status = 'PENDING' OR (expired_at >= ? AND (status IN ('EXPIRED', 'CANCELED')"
            "  OR (status IN ('PAID', 'COMPLETED', 'REFUNDED')"
            "   AND json_array_length(state, '$.payment_ids') = 0))))"
            " ORDER BY seq",
            (format_time(since),),
        )
        return [invoice for (invoice,) in rows]


def _visibility(viewer: Viewer) -> tuple[str, tuple[str, ...]]:
    """The condition on ``invoice_view v`` that keeps only what ``viewer`` may see."""
    if viewer.role == "admin":
        return "", ()
    if viewer.role == "platform":
        return "AND v.service = ?", (viewer.platform or "",)
    return "AND v.username = ?", (viewer.username,)


def _accounts(username: str) -> tuple[str, str]:
    """The user's buyer and seller accounts in the ledger."""
    return f"buyer:{username}", f"seller:{username}"
