"""The refund worker: turns each RefundRequested into RefundCompleted and the buyer's credit.

A subscription from the worker's stored checkpoint. Each refund is appended together with the
move of the checkpoint, so a refund is credited exactly once, across restarts and even if two
workers run. ``delay`` keeps a refund REFUND_IN_PROCESS for a while after it was asked for, as
a real pay-out would, so that state can be observed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from eventstore import Checkpoint, CheckpointConflict, EventStore
from service.application import CompleteRefund, Context, InvoiceService
from service.domain.codec import parse_time
from service.jobs.subscriptions import REFUND_WORKER

log = structlog.get_logger("service.refunds")

NAME = REFUND_WORKER


async def run_refund_worker(
    store: EventStore,
    service: InvoiceService,
    *,
    delay: timedelta,
    clock: Callable[[], datetime],
) -> None:
    """Process refunds until cancelled or the store closes."""
    async for event in store.subscribe(NAME, types=("RefundRequested",)):
        # The domain's own time (the app's clock), not the store's commit time.
        requested_at = parse_time(event.data["requested_at"])
        wait = (requested_at + delay - clock()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            command = CompleteRefund.of(event, Checkpoint(NAME, event.position))
            context = Context("system:refund-worker", event.metadata.get("request_id"))
            credited = await service.handle(command, context)
        except CheckpointConflict:
            log.info("refund already processed elsewhere", position=event.position)
            continue
        log.info(
            "refund completed" if credited else "refund already completed",
            invoice=event.data["invoice"],
            invoice_onmarket=event.data["invoice_onmarket"],
            amount=event.data["amount"],
        )
