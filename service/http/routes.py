"""The API's handlers: parse, authenticate, call the application, answer. Nothing else."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

import orjson
import structlog
from aiohttp import web
from marshmallow import Schema

from service.application import (
    Actor,
    CancelTransaction,
    Checkout,
    CheckoutOrder,
    CompleteBatch,
    CompleteTransaction,
    Context,
    ExpireByGateway,
    Idempotency,
    MarkPaid,
    RecordPayment,
    TopUp,
)
from service.domain.errors import DomainError, InvoiceNotFound
from service.domain.invoice import Payment
from service.domain.streams import invoice_stream
from service.http import schemas
from service.http.auth import forbidden, require_role
from service.http.body import json_object
from service.http.keys import (
    API_TIMES,
    AUTH,
    CLOCK,
    CONFIG,
    LOADER,
    READ_MODEL,
    REQUEST_ID,
    SERVICE,
    STORE,
)
from service.http.middleware import ApiError, json_response
from service.presenters import api_time, history_entry, invoice_detail
from service.views import ReadModel, VisibleInvoice
from service.views.status_history import shown_at

log = structlog.get_logger("service.http")
routes = web.RouteTableDef()

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def load(schema: type[Schema], data: Any, request: web.Request) -> Any:
    """``data`` loaded by the app's one shared instance of ``schema`` (``loading.Loader``)."""
    return request.app[LOADER].load(schema, data)


def load_query(schema: type[Schema], request: web.Request) -> dict[str, Any]:
    """The request's query loaded by ``schema``, remembered by the app for queries seen lately
    (``loading.Loader``)."""
    return request.app[LOADER].load_query(schema, request.query)


def context(request: web.Request, actor: str) -> Context:
    return Context(actor, request.get(REQUEST_ID))


def answer(body: dict[str, Any], schema: type[Schema], status: int = 200) -> web.Response:
    """A JSON answer; ``schema`` documents it: /openapi.json shows that schema for the status,
    and the tests validate real answers against both."""
    return json_response(body, status)


# -- accounts -------------------------------------------------------------------------------------


@routes.post("/auth")
async def login(request: web.Request) -> web.Response:
    credentials = load(schemas.AuthSchema, await json_object(request), request)
    token, expires_at = await request.app[AUTH].login(
        credentials["username"], credentials["password"]
    )
    return answer({"token": token, "expired_at": api_time(expires_at)}, schemas.TokenAnswer)


# -- buyers ---------------------------------------------------------------------------------------


@routes.post("/payment-checkout")
async def checkout(request: web.Request) -> web.Response:
    actor = await request.app[AUTH].bearer(request)
    require_role(actor, "buyer")
    body = await json_object(request)
    key = _idempotency_key(request)
    loaded = load(schemas.CheckoutSchema, body, request)
    # Hashed once the schema has accepted the body, so its depth and size are bounded.
    idempotency = Idempotency(key, _request_hash(body)) if key is not None else None
    order = CheckoutOrder(
        actor.username,
        loaded["service"],
        loaded["source"],
        loaded["total_amount"],
        tuple(loaded["transaction"]),
    )
    status, result = await request.app[SERVICE].handle(
        Checkout(order, idempotency), context(request, actor.username)
    )
    return answer(result, schemas.CheckoutAnswer, status)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(
            400,
            "Invalid JSON Format",
            "VALIDATION",
            {IDEMPOTENCY_HEADER: ["Must be 1 to 255 printable ASCII characters."]},
        )
    return key


def _request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@routes.get("/invoice/detail")
async def detail(request: web.Request) -> web.Response:
    actor = await request.app[AUTH].bearer(request)
    query = load_query(schemas.DetailQuerySchema, request)
    found = await _visible_invoice(request, actor, query)
    state, history = found.state, found.status_history
    if "as_of" in query or "as_of_position" in query:
        past = await request.app[SERVICE].invoice_as_of(
            state.invoice, at=query.get("as_of"), position=query.get("as_of_position")
        )
        if past is None:  # it did not exist yet
            raise InvoiceNotFound()
        state, history, now = past
    else:
        now = request.app[CLOCK]()
    if history is None:  # a view row from before the history was kept, not yet rebuilt
        history = await request.app[SERVICE].status_history(state.invoice)
    return answer(
        invoice_detail(
            found.seq, state, shown_at(history, state, now), now, request.app[API_TIMES]
        ),
        schemas.DetailAnswer,
    )


