"""What the OpenAPI document says about each route beyond what its schemas say.

``OPERATIONS`` holds, for every documented (method, path): summary, description, credentials,
query and header parameters, the request and answer schemas, and every status the endpoint can
answer with the error codes behind it (each under the status ``codes.CATALOGUE`` gives it).
``document.py`` turns these into the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

from service.http import schemas
from service.http.openapi.codes import check_listed, markdown_table

BEARER, BASIC, CALLBACK_TOKEN = "bearer", "basic", "callbackToken"
IDEMPOTENCY_KEY = "Idempotency-Key"

STATUS_TEXT = {
    400: "Bad request",
    401: "Missing or wrong credentials (whatever was wrong: nothing leaks)",
    403: "An account of the wrong kind, or not allowed to act on this",
    404: "No such resource, or one the caller may not see",
    408: "The request body did not arrive in time",
    409: "Conflict",
    413: "The request body is larger than `max_body_bytes`",
    415: "The request body is not `application/json`",
    500: "A failure of the service itself (no details reach the client)",
    502: "The payment gateway failed; nothing was written",
    503: "Not ready to take traffic (`errors` says why)",
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
    """Merge status → codes tables, keeping each code once; each code under its catalogued
    status (``codes.CATALOGUE``), or the import fails."""
    merged: dict[int, tuple[str, ...]] = {}
    for table in tables:
        for status, codes in table.items():
            check_listed(status, codes)  # one code, one status: the catalogue's
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
    status: int = 200  # of a success


# Both gateway callbacks refuse the same way.
_CALLBACK_ERRORS = _errors(
    _BODY_ERRORS,
    {400: ("INVOICE_NOT_FOUND", "PAID_AMOUNT_MISMATCH")},
    _AUTH,
    {409: ("PAYMENT_ID_REUSED", "CONFLICT")},
    _ALWAYS,
)

_ENDPOINT = {404: ("WEBHOOK_ENDPOINT_NOT_FOUND",)}
_WEBHOOK_DOC = (
    " Basic credentials of a platform account (its own service's endpoints and messages only:"
    " another's answer as missing ones) or an admin (every service's)."
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
            " (`INVOICE_ONMARKET_IN_USE`); each `seller_username` an existing, enabled buyer"
            " account (`SELLER_NOT_FOUND`, naming the line). BALANCE checkouts are paid at once"
            " from the buyer's"
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
            {400: ("INVOICE_ONMARKET_IN_USE", "SELLER_NOT_FOUND", "INSUFFICIENT_BALANCE")},
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
    ("post", "/invoice/done/batch"): Operation(
        tag="platforms",
        summary="Complete up to 100 PAID transactions, each on its own",
        description=(
            "Platform accounts only, for their own service. Each item is completed exactly as"
            " `/invoice/done` would complete it, on its own: a refused item is that item's result"
            " (`status` `failed`, its `code` and `message`) and changes nothing of the others."
            " Results come in the order of the items. `amount`, when given, must equal the"
            " transaction's amount + freight_charge + insurance_amount (`AMOUNT_MISMATCH`);"
            " another service's invoice fails alone (`FORBIDDEN`). Item codes: "
            + ", ".join(
                f"`{code}`"
                for code in (*_PLATFORM_REFUSALS, "AMOUNT_MISMATCH", "FORBIDDEN", "CONFLICT")
            )
            + ".\n\nWith `Idempotency-Key`, a repeat with the same key and body within 24 h"
            " answers the first answer again and changes nothing; the same key with another body"
            " is `409 IDEMPOTENCY_KEY_REUSED`."
        ),
        security=BASIC,
        body=schemas.DoneBatchSchema,
        headers=(IDEMPOTENCY_KEY,),
        answer=schemas.DoneBatchAnswer,
        errors=_errors(_BODY_ERRORS, _ROLE, {409: ("IDEMPOTENCY_KEY_REUSED", "CONFLICT")}, _ALWAYS),
    ),
    ("post", "/invoice/mark-paid"): Operation(
        tag="platforms",
        summary="Mark a PENDING invoice paid out of band (channel MANUAL)",
        description=(
            "A platform account for its own service's invoices (`platform` must be it), or an"
            " admin (`platform` must be the invoice's service). The invoice becomes PAID as if"
            " the gateway had paid it, through the channel `MANUAL`: `external:manual` pays the"
            " total into the invoice's escrow, and the gateway's invoice is expired. The actor,"
            " `reference` and `reason` are kept in the invoice's history; done and cancel (by"
            " refund) then work as for any paid invoice. A gateway payment arriving afterwards is"
            " credited to the buyer's balance as a late payment. An invoice that is not PENDING"
            " is refused with its state's message (`INVOICE_ALREADY_PAID` also once completed or"
            " refunded), so a retry after success answers `INVOICE_ALREADY_PAID`."
        ),
        security=BASIC,
        body=schemas.MarkPaidSchema,
        answer=schemas.MarkPaidAnswer,
        errors=_errors(
            _BODY_ERRORS,
            {
                400: (
                    "INVOICE_NOT_FOUND",
                    "TRANSACTION_ALREADY_CANCELED",
                    "INVOICE_EXPIRED",
                    "INVOICE_ALREADY_PAID",
                )
            },
            _ROLE,
            {409: ("CONFLICT",)},
            _ALWAYS,
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
            " cancel, or a second one, is kept as the buyer's balance (`CREDITED`); so is a paid"
            " amount other than the PENDING invoice's, which stays PENDING"
            " (`AMOUNT_MISMATCH_CREDITED`); a callback with no amount, or 0, is refused"
            " (`PAID_AMOUNT_MISMATCH`), and so is a payment id already recorded for another"
            " invoice (`409 PAYMENT_ID_REUSED`)."
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
    ("post", "/webhooks/endpoints"): Operation(
        tag="webhooks",
        summary="Register a webhook endpoint for the caller's service",
        description=(
            "Platform accounts only. Deliveries of the selected `event_types` (all when empty)"
            " are POSTed to `url`, signed per Standard Webhooks with `secret`, which is shown"
            " only here (and on rotation). In production the URL must be https and resolve to"
            " public addresses only (`WEBHOOK_URL_REFUSED`)."
        ),
        security=BASIC,
        body=schemas.WebhookEndpointCreateSchema,
        answer=schemas.WebhookEndpointAnswer,
        status=201,
        answer_description="Created: the endpoint, with its secret",
        errors=_errors(_BODY_ERRORS, {400: ("WEBHOOK_URL_REFUSED",)}, _ROLE, _ALWAYS),
    ),
    ("get", "/webhooks/endpoints"): Operation(
        tag="webhooks",
        summary="The caller's webhook endpoints",
        description="Oldest first, without their secrets." + _WEBHOOK_DOC,
        security=BASIC,
        answer=schemas.WebhookEndpointListAnswer,
        errors=_errors(_ROLE, _ALWAYS),
    ),
    ("get", "/webhooks/endpoints/{endpoint}"): Operation(
        tag="webhooks",
        summary="A webhook endpoint",
        description="Without its secret." + _WEBHOOK_DOC,
        security=BASIC,
        answer=schemas.WebhookEndpointAnswer,
        errors=_errors(_ROLE, _ENDPOINT, _ALWAYS),
    ),
    ("patch", "/webhooks/endpoints/{endpoint}"): Operation(
        tag="webhooks",
        summary="Change a webhook endpoint: url, event types, description, disabled",
        description=(
            "Only the fields given change. `disabled: false` enables an endpoint the service"
            " disabled (410, or failing for days); its pending messages are then sent, and"
            " failed ones can be recovered." + _WEBHOOK_DOC
        ),
        security=BASIC,
        body=schemas.WebhookEndpointUpdateSchema,
        answer=schemas.WebhookEndpointAnswer,
        errors=_errors(
            _BODY_ERRORS,
            {400: ("WEBHOOK_URL_REFUSED",)},
            _ROLE,
            _ENDPOINT,
            {409: ("CONFLICT",)},
            _ALWAYS,
        ),
    ),
    ("delete", "/webhooks/endpoints/{endpoint}"): Operation(
        tag="webhooks",
        summary="Delete a webhook endpoint",
        description="Nothing more is sent to it; its delivery log stays." + _WEBHOOK_DOC,
        security=BASIC,
        answer={"type": "null"},
        status=204,
        answer_description="Deleted",
        errors=_errors(_ROLE, _ENDPOINT, {409: ("CONFLICT",)}, _ALWAYS),
    ),
    ("post", "/webhooks/endpoints/{endpoint}/rotate-secret"): Operation(
        tag="webhooks",
        summary="Rotate a webhook endpoint's secret",
        description=(
            "A new secret signs from now on; the previous one signs beside it (a second"
            " `v1,` signature in `webhook-signature`) until `old_secret_expires_at`, 24 h"
            " later, so receivers can switch without missing a delivery." + _WEBHOOK_DOC
        ),
        security=BASIC,
        answer=schemas.WebhookSecretAnswer,
        errors=_errors(_ROLE, _ENDPOINT, {409: ("CONFLICT",)}, _ALWAYS),
    ),
    ("post", "/webhooks/endpoints/{endpoint}/recover"): Operation(
        tag="webhooks",
        summary="Resend every failed message of an endpoint since a time",
        description=(
            "Each failed message queued at or after `since` is due again at once, with a new"
            " round of retries and the same `webhook-id`." + _WEBHOOK_DOC
        ),
        security=BASIC,
        body=schemas.WebhookRecoverSchema,
        answer=schemas.WebhookResentAnswer,
        status=202,
        answer_description="Accepted: the messages are due again",
        errors=_errors(_BODY_ERRORS, _ROLE, _ENDPOINT, {409: ("CONFLICT",)}, _ALWAYS),
    ),
    ("get", "/webhooks/messages"): Operation(
        tag="webhooks",
        summary="The delivery log: messages and their attempts",
        description=(
            "Newest first, filtered by `endpoint_id`, `status` (pending, delivered, failed)"
            " and `invoice`. Each attempt shows its time, the HTTP status (0: no answer, with"
            " `error`), its duration and the first 1 KiB of the answer." + _WEBHOOK_DOC
        ),
        security=BASIC,
        query=schemas.WebhookMessagesQuerySchema,
        answer=schemas.WebhookMessageListAnswer,
        errors=_errors({400: ("VALIDATION",)}, _ROLE, _ALWAYS),
    ),
    ("post", "/webhooks/messages/{message}/resend"): Operation(
        tag="webhooks",
        summary="Send a message again, delivered or not",
        description="Due at once, with the same `webhook-id`." + _WEBHOOK_DOC,
        security=BASIC,
        answer=schemas.WebhookResentAnswer,
        status=202,
        answer_description="Accepted: the message is due again",
        errors=_errors(_ROLE, {404: ("WEBHOOK_MESSAGE_NOT_FOUND",)}, {409: ("CONFLICT",)}, _ALWAYS),
    ),
    ("get", "/health"): Operation(
        tag="operations",
        summary="Liveness, and the log's head position",
        description="Answers once the event store is open.",
        answer=schemas.HealthAnswer,
        errors=_errors(_ALWAYS),
    ),
    ("get", "/health/live"): Operation(
        tag="operations",
        summary="Liveness: the process answers",
        description="200 as long as the process answers requests; nothing else is checked.",
        answer=schemas.LiveAnswer,
        errors=_errors(_ALWAYS),
    ),
    ("get", "/health/ready"): Operation(
        tag="operations",
        summary="Readiness: the database answers and the background jobs run",
        description=(
            "200 when the database answers a query within 2 s and every background job's"
            " runner is alive (running its job, or waiting while another process holds the"
            " job's lease); otherwise 503 `NOT_READY`, `errors` naming `database` or `jobs`."
        ),
        answer=schemas.ReadyAnswer,
        errors=_errors({503: ("NOT_READY",)}, _ALWAYS),
    ),
    ("get", "/metrics"): Operation(
        tag="operations",
        summary="Prometheus metrics of every process",
        description=(
            "The Prometheus text format (prometheus-client): request durations by method,"
            " route template and status, the domain's outcomes, backlogs, the log's head"
            " position and group-commit sizes, summed over every process of"
            " `serve --workers N`. With the setting `metrics_token` (`INVOICE_METRICS_TOKEN`)"
            " it asks for `Authorization: Bearer <metrics_token>` and answers 401 without it."
            " With the setting `metrics` false, request durations are not recorded."
        ),
        answer={"type": "string"},
        answer_media_type="text/plain",
        errors=_errors(_AUTH, _ALWAYS),
    ),
    ("get", "/admin"): Operation(
        tag="operations",
        summary="The operator page",
        description=(
            "Server-rendered HTML for admin accounts: invoices by status and the last 24 hours'"
            " checkouts as SVG charts, the refund backlog (and the webhooks' when present), and"
            " a search by invoice id or waybill showing the invoice's timeline with actors and"
            " its state now or `as_of` a time or a log position. A 401 carries"
            " `WWW-Authenticate: Basic`, so a browser asks for credentials."
        ),
        answer={"type": "string"},
        answer_media_type="text/html",
        security=BASIC,
        query=schemas.AdminQuerySchema,
        errors=_errors({400: ("VALIDATION",)}, _ROLE, _ALWAYS),
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
    # The operator page's Resend button (service/http/admin_webhooks.py).
    ("post", "/admin/webhooks/{delivery_id}/resend"): Operation(
        tag="operations",
        summary="Resend a webhook delivery from the operator page",
        description=(
            "The Resend button of the operator page's failed deliveries: the message (of any"
            " service) is due again at once, with the same `webhook-id`, recorded as sent"
            " again by the admin. Answers `303 See Other` to `/admin?resent=<id>`, whose"
            " notice says so. A form post the browser marks as from another site"
            " (`Sec-Fetch-Site` other than `same-origin`, or an `Origin` of another host) is"
            " refused. A 401 carries `WWW-Authenticate: Basic`, as `/admin`'s does."
        ),
        answer={"type": "string"},
        answer_media_type="text/html",
        answer_description="See Other: back to the operator page",
        status=303,
        security=BASIC,
        errors=_errors(
            _ROLE,
            {403: ("CROSS_SITE_REQUEST",), 404: ("WEBHOOK_MESSAGE_NOT_FOUND",)},
            {409: ("CONFLICT",)},
            _ALWAYS,
        ),
    ),
}

TAGS = (
    ("accounts", "Logging in."),
    ("buyers", "Bearer token. Checkout, invoices, balance."),
    ("platforms", "Basic credentials of a platform account (ONMARKET, ONDELIVERY, ONTICKET)."),
    ("admins", "Basic credentials of an admin account."),
    ("webhooks", "Standard Webhooks to platforms: endpoints and the delivery log (Basic)."),
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


if __name__ == "__main__":  # pragma: no cover - prints docs/api.md's table of error codes
    print(markdown_table({key: operation.errors for key, operation in OPERATIONS.items()}))
