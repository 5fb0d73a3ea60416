"""The rows of the webhook views, computed from the webhook events the same way on every
backend (``service.views.sqlite.webhooks``, ``service.views.postgresql.webhooks``).

Three tables: ``webhook_endpoints`` (one row per endpoint, with ``failing_since``: the first
failed attempt since the last success or since it was re-enabled, for disabling an endpoint
that fails for days),
``webhook_messages`` (one row per message: its status and next attempt) and
``webhook_attempts`` (one row per attempt, the delivery log). Times are ``format_time`` text;
a backend that keeps times in a time type converts that text in its SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Literal

import orjson

from eventstore import EventSelection, RecordedEvent
from service.domain.codec import format_time
from service.domain.webhook_events import (
    WEBHOOK_EVENT_TYPES,
    WebhookDeliveryAttempted,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointUpdated,
    WebhookMessageQueued,
    WebhookMessageResent,
)
from service.records import decode
from service.views.read_model import WebhookAttemptRow, WebhookMessageRow

WEBHOOK_READS = EventSelection(types=frozenset(WEBHOOK_EVENT_TYPES))
WEBHOOK_TABLES = ("webhook_endpoints", "webhook_messages", "webhook_attempts")

Change = tuple[
    Literal["endpoint", "update", "delete", "message", "attempt", "resend"], tuple[Any, ...]
]


def _time(moment: Any) -> str | None:
    return None if moment is None else format_time(moment)


def webhook_changes(events: Sequence[RecordedEvent]) -> Iterator[Change]:
    """The view changes of ``events``, in order; other events are skipped undecoded.

    - endpoint: (endpoint, service, url, event_types JSON, description, created_at)
    - update: (url, event_types JSON, description, disabled, disabled_reason, updated_at,
      endpoint)
    - delete: (updated_at, endpoint)
    - message: (message, endpoint, service, invoice, event_type, queued_at, position)
    - attempt: (message, attempt, at, status, duration_ms, response, error, outcome,
      next_attempt_at, endpoint)
    - resend: (resent_at, message)
    """
    for recorded in events:
        if recorded.type not in WEBHOOK_EVENT_TYPES:
            continue
        event = decode(recorded)
        if isinstance(event, WebhookEndpointCreated):
            types = orjson.dumps(list(event.event_types)).decode()
            yield (
                "endpoint",
                (
                    event.endpoint,
                    event.service,
                    event.url,
                    types,
                    event.description,
                    format_time(event.created_at),
                ),
            )
        elif isinstance(event, WebhookEndpointUpdated):
            types = orjson.dumps(list(event.event_types)).decode()
            yield (
                "update",
                (
                    event.url,
                    types,
                    event.description,
                    event.disabled,
                    event.reason,
                    format_time(event.updated_at),
                    event.endpoint,
                ),
            )
        elif isinstance(event, WebhookEndpointDeleted):
            yield "delete", (format_time(event.deleted_at), event.endpoint)
        elif isinstance(event, WebhookMessageQueued):
            yield (
                "message",
                (
                    event.message,
                    event.endpoint,
                    event.service,
                    event.invoice,
                    event.event_type,
                    format_time(event.queued_at),
                    recorded.position,
                ),
            )
        elif isinstance(event, WebhookDeliveryAttempted):
            yield (
                "attempt",
                (
                    event.message,
                    event.attempt,
                    format_time(event.at),
                    event.status,
                    event.duration_ms,
                    event.response,
                    event.error,
                    event.outcome,
                    _time(event.next_attempt_at),
                    event.endpoint,
                ),
            )
        elif isinstance(event, WebhookMessageResent):
            yield "resend", (format_time(event.resent_at), event.message)


# The delivery log's question, one statement on every backend so the messages and their attempts
# come from one snapshot (two statements could show an attempt recorded after its message's row
# was read: eight attempts on a message still "pending"). ``{where}`` filters the messages;
# ``{limit}`` is the backend's placeholder for the page size.
MESSAGES_WITH_ATTEMPTS = (
    "WITH m AS (SELECT message, endpoint, service, invoice, event_type, status, attempts,"
    " next_attempt_at, queued_at, position FROM webhook_messages WHERE {where}"
    " ORDER BY position DESC, message LIMIT {limit})"
    " SELECT m.message, m.endpoint, m.service, m.invoice, m.event_type, m.status, m.attempts,"
    " m.next_attempt_at, m.queued_at, a.attempt, a.at, a.status, a.duration_ms, a.response,"
    " a.error, a.outcome, a.next_attempt_at"
    " FROM m LEFT JOIN webhook_attempts a ON a.message = m.message"
    " ORDER BY m.position DESC, m.message, a.attempt"
)


def messages_with_attempts(
    rows: Iterable[Any], to_time: Callable[[Any], datetime]
) -> list[WebhookMessageRow]:
    """The messages of ``MESSAGES_WITH_ATTEMPTS``' rows (sequences: one per attempt, or one with
    no attempt), each with its attempts oldest first; ``to_time`` reads the backend's times."""
    messages: dict[str, WebhookMessageRow] = {}
    for row in rows:
        message = messages.get(row[0])
        if message is None:
            name, endpoint, service, invoice, event_type, status, count = row[:7]
            message = WebhookMessageRow(
                name,
                endpoint,
                service,
                invoice,
                event_type,
                status,
                count,
                None if row[7] is None else to_time(row[7]),
                to_time(row[8]),
                [],
            )
            messages[row[0]] = message
        if row[9] is not None:
            attempt, at, status, duration, response, error, outcome, next_at = row[9:17]
            message.attempt_log.append(
                WebhookAttemptRow(
                    attempt,
                    to_time(at),
                    status,
                    duration,
                    response,
                    error,
                    outcome,
                    None if next_at is None else to_time(next_at),
                )
            )
    return list(messages.values())
