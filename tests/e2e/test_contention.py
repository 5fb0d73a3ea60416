"""Contention: many requests on one stream at once, over real HTTP to the real app on a real
SQLite file, started together with ``asyncio.gather``.

In one process, commands on the same stream take turns instead of losing races to each other:
200 BALANCE checkouts of one buyer are each either paid or refused for the balance, never 409;
gateway callbacks crediting that busy buyer are all recorded; 20 identical payment callbacks get
exactly one PAID, also when the twins arrive at two processes (two apps on one database file).
The ledger sums to zero after each.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from eventstore import ConcurrencyError, DuplicateEventError
from service.app import create_app
from service.application import Context, RegisterUser
from service.config import Config
from service.gateway.port import GatewayPayment, PaymentRequest
from service.gateway.qris import Merchant
from service.gateway.sandbox import SandboxGateway
from service.http.keys import SERVICE, STORE
from tests.e2e.conftest import Api, AppFactory, FakeClock, checkout_body, e2e_config

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BUYER = "crowd1"
PRICE = 15100  # a one-store checkout (checkout_body(stores=1))
CONCURRENT = 200
INSUFFICIENT = {"message": "Insufficient balance", "code": "INSUFFICIENT_BALANCE"}
Answer = tuple[int, dict[str, Any]]


@pytest.fixture
def config(database: str) -> Config:
    """No background expiry pass joins in uninvited."""
    return e2e_config(database, expiry_interval_seconds=60)


@pytest.fixture
def lost_races(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[Exception]:
    """Every append the store refused because another one changed a stream first: in one
    process, commands on one stream take turns, so there must be none."""
    assert api.client.app is not None
    store, lost = api.client.app[STORE], list[Exception]()
    append_streams: Callable[..., Awaitable[Any]] = store.append_streams

    async def counting(*args: Any, **kwargs: Any) -> Any:
        try:
            return await append_streams(*args, **kwargs)
        except (ConcurrencyError, DuplicateEventError) as error:
            lost.append(error)
            raise

    monkeypatch.setattr(store, "append_streams", counting)
    return lost


async def post(
    client: TestClient[web.Request, web.Application],
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> Answer:
    response = await client.post(path, json=body, headers=headers)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


def callback(
    api: Api, invoice: str, payment_id: str, client: TestClient[web.Request, web.Application] | None
) -> Any:
    """The gateway's signed invoice callback: ``invoice`` paid in full (PRICE)."""
    body = {
        "id": payment_id,
        "external_id": invoice,
        "status": "PAID",
        "amount": PRICE,
        "paid_amount": PRICE,
        "payment_method": "BANK_TRANSFER",
        "payment_channel": "BCA",
    }
    token = {"x-callback-token": api.config.callback_token}
    return post(client or api.client, "/callback/xendit/invoice", body, token)


async def buyer_with(api: Api, amount: int) -> None:
    """A buyer of the test's own (signed tokens, no password) holding ``amount``."""
    assert api.client.app is not None
    service = api.client.app[SERVICE]
    await service.handle(RegisterUser(BUYER, "buyer", None, "-"), Context("test"))
    if amount:
        await api.top_up(BUYER, amount)


def balance_checkouts(api: Api, n: int) -> list[Any]:
    return [
        post(
            api.client,
            "/payment-checkout",
            checkout_body(stores=1, source="BALANCE"),
            api.bearer(BUYER),
        )
        for _ in range(n)
    ]


def tally(answers: list[Answer]) -> Counter[tuple[int, str]]:
    return Counter(
        (status, str(answer.get("code") or answer.get("status"))) for status, answer in answers
    )


async def test_200_balance_checkouts_of_one_buyer_with_ample_funds_all_pay(
    api: Api, lost_races: list[Exception]
) -> None:
    """200 BALANCE checkouts of one buyer at once, the balance covering all: all 200 PAID,
    none having lost a race to another, no lock left behind."""
    await buyer_with(api, CONCURRENT * PRICE)

    answers = await asyncio.gather(*balance_checkouts(api, CONCURRENT))

    assert tally(answers) == {(200, "PAID"): CONCURRENT}
    assert (await api.balance(BUYER))["balance"] == 0
    assert api.client.app is not None
    assert len(api.client.app[SERVICE].locks) == 0  # every stream's lock dropped once unused
    assert lost_races == []
    await api.assert_balanced()


