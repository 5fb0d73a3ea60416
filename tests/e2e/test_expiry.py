"""Expiry end to end: the background task, the API's view of time, and expiry racing a payment.

An invoice still PENDING at ``expired_at`` is expired: the API shows it EXPIRED at once, the
background task records it within a second, and a payment racing the expiry ends either in the
escrow of a PAID invoice or, as a late payment, in the buyer's balance, never both and never
lost. The ledger sums to zero after every step checked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest

from service.app import create_app
from service.config import Config
from service.http.keys import READ_MODEL, SERVICE, STORE
from service.views.invoice_state import decode_state
from service.workers.expiry import expire_due
from tests.e2e.conftest import Api, AppFactory, FakeClock, statuses
from tests.sqlviews import views_query

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BUYER = "usernew1"
TTL = 2 * 3600
TOTAL = 40200  # the default two-store checkout


# -- helpers ---------------------------------------------------------------------------------


async def view_status(api: Api, invoice: str) -> tuple[str, list[str]]:
    """The invoice's status and its transactions' as the invoice view stores them."""
    assert api.client.app is not None
    rows = await views_query(
        api.client.app[STORE],
        "SELECT status, state FROM invoice_view WHERE invoice = ?",
        (invoice,),
    )
    status, state = rows[0]
    return status, [t.status for t in decode_state(state).transactions]


async def wait_for_view(api: Api, invoice: str, status: str, within: float = 1.0) -> float:
    """Poll the invoice view until it stores ``status``; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        current, _ = await view_status(api, invoice)
        if current == status:
            return loop.time() - started
        assert loop.time() - started < within, f"{invoice} still {current} after {within} s"
        await asyncio.sleep(0.01)


async def event_types(api: Api, invoice: str) -> list[str]:
    assert api.client.app is not None
    return [event.type async for event in api.client.app[STORE].read_stream(f"invoice-{invoice}")]


async def send_payment(api: Api, invoice: str, payment_id: str) -> tuple[int, dict[str, Any]]:
    """The gateway's PAID callback for the invoice's total."""
    response = await api.client.post(
        "/callback/xendit/invoice",
        data=orjson.dumps(
            {
                "id": payment_id,
                "external_id": invoice,
                "status": "PAID",
                "amount": TOTAL,
                "paid_amount": TOTAL,
                "payment_method": "BANK_TRANSFER",
                "payment_channel": "BCA",
            }
        ),
        headers={"Content-Type": "application/json", "x-callback-token": api.config.callback_token},
    )
    answer: dict[str, Any] = await response.json()
    return response.status, answer


# -- the background task ---------------------------------------------------------------------


async def test_the_expiry_task_expires_a_pending_invoice_within_a_second(
    api: Api, clock: FakeClock
) -> None:
    """Past expired_at: the detail shows EXPIRED at once, the task records it within a second,
    every transaction EXPIRED, one InvoiceExpired however often the task runs."""
    created = await api.checkout()
    invoice = created["invoice"]
    clock.advance(TTL + 1)

    assert statuses(await api.detail(invoice)) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    took = await wait_for_view(api, invoice, "EXPIRED", within=1.0)

    assert took < 1.0
    assert await view_status(api, invoice) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    detail = await api.detail(invoice)
    assert statuses(detail) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    assert detail["updatedAt"] == detail["expired_at"]  # expired at its expiry time, not later
    await asyncio.sleep(0.15)  # several more passes of the task
    assert await event_types(api, invoice) == ["InvoiceCreated", "InvoiceExpired"]
    assert await api.accounts() == {}


