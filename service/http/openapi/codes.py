"""The catalogue of every error ``code`` the service answers: its HTTP status, message, condition.

One code names one condition and answers one status everywhere. ``common.error_table`` refuses
(at import) an operation that lists a code under another status than the catalogue's, the
OpenAPI document's per-status ``enum`` is built from the operations' lists, and the table in
docs/api.md is ``markdown_table(OPERATIONS)`` (tests/unit/test_error_codes.py checks it is
current; ``python -m service.http.openapi.operations`` prints it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from service.application import (
    Conflict,
    IdempotencyKeyReused,
    NotABuyer,
    PaymentIdReused,
    UserNotFound,
)
from service.domain import errors
from service.domain.webhook_delivery import WebhookMessageNotFound
from service.domain.webhook_endpoint import WebhookEndpointNotFound, WebhookUrlRefused
from service.gateway.port import GatewayRejected, GatewayUnavailable

ANY_PATH = "any path"
SANDBOX_PAY = "POST /sandbox/invoices/{reference}/pay"


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One stable code: the status and message it answers with, and when."""

    code: str
    status: int
    message: str
    condition: str
    # Where it is answered beyond the documented operations (which list their own codes).
    elsewhere: tuple[str, ...] = ()


def _domain(
    error: type[errors.DomainError], status: int, condition: str, elsewhere: tuple[str, ...] = ()
) -> ErrorCode:
    return ErrorCode(error.code, status, error.message, condition, elsewhere)


CATALOGUE: Final[tuple[ErrorCode, ...]] = (
    ErrorCode(
        "VALIDATION",
        400,
        "Invalid JSON Format",
        "A field, query parameter or header is missing, unknown or invalid; the body is not an"
        " object (`errors` names each)",
        (SANDBOX_PAY,),
    ),
    ErrorCode(
        "MALFORMED_JSON",
        400,
        "Invalid JSON Format",
        "The body is not valid JSON, or repeats a key",
        (SANDBOX_PAY,),
    ),
    _domain(
        errors.InvoiceOnmarketInUse,
        400,
        "An `invoice_onmarket` is part of another PENDING or PAID invoice",
    ),
    _domain(
        errors.SellerNotFound, 400, "A line's seller is not an existing, enabled buyer account"
    ),
    _domain(errors.InsufficientBalance, 400, "A BALANCE checkout above the buyer's balance"),
    _domain(
        errors.InvoiceNotFound,
        400,
        "No such invoice, or one the caller may not see (answered alike)",
    ),
    _domain(errors.TransactionNotFound, 400, "No such store transaction in the invoice"),
    _domain(errors.ExpiredInvoice, 400, "The invoice expired unpaid"),
    _domain(errors.AlreadyCanceled, 400, "The transaction (or invoice) was canceled"),
    _domain(errors.AlreadyRefunded, 400, "The transaction was refunded"),
    _domain(errors.RefundInProcess, 400, "The transaction's refund is in process"),
    _domain(errors.AlreadyCompleted, 400, "The transaction was completed (paid out)"),
    _domain(errors.NotPaid, 400, "The transaction is not paid yet"),
    _domain(
        errors.AlreadyPaid,
        400,
        "A mark-paid of an invoice paid already (completed or refunded since, too)",
    ),
    _domain(errors.BuyerMismatch, 400, "`buyer_username` is not the buyer of the transaction"),
    _domain(
        errors.PaidAmountMismatch,
        400,
        "A gateway callback with no paid amount, or 0",
    ),
    _domain(
        errors.AmountMismatch,
        400,
        "A batch item's `amount` is not the transaction's amount + freight_charge +"
        " insurance_amount (that item's result, in the batch's 200 answer)",
        ("POST /invoice/done/batch",),
    ),
    _domain(UserNotFound, 400, "No account of that username"),
    _domain(
        WebhookUrlRefused,
        400,
        "A webhook URL the service may not send to: not https in production, or a host that"
        " resolves to a loopback, private, link-local, multicast or reserved address",
    ),
    _domain(NotABuyer, 400, "A top-up of an account that is not a buyer"),
    ErrorCode(
        "AUTH_ERROR",
        401,
        "Auth Error",
        "Missing, malformed, expired or wrong credentials, or a disabled account",
    ),
    _domain(
        errors.Forbidden,
        403,
        "An account of the wrong kind, or acting for another platform",
    ),
    ErrorCode(
        "CROSS_SITE_REQUEST",
        403,
        "Cross-site request refused",
        "A form post to the operator page sent from another site (its `Sec-Fetch-Site` or"
        " `Origin` says so): a browser's remembered credentials act only from the page itself",
    ),
    ErrorCode("NOT_FOUND", 404, "Not found", "No route at this path", (ANY_PATH,)),
    _domain(
        WebhookEndpointNotFound,
        404,
        "No such webhook endpoint, or another platform's (answered alike)",
    ),
    _domain(
        WebhookMessageNotFound,
        404,
        "No such webhook message, or another platform's (answered alike)",
    ),
    ErrorCode(
        "METHOD_NOT_ALLOWED",
        405,
        "Method not allowed",
        "A method the path does not take (`Allow` lists those it does)",
        (ANY_PATH,),
    ),
    ErrorCode(
        "REQUEST_TIMEOUT",
        408,
        "Request Timeout",
        "The body did not arrive within `request_read_timeout_seconds`",
    ),
    _domain(IdempotencyKeyReused, 409, "An `Idempotency-Key` reused with another body within 24 h"),
    _domain(PaymentIdReused, 409, "A gateway payment id already recorded for another invoice"),
    _domain(Conflict, 409, "Too many concurrent changes to the same invoice; retry"),
    ErrorCode(
        "NOT_SANDBOX",
        409,
        "Only the sandbox gateway can pay",
        "A sandbox payment while another gateway is configured",
        (SANDBOX_PAY,),
    ),
    ErrorCode(
        "ALREADY_PAID",
        409,
        "INVOICE ALREADY PAID",
        "A second, different sandbox payment of one invoice or QR code",
        (SANDBOX_PAY,),
    ),
    ErrorCode(
        "PAYLOAD_TOO_LARGE",
        413,
        "Request body is too large",
        "The body is larger than `max_body_bytes`",
        (ANY_PATH,),
    ),
    ErrorCode(
        "UNSUPPORTED_MEDIA_TYPE",
        415,
        "Content-Type must be application/json",
        "A body that is not `application/json`",
    ),
    ErrorCode(
        "INTERNAL",
        500,
        "INTERNAL SERVER ERROR",
        "A failure of the service itself (no details reach the client)",
        (ANY_PATH,),
    ),
    ErrorCode(
        GatewayUnavailable.code,
        502,
        GatewayUnavailable.message,
        "The payment gateway did not answer after the retries; nothing was written",
    ),
    ErrorCode(
        GatewayRejected.code,
        502,
        GatewayRejected.message,
        "The payment gateway refused the request; nothing was written",
    ),
    ErrorCode(
        "NOT_READY",
        503,
        "Not ready",
        "The database did not answer the readiness probe in time, or a background job's runner"
        " has stopped (`errors` names which)",
    ),
)

