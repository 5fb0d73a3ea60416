"""The payment gateway port: what the service asks of a gateway, whichever one it is.

Two adapters implement it: ``SandboxGateway`` (built in, no network; the default) and
``XenditGateway`` (Xendit's HTTP API). The service never talks to a gateway but through this
interface, and a gateway that cannot be reached surfaces as ``GatewayUnavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

PENDING, PAID, EXPIRED = "PENDING", "PAID", "EXPIRED"


@dataclass(frozen=True, slots=True)
class PaymentItem:
    name: str
    price: int


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    invoice: str
    amount: int
    description: str
    expires_at: datetime
    items: tuple[PaymentItem, ...] = ()


@dataclass(frozen=True, slots=True)
class GatewayPayment:
    """The gateway's side of an invoice: its reference (the API's ``xendit_invoice``) and how
    the buyer pays: a URL to open, or a QR payload to scan."""

    reference: str
    payment_url: str | None = None
    qr_string: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """What the gateway knows of a payment: asked by reconciliation when a callback may be lost."""

    reference: str
    status: str  # PENDING | PAID | EXPIRED
    payment_id: str | None = None
    paid_amount: int | None = None
    paid_at: datetime | None = None
    method: str | None = None
    channel: str | None = None


class GatewayError(Exception):
    """The gateway could not do what was asked; nothing the caller started is left half-done."""

    message = "Payment gateway error"
    code = "GATEWAY_ERROR"


class GatewayUnavailable(GatewayError):
    """No answer, a timeout or a 5xx, even after the bounded retries."""

    message = "Payment gateway unavailable"
    code = "GATEWAY_UNAVAILABLE"


class GatewayRejected(GatewayError):
    """The gateway refused the request (a 4xx): retrying the same request will not help."""

    message = "Payment gateway refused the request"
    code = "GATEWAY_REJECTED"


class Gateway(Protocol):
    name: str

    async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
        """A hosted payment page (Xendit invoice) for ``request``."""

    async def create_qr(self, request: PaymentRequest) -> GatewayPayment:
        """A dynamic QRIS code for ``request``."""

    async def expire(self, reference: str) -> None:
        """Make a payment no longer payable (used when a PENDING invoice is canceled)."""

    async def status(self, reference: str) -> GatewayStatus:
        """What the gateway knows of the payment ``reference``."""

    async def close(self) -> None:
        """Release connections."""
