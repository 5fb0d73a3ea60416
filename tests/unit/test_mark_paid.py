"""Unit tests for marking an invoice paid out of band (``decide_mark_paid``) and what follows.

Given events, when a mark-paid at an explicit ``now``, then the InvoiceMarkedPaid it returns or
the ``DomainError`` it raises; then what the marked invoice does next (a gateway payment is late,
done and refund work) and where the money is posted. Pure: no clock, file or network.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from service.domain import errors
from service.domain.events import Event, InvoiceMarkedPaid, LatePaymentReceived
from service.domain.invoice import (
    CANCELED,
    COMPLETED,
    EXPIRED,
    PAID,
    REFUND_IN_PROCESS,
    REFUNDED,
    decide_cancel,
    decide_completion,
    decide_payment,
)
from service.domain.ledger import MANUAL_ACCOUNT, escrow, postings
from service.domain.mark_paid import MANUAL, decide_mark_paid
from tests.unit.test_invoice import (
    BUYER,
    DURING,
    EXPIRED_AT,
    HISTORY,
    INVOICE,
    JUST_BEFORE_EXPIRY,
    LINE_A,
    LINE_B,
    PLATFORM_USER,
    TOTAL_AB,
    created,
    given,
    paid,
    payment,
)

MARKED_AT = DURING + timedelta(minutes=1)


def marked(at: datetime = MARKED_AT) -> InvoiceMarkedPaid:
    return InvoiceMarkedPaid(
        INVOICE, TOTAL_AB, "XENDIT", MANUAL, "BCA-1", "bank transfer", PLATFORM_USER, at
    )


def mark(*events: Event, now: datetime = MARKED_AT) -> list[InvoiceMarkedPaid]:
    return decide_mark_paid(
        given(*events), reference="BCA-1", reason="bank transfer", by=PLATFORM_USER, now=now
    )


# -- the decision, in every state ---------------------------------------------------------------


@pytest.mark.parametrize("now", [DURING, JUST_BEFORE_EXPIRY])
def test_a_pending_invoice_is_marked_paid_for_its_total(now: datetime) -> None:
    assert mark(created(LINE_A, LINE_B), now=now) == [marked(now)]


@pytest.mark.parametrize(
    ("status", "refusal"),
    [
        (PAID, errors.AlreadyPaid),
        (REFUND_IN_PROCESS, errors.AlreadyPaid),
        (REFUNDED, errors.AlreadyPaid),
        (COMPLETED, errors.AlreadyPaid),
        (CANCELED, errors.AlreadyCanceled),
        (EXPIRED, errors.ExpiredInvoice),
    ],
)
def test_every_other_state_is_refused_with_its_own_answer(
    status: str, refusal: type[errors.DomainError]
) -> None:
    with pytest.raises(refusal):
        mark(*HISTORY[status])


def test_already_paid_has_its_documented_message_and_code() -> None:
    with pytest.raises(errors.AlreadyPaid) as raised:
        mark(created(), paid())
    assert (raised.value.message, raised.value.code) == (
        "INVOICE IS ALREADY PAID",
        "INVOICE_ALREADY_PAID",
    )


def test_a_marked_invoice_cannot_be_marked_again() -> None:
    with pytest.raises(errors.AlreadyPaid):
        mark(created(LINE_A, LINE_B), marked())


@pytest.mark.parametrize("now", [EXPIRED_AT, EXPIRED_AT + timedelta(days=1)])
def test_past_expired_at_it_is_expired_even_before_the_expiry_is_recorded(now: datetime) -> None:
    with pytest.raises(errors.ExpiredInvoice):
        mark(created(), now=now)


# -- the marked invoice ---------------------------------------------------------------------------


def test_marked_paid_the_invoice_and_every_transaction_are_paid() -> None:
    state = given(created(LINE_A, LINE_B), marked())
    assert state.status == PAID
    assert [t.status for t in state.transactions] == [PAID, PAID]
    assert state.updated_at == MARKED_AT
    assert state.payment_ids == ()  # no gateway payment: a later one is not a duplicate


def test_a_gateway_payment_after_it_is_a_late_payment_not_a_second_paid() -> None:
    state = given(created(LINE_A, LINE_B), marked())
    events = decide_payment(state, payment(amount=TOTAL_AB), MARKED_AT)
    assert len(events) == 1
    late = events[0]
    assert isinstance(late, LatePaymentReceived)
    assert (late.invoice_status, late.amount) == (PAID, TOTAL_AB)
    after = given(created(LINE_A, LINE_B), marked(), late)
    assert decide_payment(after, payment(amount=TOTAL_AB), MARKED_AT) == []  # a repeat: nothing


def test_done_and_refund_work_as_for_any_paid_invoice() -> None:
    state = given(created(LINE_A, LINE_B), marked())
    done = decide_completion(state, invoice_onmarket="OMK-001", by=PLATFORM_USER, now=DURING)
    refund = decide_cancel(
        state, invoice_onmarket="OMK-002", buyer_username=BUYER, by=PLATFORM_USER, now=DURING
    )
    assert [type(event).__name__ for event in (*done, *refund)] == [
        "TransactionCompleted",
        "RefundRequested",
    ]


def test_the_total_moves_from_external_manual_into_escrow() -> None:
    assert postings(marked()) == [(MANUAL_ACCOUNT, -TOTAL_AB), (escrow(INVOICE), TOTAL_AB)]
    assert MANUAL_ACCOUNT == "external:manual"
    assert sum(amount for _, amount in postings(marked())) == 0
