"""The platforms' commands on their invoices: cancel (a PENDING invoice whole, or a PAID
transaction by refund), complete a PAID transaction, and the refund worker's completion of a
requested refund.

A platform acts on its own service's invoices only. That is decided on the invoice id's prefix
before anything is read, so another service's invoice is refused the same whether it exists or
not, and a platform cannot probe the others'.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from eventstore import Checkpoint, RecordedEvent
from service.application.commands import Actor, Command, Context
from service.application.handling import Application, Attempt
from service.domain import errors
from service.domain.balance import credit_refund, evolve_balance
from service.domain.events import Event, InvoiceCanceled
from service.domain.invoice import (
    Invoice,
    decide_cancel,
    decide_completion,
    decide_refund_completion,
    evolve,
)
from service.domain.services import belongs_to
from service.domain.streams import balance_stream, invoice_stream

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
        state = await _platform_invoice(tx, command.actor, command.invoice)
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
        await _expire_at_gateway(app, command.invoice)
        return "INVOICE CANCELED"
    return "REFUND IN PROCESS"


async def _expire_at_gateway(app: Application, invoice: str) -> None:
    """Best effort: the cancel is committed whatever the gateway says, and a payment that
    still arrives is kept as the buyer's money (a late payment)."""
    state, _ = await app.load(invoice_stream(invoice), evolve)
    assert state is not None
    try:
        await app.gateway.expire(state.created.gateway_reference)
    except Exception:
        log.exception(
            "gateway did not expire a canceled invoice",
            invoice=invoice,
            reference=state.created.gateway_reference,
        )


async def complete(app: Application, command: CompleteTransaction, context: Context) -> None:
    async def attempt(tx: Attempt) -> None:
        state = await _platform_invoice(tx, command.actor, command.invoice)
        events = decide_completion(
            state,
            invoice_onmarket=command.invoice_onmarket,
            by=command.actor.username,
            now=app.clock(),
        )
        tx.append(invoice_stream(command.invoice), events, context.metadata())

    await app.run(attempt)


async def _platform_invoice(tx: Attempt, actor: Actor, invoice: str) -> Invoice:
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
