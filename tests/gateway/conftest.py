"""Gateway fixtures: a fake Xendit on 127.0.0.1, adapters pointed at it, and the shared harness.

``gateway`` is parametrized over both adapters, so a test that takes it runs once against the
sandbox and once against Xendit's adapter talking to the fake. It comes with the one thing the
port cannot do and a test needs: a buyer paying at the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.application import new_invoice_id
from service.gateway.port import Gateway, PaymentItem, PaymentRequest
from service.gateway.qris import Merchant
from service.gateway.sandbox import SandboxGateway
from service.gateway.xendit import XenditGateway
from tests.fakes.xendit import SECRET_KEY, FakeXendit

SANDBOX_BASE_URL = "http://127.0.0.1:8080"
SANDBOX_MERCHANT = Merchant("Gateway Tests", "Jakarta", "936000000000000001")
BACKOFF = 0.01  # keeps the retry tests fast; the backoff test sets its own
TIMEOUT = 2.0


def payment_request(
    amount: int = 40200, *, invoice: str | None = None, ttl: float = 3600, items: int = 2
) -> PaymentRequest:
    """A request as checkout makes it: our invoice id, the total, one item per store."""
    invoice = invoice or new_invoice_id("ONMARKET")
    prices = [amount // items] * (items - 1) + [amount - amount // items * (items - 1)]
    return PaymentRequest(
        invoice,
        amount,
        "ONMARKET checkout",
        datetime.now(UTC) + timedelta(seconds=ttl),
        tuple(PaymentItem(f"INV/ONM/G-{n}", price) for n, price in enumerate(prices, 1)),
    )


def xendit_for(fake: FakeXendit, **options: Any) -> XenditGateway:
    """Xendit's adapter pointed at ``fake``, fast unless told otherwise."""
    secret_key = options.pop("secret_key", SECRET_KEY)
    settings: dict[str, Any] = {
        "base_url": fake.url,
        "timeout": TIMEOUT,
        "attempts": 3,
        "backoff": BACKOFF,
        **options,
    }
    return XenditGateway(secret_key, **settings)


@pytest.fixture
async def fake() -> AsyncIterator[FakeXendit]:
    async with FakeXendit() as server:
        yield server


@pytest.fixture
async def xendit(fake: FakeXendit) -> AsyncIterator[XenditGateway]:
    gateway = xendit_for(fake)
    try:
        yield gateway
    finally:
        await gateway.close()


@dataclass
class GatewayUnderTest:
    """An adapter and a way to pay at its gateway (without any callback)."""

    name: str
    gateway: Gateway
    pay: Callable[[str, str, int], None]  # (reference, payment_id, amount)


@pytest.fixture(params=["sandbox", "xendit"])
async def gateway(
    request: pytest.FixtureRequest, fake: FakeXendit
) -> AsyncIterator[GatewayUnderTest]:
    if request.param == "sandbox":
        sandbox = SandboxGateway(SANDBOX_BASE_URL, SANDBOX_MERCHANT)

        def pay_sandbox(reference: str, payment_id: str, amount: int) -> None:
            sandbox.record_payment(reference, payment_id, amount, datetime.now(UTC), "SANDBOX")

        under_test = GatewayUnderTest("sandbox", sandbox, pay_sandbox)
    else:

        def pay_fake(reference: str, payment_id: str, amount: int) -> None:
            if reference.startswith("qr_"):
                fake.pay_qr(reference, amount, payment_id)
            else:
                fake.pay(reference, amount, payment_id)

        under_test = GatewayUnderTest("xendit", xendit_for(fake), pay_fake)
    try:
        yield under_test
    finally:
        await under_test.gateway.close()
