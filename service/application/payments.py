"""Payments from the gateway and what else decides an invoice's fate on the gateway's side: a
payment (by callback or found by reconciliation), the gateway's expiry, and the expiry task's.

A payment's events get ids derived from the gateway's payment id, so a repeated callback, however
concurrent, records nothing twice; a payment the invoice can no longer take is recorded as late,
and one of another amount than the invoice's as mismatched, and either is credited to the buyer's
balance in the same append.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from service.application.commands import Command, Context
from service.application.errors import PaymentIdReused
from service.application.handling import Application, Attempt
from service.application.ids import payment_event_id
from service.domain import errors
from service.domain.balance import (
    credit_late_payment,
    credit_mismatched_payment,
    evolve_balance,
)
from service.domain.events import (
    BalanceCredited,
    Event,
    LatePaymentReceived,
    MismatchedPaymentReceived,
)
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

log = structlog.get_logger("service.application")

MISMATCH_CREDITED = "amount_mismatch_credited"
"""A payment's outcome when its amount is not the invoice's: kept as the buyer's money."""


@dataclass(frozen=True, slots=True)
class RecordPayment(Command[str]):
    """Apply a gateway's payment: ``paid``, ``credited`` (late: the buyer's money),
    ``amount_mismatch_credited`` (not the invoice's amount: the buyer's money, the invoice still
    PENDING) or ``duplicate``."""

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

    expected = 0  # the invoice's total, for the warning about a payment of another amount

    def ids(*types: str) -> list[str]:
        return [payment_event_id(payment.payment_id, kind) for kind in types]

    async def attempt(tx: Attempt) -> str:
        nonlocal expected
        state = await tx.load(invoice_stream(invoice), evolve)
        if state is None:
            raise errors.InvoiceNotFound()
        expected = state.created.total_amount
        events = decide_payment(state, payment, app.clock())
        if not events:
            return "duplicate"
        await _refuse_payment_of_another_invoice(app, invoice, payment.payment_id)
        kinds = [type(event).__name__ for event in events]
        tx.append(invoice_stream(invoice), events, metadata, event_ids=ids(*kinds), once=True)
        username = state.created.username
        credit, outcome = _credit(username, events)
        if credit is None:
            return outcome
        await tx.load(balance_stream(username), evolve_balance)
        tx.append(balance_stream(username), [credit], metadata, event_ids=ids("BalanceCredited"))
        return outcome

    # Patient: the gateway's money is recorded whatever the contention (see ``handling``).
    outcome = await app.run(attempt, streams=[invoice_stream(invoice)], patient=True)
    if outcome == MISMATCH_CREDITED:
        # Not an error to the gateway (it is answered 200, or it would retry forever), but a
        # buyer paid the wrong amount: someone should look.
        log.warning(
            "paid amount differs from the invoice: credited to the buyer, invoice still PENDING",
            invoice=invoice,
            payment_id=payment.payment_id,
            amount=payment.amount,
            expected=expected,
        )
    return outcome


def _credit(username: str, events: list[Event]) -> tuple[BalanceCredited | None, str]:
    """The buyer's credit a payment's events call for, if any, and the callback's outcome:
    ``paid``, ``credited`` (late) or ``amount_mismatch_credited`` (not the invoice's amount)."""
    for event in events:
        if isinstance(event, LatePaymentReceived):
            return credit_late_payment(username, event), "credited"
        if isinstance(event, MismatchedPaymentReceived):
            return credit_mismatched_payment(username, event), MISMATCH_CREDITED
    return None, "paid"


async def _refuse_payment_of_another_invoice(
    app: Application, invoice: str, payment_id: str
) -> None:
    """A gateway payment pays one invoice: the same payment id for another is refused."""
    kinds = ("InvoicePaid", "LatePaymentReceived", "MismatchedPaymentReceived")
    ids = [payment_event_id(payment_id, kind) for kind in kinds]
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
