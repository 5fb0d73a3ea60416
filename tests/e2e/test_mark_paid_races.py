"""Races of POST /invoice/mark-paid, repeated: a mark-paid and a rival sent at once to the real
app, on one real SQLite file, a fresh one-store invoice every round, with the head starts of
``tests/e2e/test_races.py`` (whose fixtures, helpers and end-of-race checks these share).

1. mark-paid vs the gateway's PAID callback on a PENDING invoice: exactly one PAID. The winner is
   whichever event changed the PENDING invoice: InvoiceMarkedPaid (the callback is then a late
   payment, 200 CREDITED, its money in the buyer's balance) or InvoicePaid (the mark-paid is
   400 INVOICE IS ALREADY PAID). The total is in escrow once either way.
2. mark-paid vs the platform's cancel of the PENDING invoice: exactly one of InvoiceMarkedPaid
   and InvoiceCanceled is ever written. Cancel first: CANCELED, never paid, the mark-paid 400
   TRANSACTION IS ALREADY CANCELED. Mark-paid first: PAID, and the cancel finds a paid
   invoice: with the invoice id only it is refused (400 VALIDATION: name the store and the
   buyer), with the store and buyer named it is that store's refund (REFUND IN PROCESS), and
   the refund worker pays the buyer back (PAID, then REFUNDED). Rounds alternate the bodies.

After each round the whole ledger equals, account by account, what the test derives from the
winners (and sums to zero); after the last, no buyer balance or escrow was ever negative, the
hash chain verifies, the views equal a replay, nothing was logged at error level.

Rounds: ``MARK_PAID_ROUNDS``, 200 by default (each round is small: a checkout and two requests),
1,000 with ``SOAK=1`` (``make soak``), or ``RACE_ROUNDS`` when set.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from structlog.typing import EventDict

from service.domain.ledger import MANUAL_ACCOUNT
from tests.e2e.conftest import Api
from tests.e2e.test_races import (  # noqa: F401 - the races' fixtures, used by name
    BUYER,
    CANCELED,
    CREDITED,
    GATEWAY,
    OVERLAPPED,
    PAID,
    PRICE,
    REFUND_IN_PROCESS,
    ROUNDS_TO_SEE_BOTH_SIDES,
    STORE_AND_BUYER_REQUIRED,
    Answer,
    Books,
    LostAppends,
    at_once,
    checkout,
    config,
    error_logs,
    finish,
    lost_appends,
    payment_callback,
    post,
    shown,
    stagger,
    types_of,
    wait_for_status,
)

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def _rounds() -> int:
    if os.environ.get("RACE_ROUNDS"):
        return int(os.environ["RACE_ROUNDS"])
    return 1000 if os.environ.get("SOAK") == "1" else 200


ROUNDS = _rounds()

MARKED = {"message": "INVOICE MARKED AS PAID"}
ALREADY_PAID = {"message": "INVOICE IS ALREADY PAID", "code": "INVOICE_ALREADY_PAID"}
ALREADY_CANCELED = {
    "message": "TRANSACTION IS ALREADY CANCELED",
    "code": "TRANSACTION_ALREADY_CANCELED",
}


def mark_paid(api: Api, invoice: str, round_: int) -> Awaitable[Answer]:
    body = {
        "platform": "ONMARKET",
        "invoice_id": invoice,
        "reference": f"TRF-{round_}",
        "reason": "bank transfer",
    }
    return post(api, "/invoice/mark-paid", body, api.basic("onmarket"))


def cancel(api: Api, invoice: str, **named: str) -> Awaitable[Answer]:
    body = {"platform": "ONMARKET", "invoice_id": invoice, **named}
    return post(api, "/invoice/cancel", body, api.basic("onmarket"))


def both_sides_won(tally: Counter[str], *sides: str) -> None:
    if ROUNDS >= ROUNDS_TO_SEE_BOTH_SIDES:
        assert all(tally[side] for side in sides), tally


async def test_mark_paid_and_a_gateway_payment_pay_the_invoice_once(
    error_logs: list[EventDict],  # noqa: F811
    api: Api,
    lost_appends: LostAppends,  # noqa: F811
    record_property: Callable[[str, object], None],
) -> None:
    """Exactly one PAID; a losing callback is credited to the buyer, never lost or doubled."""
    started, books, tally = time.perf_counter(), Books(), Counter[str]()
    await mark_paid(api, "OM0000000000000", -1)  # scrypt once, before racing
    for round_ in range(ROUNDS):
        invoice, _ = await checkout(api, "XENDIT")

        lost = lost_appends.count
        marked, payment = await at_once(
            mark_paid(api, invoice, round_),
            payment_callback(api, invoice, f"race-mark-{round_}"),
            apart=stagger(round_),
        )
        tally[OVERLAPPED] += lost_appends.count > lost

        why = (round_, invoice, marked, payment, error_logs)
        assert await shown(api, invoice) == ("PAID", ["PAID"]), why
        if marked == (200, MARKED):
            assert payment == (200, CREDITED), why
            tally["mark-paid won"] += 1
            assert await types_of(api, invoice) == [
                "InvoiceCreated",
                "InvoiceMarkedPaid",
                "LatePaymentReceived",
            ], why
            books.move(MANUAL_ACCOUNT, f"escrow:{invoice}", PRICE)
            books.move(GATEWAY, f"buyer:{BUYER}", PRICE)
        else:
            assert (marked, payment) == ((400, ALREADY_PAID), (200, PAID)), why
            tally["payment won"] += 1
            assert await types_of(api, invoice) == ["InvoiceCreated", "InvoicePaid"], why
            books.move(GATEWAY, f"escrow:{invoice}", PRICE)
        await books.check(api, why)

    await finish(
        api,
        books,
        error_logs,
        lost_appends,
        record_property,
        "mark-paid vs payment",
        tally,
        started,
        ROUNDS,
    )
    both_sides_won(tally, "mark-paid won", "payment won")


async def test_mark_paid_and_cancel_of_a_pending_invoice_have_one_winner(
    error_logs: list[EventDict],  # noqa: F811
    api: Api,
    lost_appends: LostAppends,  # noqa: F811
    record_property: Callable[[str, object], None],
) -> None:
    """Exactly one of InvoiceMarkedPaid and InvoiceCanceled; a canceled invoice is never paid,
    a marked one is canceled only by refund, to the buyer's balance."""
    started, books, tally = time.perf_counter(), Books(), Counter[str]()
    await mark_paid(api, "OM0000000000000", -1)  # scrypt once, before racing
    for round_ in range(ROUNDS):
        invoice, store = await checkout(api, "XENDIT")
        body = "full" if round_ % 4 >= 2 else "bare"
        named = {"invoice_onmarket": store, "buyer_username": BUYER} if body == "full" else {}

        lost = lost_appends.count
        marked, canceled = await at_once(
            mark_paid(api, invoice, round_),
            cancel(api, invoice, **named),
            apart=stagger(round_),
        )
        tally[OVERLAPPED] += lost_appends.count > lost

        why = (round_, body, invoice, marked, canceled, error_logs)
        if canceled == (200, CANCELED):
            assert marked == (400, ALREADY_CANCELED), why
            tally[f"{body}: cancel won"] += 1
            assert await shown(api, invoice) == ("CANCELED", ["CANCELED"]), why
            assert await types_of(api, invoice) == ["InvoiceCreated", "InvoiceCanceled"], why
        else:
            assert marked == (200, MARKED), why
            tally[f"{body}: mark-paid won"] += 1
            books.move(MANUAL_ACCOUNT, f"escrow:{invoice}", PRICE)
            if body == "bare":
                assert canceled == (400, STORE_AND_BUYER_REQUIRED), why
                assert await shown(api, invoice) == ("PAID", ["PAID"]), why
                assert await types_of(api, invoice) == ["InvoiceCreated", "InvoiceMarkedPaid"], why
            else:
                assert canceled == (200, REFUND_IN_PROCESS), why
                await wait_for_status(api, invoice, "REFUNDED")
                assert await types_of(api, invoice) == [
                    "InvoiceCreated",
                    "InvoiceMarkedPaid",
                    "RefundRequested",
                    "RefundCompleted",
                ], why
                books.move(f"escrow:{invoice}", f"buyer:{BUYER}", PRICE)
        await books.check(api, why)

    await finish(
        api,
        books,
        error_logs,
        lost_appends,
        record_property,
        "mark-paid vs cancel",
        tally,
        started,
        ROUNDS,
    )
    both_sides_won(tally, "bare: cancel won", "bare: mark-paid won")
    both_sides_won(tally, "full: cancel won", "full: mark-paid won")
