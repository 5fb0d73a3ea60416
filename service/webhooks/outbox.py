"""The outbox, derived from the log: committed invoice events become webhook messages.

A subscription from the outbox's checkpoint reads each invoice event that can make a message
(``SOURCE_TYPES``), folds its invoice to just after it (its status then, and its stream's
version as ``sequence``), and appends one ``WebhookMessageQueued`` per event type and enabled
endpoint of the invoice's service that selects it, together with the move of its checkpoint
past that event: a crash never loses a message nor makes one twice (a message's stream and
event id are derived from the event and the endpoint). Endpoints are taken as they stand when
the event is processed, normally within milliseconds of its commit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import structlog

from eventstore import Checkpoint, CheckpointConflict, EventStore, RecordedEvent
from service.application import Context, InvoiceService
from service.application.webhooks import QueueWebhookMessages
from service.domain.invoice import Invoice, evolve
from service.domain.streams import invoice_stream
from service.domain.webhook_delivery import (
    SOURCE_TYPES,
    message_data,
    message_id,
    webhook_types,
)
from service.domain.webhook_events import WebhookMessageQueued
from service.jobs.subscriptions import WEBHOOK_OUTBOX
from service.presenters import api_time
from service.records import decode
from service.views import ReadModel

log = structlog.get_logger("service.webhooks")

NAME = WEBHOOK_OUTBOX
# Folded invoices remembered by the outbox: an invoice's next event usually follows soon.
REMEMBERED_INVOICES = 4096
# With no message to append, the checkpoint is saved at most this often (seconds): an append
# per invoice event for nothing would halve the log's write rate.
IDLE_CHECKPOINT_SECONDS = 1.0


class Outbox:
    def __init__(
        self,
        store: EventStore,
        service: InvoiceService,
        views: ReadModel,
        clock: Callable[[], datetime],
    ) -> None:
        self.store, self.service, self.views, self.clock = store, service, views, clock
        self._invoices: OrderedDict[str, tuple[int, Invoice]] = OrderedDict()
        self._saved_at = 0.0

    async def run(self) -> None:
        """Turn events into messages until cancelled or the store closes."""
        async for recorded in self.store.subscribe(NAME, types=SOURCE_TYPES):
            try:
                await self.process(recorded)
            except CheckpointConflict:
                log.info("webhook event processed elsewhere", position=recorded.position)

    async def process(self, recorded: RecordedEvent) -> int:
        """Queue the messages of one event; answers how many."""
        invoice = recorded.stream_id.removeprefix("invoice-")
        event = decode(recorded)
        before = await self._invoice_before(invoice, recorded.version)
        after = evolve(before, event)
        self._remember(invoice, recorded.version, after)
        types = webhook_types(event, before, after)
        endpoints = await self.views.webhook_endpoints(after.created.service) if types else []
        messages = tuple(
            self._message(
                recorded,
                endpoint.endpoint,
                event_type,
                message_data(event, after, recorded.version),
                after,
            )
            for event_type in types
            for endpoint in endpoints
            if not endpoint.disabled
            and (not endpoint.event_types or event_type in endpoint.event_types)
        )
        checkpoint = Checkpoint(NAME, recorded.position)
        if messages:
            command = QueueWebhookMessages(messages, checkpoint)
            await self.service.handle(command, Context("system:webhook-outbox"))
            self._saved_at = time.monotonic()
        elif time.monotonic() - self._saved_at >= IDLE_CHECKPOINT_SECONDS:
            await self.store.save_checkpoint(NAME, recorded.position)
            self._saved_at = time.monotonic()
        return len(messages)

    def _message(
        self,
        recorded: RecordedEvent,
        endpoint: str,
        event_type: str,
        data: dict[str, Any],
        invoice: Invoice,
    ) -> WebhookMessageQueued:
        body = {"type": event_type, "timestamp": api_time(recorded.recorded_at), "data": data}
        return WebhookMessageQueued(
            message_id(recorded.event_id, endpoint, event_type),
            endpoint,
            invoice.created.service,
            invoice.created.invoice,
            event_type,
            orjson.dumps(body).decode(),
            recorded.position,
            self.clock(),
        )

    async def _invoice_before(self, invoice: str, version: int) -> Invoice | None:
        """The invoice just before its event at ``version``: from memory when the outbox saw
        the event before it, else folded from its stream."""
        if version == 1:
            return None
        known = self._invoices.get(invoice)
        if known is not None and known[0] == version - 1:
            return known[1]
        state: Invoice | None = None
        # A list, not read_stream: a generator left unfinished would hold a reader till GC.
        for recorded in await self.store.stream_tail(invoice_stream(invoice), 0, version - 1):
            state = evolve(state, decode(recorded))
        return state

    def _remember(self, invoice: str, version: int, state: Invoice) -> None:
        self._invoices[invoice] = (version, state)
        self._invoices.move_to_end(invoice)
        if len(self._invoices) > REMEMBERED_INVOICES:
            self._invoices.popitem(last=False)
