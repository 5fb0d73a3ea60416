"""The domain's outcomes counted from what was committed: each event appended by a command
moves its counter once (``count_committed``, called by ``Application.run`` after a successful
append), so an outcome is counted whichever way it came (HTTP, a worker, a callback), and never
for an answer that changed nothing."""

from __future__ import annotations

from collections.abc import Sequence

from eventstore import StreamAppend
from service.metrics.registry import Metrics


class CommittedOutcomes:
    """``Application``'s observer: counts committed events and answered replays."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def committed(self, appends: Sequence[StreamAppend]) -> None:
        metrics = self._metrics
        for append in appends:
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

    def replayed(self) -> None:
        self._metrics.idempotent_replays.inc()
