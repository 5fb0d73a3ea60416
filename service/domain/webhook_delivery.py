"""Which webhook messages an invoice event makes, and a message's life: its state folded from
its stream, and the decision that follows each delivery attempt (the retry schedule).

Pure: the mapping from the log's invoice events to the Standard Webhooks event types that
platforms subscribe to, the message id derived from the event and the endpoint (the same on
every retry and resend), and the next attempt's time from the schedule, the receiver's
``Retry-After`` and a jitter drawn by the caller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from service.domain.errors import DomainError
from service.domain.events import (
    Event,
    InvoiceCanceled,
    InvoiceCreated,
    InvoiceExpired,
    InvoiceMarkedPaid,
    InvoicePaid,
    LatePaymentReceived,
    RefundCompleted,
    RefundRequested,
    TransactionCompleted,
)
from service.domain.invoice import Invoice
from service.domain.statuses import COMPLETED, REFUNDED
from service.domain.webhook_events import (
    WebhookDeliveryAttempted,
    WebhookEvent,
    WebhookMessageQueued,
    WebhookMessageResent,
)

WEBHOOK_EVENT_TYPES: Final = (
    "invoice.created",
    "invoice.paid",
    "invoice.expired",
    "invoice.canceled",
    "invoice.completed",
    "invoice.refunded",
    "transaction.completed",
    "transaction.refund_requested",
    "transaction.refunded",
    "payment.late_credited",
)
# The log's event types that can make a message: the outbox subscribes to these only.
SOURCE_TYPES: Final = (
    "InvoiceCreated",
    "InvoicePaid",
    "InvoiceMarkedPaid",
    "InvoiceExpired",
    "InvoiceCanceled",
    "TransactionCompleted",
    "RefundRequested",
    "RefundCompleted",
    "LatePaymentReceived",
)

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
MESSAGE_STATUSES: Final = (PENDING, DELIVERED, FAILED)

# SPEC: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. Entry k is the wait before attempt
# k + 1 of a round (a round starts when the message is queued or resent).
DEFAULT_SCHEDULE: Final = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
JITTER: Final = 0.1  # each wait is drawn within ±10 % of the schedule's, so retries spread
# A receiver's Retry-After is honoured up to this long (a longer one is the schedule's limit).
LONGEST_RETRY_AFTER: Final = 36000.0
GONE: Final = 410


class WebhookMessageNotFound(DomainError):
    message, code = "Webhook message not found", "WEBHOOK_MESSAGE_NOT_FOUND"


def webhook_types(event: Event, before: Invoice | None, after: Invoice) -> list[str]:
    """The webhook event types ``event`` makes, given the invoice before and after it: an
    event that settles the invoice makes its store's type and the invoice's."""
    if isinstance(event, InvoiceCreated):
        return ["invoice.created"]
    if isinstance(event, InvoicePaid | InvoiceMarkedPaid):
        return ["invoice.paid"]
    if isinstance(event, InvoiceExpired):
        return ["invoice.expired"]
    if isinstance(event, InvoiceCanceled):
        return ["invoice.canceled"]
    if isinstance(event, RefundRequested):
        return ["transaction.refund_requested"]
    if isinstance(event, LatePaymentReceived):
        return ["payment.late_credited"]
    if isinstance(event, TransactionCompleted | RefundCompleted):
        own = (
            "transaction.completed"
            if isinstance(event, TransactionCompleted)
            else "transaction.refunded"
        )
        settled = before is not None and before.status != after.status
        if settled and after.status == COMPLETED:
            return [own, "invoice.completed"]
        if settled and after.status == REFUNDED:
            return [own, "invoice.refunded"]
        return [own]
    return []


def message_data(event: Event, after: Invoice, sequence: int) -> dict[str, Any]:
    """The ``data`` of a message: the invoice's status after the event, its service and its
    stream's version (receivers drop a message older than one they have seen), and the
    store, amount or payment the event is about."""
    data: dict[str, Any] = {
        "invoice": after.created.invoice,
        "status": after.status,
        "service": after.created.service,
        "sequence": sequence,
    }
    if isinstance(event, InvoiceCreated):
        data["amount"] = event.total_amount
    elif isinstance(event, InvoicePaid | InvoiceMarkedPaid):
        data["amount"], data["channel"] = event.amount, event.channel
    elif isinstance(event, TransactionCompleted | RefundRequested | RefundCompleted):
        data["invoice_onmarket"] = event.invoice_onmarket
        data["transaction_status"] = next(
            t.status
            for t in after.transactions
            if t.line.invoice_onmarket == event.invoice_onmarket
        )
        if not isinstance(event, TransactionCompleted):
            data["amount"] = event.amount
    elif isinstance(event, LatePaymentReceived):
        data["amount"], data["payment_id"] = event.amount, event.payment_id
    return data


def message_id(event_id: str, endpoint: str, event_type: str) -> str:
    """The ``webhook-id``: derived, so the same event to the same endpoint is one message
    whoever derives it, however often."""
    digest = hashlib.sha256(f"{event_id}\n{endpoint}\n{event_type}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


@dataclass(frozen=True, slots=True)
class Message:
    message: str
    endpoint: str
    service: str
    invoice: str
    event_type: str
    body: str
    status: str
    attempts: int  # every attempt made
    round_attempts: int  # attempts since it was queued or last resent
    next_attempt_at: datetime | None


def evolve_message(state: Message | None, event: Event) -> Message:
    if isinstance(event, WebhookMessageQueued):
        return Message(
            event.message,
            event.endpoint,
            event.service,
            event.invoice,
            event.event_type,
            event.body,
            PENDING,
            0,
            0,
            event.queued_at,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before WebhookMessageQueued")
    if isinstance(event, WebhookDeliveryAttempted):
        return replace(
            state,
            status=event.outcome,
            attempts=state.attempts + 1,
            round_attempts=state.round_attempts + 1,
            next_attempt_at=event.next_attempt_at,
        )
    if isinstance(event, WebhookMessageResent):
        return replace(state, status=PENDING, round_attempts=0, next_attempt_at=event.resent_at)
    return state


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one delivery attempt got: ``status`` 0 when no answer came (``error`` says why)."""

    at: datetime
    status: int
    duration_ms: int
    response: str
    error: str = ""
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


def decide_attempt(
    state: Message,
    result: AttemptResult,
    schedule: tuple[float, ...],
    jitter: float,
) -> WebhookDeliveryAttempted:
    """The record of an attempt and what follows it. ``jitter`` is drawn by the caller in
    [0, 1): the wait is the schedule's within ±``JITTER``, never shorter than the receiver's
    ``Retry-After``. 2xx is delivered; 410 and a round's last failure are failed."""
    number = state.round_attempts + 1
    outcome, next_at = FAILED, None
    if result.succeeded:
        outcome = DELIVERED
    elif result.status != GONE and number < len(schedule):
        wait = schedule[number] * (1 - JITTER + 2 * JITTER * jitter)
        if result.retry_after is not None:
            wait = max(wait, min(result.retry_after, LONGEST_RETRY_AFTER))
        outcome, next_at = PENDING, result.at + timedelta(seconds=wait)
    return WebhookDeliveryAttempted(
        state.message,
        state.endpoint,
        state.attempts + 1,
        result.at,
        result.status,
        result.duration_ms,
        result.response,
        result.error,
        outcome,
        next_at,
    )


def decide_resend(state: Message, by: str, now: datetime) -> list[WebhookEvent]:
    return [WebhookMessageResent(state.message, state.endpoint, by, now)]
