"""Strict input, end to end: a JSON key given twice and a query integer in other digits.

A body whose object repeats a key (at any depth) is ``400 MALFORMED_JSON`` on every endpoint
that reads one, and changes nothing: a proxy or a signature check may have read the other
value. A query integer is ASCII digits only (``int()`` also reads "٣", "１", "+5", " 5",
"5_0"), and a query name given twice is refused: both are ``400 VALIDATION`` naming the
parameter.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from service.http.keys import STORE
from tests.e2e.conftest import Api, checkout_body

TOTAL = 40200  # the default two-store checkout


def repeated(body: dict[str, Any], key: str, first: Any, path: tuple[str | int, ...] = ()) -> bytes:
    """``body`` as JSON text whose object at ``path`` gives ``key`` twice: ``first``, then the
    body's own value (the one a last-wins parser keeps)."""
    inner: Any = body
    for step in path:
        inner = inner[step]
    marker = "__repeated_key_marker__"
    inner[marker] = None
    text = orjson.dumps(body).decode()
    del inner[marker]
    assert text.count(f'"{marker}":null') == 1
    duplicate = f"{orjson.dumps(key).decode()}:{orjson.dumps(first).decode()}"
    return text.replace(f'"{marker}":null', duplicate).encode()


def malformed(key: str) -> dict[str, Any]:
    return {
        "message": "Invalid JSON Format",
        "code": "MALFORMED_JSON",
        "errors": {"_schema": [f'The key "{key}" appears more than once in one object.']},
    }


async def head(api: Api) -> int:
    assert api.client.app is not None
    position: int = await api.client.app[STORE].head_position()
    return position


async def post_raw(api: Api, path: str, data: bytes, headers: dict[str, str]) -> Any:
    response = await api.client.post(
        path, data=data, headers={"Content-Type": "application/json", **headers}
    )
    return response.status, await response.json()


async def assert_refused(
    api: Api, path: str, data: bytes, headers: dict[str, str], key: str
) -> None:
    """The body is refused as malformed, naming ``key``, and the log does not move."""
    before = await head(api)
    assert orjson.loads(data)  # valid JSON to a last-wins parser
    assert await post_raw(api, path, data, headers) == (400, malformed(key))
    assert await head(api) == before


# -- a key given twice ---------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["top", "in-transaction"])
async def test_checkout_refuses_a_repeated_key(api: Api, nested: bool) -> None:
    """total_amount twice at the top, or amount twice inside a transaction line: 400."""
    body = checkout_body()
    if nested:
        data = repeated(body, "amount", 1, ("transaction", 1))
        key = "amount"
    else:
        data = repeated(body, "total_amount", 1)
        key = "total_amount"
    await assert_refused(api, "/payment-checkout", data, api.bearer("usernew1"), key)


async def test_cancel_and_done_refuse_a_repeated_key(api: Api) -> None:
    """The platform's actions: invoice_id twice (cancel), invoice_onmarket twice (done)."""
    created = await api.checkout(stores=1)
    await api.pay(created["xendit_invoice"])
    detail = await api.detail(created["invoice"])
    onmarket = detail["transaction"][0]["invoice_onmarket"]
    done = {"platform": "ONMARKET", "invoice_id": created["invoice"], "invoice_onmarket": onmarket}
    await assert_refused(
        api, "/invoice/done", repeated(done, "invoice_onmarket", "other"), api.basic("onmarket"),
        "invoice_onmarket",
    )  # fmt: skip
    cancel = {**done, "buyer_username": "usernew1"}
    await assert_refused(
        api, "/invoice/cancel", repeated(cancel, "invoice_id", "OM-none"), api.basic("onmarket"),
        "invoice_id",
    )  # fmt: skip
    assert (await api.detail(created["invoice"]))["status"] == "PAID"


async def test_topup_refuses_a_repeated_amount(api: Api) -> None:
    """{"amount": 1, "amount": 10000}: 400, and the balance is what it was."""
    before = await api.balance()
    body = {"username": "usernew1", "amount": 10000}
    data = repeated(body, "amount", 1)
    await assert_refused(api, "/balance/topup", data, api.basic("admin"), "amount")
    assert await api.balance() == before


