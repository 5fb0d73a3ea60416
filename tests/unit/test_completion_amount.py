"""Unit tests for the stated amount of a completion (a batch item's ``amount``): it must be
what the transaction pays out in all, amount + freight + insurance, or nothing is decided."""

from __future__ import annotations

import pytest

from service.domain import errors
from service.domain.events import TransactionCompleted
from service.domain.invoice import PAID, decide_completion
from tests.unit.test_invoice import DURING, HISTORY, LINE_A, PLATFORM_USER, given


def complete_stating(amount: int | None) -> list[object]:
    state = given(*HISTORY[PAID])
    return list(
        decide_completion(
            state, invoice_onmarket="OMK-001", by=PLATFORM_USER, now=DURING, amount=amount
        )
    )


@pytest.mark.parametrize("amount", [None, LINE_A.total])
def test_a_completion_stating_the_transactions_total_or_nothing_is_decided(
    amount: int | None,
) -> None:
    """No amount, or amount + freight + insurance: the transaction is completed as ever."""
    events = complete_stating(amount)
    assert len(events) == 1
    assert isinstance(events[0], TransactionCompleted)


@pytest.mark.parametrize(
    "amount",
    [
        0,
        LINE_A.total - 1,
        LINE_A.total + 1,
        LINE_A.amount,  # the goods alone
        LINE_A.amount + LINE_A.freight_charge,  # without the insurance
        LINE_A.amount + LINE_A.freight_charge - LINE_A.commission_onmarket,  # the seller's part
    ],
)
def test_a_completion_stating_another_amount_is_refused_as_a_mismatch(amount: int) -> None:
    """Any other amount: AMOUNT_MISMATCH, and nothing is decided."""
    with pytest.raises(errors.AmountMismatch) as refused:
        complete_stating(amount)
    assert refused.value.code == "AMOUNT_MISMATCH"


def test_a_refused_state_is_refused_as_before_whatever_the_amount() -> None:
    """The state's refusal comes first: a completed transaction is ALREADY COMPLETED even with a
    wrong amount (a retried batch item reads as done, not as a mismatch)."""
    state = given(*HISTORY["COMPLETED"])
    with pytest.raises(errors.AlreadyCompleted):
        decide_completion(state, invoice_onmarket="OMK-001", by=PLATFORM_USER, now=DURING, amount=1)
