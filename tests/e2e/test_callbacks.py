"""The payment gateway's callbacks, end to end: /callback/xendit/invoice and /callback/xendit/qr.

Only the configured ``x-callback-token`` is believed; one payment pays an invoice once however
often it is reported; money of the wrong amount (the invoice stays PENDING), or that arrives too
late (expired, canceled) or twice (a second payment of a paid invoice), is kept as the buyer's
balance, and never pays or resurrects an invoice; a malformed body is a 4xx, never a 500. The
ledger sums to zero after every step checked, and a refused callback changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import structlog.testing

from service.http.keys import STORE
from tests.e2e.conftest import Api, FakeClock, raw_request, statuses

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BUYER = "usernew1"
TTL = 2 * 3600
TOTAL = 40200  # the default two-store checkout
AUTH_ERROR = {"message": "Auth Error", "code": "AUTH_ERROR"}
MISMATCH = {"message": "Paid amount does not match the invoice", "code": "PAID_AMOUNT_MISMATCH"}
PATHS = {"invoice": "/callback/xendit/invoice", "qr": "/callback/xendit/qr"}


# -- helpers ---------------------------------------------------------------------------------


async def snapshot(api: Api, invoice: str) -> tuple[Any, ...]:
    """What a refused callback must leave as it was: the log's head, the ledger, the invoice."""
    assert api.client.app is not None
    return (
        await api.client.app[STORE].head_position(),
        await api.accounts(),
        await api.detail(invoice),
    )


async def event_types(api: Api, invoice: str) -> list[str]:
    """The types of the invoice's events, in order."""
    assert api.client.app is not None
    return [event.type async for event in api.client.app[STORE].read_stream(f"invoice-{invoice}")]


async def send(
    api: Api,
    body: Any,
    *,
    path: str = "invoice",
    token: str | None = "",
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    """POST a callback; ``token=""`` means the configured one, ``None`` no header at all."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["x-callback-token"] = token or api.config.callback_token
    data = raw if raw is not None else orjson.dumps(body)
    response = await api.client.post(PATHS[path], data=data, headers=headers)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


def paid_body(
    invoice: str, amount: int = TOTAL, payment_id: str = "pay-1", **overrides: Any
) -> dict[str, Any]:
    """A Xendit invoice callback saying ``invoice`` was paid."""
    return {
        "id": payment_id,
        "external_id": invoice,
        "status": "PAID",
        "amount": amount,
        "paid_amount": amount,
        "paid_at": "2026-03-01T08:00:01.000Z",
        "payment_method": "BANK_TRANSFER",
        "payment_channel": "BCA",
        **overrides,
    }


def qr_body(
    invoice: str, reference: str, amount: int = TOTAL, payment_id: str = "qrpay-1", **data: Any
) -> dict[str, Any]:
    """A Xendit QR payment callback for ``invoice``."""
    return {
        "event": "qr.payment",
        "data": {
            "id": payment_id,
            "qr_id": reference,
            "reference_id": invoice,
            "amount": amount,
            "status": "SUCCEEDED",
            "created": "2026-03-01T08:00:01.000Z",
            "channel_code": "ID_DANA",
            **data,
        },
    }


# -- the callback token ----------------------------------------------------------------------


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("path", ["invoice", "qr"])
async def test_a_callback_without_the_right_token_is_refused(api: Api, path: str) -> None:
    """No x-callback-token, or a wrong one: 401 Auth Error, and nothing changes."""
    source = "QRIS" if path == "qr" else "XENDIT"
    created = await api.checkout(source=source)
    invoice, reference = created["invoice"], created["xendit_invoice"]
    body = qr_body(invoice, reference) if path == "qr" else paid_body(invoice)
    before = await snapshot(api, invoice)
    right = api.config.callback_token
    for token in (None, "wrong", right.upper(), right + "x", right[:-1], "Bearer " + right):
        assert await send(api, body, path=path, token=token) == (401, AUTH_ERROR), token
    # The token is checked before the body is even read.
    assert await send(api, None, path=path, token="wrong", raw=b"{not json") == (401, AUTH_ERROR)
    assert await snapshot(api, invoice) == before
    assert statuses(await api.detail(invoice))[0] == "PENDING"


async def test_a_paid_callback_with_the_token_pays_a_pending_invoice(api: Api) -> None:
    """The right token and a PAID body: the invoice and its transactions are PAID, the total is
    in escrow."""
    created = await api.checkout()
    invoice = created["invoice"]

    assert await send(api, paid_body(invoice)) == (200, {"message": "PAID"})

    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"escrow:{invoice}": TOTAL}
    assert await event_types(api, invoice) == ["InvoiceCreated", "InvoicePaid"]
    await api.assert_balanced()


async def test_a_settled_callback_pays_too(api: Api) -> None:
    """Xendit's SETTLED status is a payment like PAID."""
    created = await api.checkout()
    invoice = created["invoice"]
    body = paid_body(invoice, status="SETTLED")
    assert await send(api, body) == (200, {"message": "PAID"})
    assert statuses(await api.detail(invoice))[0] == "PAID"
    await api.assert_balanced()


# -- one payment, many callbacks -------------------------------------------------------------


async def test_the_same_payment_reported_twice_pays_once(api: Api) -> None:
    """Two callbacks with one payment id: PAID then DUPLICATE; one InvoicePaid, escrow once."""
    created = await api.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]

    first = await api.pay(reference, payment_id="p-1")
    second = await api.pay(reference, payment_id="p-1")

    assert first["callback"] == {"status": 200, "body": {"message": "PAID"}}
    assert second["callback"] == {"status": 200, "body": {"message": "DUPLICATE"}}
    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    assert await event_types(api, invoice) == ["InvoiceCreated", "InvoicePaid"]
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"escrow:{invoice}": TOTAL}
    await api.assert_balanced()


