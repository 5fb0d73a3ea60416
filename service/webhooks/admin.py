"""The webhooks panel of the operator page (``keys.WEBHOOKS_ADMIN``): the backlog, as
``/metrics`` tells it (``stats.backlog``), and the latest failed deliveries of every service (an
admin sees all), each with its endpoint's URL and why its last attempt failed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from service.http.admin_page import FailedDelivery, WebhooksPanel
from service.presenters import api_time
from service.views import ReadModel
from service.views.read_model import FailedWebhookRow
from service.webhooks.stats import backlog

# How many failed deliveries the page lists: the latest; the API's delivery log has the rest.
FAILED_SHOWN = 20


def reason(row: FailedWebhookRow) -> str:
    """Why the last attempt failed: no answer's error, else the answer's status; and whether
    its endpoint was disabled since (a resend waits until it is enabled again)."""
    why = row.error or f"HTTP {row.status}"
    return f"{why}; endpoint disabled" if row.endpoint_disabled else why


class WebhooksOverview:
    """``admin_page.WebhooksAdmin`` from the read model, at the app's clock."""

    def __init__(self, views: ReadModel, clock: Callable[[], datetime]) -> None:
        self._views = views
        self._clock = clock

    async def panel(self) -> WebhooksPanel:
        stats = await backlog(self._views, self._clock())
        failed = await self._views.latest_failed_webhooks(FAILED_SHOWN)
        return WebhooksPanel(
            pending=stats.pending,
            oldest_pending_age_seconds=stats.oldest_pending_age_seconds,
            failed=tuple(
                FailedDelivery(
                    delivery_id=row.message,
                    url=row.url,
                    event=row.event_type,
                    failed_at=api_time(row.failed_at),
                    reason=reason(row),
                )
                for row in failed
            ),
        )
