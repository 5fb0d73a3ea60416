"""The webhook views on SQLite: endpoints, messages and their attempts (the rows are
``service.views.webhook_rows``'), and the read model's questions about them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from eventstore import Migration, RecordedEvent, apply_migrations
from service.domain.codec import format_time, parse_time
from service.views.read_model import (
    FailedWebhookRow,
    WebhookBacklog,
    WebhookEndpointRow,
    WebhookMessageRow,
)
from service.views.webhook_rows import (
    MESSAGES_WITH_ATTEMPTS,
    WEBHOOK_READS,
    WEBHOOK_TABLES,
    messages_with_attempts,
    webhook_changes,
)

if TYPE_CHECKING:
    from service.views.sqlite.read_model import SQLiteQueries

MIGRATIONS = (
    Migration(
        1,
        "webhooks",
        """
        CREATE TABLE webhook_endpoints (
            endpoint        TEXT PRIMARY KEY,
            service         TEXT NOT NULL,
            url             TEXT NOT NULL,
            event_types     TEXT NOT NULL,
            description     TEXT NOT NULL,
            disabled        INTEGER NOT NULL DEFAULT 0,
            disabled_reason TEXT NOT NULL DEFAULT '',
            deleted         INTEGER NOT NULL DEFAULT 0,
            failing_since   TEXT,
            created_at      TEXT NOT NULL,
            updated_at      TEXT NOT NULL
        );
        CREATE INDEX webhook_endpoints_service ON webhook_endpoints (service, created_at);
        CREATE TABLE webhook_messages (
            message         TEXT PRIMARY KEY,
            endpoint        TEXT NOT NULL,
            service         TEXT NOT NULL,
            invoice         TEXT NOT NULL,
            event_type      TEXT NOT NULL,
            status          TEXT NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            queued_at       TEXT NOT NULL,
            position        INTEGER NOT NULL
        );
        CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_messages_endpoint ON webhook_messages (endpoint, position);
        CREATE INDEX webhook_messages_invoice ON webhook_messages (invoice, position);
        CREATE TABLE webhook_attempts (
            message         TEXT NOT NULL,
            attempt         INTEGER NOT NULL,
            at              TEXT NOT NULL,
            status          INTEGER NOT NULL,
            duration_ms     INTEGER NOT NULL,
            response        TEXT NOT NULL,
            error           TEXT NOT NULL,
            outcome         TEXT NOT NULL,
            next_attempt_at TEXT,
            PRIMARY KEY (message, attempt)
        );
        """,
    ),
    # The operator page's latest failures: the failed messages found without a full scan.
    Migration(
        2,
        "failed webhook messages",
        "CREATE INDEX webhook_messages_failed ON webhook_messages (position)"
        " WHERE status = 'failed';",
    ),
)

_SQL = {
    "endpoint": "INSERT INTO webhook_endpoints (endpoint, service, url, event_types, description,"
    " created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    # Re-enabling a disabled endpoint starts its failure streak again: the streak that disabled
    # it must not disable it again at its next failure (SET reads the row as it was).
    "update": "UPDATE webhook_endpoints SET url = ?1, event_types = ?2, description = ?3,"
    " disabled = ?4, disabled_reason = ?5, updated_at = ?6,"
    " failing_since = CASE WHEN disabled AND NOT ?4 THEN NULL ELSE failing_since END"
    " WHERE endpoint = ?7",
    "delete": "UPDATE webhook_endpoints SET deleted = 1, updated_at = ? WHERE endpoint = ?",
    "message": "INSERT INTO webhook_messages (message, endpoint, service, invoice, event_type,"
    " status, next_attempt_at, queued_at, position) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6,"
    " ?6, ?7)",
    "resend": "UPDATE webhook_messages SET status = 'pending', next_attempt_at = ?1"
    " WHERE message = ?2",
}
_ATTEMPT = (
    "INSERT INTO webhook_attempts (message, attempt, at, status, duration_ms, response, error,"
    " outcome, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MESSAGE_AFTER = (
    "UPDATE webhook_messages SET status = ?, attempts = ?, next_attempt_at = ? WHERE message = ?"
)
_FAILING = (
    "UPDATE webhook_endpoints SET failing_since = CASE WHEN ?1 = 'delivered' THEN NULL"
    " ELSE COALESCE(failing_since, ?2) END WHERE endpoint = ?3"
)


class WebhookView:
    name = "webhooks"
    reads = WEBHOOK_READS
    tables = WEBHOOK_TABLES

    def setup(self, conn: sqlite3.Connection) -> None:
        apply_migrations(conn, "view:webhooks", MIGRATIONS)

    def reset(self, conn: sqlite3.Connection) -> None:
        for table in WEBHOOK_TABLES:
            conn.execute(f"DELETE FROM {table}")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        for change, row in webhook_changes(events):
            if change == "attempt":
                message, attempt, at, _, _, _, _, outcome, next_at, endpoint = row
                conn.execute(_ATTEMPT, row[:9])
                conn.execute(_MESSAGE_AFTER, (outcome, attempt, next_at, message))
                conn.execute(_FAILING, (outcome, at, endpoint))
            else:
                conn.execute(_SQL[change], row)


_ENDPOINT_COLUMNS = (
    "endpoint, service, url, event_types, description, disabled, disabled_reason,"
    " failing_since, created_at, updated_at"
)


def endpoint_row(row: Sequence[Any]) -> WebhookEndpointRow:
    endpoint, service, url, types, description, disabled, reason, failing, created, updated = row
    return WebhookEndpointRow(
        endpoint,
        service,
        url,
        tuple(orjson.loads(types)),
        description,
        bool(disabled),
        reason,
        None if failing is None else _utc(failing),
        _utc(created),
        _utc(updated),
    )


def _utc(value: Any) -> datetime:
    return value if isinstance(value, datetime) else parse_time(value)


class SQLiteWebhookReads:
    """The read model's webhook questions on SQLite (mixed into ``SQLiteReadModel``)."""

    _store: SQLiteQueries

    async def webhook_endpoints(self, service: str | None) -> list[WebhookEndpointRow]:
        where, params = ("AND service = ?", (service,)) if service is not None else ("", ())
        sql = (
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE deleted = 0 {where}"
            " ORDER BY created_at, endpoint"
        )
        return [endpoint_row(row) for row in await self._store.query(sql, params)]

    async def webhook_endpoint(self, endpoint: str) -> WebhookEndpointRow | None:
        sql = (
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint = ? AND deleted = 0"
        )
        rows = await self._store.lookup(sql, (endpoint,))
        return endpoint_row(rows[0]) if rows else None

    async def webhook_messages(
        self,
        service: str | None,
        *,
        endpoint: str | None,
        status: str | None,
        invoice: str | None,
        limit: int,
    ) -> list[WebhookMessageRow]:
        filters = [
            ("service = ?", service),
            ("endpoint = ?", endpoint),
            ("status = ?", status),
            ("invoice = ?", invoice),
        ]
        where = " AND ".join(["1 = 1", *(sql for sql, value in filters if value is not None)])
        params = [value for _, value in filters if value is not None]
        sql = MESSAGES_WITH_ATTEMPTS.format(where=where, limit="?")
        return messages_with_attempts(await self._store.query(sql, (*params, limit)), _utc)

    async def due_webhook_messages(self, now: datetime, limit: int) -> list[str]:
        sql = (
            "SELECT m.message FROM webhook_messages m JOIN webhook_endpoints e USING (endpoint)"
            " WHERE m.status = 'pending' AND m.next_attempt_at <= ?"
            " AND e.disabled = 0 AND e.deleted = 0"
            " ORDER BY m.next_attempt_at, m.position LIMIT ?"
        )
        return [row[0] for row in await self._store.query(sql, (format_time(now), limit))]

    async def webhook_backlog(self) -> WebhookBacklog:
        sql = (
            "SELECT COUNT(*), MIN(m.queued_at), MIN(m.next_attempt_at)"
            " FROM webhook_messages m JOIN webhook_endpoints e USING (endpoint)"
            " WHERE m.status = 'pending' AND e.disabled = 0 AND e.deleted = 0"
        )
        [(count, oldest, earliest)] = await self._store.query(sql)
        return WebhookBacklog(
            count,
            None if oldest is None else _utc(oldest),
            None if earliest is None else _utc(earliest),
        )

    async def latest_failed_webhooks(self, limit: int) -> list[FailedWebhookRow]:
        sql = (
            "SELECT m.message, e.url, m.event_type, a.at, a.status, a.error, e.disabled"
            " FROM webhook_messages m JOIN webhook_endpoints e USING (endpoint)"
            " JOIN webhook_attempts a ON a.message = m.message AND a.attempt = m.attempts"
            " WHERE m.status = 'failed' AND e.deleted = 0"
            " ORDER BY a.at DESC, m.position DESC LIMIT ?"
        )
        return [
            FailedWebhookRow(message, url, event_type, _utc(at), status, error, bool(disabled))
            for message, url, event_type, at, status, error, disabled in await self._store.query(
                sql, (limit,)
            )
        ]

    async def failed_webhook_messages(self, endpoint: str, since: datetime) -> list[str]:
        sql = (
            "SELECT message FROM webhook_messages WHERE endpoint = ? AND status = 'failed'"
            " AND queued_at >= ? ORDER BY position"
        )
        return [row[0] for row in await self._store.query(sql, (endpoint, format_time(since)))]
