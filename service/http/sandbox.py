"""The sandbox gateway's routes: its checkout page and its buttons (development mode only).

``GET /sandbox/checkout/{reference}`` is the page a sandbox ``payment_url`` opens: the invoice,
each store's lines, the expiry with a live countdown, the QR code for QRIS, and while the
invoice is PENDING a **Pay** and a **Cancel payment** button. Everything is server-rendered and
served from here (one inline stylesheet, one small inline script behind a per-response nonce),
so the page needs no network beyond the service itself and still reads without JavaScript; what
it shows is ``sandbox_page``'s, its template ``templates/sandbox_checkout.html``.

``POST /sandbox/invoices/{reference}/pay`` first records the payment at the sandbox gateway (as
a real gateway knows what was paid at its end), then sends the gateway's callback over HTTP to
the service's own ``/callback/xendit/invoice`` (or ``/qr``) with the callback token, so a
sandbox payment goes through exactly the path a real gateway's does (``sandbox_callbacks``). An
optional JSON body ``{"payment_id", "amount", "deliver_callback"}`` lets scripts repeat a
payment, pay a wrong amount, or pay without the callback arriving (``"deliver_callback":
false``, a lost callback for reconciliation to find). Like Xendit, the sandbox takes one payment
per invoice or QR code: once one was taken, another Pay answers ``409 ALREADY_PAID`` and sends
nothing; the same payment id and amount again only repeats that payment's callback.

``POST /sandbox/invoices/{reference}/cancel`` is the buyer abandoning the payment: the gateway
expires it and sends its EXPIRED invoice callback.

From the page (an HTML form post) both answer ``303`` back to the page once the callback was
accepted. The page's buttons only act on an invoice that is still PENDING, as a real gateway's
page would refuse to take money for an expired or canceled one; scripts posting JSON can still
pay late on purpose, to exercise late payments.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from service.domain.invoice import PENDING, Invoice
from service.gateway.port import GatewayStatus
from service.gateway.sandbox import SandboxGateway
from service.http.body import json_object
from service.http.keys import CLOCK, GATEWAY, READ_MODEL, TEMPLATES
from service.http.responses import ApiError, json_response
from service.http.sandbox_callbacks import (
    expiry_callback,
    payment_callback,
    payment_channel,
    send_callback,
)
from service.http.sandbox_page import page_path, render_page

routes = web.RouteTableDef()

_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


# -- reading the invoice ----------------------------------------------------------------------


async def _invoice_for(request: web.Request) -> Invoice:
    reference = request.match_info["reference"]
    state = await request.app[READ_MODEL].invoice_by_gateway_reference(reference)
    if state is None:
        raise web.HTTPNotFound()
    return state


def _is_form(request: web.Request) -> bool:
    return request.content_type in _FORM_TYPES


def _sandbox_gateway(app: web.Application) -> SandboxGateway:
    gateway = app[GATEWAY]
    if not isinstance(gateway, SandboxGateway):  # the routes are mounted only with it
        raise ApiError(409, "Only the sandbox gateway can pay", "NOT_SANDBOX")
    return gateway


def _back_to_page(state: Invoice) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(page_path(state.created.gateway_reference))


# -- the page ---------------------------------------------------------------------------------


@routes.get("/sandbox/checkout/{reference}")
async def checkout_page(request: web.Request) -> web.Response:
    state = await _invoice_for(request)
    nonce = secrets.token_urlsafe(16)
    page = render_page(request.app[TEMPLATES], state, request.app[CLOCK](), nonce)
    response = web.Response(text=page, content_type="text/html", charset="utf-8")
    response.headers.update(
        {
            # Nothing but this page's own inline style and script, and forms back to the service.
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
                "img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
            ),
            "Cache-Control": "no-store",  # it shows live state
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        }
    )
    return response


# -- the buttons ------------------------------------------------------------------------------


@routes.post("/sandbox/invoices/{reference}/pay")
async def pay(request: web.Request) -> web.Response:
    state = await _invoice_for(request)
    app = request.app
    gateway = _sandbox_gateway(app)
    now = app[CLOCK]()
    form = _is_form(request)
    if form:
        if state.status_at(now) != PENDING:  # the page was stale: show what it is now
            raise _back_to_page(state)
        options: dict[str, Any] = {"payment_id": _form_payment_id(await request.post())}
    elif request.content_type == "application/json":
        options = await json_object(request)
    else:
        options = {}
    deliver = options.get("deliver_callback", True)
    if not isinstance(deliver, bool):
        raise ApiError(
            400,
            "Invalid JSON Format",
            "VALIDATION",
            {"deliver_callback": ["Must be true or false."]},
        )
    amount = options.get("amount", state.created.total_amount)
    payment_id = str(options.get("payment_id") or f"sandbox-{uuid.uuid4().hex}")

    # One payment per invoice or QR code, as at Xendit. The gateway knows of it before its
    # callback leaves, as a real one does: that is what lets reconciliation find a payment whose
    # callback was lost. Checked and taken in one step, before any await, so of Pays racing in
    # this process exactly one takes it.
    reference = state.created.gateway_reference
    held: GatewayStatus | None
    if type(amount) is int:
        held, new = gateway.take_payment(reference, payment_id, amount, now, payment_channel(state))
    else:  # an amount a script sends to test the callback route: nothing is paid
        held, new = gateway.paid(reference), False
    paid_at = now
    if held is not None and not new:
        if form:  # the page's Pay pressed again: the page shows what became of the first
            raise _back_to_page(state)
        if held.payment_id != payment_id or held.paid_amount != amount:
            raise ApiError(409, "INVOICE ALREADY PAID", "ALREADY_PAID")
        # The same payment again: the gateway repeats its callback, as Xendit retries one.
        paid_at = held.paid_at or now
    if not deliver:
        if type(amount) is not int:  # nothing was recorded: say so rather than "paid"
            raise ApiError(
                400, "Invalid JSON Format", "VALIDATION", {"amount": ["Must be an integer."]}
            )
        return json_response(
            {"message": "PAID AT GATEWAY", "payment_id": payment_id, "callback": None}
        )

    callback = payment_callback(state, payment_id, amount, paid_at)
    status, body = await send_callback(request, callback)
    if form and status == 200:
        # The page's Pay button: back to the page, now showing the paid state.
        raise _back_to_page(state)
    return json_response(
        {
            "message": "CALLBACK SENT",
            "payment_id": payment_id,
            "callback": {"status": status, "body": body},
        },
        status=status,  # the gateway callback's own answer
    )


@routes.post("/sandbox/invoices/{reference}/cancel")
async def cancel_payment(request: web.Request) -> web.Response:
    """The buyer abandons the payment: the gateway expires it and says so in its callback."""
    state = await _invoice_for(request)
    form = _is_form(request)
    if form and state.status_at(request.app[CLOCK]()) != PENDING:
        raise _back_to_page(state)
    await request.app[GATEWAY].expire(state.created.gateway_reference)
    status, body = await send_callback(request, expiry_callback(state))
    if form and status == 200:
        raise _back_to_page(state)
    return json_response(
        {"message": "CALLBACK SENT", "callback": {"status": status, "body": body}},
        status=status,
    )


def _form_payment_id(form: MultiDictProxy[Any]) -> str | None:
    """The page's own payment id, if it is a sane one (the callback checks it again)."""
    value = form.get("payment_id")
    if isinstance(value, str) and 0 < len(value) <= 100 and value.isascii() and value.isprintable():
        return value
    return None
