"""The sandbox gateway: a built-in stand-in for Xendit, so development needs no network.

References look like Xendit's (24 hex digits for invoices, ``qr_<uuid>`` for QR codes);
``payment_url`` points at the service's own ``/sandbox/checkout/<reference>`` page, and QR
payloads are valid EMVCo/QRIS strings. Like a real gateway it remembers what was paid or
expired at its end (in memory), so reconciliation can find a payment whose callback was lost.
Paying happens through the sandbox's page or ``/sandbox/invoices/<ref>/pay``, which record the
payment here and then send the same callback a real gateway would. Like Xendit, an invoice or QR
code takes one payment: ``take_payment`` checks and records it in one step (no ``await`` in
between), so Pays racing in one process cannot both take it. The memory is this process's own:
another process, or a restart, does not know what was paid here.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from service.gateway.port import (
    EXPIRED,
    PAID,
    PENDING,
    GatewayPayment,
    GatewayStatus,
    PaymentRequest,
)
from service.gateway.qris import Merchant, build_qris


class SandboxGateway:
    name = "sandbox"

    def __init__(self, public_base_url: str, merchant: Merchant) -> None:
        self._base_url = public_base_url.rstrip("/")
        self._merchant = merchant
        self._known: dict[str, GatewayStatus] = {}

    async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
        reference = secrets.token_hex(12)
        self._known[reference] = GatewayStatus(reference, PENDING)
        return GatewayPayment(reference, payment_url=checkout_url(self._base_url, reference))

    async def create_qr(self, request: PaymentRequest) -> GatewayPayment:
        reference = f"qr_{uuid.uuid4()}"
        qr_string = build_qris(self._merchant, request.amount, reference=request.invoice)
        self._known[reference] = GatewayStatus(reference, PENDING)
        return GatewayPayment(reference, payment_url=None, qr_string=qr_string)

    async def expire(self, reference: str) -> None:
        current = self._known.get(reference)
        if current is None or current.status == PENDING:
            self._known[reference] = GatewayStatus(reference, EXPIRED)

    async def status(self, reference: str) -> GatewayStatus:
        return self._known.get(reference, GatewayStatus(reference, PENDING))

    async def close(self) -> None:
        """Nothing to release."""

    def paid(self, reference: str) -> GatewayStatus | None:
        """The payment ``reference`` took, if it took one."""
        known = self._known.get(reference)
        return known if known is not None and known.status == PAID else None

    def take_payment(
        self, reference: str, payment_id: str, amount: int, paid_at: datetime, channel: str
    ) -> tuple[GatewayStatus, bool]:
        """The buyer pays at the sandbox (its page or a script): the payment ``reference`` holds
        afterwards, and whether it is this one (False: it was paid before, and keeps that)."""
        held = self.paid(reference)
        if held is not None:
            return held, False
        return self.record_payment(reference, payment_id, amount, paid_at, channel), True

    def record_payment(
        self, reference: str, payment_id: str, amount: int, paid_at: datetime, channel: str
    ) -> GatewayStatus:
        """Record a payment at the gateway whatever it held before (tests staging a gateway's
        state use this; the sandbox's Pay uses ``take_payment``)."""
        paid = GatewayStatus(reference, PAID, payment_id, amount, paid_at, "SANDBOX", channel)
        self._known[reference] = paid
        return paid


def checkout_url(base_url: str, reference: str) -> str:
    return f"{base_url}/sandbox/checkout/{reference}"
