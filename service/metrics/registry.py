"""Every metric the service exports, made once per app, and their exposition.

One process: the metrics live in a registry of the app's own (several apps in one test process
share nothing). Several processes (``serve --workers N``): the supervisor gives every worker one
``PROMETHEUS_MULTIPROC_DIR`` (``service.serving``) and prometheus-client's multiprocess mode
writes each process's values to files there, so a scrape answered by any worker sums every
process's counters and histograms. Gauges say how they combine: the store's head position and
the backlogs are the same database seen by every process, so the most recent live value is the
answer, not their sum.

Labels are bounded sets only (a route's template, a method, a status, a source, a channel):
never an invoice id or a username, so a series cannot be made per invoice.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request durations: most answers take a few milliseconds; a slow gateway call up to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Appends per group commit: 1 when idle, hundreds under load (``max_batch`` is 512).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# What a webhook delivery attempt can end in: the ``outcome`` label's whole, fixed set.
WEBHOOK_OUTCOMES = ("delivered", "retrying", "failed", "lost_race")


def multiprocess_dir() -> str | None:
    """The folder of the multiprocess mode's files, when this process is one of several."""
    return os.environ.get(MULTIPROC_ENV) or None


def age_seconds(now: datetime, since: datetime | None) -> float:
    """How long ago ``since`` was at ``now``, for an age gauge: 0 when there is nothing to age
    (None) or it lies ahead."""
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


@dataclass(frozen=True, slots=True)
class WebhookBacklogGauges:
    """What the webhooks feature tells the metrics at each scrape (a hook: see
    ``Metrics.webhook_stats``)."""

    pending: int
    oldest_pending_age_seconds: float
    oldest_due_age_seconds: float


class Metrics:
    """The app's metrics. ``webhook_stats``, when a feature sets it, is asked at each scrape
    for the webhook backlog; ``webhook_delivered(outcome)`` counts a delivery attempt."""

    def __init__(self) -> None:
        self._multiprocess = multiprocess_dir() is not None
        # In multiprocess mode the values live in files, not in a registry: none is given.
        self._registry = None if self._multiprocess else CollectorRegistry()
        registry = self._registry
        self.requests = Histogram(
            "http_request_duration_seconds",
            "Time to answer a request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.invoices_created = Counter(
            "invoices_created",
            "Invoices created, by payment source.",
            ["source"],
            registry=registry,
        )
        self.invoices_paid = Counter(
            "invoices_paid",
            "Invoices paid, by channel (MANUAL: marked paid out of band).",
            ["channel"],
            registry=registry,
        )
        self.invoices_expired = Counter("invoices_expired", "Invoices expired.", registry=registry)
        self.invoices_canceled = Counter(
            "invoices_canceled", "Invoices canceled.", registry=registry
        )
        self.invoices_completed = Counter(
            "invoices_completed",
            "Invoices settled COMPLETED: their last transaction settled, at least one paid out.",
            registry=registry,
        )
        self.invoices_refunded = Counter(
            "invoices_refunded",
            "Invoices settled REFUNDED: every transaction refunded.",
            registry=registry,
        )
        self.transactions_completed = Counter(
            "transactions_completed", "Transactions completed (paid out).", registry=registry
        )
        self.refunds_requested = Counter(
            "refunds_requested", "Refunds requested.", registry=registry
        )
        self.refunds_completed = Counter(
            "refunds_completed", "Refunds credited.", registry=registry
        )
        self.late_payments = Counter(
            "late_payments",
            "Payments that arrived too late, credited to the buyer.",
            registry=registry,
        )
        self.gateway_errors = Counter(
            "gateway_errors", "Requests answered 502 because the gateway failed.", registry=registry
        )
        self.idempotent_replays = Counter(
            "idempotent_replays",
            "Requests answered with a remembered answer (Idempotency-Key).",
            registry=registry,
        )
        self.refund_backlog = Gauge(
            "refund_backlog",
            "Transactions waiting for their refund (REFUND_IN_PROCESS).",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.refund_oldest_age = Gauge(
            "refund_oldest_pending_age_seconds",
            "Age of the oldest refund requested and not yet credited (0 when none waits).",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.head_position = Gauge(
            "eventstore_head_position",
            "The global position of the log's last event.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.batch_sizes = Histogram(
            "eventstore_append_batch_size",
            "Appends committed together by one group commit.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in WEBHOOK_OUTCOMES:  # every series from the start: rate() sees the first
            self.webhook_deliveries.labels(outcome)
        self.webhook_pending = Gauge(
            "webhook_pending_messages",
            "Webhook messages not yet delivered.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.webhook_oldest_age = Gauge(
            "webhook_oldest_pending_age_seconds",
            "Age of the oldest webhook message not yet delivered.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.webhook_oldest_due_age = Gauge(
            "webhook_oldest_due_age_seconds",
            "How long the most overdue webhook message has been due and not sent (0 when none"
            " is due): a stuck sender shows here, a receiver's long retry wait does not.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.webhook_stats: Callable[[], Awaitable[WebhookBacklogGauges]] | None = None
        # The histogram's child per label values: labels() costs twice the observation itself.
        # Bounded: the methods, route templates and statuses are few.
        self._request_series: dict[tuple[str, str, str], Any] = {}

    def observe_request(self, method: str, route: str, status: str, seconds: float) -> None:
        """One answered request: its duration under its method, route template and status."""
        key = (method, route, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = self.requests.labels(*key)
        series.observe(seconds)

    def observe_batch(self, size: int) -> None:
        """The store's ``on_batch`` hook (called on its writer's thread: prometheus-client's
        values are thread-safe)."""
        self.batch_sizes.observe(size)

    def webhook_delivered(self, outcome: str) -> None:
        """A webhook delivery attempt ended with ``outcome``: one of the small fixed set
        ``WEBHOOK_OUTCOMES`` (delivered, retrying, failed, lost_race), told by
        the sender's ``WebhookStats``. In multiprocess mode each worker's count is in its own
        file, summed at a scrape, as for the other counters."""
        self.webhook_deliveries.labels(outcome).inc()

    async def refresh_webhooks(self) -> None:
        """Ask the webhooks feature, if it is there, for its backlog (the app sets the hook to
        ``service.webhooks.stats.backlog``: one query of the read model)."""
        if self.webhook_stats is None:
            return
        stats = await self.webhook_stats()
        self.webhook_pending.set(stats.pending)
        self.webhook_oldest_age.set(stats.oldest_pending_age_seconds)
        self.webhook_oldest_due_age.set(stats.oldest_due_age_seconds)

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, or every process's in
        multiprocess mode."""
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
