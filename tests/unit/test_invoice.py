"""Unit tests for the invoice aggregate: every allowed and refused transition of its state machine.

Each test reads given events (folded with ``evolve``), when a command (a ``decide_*`` call with
an explicit ``now``), then the events it returns or the ``DomainError`` it raises. Times are
fixed; nothing here touches a clock, a file or the network. A Hypothesis property closes the
file: random command sequences, decided and folded, never leave the allowed state graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import hypothesis
import pytest
from hypothesis import strategies as st

from service.domain import errors
from service.domain.events import (
    Event,
    InvoiceCanceled,
    InvoiceCreated,
    InvoiceExpired,
    InvoicePaid,
    LatePaymentReceived,
    MismatchedPaymentReceived,
    RefundCompleted,
    RefundRequested,
    TransactionCompleted,
    TransactionLine,
)
from service.domain.invoice import (
    CANCELED,
    COMPLETED,
    EXPIRED,
    PAID,
    PENDING,
    REFUND_IN_PROCESS,
    REFUNDED,
    Invoice,
    Payment,
    decide_cancel,
    decide_completion,
    decide_expiry,
    decide_payment,
    decide_refund_completion,
    evolve,
)

INVOICE = "OM1a2B3c4D5e6F7"
BUYER = "usernew1"
PLATFORM_USER = "onmarket"
SERVICE = "ONMARKET"

CREATED_AT = datetime(2024, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
EXPIRED_AT = CREATED_AT + timedelta(hours=2)
PAID_AT = CREATED_AT + timedelta(minutes=10)
DURING = CREATED_AT + timedelta(minutes=30)  # before expiry
JUST_BEFORE_EXPIRY = EXPIRED_AT - timedelta(microseconds=1)
AFTER_EXPIRY = EXPIRED_AT + timedelta(hours=1)

LINE_A = TransactionLine(
    invoice_onmarket="OMK-001",
    seller_username="seller1",
    amount=100_000,
    freight_charge=15_000,
    insurance_amount=2_000,
    commission_onmarket=5_000,
    waybill_number=None,
)
LINE_B = TransactionLine(
    invoice_onmarket="OMK-002",
    seller_username="seller2",
    amount=40_000,
    freight_charge=8_000,
    insurance_amount=0,
    commission_onmarket=0,
    waybill_number="WB-0002",
)
TOTAL_A = 117_000  # amount + freight + insurance of LINE_A
TOTAL_AB = TOTAL_A + 48_000


# -- given: events that make up a history -------------------------------------------------------


def created(*lines: TransactionLine, source: str = "XENDIT") -> InvoiceCreated:
    chosen = lines or (LINE_A,)
    return InvoiceCreated(
        invoice=INVOICE,
        username=BUYER,
        service=SERVICE,
        source=source,
        total_amount=sum(line.total for line in chosen),
        transactions=chosen,
        gateway_reference="xnd-inv-1",
        payment_url="http://localhost:8080/sandbox/checkout/xnd-inv-1",
        qr_string=None,
        created_at=CREATED_AT,
        expired_at=EXPIRED_AT,
    )


def paid(amount: int = TOTAL_A, payment_id: str = "pay-1") -> InvoicePaid:
    return InvoicePaid(INVOICE, amount, "XENDIT", payment_id, "BANK_TRANSFER", "BCA", PAID_AT)


def expired() -> InvoiceExpired:
    return InvoiceExpired(INVOICE, EXPIRED_AT)


def canceled() -> InvoiceCanceled:
    return InvoiceCanceled(INVOICE, PLATFORM_USER, DURING)


def refund_requested(line: TransactionLine = LINE_A) -> RefundRequested:
    return RefundRequested(INVOICE, line.invoice_onmarket, line.total, PLATFORM_USER, DURING)


def refunded(line: TransactionLine = LINE_A) -> RefundCompleted:
    return RefundCompleted(INVOICE, line.invoice_onmarket, line.total, DURING)


def completed(line: TransactionLine = LINE_A) -> TransactionCompleted:
    return TransactionCompleted(
        INVOICE,
        line.invoice_onmarket,
        SERVICE,
        line.seller_username,
        line.amount + line.freight_charge - line.commission_onmarket,
        line.commission_onmarket,
        line.insurance_amount,
        PLATFORM_USER,
        DURING,
    )


def late(payment_id: str, status: str, now: datetime) -> LatePaymentReceived:
    return LatePaymentReceived(
        INVOICE, status, TOTAL_A, payment_id, "BANK_TRANSFER", "BCA", PAID_AT, now
    )


def given(*events: Event) -> Invoice:
    """The invoice that ``events`` (starting with its ``InvoiceCreated``) fold into."""
    state: Invoice | None = None
    for event in events:
        state = evolve(state, event)
    assert state is not None, "a history starts with InvoiceCreated"
    return state


def payment(payment_id: str = "pay-1", amount: int = TOTAL_A) -> Payment:
    return Payment(payment_id, amount, "BANK_TRANSFER", "BCA", PAID_AT)


# A one-transaction invoice in each of its transaction's states.
HISTORY: dict[str, tuple[Event, ...]] = {
    PENDING: (created(),),
    PAID: (created(), paid()),
    EXPIRED: (created(), expired()),
    CANCELED: (created(), canceled()),
    REFUND_IN_PROCESS: (created(), paid(), refund_requested()),
    REFUNDED: (created(), paid(), refund_requested(), refunded()),
    COMPLETED: (created(), paid(), completed()),
}


def cancel(
    state: Invoice,
    now: datetime = DURING,
    invoice_onmarket: str | None = "OMK-001",
    buyer_username: str | None = BUYER,
) -> list[Event]:
    """Cancel as the ONMARKET platform, naming LINE_A and its buyer unless told otherwise."""
    return decide_cancel(
        state,
        invoice_onmarket=invoice_onmarket,
        buyer_username=buyer_username,
        by=PLATFORM_USER,
        now=now,
    )


def complete(
    state: Invoice, now: datetime = DURING, invoice_onmarket: str | None = "OMK-001"
) -> list[Event]:
    return decide_completion(state, invoice_onmarket=invoice_onmarket, by=PLATFORM_USER, now=now)


# -- payment ------------------------------------------------------------------------------------


def test_a_pending_invoice_is_paid_with_the_details_of_the_payment() -> None:
    """A payment of the total before expiry pays the invoice, carrying the gateway's details."""
    state = given(created())

    events = decide_payment(state, payment(), now=DURING)

    assert events == [
        InvoicePaid(INVOICE, TOTAL_A, "XENDIT", "pay-1", "BANK_TRANSFER", "BCA", PAID_AT)
    ]


