"""The checkout decision: every invariant of a new invoice, and the events that create it.

Pure, like the invoice aggregate: the state it decides on (who holds each marketplace invoice
number, the buyer's balance), the new invoice's id and the time come in as arguments. A refused
checkout raises the ``DomainError`` naming the broken invariant; an accepted one returns a
``CheckoutDecision`` holding the reservations, the BALANCE debit and, once it is told where the
buyer pays, the invoice's own events. That last step is separate because a gateway payment is
made between the two: only for a checkout that is accepted, and before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain import errors
from service.domain.accounts import Account
from service.domain.balance import Balance, decide_debit
from service.domain.events import (
    BalanceDebited,
    Event,
    InvoiceCreated,
    InvoicePaid,
    OnmarketInvoiceReserved,
    TransactionLine,
)
from service.domain.invoice import Invoice
from service.domain.services import BALANCE, ONDELIVERY
from service.domain.statuses import PAID, PENDING


@dataclass(frozen=True, slots=True)
class CheckoutOrder:
    """What a buyer asks for: one invoice for one or more stores' transactions."""

    username: str
    service: str
    source: str
    total_amount: int
    lines: tuple[TransactionLine, ...]


@dataclass(frozen=True, slots=True)
class PaymentHandle:
    """Where the buyer pays: the gateway's reference and its page or QR code."""

    reference: str
    payment_url: str | None = None
    qr_string: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutDecision:
    """An accepted checkout: what it appends to the reservation and balance streams, and the
    invoice's own events once the payment handle is known."""

    order: CheckoutOrder
    invoice: str
    at: datetime
    expires_at: datetime
    reservations: tuple[OnmarketInvoiceReserved, ...]
    debit: BalanceDebited | None

    @property
    def needs_gateway(self) -> bool:
        """Whether the buyer pays at a gateway (else from the balance, at once)."""
        return self.order.source != BALANCE

    @property
    def status(self) -> str:
        """The invoice's status once written: a BALANCE checkout is paid at once."""
        return PENDING if self.needs_gateway else PAID

    def invoice_events(self, payment: PaymentHandle | None = None) -> list[Event]:
        """``InvoiceCreated`` (and the BALANCE payment); ``payment`` is the gateway's handle,
        None for a BALANCE checkout, whose reference is its own."""
        if payment is None:
            if self.needs_gateway:
                raise ValueError("a gateway checkout needs the gateway's payment handle")
            payment = PaymentHandle(balance_reference(self.invoice))
        order = self.order
        created = InvoiceCreated(
            self.invoice,
            order.username,
            order.service,
            order.source,
            order.total_amount,
            order.lines,
            payment.reference,
            payment.payment_url,
            payment.qr_string,
            self.at,
            self.expires_at,
        )
        if self.needs_gateway:
            return [created]
        paid = InvoicePaid(
            self.invoice, order.total_amount, BALANCE, payment.reference, BALANCE, BALANCE, self.at
        )
        return [created, paid]


def balance_reference(invoice: str) -> str:
    """A BALANCE checkout's payment reference (and payment id): no gateway names it."""
    return f"balance-{invoice}"


def decide_checkout(
    order: CheckoutOrder,
    *,
    invoice: str,
    holders: Mapping[str, Invoice | None],
    sellers: Mapping[str, Account | None],
    balance: Balance | None,
    now: datetime,
    expires_at: datetime,
) -> CheckoutDecision:
    """Accept ``order`` as invoice ``invoice``, or refuse it with the first broken invariant.

    ``holders`` gives, for each marketplace invoice number that was ever reserved, the state of
    the invoice that reserved it last (None if it cannot be read); ``balance`` is the buyer's,
    read for a BALANCE checkout; ``sellers`` the account of each line's seller (None: no such
    account). The invariants, in the order the API reports them: each commission at most its
    amount; the total the sum of the lines and more than 0; each number once in the order;
    waybill numbers only for ONDELIVERY; each seller an existing, enabled buyer-role account; no
    number held by another invoice still PENDING or PAID; a BALANCE checkout covered by the
    balance.
    """
    _refuse_malformed(order)
    _refuse_unknown_sellers(order.lines, sellers)
    _refuse_taken_numbers(order.lines, holders, now)
    debit = None
    if order.source == BALANCE:
        debit = decide_debit(balance, order.username, order.total_amount, invoice, now)
    reservations = tuple(
        [OnmarketInvoiceReserved(line.invoice_onmarket, invoice) for line in order.lines]
    )
    return CheckoutDecision(order, invoice, now, expires_at, reservations, debit)


def _refuse_malformed(order: CheckoutOrder) -> None:
    """The order's own invariants, with the ``errors`` the API's schema gives for them."""
    over = {
        str(index): {"commission_onmarket": ["Must not exceed the transaction's amount."]}
        for index, line in enumerate(order.lines)
        if line.commission_onmarket > line.amount
    }
    if over:
        raise errors.CommissionAboveAmount(errors={"transaction": over})
    total = sum(line.total for line in order.lines)
    if order.total_amount != total:
        message = f"Must equal the sum of amount + freight_charge + insurance_amount ({total})."
        raise errors.TotalMismatch(errors={"total_amount": [message]})
    if order.total_amount <= 0:
        raise errors.TotalNotPositive(errors={"total_amount": ["Must be more than 0."]})
    seen: set[str] = set()
    for index, line in enumerate(order.lines):
        if line.invoice_onmarket in seen:
            repeated = {str(index): {"invoice_onmarket": ["Appears twice in this checkout."]}}
            raise errors.InvoiceOnmarketRepeated(errors={"transaction": repeated})
        seen.add(line.invoice_onmarket)
    if order.service != ONDELIVERY and any(line.waybill_number for line in order.lines):
        raise errors.WaybillNotAllowed(
            errors={"transaction": ["Only ONDELIVERY checkouts carry waybill numbers."]}
        )


def _refuse_unknown_sellers(
    lines: tuple[TransactionLine, ...], sellers: Mapping[str, Account | None]
) -> None:
    """Refuse a seller who is not an existing, enabled buyer-role account, naming each line: a
    seller's payout must go to an account someone can log in to and withdraw from."""
    unknown: dict[str, Any] = {}
    for index, line in enumerate(lines):
        account = sellers.get(line.seller_username)
        if account is None or not account.enabled or account.role != "buyer":
            unknown[str(index)] = {"seller_username": ["No enabled buyer account of this name."]}
    if unknown:
        raise errors.SellerNotFound(errors={"transaction": unknown})


def _refuse_taken_numbers(
    lines: tuple[TransactionLine, ...], holders: Mapping[str, Invoice | None], now: datetime
) -> None:
    """Refuse numbers another live invoice holds, naming each line that has one."""
    taken: dict[str, Any] = {}
    for index, line in enumerate(lines):
        holder = holders.get(line.invoice_onmarket)
        if holder is not None and holder.holds_reservation(now):
            taken[str(index)] = {
                "invoice_onmarket": [f"Already part of invoice {holder.invoice}, PENDING or PAID."]
            }
    if taken:
        raise errors.InvoiceOnmarketInUse(errors={"transaction": taken})