async def test_auth_refuses_a_repeated_username(api: Api) -> None:
    """A login naming two users is refused before any password is checked."""
    data = repeated({"username": "usernew1", "password": "usernew1"}, "username", "admin")
    await assert_refused(api, "/auth", data, {}, "username")


async def test_invoice_callback_refuses_a_repeated_key(api: Api) -> None:
    """external_id twice in a paid callback: 400, the invoice stays PENDING."""
    created = await api.checkout()
    body = {
        "id": "pay-1",
        "external_id": created["invoice"],
        "status": "PAID",
        "amount": TOTAL,
        "paid_amount": TOTAL,
    }
    data = repeated(body, "external_id", "OM-other")
    token = {"x-callback-token": api.config.callback_token}
    await assert_refused(api, "/callback/xendit/invoice", data, token, "external_id")
    assert (await api.detail(created["invoice"]))["status"] == "PENDING"


async def test_qr_callback_refuses_a_repeated_key_inside_data(api: Api) -> None:
    """amount twice inside the callback's data: 400, the invoice stays PENDING."""
    created = await api.checkout(source="QRIS")
    body = {
        "event": "qr.payment",
        "data": {
            "id": "qrpay-1",
            "qr_id": created["xendit_invoice"],
            "reference_id": created["invoice"],
            "amount": TOTAL,
            "status": "SUCCEEDED",
        },
    }
    data = repeated(body, "amount", 1, ("data",))
    token = {"x-callback-token": api.config.callback_token}
    await assert_refused(api, "/callback/xendit/qr", data, token, "amount")
    assert (await api.detail(created["invoice"]))["status"] == "PENDING"


async def test_sandbox_pay_refuses_a_repeated_key(api: Api) -> None:
    """The sandbox's Pay reads its JSON options the same way."""
    created = await api.checkout()
    data = repeated({"deliver_callback": True}, "deliver_callback", False)
    path = f"/sandbox/invoices/{created['xendit_invoice']}/pay"
    await assert_refused(api, path, data, {}, "deliver_callback")
    assert (await api.detail(created["invoice"]))["status"] == "PENDING"


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":1}',
        b'{"a":{"b":[{"c":1,"c":2}]}}',
        b'{"a":[[[{"x":{"y":1,"z":2,"y":3}}]]]}',
        b'{"\\u0061":1,"a":2}',  # the same key, once escaped
        b'{"a":1,"b":{"a":1},"a":{}}',
    ],
)
async def test_any_depth_and_spelling_of_a_repeated_key_is_refused(api: Api, data: bytes) -> None:
    """Whatever the depth, and however the key is escaped, a repeated key is found."""
    status, answer = await post_raw(api, "/balance/topup", data, api.basic("admin"))
    assert status == 400
    assert answer["code"] == "MALFORMED_JSON"
    assert "appears more than once" in answer["errors"]["_schema"][0]


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}]}',  # equal keys in different objects
        b'{"a":"\\"a\\":1,","b":"a:1"}',  # a key's text inside string values
        b'{"a":1,"A":2,"a ":3}',
    ],
)
async def test_equal_keys_in_different_objects_are_not_repeats(api: Api, data: bytes) -> None:
    """Only a repeat within one object is refused: these bodies reach the schema (unknown
    fields), which names them."""
    status, answer = await post_raw(api, "/balance/topup", data, api.basic("admin"))
    assert status == 400
    assert answer["code"] == "VALIDATION"


# -- integers in query strings ------------------------------------------------------------------

NOT_ASCII_INTEGERS = [
    "٣",  # Arabic-Indic three
    "۳",  # Extended Arabic-Indic three
    "３",  # fullwidth
    "१",  # Devanagari one
    "𝟓",  # mathematical bold five
    "1٣",
    "+5",
    " 5",
    "5 ",
    "5_0",
    "0x10",
    "5.0",
    "",
]


