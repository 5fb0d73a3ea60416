"""The sandbox gateway takes one payment per invoice or QR code, as Xendit does, over HTTP.

Pay pressed many times at once, or again after the invoice was paid, makes one payment: the
first answers with the callback it sent, every other one ``409 ALREADY_PAID`` and sends nothing,
so nothing lands on the buyer's balance as a late payment. Its invoice callback names the
gateway invoice in ``id`` and the payment in ``payment_id``, as Xendit's does; the service
records the payment under both (seen here in the ``InvoicePaid`` event).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.gateway.port import PAID
from service.http.keys import GATEWAY, READ_MODEL, STORE
from service.http.sandbox_callbacks import QR_CALLBACK, payment_callback
from tests.e2e.conftest import Api

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BUYER = "usernew1"
TOTAL = 40200  # the default two-store checkout
ALREADY_PAID = {"message": "INVOICE ALREADY PAID", "code": "ALREADY_PAID"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SOURCES = pytest.mark.parametrize("source", ["XENDIT", "QRIS"])


async def post_pay(api: Api, reference: str, **options: Any) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(f"/sandbox/invoices/{reference}/pay", json=options)
    return response.status, await response.json()


async def invoice_events(api: Api, invoice: str) -> list[tuple[str, dict[str, Any]]]:
    store = api.client.app[STORE]
    return [(e.type, e.data) async for e in store.read_stream(f"invoice-{invoice}")]


async def paid_once(api: Api, invoice: str) -> None:
    """The invoice holds one payment, in escrow; the buyer's balance was not touched."""
    assert [kind for kind, _ in await invoice_events(api, invoice)] == [
        "InvoiceCreated",
        "InvoicePaid",
    ]
    assert (await api.detail(invoice))["status"] == "PAID"
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"escrow:{invoice}": TOTAL}
    assert (await api.balance(BUYER))["balance"] == 0
    await api.assert_balanced()


@SOURCES
async def test_twenty_concurrent_pays_make_one_payment(api: Api, source: str) -> None:
    """20 Pay at once: one 200 with its PAID callback, 19 × 409 ALREADY_PAID, one payment."""
    created = await api.checkout(source=source)
    reference = created["xendit_invoice"]

    answers = await asyncio.gather(*(post_pay(api, reference) for _ in range(20)))

    paid = [body for status, body in answers if status == 200]
    assert len(paid) == 1, answers
    assert paid[0]["callback"] == {"status": 200, "body": {"message": "PAID"}}
    assert [body for status, body in answers if status != 200] == [ALREADY_PAID] * 19
    await paid_once(api, created["invoice"])
    known = await api.client.app[GATEWAY].status(reference)
    assert (known.status, known.payment_id) == (PAID, paid[0]["payment_id"])


async def test_twenty_concurrent_pay_buttons_make_one_payment(api: Api) -> None:
    """20 pages' Pay buttons (each its own payment id) at once: all back to the page, one
    payment, nothing credited to the buyer."""
    created = await api.checkout()
    reference = created["xendit_invoice"]

    async def press(n: int) -> int:
        response = await api.client.post(
            f"/sandbox/invoices/{reference}/pay",
            data={"payment_id": f"sandbox-page-{n}"},
            headers=FORM,
            allow_redirects=False,
        )
        return response.status

    assert await asyncio.gather(*(press(n) for n in range(20))) == [303] * 20
    await paid_once(api, created["invoice"])


@SOURCES
async def test_a_pay_after_the_invoice_was_paid_is_refused_and_sends_nothing(
    api: Api, source: str
) -> None:
    """Paid once: another Pay (any other payment id, with or without its callback) is 409
    ALREADY_PAID; no event, no money moves, the gateway keeps the first payment."""
    created = await api.checkout(source=source)
    invoice, reference = created["invoice"], created["xendit_invoice"]
    await api.pay(reference, payment_id="first-1")
    head = await api.client.app[STORE].head_position()

    for options in ({}, {"payment_id": "second-1"}, {"deliver_callback": False}):
        assert await post_pay(api, reference, **options) == (409, ALREADY_PAID)
    # The first payment's own id with another amount is not that payment either.
    assert await post_pay(api, reference, payment_id="first-1", amount=1) == (409, ALREADY_PAID)

    assert await api.client.app[STORE].head_position() == head
    await paid_once(api, invoice)
    known = await api.client.app[GATEWAY].status(reference)
    assert (known.status, known.payment_id, known.paid_amount) == (PAID, "first-1", TOTAL)


async def test_the_invoice_callback_names_the_gateway_invoice_and_the_payment(api: Api) -> None:
    """The invoice callback carries id = xendit_invoice, external_id = our invoice and
    payment_id = the payment: the service records the payment under both ids."""
    created = await api.checkout()
    invoice, reference = created["invoice"], created["xendit_invoice"]

    answer = await api.pay(reference)

    assert answer["payment_id"].startswith("sandbox-")
    assert answer["payment_id"] != reference
    paid = [data for kind, data in await invoice_events(api, invoice) if kind == "InvoicePaid"]
    assert len(paid) == 1
    assert (paid[0]["invoice"], paid[0]["payment_id"], paid[0]["payment_aliases"]) == (
        invoice,
        answer["payment_id"],
        [reference],
    )


async def test_the_qr_callback_names_the_qr_code_and_the_payment(api: Api) -> None:
    """The QR callback is Xendit's qr.payment: data.id the payment, data.qr_id the QR code,
    data.reference_id our invoice; the service records the payment under its id."""
    created = await api.checkout(source="QRIS")
    invoice, reference = created["invoice"], created["xendit_invoice"]
    state = await api.client.app[READ_MODEL].invoice_by_gateway_reference(reference)
    assert state is not None
    sent = payment_callback(state, "qr-pay-9", TOTAL, api.clock())
    assert sent.path == QR_CALLBACK
    assert sent.body["event"] == "qr.payment"
    data = sent.body["data"]
    assert (data["id"], data["qr_id"], data["reference_id"]) == ("qr-pay-9", reference, invoice)
    assert (data["amount"], data["currency"], data["status"]) == (TOTAL, "IDR", "SUCCEEDED")

    answer = await api.pay(reference, payment_id="qr-pay-9")

    assert answer["callback"] == {"status": 200, "body": {"message": "PAID"}}
    paid = [data for kind, data in await invoice_events(api, invoice) if kind == "InvoicePaid"]
    assert (paid[0]["payment_id"], paid[0]["source"]) == ("qr-pay-9", "QRIS")