async def test_ten_concurrent_identical_callbacks_pay_once(api: Api) -> None:
    """Ten identical callbacks at once: all answered 200, one PAID and nine DUPLICATE, the
    invoice paid once (one InvoicePaid), the total in escrow once."""
    created = await api.checkout()
    invoice = created["invoice"]
    body = paid_body(invoice, payment_id="p-concurrent")

    answers = await asyncio.gather(*(send(api, body) for _ in range(10)))

    assert {status for status, _ in answers} == {200}
    messages = [answer["message"] for _, answer in answers]
    # Exactly one is told PAID, whoever got there first (tests/e2e/test_contention.py).
    assert sorted(messages) == ["DUPLICATE"] * 9 + ["PAID"]
    assert await event_types(api, invoice) == ["InvoiceCreated", "InvoicePaid"]
    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"escrow:{invoice}": TOTAL}
    await api.assert_balanced()


async def test_ten_concurrent_identical_late_callbacks_credit_once(
    api: Api, clock: FakeClock
) -> None:
    """Ten identical callbacks at once for an EXPIRED invoice (three rounds): all answered 200,
    each payment credited to the buyer once."""
    answers: list[tuple[int, dict[str, Any]]] = []
    for round_ in range(3):
        created = await api.checkout()
        invoice = created["invoice"]
        clock.advance(TTL + 1)
        await api.wait_until_expired_in_view(invoice)
        body = paid_body(invoice, payment_id=f"late-concurrent-{round_}")

        answers += await asyncio.gather(*(send(api, body) for _ in range(10)))

        assert (await api.balance(BUYER))["balance"] == TOTAL * (round_ + 1)
        assert (await api.accounts())["gateway:xendit"] == -TOTAL * (round_ + 1)
        assert (await event_types(api, invoice)).count("LatePaymentReceived") == 1
        await api.assert_balanced()
    assert [status for status, _ in answers] == [200] * 30, answers
    messages = {answer["message"] for _, answer in answers}
    assert "CREDITED" in messages
    assert messages <= {"CREDITED", "DUPLICATE"}


async def test_a_repeated_callback_after_settlement_changes_nothing(api: Api) -> None:
    """The payment reported again once the invoice is COMPLETED: DUPLICATE, nothing moves."""
    created = await api.checkout(stores=1)
    invoice, reference = created["invoice"], created["xendit_invoice"]
    await api.pay(reference, payment_id="p-1")
    await api.platform("done", invoice_id=invoice)
    before = await snapshot(api, invoice)

    again = await api.pay(reference, payment_id="p-1")

    assert again["callback"] == {"status": 200, "body": {"message": "DUPLICATE"}}
    assert await snapshot(api, invoice) == before
    assert statuses(await api.detail(invoice)) == ("COMPLETED", ["COMPLETED"])
    await api.assert_balanced()


