"""``GET /admin``: the operator page (Basic credentials of an admin account).

Server-rendered from ``templates/admin.html`` with one inline stylesheet behind a per-response
nonce and no script: charts are SVG drawn here (``charts``). Every query goes through the
``ReadModel`` (both backends answer the same), a search reads the invoice's stream as
``/invoice/history`` does, and a past state is replayed by ``InvoiceService.invoice_as_of`` as
for ``/invoice/detail?as_of=``. A browser asked for credentials gets ``WWW-Authenticate: Basic``
with the 401, so it shows its login prompt.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from service.application import Actor
from service.domain.invoice import Invoice
from service.domain.streams import invoice_stream
from service.http import schemas
from service.http.admin_page import (
    HOURS,
    TEMPLATE,
    AdminPage,
    Found,
    TimelineEntry,
    Transaction,
    charts,
    status_bars,
)
from service.http.auth import require_role
from service.http.keys import (
    AUTH,
    CLOCK,
    LOADER,
    READ_MODEL,
    SERVICE,
    STORE,
    TEMPLATES,
    WEBHOOKS_ADMIN,
)
from service.http.responses import ApiError, error_body, json_response
from service.presenters import api_time, history_entry
from service.views.status_history import shown_at

routes = web.RouteTableDef()

PATH = "/admin"


async def admin_or_prompt(request: web.Request) -> Actor | web.Response:
    """The admin the request's Basic credentials name; without valid ones, the 401 that makes
    a browser show its login prompt; another account's role is refused (403)."""
    try:
        actor = await request.app[AUTH].basic(request)
    except ApiError as error:  # the browser's login prompt
        response = json_response(error_body(error.message, error.code), status=error.status)
        response.headers["WWW-Authenticate"] = 'Basic realm="operator", charset="UTF-8"'
        return response
    require_role(actor, "admin")
    return actor


@routes.get(PATH)
async def admin_page(request: web.Request) -> web.StreamResponse:
    actor = await admin_or_prompt(request)
    if isinstance(actor, web.Response):
        return actor
    query = request.app[LOADER].load_query(schemas.AdminQuerySchema, request.query)
    now = request.app[CLOCK]()
    views = request.app[READ_MODEL]
    counts, volume, backlog = await asyncio.gather(
        views.invoice_status_counts(),
        views.hourly_volume(
            now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
        ),
        views.refund_backlog(),
    )
    hooks = request.app.get(WEBHOOKS_ADMIN)
    found = await _search(request, actor, query) if query.get("q") else None
    status_chart, volume_chart, amount_chart = charts(counts, volume, now)
    nonce = secrets.token_urlsafe(16)
    page = AdminPage(
        nonce=nonce,
        now=api_time(now),
        status_chart=status_chart,
        status_counts=status_bars(counts),
        volume_chart=volume_chart,
        amount_chart=amount_chart,
        day_invoices=sum(row.invoices for row in volume),
        day_amount=sum(row.amount for row in volume),
        refund_backlog=backlog,
        webhooks=await hooks.panel() if hooks is not None else None,
        query=query.get("q", ""),
        resent=query.get("resent"),
        found=found,
        missing=bool(query.get("q")) and found is None,
    )
    text = request.app[TEMPLATES].get_template(TEMPLATE).render(page=page)
    response = web.Response(text=text, content_type="text/html", charset="utf-8")
    response.headers.update(
        {
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:;"
                " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
            ),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        }
    )
    return response


async def _search(request: web.Request, actor: Actor, query: dict[str, Any]) -> Found | None:
    """The invoice named by id, else the newest shipping under that waybill; its state now or
    at the moment asked for, and its timeline."""
    views, text = request.app[READ_MODEL], query["q"]
    visible = await views.invoice(text, actor) or await views.invoice_by_waybill(text, actor)
    if visible is None:
        return None
    invoice = visible.state.invoice
    stream = request.app[STORE].read_stream(invoice_stream(invoice))
    events = [history_entry(event) async for event in stream]
    at: datetime | None = query.get("as_of")
    position: int | None = query.get("as_of_position")
    if at is None and position is None:
        state, now = visible.state, request.app[CLOCK]()
        history = visible.status_history
        if history is None:
            history = await request.app[SERVICE].status_history(invoice)
        as_of = None
    else:
        past = await request.app[SERVICE].invoice_as_of(invoice, at=at, position=position)
        if past is None:
            return None  # it did not exist yet
        state, history, now = past
        as_of = api_time(at) if at is not None else f"position {position}"
    return Found(
        invoice=invoice,
        buyer=state.created.username,
        service=state.created.service,
        source=state.created.source,
        amount=state.created.total_amount,
        status=state.status_at(now),
        shown_at=api_time(now),
        as_of=as_of,
        transactions=_transactions(state, now),
        status_history=tuple(shown_at(history, state, now)),
        timeline=tuple(
            TimelineEntry(
                position=event["position"],
                version=event["version"],
                type=event["type"],
                recorded_at=event["recorded_at"],
                actor=event["actor"] or "",
                request_id=event["request_id"] or "",
                link=f"{PATH}?{urlencode({'q': invoice, 'as_of_position': event['position']})}",
            )
            for event in events
        ),
    )


def _transactions(state: Invoice, now: datetime) -> tuple[Transaction, ...]:
    return tuple(
        Transaction(
            t.line.invoice_onmarket,
            t.line.seller_username,
            t.line.total,
            t.line.waybill_number or "",
            state.transaction_status_at(t, now),
        )
        for t in state.transactions
    )
