"""What the OpenAPI document says about each route beyond what its schemas say.

``OPERATIONS`` holds, for every documented (method, path): summary, description, credentials,
query and header parameters, the request and answer schemas, and every status the endpoint can
answer with the error codes behind it (each under the status ``codes.CATALOGUE`` gives it).
The table is assembled here, in the document's order; the webhook routes' entries come from
``webhook_operations.py``, and the ``Operation`` type and shared error tables from ``common.py``.
``document.py`` turns these into the document.
"""

from __future__ import annotations

from service.http import schemas
from service.http.openapi.codes import markdown_table
from service.http.openapi.common import (
    ALWAYS,
    AUTH,
    BASIC,
    BEARER,
    BODY_ERRORS,
    CALLBACK_TOKEN,
    IDEMPOTENCY_KEY,
    PLATFORM_REFUSALS,
    ROLE,
    Operation,
    error_table,
)
from service.http.openapi.webhook_operations import WEBHOOK_OPERATIONS

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

# Both gateway callbacks refuse the same way.
_CALLBACK_ERRORS = error_table(
    BODY_ERRORS,
    {400: ("INVOICE_NOT_FOUND", "PAID_AMOUNT_MISMATCH")},
    AUTH,
    {409: ("PAYMENT_ID_REUSED", "CONFLICT")},
    ALWAYS,
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
        errors=error_table(BODY_ERRORS, AUTH, ALWAYS),
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
        errors=error_table(
            BODY_ERRORS,
            {400: ("INVOICE_ONMARKET_IN_USE", "SELLER_NOT_FOUND", "INSUFFICIENT_BALANCE")},
            ROLE,
            {409: ("IDEMPOTENCY_KEY_REUSED", "CONFLICT")},
            ALWAYS,
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
        errors=error_table({400: ("VALIDATION", "INVOICE_NOT_FOUND")}, AUTH, ALWAYS),
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
        errors=error_table({400: ("VALIDATION", "INVOICE_NOT_FOUND")}, AUTH, ALWAYS),
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
        errors=error_table({400: ("VALIDATION",)}, AUTH, ALWAYS),
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
        errors=error_table(
            BODY_ERRORS,
            {400: (*PLATFORM_REFUSALS, "BUYER_MISMATCH")},
            ROLE,
            {409: ("CONFLICT",)},
            ALWAYS,
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
        errors=error_table(
            BODY_ERRORS, {400: PLATFORM_REFUSALS}, ROLE, {409: ("CONFLICT",)}, ALWAYS
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
                for code in (*PLATFORM_REFUSALS, "AMOUNT_MISMATCH", "FORBIDDEN", "CONFLICT")
            )
            + ".\n\nWith `Idempotency-Key`, a repeat with the same key and body within 24 h"
            " answers the first answer again and changes nothing; the same key with another body"
            " is `409 IDEMPOTENCY_KEY_REUSED`."
        ),
        security=BASIC,
        body=schemas.DoneBatchSchema,
        headers=(IDEMPOTENCY_KEY,),
        answer=schemas.DoneBatchAnswer,
        errors=error_table(
            BODY_ERRORS, ROLE, {409: ("IDEMPOTENCY_KEY_REUSED", "CONFLICT")}, ALWAYS
        ),
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
        errors=error_table(
            BODY_ERRORS,
            {
                400: (
                    "INVOICE_NOT_FOUND",
                    "TRANSACTION_ALREADY_CANCELED",
                    "INVOICE_EXPIRED",
                    "INVOICE_ALREADY_PAID",
                )
            },
            ROLE,
            {409: ("CONFLICT",)},
            ALWAYS,
        ),
    ),
    ("post", "/balance/topup"): Operation(
        tag="admins",
        summary="Credit a buyer's balance",
        description="Admin accounts only; for development and support.",
        security=BASIC,
        body=schemas.TopUpSchema,
        answer=schemas.TopUpAnswer,
        errors=error_table(BODY_ERRORS, {400: ("USER_NOT_FOUND", "NOT_A_BUYER")}, ROLE, ALWAYS),
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
    **WEBHOOK_OPERATIONS,  # here, so the document and the codes table keep their order
    ("get", "/health"): Operation(
        tag="operations",
        summary="Liveness, and the log's head position",
        description="Answers once the event store is open.",
        answer=schemas.HealthAnswer,
        errors=error_table(ALWAYS),
    ),
    ("get", "/health/live"): Operation(
        tag="operations",
        summary="Liveness: the process answers",
        description="200 as long as the process answers requests; nothing else is checked.",
        answer=schemas.LiveAnswer,
        errors=error_table(ALWAYS),
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
        errors=error_table({503: ("NOT_READY",)}, ALWAYS),
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
        errors=error_table(AUTH, ALWAYS),
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
        errors=error_table({400: ("VALIDATION",)}, ROLE, ALWAYS),
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
        errors=error_table(
            ROLE,
            {403: ("CROSS_SITE_REQUEST",), 404: ("WEBHOOK_MESSAGE_NOT_FOUND",)},
            {409: ("CONFLICT",)},
            ALWAYS,
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
