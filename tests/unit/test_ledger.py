"""Unit tests for the money side of the domain: the ledger postings each event makes, and the
buyer's balance aggregate that refuses an overdraft.

Postings are checked line by line for every event that moves money, and as a property: any
such event with any non-negative amounts posts lines that sum to zero, so the ledger balances
after every single event. A worked example follows one invoice's escrow from payment to its
last settlement, through the very decide functions the service uses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import hypothesis
import pytest
from hypothesis import strategies as st

from service.domain import errors
from service.domain.balance import (
    Balance,
    credit_mismatched_payment,
    decide_debit,
    evolve_balance,
)
from service.domain.events import (
    BalanceCredited,
    BalanceDebited,
    BalanceToppedUp,
    Event,
    IdempotentRequestRecorded,
    InvoiceCanceled,
    InvoiceCreated,
    InvoiceExpired,
    InvoicePaid,
    LatePaymentReceived,
    MismatchedPaymentReceived,
    OnmarketInvoiceReserved,
    RefundCompleted,
    RefundRequested,
    TransactionCompleted,
    TransactionLine,
    UserRegistered,
)
from service.domain.invoice import (
    Invoice,
    Payment,
    decide_cancel,
    decide_completion,
    decide_payment,
    decide_refund_completion,
    evolve,
)
from service.domain.ledger import Posting, postings

AT = datetime(2024, 1, 31, 12, 5, 44, 155000, tzinfo=UTC)
INVOICE = "OM1a2B3c4D5e6F7"
BUYER = "usernew1"

LINE_A = TransactionLine("OMK-001", "seller1", 100_000, 15_000, 2_000, 5_000, None)
LINE_B = TransactionLine("OMK-002", "seller2", 40_000, 8_000, 0, 0, None)


def completed(seller_amount: int, commission: int, insurance: int) -> TransactionCompleted:
    return TransactionCompleted(
        INVOICE,
        "OMK-001",
        "ONMARKET",
        "seller1",
        seller_amount,
        commission,
        insurance,
        "onmarket",
        AT,
    )


def paid(source: str, amount: int = 117_000) -> InvoicePaid:
    return InvoicePaid(INVOICE, amount, source, "pay-1", "BANK_TRANSFER", "BCA", AT)


# -- postings of each money event ---------------------------------------------------------------


def test_a_top_up_moves_money_from_outside_to_the_buyer() -> None:
    event = BalanceToppedUp(BUYER, 50_000, "admin", AT)

    assert postings(event) == [("external:topup", -50_000), ("buyer:usernew1", 50_000)]


def test_a_debit_moves_the_buyers_money_into_the_invoice_escrow() -> None:
    event = BalanceDebited(BUYER, 117_000, INVOICE, AT)

    assert postings(event) == [("buyer:usernew1", -117_000), (f"escrow:{INVOICE}", 117_000)]


@pytest.mark.parametrize(
    ("reason", "from_account"),
    [
        ("refund", f"escrow:{INVOICE}"),
        ("late_payment", "gateway:xendit"),
        ("amount_mismatch", "gateway:xendit"),
    ],
)
def test_a_credit_moves_money_to_the_buyer_from_the_account_it_names(
    reason: str, from_account: str
) -> None:
    event = BalanceCredited(BUYER, 117_000, INVOICE, reason, from_account, AT)

    assert postings(event) == [(from_account, -117_000), ("buyer:usernew1", 117_000)]


@pytest.mark.parametrize("source", ["XENDIT", "QRIS"])
def test_a_gateway_payment_moves_the_total_from_the_gateway_into_escrow(source: str) -> None:
    assert postings(paid(source)) == [("gateway:xendit", -117_000), (f"escrow:{INVOICE}", 117_000)]


def test_a_balance_payment_posts_nothing_because_its_debit_already_did() -> None:
    """Posting it twice would put the total into escrow twice."""
    assert postings(paid("BALANCE")) == []


def test_a_completion_moves_the_transaction_from_escrow_to_seller_commission_and_insurance() -> (
    None
):
    event = completed(seller_amount=110_000, commission=5_000, insurance=2_000)

    assert postings(event) == [
        (f"escrow:{INVOICE}", -117_000),
        ("seller:seller1", 110_000),
        ("platform:ONMARKET:commission", 5_000),
        ("platform:ONMARKET:insurance", 2_000),
    ]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(
            completed(seller_amount=48_000, commission=0, insurance=2_000),
            [
                (f"escrow:{INVOICE}", -50_000),
                ("seller:seller1", 48_000),
                ("platform:ONMARKET:insurance", 2_000),
            ],
            id="no-commission",
        ),
        pytest.param(
            completed(seller_amount=43_000, commission=5_000, insurance=0),
            [
                (f"escrow:{INVOICE}", -48_000),
                ("seller:seller1", 43_000),
                ("platform:ONMARKET:commission", 5_000),
            ],
            id="no-insurance",
        ),
        pytest.param(
            completed(seller_amount=48_000, commission=0, insurance=0),
            [(f"escrow:{INVOICE}", -48_000), ("seller:seller1", 48_000)],
            id="neither",
        ),
    ],
)
def test_a_completion_omits_zero_commission_and_insurance_lines(
    event: TransactionCompleted, expected: list[Posting]
) -> None:
    assert postings(event) == expected


@pytest.mark.parametrize(
    "event",
    [
        BalanceToppedUp(BUYER, 0, "admin", AT),
        BalanceDebited(BUYER, 0, INVOICE, AT),
        BalanceCredited(BUYER, 0, INVOICE, "refund", f"escrow:{INVOICE}", AT),
        paid("XENDIT", amount=0),
        completed(seller_amount=0, commission=0, insurance=0),
    ],
    ids=lambda event: type(event).__name__,
)
def test_an_event_that_moves_zero_posts_no_lines(event: Event) -> None:
    assert postings(event) == []


CREATED = InvoiceCreated(
    INVOICE,
    BUYER,
    "ONMARKET",
    "XENDIT",
    117_000,
    (LINE_A,),
    "xnd-inv-1",
    None,
    None,
    AT,
    AT + timedelta(hours=2),
)
NON_MONEY_EVENTS: list[Event] = [
    CREATED,
    InvoiceExpired(INVOICE, AT),
    InvoiceCanceled(INVOICE, "onmarket", AT),
    RefundRequested(INVOICE, "OMK-001", 117_000, "onmarket", AT),
    RefundCompleted(INVOICE, "OMK-001", 117_000, AT),
    LatePaymentReceived(INVOICE, "EXPIRED", 117_000, "pay-2", "EWALLET", "OVO", AT, AT),
    MismatchedPaymentReceived(INVOICE, 116_999, 117_000, "pay-3", "QRIS", "QRIS", AT, AT),
    OnmarketInvoiceReserved("OMK-001", INVOICE),
    IdempotentRequestRecorded(BUYER, "key-1", "hash", 200, {"invoice": INVOICE}, AT),
    UserRegistered(BUYER, "buyer", None, "scrypt$...", AT),
]


@pytest.mark.parametrize("event", NON_MONEY_EVENTS, ids=lambda event: type(event).__name__)
def test_an_event_that_moves_no_money_posts_nothing(event: Event) -> None:
    """A refund, a late and a mismatched payment reach the buyer through the BalanceCredited
    written with them; posting them here as well would count the money twice."""
    assert postings(event) == []


# -- property: every event balances on its own ---------------------------------------------------

amounts = st.integers(min_value=0, max_value=10**12)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
money_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(BalanceToppedUp, names, amounts, names, st.just(AT)),
    st.builds(BalanceDebited, names, amounts, names, st.just(AT)),
    st.builds(
        BalanceCredited,
        names,
        amounts,
        names,
        st.sampled_from(["refund", "late_payment", "amount_mismatch"]),
        st.sampled_from([f"escrow:{INVOICE}", "gateway:xendit"]),
        st.just(AT),
    ),
    st.builds(
        InvoicePaid,
        names,
        amounts,
        st.sampled_from(["XENDIT", "QRIS", "BALANCE"]),
        names,
        names,
        names,
        st.just(AT),
    ),
    st.builds(
        TransactionCompleted,
        names,
        names,
        st.sampled_from(["ONMARKET", "ONDELIVERY", "ONTICKET"]),
        names,
        amounts,
        amounts,
        amounts,
        names,
        st.just(AT),
    ),
)


@hypothesis.given(money_events)
def test_every_event_posts_lines_that_sum_to_zero(event: Event) -> None:
    lines = postings(event)

    assert sum(amount for _, amount in lines) == 0
    assert all(amount != 0 for _, amount in lines)


# -- worked example: one invoice's escrow, from payment to the last settlement ------------------


def escrow_after(events: list[Event]) -> int:
    return sum(
        amount
        for event in events
        for account, amount in postings(event)
        if account.startswith("escrow:")
    )


def test_escrow_holds_what_is_unsettled_and_is_empty_once_every_transaction_is_settled() -> None:
    """Payment fills escrow with the total; completing one store and refunding the other
    (through the BalanceCredited the refund worker writes) empties it to zero, never below."""
    created = InvoiceCreated(
        INVOICE,
        BUYER,
        "ONMARKET",
        "XENDIT",
        LINE_A.total + LINE_B.total,
        (LINE_A, LINE_B),
        "xnd-inv-1",
        None,
        None,
        AT,
        AT + timedelta(hours=2),
    )
    log: list[Event] = [created]
    state: Invoice = evolve(None, created)
    now = AT + timedelta(minutes=1)

    def record(new: list[Event]) -> None:
        nonlocal state
        for event in new:
            log.append(event)
            state = evolve(state, event)
            assert escrow_after(log) >= 0

    record(decide_payment(state, Payment("pay-1", created.total_amount, "VA", "BCA", now), now))
    assert escrow_after(log) == 165_000

    record(decide_completion(state, invoice_onmarket="OMK-001", by="onmarket", now=now))
    assert escrow_after(log) == 165_000 - 117_000

    record(
        decide_cancel(
            state, invoice_onmarket="OMK-002", buyer_username=BUYER, by="onmarket", now=now
        )
    )
    refund = decide_refund_completion(state, "OMK-002", now)
    record(
        [
            *refund,
            BalanceCredited(BUYER, refund[0].amount, INVOICE, "refund", f"escrow:{INVOICE}", now),
        ]
    )

    assert escrow_after(log) == 0
    assert state.status == "COMPLETED"


# -- the buyer's balance aggregate ---------------------------------------------------------------


def given_balance(*events: Event) -> Balance | None:
    state: Balance | None = None
    for event in events:
        state = evolve_balance(state, event)
    return state


def test_a_balance_adds_top_ups_and_credits_and_subtracts_debits() -> None:
    state = given_balance(
        BalanceToppedUp(BUYER, 100_000, "admin", AT),
        BalanceCredited(BUYER, 17_000, INVOICE, "refund", f"escrow:{INVOICE}", AT),
        BalanceDebited(BUYER, 30_000, INVOICE, AT),
        BalanceCredited(BUYER, 5_000, INVOICE, "late_payment", "gateway:xendit", AT),
    )

    assert state == Balance(BUYER, 92_000)


def test_a_mismatched_payment_is_credited_from_the_gateway_to_the_buyer() -> None:
    """The wrong amount paid at the gateway: exactly that amount, never the invoice's."""
    mismatched = MismatchedPaymentReceived(
        INVOICE, 116_999, 117_000, "pay-3", "QRIS", "QRIS", AT, AT
    )

    credit = credit_mismatched_payment(BUYER, mismatched)

    assert credit == BalanceCredited(
        BUYER, 116_999, INVOICE, "amount_mismatch", "gateway:xendit", AT
    )
    assert postings(credit) == [("gateway:xendit", -116_999), ("buyer:usernew1", 116_999)]


