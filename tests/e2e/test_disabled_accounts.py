"""Tokens and Basic credentials are only as good as the account behind them, now: a disabled
account cannot log in and its earlier tokens are refused within a second on every endpoint; a
token for a subject that does not exist, or with a role its account does not have, is refused.

Accounts are disabled and enabled as the command line does it (``DisableUser``/``EnableUser``
through the app's own service, on its database); the refusals are seen over HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse

from service.application import Context, DisableUser, EnableUser
from service.http.keys import SERVICE
from service.security import TokenClaims, issue_token
from tests.e2e.conftest import Api, checkout_body

pytestmark = pytest.mark.backends("sqlite", "postgresql")

AUTH_ERROR = {"message": "Auth Error", "code": "AUTH_ERROR"}
OPERATOR = Context("cli:operator")
# The promise: a disabled account's token is refused within this time.
WITHIN_SECONDS = 1.0


def token_for(api: Api, username: str, role: str, platform: str | None = None) -> dict[str, str]:
    """A token signed with the app's own secret for any claims at all."""
    claims = TokenClaims(username, role, platform, api.clock() + timedelta(hours=1))
    token = issue_token(claims, api.config.token_secret.encode())
    return {"Authorization": f"Bearer {token}"}


async def status_and_body(response: Awaitable[ClientResponse]) -> tuple[int, Any]:
    answer = await response
    return answer.status, await answer.json()


async def login(api: Api, username: str) -> tuple[int, Any]:
    body = {"username": username, "password": username}
    return await status_and_body(api.client.post("/auth", json=body))


async def refused_within(request: Callable[[], Awaitable[ClientResponse]]) -> float:
    """Seconds until ``request`` answers 401 Auth Error; fails after ``WITHIN_SECONDS``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        status, body = await status_and_body(request())
        elapsed = loop.time() - started
        if status == 401:
            assert body == AUTH_ERROR
            return elapsed
        assert elapsed < WITHIN_SECONDS, f"still {status} after {elapsed:.2f}s: {body}"
        await asyncio.sleep(0.02)


async def test_a_disabled_account_cannot_log_in_and_can_again_once_enabled(api: Api) -> None:
    """disable: /auth answers 401 Auth Error; enable: the same login gets a token again."""
    service = api.client.app[SERVICE]
    assert (await login(api, "usernew1"))[0] == 200

    assert await service.handle(DisableUser("usernew1"), OPERATOR) is True
    assert await login(api, "usernew1") == (401, AUTH_ERROR)

    assert await service.handle(EnableUser("usernew1"), OPERATOR) is True
    status, body = await login(api, "usernew1")
    assert status == 200, body
    detail = await api.client.get("/balance", headers={"Authorization": f"Bearer {body['token']}"})
    assert detail.status == 200


async def test_a_token_issued_before_the_account_was_disabled_is_refused_within_a_second(
    api: Api,
) -> None:
    """A buyer's token that worked (and was remembered) is refused on checkout, detail and
    balance within a second of the disable, and works again after enable."""
    headers = api.bearer("usernew1")
    invoice = (await api.checkout())["invoice"]
    detail = {"invoice": invoice}

    def checkout() -> Awaitable[ClientResponse]:
        return api.client.post("/payment-checkout", json=checkout_body(), headers=headers)

    def read_detail() -> Awaitable[ClientResponse]:
        return api.client.get("/invoice/detail", params=detail, headers=headers)

    def balance() -> Awaitable[ClientResponse]:
        return api.client.get("/balance", headers=headers)

    for request in (checkout, read_detail, balance):  # every endpoint knows the token now
        assert (await request()).status == 200

    await api.client.app[SERVICE].handle(DisableUser("usernew1"), OPERATOR)
    assert await refused_within(read_detail) < WITHIN_SECONDS
    for request in (checkout, read_detail, balance):
        assert await status_and_body(request()) == (401, AUTH_ERROR)

    await api.client.app[SERVICE].handle(EnableUser("usernew1"), OPERATOR)
    await asyncio.sleep(WITHIN_SECONDS)
    for request in (read_detail, balance):
        assert (await request()).status == 200


async def test_basic_credentials_of_a_disabled_platform_account_are_refused(api: Api) -> None:
    """A platform's remembered Basic login is refused within a second of the disable."""

    def cancel() -> Awaitable[ClientResponse]:
        body = {
            "platform": "ONMARKET",
            "invoice_id": "OM0000000000000",
            "invoice_onmarket": "INV/ONM/NONE",
            "buyer_username": "usernew1",
        }
        return api.client.post("/invoice/cancel", json=body, headers=api.basic("onmarket"))

    status, body = await status_and_body(cancel())
    assert (status, body["code"]) == (400, "INVOICE_NOT_FOUND")  # authenticated, and remembered
    await api.client.app[SERVICE].handle(DisableUser("onmarket"), OPERATOR)
    assert await refused_within(cancel) < WITHIN_SECONDS


async def test_basic_credentials_of_a_disabled_admin_account_are_refused(api: Api) -> None:
    """An admin disabled before asking cannot top up."""
    await api.client.app[SERVICE].handle(DisableUser("admin"), OPERATOR)
    response = await api.client.post(
        "/balance/topup", json={"username": "usernew1", "amount": 1000}, headers=api.basic("admin")
    )
    assert (response.status, await response.json()) == (401, AUTH_ERROR)
    assert (await api.balance())["balance"] == 0


async def test_a_token_for_an_account_that_does_not_exist_is_refused(api: Api) -> None:
    """A correctly signed token whose subject was never registered is 401 everywhere."""
    headers = token_for(api, "nobody-at-all", "buyer")
    checkout = api.client.post("/payment-checkout", json=checkout_body(), headers=headers)
    assert await status_and_body(checkout) == (401, AUTH_ERROR)
    assert await status_and_body(api.client.get("/balance", headers=headers)) == (401, AUTH_ERROR)
    detail = api.client.get("/invoice/detail", params={"invoice": "X"}, headers=headers)
    assert await status_and_body(detail) == (401, AUTH_ERROR)


async def test_a_token_whose_role_does_not_match_the_account_is_refused(api: Api) -> None:
    """A signed token naming a real account with another role (or platform) is 401."""
    invoice = (await api.checkout())["invoice"]
    for username, role, platform in (
        ("usernew1", "admin", None),  # a buyer claiming to be an admin
        ("onmarket", "buyer", None),  # a platform account used as a buyer
        ("onmarket", "platform", "ONDELIVERY"),  # a platform claiming another platform
        ("admin", "buyer", None),
    ):
        headers = token_for(api, username, role, platform)
        detail = api.client.get("/invoice/detail", params={"invoice": invoice}, headers=headers)
        assert await status_and_body(detail) == (401, AUTH_ERROR), (username, role, platform)
