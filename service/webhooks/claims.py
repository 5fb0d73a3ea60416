"""Which due webhook messages a sender may take now: claims on PostgreSQL, the view on SQLite.

On SQLite the sender is a single-active job (``run_single_active``): the job's lease already
makes it the only sender, so the due messages of the view are all its own (``ViewClaims``).

On PostgreSQL every process runs a sender, and a message is sent by one of them at a time
through a claim (``PostgreSQLClaims``): a row of ``webhook_claims`` naming the claimant and
until when the claim holds. One statement picks due messages that nobody claims (or whose claim
ran out) with ``FOR UPDATE OF m SKIP LOCKED``, so concurrent claimers pass each other by
instead of waiting, and inserts their claims; its ``ON CONFLICT … WHERE claimed_until < now``
guard refuses a live claim that committed after the statement's snapshot was taken, so two
claimers never both get one message. The claim is released once the attempt is recorded or
skipped; one left by a process that died or stopped runs out after ``lease_seconds`` and
another sender takes the message then (with the same ``webhook-id``).

Claims are coordination, not a view: they are not rebuilt from the log, nor compared with a
replay, nor emptied by a rebuild. Losing them (a restore from a backup, the table emptied) risks
no more than one message sent twice, with the same ``webhook-id``, while a send was in flight;
what makes a send count once is the attempt's record at the message's stream version.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg

from eventstore import EventStore
from service.views import ReadModel

# Beyond the sender's two tries of ``timeout`` each (a closed kept-alive connection is tried once
# more), what a claim allows for the URL's check, the reads and the record of the attempt.
CLAIM_MARGIN_SECONDS = 5.0
# Expired claims are deleted at most this often (an expired claim is as good as none; deleting
# them only keeps the table small, e.g. of messages whose endpoint was deleted meanwhile).
PRUNE_EVERY = timedelta(minutes=1)


class WebhookClaims(Protocol):
    """The messages one sender may take, and letting them go again."""

    async def take(self, now: datetime, limit: int, busy: Collection[str]) -> list[str]:
        """Up to ``limit`` messages due at ``now`` that this sender may send now, none of
        ``busy`` (its deliveries in flight); oldest due first."""

    async def release(self, message: str) -> None:
        """Let ``message`` go once its attempt is recorded or skipped."""


def claim_lease(timeout: float) -> timedelta:
    """How long a claim holds for a sender whose requests time out after ``timeout``."""
    return timedelta(seconds=2 * timeout + CLAIM_MARGIN_SECONDS)


def claimant_id() -> str:
    """Who claims: this host and process, and a random token (a pid is reused in time, and
    the same on two hosts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class ViewClaims:
    """SQLite: the sender is the only one (its job's lease), so every due message is its own."""

    def __init__(self, views: ReadModel) -> None:
        self.views = views

    async def take(self, now: datetime, limit: int, busy: Collection[str]) -> list[str]:
        due = await self.views.due_webhook_messages(now, limit + len(busy))
        return [message for message in due if message not in busy][:limit]

    async def release(self, message: str) -> None:
        return None


# Due rows of the view (the query of ``due_webhook_messages``) nobody holds a live claim on,
# skipping the rows another claimer's statement has locked; then the claims, refused by the
# guard where a live claim committed after this statement's snapshot.
_CLAIM = """
WITH due AS (
    SELECT m.message FROM webhook_messages m
    JOIN webhook_endpoints e USING (endpoint)
    LEFT JOIN webhook_claims c ON c.message = m.message
    WHERE m.status = 'pending' AND m.next_attempt_at <= $1
      AND NOT e.disabled AND NOT e.deleted
      AND (c.message IS NULL OR c.claimed_until < $1)
      AND m.message <> ALL($4::text[])
    ORDER BY m.next_attempt_at, m.position
    LIMIT $3
    FOR UPDATE OF m SKIP LOCKED
)
INSERT INTO webhook_claims (message, claimed_by, claimed_until)
SELECT message, $2, $5 FROM due
ON CONFLICT (message) DO UPDATE
    SET claimed_by = EXCLUDED.claimed_by, claimed_until = EXCLUDED.claimed_until
    WHERE webhook_claims.claimed_until < $1
RETURNING message
"""
_RELEASE = "DELETE FROM webhook_claims WHERE message = $1 AND claimed_by = $2"
# Rows another statement holds are skipped, not waited for: two claims' statements each lock
# several rows, in their own orders, and waiting here could deadlock with them.
_PRUNE = (
    "DELETE FROM webhook_claims WHERE message IN (SELECT message FROM webhook_claims"
    " WHERE claimed_until < $1 FOR UPDATE SKIP LOCKED)"
)


class PostgreSQLClaims:
    """PostgreSQL: claims in ``webhook_claims`` (made with the webhook view's tables), taken by
    ``claimant`` for ``lease`` at a time."""

    def __init__(self, pool: asyncpg.Pool, *, lease: timedelta, claimant: str) -> None:
        self.pool, self.lease, self.claimant = pool, lease, claimant
        self._pruned: datetime | None = None

    async def take(self, now: datetime, limit: int, busy: Collection[str]) -> list[str]:
        if limit <= 0:
            return []
        await self._prune(now)
        rows = await self.pool.fetch(
            _CLAIM, now, self.claimant, limit, list(busy), now + self.lease
        )
        return [row[0] for row in rows]

    async def release(self, message: str) -> None:
        await self.pool.execute(_RELEASE, message, self.claimant)

    async def _prune(self, now: datetime) -> None:
        if self._pruned is not None and now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        await self.pool.execute(_PRUNE, now)


def claims_for(store: EventStore, views: ReadModel, *, timeout: float) -> WebhookClaims:
    """The claims that go with ``store``'s backend, for a sender whose requests time out after
    ``timeout`` seconds."""
    from eventstore.postgresql import PostgreSQLEventStore

    if isinstance(store, PostgreSQLEventStore):
        return PostgreSQLClaims(store.pool, lease=claim_lease(timeout), claimant=claimant_id())
    return ViewClaims(views)
