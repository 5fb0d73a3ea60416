"""The invoice aggregate: its state, how events change it, and what each command decides.

Pure: no I/O and no clock; the time comes in with each command. ``evolve`` folds one event into
the state; the ``decide_*`` functions return the events a command produces or raise a
``DomainError``. The same ``evolve`` builds the invoice view, so the API and the decisions can
never disagree about what the log says.

Time is the truth for expiry: an invoice still PENDING at or after ``expired_at`` is expired
whether or not its ``InvoiceExpired`` has been written yet, so a payment arriving then is late.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain import errors
from service.domain.events import (
    Event,
    InvoiceCanceled,
    InvoiceCreated,
    InvoiceExpired,
    InvoiceMarkedPaid,
    InvoicePaid,
    LatePaymentReceived,
    MismatchedPaymentReceived,
    RefundCompleted,
    RefundRequested,
    TransactionCompleted,
    TransactionLine,
)
from service.domain.statuses import CANCELED as CANCELED
from service.domain.statuses import COMPLETED as COMPLETED
from service.domain.statuses import EXPIRED as EXPIRED
from service.domain.statuses import HOLDING
from service.domain.statuses import PAID as PAID
from service.domain.statuses import PENDING as PENDING
from service.domain.statuses import REFUND_IN_PROCESS as REFUND_IN_PROCESS
from service.domain.statuses import REFUNDED as REFUNDED


@dataclass(frozen=True, slots=True)
class Transaction:
    line: TransactionLine
    status: str


@dataclass(frozen=True, slots=True)
class Invoice:
    created: InvoiceCreated
    status: str
    transactions: tuple[Transaction, ...]
    payment_ids: tuple[str, ...]  # every gateway payment seen, to ignore a repeated callback
    updated_at: datetime

    @property
    def invoice(self) -> str:
        return self.created.invoice

    def status_at(self, now: datetime) -> str:
        """The status as the API shows it: never PENDING once ``expired_at`` has passed."""
        if self.status == PENDING and now >= self.created.expired_at:
            return EXPIRED
        return self.status

    def transaction_status_at(self, transaction: Transaction, now: datetime) -> str:
        if transaction.status == PENDING and now >= self.created.expired_at:
            return EXPIRED
        return transaction.status

    def transaction(self, invoice_onmarket: str | None) -> Transaction:
        """The transaction named, or the only one when none is named."""
        if invoice_onmarket is None:
            if len(self.transactions) == 1:
                return self.transactions[0]
            raise errors.TransactionRequired(
                errors={"invoice_onmarket": ["Required when the invoice has several transactions."]}
            )
        for transaction in self.transactions:
            if transaction.line.invoice_onmarket == invoice_onmarket:
                return transaction
        raise errors.TransactionNotFound()

    def holds_reservation(self, now: datetime) -> bool:
        """Whether its marketplace invoice numbers are still taken (PENDING or PAID)."""
        return self.status_at(now) in HOLDING


# -- evolve -----------------------------------------------------------------------------------


def evolve(state: Invoice | None, event: Event) -> Invoice:
    """The invoice after ``event``."""
    # A replay folds every event of the log through here: the fold is found by the event's
    # class in one lookup, and states are built with the constructor (dataclasses.replace
    # inspects the class's fields on each call).
    if type(event) is InvoiceCreated:
        transactions = tuple([Transaction(line, PENDING) for line in event.transactions])
        return Invoice(event, PENDING, transactions, (), event.created_at)
    if state is None:
        raise ValueError(f"{type(event).__name__} before InvoiceCreated")
    fold = _FOLDS.get(type(event))
    return state if fold is None else fold(state, event)


def _paid(state: Invoice, event: InvoicePaid) -> Invoice:
    ids = (*state.payment_ids, event.payment_id, *event.payment_aliases)
    return _with_all(state, PAID, event.paid_at, ids)


def _marked_paid(state: Invoice, event: InvoiceMarkedPaid) -> Invoice:
    # No gateway payment id: one arriving later must be seen as a late payment, not a repeat.
    return _with_all(state, PAID, event.paid_at, state.payment_ids)


def _expired(state: Invoice, event: InvoiceExpired) -> Invoice:
    return _with_all(state, EXPIRED, event.expired_at, state.payment_ids)


def _canceled(state: Invoice, event: InvoiceCanceled) -> Invoice:
    return _with_all(state, CANCELED, event.canceled_at, state.payment_ids)


def _late_payment(state: Invoice, event: LatePaymentReceived) -> Invoice:
    ids = (*state.payment_ids, event.payment_id, *event.payment_aliases)
    return Invoice(state.created, state.status, state.transactions, ids, event.received_at)


def _mismatched_payment(state: Invoice, event: MismatchedPaymentReceived) -> Invoice:
    # Only the payment's own id is remembered: the gateway invoice's id (an alias) must stay
    # free, so that the right amount paid later under it still pays the invoice.
    ids = (*state.payment_ids, event.payment_id)
    return Invoice(state.created, state.status, state.transactions, ids, event.received_at)


def _refund_requested(state: Invoice, event: RefundRequested) -> Invoice:
    return _with_one(state, event.invoice_onmarket, REFUND_IN_PROCESS, event.requested_at)


def _refund_completed(state: Invoice, event: RefundCompleted) -> Invoice:
    return _with_one(state, event.invoice_onmarket, REFUNDED, event.completed_at)


def _completed(state: Invoice, event: TransactionCompleted) -> Invoice:
    return _with_one(state, event.invoice_onmarket, COMPLETED, event.completed_at)


# Events of other kinds leave the state as it is.
_FOLDS: dict[type, Callable[[Invoice, Any], Invoice]] = {
    InvoicePaid: _paid,
    InvoiceMarkedPaid: _marked_paid,
    InvoiceExpired: _expired,
    InvoiceCanceled: _canceled,
    LatePaymentReceived: _late_payment,
    MismatchedPaymentReceived: _mismatched_payment,
    RefundRequested: _refund_requested,
    RefundCompleted: _refund_completed,
    TransactionCompleted: _completed,
}
_SETTLED = frozenset({COMPLETED, REFUNDED})


def _with_all(state: Invoice, status: str, at: datetime, payment_ids: tuple[str, ...]) -> Invoice:
    """Invoice and every transaction in ``status``."""
    transactions = tuple([Transaction(t.line, status) for t in state.transactions])
    return Invoice(state.created, status, transactions, payment_ids, at)


def _with_one(state: Invoice, invoice_onmarket: str, status: str, at: datetime) -> Invoice:
    """One transaction in ``status``; a PAID invoice is settled once every transaction is
    completed or refunded (COMPLETED if any was completed, else REFUNDED)."""
    transactions = tuple(
        [
            Transaction(t.line, status) if t.line.invoice_onmarket == invoice_onmarket else t
            for t in state.transactions
        ]
    )
    statuses = {t.status for t in transactions}
    invoice_status = state.status
    if statuses <= _SETTLED:
        invoice_status = COMPLETED if COMPLETED in statuses else REFUNDED
    return Invoice(state.created, invoice_status, transactions, state.payment_ids, at)


# -- decide -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payment:
    """What the gateway (or the buyer's balance) reports as paid."""

    payment_id: str
    amount: int
    method: str
    channel: str
    paid_at: datetime
    aliases: tuple[str, ...] = ()
    """Other ids the gateway may report the same payment by (e.g. the gateway invoice's id)."""


def decide_payment(state: Invoice, payment: Payment, now: datetime) -> list[Event]:
    """Pay a PENDING invoice; keep a payment of another amount, or a late one, as the buyer's
    money; ignore a duplicate (a payment any of whose ids was recorded already)."""
    if {payment.payment_id, *payment.aliases} & set(state.payment_ids):
        return []
    expected = state.created.total_amount
    if payment.amount != expected and payment.amount <= 0:
        # No money to keep (or its amount unknown): refused, so the gateway asks again.
        raise errors.PaidAmountMismatch(
            f"paid {payment.amount}, invoice {state.invoice} is {expected}"
        )
    pending = state.status_at(now) == PENDING
    if pending and payment.amount != expected:
        return [
            MismatchedPaymentReceived(
                state.invoice,
                payment.amount,
                expected,
                payment.payment_id,
                payment.method,
                payment.channel,
                payment.paid_at,
                now,
            )
        ]
    if pending:
        return [
            InvoicePaid(
                state.invoice,
                payment.amount,
                state.created.source,
                payment.payment_id,
                payment.method,
                payment.channel,
                payment.paid_at,
                payment.aliases,
            )
        ]
    late: list[Event] = decide_expiry(state, now)
    late.append(
        LatePaymentReceived(
            state.invoice,
            state.status_at(now),
            payment.amount,
            payment.payment_id,
            payment.method,
            payment.channel,
            payment.paid_at,
            now,
            payment.aliases,
        )
    )
    return late


def decide_expiry(state: Invoice, now: datetime) -> list[Event]:
    """Record the expiry of a PENDING invoice whose time has passed; nothing otherwise."""
    if state.status == PENDING and now >= state.created.expired_at:
        return [InvoiceExpired(state.invoice, state.created.expired_at)]
    return []


def decide_gateway_expiry(state: Invoice, now: datetime) -> list[Event]:
    """The gateway says the payment can no longer be made: expire a PENDING invoice now (or at
    its own ``expired_at``, if that came first); nothing for any other."""
    if state.status != PENDING:
        return []
    return [InvoiceExpired(state.invoice, min(now, state.created.expired_at))]


def decide_cancel(
    state: Invoice,
    *,
    invoice_onmarket: str | None,
    buyer_username: str | None,
    by: str,
    now: datetime,
) -> list[Event]:
    """Cancel a PENDING invoice whole, or ask for one PAID transaction's refund."""
    status = state.status_at(now)
    if status == PENDING:
        # A request naming a transaction or buyer that is not this invoice's is a mistake, and
        # must not cancel the whole invoice.
        if invoice_onmarket:
            state.transaction(invoice_onmarket)
        if buyer_username and buyer_username != state.created.username:
            raise errors.BuyerMismatch(
                errors={"buyer_username": ["Not the buyer of this invoice."]}
            )
        return [InvoiceCanceled(state.invoice, by, now)]
    if status == EXPIRED:
        raise errors.ExpiredInvoice()
    if status == CANCELED:
        raise errors.AlreadyCanceled()
    missing = {
        name: ["Required to refund a paid invoice."]
        for name, value in (
            ("invoice_onmarket", invoice_onmarket),
            ("buyer_username", buyer_username),
        )
        if not value
    }
    if missing:
        raise errors.TransactionRequired(errors=missing)
    if buyer_username != state.created.username:
        raise errors.BuyerMismatch(errors={"buyer_username": ["Not the buyer of this invoice."]})
    transaction = state.transaction(invoice_onmarket)
    _refuse_unless_paid(transaction.status)
    return [
        RefundRequested(
            state.invoice, transaction.line.invoice_onmarket, transaction.line.total, by, now
        )
    ]


def decide_completion(
    state: Invoice,
    *,
    invoice_onmarket: str | None,
    by: str,
    now: datetime,
    amount: int | None = None,
) -> list[Event]:
    """Complete one PAID transaction: the seller, commission and insurance are paid out.

    ``amount``, when the platform states it, must be what the transaction pays out in all
    (amount + freight + insurance): a platform whose books disagree with ours is refused
    rather than paid out on our numbers."""
    status = state.status_at(now)
    if status == EXPIRED:
        raise errors.ExpiredInvoice()
    if status == CANCELED:
        raise errors.AlreadyCanceled()
    transaction = state.transaction(invoice_onmarket)
    if transaction.status == PENDING:
        raise errors.NotPaid()
    _refuse_unless_paid(transaction.status)
    line = transaction.line
    if amount is not None and amount != line.total:
        raise errors.AmountMismatch(f"The transaction pays out {line.total}, not {amount}.")
    return [
        TransactionCompleted(
            state.invoice,
            line.invoice_onmarket,
            state.created.service,
            line.seller_username,
            line.amount + line.freight_charge - line.commission_onmarket,
            line.commission_onmarket,
            line.insurance_amount,
            by,
            now,
        )
    ]


def decide_refund_completion(
    state: Invoice, invoice_onmarket: str, now: datetime
) -> list[RefundCompleted]:
    """Finish a requested refund; nothing if it is already finished (a worker's retry)."""
    transaction = state.transaction(invoice_onmarket)
    if transaction.status != REFUND_IN_PROCESS:
        return []
    return [RefundCompleted(state.invoice, invoice_onmarket, transaction.line.total, now)]


def _refuse_unless_paid(status: str) -> None:
    refusals: dict[str, type[errors.DomainError]] = {
        REFUND_IN_PROCESS: errors.RefundInProcess,
        REFUNDED: errors.AlreadyRefunded,
        COMPLETED: errors.AlreadyCompleted,
        CANCELED: errors.AlreadyCanceled,
        EXPIRED: errors.ExpiredInvoice,
        PENDING: errors.NotPaid,
    }
    if status in refusals:
        raise refusals[status]()