@routes.get("/invoice/history")
async def history(request: web.Request) -> web.Response:
    actor = await request.app[AUTH].bearer(request)
    query = load_query(schemas.HistoryQuerySchema, request)
    state = (await _visible_invoice(request, actor, query)).state
    stream = request.app[STORE].read_stream(invoice_stream(state.invoice))
    events = [history_entry(event) async for event in stream]
    return answer({"invoice": state.invoice, "events": events}, schemas.HistoryAnswer)


async def _visible_invoice(
    request: web.Request, actor: Actor, query: dict[str, str]
) -> VisibleInvoice:
    """The invoice asked for, if the actor may see it; another's answers like a missing one."""
    views = request.app[READ_MODEL]
    if "invoice" in query:
        found = await views.invoice(query["invoice"], actor)
    else:
        found = await views.invoice_by_waybill(query["waybill_number"], actor)
    if found is None:
        if actor.role != "admin":  # an admin sees every invoice: their miss is a missing one
            await _log_if_hidden(views, query)
        raise InvoiceNotFound()
    return found


async def _log_if_hidden(views: ReadModel, query: dict[str, str]) -> None:
    """Another's invoice answers like a missing one, but an auditor must see the attempt."""
    if "invoice" in query:
        exists = await views.invoice_exists(query["invoice"])
    else:
        exists = await views.waybill_exists(query["waybill_number"])
    if exists:
        log.warning("request refused", code="INVOICE_NOT_VISIBLE", reason="another's invoice")


@routes.get("/balance")
async def balance(request: web.Request) -> web.Response:
    actor = await request.app[AUTH].bearer(request)
    limit = load_query(schemas.BalanceQuerySchema, request)["limit"]
    views = request.app[READ_MODEL]
    buyer_balance, seller_balance = await views.balances(actor.username)
    entries = [
        {
            "position": entry.position,
            "account": entry.account,
            "amount": entry.amount,
            "type": entry.event_type,
            "invoice": entry.invoice,
            "recorded_at": api_time(entry.recorded_at),
        }
        for entry in await views.ledger_entries(actor.username, limit)
    ]
    return answer(
        {
            "username": actor.username,
            "balance": buyer_balance,
            "seller_balance": seller_balance,
            "entries": entries,
        },
        schemas.BalanceAnswer,
    )


# -- platforms ------------------------------------------------------------------------------------


async def _platform_actor(request: web.Request) -> Actor:
    actor = await request.app[AUTH].basic(request)
    require_role(actor, "platform")
    return actor


def _same_platform(actor: Actor, body: dict[str, Any]) -> None:
    if body["platform"] != actor.platform:
        raise forbidden(f"This account acts for {actor.platform} only.")


@routes.post("/invoice/cancel")
async def cancel(request: web.Request) -> web.Response:
    actor = await _platform_actor(request)
    body = load(schemas.CancelSchema, await json_object(request), request)
    _same_platform(actor, body)
    command = CancelTransaction(
        actor, body["invoice_id"], body["invoice_onmarket"], body["buyer_username"]
    )
    message = await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer({"message": message}, schemas.CancelAnswer)


@routes.post("/invoice/done")
async def done(request: web.Request) -> web.Response:
    actor = await _platform_actor(request)
    body = load(schemas.PlatformActionSchema, await json_object(request), request)
    _same_platform(actor, body)
    command = CompleteTransaction(actor, body["invoice_id"], body["invoice_onmarket"])
    await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer({"message": "TRANSACTION IS COMPLETED"}, schemas.DoneAnswer)


@routes.post("/invoice/done/batch")
async def done_batch(request: web.Request) -> web.Response:
    actor = await _platform_actor(request)
    raw = await json_object(request)
    key = _idempotency_key(request)
    body = load(schemas.DoneBatchSchema, raw, request)
    _same_platform(actor, body)
    idempotency = Idempotency(key, _request_hash(raw)) if key is not None else None
    items = tuple(
        CompleteTransaction(actor, item["invoice_id"], item["invoice_onmarket"], item["amount"])
        for item in body["items"]
    )
    result = await request.app[SERVICE].handle(
        CompleteBatch(actor, items, idempotency), context(request, actor.username)
    )
    return answer(result, schemas.DoneBatchAnswer)


