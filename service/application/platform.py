"""The platforms' commands on their invoices: cancel (a PENDING invoice whole, or a PAID
transaction by refund), complete a PAID transaction, and the refund worker's completion of a
requested refund.

A platform acts on its own service's invoices only. That is decided on the invoice id's prefix
before anything is read, so another service's invoice is refused the same whether it exists or
not, and a platform cannot probe the others'.

A batch of completions (``CompleteBatch``) is each item's ``CompleteTransaction`` carried out on
its own, all at once, so the items' appends share the store's group commits; one item's
refusal is that item's result and changes nothing of the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog

from eventstore import Checkpoint, RecordedEvent
from service.application.checkout import Idempotency, answer_of
from service.application.commands import Actor, Command, Context
from service.application.handling import Application, Attempt, latest
from service.domain import errors
from service.domain.balance import credit_refund, evolve_balance
from service.domain.events import Event, IdempotentRequestRecorded, InvoiceCanceled
from service.domain.invoice import (
    Invoice,
    decide_cancel,
    decide_completion,
    decide_refund_completion,
    evolve,
)
from service.domain.services import belongs_to
from service.domain.streams import balance_stream, idempotency_stream, invoice_stream

log = structlog.get_logger("service.application")


@dataclass(frozen=True, slots=True)
class CancelTransaction(Command[str]):
    """Cancel a PENDING invoice, or start the refund of a PAID transaction; answers the
    message to show."""

    actor: Actor
    invoice: str
    invoice_onmarket: str | None = None
    buyer_username: str | None = None


@dataclass(frozen=True, slots=True)
class CompleteTransaction(Command[None]):
    """Complete a PAID transaction: pay out the seller, commission and insurance."""

    actor: Actor
    invoice: str
    invoice_onmarket: str | None = None
    amount: int | None = None  # if given, must be the transaction's total (AMOUNT_MISMATCH)


@dataclass(frozen=True, slots=True)
class CompleteBatch(Command[dict[str, Any]]):
    """Complete each of ``items`` on its own; answers ``{"results": [...]}`` in their order. A
    repeat with the same ``idempotency`` key and request answers what the first did."""

    actor: Actor
    items: tuple[CompleteTransaction, ...]
    idempotency: Idempotency | None = None


@dataclass(frozen=True, slots=True)
class CompleteRefund(Command[bool]):
    """Credit the buyer for a requested refund, moving the refund worker's ``checkpoint`` in
    the same commit; False if it was completed already."""

    invoice: str
    invoice_onmarket: str
    requested_event_id: str  # the RefundRequested this completes: its causation
    checkpoint: Checkpoint

    @classmethod
    def of(cls, requested: RecordedEvent, checkpoint: Checkpoint) -> CompleteRefund:
        data = requested.data
        return cls(data["invoice"], data["invoice_onmarket"], requested.event_id, checkpoint)


async def cancel(app: Application, command: CancelTransaction, context: Context) -> str:
    async def attempt(tx: Attempt) -> Event:
        state = await platform_invoice(tx, command.actor, command.invoice)
        events = decide_cancel(
            state,
            invoice_onmarket=command.invoice_onmarket,
            buyer_username=command.buyer_username,
            by=command.actor.username,
            now=app.clock(),
        )
        tx.append(invoice_stream(command.invoice), events, context.metadata())
        return events[0]

    decided = await app.run(attempt)
    if isinstance(decided, InvoiceCanceled):
        await expire_at_gateway(app, command.invoice)
        return "INVOICE CANCELED"
    return "REFUND IN PROCESS"


async def expire_at_gateway(app: Application, invoice: str) -> None:
    """Best effort, after a cancel or a mark-paid: that is committed whatever the gateway says,
    and a payment that still arrives is kept as the buyer's money (a late payment)."""
    state, _ = await app.load(invoice_stream(invoice), evolve)
    assert state is not None
    try:
        await app.gateway.expire(state.created.gateway_reference)
    except Exception:
        log.exception(
            "gateway did not expire an invoice no longer payable",
            invoice=invoice,
            reference=state.created.gateway_reference,
        )


