"""The sandbox gateway's checkout page and its buttons (development mode only).

``GET /sandbox/checkout/{reference}`` is the page a sandbox ``payment_url`` opens: the invoice,
each store's lines, the expiry with a live countdown, the QR code for QRIS, and while the
invoice is PENDING a **Pay** and a **Cancel payment** button. Everything is server-rendered and
served from here (one inline stylesheet, one small inline script behind a per-response nonce),
so the page needs no network beyond the service itself and still reads without JavaScript.

``POST /sandbox/invoices/{reference}/pay`` first records the payment at the sandbox gateway (as
a real gateway knows what was paid at its end), then sends the gateway's callback over HTTP to
the service's own ``/callback/xendit/invoice`` (or ``/qr``) with the callback token, so a
sandbox payment goes through exactly the path a real gateway's does. An optional JSON body
``{"payment_id", "amount", "deliver_callback"}`` lets scripts repeat a payment, pay a wrong
amount, or pay without the callback arriving (``"deliver_callback": false``, a lost callback
for reconciliation to find).

``POST /sandbox/invoices/{reference}/cancel`` is the buyer abandoning the payment: the gateway
expires it and sends its EXPIRED invoice callback.

From the page (an HTML form post) both answer ``303`` back to the page once the callback was
accepted. The page's buttons only act on an invoice that is still PENDING, as a real gateway's
page would refuse to take money for an expired or canceled one; scripts posting JSON can still
pay late on purpose, to exercise late payments.
"""

from __future__ import annotations

import html
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import segno
from aiohttp import web
from multidict import MultiDictProxy

from service.domain.invoice import PENDING, Invoice
from service.gateway.sandbox import SandboxGateway
from service.http.body import json_object
from service.http.keys import CLOCK, CONFIG, GATEWAY, HTTP_CLIENT, READ_MODEL
from service.http.middleware import ApiError, json_response
from service.presenters import api_time

routes = web.RouteTableDef()

_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_INVOICE_CALLBACK = "/callback/xendit/invoice"
_QR_CALLBACK = "/callback/xendit/qr"


# -- reading the invoice ----------------------------------------------------------------------


async def _invoice_for(request: web.Request) -> Invoice:
    reference = request.match_info["reference"]
    state = await request.app[READ_MODEL].invoice_by_gateway_reference(reference)
    if state is None:
        raise web.HTTPNotFound()
    return state


def _is_form(request: web.Request) -> bool:
    return request.content_type in _FORM_TYPES


def _back_to_page(state: Invoice) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(_page_path(state.created.gateway_reference))


def _page_path(reference: str) -> str:
    return f"/sandbox/checkout/{quote(reference, safe='')}"


# -- the page ---------------------------------------------------------------------------------


@routes.get("/sandbox/checkout/{reference}")
async def checkout_page(request: web.Request) -> web.Response:
    state = await _invoice_for(request)
    nonce = secrets.token_urlsafe(16)
    page = render_page(state, request.app[CLOCK](), nonce)
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


@dataclass(frozen=True, slots=True)
class _Look:
    label: str
    css: str
    message: str


_LOOKS = {
    "PENDING": _Look("Pending", "pending", "Waiting for payment."),
    "PAID": _Look("Paid", "paid", "Paid. The payment was received and the merchant notified."),
    "EXPIRED": _Look("Expired", "expired", "Expired. This invoice can no longer be paid."),
    "CANCELED": _Look(
        "Canceled", "canceled", "Canceled by the merchant. This invoice can no longer be paid."
    ),
    "COMPLETED": _Look(
        "Completed", "completed", "Completed. This invoice was paid and the order fulfilled."
    ),
    "REFUNDED": _Look("Refunded", "refunded", "Refunded to the buyer's balance."),
}


def render_page(state: Invoice, now: datetime, nonce: str) -> str:
    """The checkout page of ``state`` as it stands at ``now``."""
    created = state.created
    status = state.status_at(now)
    look = _LOOKS.get(status, _Look(status.title(), "other", status))
    e = html.escape
    title = f"Sandbox checkout {created.invoice}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{e(title)}</title>
