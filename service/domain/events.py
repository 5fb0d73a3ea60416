"""The invoice domain's events: what happened, in the past tense, as frozen dataclasses.

Each event belongs to one kind of stream: an invoice (``invoice-<id>``), a buyer's balance
(``balance-<username>``), a reservation of a marketplace invoice number
(``onmarket-<invoice_onmarket>``), an idempotency key, or a user account (``streams``).
``EVENT_TYPES`` maps the type name stored in the log to its class; ``service.records`` turns
events into the store's records and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.webhook_events import WEBHOOK_EVENT_TYPES, WebhookEvent


@dataclass(frozen=True, slots=True)
class TransactionLine:
    """One store's part of an invoice, as the buyer checked it out."""

    invoice_onmarket: str
    seller_username: str
    amount: int
    freight_charge: int
    insurance_amount: int
    commission_onmarket: int
    waybill_number: str | None

    @property
    def total(self) -> int:
        """What the buyer pays for this store: amount, freight and insurance."""
        return self.amount + self.freight_charge + self.insurance_amount


# -- invoice streams --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceCreated:
    invoice: str
    username: str
    service: str
    source: str
    total_amount: int
    transactions: tuple[TransactionLine, ...]
    gateway_reference: str  # the xendit_invoice of the API
    payment_url: str | None
    qr_string: str | None
    created_at: datetime
    expired_at: datetime


@dataclass(frozen=True, slots=True)
class InvoicePaid:
    invoice: str
    amount: int
    source: str
    payment_id: str
    method: str
    channel: str
    paid_at: datetime
    payment_aliases: tuple[str, ...] = ()  # other ids the gateway knows this payment by


@dataclass(frozen=True, slots=True)
class InvoiceMarkedPaid:
    """A PENDING invoice paid out of band (a bank transfer outside the gateway), marked PAID by
    a platform account of its service or an admin: as if the gateway had paid it, through the
    ``MANUAL`` channel. Its own event rather than an InvoicePaid, so that it names no gateway
    payment (a gateway payment arriving later is then a late payment, never a duplicate) and
    keeps the out-of-band payment's reference and the reason given."""

    invoice: str
    amount: int
    source: str
    channel: str  # always MANUAL: the API's name for an out-of-band payment
    reference: str  # the out-of-band payment's own reference (a bank transfer's, say)
    reason: str
    marked_by: str
    paid_at: datetime


@dataclass(frozen=True, slots=True)
class InvoiceExpired:
    invoice: str
    expired_at: datetime


@dataclass(frozen=True, slots=True)
class InvoiceCanceled:
    invoice: str
    canceled_by: str
    canceled_at: datetime


@dataclass(frozen=True, slots=True)
class RefundRequested:
    invoice: str
    invoice_onmarket: str
    amount: int
    requested_by: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class RefundCompleted:
    invoice: str
    invoice_onmarket: str
    amount: int
    completed_at: datetime


@dataclass(frozen=True, slots=True)
class TransactionCompleted:
    invoice: str
    invoice_onmarket: str
    service: str
    seller_username: str
    seller_amount: int
    commission: int
    insurance: int
    completed_by: str
    completed_at: datetime


@dataclass(frozen=True, slots=True)
class LatePaymentReceived:
    """Money the invoice could no longer take (it had expired, was canceled, or was already
    paid): recorded, and credited to the buyer's balance, never silently lost."""

    invoice: str
    invoice_status: str
    amount: int
    payment_id: str
    method: str
    channel: str
    paid_at: datetime
    received_at: datetime
    payment_aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MismatchedPaymentReceived:
    """A payment of a PENDING invoice whose amount is not the invoice's total: it does not pay
    the invoice (still PENDING), but it is real money, credited to the buyer's balance."""

    invoice: str
    amount: int
    expected: int
    payment_id: str
    method: str
    channel: str
    paid_at: datetime
    received_at: datetime


# -- balance streams ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceToppedUp:
    username: str
    amount: int
    topped_up_by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class BalanceDebited:
    """The buyer paid an invoice from the balance: the money went to the invoice's escrow."""

    username: str
    amount: int
    invoice: str
    at: datetime


@dataclass(frozen=True, slots=True)
class BalanceCredited:
    """Money came back to the buyer: a refund from escrow, or a late or mismatched payment from
    the gateway."""

    username: str
    amount: int
    invoice: str
    reason: str  # "refund" | "late_payment" | "amount_mismatch"
    from_account: str
    at: datetime


# -- other streams -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OnmarketInvoiceReserved:
    """A marketplace invoice number was taken by an invoice; it is free again once that
    invoice is no longer PENDING or PAID."""

    invoice_onmarket: str
    invoice: str


@dataclass(frozen=True, slots=True)
class IdempotentRequestRecorded:
    username: str
    key: str
    request_hash: str
    status: int
    response: dict[str, Any]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class UserRegistered:
    username: str
    role: str
    platform: str | None
    password_hash: str
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class UserDisabled:
    """The account can no longer log in, and its tokens and Basic credentials are refused."""

    username: str
    disabled_by: str
    disabled_at: datetime


@dataclass(frozen=True, slots=True)
class UserEnabled:
    """A disabled account may log in again (its old tokens too, until they expire)."""

    username: str
    enabled_by: str
    enabled_at: datetime


Event = (
    InvoiceCreated
    | InvoicePaid
    | InvoiceMarkedPaid
    | InvoiceExpired
    | InvoiceCanceled
    | RefundRequested
    | RefundCompleted
    | TransactionCompleted
    | LatePaymentReceived
    | MismatchedPaymentReceived
    | BalanceToppedUp
    | BalanceDebited
    | BalanceCredited
    | OnmarketInvoiceReserved
    | IdempotentRequestRecorded
    | UserRegistered
    | UserDisabled
    | UserEnabled
    | WebhookEvent
)

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        InvoiceCreated,
        InvoicePaid,
        InvoiceMarkedPaid,
        InvoiceExpired,
        InvoiceCanceled,
        RefundRequested,
        RefundCompleted,
        TransactionCompleted,
        LatePaymentReceived,
        MismatchedPaymentReceived,
        BalanceToppedUp,
        BalanceDebited,
        BalanceCredited,
        OnmarketInvoiceReserved,
        IdempotentRequestRecorded,
        UserRegistered,
        UserDisabled,
        UserEnabled,
    )
} | WEBHOOK_EVENT_TYPES
