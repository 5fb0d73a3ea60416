"""Reconciliation: ask the gateway about invoices whose callbacks may have been lost.

Callbacks can be lost (a network fault, our service down when the gateway called). For every
invoice with a gateway payment that is PENDING, or that expired, was canceled or was marked paid
out of band within the window (a payment may have arrived late), the gateway is asked what it
knows, and whatever it reports is applied through the same path as a callback: a payment pays
the invoice or is credited to the buyer, an expiry expires it. Run by ``python -m service
reconcile`` or, with ``reconcile_interval_seconds`` set, periodically by the service.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from service.application import Context, InvoiceService, Reconcile
from service.domain.errors import DomainError
from service.gateway.port import GatewayError
from service.views import ReadModel

log = structlog.get_logger("service.reconcile")


async def reconcile_all(
    views: ReadModel, service: InvoiceService, *, now: datetime, window: timedelta
) -> Counter[str]:
    """Reconcile every candidate invoice; count the outcomes (``paid``, ``pending``, …)."""
    outcomes: Counter[str] = Counter()
    for invoice in await views.reconcile_candidates(since=now - window):
        try:
            outcome = await service.handle(Reconcile(invoice), Context("system:reconcile"))
        except (GatewayError, DomainError) as error:  # one bad answer must not stop the others
            log.warning("reconcile failed", invoice=invoice, error=str(error))
            outcome = "failed"
        if outcome not in ("pending", "unchanged", "duplicate"):
            log.info("reconciled", invoice=invoice, outcome=outcome)
        outcomes[outcome] += 1
    return outcomes


async def run_reconcile_task(
    views: ReadModel,
    service: InvoiceService,
    *,
    interval: float,
    window: timedelta,
    clock: Callable[[], datetime],
) -> None:
    """Reconcile every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await reconcile_all(views, service, now=clock(), window=window)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bad moment must not end the task: log it and try again
            log.exception("reconcile pass failed")