<link rel="icon" href="data:,">
<style nonce="{e(nonce)}">{_CSS}</style>
</head>
<body>
<header class="bar">
<span class="brand">Sandbox gateway</span>
<span class="note">Development only: no real money moves</span>
</header>
<main class="card" data-status="{e(status)}">
<div class="head">
<div>
<p class="label">Invoice</p>
<h1 id="invoice-id">{e(created.invoice)}</h1>
</div>
<span class="badge badge-{e(look.css)}" id="status">{e(look.label)}</span>
</div>
<dl class="facts">
<div><dt>Total</dt><dd class="total" id="total">{_idr(created.total_amount)}</dd></div>
<div><dt>Pay with</dt><dd>{e(_method(created.source))}</dd></div>
<div><dt>Buyer</dt><dd>{e(created.username)}</dd></div>
<div><dt>Gateway reference</dt><dd><code>{e(created.gateway_reference)}</code></dd></div>
<div class="wide"><dt>Expires</dt><dd>{_expiry(state, status, now)}</dd></div>
</dl>
{_qr_section(state) if status == PENDING else ""}
{_lines_table(state, now)}
<section class="actions" aria-label="Payment">
{_actions(state, status, look)}
</section>
</main>
<script nonce="{e(nonce)}">{_JS}</script>
</body>
</html>
"""


def _idr(amount: int) -> str:
    """``Rp 35.300``: Indonesian rupiah, dots between thousands, no decimals."""
    grouped = f"{amount:,}".replace(",", ".")
    return f'<data value="{amount}">Rp&nbsp;{grouped}</data>'


def _method(source: str) -> str:
    return {"XENDIT": "Xendit invoice", "QRIS": "QRIS"}.get(source, source)


def _expiry(state: Invoice, status: str, now: datetime) -> str:
    expired_at = state.created.expired_at
    stamp = api_time(expired_at)
    shown = f"{stamp[:10]} {stamp[11:19]} UTC"
    moment = f'<time datetime="{html.escape(stamp)}" id="expires-at">{html.escape(shown)}</time>'
    if status != PENDING:
        return moment
    remaining = max(0, int((expired_at - now).total_seconds()))
    # Counted down from the server's own clock, so a skewed browser clock cannot mislead it.
    return (
        f'{moment} <span class="countdown" id="countdown" role="timer" '
        f'data-remaining="{remaining}">{_left(remaining)}</span>'
    )


def _left(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return f"{clock} left"


def _qr_section(state: Invoice) -> str:
    qr_string = state.created.qr_string
    if state.created.source != "QRIS" or not qr_string:
        return ""
    return f"""<section class="qr" aria-label="QRIS code">
<figure>
{qr_svg(qr_string)}
<figcaption>Scan with any QRIS app, or press Pay to simulate the scan.</figcaption>
</figure>
<details><summary>QR payload</summary>
<code class="payload">{html.escape(qr_string)}</code></details>
</section>"""


def qr_svg(qr_string: str) -> str:
    """The QR code of ``qr_string`` as inline SVG (QRIS codes use error correction level M)."""
    code = segno.make_qr(qr_string, error="m", boost_error=False)
    return code.svg_inline(
        border=4, dark="#111", title="QRIS code", svgclass="qr-code", omitsize=True
    )


def _lines_table(state: Invoice, now: datetime) -> str:
    e = html.escape
    rows = "\n".join(
        "<tr>"
        f"<td>{e(t.line.invoice_onmarket)}</td>"
        f"<td>{e(t.line.seller_username)}</td>"
        f'<td class="num">{_idr(t.line.amount)}</td>'
        f'<td class="num">{_idr(t.line.freight_charge)}</td>'
        f'<td class="num">{_idr(t.line.insurance_amount)}</td>'
        f'<td class="num">{_idr(t.line.total)}</td>'
        f"<td>{e(state.transaction_status_at(t, now))}</td>"
        "</tr>"
        for t in state.transactions
    )
    return f"""<table class="lines">
<caption>Stores in this invoice</caption>
<thead><tr><th scope="col">Store invoice</th><th scope="col">Seller</th>\
<th scope="col" class="num">Amount</th><th scope="col" class="num">Freight</th>\
<th scope="col" class="num">Insurance</th><th scope="col" class="num">Line total</th>\
<th scope="col">Status</th></tr></thead>
<tbody>
{rows}
</tbody>
<tfoot><tr><th scope="row" colspan="5">Total</th>\
<td class="num">{_idr(state.created.total_amount)}</td><td></td></tr></tfoot>
</table>"""


def _actions(state: Invoice, status: str, look: _Look) -> str:
    e = html.escape
    message = f'<p class="state state-{e(look.css)}" id="state-message">{e(look.message)}</p>'
    if status != PENDING:
        return message
    reference = quote(state.created.gateway_reference, safe="")
    # A payment id fixed when the page is rendered: a double submit is one payment, not two.
    payment_id = f"sandbox-{uuid.uuid4().hex}"
    return f"""{message}
