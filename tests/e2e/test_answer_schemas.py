"""Every answer matches the schema that documents it (service/http/schemas/)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from service.http import schemas
from service.http.openapi.codes import BY_CODE
from tests.e2e.conftest import Api


def assert_matches(schema: type[Schema], body: dict[str, Any]) -> None:
    errors = schema().validate(body)
    assert errors == {}, errors


async def test_checkout_answers_match_their_schema_for_every_source(api: Api) -> None:
    """XENDIT, QRIS and BALANCE answers all fit CheckoutAnswer."""
    await api.top_up("usernew1", 10**6)
    for source in ("XENDIT", "QRIS", "BALANCE"):
        assert_matches(schemas.CheckoutAnswer, await api.checkout(source=source))


async def test_detail_balance_and_messages_match_their_schemas(api: Api) -> None:
    """Detail, balance, top-up, done and error answers fit their schemas."""
    created = await api.checkout(stores=1)
    await api.pay(created["xendit_invoice"])
    assert_matches(schemas.DetailAnswer, await api.detail(created["invoice"]))
    assert_matches(schemas.MessageAnswer, await api.platform("done", invoice_id=created["invoice"]))
    assert_matches(schemas.TopUpAnswer, await api.top_up("seller1", 5))
    assert_matches(schemas.BalanceAnswer, await api.balance("seller1"))
    refused = await api.platform("done", expect=400, invoice_id=created["invoice"])
    assert_matches(schemas.ErrorAnswer, refused)


async def _refusal(api: Api, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await api.client.request(method, path, **kwargs)
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_the_same_condition_answers_the_same_catalogued_code_on_every_endpoint(
    api: Api,
) -> None:
    """Bad JSON, no credentials, a missing invoice, a done twice...: each answers its one code,
    with the catalogue's status and message, inside its operation's documented enum."""
    doc: dict[str, Any] = await (await api.client.get("/openapi.json")).json()
    created = await api.checkout(stores=1)
    await api.pay(created["xendit_invoice"])
    await api.platform("done", invoice_id=created["invoice"])
    onmarket, bearer = api.basic("onmarket"), api.bearer("usernew1")
    token = {"x-callback-token": api.config.callback_token}
    missing = "OM0000000000000"
    json_bodies: dict[str, dict[str, str]] = {
        "/auth": {},
        "/payment-checkout": bearer,
        "/invoice/cancel": onmarket,
        "/invoice/done": onmarket,
        "/balance/topup": api.basic("admin"),
        "/callback/xendit/invoice": token,
        "/callback/xendit/qr": token,
    }
    cases: list[tuple[str, str, str, dict[str, Any]]] = []
    for path, credentials in json_bodies.items():
        as_json = {"Content-Type": "application/json", **credentials}
        cases.append(("MALFORMED_JSON", "POST", path, {"data": b"{", "headers": as_json}))
        cases.append(
            ("UNSUPPORTED_MEDIA_TYPE", "POST", path, {"data": b"{}", "headers": credentials})
        )
        if credentials:
            cases.append(("AUTH_ERROR", "POST", path, {"json": {}}))
    for path in ("/invoice/detail", "/invoice/history", "/balance"):
        cases.append(("AUTH_ERROR", "GET", path, {"params": {"invoice": missing}}))
    for path in ("/invoice/detail", "/invoice/history"):
        query = {"params": {"invoice": missing}, "headers": bearer}
        cases.append(("INVOICE_NOT_FOUND", "GET", path, query))
    completed = {
        "invoice_id": created["invoice"],
        "invoice_onmarket": created["transaction"][0]["invoice_onmarket"],
    }
    for action, extra in (("done", {}), ("cancel", {"buyer_username": "usernew1"})):
        path = f"/invoice/{action}"
        body = {"platform": "ONMARKET", "invoice_id": missing}
        cases.append(("INVOICE_NOT_FOUND", "POST", path, {"json": body, "headers": onmarket}))
        body = {"platform": "ONMARKET", **completed, **extra}
        cases.append(
            ("TRANSACTION_ALREADY_COMPLETED", "POST", path, {"json": body, "headers": onmarket})
        )
    cases += [
        ("FORBIDDEN", "POST", "/payment-checkout", {"json": {}, "headers": api.bearer("onmarket")}),
        ("FORBIDDEN", "POST", "/balance/topup", {"json": {}, "headers": onmarket}),
        ("VALIDATION", "GET", "/balance", {"params": {"limit": "x"}, "headers": bearer}),
        ("VALIDATION", "POST", "/auth", {"json": []}),
        ("NOT_FOUND", "GET", "/no/such/path", {}),
        ("METHOD_NOT_ALLOWED", "DELETE", "/invoice/done", {}),
    ]
    for expected, method, path, kwargs in cases:
        status, body = await _refusal(api, method, path, **kwargs)
        entry = BY_CODE[expected]
        assert (status, body["code"], body["message"]) == (
            entry.status,
            expected,
            entry.message,
        ), (method, path, body)
        operation = doc["paths"].get(path, {}).get(method.lower())
        if operation is not None:  # a documented operation: its enum names the code
            schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
            assert expected in schema["properties"]["code"]["enum"], (method, path, expected)
