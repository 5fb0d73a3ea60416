"""The sandbox gateway: a built-in stand-in for Xendit, so development needs no network.

References look like Xendit's (24 hex digits for invoices, ``qr_<uuid>`` for QR codes);
``payment_url`` points at the service's own ``/sandbox/checkout/<reference>`` page, and QR
payloads are valid EMVCo/QRIS strings. Like a real gateway it remembers what was paid or
expired at its end (in memory), so reconciliation can find a payment whose callback was lost.
Paying happens through the sandbox's page or ``/sandbox/invoices/<ref>/pay``, which record the
payment here and then send the same callback a real gateway would. Like Xendit, an invoice or QR
code takes one payment: ``take_payment`` checks and records it in one step (no ``await`` in
between), so Pays racing in one process cannot both take it. The memory (``sandbox_memory``) is
this process's own, which a restart forgets; with ``serve --workers N`` it is a folder beside the
database shared by the workers, so Pays spread over them still take one payment.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from service.gateway.port import (
    PAID,
    GatewayPayment,
    GatewayStatus,
    PaymentRequest,
)
from service.gateway.qris import Merchant, build_qris
from service.gateway.sandbox_memory import ProcessMemory, SandboxMemory


class SandboxGateway:
    name = "sandbox"

    def __init__(
        self, public_base_url: str, merchant: Merchant, memory: SandboxMemory | None = None
    ) -> None:
        self._base_url = public_base_url.rstrip("/")
        self._merchant = merchant
        self._memory = memory if memory is not None else ProcessMemory()

    async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
        reference = secrets.token_hex(12)  # PENDING: nothing has happened to it yet
        return GatewayPayment(reference, payment_url=checkout_url(self._base_url, reference))

    async def create_qr(self, request: PaymentRequest) -> GatewayPayment:
        reference = f"qr_{uuid.uuid4()}"
        qr_string = build_qris(self._merchant, request.amount, reference=request.invoice)
        return GatewayPayment(reference, payment_url=None, qr_string=qr_string)

    async def expire(self, reference: str) -> None:
        self._memory.expire(reference)

    async def status(self, reference: str) -> GatewayStatus:
        return self._memory.status(reference)

    async def close(self) -> None:
        """Nothing to release."""

    def paid(self, reference: str) -> GatewayStatus | None:
        """The payment ``reference`` took, if it took one."""
        known = self._memory.status(reference)
        return known if known.status == PAID else None

    def take_payment(
        self, reference: str, payment_id: str, amount: int, paid_at: datetime, channel: str
    ) -> tuple[GatewayStatus, bool]:
        """The buyer pays at the sandbox (its page or a script): the payment ``reference`` holds
        afterwards, and whether it is this one (False: it was paid before, and keeps that)."""
        paid = GatewayStatus(reference, PAID, payment_id, amount, paid_at, "SANDBOX", channel)
        return self._memory.take(paid)

    def record_payment(
        self, reference: str, payment_id: str, amount: int, paid_at: datetime, channel: str
    ) -> GatewayStatus:
        """Record a payment at the gateway whatever it held before (tests staging a gateway's
        state use this; the sandbox's Pay uses ``take_payment``)."""
        paid = GatewayStatus(reference, PAID, payment_id, amount, paid_at, "SANDBOX", channel)
        self._memory.record(paid)
        return paid


def checkout_url(base_url: str, reference: str) -> str:
    return f"{base_url}/sandbox/checkout/{reference}"