async def test_the_detail_is_never_pending_past_expiry_even_before_the_task_runs(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """With the task a minute away, the view still says PENDING but GET /invoice/detail already
    answers EXPIRED (invoice and transactions), and a platform cannot act on it."""
    lazy = dataclasses.replace(config, expiry_interval_seconds=60)
    api = Api(await aiohttp_client(create_app(lazy, clock=clock)), lazy, clock)
    created = await api.checkout()
    invoice = created["invoice"]
    clock.advance(TTL + 1)

    assert statuses(await api.detail(invoice)) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    assert await view_status(api, invoice) == ("PENDING", ["PENDING", "PENDING"])
    for action in ("done", "cancel"):
        answer = await api.platform(action, expect=400, invoice_id=invoice)
        assert answer == {"message": "EXPIRED INVOICE", "code": "INVOICE_EXPIRED"}
    assert await event_types(api, invoice) == ["InvoiceCreated"]


@pytest.mark.parametrize("before", [0.001, 1, 60])
async def test_an_invoice_is_pending_until_its_expiry_moment(
    api: Api, clock: FakeClock, before: float
) -> None:
    """Just before expired_at the invoice is PENDING (and the task leaves it); at expired_at it
    is EXPIRED."""
    created = await api.checkout()
    invoice = created["invoice"]
    clock.advance(TTL - before)
    await asyncio.sleep(0.12)  # the task ran at least twice

    assert statuses(await api.detail(invoice)) == ("PENDING", ["PENDING", "PENDING"])
    assert await view_status(api, invoice) == ("PENDING", ["PENDING", "PENDING"])

    clock.advance(before)
    assert statuses(await api.detail(invoice)) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
    await wait_for_view(api, invoice, "EXPIRED")


async def test_a_payment_just_before_expiry_pays(api: Api, clock: FakeClock) -> None:
    """A payment a millisecond before expired_at pays the invoice; it then never expires."""
    created = await api.checkout()
    invoice = created["invoice"]
    clock.advance(TTL - 0.001)
    paid = await api.pay(created["xendit_invoice"])
    assert paid["callback"] == {"status": 200, "body": {"message": "PAID"}}
    clock.advance(1)
    await asyncio.sleep(0.12)
    assert statuses(await api.detail(invoice)) == ("PAID", ["PAID", "PAID"])
    assert await view_status(api, invoice) == ("PAID", ["PAID", "PAID"])
    assert await api.accounts() == {"gateway:xendit": -TOTAL, f"escrow:{invoice}": TOTAL}


async def test_the_task_expires_every_due_invoice_and_only_those(
    api: Api, clock: FakeClock
) -> None:
    """Several invoices due at once all expire within a second; a PAID, a CANCELED, a
    COMPLETED one and one not yet due are left as they are."""
    due = [(await api.checkout())["invoice"] for _ in range(5)]
    paid = await api.checkout()
    await api.pay(paid["xendit_invoice"])
    canceled = (await api.checkout())["invoice"]
    await api.platform("cancel", invoice_id=canceled)
    completed = await api.checkout(stores=1)
    await api.pay(completed["xendit_invoice"])
    await api.platform("done", invoice_id=completed["invoice"])
    clock.advance(60)
    later = (await api.checkout())["invoice"]  # due a minute after the others

    clock.advance(TTL - 60 + 1)
    for invoice in due:
        await wait_for_view(api, invoice, "EXPIRED", within=1.0)
    await asyncio.sleep(0.12)

    for invoice in due:
        assert statuses(await api.detail(invoice)) == ("EXPIRED", ["EXPIRED", "EXPIRED"])
        assert await event_types(api, invoice) == ["InvoiceCreated", "InvoiceExpired"]
    assert await view_status(api, paid["invoice"]) == ("PAID", ["PAID", "PAID"])
    assert await view_status(api, canceled) == ("CANCELED", ["CANCELED", "CANCELED"])
    assert await view_status(api, completed["invoice"]) == ("COMPLETED", ["COMPLETED"])
    assert await view_status(api, later) == ("PENDING", ["PENDING", "PENDING"])
    for invoice in (paid["invoice"], canceled, completed["invoice"], later):
        assert "InvoiceExpired" not in await event_types(api, invoice)
    await api.assert_balanced()


# -- expiry racing a payment -----------------------------------------------------------------


async def assert_one_outcome(
    api: Api, invoice: str, answer: tuple[int, dict[str, Any]], before: dict[str, int]
) -> str:
    """The payment ended in exactly one place: the escrow of a PAID invoice, or the buyer's
    balance of an EXPIRED one. Returns the invoice's status."""
    after = await api.accounts()
    detail = await api.detail(invoice)
    view, _ = await view_status(api, invoice)
    types = await event_types(api, invoice)
    buyer = after.get(f"buyer:{BUYER}", 0) - before.get(f"buyer:{BUYER}", 0)
    gateway = after.get("gateway:xendit", 0) - before.get("gateway:xendit", 0)
    escrow = after.get(f"escrow:{invoice}", 0)
    assert gateway == -TOTAL, (answer, after)  # the money came in once
    if detail["status"] == "PAID":
        assert answer == (200, {"message": "PAID"})
        assert (escrow, buyer) == (TOTAL, 0)
        assert view == "PAID"
        assert types == ["InvoiceCreated", "InvoicePaid"]
    else:
        assert statuses(detail) == ("EXPIRED", ["EXPIRED", "EXPIRED"]), (answer, detail)
        assert answer == (200, {"message": "CREDITED"})
        assert (escrow, buyer) == (0, TOTAL)
        assert view == "EXPIRED"
        assert types == ["InvoiceCreated", "InvoiceExpired", "LatePaymentReceived"]
    await api.assert_balanced()
    return str(detail["status"])


async def test_expiry_and_a_payment_at_the_expiry_moment(api: Api, clock: FakeClock) -> None:
    """At exactly expired_at, the expiry and a payment callback at once, 25 times: the money
    ends either in a PAID invoice's escrow or in the buyer's balance of an EXPIRED one."""
    assert api.client.app is not None
    views, service = api.client.app[READ_MODEL], api.client.app[SERVICE]
    for round_ in range(25):
        invoice = (await api.checkout())["invoice"]
        before = await api.accounts()
        clock.advance(TTL)  # exactly expired_at

        payment = send_payment(api, invoice, f"race-{round_}")
        expiry = expire_due(views, service, clock())
        if round_ % 2:
            answer, _ = await asyncio.gather(payment, expiry)
        else:
            _, answer = await asyncio.gather(expiry, payment)

        # At expired_at a payment is late by definition: it is the buyer's money.
        assert await assert_one_outcome(api, invoice, answer, before) == "EXPIRED"
    assert (await api.balance(BUYER))["balance"] == 25 * TOTAL


async def test_expiry_and_a_payment_racing_across_the_expiry_moment(
    api: Api, clock: FakeClock
) -> None:
    """The clock crosses expired_at while a payment callback is in flight and the expiry runs,
    30 times with varied interleavings: exactly one outcome each time, nothing lost."""
    assert api.client.app is not None
    views, service = api.client.app[READ_MODEL], api.client.app[SERVICE]
    outcomes: list[str] = []

    async def expire_at_the_deadline(yields: int) -> int:
        for _ in range(yields):
            await asyncio.sleep(0)
        clock.advance(0.001)  # now exactly expired_at
        return await expire_due(views, service, clock())

    for round_ in range(30):
        invoice = (await api.checkout())["invoice"]
        before = await api.accounts()
        clock.advance(TTL - 0.001)

        answer, _ = await asyncio.gather(
            send_payment(api, invoice, f"cross-{round_}"), expire_at_the_deadline(round_ % 15)
        )

        outcomes.append(await assert_one_outcome(api, invoice, answer, before))
    buyer = (await api.balance(BUYER))["balance"]
    assert buyer == outcomes.count("EXPIRED") * TOTAL
    ledger = await api.accounts()
    assert ledger["gateway:xendit"] == -30 * TOTAL
    escrow = sum(amount for account, amount in ledger.items() if account.startswith("escrow:"))
    assert escrow == outcomes.count("PAID") * TOTAL