@routes.post("/invoice/mark-paid")
async def mark_paid(request: web.Request) -> web.Response:
    actor = await request.app[AUTH].basic(request)
    require_role(actor, "platform", "admin")
    body = load(schemas.MarkPaidSchema, await json_object(request), request)
    if actor.role == "platform":
        _same_platform(actor, body)
    command = MarkPaid(
        actor, body["platform"], body["invoice_id"], body["reference"], body["reason"]
    )
    message = await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer({"message": message}, schemas.MarkPaidAnswer)


# -- admins ---------------------------------------------------------------------------------------


@routes.post("/balance/topup")
async def top_up(request: web.Request) -> web.Response:
    actor = await request.app[AUTH].basic(request)
    require_role(actor, "admin")
    body = load(schemas.TopUpSchema, await json_object(request), request)
    command = TopUp(actor.username, body["username"], body["amount"])
    balance = await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer(
        {"message": "BALANCE TOPPED UP", "username": body["username"], "balance": balance},
        schemas.TopUpAnswer,
    )


# -- the gateway's callbacks ---------------------------------------------------------------


def _check_callback_token(request: web.Request) -> None:
    expected = request.app[CONFIG].callback_token.encode()
    # surrogateescape: a header that is not UTF-8 still compares (and fails), not crashes.
    given = request.headers.get("x-callback-token", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected):
        log.warning("callback refused", reason="wrong or missing x-callback-token")
        raise ApiError(401, "Auth Error", "AUTH_ERROR")


@routes.post("/callback/xendit/invoice")
async def invoice_callback(request: web.Request) -> web.Response:
    _check_callback_token(request)
    body = load(schemas.InvoiceCallbackSchema, await json_object(request), request)
    service, ctx = request.app[SERVICE], context(request, "gateway")
    if body["status"] == "EXPIRED":
        expired = await service.handle(ExpireByGateway(body["external_id"]), ctx)
        return answer({"message": "EXPIRED" if expired else "IGNORED"}, schemas.CallbackAnswer)
    if body["status"] not in ("PAID", "SETTLED"):
        return answer({"message": "IGNORED"}, schemas.CallbackAnswer)
    amount = body["paid_amount"] if body["paid_amount"] is not None else body["amount"]
    # Xendit's invoice callback names the invoice in "id" and the payment in "payment_id"; the
    # payment is recorded under both, so reconciliation (which may know only the invoice's id)
    # recognises it, whichever comes first.
    payment_id = body["payment_id"] or body["id"]
    payment = Payment(
        payment_id,
        amount if amount is not None else -1,
        body["payment_method"] or "UNKNOWN",
        body["payment_channel"] or "UNKNOWN",
        body["paid_at"] or request.app[CLOCK](),
        aliases=(body["id"],) if body["id"] != payment_id else (),
    )
    return await _record_payment(request, body["external_id"], payment)


@routes.post("/callback/xendit/qr")
async def qr_callback(request: web.Request) -> web.Response:
    _check_callback_token(request)
    data = load(schemas.QrCallbackSchema, await json_object(request), request)["data"]
    if data["status"] != "SUCCEEDED":
        return answer({"message": "IGNORED"}, schemas.CallbackAnswer)
    payment = Payment(
        data["id"],
        data["amount"],
        "QRIS",
        data["channel_code"] or "QRIS",
        data["created"] or request.app[CLOCK](),
    )
    return await _record_payment(request, data["reference_id"], payment)


async def _record_payment(request: web.Request, invoice: str, payment: Payment) -> web.Response:
    try:
        outcome = await request.app[SERVICE].handle(
            RecordPayment(invoice, payment), context(request, "gateway")
        )
    except DomainError as error:
        log.warning(
            "payment callback refused",
            invoice=invoice,
            payment_id=payment.payment_id,
            amount=payment.amount,
            reason=error.code,
        )
        raise
    log.info("payment recorded", invoice=invoice, payment_id=payment.payment_id, outcome=outcome)
    return answer({"message": outcome.upper()}, schemas.CallbackAnswer)


# -- operations ----------------------------------------------------------------------------------


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    head = await request.app[STORE].head_position()
    answered = {"status": "ok", "head_position": head, "pid": os.getpid()}
    return answer(answered, schemas.HealthAnswer)
