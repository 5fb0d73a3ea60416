"""The OpenAPI document and its HTML page: valid, complete, self-contained, and true.

"True" is checked the way a client would notice: real answers of the app, of every kind,
validate against the schema the document gives for their status.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from typing import Any

import jsonschema_rs
import pytest
from aiohttp import ClientResponse
from schemathesis.specs.openapi.definitions import OPENAPI_31

from service.app import create_app
from service.config import Config
from service.http import schemas
from service.http.openapi import OPERATIONS, routes_to_document
from tests.e2e.conftest import Api, AppFactory, FakeClock, checkout_body

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


async def document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    return body


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


# -- the document ---------------------------------------------------------------------------


async def test_the_document_is_valid_openapi_3_1(api: Api) -> None:
    """It validates against the OpenAPI 3.1 schema, and every $ref points at something."""
    doc = await document(api)
    assert doc["openapi"] == "3.1.0"
    meta = jsonschema_rs.Draft202012Validator(OPENAPI_31)
    errors = [str(error) for error in meta.iter_errors(doc)]
    assert errors == []
    for ref in refs(doc):
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, ref
            node = node[part]
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids))


async def test_every_route_of_the_app_is_documented(api: Api) -> None:
    """Every mounted route but HEAD and the development sandbox is in the document, and nothing
    else is."""
    doc = await document(api)
    documented = {(method, path) for method, path, _ in operations(doc)}
    assert documented == set(routes_to_document(api.client.app))
    assert set(OPERATIONS) <= documented
    mounted = {
        route.resource.canonical for route in api.client.app.router.routes() if route.resource
    }
    assert any(path.startswith("/sandbox/") for path in mounted)  # mounted, yet not documented
    assert not any(path.startswith("/sandbox/") for path in doc["paths"])


async def test_the_production_document_describes_the_same_api(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Without the sandbox (production mode) the document is the same."""
    production = config.__class__(
        **{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "mode": "production"}
    )
    client = await aiohttp_client(create_app(production, clock=clock))
    response = await client.get("/openapi.json")
    doc = await response.json()
    assert {(m, p) for m, p, _ in operations(doc)} == set(OPERATIONS)