# -- a wrong amount --------------------------------------------------------------------------


MISMATCH_CREDITED = {"message": "AMOUNT_MISMATCH_CREDITED"}


@pytest.mark.parametrize("path", ["invoice", "qr"])
@pytest.mark.parametrize("paid", [TOTAL - 1, TOTAL + 1, 1, TOTAL * 2])
async def test_a_paid_amount_different_from_the_total_is_credited_to_the_buyer(
    api: Api, path: str, paid: int
) -> None:
    """A paid amount that is not the invoice's total: 200 AMOUNT_MISMATCH_CREDITED, the money
    in the buyer's balance, the invoice still PENDING; the same payment again is a DUPLICATE
    credited once; the right amount afterwards pays it."""
    created = await api.checkout(source="QRIS" if path == "qr" else "XENDIT")
    invoice, reference = created["invoice"], created["xendit_invoice"]

    def body(amount: int, payment_id: str) -> dict[str, Any]:
        if path == "qr":
            return qr_body(invoice, reference, amount=amount, payment_id=payment_id)
        return paid_body(invoice, amount=amount, payment_id=payment_id)

    assert await send(api, body(paid, "wrong-1"), path=path) == (200, MISMATCH_CREDITED)

    assert statuses(await api.detail(invoice)) == ("PENDING", ["PENDING", "PENDING"])
    assert (await api.balance(BUYER))["balance"] == paid
    assert await api.accounts() == {"gateway:xendit": -paid, f"buyer:{BUYER}": paid}
    assert await event_types(api, invoice) == ["InvoiceCreated", "MismatchedPaymentReceived"]
    await api.assert_balanced()

    assert await send(api, body(paid, "wrong-1"), path=path) == (200, {"message": "DUPLICATE"})
    assert (await api.balance(BUYER))["balance"] == paid
    await api.assert_balanced()

    assert await send(api, body(TOTAL, "right-1"), path=path) == (200, {"message": "PAID"})
    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    assert await api.accounts() == {
        "gateway:xendit": -paid - TOTAL,
        f"buyer:{BUYER}": paid,
        f"escrow:{invoice}": TOTAL,
    }
    await api.assert_balanced()


async def test_a_mismatched_payment_under_the_gateway_invoice_id_leaves_it_payable(
    api: Api,
) -> None:
    """Xendit's callback names the gateway invoice in ``id``: a wrong amount paid under it does
    not use that id up, so the right amount paid under it later still pays the invoice."""
    created = await api.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]
    wrong = {**paid_body(invoice, amount=TOTAL - 5, payment_id=reference), "payment_id": "pay-a"}
    right = {**paid_body(invoice, payment_id=reference), "payment_id": "pay-b"}

    assert await send(api, wrong) == (200, MISMATCH_CREDITED)
    assert await send(api, right) == (200, {"message": "PAID"})

    assert statuses(await api.detail(invoice))[0] == "PAID"
    assert (await api.balance(BUYER))["balance"] == TOTAL - 5
    await api.assert_balanced()


async def test_concurrent_identical_mismatched_callbacks_credit_once(api: Api) -> None:
    """Ten identical wrong-amount callbacks at once: one AMOUNT_MISMATCH_CREDITED, nine
    DUPLICATE, the money credited once."""
    created = await api.checkout()
    invoice = created["invoice"]
    body = paid_body(invoice, amount=TOTAL - 200, payment_id="wrong-concurrent")

    answers = await asyncio.gather(*(send(api, body) for _ in range(10)))

    assert [status for status, _ in answers] == [200] * 10, answers
    messages = sorted(answer["message"] for _, answer in answers)
    assert messages == ["AMOUNT_MISMATCH_CREDITED"] + ["DUPLICATE"] * 9, answers
    assert (await api.balance(BUYER))["balance"] == TOTAL - 200
    assert (await event_types(api, invoice)).count("MismatchedPaymentReceived") == 1
    assert statuses(await api.detail(invoice))[0] == "PENDING"
    await api.assert_balanced()


async def test_a_mismatched_payment_logs_a_warning_with_both_amounts(api: Api) -> None:
    """Someone should look at a buyer who paid the wrong amount: a warning says who and what."""
    created = await api.checkout()
    invoice = created["invoice"]

    with structlog.testing.capture_logs() as logs:
        await send(api, paid_body(invoice, amount=TOTAL + 3, payment_id="wrong-log"))

    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [(w["invoice"], w["payment_id"], w["amount"], w["expected"]) for w in warnings] == [
        (invoice, "wrong-log", TOTAL + 3, TOTAL)
    ]