def test_a_payment_records_the_source_the_invoice_was_checked_out_with() -> None:
    state = given(created(source="BALANCE"))

    events = decide_payment(state, payment(), now=DURING)

    assert events == [
        InvoicePaid(INVOICE, TOTAL_A, "BALANCE", "pay-1", "BANK_TRANSFER", "BCA", PAID_AT)
    ]


def test_a_payment_one_microsecond_before_expiry_is_in_time() -> None:
    state = given(created())

    events = decide_payment(state, payment(), now=JUST_BEFORE_EXPIRY)

    assert events == [paid()]


@pytest.mark.parametrize(
    "history",
    [
        pytest.param((created(), paid()), id="paid"),
        pytest.param((created(), paid(), completed()), id="completed"),
        pytest.param(
            (created(), expired(), late("pay-1", EXPIRED, AFTER_EXPIRY)), id="late-after-expiry"
        ),
    ],
)
def test_a_repeated_payment_is_ignored(history: tuple[Event, ...]) -> None:
    """A gateway callback seen before (paid or recorded late) produces nothing the second time."""
    state = given(*history)

    assert decide_payment(state, payment("pay-1"), now=AFTER_EXPIRY) == []


def mismatched(amount: int, payment_id: str = "pay-1") -> MismatchedPaymentReceived:
    return MismatchedPaymentReceived(
        INVOICE, amount, TOTAL_A, payment_id, "BANK_TRANSFER", "BCA", PAID_AT, DURING
    )


@pytest.mark.parametrize("amount", [TOTAL_A - 1, TOTAL_A + 1, 1, TOTAL_A * 2])
def test_a_payment_of_another_amount_is_kept_as_mismatched_and_does_not_pay(amount: int) -> None:
    """Real money of the wrong amount: recorded with what was paid and what was expected."""
    state = given(created())

    events = decide_payment(state, payment(amount=amount), now=DURING)

    assert events == [mismatched(amount)]


@pytest.mark.parametrize("amount", [0, -1], ids=["zero", "unknown"])
def test_a_payment_of_no_money_or_an_unknown_amount_is_refused(amount: int) -> None:
    """Nothing to keep (or its amount unknown): refused, so the gateway asks again."""
    state = given(created())

    with pytest.raises(errors.PaidAmountMismatch):
        decide_payment(state, payment(amount=amount), now=DURING)