@pytest.mark.parametrize("value", NOT_ASCII_INTEGERS)
async def test_balance_limit_is_ascii_digits_only(api: Api, value: str) -> None:
    """GET /balance?limit=٣ and the like: 400 VALIDATION naming limit."""
    response = await api.client.get(
        "/balance", params={"limit": value}, headers=api.bearer("usernew1")
    )
    answer = await response.json()
    assert response.status == 400, answer
    assert answer["code"] == "VALIDATION"
    assert list(answer["errors"]) == ["limit"]


@pytest.mark.parametrize("value", NOT_ASCII_INTEGERS)
async def test_detail_as_of_position_is_ascii_digits_only(api: Api, value: str) -> None:
    """GET /invoice/detail?as_of_position=٣ and the like: 400 VALIDATION naming it."""
    created = await api.checkout()
    response = await api.client.get(
        "/invoice/detail",
        params={"invoice": created["invoice"], "as_of_position": value},
        headers=api.bearer("usernew1"),
    )
    answer = await response.json()
    assert response.status == 400, answer
    assert answer["code"] == "VALIDATION"
    assert list(answer["errors"]) == ["as_of_position"]


@pytest.mark.parametrize(
    "value",
    [
        "٢٠٢٦-03-01T08:00:00+00:00",
        "2026-03-01T08:00:00+٠٠:00",
        "２０２６-03-01T08:00:00+00:00",
        "2026-03-01T08:00:0５+00:00",
    ],
)
async def test_detail_as_of_is_ascii_digits_only(api: Api, value: str) -> None:
    """as_of in other digits is refused too (marshmallow's ISO reader already does)."""
    created = await api.checkout()
    response = await api.client.get(
        "/invoice/detail",
        params={"invoice": created["invoice"], "as_of": value},
        headers=api.bearer("usernew1"),
    )
    answer = await response.json()
    assert response.status == 400, answer
    assert list(answer["errors"]) == ["as_of"]


async def test_ascii_query_integers_still_work(api: Api) -> None:
    """limit=2 and as_of_position=<head> are read as before; a negative is a range error."""
    created = await api.checkout()
    response = await api.client.get(
        "/balance", params={"limit": "2"}, headers=api.bearer("usernew1")
    )
    assert response.status == 200
    position = str(await head(api))
    response = await api.client.get(
        "/invoice/detail",
        params={"invoice": created["invoice"], "as_of_position": position},
        headers=api.bearer("usernew1"),
    )
    assert response.status == 200, await response.json()
    response = await api.client.get(
        "/balance", params={"limit": "-1"}, headers=api.bearer("usernew1")
    )
    answer = await response.json()
    assert response.status == 400
    assert list(answer["errors"]) == ["limit"]


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/balance", "limit=1&limit=500", "limit"),
        ("/invoice/detail", "invoice=OM-a&invoice=OM-b", "invoice"),
        ("/invoice/history", "invoice=OM-a&invoice=OM-b", "invoice"),
    ],
)
async def test_a_query_name_given_twice_is_refused(
    api: Api, path: str, query: str, name: str
) -> None:
    """?limit=1&limit=500: which one counts is not ours to guess; 400 naming it."""
    response = await api.client.get(f"{path}?{query}", headers=api.bearer("usernew1"))
    answer = await response.json()
    assert response.status == 400, answer
    assert answer["code"] == "VALIDATION"
    assert answer["errors"] == {name: ["Given more than once."]}


@pytest.mark.parametrize("depth", [10, 990, 1020])
async def test_a_repeated_key_deep_down_is_refused(api: Api, depth: int) -> None:
    """Near orjson's limit of 1024 levels too, where a recursive reader would give up."""
    data = b'{"a":' + b"[" * depth + b'{"k":1,"b":"\\"k\\":","k":2}' + b"]" * depth + b"}"
    status, answer = await post_raw(api, "/balance/topup", data, api.basic("admin"))
    assert (status, answer) == (400, malformed("k"))
