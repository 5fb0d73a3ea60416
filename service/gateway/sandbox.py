"""The sandbox gateway: a built-in stand-in for Xendit, so development needs no network.

References look like Xendit's (24 hex digits for invoices, ``qr_<uuid>`` for QR codes);
``payment_url`` points at the service's own ``/sandbox/checkout/<reference>`` page, and QR
payloads are valid EMVCo/QRIS strings. Paying happens through ``/sandbox/invoices/<ref>/pay``,
which sends the same callback a real gateway would.
"""

from __future__ import annotations

import secrets
import uuid

from service.gateway.port import GatewayPayment, PaymentRequest
from service.gateway.qris import Merchant, build_qris


class SandboxGateway:
    name = "sandbox"

    def __init__(self, public_base_url: str, merchant: Merchant) -> None:
        self._base_url = public_base_url.rstrip("/")
        self._merchant = merchant

    async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
        reference = secrets.token_hex(12)
        return GatewayPayment(reference, payment_url=checkout_url(self._base_url, reference))

    async def create_qr(self, request: PaymentRequest) -> GatewayPayment:
        reference = f"qr_{uuid.uuid4()}"
        qr_string = build_qris(self._merchant, request.amount, reference=request.invoice)
        return GatewayPayment(reference, payment_url=None, qr_string=qr_string)

    async def expire(self, reference: str) -> None:
        """Nothing to do: the sandbox pays only invoices the service still holds PENDING."""


def checkout_url(base_url: str, reference: str) -> str:
    return f"{base_url}/sandbox/checkout/{reference}"