async def complete(app: Application, command: CompleteTransaction, context: Context) -> None:
    async def attempt(tx: Attempt) -> None:
        state = await platform_invoice(tx, command.actor, command.invoice)
        events = decide_completion(
            state,
            invoice_onmarket=command.invoice_onmarket,
            by=command.actor.username,
            now=app.clock(),
            amount=command.amount,
        )
        tx.append(invoice_stream(command.invoice), events, context.metadata())

    await app.run(attempt)


async def complete_batch(
    app: Application, command: CompleteBatch, context: Context
) -> dict[str, Any]:
    idempotency, username = command.idempotency, command.actor.username
    if idempotency is not None:
        recorded, _ = await app.load(idempotency_stream(username, idempotency.key), latest)
        assert recorded is None or isinstance(recorded, IdempotentRequestRecorded)
        stored = answer_of(app, recorded, idempotency)
        if stored is not None:
            return stored[1]
    # Concurrently: each item waits only for its own invoice's turn (a duplicate item for the
    # first's, then decides on what the first appended), and their appends commit together.
    results = await asyncio.gather(*(_complete_item(app, item, context) for item in command.items))
    answer: dict[str, Any] = {"results": list(results)}
    if idempotency is None:
        return answer
    now = app.clock()

    async def record(tx: Attempt) -> dict[str, Any]:
        # A twin with the same key that recorded first wins: its answer is the answer. (Its
        # items and these were the same completions, so each was carried out once either way.)
        stream = idempotency_stream(username, idempotency.key)
        recorded = await tx.load(stream, latest)
        assert recorded is None or isinstance(recorded, IdempotentRequestRecorded)
        stored = answer_of(app, recorded, idempotency)
        if stored is not None:
            return stored[1]
        expires_at = now + app.idempotency_ttl
        event = IdempotentRequestRecorded(
            username, idempotency.key, idempotency.request_hash, 200, answer, expires_at
        )
        tx.append(stream, [event], context.metadata())
        return answer

    return await app.run(record)


async def _complete_item(
    app: Application, item: CompleteTransaction, context: Context
) -> dict[str, Any]:
    """One item's result: what ``/invoice/done`` would have answered for it."""
    result = {"invoice_id": item.invoice, "invoice_onmarket": item.invoice_onmarket}
    try:
        await complete(app, item, context)
    except errors.DomainError as error:
        return {**result, "status": "failed", "code": error.code, "message": error.message}
    return {**result, "status": "success", "code": None, "message": "TRANSACTION IS COMPLETED"}


async def platform_invoice(tx: Attempt, actor: Actor, invoice: str) -> Invoice:
    if actor.role != "admin" and not belongs_to(invoice, actor.platform):
        raise errors.Forbidden("this invoice belongs to another service")
    state = await tx.load(invoice_stream(invoice), evolve)
    if state is None:
        raise errors.InvoiceNotFound()
    if actor.role != "admin" and state.created.service != actor.platform:
        raise errors.Forbidden("this invoice belongs to another service")
    return state


async def complete_refund(app: Application, command: CompleteRefund, context: Context) -> bool:
    metadata = context.metadata(causation_id=command.requested_event_id)

    async def attempt(tx: Attempt) -> bool:
        state = await tx.load(invoice_stream(command.invoice), evolve)
        assert state is not None
        events = decide_refund_completion(state, command.invoice_onmarket, app.clock())
        if not events:
            return False  # the checkpoint still moves
        username = state.created.username
        await tx.load(balance_stream(username), evolve_balance)
        tx.append(invoice_stream(command.invoice), events, metadata)
        tx.append(balance_stream(username), [credit_refund(username, events[0])], metadata)
        return True

    # The refund worker's: nobody to answer a 409 to, and giving up would only defer it.
    return await app.run(attempt, checkpoint=command.checkpoint, patient=True)