def test_a_mismatched_payment_leaves_the_invoice_pending_and_remembers_its_id() -> None:
    state = given(created(), mismatched(TOTAL_A - 1))

    assert state.status == PENDING
    assert [t.status for t in state.transactions] == [PENDING]
    assert state.payment_ids == ("pay-1",)
    assert state.updated_at == DURING


def test_a_mismatched_payment_reported_again_is_ignored() -> None:
    state = given(created(), mismatched(TOTAL_A - 1))

    assert decide_payment(state, payment(amount=TOTAL_A - 1), now=DURING) == []


def test_the_right_amount_after_a_mismatched_payment_still_pays_the_invoice() -> None:
    """Even reported under the same gateway invoice: only the payment's own id was taken."""
    state = given(created(), mismatched(TOTAL_A - 1))
    right = Payment("pay-2", TOTAL_A, "BANK_TRANSFER", "BCA", PAID_AT, aliases=("inv-gw",))

    events = decide_payment(state, right, now=DURING)

    assert events == [
        InvoicePaid(
            INVOICE, TOTAL_A, "XENDIT", "pay-2", "BANK_TRANSFER", "BCA", PAID_AT, ("inv-gw",)
        )
    ]


@pytest.mark.parametrize(
    ("history", "status"),
    [
        pytest.param((created(), paid()), PAID, id="paid"),
        pytest.param((created(), expired()), EXPIRED, id="expired"),
        pytest.param((created(), canceled()), CANCELED, id="canceled"),
    ],
)
def test_a_payment_of_another_amount_on_a_closed_invoice_is_just_late(
    history: tuple[Event, ...], status: str
) -> None:
    """An invoice that can take no payment keeps any amount as late, with what was paid."""
    state = given(*history)

    events = decide_payment(state, payment("pay-2", amount=TOTAL_A + 7), now=AFTER_EXPIRY)

    assert events == [
        LatePaymentReceived(
            INVOICE, status, TOTAL_A + 7, "pay-2", "BANK_TRANSFER", "BCA", PAID_AT, AFTER_EXPIRY
        )
    ]


def test_a_payment_of_another_amount_after_expiry_expires_the_invoice_and_is_late() -> None:
    state = given(created())

    events = decide_payment(state, payment(amount=TOTAL_A - 1), now=AFTER_EXPIRY)

    assert events == [
        InvoiceExpired(INVOICE, EXPIRED_AT),
        LatePaymentReceived(
            INVOICE, EXPIRED, TOTAL_A - 1, "pay-1", "BANK_TRANSFER", "BCA", PAID_AT, AFTER_EXPIRY
        ),
    ]


@pytest.mark.parametrize("now", [EXPIRED_AT, AFTER_EXPIRY], ids=["at-expiry", "after-expiry"])
def test_a_payment_at_or_after_expiry_expires_the_invoice_and_is_kept_as_late(
    now: datetime,
) -> None:
    """Time is the truth: the missing InvoiceExpired is written first, then the late payment."""
    state = given(created())

    events = decide_payment(state, payment(), now=now)

    assert events == [InvoiceExpired(INVOICE, EXPIRED_AT), late("pay-1", EXPIRED, now)]


def test_a_payment_after_the_recorded_expiry_is_only_kept_as_late() -> None:
    state = given(created(), expired())

    events = decide_payment(state, payment(), now=AFTER_EXPIRY)

    assert events == [late("pay-1", EXPIRED, AFTER_EXPIRY)]


def test_a_payment_after_cancellation_is_kept_as_late_and_does_not_resurrect_the_invoice() -> None:
    state = given(created(), canceled())

    events = decide_payment(state, payment(), now=DURING)

    assert events == [late("pay-1", CANCELED, DURING)]


def test_a_second_payment_on_a_paid_invoice_is_kept_as_late() -> None:
    state = given(created(), paid(payment_id="pay-1"))

    events = decide_payment(state, payment("pay-2"), now=DURING)

    assert events == [late("pay-2", PAID, DURING)]


def test_a_late_payment_leaves_the_status_alone_and_remembers_its_id() -> None:
    state = given(created(), canceled(), late("pay-1", CANCELED, AFTER_EXPIRY))

    assert state.status == CANCELED
    assert state.payment_ids == ("pay-1",)
    assert state.updated_at == AFTER_EXPIRY


# -- expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("now", [EXPIRED_AT, AFTER_EXPIRY], ids=["at-expiry", "after-expiry"])
def test_a_pending_invoice_expires_at_its_expiry_time(now: datetime) -> None:
    """The event carries the invoice's own expiry time, not the moment the worker noticed."""
    state = given(created())

    assert decide_expiry(state, now) == [InvoiceExpired(INVOICE, EXPIRED_AT)]


