"""The gateway port's contract, one suite run against every adapter.

Each test runs twice: against ``SandboxGateway`` and against ``XenditGateway`` talking to the
fake Xendit. What the service relies on holds for both: a hosted invoice has a reference and a
URL to open; a QRIS code has a ``qr_`` reference and a valid QRIS payload carrying the amount and
our invoice id; a new payment is PENDING; a payment made at the gateway (with no callback) is
reported PAID with its id, amount and time; an expired invoice is EXPIRED; expiring a QR code or
expiring twice does no harm; close can be called more than once.
"""

from __future__ import annotations

import contextlib
import re

import pytest

from service.gateway.port import (
    EXPIRED,
    PAID,
    PENDING,
    GatewayRejected,
    GatewayStatus,
)
from service.gateway.qris import parse_emv
from tests.gateway.conftest import GatewayUnderTest, payment_request

INVOICE_REFERENCE = re.compile(r"[0-9a-f]{24}")
QR_REFERENCE = re.compile(r"qr_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
KINDS = ["invoice", "qr"]


async def create(under_test: GatewayUnderTest, kind: str, amount: int = 40200) -> str:
    """A new payment of ``kind`` at the gateway; returns its reference."""
    request = payment_request(amount)
    if kind == "qr":
        return (await under_test.gateway.create_qr(request)).reference
    return (await under_test.gateway.create_invoice(request)).reference


async def test_create_invoice_gives_a_reference_and_a_payment_url(
    gateway: GatewayUnderTest,
) -> None:
    """A hosted invoice: a 24-hex reference, an http(s) payment_url naming it, no QR payload."""
    payment = await gateway.gateway.create_invoice(payment_request())

    assert INVOICE_REFERENCE.fullmatch(payment.reference), payment
    assert payment.payment_url is not None
    assert payment.payment_url.startswith(("http://", "https://")), payment
    assert payment.reference in payment.payment_url
    assert payment.qr_string is None


async def test_create_qr_gives_a_qr_reference_and_a_valid_qris_string(
    gateway: GatewayUnderTest,
) -> None:
    """A QRIS code: a qr_<uuid> reference and a dynamic QRIS payload with the amount in tag 54
    and our invoice id as the reference label in tag 62."""
    request = payment_request(35300)

    payment = await gateway.gateway.create_qr(request)

    assert QR_REFERENCE.fullmatch(payment.reference), payment
    assert payment.qr_string is not None
    fields = parse_emv(payment.qr_string)  # raises on a malformed payload or a bad CRC
    assert fields["01"] == "12"  # dynamic: one payment of one amount
    assert fields["53"] == "360"  # IDR
    assert fields["54"] == "35300"
    assert fields["58"] == "ID"
    assert fields["62"] == f"05{len(request.invoice):02d}{request.invoice}"
    assert fields["26"].startswith("0014ID.CO.QRIS.WWW")


@pytest.mark.parametrize("kind", KINDS)
async def test_each_payment_gets_its_own_reference(gateway: GatewayUnderTest, kind: str) -> None:
    """Two invoices of ours never share a gateway reference."""
    references = {await create(gateway, kind) for _ in range(5)}

    assert len(references) == 5


@pytest.mark.parametrize("kind", KINDS)
async def test_a_new_payment_is_pending(gateway: GatewayUnderTest, kind: str) -> None:
    """Right after creation the gateway knows of no payment: PENDING, nothing paid."""
    reference = await create(gateway, kind)

    assert await gateway.gateway.status(reference) == GatewayStatus(reference, PENDING)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_payment_at_the_gateway_is_reported_paid(
    gateway: GatewayUnderTest, kind: str
) -> None:
    """Paid at the gateway (no callback): PAID with that payment's id, amount and time."""
    reference = await create(gateway, kind, amount=40200)
    gateway.pay(reference, "pay-contract-1", 40200)

    status = await gateway.gateway.status(reference)

    assert status.reference == reference
    assert status.status == PAID
    assert status.payment_id == "pay-contract-1"
    assert status.paid_amount == 40200
    assert status.paid_at is not None
    assert status.paid_at.tzinfo is not None
    assert status.method


async def test_a_payment_of_another_amount_is_reported_as_paid(
    gateway: GatewayUnderTest,
) -> None:
    """The gateway reports what was paid, not what was asked: deciding on it is the service's."""
    reference = await create(gateway, "invoice", amount=40200)
    gateway.pay(reference, "pay-contract-2", 40000)

    status = await gateway.gateway.status(reference)

    assert (status.status, status.paid_amount) == (PAID, 40000)


async def test_expire_makes_an_invoice_expired(gateway: GatewayUnderTest) -> None:
    """An expired invoice is reported EXPIRED, and expiring it again is harmless."""
    reference = await create(gateway, "invoice")

    await gateway.gateway.expire(reference)
    assert await gateway.gateway.status(reference) == GatewayStatus(reference, EXPIRED)

    await gateway.gateway.expire(reference)
    assert await gateway.gateway.status(reference) == GatewayStatus(reference, EXPIRED)


async def test_expire_of_a_qr_reference_is_harmless(gateway: GatewayUnderTest) -> None:
    """Expiring a QR code (twice) raises nothing and never makes it look paid."""
    reference = await create(gateway, "qr")

    await gateway.gateway.expire(reference)
    await gateway.gateway.expire(reference)

    status = await gateway.gateway.status(reference)
    assert status.status in (PENDING, EXPIRED)
    assert status.payment_id is None


async def test_expire_never_undoes_a_payment(gateway: GatewayUnderTest) -> None:
    """Expiring an invoice already paid at the gateway (a cancel racing the buyer) leaves it
    PAID; an adapter may refuse the expiry, but only as GatewayRejected."""
    reference = await create(gateway, "invoice")
    gateway.pay(reference, "pay-contract-3", 40200)

    with contextlib.suppress(GatewayRejected):
        await gateway.gateway.expire(reference)

    status = await gateway.gateway.status(reference)
    assert (status.status, status.payment_id) == (PAID, "pay-contract-3")


async def test_close_is_idempotent(gateway: GatewayUnderTest) -> None:
    """close after use, and again: no error."""
    await create(gateway, "invoice")

    await gateway.gateway.close()
    await gateway.gateway.close()


async def test_close_without_any_call_is_harmless(gateway: GatewayUnderTest) -> None:
    """An adapter that never made a call closes cleanly (the CLI closes what it did not use)."""
    await gateway.gateway.close()
    await gateway.gateway.close()


def test_both_adapters_name_themselves(gateway: GatewayUnderTest) -> None:
    """Each adapter's name is the one the settings use to pick it."""
    assert gateway.gateway.name == gateway.name
