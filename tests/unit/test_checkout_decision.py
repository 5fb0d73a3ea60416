"""Unit tests for the checkout decision: each invariant of a new invoice, and what it creates.

Given the invoices holding marketplace numbers and the buyer's balance, when ``decide_checkout``
is asked, then its events, or the ``DomainError`` it raises with its stable code and the
``errors`` the API shows. Pure: fixed times, no store, no gateway.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.domain import errors
from service.domain.accounts import Account
from service.domain.balance import Balance
from service.domain.checkout import (
    CheckoutDecision,
    CheckoutOrder,
    PaymentHandle,
    decide_checkout,
)
from service.domain.events import (
    BalanceDebited,
    Event,
    InvoiceCanceled,
    InvoiceCreated,
    InvoicePaid,
    OnmarketInvoiceReserved,
    TransactionLine,
    UserRegistered,
)
from service.domain.invoice import Invoice, evolve
from service.domain.statuses import PAID, PENDING

INVOICE = "OM1a2B3c4D5e6F7"
OTHER = "OM9z8Y7x6W5v4U3"
BUYER = "usernew1"
NOW = datetime(2024, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
EXPIRES = NOW + timedelta(hours=2)
GATEWAY = PaymentHandle("5f9a0c1d2e3b4a5c6d7e8f90", "https://pay.example/5f9a", None)

LINE_A = TransactionLine("OMK-001", "seller1", 100_000, 15_000, 2_000, 5_000, None)
LINE_B = TransactionLine("OMK-002", "seller2", 40_000, 8_000, 0, 0, None)
TOTAL = LINE_A.total + LINE_B.total


def order(
    *lines: TransactionLine,
    total: int | None = None,
    service: str = "ONMARKET",
    source: str = "XENDIT",
) -> CheckoutOrder:
    lines = lines or (LINE_A, LINE_B)
    amount = sum(line.total for line in lines) if total is None else total
    return CheckoutOrder(BUYER, service, source, amount, lines)


def account(username: str, role: str = "buyer", platform: str | None = None) -> Account:
    return Account(UserRegistered(username, role, platform, "scrypt$...", NOW))


SELLERS = {name: account(name) for name in ("seller1", "seller2", "seller3")}


def decide(
    checkout: CheckoutOrder,
    *,
    holders: dict[str, Invoice | None] | None = None,
    sellers: dict[str, Account | None] | None = None,
    balance: Balance | None = None,
    now: datetime = NOW,
) -> CheckoutDecision:
    return decide_checkout(
        checkout,
        invoice=INVOICE,
        holders=holders or {},
        sellers=SELLERS if sellers is None else sellers,
        balance=balance,
        now=now,
        expires_at=EXPIRES,
    )


def refusal(checkout: CheckoutOrder, **given: Any) -> errors.DomainError:
    with pytest.raises(errors.DomainError) as refused:
        decide(checkout, **given)
    return refused.value


def holder(
    *events_after_creation: Event, lines: tuple[TransactionLine, ...] = (LINE_A,)
) -> Invoice:
    """Another buyer's invoice that reserved ``lines``' numbers, then had these events."""
    created = InvoiceCreated(
        OTHER,
        "someone",
        "ONMARKET",
        "XENDIT",
        sum(line.total for line in lines),
        lines,
        "ref-other",
        None,
        None,
        NOW - timedelta(minutes=5),
        NOW + timedelta(hours=1),
    )
    state = evolve(None, created)
    for event in events_after_creation:
        state = evolve(state, event)
    return state


# -- accepted ----------------------------------------------------------------------------------


def test_a_gateway_checkout_reserves_each_number_and_creates_a_pending_invoice() -> None:
    decision = decide(order())

    assert decision.reservations == (
        OnmarketInvoiceReserved("OMK-001", INVOICE),
        OnmarketInvoiceReserved("OMK-002", INVOICE),
    )
    assert decision.debit is None
    assert decision.needs_gateway
    assert decision.status == PENDING
    assert decision.invoice_events(GATEWAY) == [
        InvoiceCreated(
            INVOICE,
            BUYER,
            "ONMARKET",
            "XENDIT",
            TOTAL,
            (LINE_A, LINE_B),
            GATEWAY.reference,
            GATEWAY.payment_url,
            None,
            NOW,
            EXPIRES,
        )
    ]


def test_a_gateway_checkout_cannot_be_created_without_the_gateways_handle() -> None:
    with pytest.raises(ValueError, match="payment handle"):
        decide(order()).invoice_events(None)


def test_a_balance_checkout_debits_the_buyer_and_is_paid_at_once() -> None:
    decision = decide(order(source="BALANCE"), balance=Balance(BUYER, TOTAL))

    assert decision.debit == BalanceDebited(BUYER, TOTAL, INVOICE, NOW)
    assert not decision.needs_gateway
    assert decision.status == PAID
    created, paid = decision.invoice_events()
    assert isinstance(created, InvoiceCreated)
    assert created.gateway_reference == f"balance-{INVOICE}"
    assert paid == InvoicePaid(
        INVOICE, TOTAL, "BALANCE", f"balance-{INVOICE}", "BALANCE", "BALANCE", NOW
    )


def test_a_number_is_free_again_once_its_invoice_no_longer_holds_it() -> None:
    canceled = holder(InvoiceCanceled(OTHER, "onmarket", NOW - timedelta(minutes=1)))
    expired_by_time = holder()

    decide(order(), holders={"OMK-001": canceled})
    decide(order(), holders={"OMK-001": expired_by_time}, now=NOW + timedelta(hours=1))


def test_a_number_whose_holder_cannot_be_read_is_free() -> None:
    decide(order(), holders={"OMK-001": None})


def test_waybill_numbers_are_for_ondelivery_checkouts() -> None:
    with_waybill = replace(LINE_A, waybill_number="WB-1")

    decision = decide(order(with_waybill, service="ONDELIVERY"))

    assert decision.reservations == (OnmarketInvoiceReserved("OMK-001", INVOICE),)


# -- refused: the order's own invariants ------------------------------------------------------


def test_a_total_other_than_the_sum_of_the_lines_is_refused() -> None:
    refused = refusal(order(total=TOTAL + 1))

    assert isinstance(refused, errors.TotalMismatch)
    assert refused.code == "TOTAL_AMOUNT_MISMATCH"
    assert refused.errors == {
        "total_amount": [
            f"Must equal the sum of amount + freight_charge + insurance_amount ({TOTAL})."
        ]
    }


def test_a_total_of_nothing_is_refused() -> None:
    free = TransactionLine("OMK-003", "seller1", 0, 0, 0, 0, None)

    refused = refusal(order(free))

    assert refused.code == "TOTAL_AMOUNT_NOT_POSITIVE"
    assert refused.errors == {"total_amount": ["Must be more than 0."]}


def test_a_number_twice_in_one_checkout_is_refused_at_its_second_line() -> None:
    refused = refusal(order(LINE_A, LINE_B, replace(LINE_B, seller_username="seller3")))

    assert refused.code == "INVOICE_ONMARKET_REPEATED"
    assert refused.errors == {
        "transaction": {"2": {"invoice_onmarket": ["Appears twice in this checkout."]}}
    }


def test_a_waybill_number_outside_ondelivery_is_refused() -> None:
    refused = refusal(order(LINE_A, replace(LINE_B, waybill_number="WB-2")))

    assert refused.code == "WAYBILL_NOT_ALLOWED"
    assert refused.errors == {"transaction": ["Only ONDELIVERY checkouts carry waybill numbers."]}


def test_a_commission_above_its_amount_is_refused_naming_each_such_line() -> None:
    greedy_a = replace(LINE_A, commission_onmarket=LINE_A.amount + 1)
    greedy_b = replace(LINE_B, commission_onmarket=LINE_B.amount + 1)  # 40,001 of 40,000

    refused = refusal(order(greedy_a, LINE_B, replace(greedy_b, invoice_onmarket="OMK-003")))

    assert refused.code == "COMMISSION_ABOVE_AMOUNT"
    message = ["Must not exceed the transaction's amount."]
    assert refused.errors == {
        "transaction": {
            "0": {"commission_onmarket": message},
            "2": {"commission_onmarket": message},
        }
    }


def test_the_order_is_refused_for_its_first_broken_invariant_as_the_api_reports_it() -> None:
    """Commission first (the API checks each line before the whole), then the total."""
    greedy = replace(LINE_A, commission_onmarket=LINE_A.amount + 1)

    assert refusal(order(greedy, total=1)).code == "COMMISSION_ABOVE_AMOUNT"
    assert refusal(order(LINE_A, LINE_A, total=1)).code == "TOTAL_AMOUNT_MISMATCH"


# -- refused: the state of the log ------------------------------------------------------------


def test_numbers_held_by_a_live_invoice_are_refused_naming_each_line() -> None:
    pending = holder(lines=(LINE_A, LINE_B))
    paid = holder(InvoicePaid(OTHER, LINE_A.total, "XENDIT", "pay-1", "BANK", "BCA", NOW))

    refused = refusal(order(), holders={"OMK-001": paid, "OMK-002": pending})

    assert isinstance(refused, errors.InvoiceOnmarketInUse)
    assert refused.code == "INVOICE_ONMARKET_IN_USE"
    taken = [f"Already part of invoice {OTHER}, PENDING or PAID."]
    assert refused.errors == {
        "transaction": {"0": {"invoice_onmarket": taken}, "1": {"invoice_onmarket": taken}}
    }


def test_a_balance_checkout_the_balance_does_not_cover_is_refused() -> None:
    for balance in (None, Balance(BUYER, TOTAL - 1)):
        refused = refusal(order(source="BALANCE"), balance=balance)

        assert isinstance(refused, errors.InsufficientBalance)
        assert refused.code == "INSUFFICIENT_BALANCE"


def test_taken_numbers_are_reported_before_an_insufficient_balance() -> None:
    refused = refusal(order(source="BALANCE"), holders={"OMK-001": holder()}, balance=None)

    assert refused.code == "INVOICE_ONMARKET_IN_USE"


def test_a_gateway_checkout_does_not_look_at_the_balance() -> None:
    decide(order(), balance=None)


@pytest.mark.parametrize(
    "seller",
    [
        pytest.param(None, id="no-such-account"),
        pytest.param(replace(account("seller2"), enabled=False), id="disabled"),
        pytest.param(account("seller2", "platform", "ONMARKET"), id="platform-account"),
        pytest.param(account("seller2", "admin"), id="admin-account"),
    ],
)
def test_a_seller_who_is_not_an_enabled_buyer_account_is_refused_naming_the_line(
    seller: Account | None,
) -> None:
    refused = refusal(order(), sellers={**SELLERS, "seller2": seller})

    assert refused.code == "SELLER_NOT_FOUND"
    assert refused.message == "Invalid JSON Format"
    assert refused.errors == {
        "transaction": {"1": {"seller_username": ["No enabled buyer account of this name."]}}
    }


def test_unknown_sellers_are_reported_before_taken_numbers() -> None:
    refused = refusal(order(), sellers={}, holders={"OMK-001": holder()})

    assert refused.code == "SELLER_NOT_FOUND"
    assert refused.errors is not None
    assert set(refused.errors["transaction"]) == {"0", "1"}