<div class="buttons">
<form method="post" action="/sandbox/invoices/{e(reference)}/pay" class="act">
<input type="hidden" name="payment_id" value="{e(payment_id)}">
<button type="submit" class="primary" id="pay">Pay</button>
</form>
<form method="post" action="/sandbox/invoices/{e(reference)}/cancel" class="act">
<button type="submit" class="secondary" id="cancel">Cancel payment</button>
</form>
</div>
<p class="hint" id="expired-hint" hidden>Time is up: this invoice has expired. \
<a href="{e(_page_path(state.created.gateway_reference))}">Reload</a></p>"""


_CSS = """
:root{--ink:#1c2430;--muted:#5d6877;--line:#e3e7ed;--bg:#f4f6f9;--accent:#0b6bcb;
--ok:#1a7f37;--warn:#9a6700;--bad:#b42318;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:var(--ink)}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);line-height:1.45}
.bar{display:flex;justify-content:space-between;align-items:center;gap:1rem;flex-wrap:wrap;
padding:.7rem 1.5rem;background:#17212f;color:#fff}
.brand{font-weight:700;letter-spacing:.02em}
.note{font-size:.85rem;color:#c7d0dc}
.card{max-width:56rem;margin:1.5rem auto;padding:1.5rem 1.75rem;background:#fff;
border:1px solid var(--line);border-radius:12px;box-shadow:0 1px 3px rgb(0 0 0/6%)}
.head{display:flex;justify-content:space-between;align-items:flex-start;gap:1rem}
.label{margin:0;font-size:.8rem;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
h1{margin:.1rem 0 0;font-size:1.6rem;font-family:ui-monospace,"DejaVu Sans Mono",monospace}
.badge{display:inline-block;padding:.3rem .8rem;border-radius:999px;font-weight:600;
font-size:.9rem;border:1px solid currentColor}
.badge-pending{color:var(--warn);background:#fff8e1}
.badge-paid,.badge-completed{color:var(--ok);background:#e9f7ee}
.badge-expired,.badge-other{color:var(--muted);background:#eef0f3}
.badge-canceled{color:var(--bad);background:#fdecea}
.badge-refunded{color:#6639ba;background:#f3eefc}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(12rem,1fr));gap:.9rem 1.5rem;
margin:1.25rem 0}
.facts div{min-width:0}
.facts .wide{grid-column:1/-1}
dt{font-size:.8rem;color:var(--muted)}
dd{margin:.1rem 0 0;overflow-wrap:anywhere}
.total{font-size:1.5rem;font-weight:700}
.countdown{margin-left:.5rem;padding:.1rem .5rem;border-radius:6px;background:#fff8e1;
color:var(--warn);font-variant-numeric:tabular-nums;font-weight:600}
.qr{display:flex;flex-direction:column;align-items:center;margin:1rem 0 1.5rem}
.qr figure{margin:0;text-align:center}
.qr svg{display:block;margin:0 auto;width:15rem;height:15rem;background:#fff;
shape-rendering:crispEdges;border:1px solid var(--line);border-radius:8px}
figcaption{font-size:.9rem;color:var(--muted)}
details{margin-top:.5rem;max-width:100%;font-size:.85rem}
.payload{display:block;overflow-wrap:anywhere;max-width:40rem}
table{width:100%;border-collapse:collapse;margin:.5rem 0 1.25rem;font-size:.95rem}
caption{text-align:left;font-weight:600;padding-bottom:.4rem}
th,td{padding:.5rem .6rem;border-bottom:1px solid var(--line);text-align:left}
thead th{font-size:.8rem;color:var(--muted);font-weight:600}
tfoot th,tfoot td{font-weight:700;border-bottom:0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.actions{border-top:1px solid var(--line);padding-top:1rem}
.state{margin:0 0 .8rem;font-weight:600}
.state-paid,.state-completed{color:var(--ok)}
.state-canceled{color:var(--bad)}
.state-expired{color:var(--muted)}
.buttons{display:flex;gap:.75rem;flex-wrap:wrap}
.act{margin:0}
button{font:inherit;font-weight:600;padding:.65rem 1.6rem;border-radius:8px;cursor:pointer}
.primary{background:var(--accent);color:#fff;border:1px solid var(--accent)}
.primary:hover{background:#0a5cad}
.secondary{background:#fff;color:var(--bad);border:1px solid #e7b4ae}
.secondary:hover{background:#fdecea}
button:disabled{opacity:.5;cursor:not-allowed}
.hint{color:var(--muted)}
@media (max-width:40rem){.card{margin:0;border-radius:0}th,td{padding:.4rem .3rem}}
"""

_JS = """
(function () {
  "use strict";
  var buttons = document.querySelectorAll(".actions button");
  function disable() { buttons.forEach(function (b) { b.disabled = true; }); }
  document.querySelectorAll("form.act").forEach(function (form) {
    form.addEventListener("submit", function () { setTimeout(disable, 0); });
  });
  var el = document.getElementById("countdown");
  if (!el) { return; }
  var remaining = Number(el.getAttribute("data-remaining"));
  var started = performance.now();
  function two(n) { return n < 10 ? "0" + n : String(n); }
  function tick() {
    var elapsed = (performance.now() - started) / 1000;
    var left = Math.max(0, Math.ceil(remaining - elapsed));
    if (left <= 0) {
      el.textContent = "expired";
      disable();
      var hint = document.getElementById("expired-hint");
      if (hint) { hint.hidden = false; }
      return;
    }
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    el.textContent = (h ? h + ":" + two(m) : String(m)) + ":" + two(s) + " left";
    setTimeout(tick, 1000 - ((elapsed * 1000) % 1000));
  }
  tick();
})();
"""


# -- the buttons ------------------------------------------------------------------------------


@routes.post("/sandbox/invoices/{reference}/pay")
async def pay(request: web.Request) -> web.Response:
    state = await _invoice_for(request)
    app = request.app
    now = app[CLOCK]()
    if _is_form(request):
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
    reference = state.created.gateway_reference
    qris = state.created.source == "QRIS"
    channel = "ID_SANDBOX" if qris else "SANDBOX"

    gateway = app[GATEWAY]
    # The gateway knows of a payment before its callback leaves, as a real one does: that is
    # what lets reconciliation find a payment whose callback was lost.
    if isinstance(gateway, SandboxGateway) and type(amount) is int:
        gateway.record_payment(reference, payment_id, amount, now, channel)
    if not deliver:
        if not isinstance(gateway, SandboxGateway):
            raise ApiError(
                409, "Only the sandbox gateway can pay without a callback", "NOT_SANDBOX"
            )
        if type(amount) is not int:  # nothing was recorded: say so rather than "paid"
            raise ApiError(
                400, "Invalid JSON Format", "VALIDATION", {"amount": ["Must be an integer."]}
            )
        return json_response(
            {"message": "PAID AT GATEWAY", "payment_id": payment_id, "callback": None}
        )

    paid_at = api_time(now)
    if qris:
        path = _QR_CALLBACK
        callback: dict[str, Any] = {
            "event": "qr.payment",
            "data": {
                "id": payment_id,
                "qr_id": reference,
                "reference_id": state.invoice,
                "amount": amount,
                "status": "SUCCEEDED",
                "created": paid_at,
                "channel_code": channel,
            },
        }
    else:
        path = _INVOICE_CALLBACK
        callback = {
            "id": payment_id,
            "external_id": state.invoice,
            "status": "PAID",
            "amount": state.created.total_amount,
            "paid_amount": amount,
            "paid_at": paid_at,
            "payment_method": "BANK_TRANSFER",
            "payment_channel": channel,
        }
    status, body = await _send_callback(request, path, callback)
    if _is_form(request) and status == 200:
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
    reference = state.created.gateway_reference
    await request.app[GATEWAY].expire(reference)
    # Xendit's invoice callback expires any invoice by its external_id, QRIS ones included.
    callback = {"id": reference, "external_id": state.invoice, "status": "EXPIRED"}
    status, body = await _send_callback(request, _INVOICE_CALLBACK, callback)
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


async def _send_callback(
    request: web.Request, path: str, callback: dict[str, Any]
) -> tuple[int, Any]:
    """POST ``callback`` to the service's own ``path``, signed as the gateway signs it."""
    url = f"{request.url.origin()}{path}"
    token = request.app[CONFIG].callback_token
    session: aiohttp.ClientSession = request.app[HTTP_CLIENT]
    async with session.post(url, json=callback, headers={"x-callback-token": token}) as sent:
        return sent.status, await sent.json(content_type=None)
