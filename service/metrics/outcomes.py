"""The domain's outcomes counted from what was committed: each event appended by a command
moves its counter once (``committed``, called by ``Application.run`` after a successful
append), so an outcome is counted whichever way it came (HTTP, a worker, a callback), and never
for an answer that changed nothing.

An invoice settles (COMPLETED or REFUNDED) with the event that settles its last transaction:
that depends on the invoice before the event, so the invoice's state as the command read it is
folded through the append's events, by the rule the webhooks' ``invoice.completed`` and
``invoice.refunded`` follow (``webhook_types``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eventstore import NewEvent, StreamAppend
from service.domain.codec import from_data
from service.domain.events import EVENT_TYPES
from service.domain.invoice import Invoice, evolve
from service.domain.webhook_delivery import webhook_types
from service.metrics.registry import Metrics

# The events that can settle an invoice: only these need the invoice's state.
SETTLING = frozenset({"TransactionCompleted", "RefundCompleted"})


class CommittedOutcomes:
    """``Application``'s observer: counts committed events and answered replays."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def committed(self, appends: Sequence[StreamAppend], read: Mapping[str, Any]) -> None:
        metrics = self._metrics
        for append in appends:
            if any(event.type in SETTLING for event in append.events):
                self._count_settled(append.events, read.get(append.stream_id))
            for event in append.events:
                kind = event.type
                if kind == "InvoiceCreated":
                    metrics.invoices_created.labels(str(event.data["source"])).inc()
                elif kind in ("InvoicePaid", "InvoiceMarkedPaid"):
                    metrics.invoices_paid.labels(str(event.data["channel"])).inc()
                elif kind == "InvoiceExpired":
                    metrics.invoices_expired.inc()
                elif kind == "InvoiceCanceled":
                    metrics.invoices_canceled.inc()
                elif kind == "TransactionCompleted":
                    metrics.transactions_completed.inc()
                elif kind == "RefundRequested":
                    metrics.refunds_requested.inc()
                elif kind == "RefundCompleted":
                    metrics.refunds_completed.inc()
                elif kind == "LatePaymentReceived":
                    metrics.late_payments.inc()

    def _count_settled(self, events: Sequence[NewEvent], before: Any) -> None:
        """Count the invoice settling, if one of ``events`` settles it: ``before`` is its state
        as the command read it (a command that completes or refunds always reads it first)."""
        if not isinstance(before, Invoice):
            return
        for record in events:
            event = from_data(EVENT_TYPES[record.type], record.data)
            after = evolve(before, event)
            types = webhook_types(event, before, after)
            if "invoice.completed" in types:
                self._metrics.invoices_completed.inc()
            elif "invoice.refunded" in types:
                self._metrics.invoices_refunded.inc()
            before = after

    def replayed(self) -> None:
        self._metrics.idempotent_replays.inc()