async def test_200_balance_checkouts_pay_exactly_as_many_as_the_funds_cover(
    api: Api, lost_races: list[Exception]
) -> None:
    """Funds for exactly 37 of 200 concurrent checkouts: 37 PAID, 163 Insufficient balance,
    none 409, none having lost a race to another."""
    await buyer_with(api, 37 * PRICE + PRICE - 1)

    answers = await asyncio.gather(*balance_checkouts(api, CONCURRENT))

    assert tally(answers) == {(200, "PAID"): 37, (400, "INSUFFICIENT_BALANCE"): 163}
    assert all(answer == INSUFFICIENT for status, answer in answers if status == 400)
    assert (await api.balance(BUYER))["balance"] == PRICE - 1
    assert lost_races == []
    await api.assert_balanced()


async def test_late_payment_callbacks_to_a_busy_buyer_are_all_recorded(
    api: Api, lost_races: list[Exception]
) -> None:
    """While one buyer's 200 BALANCE checkouts run, 15 callbacks for payments of that buyer's
    canceled invoices all answer 200 CREDITED (none 409), each credited once."""
    await buyer_with(api, 100 * PRICE)
    canceled = []
    for _ in range(15):
        created = await api.checkout(BUYER, stores=1)
        await api.platform("cancel", invoice_id=created["invoice"])
        canceled.append(created["invoice"])
    callbacks = [callback(api, invoice, f"late-{invoice}", None) for invoice in canceled]

    answers = await asyncio.gather(*balance_checkouts(api, CONCURRENT), *callbacks)

    checkouts, credited = answers[:CONCURRENT], answers[CONCURRENT:]
    assert credited == [(200, {"message": "CREDITED"})] * 15
    assert tally(checkouts) == {(200, "PAID"): 100, (400, "INSUFFICIENT_BALANCE"): 100}
    assert (await api.balance(BUYER))["balance"] == 15 * PRICE
    assert lost_races == []
    await api.assert_balanced()


async def test_20_identical_concurrent_callbacks_answer_one_paid(
    api: Api, lost_races: list[Exception]
) -> None:
    """20 identical invoice callbacks at once (five rounds, an invoice each): exactly one PAID,
    19 DUPLICATE, none having lost a race to a twin."""
    for round_ in range(5):
        invoice = (await api.checkout(stores=1))["invoice"]
        twins = [callback(api, invoice, f"p-{round_}", None) for _ in range(20)]

        answers = await asyncio.gather(*twins)

        messages = Counter(answer["message"] for _, answer in answers)
        assert messages == {"PAID": 1, "DUPLICATE": 19}, (round_, answers)
        assert {status for status, _ in answers} == {200}
    assert lost_races == []
    await api.assert_balanced()


async def test_identical_callbacks_at_two_processes_answer_one_paid(
    api: Api, aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """20 identical callbacks, 10 to each of two apps on one database file (two processes'
    worth of locks and caches): exactly one PAID; the other app's losers see it stored."""
    other = await aiohttp_client(create_app(config, clock=clock))
    for round_ in range(5):
        invoice = (await api.checkout(stores=1))["invoice"]
        twins = [callback(api, invoice, f"p-{round_}", other if i % 2 else None) for i in range(20)]

        answers = await asyncio.gather(*twins)

        messages = Counter(answer["message"] for _, answer in answers)
        assert messages == {"PAID": 1, "DUPLICATE": 19}, (round_, answers)
    await api.assert_balanced()


async def test_checkouts_paying_one_seller_do_not_wait_for_each_other(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Checkouts only read their sellers' accounts: one held up at the gateway (after its
    decision, before its append) does not hold up another checkout paying the same seller."""
    held, release = asyncio.Event(), asyncio.Event()

    class HeldOnce(SandboxGateway):
        """The sandbox, whose first invoice waits until the test releases it."""

        async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
            if not held.is_set():
                held.set()
                await release.wait()
            return await super().create_invoice(request)

    merchant = Merchant(config.merchant_name, config.merchant_city, config.merchant_account_id)
    gateway = HeldOnce(config.public_base_url, merchant)
    client = await aiohttp_client(create_app(config, clock=clock, gateway=gateway))
    api = Api(client, config, clock)
    first = asyncio.ensure_future(api.checkout(stores=1))  # one store: the first seller
    await asyncio.wait_for(held.wait(), timeout=5)

    try:
        second = await asyncio.wait_for(api.checkout(stores=1, buyer="seller2"), timeout=5)
    finally:
        release.set()
    created = await first

    assert second["transaction"][0]["status"] == "PENDING"
    assert created["invoice"] != second["invoice"]
