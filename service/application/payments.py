"""Payments from the gateway and what else decides an invoice's fate on the gateway's side: a
payment (by callback or found by reconciliation), the gateway's expiry, and the expiry task's.

A payment's events get ids derived from the gateway's payment id, so a repeated callback, however
concurrent, records nothing twice; a payment the invoice can no longer take is recorded as late
and credited to the buyer's balance in the same append.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.application.commands import Command, Context
from service.application.errors import PaymentIdReused
from service.application.handling import Application, Attempt
from service.application.ids import payment_event_id
from service.domain import errors
from service.domain.balance import credit_late_payment, evolve_balance
from service.domain.events import LatePaymentReceived
from service.domain.invoice import (
    Payment,
    decide_expiry,
    decide_gateway_expiry,
    decide_payment,
    evolve,
)
from service.domain.services import BALANCE
from service.domain.streams import balance_stream, invoice_stream
from service.gateway.port import EXPIRED as GATEWAY_EXPIRED
from service.gateway.port import PAID as GATEWAY_PAID


@dataclass(frozen=True, slots=True)
class RecordPayment(Command[str]):
    """Apply a gateway's payment: ``paid``, ``credited`` (late: the buyer's money) or
    ``duplicate``."""

    invoice: str
    payment: Payment


@dataclass(frozen=True, slots=True)
class ExpireByGateway(Command[bool]):
    """The gateway says the payment can no longer be made: expire the invoice if PENDING."""

    invoice: str


@dataclass(frozen=True, slots=True)
class ExpireIfDue(Command[bool]):
    """Record the expiry of an invoice whose time has passed; False if nothing to do."""

    invoice: str


@dataclass(frozen=True, slots=True)
class Reconcile(Command[str]):
    """Ask the gateway what became of the invoice's payment and apply it as a callback would:
    ``paid``, ``credited``, ``duplicate``, ``expired``, ``pending`` or ``unchanged``."""

    invoice: str


async def record_payment(app: Application, command: RecordPayment, context: Context) -> str:
    invoice, payment = command.invoice, command.payment
    metadata = context.metadata(payment_id=payment.payment_id)

    def ids(*types: str) -> list[str]:
        return [payment_event_id(payment.payment_id, kind) for kind in types]

    async def attempt(tx: Attempt) -> str:
        state = await tx.load(invoice_stream(invoice), evolve)
        if state is None:
            raise errors.InvoiceNotFound()
        events = decide_payment(state, payment, app.clock())
        if not events:
            return "duplicate"
        await _refuse_payment_of_another_invoice(app, invoice, payment.payment_id)
        kinds = [type(event).__name__ for event in events]
        tx.append(invoice_stream(invoice), events, metadata, event_ids=ids(*kinds), once=True)
        late = [event for event in events if isinstance(event, LatePaymentReceived)]
        if not late:
            return "paid"
        username = state.created.username
        await tx.load(balance_stream(username), evolve_balance)
        credit = credit_late_payment(username, late[0])
        tx.append(balance_stream(username), [credit], metadata, event_ids=ids("BalanceCredited"))
        return "credited"

    # Patient: the gateway's money is recorded whatever the contention (see ``handling``).
    return await app.run(attempt, streams=[invoice_stream(invoice)], patient=True)


async def _refuse_payment_of_another_invoice(
    app: Application, invoice: str, payment_id: str
) -> None:
    """A gateway payment pays one invoice: the same payment id for another is refused."""
    ids = [payment_event_id(payment_id, kind) for kind in ("InvoicePaid", "LatePaymentReceived")]
    holding = await app.views.streams_holding(ids)
    if any(stream != invoice_stream(invoice) for stream in holding):
        raise PaymentIdReused()


async def expire_by_gateway(app: Application, command: ExpireByGateway, context: Context) -> bool:
    async def attempt(tx: Attempt) -> bool:
        state = await tx.load(invoice_stream(command.invoice), evolve)
        if state is None:
            raise errors.InvoiceNotFound()
        events = decide_gateway_expiry(state, app.clock())
        tx.append(invoice_stream(command.invoice), events, context.metadata())
        return bool(events)

    return await app.run(attempt, streams=[invoice_stream(command.invoice)], patient=True)


async def expire_if_due(app: Application, command: ExpireIfDue, context: Context) -> bool:
    async def attempt(tx: Attempt) -> bool:
        state = await tx.load(invoice_stream(command.invoice), evolve)
        events = decide_expiry(state, app.clock()) if state is not None else []
        tx.append(invoice_stream(command.invoice), events, context.metadata())
        return bool(events)

    # The expiry task's: nobody to answer a 409 to, and giving up would only defer it.
    return await app.run(attempt, streams=[invoice_stream(command.invoice)], patient=True)


async def reconcile(app: Application, command: Reconcile, context: Context) -> str:
    invoice = command.invoice
    state, _ = await app.load(invoice_stream(invoice), evolve)
    if state is None:
        raise errors.InvoiceNotFound()
    if state.created.source == BALANCE:
        return "unchanged"  # paid at checkout; no gateway involved
    reference = state.created.gateway_reference
    known = await app.gateway.status(reference)
    if known.status == GATEWAY_PAID and known.payment_id is not None:
        payment = Payment(
            known.payment_id,
            known.paid_amount if known.paid_amount is not None else -1,
            known.method or "UNKNOWN",
            known.channel or "UNKNOWN",
            known.paid_at or app.clock(),
            # A gateway invoice or QR code is paid once: its reference names the payment too,
            # so a callback that arrives after this (or came before) is recognised.
            aliases=(reference,) if reference != known.payment_id else (),
        )
        return await record_payment(app, RecordPayment(invoice, payment), context)
    if known.status == GATEWAY_EXPIRED:
        expired = await expire_by_gateway(app, ExpireByGateway(invoice), context)
        return "expired" if expired else "unchanged"
    return "pending"