def test_a_balance_starts_from_zero_with_its_first_event() -> None:
    assert given_balance(BalanceCredited(BUYER, 1, INVOICE, "refund", "escrow:x", AT)) == Balance(
        BUYER, 1
    )


def test_an_event_of_another_kind_is_not_folded_into_a_balance() -> None:
    with pytest.raises(ValueError, match="not a balance event"):
        evolve_balance(Balance(BUYER, 0), paid("BALANCE"))


@pytest.mark.parametrize("amount", [100_001, 10**12])
def test_a_debit_of_more_than_the_balance_is_refused(amount: int) -> None:
    state = given_balance(BalanceToppedUp(BUYER, 100_000, "admin", AT))

    with pytest.raises(errors.InsufficientBalance):
        decide_debit(state, BUYER, amount, INVOICE, AT)


def test_a_debit_of_the_whole_balance_is_allowed() -> None:
    state = given_balance(BalanceToppedUp(BUYER, 100_000, "admin", AT))

    assert decide_debit(state, BUYER, 100_000, INVOICE, AT) == BalanceDebited(
        BUYER, 100_000, INVOICE, AT
    )


def test_a_buyer_without_a_balance_cannot_pay_from_it() -> None:
    with pytest.raises(errors.InsufficientBalance):
        decide_debit(None, BUYER, 1, INVOICE, AT)