def test_a_pending_invoice_does_not_expire_one_microsecond_early() -> None:
    state = given(created())

    assert decide_expiry(state, JUST_BEFORE_EXPIRY) == []


@pytest.mark.parametrize("status", [PAID, CANCELED, EXPIRED, COMPLETED, REFUNDED])
def test_only_a_pending_invoice_expires(status: str) -> None:
    state = given(*HISTORY[status])

    assert decide_expiry(state, AFTER_EXPIRY) == []


# -- cancel -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("invoice_onmarket", "buyer_username"),
    [(None, None), ("OMK-001", BUYER)],
    ids=["nothing-named", "transaction-named"],
)
def test_canceling_a_pending_invoice_cancels_it_whole(
    invoice_onmarket: str | None, buyer_username: str | None
) -> None:
    state = given(created(LINE_A, LINE_B))

    events = cancel(state, invoice_onmarket=invoice_onmarket, buyer_username=buyer_username)

    assert events == [InvoiceCanceled(INVOICE, PLATFORM_USER, DURING)]


def test_canceling_a_pending_invoice_past_its_expiry_is_refused_as_expired() -> None:
    state = given(created())

    with pytest.raises(errors.ExpiredInvoice):
        cancel(state, now=EXPIRED_AT)


def test_canceling_an_expired_invoice_is_refused() -> None:
    state = given(created(), expired())

    with pytest.raises(errors.ExpiredInvoice):
        cancel(state, now=AFTER_EXPIRY)


def test_canceling_a_canceled_invoice_is_refused() -> None:
    state = given(created(), canceled())

    with pytest.raises(errors.AlreadyCanceled):
        cancel(state)


@pytest.mark.parametrize(
    ("invoice_onmarket", "buyer_username", "named"),
    [
        (None, BUYER, {"invoice_onmarket"}),
        ("OMK-001", None, {"buyer_username"}),
        (None, None, {"invoice_onmarket", "buyer_username"}),
        ("", "", {"invoice_onmarket", "buyer_username"}),
    ],
    ids=["no-transaction", "no-buyer", "neither", "empty-strings"],
)
def test_refunding_a_paid_invoice_requires_the_transaction_and_the_buyer(
    invoice_onmarket: str | None, buyer_username: str | None, named: set[str]
) -> None:
    """The error names each missing field, so the API can answer which one."""
    state = given(created(), paid())

    with pytest.raises(errors.TransactionRequired) as refused:
        cancel(state, invoice_onmarket=invoice_onmarket, buyer_username=buyer_username)

    assert refused.value.errors is not None
    assert set(refused.value.errors) == named


def test_refunding_for_someone_who_is_not_the_buyer_is_refused() -> None:
    state = given(created(), paid())

    with pytest.raises(errors.BuyerMismatch) as refused:
        cancel(state, buyer_username="someone-else")

    assert refused.value.errors is not None
    assert set(refused.value.errors) == {"buyer_username"}


def test_refunding_a_transaction_the_invoice_does_not_have_is_refused() -> None:
    state = given(created(), paid())

    with pytest.raises(errors.TransactionNotFound):
        cancel(state, invoice_onmarket="OMK-999")


def test_canceling_a_paid_transaction_requests_a_refund_of_its_amount_freight_and_insurance() -> (
    None
):
    state = given(created(LINE_A, LINE_B), paid(TOTAL_AB))

    events = cancel(state)

    assert events == [RefundRequested(INVOICE, "OMK-001", TOTAL_A, PLATFORM_USER, DURING)]


def test_a_paid_transaction_can_be_refunded_after_the_invoice_expiry_time() -> None:
    """Expiry only concerns unpaid invoices: a paid one stays paid past ``expired_at``."""
    state = given(created(LINE_A, LINE_B), paid(TOTAL_AB))

    events = cancel(state, now=AFTER_EXPIRY, invoice_onmarket="OMK-002")

    assert events == [RefundRequested(INVOICE, "OMK-002", 48_000, PLATFORM_USER, AFTER_EXPIRY)]


def test_the_other_transaction_can_be_refunded_once_one_is_completed() -> None:
    state = given(created(LINE_A, LINE_B), paid(TOTAL_AB), completed(LINE_A))

    events = cancel(state, invoice_onmarket="OMK-002")

    assert events == [RefundRequested(INVOICE, "OMK-002", 48_000, PLATFORM_USER, DURING)]


