"""What the sandbox gateway sends when a payment is made or abandoned, and how it is sent.

The callbacks are the ones Xendit sends (an invoice callback, or a ``qr.payment`` callback for
QRIS): an invoice callback names the gateway invoice in ``id``, our invoice in ``external_id``
and the payment in ``payment_id``; a QR one the payment in ``data.id``, the QR code in
``data.qr_id`` and our invoice in ``data.reference_id``. They are posted over HTTP to the
service's own callback routes with the callback token, so a sandbox payment goes through exactly
the path a real gateway's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from service.domain.invoice import Invoice
from service.http.keys import CONFIG, HTTP_CLIENT
from service.presenters import api_time

INVOICE_CALLBACK = "/callback/xendit/invoice"
QR_CALLBACK = "/callback/xendit/qr"


@dataclass(frozen=True, slots=True)
class Callback:
    path: str  # the service's own route it goes to
    body: dict[str, Any]


def payment_channel(state: Invoice) -> str:
    return "ID_SANDBOX" if state.created.source == "QRIS" else "SANDBOX"


def payment_callback(state: Invoice, payment_id: str, amount: Any, paid_at: datetime) -> Callback:
    """The gateway telling the service that ``amount`` was paid (``amount`` as a script gave
    it: a wrong one is the callback route's to refuse)."""
    reference, channel, when = (
        state.created.gateway_reference,
        payment_channel(state),
        api_time(paid_at),
    )
    if state.created.source == "QRIS":
        return Callback(
            QR_CALLBACK,
            {
                "event": "qr.payment",
                "data": {
                    "id": payment_id,  # the payment
                    "qr_id": reference,  # the QR code paid
                    "reference_id": state.invoice,  # ours, given when the code was made
                    "type": "DYNAMIC",
                    "currency": "IDR",
                    "amount": amount,
                    "status": "SUCCEEDED",
                    "created": when,
                    "channel_code": channel,
                },
            },
        )
    return Callback(
        INVOICE_CALLBACK,
        {
            "id": reference,  # the gateway invoice, as Xendit names it
            "external_id": state.invoice,  # ours
            "payment_id": payment_id,  # the payment of it
            "status": "PAID",
            "amount": state.created.total_amount,
            "paid_amount": amount,
            "paid_at": when,
            "payment_method": "BANK_TRANSFER",
            "payment_channel": channel,
        },
    )


def expiry_callback(state: Invoice) -> Callback:
    # Xendit's invoice callback expires any invoice by its external_id, QRIS ones included.
    reference = state.created.gateway_reference
    return Callback(
        INVOICE_CALLBACK, {"id": reference, "external_id": state.invoice, "status": "EXPIRED"}
    )


async def send_callback(request: web.Request, callback: Callback) -> tuple[int, Any]:
    """POST ``callback`` to the service's own route, signed as the gateway signs it; its
    answer's status and body."""
    url = f"{request.url.origin()}{callback.path}"
    token = request.app[CONFIG].callback_token
    session: aiohttp.ClientSession = request.app[HTTP_CLIENT]
    async with session.post(url, json=callback.body, headers={"x-callback-token": token}) as sent:
        return sent.status, await sent.json(content_type=None)
