"""``PostgreSQLReadModel``: the read model's questions as SQL over the PostgreSQL views and log.

Every question is one statement on the store's pool (asyncpg prepares and caches each on its
connection). What a viewer may see, the order and the limits are the SQLite read model's, so
either backend answers the same; the log's ``recorded_at`` is the text the store writes
(``format_time``), read back as a UTC time, and the views' times come back from ``timestamptz``
as UTC times too.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime
from typing import Any

import asyncpg

from service.domain.codec import format_time, parse_time
from service.domain.invoice import Invoice
from service.domain.ledger import buyer, seller
from service.domain.streams import INVOICE_STREAM_PREFIX
from service.views.invoice_state import decode_state
from service.views.postgresql.webhooks import PostgreSQLWebhookReads
from service.views.read_model import (
    HourlyVolume,
    LedgerEntry,
    UserRecord,
    Viewer,
    VisibleInvoice,
)
from service.views.status_history import decode_history

# Decoded states remembered per read model, by their stored text (as on SQLite).
STATE_CACHE_SIZE = 2048


class PostgreSQLReadModel(PostgreSQLWebhookReads):
    """The ``ReadModel`` over the views kept in one PostgreSQL database, read through ``pool``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # A buyer waiting for a payment asks for the same invoice again and again; the text is
        # the key, so a changed invoice is never answered from an old entry.
        self._state = functools.lru_cache(maxsize=STATE_CACHE_SIZE)(decode_state)

    # -- invoices -------------------------------------------------------------------------------

    async def invoice(self, invoice_id: str, viewer: Viewer) -> VisibleInvoice | None:
        where, params = _visibility(viewer, 2)
        sql = f"SELECT seq, state, status_history FROM invoice_view v WHERE invoice = $1 {where}"
        return self._visible(await self._pool.fetchrow(sql, invoice_id, *params))

    async def invoice_by_waybill(
        self, waybill_number: str, viewer: Viewer
    ) -> VisibleInvoice | None:
        where, params = _visibility(viewer, 2)
        sql = (
            "SELECT v.seq, v.state, v.status_history"
            " FROM invoice_waybills w JOIN invoice_view v ON v.seq = w.seq"
            f" WHERE w.waybill_number = $1 {where} ORDER BY v.seq DESC LIMIT 1"
        )
        return self._visible(await self._pool.fetchrow(sql, waybill_number, *params))

    def _visible(self, row: asyncpg.Record | None) -> VisibleInvoice | None:
        if row is None:
            return None
        seq, text, history = row
        return VisibleInvoice(seq, self._state(text), decode_history(history))

    async def invoice_exists(self, invoice_id: str) -> bool:
        sql = "SELECT 1 FROM invoice_view WHERE invoice = $1"
        return await self._pool.fetchval(sql, invoice_id) is not None

    async def waybill_exists(self, waybill_number: str) -> bool:
        sql = "SELECT 1 FROM invoice_waybills WHERE waybill_number = $1 LIMIT 1"
        return await self._pool.fetchval(sql, waybill_number) is not None

    async def invoice_by_gateway_reference(self, reference: str) -> Invoice | None:
        sql = "SELECT state FROM invoice_view WHERE gateway_reference = $1"
        text = await self._pool.fetchval(sql, reference)
        return None if text is None else decode_state(text)

    # -- money ----------------------------------------------------------------------------------

    async def balances(self, username: str) -> tuple[int, int]:
        accounts = buyer(username), seller(username)
        rows = await self._pool.fetch(
            "SELECT account, balance FROM account_balances WHERE account = ANY($1::text[])",
            accounts,
        )
        balances = {account: balance for account, balance in rows}
        return balances.get(accounts[0], 0), balances.get(accounts[1], 0)

    async def ledger_entries(self, username: str, limit: int) -> list[LedgerEntry]:
        rows = await self._pool.fetch(_LEDGER_ENTRIES, buyer(username), seller(username), limit)
        return [LedgerEntry(*row) for row in rows]

    # -- the log --------------------------------------------------------------------------------

    async def commit_time(self, position: int) -> datetime | None:
        text = await self._pool.fetchval(
            "SELECT recorded_at FROM events WHERE position <= $1 ORDER BY position DESC LIMIT 1",
            position,
        )
        return None if text is None else parse_time(text)

    async def streams_holding(self, event_ids: Collection[str]) -> set[str]:
        ids = sorted(set(event_ids))
        if not ids:
            return set()
        sql = "SELECT DISTINCT stream_id FROM events WHERE event_id = ANY($1::text[])"
        return {stream for (stream,) in await self._pool.fetch(sql, ids)}

    # -- accounts -------------------------------------------------------------------------------

    async def user(self, username: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            "SELECT role, platform, password_hash, enabled FROM users WHERE username = $1",
            username,
        )
        return None if row is None else UserRecord(username, *row)

    # -- the workers' scans ---------------------------------------------------------------------

    async def due_invoices(self, now: datetime, limit: int) -> list[str]:
        # seq breaks ties in expiry as SQLite's index does (its rows carry the seq).
        rows = await self._pool.fetch(
            "SELECT invoice FROM invoice_view WHERE status = 'PENDING' AND expired_at <= $1"
            " ORDER BY expired_at, seq LIMIT $2",
            now,
            limit,
        )
        return [invoice for (invoice,) in rows]

    async def invoice_status_counts(self) -> dict[str, int]:
        rows = await self._pool.fetch("SELECT status, COUNT(*) FROM invoice_view GROUP BY status")
        return {status: count for status, count in rows}

    async def refund_backlog(self) -> int:
        count = await self._pool.fetchval(
            "SELECT COUNT(*) FROM invoice_view,"
            " jsonb_array_elements(state::jsonb -> 'transactions') AS t"
            " WHERE status = 'PAID' AND t ->> 'status' = 'REFUND_IN_PROCESS'"
        )
        return int(count)

    async def oldest_refund_requested_at(self) -> datetime | None:
        # As on SQLite: each waiting refund's one RefundRequested, by its invoice's stream.
        oldest = await self._pool.fetchval(
            "SELECT MIN(e.data::jsonb ->> 'requested_at')"
            " FROM invoice_view v, jsonb_array_elements(v.state::jsonb -> 'transactions') AS t,"
            " events e WHERE v.status = 'PAID' AND t ->> 'status' = 'REFUND_IN_PROCESS'"
            " AND e.stream_id = $1 || v.invoice AND e.type = 'RefundRequested'"
            " AND e.data::jsonb ->> 'invoice_onmarket' = t -> 'line' ->> 'invoice_onmarket'",
            INVOICE_STREAM_PREFIX,
        )
        return None if oldest is None else parse_time(oldest)

    async def hourly_volume(self, since: datetime) -> list[HourlyVolume]:
        # As on SQLite: the expiry bound first, then the creation time as the state's text.
        rows = await self._pool.fetch(
            "SELECT substr(created, 1, 13) AS hour, COUNT(*), SUM(amount) FROM ("
            " SELECT state::jsonb -> 'created' ->> 'created_at' AS created,"
            " (state::jsonb -> 'created' ->> 'total_amount')::bigint AS amount"
            " FROM invoice_view WHERE expired_at >= $1) AS recent"
            " WHERE created >= $2 GROUP BY hour ORDER BY hour",
            since,
            format_time(since),
        )
        return [HourlyVolume(hour, int(count), int(amount)) for hour, count, amount in rows]

    async def reconcile_candidates(self, since: datetime) -> list[str]:
        # A BALANCE invoice's reference starts with "balance-": no gateway knows of it. A paid
        # one that has seen no gateway payment was marked paid out of band: the buyer may have
        # paid at the gateway too, before its invoice there was expired.
        rows = await self._pool.fetch(
            "SELECT invoice FROM invoice_view WHERE gateway_reference NOT LIKE 'balance-%'"
            " AND (status = 'PENDING' OR (expired_at >= $1 AND (status IN ('EXPIRED', 'CANCELED')"
            "  OR (status IN ('PAID', 'COMPLETED', 'REFUNDED')"
            "   AND jsonb_array_length(state::jsonb -> 'payment_ids') = 0))))"
            " ORDER BY seq",
            since,
        )
        return [invoice for (invoice,) in rows]


# Each account's newest entries from its own index range, then the newest of both: asked as
# ``account = ANY(…) ORDER BY position DESC``, the planner walks the whole ledger backwards by
# position, filtering, until it has ``limit`` entries of this user.
_LEDGER_ENTRY = (
    "SELECT position, line, account, amount, event_type, invoice, recorded_at FROM ledger_entries"
    " WHERE account = {} ORDER BY position DESC, line DESC LIMIT $3"
)
_LEDGER_ENTRIES = (
    "SELECT position, account, amount, event_type, invoice, recorded_at"
    f" FROM (({_LEDGER_ENTRY.format('$1')}) UNION ALL ({_LEDGER_ENTRY.format('$2')})) AS entries"
    " ORDER BY position DESC, line DESC LIMIT $3"
)


def _visibility(viewer: Viewer, parameter: int) -> tuple[str, tuple[Any, ...]]:
    """The condition on ``invoice_view v`` that keeps only what ``viewer`` may see, its one
    parameter numbered ``parameter``."""
    if viewer.role == "admin":
        return "", ()
    if viewer.role == "platform":
        return f"AND v.service = ${parameter}", (viewer.platform or "",)
    return f"AND v.username = ${parameter}", (viewer.username,)