@pytest.mark.parametrize(
    ("status", "refusal"),
    [
        (REFUND_IN_PROCESS, errors.RefundInProcess),
        (REFUNDED, errors.AlreadyRefunded),
        (COMPLETED, errors.AlreadyCompleted),
    ],
)
def test_canceling_a_settled_or_settling_transaction_is_refused(
    status: str, refusal: type[errors.DomainError]
) -> None:
    state = given(*HISTORY[status])

    with pytest.raises(refusal):
        cancel(state)


# -- completion ---------------------------------------------------------------------------------


def test_completing_a_paid_transaction_pays_seller_commission_and_insurance() -> None:
    """The seller gets amount + freight − commission; commission and insurance go to the
    platform."""
    state = given(created(LINE_A, LINE_B), paid(TOTAL_AB))

    events = complete(state)

    assert events == [
        TransactionCompleted(
            invoice=INVOICE,
            invoice_onmarket="OMK-001",
            service=SERVICE,
            seller_username="seller1",
            seller_amount=110_000,
            commission=5_000,
            insurance=2_000,
            completed_by=PLATFORM_USER,
            completed_at=DURING,
        )
    ]


def test_a_paid_transaction_can_be_completed_after_the_invoice_expiry_time() -> None:
    state = given(created(), paid())

    assert complete(state, now=AFTER_EXPIRY) == [
        TransactionCompleted(
            INVOICE,
            "OMK-001",
            SERVICE,
            "seller1",
            110_000,
            5_000,
            2_000,
            PLATFORM_USER,
            AFTER_EXPIRY,
        )
    ]


def test_completing_a_pending_transaction_is_refused_as_not_paid() -> None:
    state = given(created())

    with pytest.raises(errors.NotPaid):
        complete(state)


@pytest.mark.parametrize(
    ("history", "now"),
    [
        pytest.param((created(),), EXPIRED_AT, id="by-time"),
        pytest.param((created(), expired()), AFTER_EXPIRY, id="by-event"),
    ],
)
def test_completing_an_expired_invoice_is_refused(
    history: tuple[Event, ...], now: datetime
) -> None:
    state = given(*history)

    with pytest.raises(errors.ExpiredInvoice):
        complete(state, now=now)


@pytest.mark.parametrize(
    ("status", "refusal"),
    [
        (CANCELED, errors.AlreadyCanceled),
        (COMPLETED, errors.AlreadyCompleted),
        (REFUND_IN_PROCESS, errors.RefundInProcess),
        (REFUNDED, errors.AlreadyRefunded),
    ],
)
def test_completing_a_transaction_that_is_not_paid_is_refused(
    status: str, refusal: type[errors.DomainError]
) -> None:
    state = given(*HISTORY[status])

    with pytest.raises(refusal):
        complete(state)


def test_the_transaction_may_be_left_out_when_the_invoice_has_only_one() -> None:
    state = given(created(LINE_A), paid())

    events = complete(state, invoice_onmarket=None)

    assert events == [completed(LINE_A)]


def test_the_transaction_must_be_named_when_the_invoice_has_several() -> None:
    state = given(created(LINE_A, LINE_B), paid(TOTAL_AB))

    with pytest.raises(errors.TransactionRequired) as refused:
        complete(state, invoice_onmarket=None)

    assert refused.value.errors is not None
    assert set(refused.value.errors) == {"invoice_onmarket"}


def test_completing_a_transaction_the_invoice_does_not_have_is_refused() -> None:
    state = given(created(), paid())

    with pytest.raises(errors.TransactionNotFound):
        complete(state, invoice_onmarket="OMK-999")


# -- refund completion --------------------------------------------------------------------------


def test_a_requested_refund_completes_with_the_transaction_total() -> None:
    state = given(created(LINE_A, LINE_B), paid(TOTAL_AB), refund_requested(LINE_A))

    events = decide_refund_completion(state, "OMK-001", AFTER_EXPIRY)

    assert events == [RefundCompleted(INVOICE, "OMK-001", TOTAL_A, AFTER_EXPIRY)]


@pytest.mark.parametrize("status", [PENDING, PAID, EXPIRED, CANCELED, REFUNDED, COMPLETED])
def test_completing_a_refund_that_is_not_in_process_does_nothing(status: str) -> None:
    """A refund worker's retry after the refund finished is harmless."""
    state = given(*HISTORY[status])

    assert decide_refund_completion(state, "OMK-001", DURING) == []


