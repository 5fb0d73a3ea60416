"""The payment gateway port: what the service asks of a gateway, whichever one it is.

Two adapters implement it: ``SandboxGateway`` (built in, no network; the default) and, later,
a Xendit client. The service never talks to a gateway but through this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    invoice: str
    amount: int
    description: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayPayment:
    """The gateway's side of an invoice: its reference (the API's ``xendit_invoice``) and how
    the buyer pays: a URL to open, or a QR payload to scan."""

    reference: str
    payment_url: str | None = None
    qr_string: str | None = None


class Gateway(Protocol):
    name: str

    async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
        """A hosted payment page (Xendit invoice) for ``request``."""

    async def create_qr(self, request: PaymentRequest) -> GatewayPayment:
        """A dynamic QRIS code for ``request``."""

    async def expire(self, reference: str) -> None:
        """Make a payment no longer payable (used when a PENDING invoice is canceled)."""
