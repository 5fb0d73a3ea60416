"""Double-entry postings: which accounts each event moves money between.

Every event's postings sum to zero on their own, so the ledger balances after every event, not
only after a transaction. Each movement is posted by exactly one event: movements of a buyer's
money by the balance stream's events (which name the other account), the rest by the invoice's.

Accounts: ``buyer:<user>``, ``seller:<user>``, ``escrow:<invoice>``,
``platform:<SERVICE>:commission``, ``platform:<SERVICE>:insurance``, ``gateway:<name>``,
``external:topup``, ``external:manual``. A positive amount is money the account holds.
"""

from __future__ import annotations

from service.domain.events import (
    BalanceCredited,
    BalanceDebited,
    BalanceToppedUp,
    Event,
    InvoiceMarkedPaid,
    InvoicePaid,
    TransactionCompleted,
)
from service.domain.services import BALANCE

GATEWAY_ACCOUNT = "gateway:xendit"
TOPUP_ACCOUNT = "external:topup"
MANUAL_ACCOUNT = "external:manual"  # money paid out of band (InvoiceMarkedPaid)

Posting = tuple[str, int]


def buyer(username: str) -> str:
    return f"buyer:{username}"


def seller(username: str) -> str:
    return f"seller:{username}"


def escrow(invoice: str) -> str:
    return f"escrow:{invoice}"


def postings(event: Event) -> list[Posting]:
    """The ledger lines of ``event``; empty when it moves no money."""
    if isinstance(event, BalanceToppedUp):
        return _move(TOPUP_ACCOUNT, buyer(event.username), event.amount)
    if isinstance(event, BalanceDebited):
        return _move(buyer(event.username), escrow(event.invoice), event.amount)
    if isinstance(event, BalanceCredited):
        return _move(event.from_account, buyer(event.username), event.amount)
    if isinstance(event, InvoicePaid) and event.source != BALANCE:
        # A BALANCE payment's movement is posted by its BalanceDebited.
        return _move(GATEWAY_ACCOUNT, escrow(event.invoice), event.amount)
    if isinstance(event, InvoiceMarkedPaid):
        return _move(MANUAL_ACCOUNT, escrow(event.invoice), event.amount)
    if isinstance(event, TransactionCompleted):
        total = event.seller_amount + event.commission + event.insurance
        lines = [
            (escrow(event.invoice), -total),
            (seller(event.seller_username), event.seller_amount),
            (f"platform:{event.service}:commission", event.commission),
            (f"platform:{event.service}:insurance", event.insurance),
        ]
        return [line for line in lines if line[1]]
    # RefundCompleted, LatePaymentReceived and MismatchedPaymentReceived move money to the
    # buyer: the BalanceCredited appended with each of them posts it.
    return []


def _move(source: str, destination: str, amount: int) -> list[Posting]:
    return [(source, -amount), (destination, amount)] if amount else []
