"""The API's OpenAPI 3.1 description, generated from the marshmallow schemas, and its two pages.

``GET /openapi.json`` is the document; ``GET /docs`` is the same document as a readable HTML page
rendered on the server by ``docs_page`` (no script, no CDN, one inline stylesheet allowed by its
hash in a strict Content-Security-Policy). Both need no credentials.

What each endpoint takes comes from the request schemas in ``schemas.py`` (their validators are
the constraints, so a rule is written once); what it answers comes from the answer schemas that
its handler passes to ``answer()``. ``OPERATIONS`` below adds what no schema says: summary,
credentials, query and header parameters, and every status the endpoint can answer with the
error codes behind it. Each error status names its codes in an ``enum``, so a test that
validates a real answer against the document catches an undocumented code too.

Only mounted routes are described, and the development-only ``/sandbox/*`` routes never are:
they stand in for the payment gateway's own pages, are absent in production, and are described
in docs/api.md. The document is built once per app, on its first request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import orjson
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from service.application import (
    Conflict,
    IdempotencyKeyReused,
    NotABuyer,
    PaymentIdReused,
    UserNotFound,
)
from service.domain import errors
from service.gateway.port import GatewayRejected, GatewayUnavailable
from service.http import schemas
from service.http.docs_page import CSS_HASH, render_page
from service.http.middleware import REQUEST_ID_HEADER

OPENAPI_VERSION = "3.1.0"
TITLE = "Invoice service API"
SANDBOX_PREFIX = "/sandbox/"

BEARER, BASIC, CALLBACK_TOKEN = "bearer", "basic", "callbackToken"
IDEMPOTENCY_KEY = "Idempotency-Key"

# -- the error catalogue: every code an answer can carry, and its message -------------------------

_DOMAIN_ERRORS: tuple[type[errors.DomainError], ...] = (
    errors.InvoiceNotFound,
    errors.TransactionNotFound,
    errors.ExpiredInvoice,
    errors.AlreadyCanceled,
    errors.AlreadyRefunded,
    errors.RefundInProcess,
    errors.AlreadyCompleted,
    errors.NotPaid,
    errors.InsufficientBalance,
    errors.InvoiceOnmarketInUse,
    errors.BuyerMismatch,
    errors.PaidAmountMismatch,
    errors.Forbidden,
    Conflict,
    IdempotencyKeyReused,
    PaymentIdReused,
    UserNotFound,
    NotABuyer,
)

ERROR_MESSAGES: dict[str, str] = {
    "VALIDATION": "Invalid JSON Format",
    "MALFORMED_JSON": "Invalid JSON Format",
    "AUTH_ERROR": "Auth Error",
    "PAYLOAD_TOO_LARGE": "Request body is too large",
    "UNSUPPORTED_MEDIA_TYPE": "Content-Type must be application/json",
    "REQUEST_TIMEOUT": "Request Timeout",
    "INTERNAL": "INTERNAL SERVER ERROR",
    **{error.code: error.message for error in _DOMAIN_ERRORS},
    GatewayUnavailable.code: GatewayUnavailable.message,
    GatewayRejected.code: GatewayRejected.message,
}

_STATUS_TEXT = {
    400: "Bad request",
    401: "Missing or wrong credentials (whatever was wrong: nothing leaks)",
    403: "An account of the wrong kind, or not allowed to act on this",
    408: "The request body did not arrive in time",
    409: "Conflict",
    413: "The request body is larger than `max_body_bytes`",
    415: "The request body is not `application/json`",
    500: "A failure of the service itself (no details reach the client)",
    502: "The payment gateway failed; nothing was written",
}

# Errors every endpoint with a JSON body can answer before its handler decides anything.
_BODY_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("VALIDATION", "MALFORMED_JSON"),
    408: ("REQUEST_TIMEOUT",),
    413: ("PAYLOAD_TOO_LARGE",),
    415: ("UNSUPPORTED_MEDIA_TYPE",),
}
_ALWAYS: dict[int, tuple[str, ...]] = {500: ("INTERNAL",)}
_AUTH: dict[int, tuple[str, ...]] = {401: ("AUTH_ERROR",)}
_ROLE: dict[int, tuple[str, ...]] = {401: ("AUTH_ERROR",), 403: ("FORBIDDEN",)}
_PLATFORM_REFUSALS = (
    "INVOICE_NOT_FOUND",
    "TRANSACTION_NOT_FOUND",
    "REFUND_ALREADY_IN_PROCESS",
    "TRANSACTION_ALREADY_CANCELED",
    "TRANSACTION_ALREADY_REFUNDED",
    "INVOICE_EXPIRED",
    "TRANSACTION_ALREADY_COMPLETED",
    "TRANSACTION_NOT_PAID",
)


def _errors(*tables: Mapping[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
    """Merge status → codes tables, keeping each code once."""
    merged: dict[int, tuple[str, ...]] = {}
    for table in tables:
        for status, codes in table.items():
            merged[status] = tuple(dict.fromkeys((*merged.get(status, ()), *codes)))
    return dict(sorted(merged.items()))


# -- the operations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """What the document says about one route, beyond what its schemas say."""

    tag: str
    summary: str
    description: str
    answer: type[Schema] | dict[str, Any]
    errors: dict[int, tuple[str, ...]]
    security: str | None = None
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    headers: tuple[str, ...] = ()
    answer_media_type: str = "application/json"
    answer_description: str = "OK"


# Both gateway callbacks refuse the same way.
_CALLBACK_ERRORS = _errors(
    _BODY_ERRORS,
    {400: ("INVOICE_NOT_FOUND", "PAID_AMOUNT_MISMATCH")},
    _AUTH,
    {409: ("PAYMENT_ID_REUSED", "CONFLICT")},
    _ALWAYS,
)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("post", "/auth"): Operation(
        tag="accounts",
        summary="Log in: a Bearer token for the account",
        description=(
            "Any account can log in. The token expires after `token_ttl_seconds` (24 h);"
            " send it as `Authorization: Bearer <token>`. A wrong login is `401 Auth Error`."
        ),
        body=schemas.AuthSchema,
        answer=schemas.TokenAnswer,
        errors=_errors(_BODY_ERRORS, _AUTH, _ALWAYS),
    ),
    ("post", "/payment-checkout"): Operation(
        tag="buyers",
        summary="Check out: one invoice for one or more stores",
        description=(
            "Buyer accounts only. `total_amount` must equal Σ(amount + freight_charge +"
            " insurance_amount); `commission_onmarket` ≤ `amount`; each `invoice_onmarket` once"
            " per request and not part of another invoice that is PENDING or PAID"
            " (`INVOICE_ONMARKET_IN_USE`). BALANCE checkouts are paid at once from the buyer's"
            " balance (`INSUFFICIENT_BALANCE` otherwise).\n\n"
            "With `Idempotency-Key`, a repeat with the same key and body within 24 h answers the"
            " first answer again and changes nothing; the same key with another body is"
            " `409 IDEMPOTENCY_KEY_REUSED`."
        ),
        security=BEARER,
        body=schemas.CheckoutSchema,
        headers=(IDEMPOTENCY_KEY,),
        answer={"oneOf": list(schemas.CHECKOUT_ANSWERS)},
        answer_description="The invoice: its shape depends on `source`",
        errors=_errors(
            _BODY_ERRORS,
            {400: ("INVOICE_ONMARKET_IN_USE", "INSUFFICIENT_BALANCE")},
            _ROLE,
            {409: ("IDEMPOTENCY_KEY_REUSED", "CONFLICT")},
            _ALWAYS,
            {502: ("GATEWAY_UNAVAILABLE", "GATEWAY_REJECTED")},
        ),
    ),
    ("get", "/invoice/detail"): Operation(
        tag="buyers",
        summary="An invoice, now or as it stood at a past moment",
        description=(
            "Exactly one of `invoice` and `waybill_number`. A buyer sees their own invoices, a"
            " platform account its service's, an admin all; any other answers exactly like a"
            " missing one (`400 Invoice not found`). Past `expired_at` a PENDING invoice shows"
            " EXPIRED. With `as_of` or `as_of_position` (not both) the invoice is replayed from"
            " its events up to that moment."
        ),
        security=BEARER,
        query=schemas.DetailQuerySchema,
        answer=schemas.DetailAnswer,
        errors=_errors({400: ("VALIDATION", "INVOICE_NOT_FOUND")}, _AUTH, _ALWAYS),
    ),
    ("get", "/invoice/history"): Operation(
        tag="buyers",
        summary="An invoice's events, oldest first",
        description=(
            "The same access rules as the detail. Each event names its `actor` (a user or"
            " platform account, `gateway`, or `system:…`) and the `request_id` that caused it."
        ),
        security=BEARER,
        query=schemas.HistoryQuerySchema,
        answer=schemas.HistoryAnswer,
        errors=_errors({400: ("VALIDATION", "INVOICE_NOT_FOUND")}, _AUTH, _ALWAYS),
    ),
    ("get", "/balance"): Operation(
        tag="buyers",
        summary="The caller's balances and ledger entries",
        description=(
            "`balance` is the `buyer:<username>` account (spendable on BALANCE checkouts),"
            " `seller_balance` the `seller:<username>` account; entries of both, newest first."
        ),
        security=BEARER,
        query=schemas.BalanceQuerySchema,
        answer=schemas.BalanceAnswer,
        errors=_errors({400: ("VALIDATION",)}, _AUTH, _ALWAYS),
    ),
    ("post", "/invoice/cancel"): Operation(
        tag="platforms",
        summary="Cancel a PENDING invoice, or refund a PAID store's transaction",
        description=(
            "Platform accounts only, for their own service (`platform` must be it). A PENDING"
            " invoice is canceled whole (`INVOICE CANCELED`). For a PAID invoice"
            " `invoice_onmarket` and `buyer_username` are required: that transaction goes to"
            " REFUND_IN_PROCESS (`REFUND IN PROCESS`) and is then refunded to the buyer's"
            " balance."
        ),
        security=BASIC,
        body=schemas.CancelSchema,
        answer=schemas.CancelAnswer,
        errors=_errors(
            _BODY_ERRORS,
            {400: (*_PLATFORM_REFUSALS, "BUYER_MISMATCH")},
            _ROLE,
            {409: ("CONFLICT",)},
            _ALWAYS,
        ),
    ),
    ("post", "/invoice/done"): Operation(
        tag="platforms",
        summary="Complete a PAID store's transaction: pay out the seller",
        description=(
            "Platform accounts only, for their own service. The seller is credited amount +"
            " freight_charge − commission_onmarket, `platform:<SERVICE>:commission` the"
            " commission and `platform:<SERVICE>:insurance` the insurance. `invoice_onmarket`"
            " may be left out only when the invoice has one transaction."
        ),
        security=BASIC,
        body=schemas.PlatformActionSchema,
        answer=schemas.DoneAnswer,
        errors=_errors(
            _BODY_ERRORS, {400: _PLATFORM_REFUSALS}, _ROLE, {409: ("CONFLICT",)}, _ALWAYS
        ),
    ),
    ("post", "/balance/topup"): Operation(
        tag="admins",
        summary="Credit a buyer's balance",
        description="Admin accounts only; for development and support.",
        security=BASIC,
        body=schemas.TopUpSchema,
        answer=schemas.TopUpAnswer,
        errors=_errors(_BODY_ERRORS, {400: ("USER_NOT_FOUND", "NOT_A_BUYER")}, _ROLE, _ALWAYS),
    ),
    ("post", "/callback/xendit/invoice"): Operation(
        tag="gateway",
        summary="The gateway's invoice callback (paid or expired)",
        description=(
            "Sent by Xendit (or the sandbox) with the configured `x-callback-token`. Fields not"
            " listed are ignored. Repeats are harmless (`DUPLICATE`); a payment after expiry or"
            " cancel, or a second one, is kept as the buyer's balance (`CREDITED`); a paid amount"
            " other than the invoice's is refused (`PAID_AMOUNT_MISMATCH`), and so is a payment"
            " id already recorded for another invoice (`409 PAYMENT_ID_REUSED`)."
        ),
        security=CALLBACK_TOKEN,
        body=schemas.InvoiceCallbackSchema,
        answer=schemas.CallbackAnswer,
        errors=_CALLBACK_ERRORS,
    ),
    ("post", "/callback/xendit/qr"): Operation(
        tag="gateway",
        summary="The gateway's QR code payment callback",
        description=(
            "Xendit's `qr.payment` callback, with the same token and answers as the invoice"
            " callback; `data.status` SUCCEEDED pays, any other is IGNORED."
        ),
        security=CALLBACK_TOKEN,
        body=schemas.QrCallbackSchema,
        answer=schemas.CallbackAnswer,
        errors=_CALLBACK_ERRORS,
    ),
    ("get", "/health"): Operation(
        tag="operations",
        summary="Liveness, and the log's head position",
        description="Answers once the event store is open.",
        answer=schemas.HealthAnswer,
        errors=_errors(_ALWAYS),
    ),
    ("get", "/openapi.json"): Operation(
        tag="documentation",
        summary="This document",
        description="The API's OpenAPI 3.1 description, generated from its own schemas.",
        answer={"type": "object"},
        errors={},
    ),
    ("get", "/docs"): Operation(
        tag="documentation",
        summary="This document as an HTML page",
        description="Served by the service itself: no script and no outside resources.",
        answer={"type": "string"},
        answer_media_type="text/html",
        errors={},
    ),
}

TAGS = (
    ("accounts", "Logging in."),
    ("buyers", "Bearer token. Checkout, invoices, balance."),
    ("platforms", "Basic credentials of a platform account (ONMARKET, ONDELIVERY, ONTICKET)."),
    ("admins", "Basic credentials of an admin account."),
    ("gateway", "Callbacks from the payment gateway, with its callback token."),
    ("operations", "For monitoring."),
    ("documentation", "This document."),
)

DESCRIPTION = """\
An event-sourced invoice and payment service for a marketplace: buyers check out (one invoice \
for several stores), pay through a gateway (Xendit or its built-in sandbox), by QRIS or from \
their balance; platforms complete or cancel each store's transaction.