# -- evolve -------------------------------------------------------------------------------------


def test_a_created_invoice_is_pending_with_every_transaction_pending() -> None:
    state = given(created(LINE_A, LINE_B))

    assert state.status == PENDING
    assert [t.status for t in state.transactions] == [PENDING, PENDING]
    assert [t.line for t in state.transactions] == [LINE_A, LINE_B]
    assert state.payment_ids == ()
    assert state.updated_at == CREATED_AT


@pytest.mark.parametrize(
    ("event", "status", "at"),
    [
        (paid(TOTAL_AB), PAID, PAID_AT),
        (expired(), EXPIRED, EXPIRED_AT),
        (canceled(), CANCELED, DURING),
    ],
)
def test_payment_expiry_and_cancellation_move_the_invoice_and_every_transaction(
    event: Event, status: str, at: datetime
) -> None:
    state = given(created(LINE_A, LINE_B), event)

    assert state.status == status
    assert [t.status for t in state.transactions] == [status, status]
    assert state.updated_at == at


def test_a_payment_remembers_its_id() -> None:
    assert given(created(), paid(payment_id="pay-7")).payment_ids == ("pay-7",)


def test_an_event_before_the_invoice_was_created_is_rejected() -> None:
    with pytest.raises(ValueError, match="before InvoiceCreated"):
        evolve(None, paid())


@pytest.mark.parametrize(
    ("settlements", "status"),
    [
        pytest.param((completed(LINE_A), completed(LINE_B)), COMPLETED, id="all-completed"),
        pytest.param(
            (completed(LINE_A), refund_requested(LINE_B), refunded(LINE_B)),
            COMPLETED,
            id="completed-and-refunded",
        ),
        pytest.param(
            (refund_requested(LINE_A), refunded(LINE_A), completed(LINE_B)),
            COMPLETED,
            id="refunded-then-completed",
        ),
        pytest.param(
            (
                refund_requested(LINE_A),
                refunded(LINE_A),
                refund_requested(LINE_B),
                refunded(LINE_B),
            ),
            REFUNDED,
            id="all-refunded",
        ),
        pytest.param((), PAID, id="all-paid"),
        pytest.param((completed(LINE_A),), PAID, id="one-still-paid"),
        pytest.param((refund_requested(LINE_A), refunded(LINE_A)), PAID, id="refunded-one-paid"),
        pytest.param(
            (completed(LINE_A), refund_requested(LINE_B)), PAID, id="one-refund-in-process"
        ),
        pytest.param(
            (refund_requested(LINE_A), refund_requested(LINE_B)), PAID, id="both-refunds-in-process"
        ),
    ],
)
def test_a_paid_invoice_settles_only_when_every_transaction_is_settled(
    settlements: tuple[Event, ...], status: str
) -> None:
    """COMPLETED once all are completed or refunded with one completed; REFUNDED when all are
    refunded; PAID while any transaction is still paid or has its refund in process."""
    state = given(created(LINE_A, LINE_B), paid(TOTAL_AB), *settlements)

    assert state.status == status


def test_settling_transactions_changes_only_the_named_one() -> None:
    state = given(
        created(LINE_A, LINE_B), paid(TOTAL_AB), completed(LINE_A), refund_requested(LINE_B)
    )

    assert [t.status for t in state.transactions] == [COMPLETED, REFUND_IN_PROCESS]


@pytest.mark.parametrize(
    ("status", "now", "shown"),
    [
        (PENDING, JUST_BEFORE_EXPIRY, PENDING),
        (PENDING, EXPIRED_AT, EXPIRED),
        (PENDING, AFTER_EXPIRY, EXPIRED),
        (EXPIRED, AFTER_EXPIRY, EXPIRED),
        (PAID, AFTER_EXPIRY, PAID),
        (CANCELED, AFTER_EXPIRY, CANCELED),
        (COMPLETED, AFTER_EXPIRY, COMPLETED),
        (REFUNDED, AFTER_EXPIRY, REFUNDED),
    ],
)
def test_the_shown_status_is_never_pending_past_expiry(
    status: str, now: datetime, shown: str
) -> None:
    state = given(*HISTORY[status])

    assert state.status_at(now) == shown


