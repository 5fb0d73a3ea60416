"""The operator page: what it shows, worked out from the read model and the log.

``AdminPage`` holds plain values and two charts (``charts``) for ``templates/admin.html``: the
invoices by status, the last 24 hours' checkouts by hour (count and volume), the refund backlog,
the webhooks panel (``WebhooksPanel``: the backlog and the latest failed deliveries, each with a
Resend button; filled by ``service.webhooks.admin`` through the ``WEBHOOKS_ADMIN`` hook, which
the app sets; an app without it says "not available"), and a search's result: the invoice's
timeline (its events with their actors, each with a link to the state just after it) and its
state at the moment asked for (``as_of``), replayed from the log as ``/invoice/detail`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from markupsafe import Markup

from service.domain.statuses import INVOICE_STATUSES
from service.http.charts import bar_chart
from service.views.read_model import HourlyVolume

TEMPLATE = "admin.html"
HOURS = 24


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A webhook delivery that failed, as the webhooks feature tells it."""

    delivery_id: str
    url: str
    event: str
    failed_at: str
    reason: str


@dataclass(frozen=True, slots=True)
class WebhooksPanel:
    pending: int
    oldest_pending_age_seconds: float
    failed: tuple[FailedDelivery, ...]


class WebhooksAdmin(Protocol):
    """The hook the webhooks feature fills (``keys.WEBHOOKS_ADMIN``): its backlog and latest
    failed deliveries for the page (``service.webhooks.admin.WebhooksOverview``). The page's
    Resend button posts to ``/admin/webhooks/{delivery_id}/resend``
    (``service.http.admin_webhooks``)."""

    async def panel(self) -> WebhooksPanel: ...


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    position: int
    version: int
    type: str
    recorded_at: str
    actor: str
    request_id: str
    link: str  # the page showing the state just after this event


@dataclass(frozen=True, slots=True)
class Transaction:
    invoice_onmarket: str
    seller: str
    total: int
    waybill: str
    status: str


@dataclass(frozen=True, slots=True)
class Found:
    """A searched invoice: its state at ``shown_at`` and its whole timeline."""

    invoice: str
    buyer: str
    service: str
    source: str
    amount: int
    status: str
    shown_at: str
    as_of: str | None  # what was asked for, if a past moment was
    transactions: tuple[Transaction, ...]
    status_history: tuple[dict[str, Any], ...]
    timeline: tuple[TimelineEntry, ...]


@dataclass(frozen=True, slots=True)
class AdminPage:
    nonce: str
    now: str
    status_chart: Markup
    status_counts: tuple[tuple[str, int], ...]
    volume_chart: Markup
    amount_chart: Markup
    day_invoices: int
    day_amount: int
    refund_backlog: int
    webhooks: WebhooksPanel | None
    resent: str | None  # the delivery just resent from this page, if one was
    query: str
    found: Found | None
    missing: bool  # a search found nothing


def status_bars(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """Every invoice status in the API's order (zeros too), then any other the view holds."""
    known = [(status, counts.get(status, 0)) for status in INVOICE_STATUSES]
    other = sorted((s, n) for s, n in counts.items() if s not in INVOICE_STATUSES)
    return tuple(known + other)


def hourly_bars(
    volume: Sequence[HourlyVolume], now: datetime
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The last ``HOURS`` hours up to ``now``'s, each with its invoices and its amount (zero
    for an hour without checkouts), labelled by the hour of day (UTC)."""
    by_hour = {row.hour: row for row in volume}
    counts, amounts = [], []
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    for step in range(HOURS):
        hour = first + timedelta(hours=step)
        key = hour.strftime("%Y-%m-%dT%H")
        row = by_hour.get(key)
        label = hour.strftime("%H")
        counts.append((label, row.invoices if row else 0))
        amounts.append((label, row.amount if row else 0))
    return counts, amounts


def charts(
    counts: dict[str, int], volume: Sequence[HourlyVolume], now: datetime
) -> tuple[Markup, Markup, Markup]:
    invoices, amounts = hourly_bars(volume, now)
    return (
        bar_chart(status_bars(counts), title="Invoices by status"),
        bar_chart(invoices, title="Checkouts per hour, last 24 h (UTC)", label_every=3),
        bar_chart(amounts, title="Checkout volume per hour, last 24 h (IDR)", label_every=3),
    )