Bodies are JSON objects (`Content-Type: application/json`). Money is an integer number of IDR \
from 0 to 10^12, written as one (`101`, not `101.0` or `"101"`): booleans, floats, strings and \
negatives are refused. Times are ISO 8601 UTC with milliseconds and `Z`. Answers carry only the \
fields documented here.

Every error is `{"message", "code"}` with the documented message and a stable `code` to match \
on; validation errors add `errors`, naming each bad field. An unknown path answers \
`404 NOT_FOUND`, a wrong method `405 METHOD_NOT_ALLOWED`; a failure of the service itself \
`500 INTERNAL`, and never a stack trace. On any path, a body larger than `max_body_bytes` \
answers `413 PAYLOAD_TOO_LARGE`, and one that does not arrive within \
`request_read_timeout_seconds` `408 REQUEST_TIMEOUT`.

Every answer carries `X-Request-ID`: the request's own, if it sent one of 1 to 128 characters \
`[A-Za-z0-9._:-]`, otherwise a new one. It is recorded with every event the request causes.

The development-only `/sandbox/*` routes (the simulated gateway's payment page and buttons) \
are not part of this document: see docs/api.md."""


def _version() -> str:
    try:
        return metadata.version("invoice-service")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"


# -- building the document --------------------------------------------------------------------


def _money_range(
    self: Any, field: fields.Field[Any], ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """Money is an integer from 0 to 10^12; a Range validator may narrow that further."""
    if not isinstance(field, schemas.Money):
        return {}
    return {
        "minimum": max(ret.get("minimum", 0), 0),
        "maximum": min(ret.get("maximum", schemas.MAX_AMOUNT), schemas.MAX_AMOUNT),
    }


def routes_to_document(app: web.Application) -> list[tuple[str, str]]:
    """The app's (method, path) pairs this document must describe: all but HEAD and sandbox."""
    found = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "*")
        and not route.resource.canonical.startswith(SANDBOX_PREFIX)
    }
    return sorted(found)


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of the routes ``app`` has mounted."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=TITLE,
        version=_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
        tags=[{"name": name, "description": text} for name, text in TAGS],
    )
    converter = plugin.converter
    assert converter is not None
    # An instance attribute: apispec's own mapping is shared by every converter.
    converter.field_mapping = {**converter.field_mapping, schemas.Money: ("integer", None)}
    converter.add_attribute_function(_money_range)  # type: ignore[no-untyped-call]

    components = spec.components
    components.security_scheme(
        BEARER,
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "HMAC-signed token",
            "description": "A token from `POST /auth`.",
        },
    )
    components.security_scheme(
        BASIC,
        {
            "type": "http",
            "scheme": "basic",
            "description": "An account's username and password (platform or admin accounts).",
        },
    )
    components.security_scheme(
        CALLBACK_TOKEN,
        {
            "type": "apiKey",
            "in": "header",
            "name": "x-callback-token",
            "description": "The gateway's callback verification token (`callback_token`).",
        },
    )
    components.header(
        REQUEST_ID_HEADER,
        {
            "description": "The request's id: the one it sent if sensible, else a new one.",
            "required": True,
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
        },
    )
    components.parameter(
        REQUEST_ID_HEADER,
        "header",
        {
            "name": REQUEST_ID_HEADER,
            "required": False,
            "description": (
                "Your id for this request: echoed, logged and recorded with its events when it"
                " is 1 to 128 characters `[A-Za-z0-9._:-]`; anything else is replaced."
            ),
            "schema": {"type": "string"},
        },
    )
    components.parameter(
        IDEMPOTENCY_KEY,
        "header",
        {
            "name": IDEMPOTENCY_KEY,
            "required": False,
            "description": (
                "Makes a retry safe: the same key and body within 24 h answer the first answer"
                " again; the same key with another body is 409."
            ),
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": r"^[\x21-\x7e]{1,255}$",
            },
        },
    )
    components.schema("ErrorAnswer", schema=schemas.ErrorAnswer)

    mounted = set(routes_to_document(app))
    for (method, path), operation in OPERATIONS.items():
        if (method, path) in mounted:
            spec.path(path=path, operations={method: _operation(method, path, operation)})
    document = spec.to_dict()
    _describe_schemas(document)
    return document


