"""What every documented operation is made of: the ``Operation`` type and the error tables.

An operation lists, per status, the error codes it can answer; ``error_table`` merges the shared
tables below with an operation's own and checks each code against ``codes.CATALOGUE``, so the
document cannot list a code under a status the service never answers it with. ``operations.py``
and ``webhook_operations.py`` build their operations from these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

from service.http.openapi.codes import check_listed

BEARER, BASIC, CALLBACK_TOKEN = "bearer", "basic", "callbackToken"
IDEMPOTENCY_KEY = "Idempotency-Key"

# Errors every endpoint with a JSON body can answer before its handler decides anything.
BODY_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("VALIDATION", "MALFORMED_JSON"),
    408: ("REQUEST_TIMEOUT",),
    413: ("PAYLOAD_TOO_LARGE",),
    415: ("UNSUPPORTED_MEDIA_TYPE",),
}
ALWAYS: dict[int, tuple[str, ...]] = {500: ("INTERNAL",)}
AUTH: dict[int, tuple[str, ...]] = {401: ("AUTH_ERROR",)}
ROLE: dict[int, tuple[str, ...]] = {401: ("AUTH_ERROR",), 403: ("FORBIDDEN",)}
PLATFORM_REFUSALS = (
    "INVOICE_NOT_FOUND",
    "TRANSACTION_NOT_FOUND",
    "REFUND_ALREADY_IN_PROCESS",
    "TRANSACTION_ALREADY_CANCELED",
    "TRANSACTION_ALREADY_REFUNDED",
    "INVOICE_EXPIRED",
    "TRANSACTION_ALREADY_COMPLETED",
    "TRANSACTION_NOT_PAID",
)


def error_table(*tables: Mapping[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
    """Merge status → codes tables, keeping each code once; each code under its catalogued
    status (``codes.CATALOGUE``), or the import fails."""
    merged: dict[int, tuple[str, ...]] = {}
    for table in tables:
        for status, codes in table.items():
            check_listed(status, codes)  # one code, one status: the catalogue's
            merged[status] = tuple(dict.fromkeys((*merged.get(status, ()), *codes)))
    return dict(sorted(merged.items()))


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