async def test_a_mismatched_payment_id_reused_for_another_invoice_is_refused(api: Api) -> None:
    """The payment id of a kept wrong amount cannot pay or be credited for another invoice."""
    first, second = await api.checkout(), await api.checkout()
    assert await send(api, paid_body(first["invoice"], amount=1, payment_id="shared")) == (
        200,
        MISMATCH_CREDITED,
    )
    before = await snapshot(api, second["invoice"])

    status, answer = await send(api, paid_body(second["invoice"], payment_id="shared"))

    assert (status, answer["code"]) == (409, "PAYMENT_ID_REUSED")
    assert await snapshot(api, second["invoice"]) == before
    await api.assert_balanced()


async def test_a_paid_amount_of_zero_is_refused(api: Api) -> None:
    """No money, nothing to keep: 400 PAID_AMOUNT_MISMATCH, and nothing changes."""
    created = await api.checkout()
    invoice = created["invoice"]
    before = await snapshot(api, invoice)

    assert await send(api, paid_body(invoice, amount=0)) == (400, MISMATCH)

    assert await snapshot(api, invoice) == before


async def test_a_callback_without_any_amount_is_refused(api: Api) -> None:
    """A PAID callback that says neither paid_amount nor amount: refused as a mismatch."""
    created = await api.checkout()
    invoice = created["invoice"]
    before = await snapshot(api, invoice)
    body = paid_body(invoice)
    del body["amount"], body["paid_amount"]
    assert await send(api, body) == (400, MISMATCH)
    assert await snapshot(api, invoice) == before


# -- money that arrives too late, or twice ----------------------------------------------------


@pytest.mark.parametrize("recorded", [False, True], ids=["expiry-not-yet-recorded", "recorded"])
async def test_a_payment_after_expiry_is_credited_to_the_buyer(
    api: Api, clock: FakeClock, recorded: bool
) -> None:
    """Paid after expired_at: the payment is kept as the buyer's balance, the invoice stays
    EXPIRED; the same payment again is not credited twice."""
    created = await api.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]
    clock.advance(TTL + 1)
    if recorded:
        await api.wait_until_expired_in_view(invoice)

    answer = await api.pay(reference, payment_id="late-1")

    assert answer["callback"] == {"status": 200, "body": {"message": "CREDITED"}}
    assert statuses(await api.detail(invoice)) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    balance = await api.balance(BUYER)
    assert balance["balance"] == TOTAL
    assert [(e["account"], e["amount"], e["type"], e["invoice"]) for e in balance["entries"]] == [
        (f"buyer:{BUYER}", TOTAL, "BalanceCredited", invoice)
    ]
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"buyer:{BUYER}": TOTAL}
    types = await event_types(api, invoice)
    assert types.count("InvoiceExpired") == 1
    assert "InvoicePaid" not in types
    await api.assert_balanced()

    again = await api.pay(reference, payment_id="late-1")
    assert again["callback"] == {"status": 200, "body": {"message": "DUPLICATE"}}
    assert (await api.balance(BUYER))["balance"] == TOTAL
    # And the platform cannot act on it as if it had been paid.
    store = created["transaction"][0]["invoice_onmarket"]
    refusal = await api.platform("done", expect=400, invoice_id=invoice, invoice_onmarket=store)
    assert refusal == {"message": "EXPIRED INVOICE", "code": "INVOICE_EXPIRED"}
    await api.assert_balanced()


async def test_a_payment_after_cancel_is_credited_to_the_buyer(api: Api) -> None:
    """Paid after the platform canceled: credited to the buyer, the invoice stays CANCELED."""
    created = await api.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]
    assert await api.platform("cancel", invoice_id=invoice) == {"message": "INVOICE CANCELED"}

    answer = await api.pay(reference)

    assert answer["callback"] == {"status": 200, "body": {"message": "CREDITED"}}
    assert statuses(await api.detail(invoice)) == ("CANCELED", ["CANCELED", "CANCELED"])
    assert (await api.balance(BUYER))["balance"] == TOTAL
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"buyer:{BUYER}": TOTAL}
    await api.assert_balanced()


