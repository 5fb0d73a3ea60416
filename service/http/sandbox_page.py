"""The sandbox gateway's checkout page: what it shows, worked out from the invoice's state.

``checkout_page`` turns a state, the time and the response's nonce into plain values
(``CheckoutPage``); ``templates/sandbox_checkout.html`` lays them out, escaping every one of
them (a seller's name or a store's invoice number may hold markup). The only markup handed to
the template is the QR code's SVG, which segno draws from the QRIS payload.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import jinja2
import segno
from markupsafe import Markup

from service.domain.invoice import PENDING, Invoice
from service.presenters import api_time

TEMPLATE = "sandbox_checkout.html"


@dataclass(frozen=True, slots=True)
class Look:
    label: str
    css: str
    message: str


LOOKS = {
    "PENDING": Look("Pending", "pending", "Waiting for payment."),
    "PAID": Look("Paid", "paid", "Paid. The payment was received and the merchant notified."),
    "EXPIRED": Look("Expired", "expired", "Expired. This invoice can no longer be paid."),
    "CANCELED": Look(
        "Canceled", "canceled", "Canceled by the merchant. This invoice can no longer be paid."
    ),
    "COMPLETED": Look(
        "Completed", "completed", "Completed. This invoice was paid and the order fulfilled."
    ),
    "REFUNDED": Look("Refunded", "refunded", "Refunded to the buyer's balance."),
}
METHODS = {"XENDIT": "Xendit invoice", "QRIS": "QRIS"}


@dataclass(frozen=True, slots=True)
class Line:
    """One store's row; amounts in IDR."""

    invoice_onmarket: str
    seller: str
    amount: int
    freight: int
    insurance: int
    total: int
    status: str


@dataclass(frozen=True, slots=True)
class Countdown:
    remaining: int  # seconds, counted down by the page's script
    text: str


@dataclass(frozen=True, slots=True)
class QrCode:
    svg: Markup
    payload: str


@dataclass(frozen=True, slots=True)
class Actions:
    """The Pay and Cancel payment buttons, shown while the invoice is PENDING."""

    reference: str  # the gateway reference, quoted for a URL path
    payment_id: str
    page_path: str


@dataclass(frozen=True, slots=True)
class CheckoutPage:
    nonce: str
    invoice: str
    status: str
    look: Look
    total: int
    method: str
    buyer: str
    reference: str
    expires_at: str  # as the API writes times
    expires_shown: str
    countdown: Countdown | None
    qr: QrCode | None
    lines: tuple[Line, ...]
    actions: Actions | None


def render_page(templates: jinja2.Environment, state: Invoice, now: datetime, nonce: str) -> str:
    """The checkout page of ``state`` as it stands at ``now``."""
    return templates.get_template(TEMPLATE).render(page=checkout_page(state, now, nonce))


def checkout_page(state: Invoice, now: datetime, nonce: str) -> CheckoutPage:
    created = state.created
    status = state.status_at(now)
    pending = status == PENDING
    stamp = api_time(created.expired_at)
    return CheckoutPage(
        nonce=nonce,
        invoice=created.invoice,
        status=status,
        look=LOOKS.get(status, Look(status.title(), "other", status)),
        total=created.total_amount,
        method=METHODS.get(created.source, created.source),
        buyer=created.username,
        reference=created.gateway_reference,
        expires_at=stamp,
        expires_shown=f"{stamp[:10]} {stamp[11:19]} UTC",
        countdown=_countdown(state, now) if pending else None,
        qr=_qr_code(state) if pending else None,
        lines=tuple(
            Line(
                t.line.invoice_onmarket,
                t.line.seller_username,
                t.line.amount,
                t.line.freight_charge,
                t.line.insurance_amount,
                t.line.total,
                state.transaction_status_at(t, now),
            )
            for t in state.transactions
        ),
        actions=_actions(state) if pending else None,
    )


def page_path(reference: str) -> str:
    return f"/sandbox/checkout/{quote(reference, safe='')}"


def _countdown(state: Invoice, now: datetime) -> Countdown:
    # Counted down from the server's own clock, so a skewed browser clock cannot mislead it.
    remaining = max(0, int((state.created.expired_at - now).total_seconds()))
    hours, rest = divmod(remaining, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    return Countdown(remaining, f"{clock} left")


def _qr_code(state: Invoice) -> QrCode | None:
    qr_string = state.created.qr_string
    if state.created.source != "QRIS" or not qr_string:
        return None
    return QrCode(Markup(qr_svg(qr_string)), qr_string)  # drawn by segno, not given by a user


def qr_svg(qr_string: str) -> str:
    """The QR code of ``qr_string`` as inline SVG (QRIS codes use error correction level M)."""
    code = segno.make_qr(qr_string, error="m", boost_error=False)
    return code.svg_inline(
        border=4, dark="#111", title="QRIS code", svgclass="qr-code", omitsize=True
    )


def _actions(state: Invoice) -> Actions:
    reference = state.created.gateway_reference
    # A payment id fixed when the page is rendered: a double submit is one payment, not two.
    payment_id = f"sandbox-{uuid.uuid4().hex}"
    return Actions(quote(reference, safe=""), payment_id, page_path(reference))
