"""A buyer's balance: the write model that makes an overdraft impossible.

Every change to a buyer's money is an event on the buyer's own stream, appended with the
stream's expected version, so two BALANCE checkouts racing for the same money cannot both see
enough of it: one of them finds the stream moved on and decides again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.domain import errors
from service.domain.events import (
    BalanceCredited,
    BalanceDebited,
    BalanceToppedUp,
    Event,
    LatePaymentReceived,
    MismatchedPaymentReceived,
    RefundCompleted,
)
from service.domain.ledger import GATEWAY_ACCOUNT, escrow


@dataclass(frozen=True, slots=True)
class Balance:
    username: str
    amount: int


def evolve_balance(state: Balance | None, event: Event) -> Balance:
    if isinstance(event, BalanceToppedUp | BalanceCredited):
        current = state or Balance(event.username, 0)
        return Balance(current.username, current.amount + event.amount)
    if isinstance(event, BalanceDebited):
        current = state or Balance(event.username, 0)
        return Balance(current.username, current.amount - event.amount)
    raise ValueError(f"{type(event).__name__} is not a balance event")


def decide_debit(
    state: Balance | None, username: str, amount: int, invoice: str, now: datetime
) -> BalanceDebited:
    """Pay ``amount`` towards ``invoice`` if the balance covers it."""
    if amount <= 0:  # the API refuses such amounts; reaching here is a bug
        raise ValueError(f"a debit must be positive, got {amount}")
    available = state.amount if state else 0
    if amount > available:
        raise errors.InsufficientBalance()
    return BalanceDebited(username, amount, invoice, now)


def credit_late_payment(username: str, late: LatePaymentReceived) -> BalanceCredited:
    """A payment the invoice could no longer take is the buyer's money: credit it."""
    return BalanceCredited(
        username, late.amount, late.invoice, "late_payment", GATEWAY_ACCOUNT, late.received_at
    )


def credit_mismatched_payment(
    username: str, mismatched: MismatchedPaymentReceived
) -> BalanceCredited:
    """A payment that did not pay the invoice (not its amount) is the buyer's money: credit it."""
    return BalanceCredited(
        username,
        mismatched.amount,
        mismatched.invoice,
        "amount_mismatch",
        GATEWAY_ACCOUNT,
        mismatched.received_at,
    )


def credit_refund(username: str, refund: RefundCompleted) -> BalanceCredited:
    """A completed refund moves the transaction's money from the invoice's escrow back."""
    return BalanceCredited(
        username,
        refund.amount,
        refund.invoice,
        "refund",
        escrow(refund.invoice),
        refund.completed_at,
    )
