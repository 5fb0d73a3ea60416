"""Errors at the HTTP level: unknown paths and methods, a crash inside a handler, and routes that
exist only in development mode. Every error is JSON with a message and a code, and carries the
request's X-Request-ID.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
import structlog
from aiohttp import ClientResponse

from service.app import create_app
from service.config import Config
from service.gateway.port import GatewayPayment, GatewayStatus, PaymentRequest
from service.http.keys import STORE
from tests.e2e.conftest import Api, AppFactory, FakeClock, checkout_body
from tests.sqlviews import views_query

SECRET_DETAIL = "boom with secret details"


async def assert_json_error(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    """The documented error shape: JSON with a message and a code, and a request id."""
    assert response.status == status
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    assert isinstance(body.get("message"), str)
    assert body["message"]
    assert body.get("code") == code, body
    assert response.headers.get("X-Request-ID")
    return body


# -- unknown paths and methods -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/no-such-path", "/invoice", "/invoice/detail/extra", "/sandbox", "/"]
)
async def test_an_unknown_path_answers_404_json(api: Api, path: str) -> None:
    """404 {"message": "Not found", "code": "NOT_FOUND"}, with the request id."""
    response = await api.client.get(path, headers={"X-Request-ID": "req-404"})
    body = await assert_json_error(response, 404, "NOT_FOUND")
    assert body == {"message": "Not found", "code": "NOT_FOUND"}
    assert response.headers["X-Request-ID"] == "req-404"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/payment-checkout"),
        ("GET", "/invoice/cancel"),
        ("GET", "/invoice/done"),
        ("PUT", "/auth"),
        ("DELETE", "/invoice/detail"),
        ("POST", "/balance"),
        ("POST", "/health"),
    ],
)
async def test_a_wrong_method_answers_405_json(api: Api, method: str, path: str) -> None:
    """405 JSON with code METHOD_NOT_ALLOWED, with the request id."""
    response = await api.client.request(method, path, headers={"X-Request-ID": "req-405"})
    body = await assert_json_error(response, 405, "METHOD_NOT_ALLOWED")
    assert body["message"] == "Method not allowed"
    assert response.headers["X-Request-ID"] == "req-405"


async def test_a_405_names_the_allowed_methods(api: Api) -> None:
    """A 405 answer carries Allow with the methods the path does accept (RFC 9110)."""
    response = await api.client.get("/payment-checkout")
    assert response.status == 405
    assert "POST" in response.headers.get("Allow", "")


async def test_every_error_answer_is_json_with_message_code_and_request_id(api: Api) -> None:
    """A sample of every kind of refusal: each one JSON, message, code, X-Request-ID."""
    bearer = api.bearer("usernew1")
    calls: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/nowhere", {}, 404),
        ("PATCH", "/auth", {}, 405),
        ("POST", "/auth", {"json": {"username": "usernew1", "password": "x"}}, 401),
        ("POST", "/auth", {"json": {"username": "usernew1"}}, 400),
        (
            "POST",
            "/auth",
            {"data": b"not json", "headers": {"Content-Type": "application/json"}},
            400,
        ),
        ("POST", "/auth", {"data": b"x", "headers": {"Content-Type": "text/plain"}}, 415),
        ("GET", "/balance", {}, 401),
        ("GET", "/balance", {"params": {"limit": "0"}, "headers": bearer}, 400),
        ("GET", "/invoice/detail", {"params": {"invoice": "OM1"}, "headers": bearer}, 400),
        (
            "POST",
            "/payment-checkout",
            {"json": checkout_body(total_amount=1), "headers": bearer},
            400,
        ),
        (
            "POST",
            "/payment-checkout",
            {"json": checkout_body(), "headers": api.bearer("onmarket")},
            403,
        ),
        (
            "POST",
            "/invoice/done",
            {
                "json": {"platform": "ONMARKET", "invoice_id": "OM1"},
                "headers": api.basic("onmarket"),
            },
            400,
        ),
        (
            "POST",
            "/invoice/done",
            {
                "json": {"platform": "ONTICKET", "invoice_id": "OM1"},
                "headers": api.basic("onmarket"),
            },
            403,
        ),
        (
            "POST",
            "/auth",
            {
                "data": io.BytesIO(b"{" + b" " * (api.config.max_body_bytes + 10) + b"}"),
                "headers": {"Content-Type": "application/json"},
            },
            413,
        ),
        ("POST", "/callback/xendit/invoice", {"json": {}}, 401),
        (
            "POST",
            "/invoice/done",
            {
                "json": {"platform": "ONMARKET", "invoice_id": "OM1"},
                "headers": api.basic("usernew1"),
            },
            403,
        ),
    ]
    for method, path, options, status in calls:
        response = await api.client.request(method, path, **options)
        assert response.status == status, (method, path, await response.text())
        assert response.content_type == "application/json", (method, path)
        body = await response.json()
        assert isinstance(body.get("message"), str), (method, path, body)
        assert isinstance(body.get("code"), str), (method, path, body)
        assert body["code"] == body["code"].upper(), (method, path, body)
        assert response.headers.get("X-Request-ID"), (method, path)


async def test_a_given_request_id_is_echoed_and_an_unsafe_one_replaced(api: Api) -> None:
    """A sensible X-Request-ID comes back as sent; one with odd characters is replaced."""
    echoed = await api.client.get("/health", headers={"X-Request-ID": "abc-123_x.y:z"})
    assert echoed.headers["X-Request-ID"] == "abc-123_x.y:z"
    replaced = await api.client.get("/health", headers={"X-Request-ID": "bad id <script>"})
    assert replaced.headers["X-Request-ID"] not in ("", "bad id <script>")
    fresh = [(await api.client.get("/health")).headers["X-Request-ID"] for _ in range(2)]
    assert fresh[0] != fresh[1]


# -- a crash inside a handler ------------------------------------------------------------------


class ExplodingGateway:
    """A gateway whose every call fails like a bug would."""

    name = "exploding"

    async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
        raise RuntimeError(SECRET_DETAIL)

    async def create_qr(self, request: PaymentRequest) -> GatewayPayment:
        raise RuntimeError(SECRET_DETAIL)

    async def expire(self, reference: str) -> None:
        raise RuntimeError(SECRET_DETAIL)

    async def status(self, reference: str) -> GatewayStatus:
        raise RuntimeError(SECRET_DETAIL)

    async def close(self) -> None:
        """Nothing to release."""


@pytest.mark.parametrize("source", ["XENDIT", "QRIS"])
async def test_an_unexpected_error_answers_500_and_writes_nothing(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock, source: str
) -> None:
    """500 INTERNAL SERVER ERROR, no trace or detail in the answer, no invoice, no money moved."""
    client = await aiohttp_client(create_app(config, clock=clock, gateway=ExplodingGateway()))
    api = Api(client, config, clock)
    store = client.app[STORE]
    head_before = await store.head_position()

    with structlog.testing.capture_logs() as logs:
        response = await client.post(
            "/payment-checkout",
            json=checkout_body(source=source),
            headers={**api.bearer("usernew1"), "X-Request-ID": "req-500"},
        )
        text = await response.text()
    assert response.status == 500
    assert response.content_type == "application/json"
    assert await response.json() == {"message": "INTERNAL SERVER ERROR", "code": "INTERNAL"}
    assert response.headers["X-Request-ID"] == "req-500"
    for leak in ("boom", "Traceback", "RuntimeError", "secret", "File "):
        assert leak not in text

    # The failure is logged for the operators, with its request id.
    assert any(e.get("event") == "unhandled error" for e in logs)
    assert any(e.get("event") == "request" and e.get("status") == 500 for e in logs)

    assert await store.head_position() == head_before
    assert await views_query(store, "SELECT COUNT(*) FROM invoice_view") == [(0,)]
    assert await api.ledger_sum() == 0
    assert await views_query(store, "SELECT COUNT(*) FROM account_balances") == [(0,)]

    # The service keeps answering after the crash.
    health = await client.get("/health")
    assert health.status == 200


async def test_a_500_on_cancel_never_hides_a_committed_cancel(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """The gateway fails to expire its invoice on cancel: the answer must match what happened.

    Either the cancel is refused with a 5xx and the invoice stays PENDING, or it is recorded and
    answered 200 INVOICE CANCELED (expiring the gateway invoice later); never a 500 for a cancel
    that was in fact committed.
    """

    class ExpireFails(ExplodingGateway):
        async def create_invoice(self, request: PaymentRequest) -> GatewayPayment:
            return GatewayPayment(f"ref-{request.invoice}", f"http://pay/{request.invoice}")

    client = await aiohttp_client(create_app(config, clock=clock, gateway=ExpireFails()))
    api = Api(client, config, clock)
    created = await api.checkout()
    response = await client.post(
        "/invoice/cancel",
        json={"platform": "ONMARKET", "invoice_id": created["invoice"]},
        headers=api.basic("onmarket"),
    )
    text = await response.text()
    assert "boom" not in text
    status = (await api.detail(created["invoice"]))["status"]
    if response.status == 200:
        assert await response.json() == {"message": "INVOICE CANCELED"}
        assert status == "CANCELED"
    else:
        assert response.status >= 500, text
        assert status == "PENDING", f"answered {response.status} but the invoice is {status}"


# -- development-only routes ------------------------------------------------------------------


async def test_sandbox_routes_exist_only_in_development_mode(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """In production mode /sandbox/... answers 404 like any unknown path."""
    production = dataclasses.replace(
        config,
        mode="production",
        token_secret="x" * 32,
        callback_token="y" * 32,
        webhook_secret_key="z" * 32,
    )
    assert not production.development
    client = await aiohttp_client(create_app(production, clock=clock))
    api = Api(client, production, clock)
    created = await api.checkout()
    reference = created["xendit_invoice"]

    pay = await client.post(f"/sandbox/invoices/{reference}/pay", json={})
    assert await assert_json_error(pay, 404, "NOT_FOUND") == {
        "message": "Not found",
        "code": "NOT_FOUND",
    }
    page = await client.get(f"/sandbox/checkout/{reference}")
    await assert_json_error(page, 404, "NOT_FOUND")
    assert (await api.detail(created["invoice"]))["status"] == "PENDING"


async def test_sandbox_routes_exist_in_development_mode(api: Api) -> None:
    """The counterpart: in development the sandbox page and its pay button answer."""
    created = await api.checkout()
    page = await api.client.get(f"/sandbox/checkout/{created['xendit_invoice']}")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert created["invoice"] in await page.text()
    await api.pay(created["xendit_invoice"])
    assert (await api.detail(created["invoice"]))["status"] == "PAID"
