"""The API's handlers: parse, authenticate, call the application, answer. Nothing else."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from typing import Any, TypeVar

import orjson
import structlog
from aiohttp import web
from marshmallow import Schema

from service.application import (
    Actor,
    CancelTransaction,
    Checkout,
    CheckoutOrder,
    CompleteTransaction,
    Context,
    ExpireByGateway,
    Idempotency,
    RecordPayment,
    TopUp,
)
from service.domain.errors import DomainError, InvoiceNotFound
from service.domain.invoice import Payment
from service.domain.streams import invoice_stream
from service.http import schemas
from service.http.auth import forbidden, require_role
from service.http.body import json_object
from service.http.keys import AUTH, CLOCK, CONFIG, REQUEST_ID, SERVICE, STORE
from service.http.middleware import ApiError, json_response
from service.presenters import api_time, history_entry, invoice_detail
from service.projections.invoices import decode_state

log = structlog.get_logger("service.http")
routes = web.RouteTableDef()

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


S = TypeVar("S", bound=Schema)


@functools.cache
def _schema(schema: type[S]) -> S:
    return schema()


def load(schema: type[Schema], data: Any) -> Any:
    """``data`` loaded by one shared instance of ``schema``: a marshmallow schema keeps no state
    between loads, and building one deep-copies its fields (a fifth of a checkout's CPU)."""
    return _schema(schema).load(data)


# Queries longer than this are loaded each time rather than remembered (a URL may be 8 KB).
MAX_REMEMBERED_QUERY = 256


def load_query(schema: type[Schema], request: web.Request) -> dict[str, Any]:
    """The request's query loaded by ``schema``, remembered for queries seen lately: a buyer
    waiting for a payment sends the same detail query again and again, and loading it was an
    eighth of a detail's time. A query's load depends on nothing but its text; a refused one
    raises every time (``lru_cache`` keeps no exceptions)."""
    items = tuple(dict(request.query).items())
    if sum(len(name) + len(value) for name, value in items) > MAX_REMEMBERED_QUERY:
        return load(schema, dict(items))  # type: ignore[no-any-return]
    return dict(_loaded_query(schema, items))


@functools.lru_cache(maxsize=4096)
def _loaded_query(schema: type[Schema], items: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return load(schema, dict(items))  # type: ignore[no-any-return]


def context(request: web.Request, actor: str) -> Context:
    return Context(actor, request.get(REQUEST_ID))


def answer(body: dict[str, Any], schema: type[Schema], status: int = 200) -> web.Response:
    """A JSON answer; ``schema`` documents it: /openapi.json shows that schema for the status,
    and the tests validate real answers against both."""
    return json_response(body, status)


# -- accounts -------------------------------------------------------------------------------------


@routes.post("/auth")
async def login(request: web.Request) -> web.Response:
    credentials = load(schemas.AuthSchema, await json_object(request))
    token, expires_at = await request.app[AUTH].login(
        credentials["username"], credentials["password"]
    )
    return answer({"token": token, "expired_at": api_time(expires_at)}, schemas.TokenAnswer)


# -- buyers ---------------------------------------------------------------------------------------


@routes.post("/payment-checkout")
async def checkout(request: web.Request) -> web.Response:
    actor = request.app[AUTH].bearer(request)
    require_role(actor, "buyer")
    body = await json_object(request)
    key = _idempotency_key(request)
    loaded = load(schemas.CheckoutSchema, body)
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
    actor = request.app[AUTH].bearer(request)
    query = load_query(schemas.DetailQuerySchema, request)
    seq, state = await _visible_invoice(request, actor, query)
    if "as_of" in query or "as_of_position" in query:
        past = await request.app[SERVICE].invoice_as_of(
            state.invoice, at=query.get("as_of"), position=query.get("as_of_position")
        )
        if past is None:  # it did not exist yet
            raise InvoiceNotFound()
        state, now = past
    else:
        now = request.app[CLOCK]()
    return answer(invoice_detail(seq, state, now), schemas.DetailAnswer)


@routes.get("/invoice/history")
async def history(request: web.Request) -> web.Response:
    actor = request.app[AUTH].bearer(request)
    query = load_query(schemas.HistoryQuerySchema, request)
    _, state = await _visible_invoice(request, actor, query)
    stream = request.app[STORE].read_stream(invoice_stream(state.invoice))
    events = [history_entry(event) async for event in stream]
    return answer({"invoice": state.invoice, "events": events}, schemas.HistoryAnswer)


async def _visible_invoice(
    request: web.Request, actor: Actor, query: dict[str, str]
) -> tuple[int, Any]:
    """The invoice asked for, if the actor may see it; another's answers like a missing one."""
    where, params = _visibility(actor)
    if "invoice" in query:
        sql = f"SELECT seq, state FROM invoice_view v WHERE invoice = ? {where}"
        rows = await request.app[STORE].lookup(sql, (query["invoice"], *params))
    else:
        sql = (
            "SELECT v.seq, v.state FROM invoice_waybills w JOIN invoice_view v ON v.seq = w.seq"
            f" WHERE w.waybill_number = ? {where} ORDER BY v.seq DESC LIMIT 1"
        )
        rows = await request.app[STORE].query(sql, (query["waybill_number"], *params))
    if not rows:
        if where:
            await _log_if_hidden(request, query)
        raise InvoiceNotFound()
    return rows[0][0], _read_state(rows[0][1])


# The states of the invoices read lately, by their stored text: a buyer waiting for a payment asks
# for the same invoice again and again, and decoding its state was an eighth of a detail's time.
# The text is the key, so a changed invoice (new text) is never answered from an old entry; the
# states are frozen, so sharing one between requests is safe.
_read_state = functools.lru_cache(maxsize=2048)(decode_state)


async def _log_if_hidden(request: web.Request, query: dict[str, str]) -> None:
    """Another's invoice answers like a missing one, but an auditor must see the attempt."""
    if "invoice" in query:
        sql, value = "SELECT 1 FROM invoice_view WHERE invoice = ?", query["invoice"]
    else:
        sql, value = (
            "SELECT 1 FROM invoice_waybills WHERE waybill_number = ?",
            query["waybill_number"],
        )
    if await request.app[STORE].query(sql, (value,)):
        log.warning("request refused", code="INVOICE_NOT_VISIBLE", reason="another's invoice")


def _visibility(actor: Actor) -> tuple[str, tuple[str, ...]]:
    if actor.role == "admin":
        return "", ()
    if actor.role == "platform":
        return "AND v.service = ?", (actor.platform or "",)
    return "AND v.username = ?", (actor.username,)


@routes.get("/balance")
async def balance(request: web.Request) -> web.Response:
    actor = request.app[AUTH].bearer(request)
    limit = load_query(schemas.BalanceQuerySchema, request)["limit"]
    store = request.app[STORE]
    accounts = (f"buyer:{actor.username}", f"seller:{actor.username}")
    balances = dict(
        await store.query(
            "SELECT account, balance FROM account_balances WHERE account IN (?, ?)", accounts
        )
    )
    rows = await store.query(
        "SELECT position, account, amount, event_type, invoice, recorded_at FROM ledger_entries"
        " WHERE account IN (?, ?) ORDER BY position DESC, line DESC LIMIT ?",
        (*accounts, limit),
    )
    entries = [
        {
            "position": position,
            "account": account,
            "amount": amount,
            "type": event_type,
            "invoice": invoice,
            "recorded_at": recorded_at[:23] + "Z",
        }
        for position, account, amount, event_type, invoice, recorded_at in rows
    ]
    return answer(
        {
            "username": actor.username,
            "balance": balances.get(accounts[0], 0),
            "seller_balance": balances.get(accounts[1], 0),
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
    body = load(schemas.CancelSchema, await json_object(request))
    _same_platform(actor, body)
    command = CancelTransaction(
        actor, body["invoice_id"], body["invoice_onmarket"], body["buyer_username"]
    )
    message = await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer({"message": message}, schemas.CancelAnswer)


@routes.post("/invoice/done")
async def done(request: web.Request) -> web.Response:
    actor = await _platform_actor(request)
    body = load(schemas.PlatformActionSchema, await json_object(request))
    _same_platform(actor, body)
    command = CompleteTransaction(actor, body["invoice_id"], body["invoice_onmarket"])
    await request.app[SERVICE].handle(command, context(request, actor.username))
    return answer({"message": "TRANSACTION IS COMPLETED"}, schemas.DoneAnswer)


# -- admins ---------------------------------------------------------------------------------------


@routes.post("/balance/topup")
async def top_up(request: web.Request) -> web.Response:
    actor = await request.app[AUTH].basic(request)
    require_role(actor, "admin")
    body = load(schemas.TopUpSchema, await json_object(request))
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
    body = load(schemas.InvoiceCallbackSchema, await json_object(request))
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
    data = load(schemas.QrCallbackSchema, await json_object(request))["data"]
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
    return answer({"status": "ok", "head_position": head}, schemas.HealthAnswer)