@pytest.mark.parametrize(
    ("status", "now", "shown"),
    [
        (PENDING, JUST_BEFORE_EXPIRY, PENDING),
        (PENDING, EXPIRED_AT, EXPIRED),
        (PAID, AFTER_EXPIRY, PAID),
        (REFUND_IN_PROCESS, AFTER_EXPIRY, REFUND_IN_PROCESS),
        (COMPLETED, AFTER_EXPIRY, COMPLETED),
        (CANCELED, AFTER_EXPIRY, CANCELED),
    ],
)
def test_the_shown_transaction_status_is_never_pending_past_expiry(
    status: str, now: datetime, shown: str
) -> None:
    state = given(*HISTORY[status])

    assert state.transaction_status_at(state.transactions[0], now) == shown


@pytest.mark.parametrize(
    ("status", "now", "holds"),
    [
        (PENDING, DURING, True),
        (PENDING, JUST_BEFORE_EXPIRY, True),
        (PENDING, EXPIRED_AT, False),
        (PAID, AFTER_EXPIRY, True),
        (REFUND_IN_PROCESS, DURING, True),
        (EXPIRED, AFTER_EXPIRY, False),
        (CANCELED, DURING, False),
        (COMPLETED, DURING, False),
        (REFUNDED, DURING, False),
    ],
)
def test_an_invoice_holds_its_marketplace_numbers_only_while_pending_or_paid(
    status: str, now: datetime, holds: bool
) -> None:
    state = given(*HISTORY[status])

    assert state.holds_reservation(now) is holds


# -- property: random command sequences stay on the state graph ---------------------------------

INVOICE_STATUSES = {PENDING, PAID, EXPIRED, CANCELED, COMPLETED, REFUNDED}
TRANSACTION_STATUSES = INVOICE_STATUSES | {REFUND_IN_PROCESS}
INVOICE_GRAPH = {
    PENDING: {PAID, EXPIRED, CANCELED},
    PAID: {COMPLETED, REFUNDED},
    EXPIRED: set(),
    CANCELED: set(),
    COMPLETED: set(),
    REFUNDED: set(),
}
TRANSACTION_GRAPH = {
    PENDING: {PAID, EXPIRED, CANCELED},
    PAID: {REFUND_IN_PROCESS, COMPLETED},
    REFUND_IN_PROCESS: {REFUNDED},
    EXPIRED: set(),
    CANCELED: set(),
    COMPLETED: set(),
    REFUNDED: set(),
}
# Mostly short steps, so that several commands land before the expiry; sums of the long ones
# land exactly on it and one microsecond either side of it.
STEPS = [
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(minutes=1),
    timedelta(minutes=10),
    timedelta(hours=1) - timedelta(microseconds=1),
    timedelta(hours=1),
]


@dataclass(frozen=True)
class Pay:
    payment_id: str
    exact: bool
    step: timedelta


@dataclass(frozen=True)
class Expire:
    step: timedelta


@dataclass(frozen=True)
class Cancel:
    invoice_onmarket: str | None
    buyer_username: str | None
    step: timedelta


@dataclass(frozen=True)
class Complete:
    invoice_onmarket: str | None
    step: timedelta


@dataclass(frozen=True)
class FinishRefund:
    invoice_onmarket: str
    step: timedelta


Command = Pay | Expire | Cancel | Complete | FinishRefund


@st.composite
def transaction_lines(draw: st.DrawFn) -> tuple[TransactionLine, ...]:
    """One to three stores with random non-negative amounts, commission at most the amount."""
    lines = []
    for number in range(1, draw(st.integers(1, 3)) + 1):
        amount = draw(st.integers(0, 10**9))
        lines.append(
            TransactionLine(
                invoice_onmarket=f"OMK-{number:03d}",
                seller_username=f"seller{number}",
                amount=amount,
                freight_charge=draw(st.integers(0, 10**6)),
                insurance_amount=draw(st.integers(0, 10**6)),
                commission_onmarket=draw(st.integers(0, amount)),
                waybill_number=None,
            )
        )
    return tuple(lines)