async def test_a_second_payment_of_a_paid_invoice_is_credited_to_the_buyer(api: Api) -> None:
    """Another payment for an invoice already PAID: kept as the buyer's balance; the first one
    stays in escrow and the invoice stays PAID."""
    created = await api.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]
    await api.pay(reference, payment_id="p-1")

    # (The sandbox takes one payment per gateway invoice: the others come as callbacks.)
    second = await send(api, paid_body(invoice, payment_id="p-2"))

    assert second == (200, {"message": "CREDITED"})
    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    assert await api.accounts() == {
        "gateway:xendit": -2 * TOTAL,
        f"escrow:{invoice}": TOTAL,
        f"buyer:{BUYER}": TOTAL,
    }
    assert (await event_types(api, invoice)).count("InvoicePaid") == 1
    await api.assert_balanced()

    # A third payment, after the invoice settled, is kept too.
    for store in created["transaction"]:
        await api.platform("done", invoice_id=invoice, invoice_onmarket=store["invoice_onmarket"])
    third = await send(api, paid_body(invoice, payment_id="p-3"))
    assert third == (200, {"message": "CREDITED"})
    assert statuses(await api.detail(invoice))[0] == "COMPLETED"
    assert (await api.balance(BUYER))["balance"] == 2 * TOTAL
    assert f"escrow:{invoice}" not in await api.accounts()
    await api.assert_balanced()


async def test_a_late_payment_of_the_wrong_amount_is_credited_as_late(
    api: Api, clock: FakeClock
) -> None:
    """After expiry any amount is just a late payment: what was paid is credited, EXPIRED stays."""
    created = await api.checkout()
    invoice = created["invoice"]
    clock.advance(TTL + 1)
    await api.wait_until_expired_in_view(invoice)

    answer = await send(api, paid_body(invoice, amount=TOTAL - 100, payment_id="late-wrong"))

    assert answer == (200, {"message": "CREDITED"})
    assert statuses(await api.detail(invoice))[0] == "EXPIRED"
    assert await api.accounts() == {"gateway:xendit": -TOTAL + 100, f"buyer:{BUYER}": TOTAL - 100}
    await api.assert_balanced()


async def test_a_cancel_racing_a_payment_leaves_the_money_in_one_place(api: Api) -> None:
    """Cancel of a PENDING invoice and its payment callback at once, 20 times: either canceled
    with the payment credited to the buyer, or PAID (the cancel then needs a store: 400) with
    the total in escrow; never both, never lost."""
    await api.platform("cancel", expect=403, invoice_id="warm-up")  # scrypt once, before racing
    credited = in_escrow = 0
    for round_ in range(20):
        invoice = (await api.checkout())["invoice"]
        cancel = api.client.post(
            "/invoice/cancel",
            json={"platform": "ONMARKET", "invoice_id": invoice},
            headers=api.basic("onmarket"),
        )
        payment = send(api, paid_body(invoice, payment_id=f"race-{round_}"))
        if round_ % 2:
            canceled, paid = await asyncio.gather(cancel, payment)
        else:
            paid, canceled = await asyncio.gather(payment, cancel)
        cancel_answer = (canceled.status, await canceled.json())

        ledger = await api.accounts()
        status, _ = statuses(await api.detail(invoice))
        if status == "CANCELED":
            assert cancel_answer == (200, {"message": "INVOICE CANCELED"})
            assert paid == (200, {"message": "CREDITED"})
            assert f"escrow:{invoice}" not in ledger
            credited += TOTAL
        else:
            assert status == "PAID"
            assert paid == (200, {"message": "PAID"})
            assert cancel_answer[0] == 400
            assert cancel_answer[1]["code"] == "VALIDATION"
            assert ledger[f"escrow:{invoice}"] == TOTAL
            in_escrow += TOTAL
        assert ledger.get(f"buyer:{BUYER}", 0) == credited
        assert ledger["gateway:xendit"] == -(credited + in_escrow)
        await api.assert_balanced()


# -- the gateway's EXPIRED callback ----------------------------------------------------------


def expired_body(invoice: str) -> dict[str, Any]:
    return {"id": "xendit-inv-1", "external_id": invoice, "status": "EXPIRED"}


