"""What the OpenAPI fuzzer (tests/fuzz) found, kept as plain regression tests.

1. A name ending in a newline ("OM…\\n") passed the printable-ASCII rule, because ``re.match``
   with ``$`` matches before a final newline; it then reached the event store as part of a
   stream id, which refuses control characters, and the request answered 500. Names are now
   matched whole (``FullMatch``), as the document's ``pattern`` says.
2. ``as_of_position`` had no upper bound: a position past 2^63 − 1 overflowed SQLite's integer
   and answered 500. It is now bounded (and documented) at 2^63 − 1.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.http.middleware import _code_of
from tests.e2e.conftest import Api, checkout_body


async def post(api: Api, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = await api.client.post(path, json=body, headers=headers)
    answer = await response.json()
    return response.status, answer


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/payment-checkout", "invoice_onmarket"),
        ("/payment-checkout", "seller_username"),
        ("/invoice/done", "invoice_id"),
        ("/invoice/cancel", "invoice_id"),
        ("/balance/topup", "username"),
        ("/callback/xendit/invoice", "external_id"),
        ("/callback/xendit/qr", "reference_id"),
    ],
)
async def test_a_name_ending_in_a_newline_is_refused_not_a_crash(
    api: Api, path: str, field: str
) -> None:
    """400 VALIDATION naming the field, where it used to be a 500 from the event store."""
    created = await api.checkout(stores=1)
    invoice = created["invoice"]
    token = {"x-callback-token": api.config.callback_token}
    requests: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
        "/payment-checkout": (checkout_body(stores=1), api.bearer("usernew1")),
        "/invoice/done": ({"platform": "ONMARKET", "invoice_id": invoice}, api.basic("onmarket")),
        "/invoice/cancel": ({"platform": "ONMARKET", "invoice_id": invoice}, api.basic("onmarket")),
        "/balance/topup": ({"username": "seller1", "amount": 5}, api.basic("admin")),
        "/callback/xendit/invoice": (
            {"id": "x", "external_id": invoice, "status": "PAID", "paid_amount": 15100},
            token,
        ),
        "/callback/xendit/qr": (
            {
                "event": "qr.payment",
                "data": {
                    "id": "p",
                    "qr_id": "q",
                    "reference_id": invoice,
                    "amount": 15100,
                    "status": "SUCCEEDED",
                },
            },
            token,
        ),
    }
    body, headers = requests[path]
    if path == "/payment-checkout":
        body["transaction"][0][field] += "\n"
    elif path == "/callback/xendit/qr":
        body["data"][field] += "\n"
    else:
        body[field] += "\n"
    status, answer = await post(api, path, body, headers)
    assert status == 400, answer
    assert answer["code"] == "VALIDATION"
    assert field in str(answer["errors"])


async def test_a_log_position_past_64_bits_is_refused_not_a_crash(api: Api) -> None:
    """as_of_position up to 2^63 − 1 answers; one more is a 400, where it used to be a 500."""
    created = await api.checkout(stores=1)
    for position, expected in ((2**63 - 1, 200), (2**63, 400), (10**30, 400)):
        response = await api.client.get(
            "/invoice/detail",
            params={"invoice": created["invoice"], "as_of_position": str(position)},
            headers=api.bearer("usernew1"),
        )
        answer = await response.json()
        assert response.status == expected, answer


def test_an_http_error_code_is_always_an_identifier() -> None:
    """Codes made from reason phrases keep to [A-Z0-9_], as the document states."""
    assert _code_of("Request-URI Too Long") == "REQUEST_URI_TOO_LONG"
    assert _code_of("I'm a teapot") == "I_M_A_TEAPOT"
    assert _code_of("") == "HTTP_ERROR"
