"""What the webhooks tell the operations side, from one place: delivery attempts counted by
outcome (fed to the ``webhook_deliveries`` counter of ``/metrics``), and the backlog (the
pending messages, the oldest one's age and how long the most overdue one has been due) that
both ``/metrics`` and the operator page show.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from service.metrics import registry
from service.metrics.registry import WEBHOOK_OUTCOMES
from service.views import ReadModel


class WebhookStats:
    """Counters of this process's delivery attempts by outcome (one of ``WEBHOOK_OUTCOMES``,
    the metric's fixed label set); each count is also told to ``listener`` (the app passes
    ``Metrics.webhook_delivered``)."""

    def __init__(self, listener: Callable[[str], None] | None = None) -> None:
        self.deliveries: Counter[str] = Counter()
        self._listener = listener

    def count(self, outcome: str) -> None:
        if outcome not in WEBHOOK_OUTCOMES:  # a new one is added there, to the label set
            raise ValueError(f"unknown webhook delivery outcome {outcome!r}")
        self.deliveries[outcome] += 1
        if self._listener is not None:
            self._listener(outcome)


async def backlog(views: ReadModel, now: datetime) -> registry.WebhookBacklogGauges:
    """The messages still pending to enabled endpoints, how long the oldest has waited at
    ``now``, and how long the most overdue one has been due (its next attempt's time passed,
    not yet sent): 0 when none is. One query."""
    found = await views.webhook_backlog()
    return registry.WebhookBacklogGauges(
        pending=found.pending,
        oldest_pending_age_seconds=registry.age_seconds(now, found.oldest_queued_at),
        oldest_due_age_seconds=registry.age_seconds(now, found.earliest_next_attempt_at),
    )