def _operation(method: str, path: str, operation: Operation) -> dict[str, Any]:
    parameters: list[Any] = []
    if operation.query is not None:
        parameters.append({"in": "query", "schema": operation.query})
    parameters.extend(operation.headers)  # names of components.parameters
    parameters.append(REQUEST_ID_HEADER)
    responses: dict[str, Any] = {
        "200": {
            "description": operation.answer_description,
            "headers": {REQUEST_ID_HEADER: _ref("headers", REQUEST_ID_HEADER)},
            "content": {operation.answer_media_type: {"schema": operation.answer}},
        }
    }
    for status, codes in operation.errors.items():
        responses[str(status)] = _error_response(status, codes)
    result: dict[str, Any] = {
        "tags": [operation.tag],
        "summary": operation.summary,
        "description": operation.description,
        "operationId": _operation_id(method, path),
        "parameters": parameters,
        "responses": responses,
        "security": [{operation.security: []}] if operation.security else [],
    }
    if operation.body is not None:
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": operation.body}},
        }
    return result


def _error_response(status: int, codes: Iterable[str]) -> dict[str, Any]:
    codes = list(codes)
    lines = "\n".join(f"- `{code}`: {ERROR_MESSAGES[code]}" for code in codes)
    return {
        "description": f"{_STATUS_TEXT.get(status, 'Error')}.\n\n{lines}",
        "headers": {REQUEST_ID_HEADER: _ref("headers", REQUEST_ID_HEADER)},
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [_ref("schemas", "ErrorAnswer")],
                    "properties": {"code": {"enum": codes}},
                }
            }
        },
    }