BY_CODE: Final = MappingProxyType({entry.code: entry for entry in CATALOGUE})
ERROR_MESSAGES: Final = MappingProxyType({entry.code: entry.message for entry in CATALOGUE})

TABLE_HEADER = (
    "| Condition | `code` | HTTP status | Endpoints |",
    "| --- | --- | --- | --- |",
)


def check_listed(status: int, codes: Iterable[str]) -> None:
    """Refuse a code listed under another status than the catalogue's, or not catalogued."""
    for code in codes:
        entry = BY_CODE.get(code)
        if entry is None:
            raise ValueError(f"error code {code!r} is not in the catalogue")
        if entry.status != status:
            raise ValueError(f"error code {code!r} is {entry.status}, listed under {status}")


def endpoints_of(
    operations: Mapping[tuple[str, str], Mapping[int, tuple[str, ...]]],
) -> dict[str, list[str]]:
    """For each code: the documented operations that list it, then where else it answers."""
    found: dict[str, list[str]] = {entry.code: [] for entry in CATALOGUE}
    for (method, path), by_status in operations.items():
        for codes in by_status.values():
            for code in codes:
                found[code].append(f"{method.upper()} {path}")
    for entry in CATALOGUE:
        found[entry.code].extend(entry.elsewhere)
    return found


def markdown_rows(
    operations: Mapping[tuple[str, str], Mapping[int, tuple[str, ...]]],
) -> list[str]:
    """The table's rows, in catalogue order (by status)."""
    endpoints = endpoints_of(operations)
    rows = []
    for entry in CATALOGUE:
        where = (
            "any path"
            if ANY_PATH in endpoints[entry.code]
            else ", ".join(f"`{e}`" for e in endpoints[entry.code])
        )
        rows.append(f"| {entry.condition} | `{entry.code}` | {entry.status} | {where} |")
    return rows


def markdown_table(
    operations: Mapping[tuple[str, str], Mapping[int, tuple[str, ...]]],
) -> str:
    return "\n".join((*TABLE_HEADER, *markdown_rows(operations)))
