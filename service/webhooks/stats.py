"""What the operations side will export (``GET /metrics`` to come): deliveries by outcome and
the age of the oldest pending message, from one place."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from service.views import ReadModel


class WebhookStats:
    """Counters of this process's delivery attempts by outcome (``delivered``, ``retrying``,
    ``failed``, ``lost_race``), and the oldest pending message's age from the views."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()

    def count(self, outcome: str) -> None:
        self.deliveries[outcome] += 1

    async def oldest_pending_seconds(self, views: ReadModel, now: datetime) -> float:
        """How long the oldest message still pending has waited (0 when none is)."""
        oldest = await views.oldest_pending_webhook()
        return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
