"""Stable error codes: one code, one condition, one status, everywhere it is answered.

The catalogue (service/http/openapi/codes.py) is checked against every place that answers a
code: the domain's and application's errors with the HTTP layer's status for them, every literal
``ApiError(status, message, code)`` in service/http, the middleware's HTTP errors, every
operation of the OpenAPI document, and the table in docs/api.md.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TypeVar

import pytest

from service.domain.errors import DomainError
from service.gateway.port import GatewayError
from service.http.errors import status_of
from service.http.middleware import _HTTP_CODES
from service.http.openapi import OPERATIONS
from service.http.openapi.codes import BY_CODE, CATALOGUE, check_listed, markdown_rows

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]

# Codes of domain errors that never reach an HTTP answer, and why.
NOT_ANSWERED_OVER_HTTP = {
    "BAD_REQUEST": "DomainError's own default; every refusal is a subclass",
    "USER_EXISTS": "account creation is the CLI's alone",
    # The checkout schema refuses these first, as VALIDATION with the same `errors`.
    "TOTAL_AMOUNT_MISMATCH": "refused first by CheckoutSchema as VALIDATION",
    "TOTAL_AMOUNT_NOT_POSITIVE": "refused first by CheckoutSchema as VALIDATION",
    "INVOICE_ONMARKET_REPEATED": "refused first by CheckoutSchema as VALIDATION",
    "WAYBILL_NOT_ALLOWED": "refused first by CheckoutSchema as VALIDATION",
    "COMMISSION_ABOVE_AMOUNT": "refused first by CheckoutSchema as VALIDATION",
}


def _subclasses(cls: type[T]) -> list[type[T]]:
    found: list[type[T]] = []
    for sub in cls.__subclasses__():
        found.extend([sub, *_subclasses(sub)])
    return found


def _domain_errors() -> list[type[DomainError]]:
    # Importing the application registers its errors as DomainError subclasses.
    import service.application  # noqa: F401

    return [DomainError, *_subclasses(DomainError)]


def test_each_code_is_catalogued_once() -> None:
    """No code appears twice in the catalogue, and every entry says when it is answered."""
    codes = [entry.code for entry in CATALOGUE]
    assert len(codes) == len(set(codes))
    assert all(entry.condition and entry.message for entry in CATALOGUE)


def test_each_domain_error_answers_its_catalogued_status_and_message() -> None:
    """Every refusal of the domain or application answers the catalogue's status and message."""
    for error in _domain_errors():
        if error.code in NOT_ANSWERED_OVER_HTTP:
            continue
        entry = BY_CODE.get(error.code)
        assert entry is not None, f"{error.__name__}: {error.code} is not catalogued"
        assert status_of(error()) == entry.status, error.__name__
        assert error.message == entry.message, error.__name__


def test_gateway_errors_answer_their_catalogued_status() -> None:
    """The gateway's failures answer 502 with their own messages."""
    for error in _subclasses(GatewayError):
        assert BY_CODE[error.code].status == 502
        assert BY_CODE[error.code].message == error.message


def _literal_api_errors() -> list[tuple[str, int, str, str]]:
    """(file, status, message, code) of each ``ApiError(...)`` with literal arguments."""
    found = []
    for path in sorted((ROOT / "service" / "http").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ApiError"
            ):
                args = [a.value if isinstance(a, ast.Constant) else None for a in node.args[:3]]
                assert all(a is not None for a in args), f"{path.name}: ApiError of a variable"
                status, message, code = args
                assert isinstance(status, int)
                assert isinstance(message, str)
                assert isinstance(code, str)
                found.append((path.name, status, message, code))
    return found


def test_every_literal_api_error_answers_its_catalogued_status_and_message() -> None:
    """Each ApiError raised in service/http uses a catalogued code with its status and message."""
    found = _literal_api_errors()
    assert len(found) >= 8  # the walk sees them
    for name, status, message, code in found:
        assert code in BY_CODE, f"{name}: {code} is not catalogued"
        assert (status, message) == (BY_CODE[code].status, BY_CODE[code].message), (name, code)


def test_the_middlewares_http_errors_are_catalogued() -> None:
    """404, 405 and 413 raised by aiohttp answer catalogued codes and messages."""
    for status, (message, code) in _HTTP_CODES.items():
        assert (BY_CODE[code].status, BY_CODE[code].message) == (status, message)


def test_every_operation_lists_each_code_under_its_catalogued_status() -> None:
    """Walking the catalogue: every operation listing a code lists it under that code's status."""
    for entry in CATALOGUE:
        for (method, path), operation in OPERATIONS.items():
            for status, codes in operation.errors.items():
                if entry.code in codes:
                    assert status == entry.status, (method, path, entry.code)
    listed = {code for op in OPERATIONS.values() for codes in op.errors.values() for code in codes}
    assert listed <= set(BY_CODE)


def test_a_code_listed_under_another_status_is_refused() -> None:
    """The check operations run at import refuses a drifted or unknown code."""
    check_listed(400, ("VALIDATION", "INVOICE_NOT_FOUND"))
    with pytest.raises(ValueError, match="FORBIDDEN"):
        check_listed(400, ("FORBIDDEN",))
    with pytest.raises(ValueError, match="NOT_A_CODE"):
        check_listed(400, ("NOT_A_CODE",))


def _docs_table_rows() -> list[str]:
    """The rows of the error-code table in docs/api.md (after its header and rule)."""
    lines = (ROOT / "docs" / "api.md").read_text().splitlines()
    header = lines.index("| Condition | `code` | HTTP status | Endpoints |")
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_docs_table_is_the_catalogue() -> None:
    """docs/api.md lists exactly the catalogue's codes with their statuses and endpoints
    (regenerate with `python -m service.http.openapi.operations`)."""
    rows = _docs_table_rows()
    codes = [re.findall(r"\| `([A-Z_]+)` \|", row)[0] for row in rows]
    assert codes == [entry.code for entry in CATALOGUE]
    assert rows == markdown_rows({key: op.errors for key, op in OPERATIONS.items()})
