"""The sandbox gateway's pages and its pay button (development mode only).

``POST /sandbox/invoices/{reference}/pay`` sends the gateway's callback over HTTP to the
service's own ``/callback/xendit/invoice`` (or ``/qr``) with the callback token, so a sandbox
payment goes through exactly the path a real gateway's does. An optional JSON body
``{"payment_id", "amount"}`` lets scripts repeat a payment or pay a wrong amount.
"""

from __future__ import annotations

import html
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from service.domain.invoice import Invoice
from service.http.body import json_object
from service.http.keys import CLOCK, CONFIG, HTTP_CLIENT, STORE
from service.http.middleware import json_response
from service.presenters import api_time
from service.projections.invoices import decode_state

routes = web.RouteTableDef()


async def _invoice_for(request: web.Request) -> Invoice:
    reference = request.match_info["reference"]
    rows = await request.app[STORE].query(
        "SELECT state FROM invoice_view WHERE gateway_reference = ?", (reference,)
    )
    if not rows:
        raise web.HTTPNotFound()
    return decode_state(rows[0][0])


@routes.get("/sandbox/checkout/{reference}")
async def checkout_page(request: web.Request) -> web.Response:
    state = await _invoice_for(request)
    now = request.app[CLOCK]()
    created = state.created
    rows = "".join(
        f"<tr><td>{html.escape(t.line.invoice_onmarket)}</td>"
        f"<td>{html.escape(t.line.seller_username)}</td><td>{t.line.total:,}</td></tr>"
        for t in state.transactions
    )
    status = state.status_at(now)
    action = (
        f'<form method="post" action="/sandbox/invoices/{html.escape(created.gateway_reference)}'
        '/pay"><button type="submit">Pay</button></form>'
        if status == "PENDING"
        else f"<p>This invoice is {status}.</p>"
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Sandbox checkout {html.escape(created.invoice)}</title></head>
<body><h1>Sandbox checkout</h1>
<p>Invoice <strong>{html.escape(created.invoice)}</strong>, total IDR {created.total_amount:,},
expires {api_time(created.expired_at)}.</p>
<table><tr><th>Store invoice</th><th>Seller</th><th>Amount</th></tr>{rows}</table>
{action}
</body></html>"""
    return web.Response(text=page, content_type="text/html")


@routes.post("/sandbox/invoices/{reference}/pay")
async def pay(request: web.Request) -> web.Response:
    state = await _invoice_for(request)
    options: dict[str, Any] = (
        await json_object(request) if request.content_type == "application/json" else {}
    )
    amount = options.get("amount", state.created.total_amount)
    payment_id = str(options.get("payment_id") or f"sandbox-{uuid.uuid4().hex}")
    now = api_time(request.app[CLOCK]())
    if state.created.source == "QRIS":
        path = "/callback/xendit/qr"
        callback: dict[str, Any] = {
            "event": "qr.payment",
            "data": {
                "id": payment_id,
                "qr_id": state.created.gateway_reference,
                "reference_id": state.invoice,
                "amount": amount,
                "status": "SUCCEEDED",
                "created": now,
                "channel_code": "ID_SANDBOX",
            },
        }
    else:
        path = "/callback/xendit/invoice"
        callback = {
            "id": payment_id,
            "external_id": state.invoice,
            "status": "PAID",
            "amount": state.created.total_amount,
            "paid_amount": amount,
            "paid_at": now,
            "payment_method": "BANK_TRANSFER",
            "payment_channel": "SANDBOX",
        }
    url = f"{request.url.origin()}{path}"
    token = request.app[CONFIG].callback_token
    session: aiohttp.ClientSession = request.app[HTTP_CLIENT]
    async with session.post(url, json=callback, headers={"x-callback-token": token}) as sent:
        body = await sent.json(content_type=None)
    if request.content_type == "application/x-www-form-urlencoded" and sent.status == 200:
        # The page's Pay button (an HTML form): back to the page, now showing the paid state.
        raise web.HTTPSeeOther(f"/sandbox/checkout/{state.created.gateway_reference}")
    return json_response(
        {
            "message": "CALLBACK SENT",
            "payment_id": payment_id,
            "callback": {"status": sent.status, "body": body},
        },
        status=sent.status,  # the gateway callback's own answer
    )