def _ref(section: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{section}/{name}"}


def _operation_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path)
    return method + "".join(word[:1].upper() + word[1:] for word in words)


def _describe_schemas(document: dict[str, Any]) -> None:
    """Give each component schema its class's docstring (apispec reads only Meta)."""
    by_name = {
        name: schema
        for name, schema in vars(schemas).items()
        if isinstance(schema, type) and issubclass(schema, Schema)
    }
    for name, component in document.get("components", {}).get("schemas", {}).items():
        cls = by_name.get(name) or by_name.get(f"{name}Schema")
        doc = (cls.__doc__ or "").strip() if cls is not None else ""
        if doc:
            component.setdefault("description", " ".join(doc.split()))


# -- serving it -----------------------------------------------------------------------------------


class ApiDocument:
    """The document of one app and its HTML page, made on first use and kept."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._json: bytes | None = None
        self._page: tuple[str, str] | None = None

    def document(self) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.json())
        return result

    def json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(build_document(self._app))
        return self._json

    def page(self) -> tuple[str, str]:
        """The HTML page and the Content-Security-Policy that lets its stylesheet in."""
        if self._page is None:
            csp = (
                f"default-src 'none'; style-src '{CSS_HASH}'; img-src data:;"
                " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            )
            self._page = (render_page(self.document()), csp)
        return self._page

    async def serve_json(self, request: web.Request) -> web.Response:
        return web.Response(body=self.json(), content_type="application/json")

    async def serve_page(self, request: web.Request) -> web.Response:
        page, csp = self.page()
        response = web.Response(text=page, content_type="text/html", charset="utf-8")
        response.headers.update(
            {
                "Content-Security-Policy": csp,
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            }
        )
        return response


def setup(app: web.Application) -> None:
    """Mount ``/openapi.json`` and ``/docs``; call it after every other route is added."""
    document = ApiDocument(app)
    app.router.add_get("/openapi.json", document.serve_json)
    app.router.add_get("/docs", document.serve_page)
