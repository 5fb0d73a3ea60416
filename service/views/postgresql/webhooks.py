"""The webhook views on PostgreSQL: endpoints, messages and their attempts (the rows are
``service.views.webhook_rows``', as on SQLite), and the read model's questions about them.
Times a query compares are ``timestamptz``, converted from the rows' text in the SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from eventstore import Migration, RecordedEvent
from eventstore.postgresql import apply_migrations
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

MIGRATIONS = (
    Migration(
        1,
        "webhooks",
        """
        CREATE TABLE webhook_endpoints (
            endpoint        TEXT        PRIMARY KEY,
            service         TEXT        NOT NULL,
            url             TEXT        NOT NULL,
            event_types     TEXT        NOT NULL,
            description     TEXT        NOT NULL,
            disabled        BOOLEAN     NOT NULL DEFAULT FALSE,
            disabled_reason TEXT        NOT NULL DEFAULT '',
            deleted         BOOLEAN     NOT NULL DEFAULT FALSE,
            failing_since   TIMESTAMPTZ,
            created_at      TIMESTAMPTZ NOT NULL,
            updated_at      TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX webhook_endpoints_service ON webhook_endpoints (service, created_at);
        CREATE TABLE webhook_messages (
            message         TEXT        PRIMARY KEY,
            endpoint        TEXT        NOT NULL,
            service         TEXT        NOT NULL,
            invoice         TEXT        NOT NULL,
            event_type      TEXT        NOT NULL,
            status          TEXT        NOT NULL,
            attempts        INTEGER     NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ,
            queued_at       TIMESTAMPTZ NOT NULL,
            position        BIGINT      NOT NULL
        );
        CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_messages_endpoint ON webhook_messages (endpoint, position);
        CREATE INDEX webhook_messages_invoice ON webhook_messages (invoice, position);
        CREATE TABLE webhook_attempts (
            message         TEXT        NOT NULL,
            attempt         INTEGER     NOT NULL,
            at              TIMESTAMPTZ NOT NULL,
            status          INTEGER     NOT NULL,
            duration_ms     INTEGER     NOT NULL,
            response        TEXT        NOT NULL,
            error           TEXT        NOT NULL,
            outcome         TEXT        NOT NULL,
            next_attempt_at TIMESTAMPTZ,
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

# Not a view: the senders' claims on messages (``service.webhooks.claims``), coordination state
# that is neither rebuilt from the log nor emptied by a rebuild (``reset``), nor compared with a
# replay. Made with the view's tables, as a component of its own, so that whatever opens the
# store's views (the service, ``migrate-store``) makes it too.
CLAIM_MIGRATIONS = (
    Migration(
        1,
        "webhook claims",
        """
        CREATE TABLE webhook_claims (
            message         TEXT        PRIMARY KEY,
            claimed_by      TEXT        NOT NULL,
            claimed_until   TIMESTAMPTZ NOT NULL
        );
        """,
    ),
)

_SQL = {
    "endpoint": "INSERT INTO webhook_endpoints (endpoint, service, url, event_types, description,"
    " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6::text::timestamptz,"
    " $6::text::timestamptz)",
    # Re-enabling a disabled endpoint starts its failure streak again: the streak that disabled
    # it must not disable it again at its next failure (SET reads the row as it was).
    "update": "UPDATE webhook_endpoints SET url = $1, event_types = $2, description = $3,"
    " disabled = $4, disabled_reason = $5, updated_at = $6::text::timestamptz,"
    " failing_since = CASE WHEN disabled AND NOT $4 THEN NULL ELSE failing_since END"
    " WHERE endpoint = $7",
    "delete": "UPDATE webhook_endpoints SET deleted = TRUE, updated_at = $1::text::timestamptz"
    " WHERE endpoint = $2",
    "message": "INSERT INTO webhook_messages (message, endpoint, service, invoice, event_type,"
    " status, next_attempt_at, queued_at, position) VALUES ($1, $2, $3, $4, $5, 'pending',"
    " $6::text::timestamptz, $6::text::timestamptz, $7)",
    "resend": "UPDATE webhook_messages SET status = 'pending',"
    " next_attempt_at = $1::text::timestamptz WHERE message = $2",
}
_ATTEMPT = (
    "INSERT INTO webhook_attempts (message, attempt, at, status, duration_ms, response, error,"
    " outcome, next_attempt_at) VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6, $7, $8,"
    " $9::text::timestamptz)"
)
_MESSAGE_AFTER = (
    "UPDATE webhook_messages SET status = $1, attempts = $2,"
    " next_attempt_at = $3::text::timestamptz WHERE message = $4"
)
_FAILING = (
    "UPDATE webhook_endpoints SET failing_since = CASE WHEN $1 = 'delivered' THEN NULL"
    " ELSE COALESCE(failing_since, $2::text::timestamptz) END WHERE endpoint = $3"
)


class WebhookView:
    name = "webhooks"
    reads = WEBHOOK_READS
    tables = WEBHOOK_TABLES

    async def setup(self, conn: asyncpg.Connection) -> None:
        await apply_migrations(conn, "view:webhooks", MIGRATIONS)
        await apply_migrations(conn, "webhook-claims", CLAIM_MIGRATIONS)

    async def reset(self, conn: asyncpg.Connection) -> None:
        for table in WEBHOOK_TABLES:  # not TRUNCATE: readers go on meanwhile
            await conn.execute(f"DELETE FROM {table}")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        # Webhook events are few per invoice event: one statement each, in order.
        for change, row in webhook_changes(events):
            if change == "attempt":
                message, attempt, at, _, _, _, _, outcome, next_at, endpoint = row
                await conn.execute(_ATTEMPT, *row[:9])
                await conn.execute(_MESSAGE_AFTER, outcome, attempt, next_at, message)
                await conn.execute(_FAILING, outcome, at, endpoint)
            else:
                await conn.execute(_SQL[change], *row)


_ENDPOINT_COLUMNS = (
    "endpoint, service, url, event_types, description, disabled, disabled_reason,"
    " failing_since, created_at, updated_at"
)


def _endpoint(row: asyncpg.Record) -> WebhookEndpointRow:
    values = list(row)
    values[3] = tuple(orjson.loads(values[3]))
    return WebhookEndpointRow(*values)


def _as_is(moment: datetime) -> datetime:
    return moment  # asyncpg reads timestamptz as an aware datetime


class PostgreSQLWebhookReads:
    """The read model's webhook questions on PostgreSQL (mixed into ``PostgreSQLReadModel``)."""

    _pool: asyncpg.Pool

    async def webhook_endpoints(self, service: str | None) -> list[WebhookEndpointRow]:
        sql = (
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE NOT deleted"
            " AND ($1::text IS NULL OR service = $1) ORDER BY created_at, endpoint"
        )
        return [_endpoint(row) for row in await self._pool.fetch(sql, service)]

    async def webhook_endpoint(self, endpoint: str) -> WebhookEndpointRow | None:
        sql = (
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint = $1 AND NOT deleted"
        )
        row = await self._pool.fetchrow(sql, endpoint)
        return None if row is None else _endpoint(row)

    async def webhook_messages(
        self,
        service: str | None,
        *,
        endpoint: str | None,
        status: str | None,
        invoice: str | None,
        limit: int,
    ) -> list[WebhookMessageRow]:
        where = (
            "($1::text IS NULL OR service = $1) AND ($2::text IS NULL OR endpoint = $2)"
            " AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR invoice = $4)"
        )
        sql = MESSAGES_WITH_ATTEMPTS.format(where=where, limit="$5")
        rows = await self._pool.fetch(sql, service, endpoint, status, invoice, limit)
        return messages_with_attempts(rows, _as_is)

    async def due_webhook_messages(self, now: datetime, limit: int) -> list[str]:
        sql = (
            "SELECT m.message FROM webhook_messages m JOIN webhook_endpoints e USING (endpoint)"
            " WHERE m.status = 'pending' AND m.next_attempt_at <= $1"
            " AND NOT e.disabled AND NOT e.deleted"
            " ORDER BY m.next_attempt_at, m.position LIMIT $2"
        )
        return [row[0] for row in await self._pool.fetch(sql, now, limit)]

    async def webhook_backlog(self) -> WebhookBacklog:
        sql = (
            "SELECT COUNT(*), MIN(m.queued_at), MIN(m.next_attempt_at)"
            " FROM webhook_messages m JOIN webhook_endpoints e USING (endpoint)"
            " WHERE m.status = 'pending' AND NOT e.disabled AND NOT e.deleted"
        )
        row = await self._pool.fetchrow(sql)
        assert row is not None  # an aggregate without GROUP BY: always one row
        return WebhookBacklog(row[0], row[1], row[2])

    async def latest_failed_webhooks(self, limit: int) -> list[FailedWebhookRow]:
        sql = (
            "SELECT m.message, e.url, m.event_type, a.at, a.status, a.error, e.disabled"
            " FROM webhook_messages m JOIN webhook_endpoints e USING (endpoint)"
            " JOIN webhook_attempts a ON a.message = m.message AND a.attempt = m.attempts"
            " WHERE m.status = 'failed' AND NOT e.deleted"
            " ORDER BY a.at DESC, m.position DESC LIMIT $1"
        )
        return [FailedWebhookRow(*row) for row in await self._pool.fetch(sql, limit)]

    async def failed_webhook_messages(self, endpoint: str, since: datetime) -> list[str]:
        sql = (
            "SELECT message FROM webhook_messages WHERE endpoint = $1 AND status = 'failed'"
            " AND queued_at >= $2 ORDER BY position"
        )
        return [row[0] for row in await self._pool.fetch(sql, endpoint, since)]