async def test_every_operation_states_its_credentials_errors_and_headers(api: Api) -> None:
    """Security, every error status with the error body, and X-Request-ID on every answer."""
    doc = await document(api)
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "basic", "callbackToken"}
    expected_security: dict[str, list[dict[str, list[str]]]] = {
        "/auth": [],
        "/payment-checkout": [{"bearer": []}],
        "/invoice/detail": [{"bearer": []}],
        "/invoice/history": [{"bearer": []}],
        "/balance": [{"bearer": []}],
        "/invoice/cancel": [{"basic": []}],
        "/invoice/done": [{"basic": []}],
        "/invoice/done/batch": [{"basic": []}],
        "/invoice/mark-paid": [{"basic": []}],
        "/balance/topup": [{"basic": []}],
        "/callback/xendit/invoice": [{"callbackToken": []}],
        "/callback/xendit/qr": [{"callbackToken": []}],
        "/admin": [{"basic": []}],
        "/admin/webhooks/{delivery_id}/resend": [{"basic": []}],
        "/health": [],
        "/health/live": [],
        "/health/ready": [],
        # Its bearer token is optional (the setting metrics_token), so none is required.
        "/metrics": [],
        "/openapi.json": [],
        "/docs": [],
        "/webhooks/endpoints": [{"basic": []}],
        "/webhooks/endpoints/{endpoint}": [{"basic": []}],
        "/webhooks/endpoints/{endpoint}/rotate-secret": [{"basic": []}],
        "/webhooks/endpoints/{endpoint}/recover": [{"basic": []}],
        "/webhooks/messages": [{"basic": []}],
        "/webhooks/messages/{message}/resend": [{"basic": []}],
    }
    for _, path, operation in operations(doc):
        assert operation["security"] == expected_security[path], path
        responses = operation["responses"]
        for status, response in responses.items():
            assert response["headers"]["X-Request-ID"] == {
                "$ref": "#/components/headers/X-Request-ID"
            }, (path, status)
            if not status.startswith(("2", "3")):  # a 303 sends the browser back to a page
                schema = response["content"]["application/json"]["schema"]
                assert schema["allOf"] == [{"$ref": "#/components/schemas/ErrorAnswer"}]
                assert schema["properties"]["code"]["enum"], (path, status)
        if operation["security"]:
            assert "401" in responses, path
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(responses), path
        if path not in ("/openapi.json", "/docs"):
            assert "500" in responses, path
        parameter_refs = [p.get("$ref") for p in operation["parameters"]]
        assert "#/components/parameters/X-Request-ID" in parameter_refs, path
    checkout = doc["paths"]["/payment-checkout"]["post"]
    assert "#/components/parameters/Idempotency-Key" in [
        p.get("$ref") for p in checkout["parameters"]
    ]
    assert set(checkout["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "408",
        "409",
        "413",
        "415",
        "500",
        "502",
    }
    error = doc["components"]["schemas"]["ErrorAnswer"]
    assert set(error["properties"]) == {"message", "code", "errors"}
    assert set(error["required"]) == {"message", "code"}


async def test_request_schemas_state_the_real_constraints(api: Api) -> None:
    """Money 0..10^12, at most 100 transactions, enums, lengths, patterns, no unknown fields."""
    doc = await document(api)
    components = doc["components"]["schemas"]
    checkout, line = components["Checkout"], components["Transaction"]
    money = {"type": "integer", "minimum": 0, "maximum": 10**12}
    for name in ("amount", "freight_charge", "insurance_amount", "commission_onmarket"):
        assert money.items() <= line["properties"][name].items(), name
    assert money.items() <= checkout["properties"]["total_amount"].items()
    assert checkout["properties"]["transaction"]["minItems"] == 1
    assert checkout["properties"]["transaction"]["maxItems"] == 100
    assert checkout["properties"]["service"]["enum"] == ["ONMARKET", "ONDELIVERY", "ONTICKET"]
    assert checkout["properties"]["source"]["enum"] == ["XENDIT", "BALANCE", "QRIS"]
    name = line["properties"]["invoice_onmarket"]
    assert (name["minLength"], name["maxLength"], name["pattern"]) == (1, 100, r"^[\x20-\x7e]+$")
    assert components["TopUp"]["properties"]["amount"]["minimum"] == 1
    for strict in ("Checkout", "Transaction", "Auth", "Cancel", "PlatformAction", "TopUp"):
        assert components[strict]["additionalProperties"] is False, strict
    for lenient in ("InvoiceCallback", "QrCallback", "QrPaymentData"):  # Xendit adds fields
        assert "additionalProperties" not in components[lenient], lenient
    detail = {
        p["name"]: p for p in doc["paths"]["/invoice/detail"]["get"]["parameters"] if "name" in p
    }
    assert detail["as_of_position"]["schema"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 2**63 - 1,
    }
    assert detail["as_of"]["schema"]["format"] == "date-time"
    limit = doc["paths"]["/balance"]["get"]["parameters"][0]
    assert (limit["name"], limit["schema"]["minimum"], limit["schema"]["maximum"]) == (
        "limit",
        1,
        500,
    )


# -- the page ---------------------------------------------------------------------------------


async def test_the_docs_page_is_self_contained_under_a_strict_policy(api: Api) -> None:
    """HTML with every operation and schema, no outside URL, no script, and a CSP that lets in
    exactly its own stylesheet."""
    response = await api.client.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "<script" not in page.lower()
    assert re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", page) is None
    assert "http://" not in page
    assert "https://" not in page
    assert "@import" not in page
    assert "url(" not in page
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    doc = await document(api)
    for _, path, _ in operations(doc):
        assert f"<code>{path}</code>" in page, path
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page, name
    ids = set(re.findall(r'id="([^"]+)"', page))
    for target in re.findall(r'href="#([^"]+)"', page):
        assert target in ids, target


# -- real answers against the document -------------------------------------------------------


def validator(doc: dict[str, Any], path: str, method: str, status: int) -> Any:
    response = doc["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


async def assert_documented(
    doc: dict[str, Any], path: str, method: str, response: ClientResponse
) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    errors = [str(e) for e in validator(doc, path, method, response.status).iter_errors(body)]
    assert errors == [], (path, response.status, body)
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", response.headers["X-Request-ID"])
    return body


async def test_real_answers_validate_against_the_document(api: Api) -> None:
    """Checkouts of every source, detail, history, balance, top-up, done, cancel, callbacks,
    health, and errors of every kind: each body fits the schema documented for its status."""
    doc = await document(api)
    bearer, client = api.bearer("usernew1"), api.client
    await api.top_up("usernew1", 10**6)

    async def checkout(**overrides: Any) -> dict[str, Any]:
        response = await client.post(
            "/payment-checkout", json=checkout_body(**overrides), headers=bearer
        )
        return await assert_documented(doc, "/payment-checkout", "post", response)

    xendit = await checkout(stores=1)
    await checkout(source="QRIS")
    await checkout(source="BALANCE")
    refused = await checkout(total_amount=1)
    assert refused["code"] == "VALIDATION"

    await api.pay(xendit["xendit_invoice"])
    for path, params in (
        ("/invoice/detail", {"invoice": xendit["invoice"]}),
        ("/invoice/detail", {"invoice": xendit["invoice"], "as_of_position": "1"}),
        ("/invoice/detail", {"invoice": "OM0000000000000"}),
        ("/invoice/history", {"invoice": xendit["invoice"]}),
        ("/balance", {"limit": "5"}),
        ("/balance", {"limit": "0"}),
    ):
        response = await client.get(path, params=params, headers=bearer)
        await assert_documented(doc, path, "get", response)
    response = await client.get("/balance", headers={"Authorization": "Bearer nope"})
    assert (await assert_documented(doc, "/balance", "get", response))["code"] == "AUTH_ERROR"

    onmarket, admin = api.basic("onmarket"), api.basic("admin")
    action = {"platform": "ONMARKET", "invoice_id": xendit["invoice"]}
    for path, body, headers in (
        ("/invoice/done", action, onmarket),
        ("/invoice/done", action, onmarket),  # TRANSACTION_ALREADY_COMPLETED
        ("/invoice/cancel", {**action, "platform": "ONDELIVERY"}, onmarket),  # 403
        ("/invoice/cancel", {**action, "extra": 1}, onmarket),  # unknown field
        ("/balance/topup", {"username": "seller1", "amount": 5}, admin),
        ("/balance/topup", {"username": "onmarket", "amount": 5}, admin),  # NOT_A_BUYER
        ("/balance/topup", {"username": "seller1", "amount": 5}, onmarket),  # 403
    ):
        response = await client.post(path, json=body, headers=headers)
        await assert_documented(doc, path, "post", response)

    pending = await checkout(stores=1)
    token = {"x-callback-token": api.config.callback_token}
    paid = {"id": "pay-1", "external_id": pending["invoice"], "status": "PAID"}
    for body in (
        {**paid, "paid_amount": 0},  # PAID_AMOUNT_MISMATCH
        {**paid, "id": "pay-0", "paid_amount": 1},  # AMOUNT_MISMATCH_CREDITED
        {**paid, "paid_amount": 15100},
        {**paid, "paid_amount": 15100},  # DUPLICATE
        {**paid, "status": "SOMETHING"},
    ):
        response = await client.post("/callback/xendit/invoice", json=body, headers=token)
        await assert_documented(doc, "/callback/xendit/invoice", "post", response)

    for path, raw, content_type in (
        ("/auth", b"{", "application/json"),
        ("/auth", b"{}", "text/plain"),
        ("/auth", b"[]", "application/json"),
    ):
        response = await client.post(path, data=raw, headers={"Content-Type": content_type})
        await assert_documented(doc, path, "post", response)
    response = await client.post(
        "/auth",
        data=io.BytesIO(b" " * (api.config.max_body_bytes + 1)),
        headers={"Content-Type": "application/json"},
    )
    assert (await assert_documented(doc, "/auth", "post", response))["code"] == "PAYLOAD_TOO_LARGE"

    response = await client.get("/health")
    await assert_documented(doc, "/health", "get", response)


@pytest.mark.parametrize("source", ["XENDIT", "QRIS", "BALANCE"])
async def test_each_checkout_answer_fits_exactly_one_documented_shape(
    api: Api, source: str
) -> None:
    """The three checkout answers are told apart by the document's oneOf, and by CheckoutAnswer."""
    doc = await document(api)
    await api.top_up("usernew1", 10**6)
    body = await api.checkout(source=source)
    shapes = doc["paths"]["/payment-checkout"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]["oneOf"]
    fitting = [
        shape["$ref"]
        for shape in shapes
        if jsonschema_rs.Draft202012Validator({**shape, "components": doc["components"]}).is_valid(
            body
        )
    ]
    assert len(fitting) == 1, fitting
    assert schemas.CheckoutAnswer().validate(body) == {}
    assert schemas.CheckoutAnswer().validate({**body, "qr_string": "x", "payment_url": "y"})