async def test_an_expired_callback_expires_a_pending_invoice(api: Api) -> None:
    """The gateway says EXPIRED: a PENDING invoice is EXPIRED at once (before expired_at);
    a payment after it is credited to the buyer."""
    created = await api.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]

    assert await send(api, expired_body(invoice)) == (200, {"message": "EXPIRED"})

    assert statuses(await api.detail(invoice)) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    assert await event_types(api, invoice) == ["InvoiceCreated", "InvoiceExpired"]
    refusal = await api.platform("cancel", expect=400, invoice_id=invoice)
    assert refusal == {"message": "EXPIRED INVOICE", "code": "INVOICE_EXPIRED"}
    # The same callback again: nothing more happens.
    assert await send(api, expired_body(invoice)) == (200, {"message": "IGNORED"})
    assert await event_types(api, invoice) == ["InvoiceCreated", "InvoiceExpired"]

    late = await api.pay(reference)
    assert late["callback"] == {"status": 200, "body": {"message": "CREDITED"}}
    assert statuses(await api.detail(invoice))[0] == "EXPIRED"
    assert (await api.balance(BUYER))["balance"] == TOTAL
    await api.assert_balanced()


@pytest.mark.parametrize("state", ["PAID", "CANCELED", "COMPLETED", "REFUND"])
async def test_an_expired_callback_changes_nothing_once_the_invoice_left_pending(
    api: Api, state: str
) -> None:
    """EXPIRED for a PAID, CANCELED, COMPLETED or refunding invoice: IGNORED, nothing moves."""
    created = await api.checkout(stores=1)
    invoice, reference = created["invoice"], created["xendit_invoice"]
    if state == "CANCELED":
        await api.platform("cancel", invoice_id=invoice)
    else:
        await api.pay(reference)
    if state == "COMPLETED":
        await api.platform("done", invoice_id=invoice)
    if state == "REFUND":
        store = created["transaction"][0]["invoice_onmarket"]
        await api.platform(
            "cancel", invoice_id=invoice, invoice_onmarket=store, buyer_username=BUYER
        )
        for _ in range(200):
            if (await api.detail(invoice))["status"] == "REFUNDED":
                break
            await asyncio.sleep(0.01)
    shown = await api.detail(invoice)
    before = await snapshot(api, invoice)

    assert await send(api, expired_body(invoice)) == (200, {"message": "IGNORED"})

    assert await snapshot(api, invoice) == before
    assert statuses(await api.detail(invoice)) == statuses(shown)
    await api.assert_balanced()


async def test_an_expired_callback_for_an_unknown_invoice_is_not_found(api: Api) -> None:
    """EXPIRED for an invoice that does not exist: 400 Invoice not found."""
    assert await send(api, expired_body("OM0000000000000")) == (
        400,
        {"message": "Invoice not found", "code": "INVOICE_NOT_FOUND"},
    )


async def test_a_paid_callback_for_an_unknown_invoice_is_not_found(api: Api) -> None:
    """PAID for an invoice that does not exist: 400 Invoice not found, no money appears."""
    assert await send(api, paid_body("OM0000000000000")) == (
        400,
        {"message": "Invoice not found", "code": "INVOICE_NOT_FOUND"},
    )
    assert await api.accounts() == {}


# -- QR payments ---------------------------------------------------------------------------


async def test_a_qris_checkout_is_paid_through_its_qr_callback(api: Api) -> None:
    """A QRIS checkout paid in the sandbox (a QR callback): PAID, total in escrow; the same QR
    payment again is a duplicate."""
    created = await api.checkout(source="QRIS")
    invoice, reference = created["invoice"], created["xendit_invoice"]
    assert reference.startswith("qr_")

    paid = await api.pay(reference, payment_id="qr-pay-1")

    assert paid["callback"] == {"status": 200, "body": {"message": "PAID"}}
    detail = await api.detail(invoice)
    assert statuses(detail) == ("PAID", ["PAID", "PAID"])
    assert detail["src"] == "QRIS"
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"escrow:{invoice}": TOTAL}
    again = await api.pay(reference, payment_id="qr-pay-1")
    assert again["callback"] == {"status": 200, "body": {"message": "DUPLICATE"}}
    assert await event_types(api, invoice) == ["InvoiceCreated", "InvoicePaid"]
    await api.assert_balanced()


