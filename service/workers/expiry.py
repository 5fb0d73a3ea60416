"""The expiry task: records InvoiceExpired for PENDING invoices whose time has passed.

It finds candidates in the invoice view, but decides on each invoice's own stream, so a
payment racing the expiry is settled by the stream's version: whichever is appended first
wins, and the other decides again from the result (a payment then becomes a late payment).
The API never waits for this task: it shows an invoice past ``expired_at`` as EXPIRED anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from service.application import Context, ExpireIfDue, InvoiceService
from service.views import ReadModel

log = structlog.get_logger("service.expiry")

BATCH = 200


async def expire_due(views: ReadModel, service: InvoiceService, now: datetime) -> int:
    """Expire every PENDING invoice due at ``now``; return how many were expired."""
    expired = 0
    while True:
        due = await views.due_invoices(now, BATCH)
        progress = 0
        for invoice in due:
            if await service.handle(ExpireIfDue(invoice), Context("system:expiry")):
                progress += 1
        expired += progress
        if len(due) < BATCH or not progress:  # no progress: do not spin on the same rows
            return expired


async def run_expiry_task(
    views: ReadModel, service: InvoiceService, *, interval: float, clock: Callable[[], datetime]
) -> None:
    """Expire due invoices every ``interval`` seconds until cancelled."""
    while True:
        try:
            count = await expire_due(views, service, clock())
            if count:
                log.info("invoices expired", count=count)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bad moment must not end the task: log it and try again
            log.exception("expiry pass failed")
        await asyncio.sleep(interval)