@pytest.mark.parametrize("amount", [0, -1])
def test_a_debit_of_nothing_or_less_is_a_bug(amount: int) -> None:
    """The API never asks for it, so the domain refuses it loudly."""
    with pytest.raises(ValueError, match="positive"):
        decide_debit(Balance(BUYER, 100), BUYER, amount, INVOICE, AT)


@hypothesis.given(
    st.lists(st.tuples(st.sampled_from(["top_up", "credit", "debit"]), amounts), max_size=20)
)
def test_a_balance_decided_with_decide_debit_never_goes_below_zero(
    moves: list[tuple[str, int]],
) -> None:
    """Whatever the sequence of top-ups, credits and attempted debits, the balance equals the
    sum of what was allowed and never drops below zero."""
    state: Balance | None = None
    expected = 0
    for kind, amount in moves:
        event: Event
        if kind == "top_up":
            event = BalanceToppedUp(BUYER, amount, "admin", AT)
        elif kind == "credit":
            event = BalanceCredited(BUYER, amount, INVOICE, "refund", f"escrow:{INVOICE}", AT)
        else:
            amount = max(amount, 1)  # a debit is for an invoice, never of nothing
            try:
                event = decide_debit(state, BUYER, amount, INVOICE, AT)
            except errors.InsufficientBalance:
                assert amount > expected
                continue
        state = evolve_balance(state, event)
        expected += -amount if kind == "debit" else amount
        assert state == Balance(BUYER, expected)
        assert state.amount >= 0