async def test_a_qr_callback_not_succeeded_changes_nothing(api: Api) -> None:
    """A QR payment not SUCCEEDED: IGNORED, and nothing changes."""
    created = await api.checkout(source="QRIS")
    invoice, reference = created["invoice"], created["xendit_invoice"]
    before = await snapshot(api, invoice)

    for status in ("FAILED", "PENDING", "EXPIRED"):
        body = qr_body(invoice, reference, status=status)
        assert await send(api, body, path="qr") == (200, {"message": "IGNORED"})

    assert await snapshot(api, invoice) == before
    assert statuses(await api.detail(invoice))[0] == "PENDING"


async def test_a_qr_payment_after_expiry_is_credited_to_the_buyer(
    api: Api, clock: FakeClock
) -> None:
    """A QR payment after expired_at is kept as the buyer's balance; the invoice stays EXPIRED."""
    created = await api.checkout(source="QRIS")
    invoice, reference = created["invoice"], created["xendit_invoice"]
    clock.advance(TTL + 1)
    assert await send(api, qr_body(invoice, reference), path="qr") == (
        200,
        {"message": "CREDITED"},
    )
    assert statuses(await api.detail(invoice))[0] == "EXPIRED"
    assert (await api.balance(BUYER))["balance"] == TOTAL
    await api.assert_balanced()


# -- malformed callbacks ---------------------------------------------------------------------

INVOICE_FIELDS = ("id", "external_id", "status")


def invoice_variants(invoice: str) -> list[tuple[str, Any, str | None]]:
    """(name, body, field the errors must name) of malformed invoice callbacks."""
    good = paid_body(invoice)
    variants: list[tuple[str, Any, str | None]] = []
    for name in INVOICE_FIELDS:
        variants.append((f"no {name}", {k: v for k, v in good.items() if k != name}, name))
        variants.append((f"null {name}", {**good, name: None}, name))
    for name in ("id", "external_id"):
        variants.append((f"empty {name}", {**good, name: ""}, name))
        variants.append((f"long {name}", {**good, name: "x" * 201}, name))
        variants.append((f"number {name}", {**good, name: 12345}, name))
    for name in ("paid_amount", "amount"):
        for value in (str(TOTAL), float(TOTAL), True, -TOTAL, 10**12 + 1, [TOTAL], {"v": 1}):
            variants.append((f"{name}={value!r}", {**good, name: value}, name))
    for value in ("yesterday", "2026-03-01T08:00:01", 17, "2026-13-01T00:00:00Z"):
        variants.append((f"paid_at={value!r}", {**good, "paid_at": value}, "paid_at"))
    variants.append(("payment_method number", {**good, "payment_method": 7}, "payment_method"))
    variants.append(("status number", {**good, "status": 1}, "status"))
    return variants