def weighted(*choices: tuple[st.SearchStrategy[Command], int]) -> st.SearchStrategy[Command]:
    """One of the strategies, each drawn in proportion to its weight (``one_of`` would
    de-duplicate a strategy listed twice instead of weighting it)."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def command_mixes(
    lines: tuple[TransactionLine, ...],
) -> tuple[st.SearchStrategy[Command], st.SearchStrategy[Command]]:
    """Every kind of command, weighted one way before payment and another way after it.

    Every command can come at any time; the weights only make sure that payments usually
    happen and that paid invoices usually get canceled, completed and refunded, so that the
    settled states are reached often. Commands mostly name the invoice's own transactions,
    sometimes none, sometimes an unknown one.
    """
    own = [line.invoice_onmarket for line in lines]
    steps = st.sampled_from(STEPS)
    named = st.sampled_from([*own, *own, *own, None, "OMK-999"])
    buyers = st.sampled_from([BUYER, BUYER, BUYER, None, "someone"])
    pays = st.builds(Pay, st.sampled_from(["pay-1", "pay-2"]), st.booleans(), steps)
    expires = st.builds(Expire, steps)
    cancels = st.builds(Cancel, named, buyers, steps)
    completes = st.builds(Complete, named, steps)
    finishes = st.builds(FinishRefund, st.sampled_from(own), steps)
    unpaid = weighted((pays, 6), (expires, 1), (cancels, 1), (completes, 1), (finishes, 1))
    paid = weighted((pays, 1), (expires, 1), (cancels, 3), (completes, 2), (finishes, 3))
    return unpaid, paid


def decide(state: Invoice, command: Command, now: datetime) -> Sequence[Event]:
    if isinstance(command, Pay):
        amount = state.created.total_amount + (0 if command.exact else 1)
        return decide_payment(
            state, Payment(command.payment_id, amount, "EWALLET", "OVO", now), now
        )
    if isinstance(command, Expire):
        return decide_expiry(state, now)
    if isinstance(command, Cancel):
        return decide_cancel(
            state,
            invoice_onmarket=command.invoice_onmarket,
            buyer_username=command.buyer_username,
            by=PLATFORM_USER,
            now=now,
        )
    if isinstance(command, Complete):
        return decide_completion(
            state, invoice_onmarket=command.invoice_onmarket, by=PLATFORM_USER, now=now
        )
    return decide_refund_completion(state, command.invoice_onmarket, now)


def assert_consistent(state: Invoice, now: datetime) -> None:
    """The invoice's status agrees with its transactions' and with the settlement rule."""
    assert state.status in INVOICE_STATUSES
    statuses = [t.status for t in state.transactions]
    assert set(statuses) <= TRANSACTION_STATUSES
    if state.status in (PENDING, EXPIRED, CANCELED):
        assert set(statuses) == {state.status}
    else:
        assert set(statuses) <= {PAID, REFUND_IN_PROCESS, REFUNDED, COMPLETED}
        settled = set(statuses) <= {COMPLETED, REFUNDED}
        rule = (COMPLETED if COMPLETED in statuses else REFUNDED) if settled else PAID
        assert state.status == rule
    if now >= state.created.expired_at:
        assert state.status_at(now) != PENDING


def assert_allowed_step(before: Invoice, after: Invoice) -> None:
    if after.status != before.status:
        assert after.status in INVOICE_GRAPH[before.status], (before.status, after.status)
    for old, new in zip(before.transactions, after.transactions, strict=True):
        assert new.line == old.line
        if new.status != old.status:
            assert new.status in TRANSACTION_GRAPH[old.status], (old.status, new.status)


@hypothesis.settings(max_examples=300)
@hypothesis.given(transaction_lines(), st.data())
def test_random_command_sequences_stay_on_the_state_graph(
    lines: tuple[TransactionLine, ...], data: st.DataObject
) -> None:
    """Whatever the platform, gateway and workers send in whatever order and at whatever time,
    allowed commands follow the graph, a closed invoice is never paid, each transaction is
    paid out or refunded at most once, and the invoice settles exactly when the rule says."""
    unpaid, paid = command_mixes(lines)
    state = given(created(*lines))
    now = CREATED_AT
    closed = False
    payouts: Counter[str] = Counter()
    for _ in range(data.draw(st.integers(1, 30), label="commands")):
        command = data.draw(unpaid if state.status == PENDING else paid)
        now += command.step
        try:
            events = decide(state, command, now)
        except errors.DomainError:
            events = []  # refused: nothing happens, and the invariants still hold
        for event in events:
            after = evolve(state, event)
            assert_allowed_step(state, after)
            assert_consistent(after, now)
            if isinstance(event, InvoicePaid):
                assert now < state.created.expired_at, "paid after expiry"
            if isinstance(event, LatePaymentReceived):
                assert event.invoice_status != PENDING
            if isinstance(event, MismatchedPaymentReceived):
                assert after.status == state.status_at(now) == PENDING
            if isinstance(event, RefundCompleted | TransactionCompleted):
                payouts[event.invoice_onmarket] += 1
                assert payouts[event.invoice_onmarket] == 1
            closed = closed or after.status in (EXPIRED, CANCELED)
            if closed:
                assert after.status in (EXPIRED, CANCELED)
            state = after
        assert_consistent(state, now)
    hypothesis.event(f"ends {state.status}")