def qr_variants(invoice: str, reference: str) -> list[tuple[str, Any, str | None]]:
    good = qr_body(invoice, reference)
    data = good["data"]
    variants: list[tuple[str, Any, str | None]] = [
        ("no data", {"event": "qr.payment"}, "data"),
        ("null data", {"event": "qr.payment", "data": None}, "data"),
        ("data a list", {"event": "qr.payment", "data": [data]}, "data"),
        ("data a string", {"event": "qr.payment", "data": "paid"}, "data"),
        ("no event", {"data": data}, "event"),
    ]
    for name in ("id", "qr_id", "reference_id", "amount", "status"):
        rest = {k: v for k, v in data.items() if k != name}
        variants.append((f"no data.{name}", {**good, "data": rest}, "data"))
    for value in (str(TOTAL), float(TOTAL), False, -1, None, 10**13):
        variants.append((f"amount={value!r}", {**good, "data": {**data, "amount": value}}, "data"))
    variants.append(("created", {**good, "data": {**data, "created": "soon"}}, "data"))
    return variants


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("path", ["invoice", "qr"])
async def test_malformed_callbacks_are_client_errors_never_500(api: Api, path: str) -> None:
    """Not JSON, not an object, the wrong content type, missing fields, an amount as a string,
    float, boolean or negative number: each a 4xx naming what is wrong; nothing changes."""
    source = "QRIS" if path == "qr" else "XENDIT"
    created = await api.checkout(source=source)
    invoice, reference = created["invoice"], created["xendit_invoice"]
    before = await snapshot(api, invoice)

    raw_cases: list[tuple[bytes, str, int, str]] = [
        (b"", "application/json", 400, "MALFORMED_JSON"),
        (b"{not json", "application/json", 400, "MALFORMED_JSON"),
        (b'{"id": "a",', "application/json", 400, "MALFORMED_JSON"),
        (b"\xff\xfe", "application/json", 400, "MALFORMED_JSON"),
        (b'{"a": NaN}', "application/json", 400, "MALFORMED_JSON"),
        (b"[1, 2]", "application/json", 400, "VALIDATION"),
        (b'"PAID"', "application/json", 400, "VALIDATION"),
        (b"null", "application/json", 400, "VALIDATION"),
        (b"id=1&status=PAID", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"id": "1"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ]
    for raw, content_type, status, code in raw_cases:
        got_status, got = await send(api, None, path=path, raw=raw, content_type=content_type)
        assert (got_status, got["code"]) == (status, code), (raw, got)
        assert isinstance(got["message"], str)

    variants = qr_variants(invoice, reference) if path == "qr" else invoice_variants(invoice)
    for name, body, field in variants:
        got_status, got = await send(api, body, path=path)
        assert got_status == 400, (name, got_status, got)
        assert got["message"] == "Invalid JSON Format", (name, got)
        assert got["code"] == "VALIDATION", (name, got)
        assert field in got["errors"], (name, got)

    assert await snapshot(api, invoice) == before
    await api.assert_balanced()


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("status", ["PAID", "EXPIRED"])
async def test_an_external_id_with_control_characters_is_a_client_error(
    api: Api, status: str
) -> None:
    """An external_id no invoice could have (a control character in it): 4xx, not 500."""
    await api.checkout()
    body = paid_body("OM\n0000000000000", status=status)
    got_status, got = await send(api, body)
    assert 400 <= got_status < 500, got
    assert await api.accounts() == {}


async def test_a_qr_reference_id_with_control_characters_is_a_client_error(api: Api) -> None:
    """A QR callback whose reference_id holds a control character: 4xx, not 500."""
    created = await api.checkout(source="QRIS")
    body = qr_body("OM\t" + created["invoice"], created["xendit_invoice"])
    got_status, got = await send(api, body, path="qr")
    assert 400 <= got_status < 500, got
    assert await api.accounts() == {}


async def test_a_payment_id_already_used_for_another_invoice_is_not_a_500(api: Api) -> None:
    """A callback reusing another invoice's payment id is answered (refused with a 4xx, or
    paid), never 500, and the ledger stays balanced."""
    first = await api.checkout()
    second = await api.checkout()
    await api.pay(first["xendit_invoice"], payment_id="shared-id")
    response = await api.client.post(
        f"/sandbox/invoices/{second['xendit_invoice']}/pay", json={"payment_id": "shared-id"}
    )
    answer = await response.json()
    assert response.status < 500, answer
    assert answer["callback"]["status"] < 500, answer
    await api.assert_balanced()


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("path", ["invoice", "qr"])
async def test_a_callback_token_that_is_not_utf8_is_an_auth_error(api: Api, path: str) -> None:
    """An x-callback-token header with bytes that are not UTF-8: 401 Auth Error, not 500."""
    created = await api.checkout()
    before = await snapshot(api, created["invoice"])
    body = orjson.dumps(paid_body(created["invoice"]))
    request = (
        f"POST {PATHS[path]} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
        + b"x-callback-token: "
        + api.config.callback_token.encode()
        + b"\xc3\r\n\r\n"
        + body
    )
    answer = await raw_request(api, request)
    assert await snapshot(api, created["invoice"]) == before
    assert answer is not None
    assert answer.status == 401, answer
    assert orjson.loads(answer.body) == AUTH_ERROR


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
@pytest.mark.parametrize("path", ["invoice", "qr"])
async def test_a_payment_time_out_of_range_is_a_client_error(
    api: Api, path: str, moment: str
) -> None:
    """A paid_at / created that cannot be expressed in UTC: 400 naming the field, not 500."""
    created = await api.checkout(source="QRIS" if path == "qr" else "XENDIT")
    invoice, reference = created["invoice"], created["xendit_invoice"]
    before = await snapshot(api, invoice)
    if path == "qr":
        body, field = qr_body(invoice, reference, created=moment), "data"
    else:
        body, field = paid_body(invoice, paid_at=moment), "paid_at"
    got_status, got = await send(api, body, path=path)
    assert await snapshot(api, invoice) == before
    assert (got_status, got["code"]) == (400, "VALIDATION"), got
    assert field in got["errors"]
