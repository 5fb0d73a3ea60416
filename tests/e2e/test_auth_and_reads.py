"""Who may ask, and what the read endpoints answer: /auth, Bearer and Basic credentials,
visibility of invoices, /invoice/detail, /balance, /balance/topup, /health, and the logs.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import structlog
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from service.application import Context, RegisterUser
from service.http import auth
from service.http.keys import SERVICE, STORE
from service.security import TokenClaims, hash_password, issue_token, verify_password
from tests.e2e.conftest import START, Api, checkout_body
from tests.sqlviews import views_query

pytestmark = pytest.mark.backends("sqlite", "postgresql")

MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
AUTH_ERROR = {"message": "Auth Error", "code": "AUTH_ERROR"}
NOT_FOUND = {"message": "Invoice not found", "code": "INVOICE_NOT_FOUND"}
DEV_LOGINS = ["usernew1", "seller1", "onmarket", "ondelivery", "onticket", "admin"]

Client = TestClient[web.Request, web.Application]


def api_time(offset_seconds: float = 0) -> str:
    """START + offset, written as the API writes times."""
    moment = START + timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def basic_header(raw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


async def json_of(response: ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    return body


async def login(client: Client, body: Any) -> ClientResponse:
    return await client.post("/auth", json=body)


async def ledger(api: Api) -> dict[str, int]:
    rows = await views_query(api.client.app[STORE], "SELECT account, balance FROM account_balances")
    return {account: balance for account, balance in rows}


# -- POST /auth -------------------------------------------------------------------------------


@pytest.mark.parametrize("username", DEV_LOGINS)
async def test_each_dev_account_logs_in_and_its_token_reads_the_balance(
    api: Api, username: str
) -> None:
    """A dev account's login answers a token expiring in 24 h that opens GET /balance."""
    response = await login(api.client, {"username": username, "password": username})
    body = await json_of(response)
    assert response.status == 200, body
    assert set(body) == {"token", "expired_at"}
    assert body["expired_at"] == api_time(24 * 3600)
    assert MS_Z.match(body["expired_at"])

    balance = await api.client.get("/balance", headers={"Authorization": f"Bearer {body['token']}"})
    answer = await json_of(balance)
    assert balance.status == 200, answer
    assert answer["username"] == username


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"username": "usernew1", "password": "wrong"}, id="wrong-password"),
        pytest.param({"username": "nobody", "password": "nobody"}, id="unknown-user"),
        pytest.param({"username": "usernew1", "password": "USERNEW1"}, id="password-case"),
        pytest.param({"username": "USERNEW1", "password": "usernew1"}, id="username-case"),
    ],
)
async def test_a_wrong_login_answers_auth_error(api: Api, credentials: dict[str, str]) -> None:
    """Bad credentials: 401 Auth Error, the same whichever part was wrong."""
    response = await login(api.client, credentials)
    assert response.status == 401
    assert await response.json() == AUTH_ERROR


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": "usernew1"}, id="missing-password"),
        pytest.param({"password": "usernew1"}, id="missing-username"),
        pytest.param(
            {"username": "usernew1", "password": "usernew1", "role": "admin"}, id="extra-field"
        ),
        pytest.param({}, id="empty-object"),
        pytest.param({"username": "", "password": "usernew1"}, id="empty-username"),
        pytest.param({"username": "usernew1", "password": 12345678}, id="number-password"),
        pytest.param(["usernew1", "usernew1"], id="array"),
    ],
)
async def test_a_malformed_login_body_answers_400(api: Api, body: Any) -> None:
    """A login body that is not {username, password}: 400 with a code, never 401 or 500."""
    response = await login(api.client, body)
    answer = await json_of(response)
    assert response.status == 400, answer
    assert answer["message"] == "Invalid JSON Format"
    assert answer["code"] == "VALIDATION"


async def test_an_empty_or_non_json_login_body_answers_4xx(api: Api) -> None:
    """No body, a body that is not JSON, or the wrong content type: 4xx with a code."""
    empty = await api.client.post("/auth", data=b"", headers={"Content-Type": "application/json"})
    assert empty.status == 400
    assert (await json_of(empty))["message"] == "Invalid JSON Format"

    garbage = await api.client.post(
        "/auth", data=b"{username", headers={"Content-Type": "application/json"}
    )
    assert garbage.status == 400
    assert (await json_of(garbage))["code"] == "MALFORMED_JSON"

    form = await api.client.post("/auth", data={"username": "usernew1", "password": "usernew1"})
    assert form.status == 415
    assert "code" in await json_of(form)


# -- Bearer and Basic failures -------------------------------------------------------------------

BearerCall = Callable[[Client, dict[str, str]], Awaitable[ClientResponse]]


async def _detail_call(client: Client, headers: dict[str, str]) -> ClientResponse:
    return await client.get(
        "/invoice/detail", params={"invoice": "OM0000000000000"}, headers=headers
    )


async def _balance_call(client: Client, headers: dict[str, str]) -> ClientResponse:
    return await client.get("/balance", headers=headers)


async def _checkout_call(client: Client, headers: dict[str, str]) -> ClientResponse:
    return await client.post("/payment-checkout", json=checkout_body(), headers=headers)


BEARER_ENDPOINTS = [
    pytest.param(_detail_call, id="invoice-detail"),
    pytest.param(_balance_call, id="balance"),
    pytest.param(_checkout_call, id="payment-checkout"),
]


def _flip(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("call", BEARER_ENDPOINTS)
async def test_bearer_endpoints_refuse_missing_or_bad_tokens(api: Api, call: BearerCall) -> None:
    """No header, an empty Bearer, Basic instead, garbage, a tampered or foreign token: 401."""
    good = api.bearer("usernew1")["Authorization"].removeprefix("Bearer ")
    payload, _, signature = good.partition(".")
    foreign = issue_token(
        TokenClaims("usernew1", "buyer", None, api.clock() + timedelta(hours=24)),
        b"another secret, not the app's",
    )
    forged_admin = issue_token(
        TokenClaims("usernew1", "admin", None, api.clock() + timedelta(hours=24)),
        b"another secret, not the app's",
    )
    cases: dict[str, dict[str, str]] = {
        "no header": {},
        "Bearer alone": {"Authorization": "Bearer"},
        "Bearer and a space": {"Authorization": "Bearer "},
        "Basic instead": api.basic("usernew1"),
        "garbage token": {"Authorization": "Bearer not-a-token"},
        "payload only": {"Authorization": f"Bearer {payload}"},
        "tampered payload": {"Authorization": f"Bearer {_flip(good, 3)}"},
        "tampered signature": {"Authorization": f"Bearer {_flip(good, len(good) - 2)}"},
        "signature swapped": {"Authorization": f"Bearer {payload}.{signature[::-1]}"},
        "other secret": {"Authorization": f"Bearer {foreign}"},
        "forged admin": {"Authorization": f"Bearer {forged_admin}"},
        "token twice": {"Authorization": f"Bearer {good} {good}"},
    }
    for case, headers in cases.items():
        response = await call(api.client, headers)
        assert response.status == 401, case
        assert await response.json() == AUTH_ERROR, case
        assert response.headers.get("X-Request-ID"), case
    # The good token itself works (so the refusals above are about the token).
    response = await call(api.client, {"Authorization": f"Bearer {good}"})
    assert response.status != 401


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("call", BEARER_ENDPOINTS)
async def test_bearer_endpoints_refuse_an_expired_token(api: Api, call: BearerCall) -> None:
    """A token is good until 24 h after it was issued, and refused from then on."""
    headers = api.bearer("usernew1")
    api.clock.advance(24 * 3600 - 1)
    assert (await call(api.client, headers)).status != 401
    api.clock.advance(2)
    response = await call(api.client, headers)
    assert response.status == 401
    assert await response.json() == AUTH_ERROR


async def test_a_token_from_auth_expires_after_24_hours(api: Api) -> None:
    """The token /auth issues is refused once the clock passed its expired_at."""
    response = await login(api.client, {"username": "usernew1", "password": "usernew1"})
    token = (await json_of(response))["token"]
    api.clock.advance(86401)
    balance = await api.client.get("/balance", headers={"Authorization": f"Bearer {token}"})
    assert balance.status == 401
    assert await balance.json() == AUTH_ERROR


BasicCall = Callable[[Client, dict[str, str]], Awaitable[ClientResponse]]


async def _cancel_call(client: Client, headers: dict[str, str]) -> ClientResponse:
    body = {"platform": "ONMARKET", "invoice_id": "OM0000000000000"}
    return await client.post("/invoice/cancel", json=body, headers=headers)


async def _done_call(client: Client, headers: dict[str, str]) -> ClientResponse:
    body = {"platform": "ONMARKET", "invoice_id": "OM0000000000000"}
    return await client.post("/invoice/done", json=body, headers=headers)


async def _topup_call(client: Client, headers: dict[str, str]) -> ClientResponse:
    body = {"username": "usernew1", "amount": 1000}
    return await client.post("/balance/topup", json=body, headers=headers)


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    ("call", "account"),
    [
        pytest.param(_cancel_call, "onmarket", id="invoice-cancel"),
        pytest.param(_done_call, "onmarket", id="invoice-done"),
        pytest.param(_topup_call, "admin", id="balance-topup"),
    ],
)
async def test_basic_endpoints_refuse_missing_or_bad_credentials(
    api: Api, call: BasicCall, account: str
) -> None:
    """No header, malformed base64, no colon, wrong password, unknown user, Bearer: 401."""
    cases: dict[str, dict[str, str]] = {
        "no header": {},
        "Basic alone": {"Authorization": "Basic"},
        "malformed base64": {"Authorization": "Basic !!!not-base64!!!"},
        "truncated base64": {"Authorization": "Basic " + api.basic(account)["Authorization"][6:-2]},
        "no colon": basic_header(account),
        "wrong password": api.basic(account, "not-the-password"),
        "empty password": api.basic(account, ""),
        "unknown user": api.basic("nobody", "nobody"),
        "Bearer instead": api.bearer(account),
    }
    for case, headers in cases.items():
        response = await call(api.client, headers)
        assert response.status == 401, case
        assert await response.json() == AUTH_ERROR, case
    # The right credentials get past authentication.
    assert (await call(api.client, api.basic(account))).status != 401


# -- who sees which invoice ------------------------------------------------------------------


async def _detail_by(api: Api, viewer: str, **params: str) -> tuple[int, dict[str, Any]]:
    response = await api.client.get("/invoice/detail", params=params, headers=api.bearer(viewer))
    return response.status, await json_of(response)


async def test_a_buyer_sees_only_their_own_invoices(api: Api) -> None:
    """Another buyer's invoice answers exactly like a missing one, by invoice and by waybill."""
    body = checkout_body(service="ONDELIVERY", stores=1)
    body["transaction"][0]["waybill_number"] = "OND-VIS-0001"
    response = await api.client.post("/payment-checkout", json=body, headers=api.bearer("usernew1"))
    invoice = (await json_of(response))["invoice"]

    missing = await _detail_by(api, "seller1", invoice="OD0000000000000")
    assert missing == (400, NOT_FOUND)
    assert await _detail_by(api, "seller1", invoice=invoice) == missing
    assert await _detail_by(api, "seller1", waybill_number="OND-VIS-0001") == missing
    assert await _detail_by(api, "seller1", waybill_number="OND-NO-SUCH") == missing

    status, own = await _detail_by(api, "usernew1", invoice=invoice)
    assert status == 200
    assert own["invoice"] == invoice
    status, own = await _detail_by(api, "usernew1", waybill_number="OND-VIS-0001")
    assert status == 200
    assert own["invoice"] == invoice


async def test_an_admin_sees_any_invoice(api: Api) -> None:
    """An admin's token reads every buyer's invoice."""
    first = (await api.checkout(buyer="usernew1"))["invoice"]
    second = (await api.checkout(buyer="seller1"))["invoice"]
    assert (await api.detail(first, viewer="admin"))["username"] == "usernew1"
    assert (await api.detail(second, viewer="admin"))["username"] == "seller1"


async def test_a_platform_sees_the_invoices_of_its_own_service_only(api: Api) -> None:
    """onmarket reads ONMARKET invoices; an ONDELIVERY invoice answers Invoice not found."""
    onmarket = (await api.checkout())["invoice"]
    ondelivery = (await api.checkout(service="ONDELIVERY"))["invoice"]

    assert (await api.detail(onmarket, viewer="onmarket"))["invoice"] == onmarket
    assert await api.detail(ondelivery, viewer="onmarket", expect=400) == NOT_FOUND
    assert (await api.detail(ondelivery, viewer="ondelivery"))["invoice"] == ondelivery
    assert await api.detail(onmarket, viewer="ondelivery", expect=400) == NOT_FOUND
    assert await api.detail(onmarket, viewer="onticket", expect=400) == NOT_FOUND


# -- GET /invoice/detail -----------------------------------------------------------------------


async def test_invoice_detail_answers_the_seed_fields(api: Api) -> None:
    """Every field of the seed's example plus each store's transaction; updatedAt moves on pay."""
    created = await api.checkout()
    body = await api.detail(created["invoice"])

    seed_fields = {
        "id",
        "username",
        "type",
        "amount",
        "xendit_invoice",
        "invoice",
        "status",
        "src",
        "xendit_url",
        "expired_at",
        "createdAt",
        "updatedAt",
        "transaction",
    }
    assert seed_fields <= set(body)
    assert isinstance(body["id"], str)
    assert body["id"].isdigit()
    assert body["username"] == "usernew1"
    assert body["type"] == "ONMARKET CHECKOUT"
    assert body["amount"] == 10000 + 5000 + 100 + 20000 + 5000 + 100
    assert body["xendit_invoice"] == created["xendit_invoice"]
    assert body["invoice"] == created["invoice"]
    assert body["status"] == "PENDING"
    assert body["src"] == "XENDIT"
    assert body["xendit_url"] == created["payment_url"]
    assert body["expired_at"] == created["expired_at"] == api_time(2 * 3600)
    assert body["createdAt"] == api_time(0)
    assert body["updatedAt"] == api_time(0)
    for name in ("expired_at", "createdAt", "updatedAt"):
        assert MS_Z.match(body[name]), name

    lines = body["transaction"]
    assert [line["invoice_onmarket"] for line in lines] == [
        t["invoice_onmarket"] for t in created["transaction"]
    ]
    assert lines[0] == {
        "invoice_onmarket": lines[0]["invoice_onmarket"],
        "seller_username": "seller1",
        "amount": 10000,
        "freight_charge": 5000,
        "insurance_amount": 100,
        "commission_onmarket": 1000,
        "waybill_number": None,
        "status": "PENDING",
    }
    assert lines[1]["seller_username"] == "seller2"
    assert lines[1]["amount"] == 20000

    api.clock.advance(90.25)
    await api.pay(created["xendit_invoice"])
    paid = await api.detail(created["invoice"])
    assert paid["status"] == "PAID"
    assert [line["status"] for line in paid["transaction"]] == ["PAID", "PAID"]
    assert paid["createdAt"] == api_time(0)
    assert paid["updatedAt"] == api_time(90.25)
    assert paid["id"] == body["id"]


async def test_a_qris_invoice_detail_carries_its_qr_string(api: Api) -> None:
    """A QRIS invoice: src QRIS, the qr_ reference, the QR payload, and no payment URL."""
    created = await api.checkout(source="QRIS")
    body = await api.detail(created["invoice"])
    assert body["src"] == "QRIS"
    assert body["xendit_invoice"] == created["xendit_invoice"]
    assert body["xendit_invoice"].startswith("qr_")
    assert body["qr_string"] == created["qr_string"]
    assert body["xendit_url"] is None
    assert body["amount"] == created["amount"]


async def test_invoice_ids_follow_the_service_prefix(api: Api) -> None:
    """OM / OD / OT and 13 characters of [0-9A-Za-z]."""
    for service, prefix in (("ONMARKET", "OM"), ("ONDELIVERY", "OD"), ("ONTICKET", "OT")):
        invoice = (await api.checkout(service=service))["invoice"]
        assert re.fullmatch(prefix + "[0-9A-Za-z]{13}", invoice), invoice
        assert (await api.detail(invoice))["type"] == f"{service} CHECKOUT"


async def test_detail_by_waybill_number(api: Api) -> None:
    """An ONDELIVERY checkout's waybill numbers find its invoice, each one."""
    body = checkout_body(service="ONDELIVERY")
    body["transaction"][0]["waybill_number"] = "OND132456A123"
    body["transaction"][1]["waybill_number"] = "OND132456A124"
    response = await api.client.post("/payment-checkout", json=body, headers=api.bearer("usernew1"))
    created = await json_of(response)
    assert response.status == 200, created

    for waybill in ("OND132456A123", "OND132456A124"):
        status, found = await _detail_by(api, "usernew1", waybill_number=waybill)
        assert status == 200, found
        assert found["invoice"] == created["invoice"]
        assert found["type"] == "ONDELIVERY CHECKOUT"
        assert [line["waybill_number"] for line in found["transaction"]] == [
            "OND132456A123",
            "OND132456A124",
        ]
    assert await _detail_by(api, "usernew1", waybill_number="OND000000000") == (400, NOT_FOUND)


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"invoice": "OM0000000000000", "waybill_number": "W1"}, id="both"),
        pytest.param({}, id="neither"),
        pytest.param({"invoice": "OM0000000000000", "as_off": "x"}, id="unknown-parameter"),
        pytest.param({"invoice_id": "OM0000000000000"}, id="unknown-only"),
        pytest.param({"invoice": ""}, id="empty-invoice"),
    ],
)
async def test_detail_needs_exactly_one_known_parameter(api: Api, params: dict[str, str]) -> None:
    """Both parameters, neither, an unknown one or an empty one: 400 VALIDATION."""
    status, body = await _detail_by(api, "usernew1", **params)
    assert status == 400, body
    assert body["message"] == "Invalid JSON Format"
    assert body["code"] == "VALIDATION"
    assert isinstance(body.get("errors"), dict)


# -- GET /balance -------------------------------------------------------------------------------


async def test_balance_answers_entries_newest_first_with_a_limit(api: Api) -> None:
    """Top-ups and a BALANCE payment appear newest first; limit cuts the list."""
    empty = await api.balance("usernew1")
    assert empty == {"username": "usernew1", "balance": 0, "seller_balance": 0, "entries": []}

    await api.top_up("usernew1", 100000)
    api.clock.advance(1)
    await api.top_up("usernew1", 2000)
    api.clock.advance(1)
    created = await api.checkout(source="BALANCE")
    answer = await api.balance("usernew1")
    assert answer["username"] == "usernew1"
    assert answer["balance"] == 102000 - created["amount"]
    assert answer["seller_balance"] == 0
    amounts = [entry["amount"] for entry in answer["entries"]]
    assert amounts == [-created["amount"], 2000, 100000]
    positions = [entry["position"] for entry in answer["entries"]]
    assert positions == sorted(positions, reverse=True)
    newest = answer["entries"][0]
    assert newest["account"] == "buyer:usernew1"
    assert newest["invoice"] == created["invoice"]
    assert isinstance(newest["type"], str)
    assert MS_Z.match(newest["recorded_at"])

    response = await api.client.get(
        "/balance", params={"limit": "2"}, headers=api.bearer("usernew1")
    )
    limited = await json_of(response)
    assert response.status == 200
    assert limited["entries"] == answer["entries"][:2]
    assert limited["balance"] == answer["balance"]

    for limit in ("1", "500"):
        response = await api.client.get(
            "/balance", params={"limit": limit}, headers=api.bearer("usernew1")
        )
        assert response.status == 200, limit


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"l": "1"}])
async def test_balance_refuses_a_bad_limit(api: Api, params: dict[str, str]) -> None:
    """limit is 1..500; anything else (or an unknown parameter) is 400 VALIDATION."""
    response = await api.client.get("/balance", params=params, headers=api.bearer("usernew1"))
    body = await json_of(response)
    assert response.status == 400, body
    assert body["code"] == "VALIDATION"


async def test_a_seller_sees_their_seller_balance_after_done(api: Api) -> None:
    """After pay and done, seller1's seller_balance is amount + freight - commission."""
    created = await api.checkout()
    first = created["transaction"][0]["invoice_onmarket"]
    await api.pay(created["xendit_invoice"])
    before = await api.balance("seller1")
    assert before["seller_balance"] == 0
    await api.platform("done", invoice_id=created["invoice"], invoice_onmarket=first)

    after = await api.balance("seller1")
    assert after["seller_balance"] == 10000 + 5000 - 1000
    assert after["balance"] == 0
    assert after["entries"][0]["account"] == "seller:seller1"
    assert after["entries"][0]["amount"] == 14000
    assert after["entries"][0]["invoice"] == created["invoice"]
    assert await api.ledger_sum() == 0


# -- POST /balance/topup ------------------------------------------------------------------------


async def test_an_admin_tops_up_a_buyer(api: Api) -> None:
    """200 BALANCE TOPPED UP with the new balance; external:topup goes down by as much."""
    first = await api.top_up("usernew1", 50000)
    assert first == {"message": "BALANCE TOPPED UP", "username": "usernew1", "balance": 50000}
    second = await api.top_up("usernew1", 25)
    assert second["balance"] == 50025
    assert (await api.balance("usernew1"))["balance"] == 50025

    accounts = await ledger(api)
    assert accounts["external:topup"] == -50025
    assert accounts["buyer:usernew1"] == 50025
    assert await api.ledger_sum() == 0


@pytest.mark.backends("sqlite")  # the HTTP layer's checks: the same on any backend
@pytest.mark.parametrize(
    "amount",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(100.0, id="float"),
        pytest.param(1.5, id="fraction"),
        pytest.param(True, id="bool"),
        pytest.param("1000", id="string"),
        pytest.param(None, id="null"),
        pytest.param(10**12 + 1, id="over-cap"),
        pytest.param(10**30, id="huge"),
    ],
)
async def test_topup_refuses_a_bad_amount(api: Api, amount: Any) -> None:
    """Anything but an integer 1..10^12 is 400 VALIDATION naming amount; nothing moves."""
    response = await api.client.post(
        "/balance/topup",
        json={"username": "usernew1", "amount": amount},
        headers=api.basic("admin"),
    )
    body = await json_of(response)
    assert response.status == 400, body
    assert body["code"] == "VALIDATION"
    assert "amount" in body["errors"]
    assert await ledger(api) == {}


async def test_topup_accepts_the_cap(api: Api) -> None:
    """10^12 itself is a valid amount."""
    assert (await api.top_up("usernew1", 10**12))["balance"] == 10**12


async def test_topup_of_an_unknown_user_is_refused(api: Api) -> None:
    """400 USER_NOT_FOUND, and no money appears anywhere."""
    response = await api.client.post(
        "/balance/topup", json={"username": "nobody", "amount": 1000}, headers=api.basic("admin")
    )
    body = await json_of(response)
    assert response.status == 400, body
    assert body["code"] == "USER_NOT_FOUND"
    assert isinstance(body["message"], str)
    assert await ledger(api) == {}


@pytest.mark.parametrize("account", ["onmarket", "usernew1", "seller1"])
async def test_only_an_admin_may_top_up(api: Api, account: str) -> None:
    """A platform or buyer account with valid credentials: 403."""
    response = await api.client.post(
        "/balance/topup",
        json={"username": "usernew1", "amount": 1000},
        headers=api.basic(account),
    )
    body = await json_of(response)
    assert response.status == 403, body
    assert body["code"] == "FORBIDDEN"
    assert await ledger(api) == {}


@pytest.mark.parametrize("target", ["onmarket", "admin"])
async def test_topup_credits_buyer_accounts_only(api: Api, target: str) -> None:
    """A platform or admin account has no buyer balance to top up: 4xx, nothing moves."""
    response = await api.client.post(
        "/balance/topup", json={"username": target, "amount": 1000}, headers=api.basic("admin")
    )
    body = await json_of(response)
    assert 400 <= response.status < 500, body
    assert await ledger(api) == {}


# -- GET /health ---------------------------------------------------------------------------------


async def test_health_answers_ok_and_the_head_position(api: Api) -> None:
    """{"status": "ok", "head_position": int, "pid": int}, the position moving forward as events
    are written, the pid this process's (the app runs in the test's process)."""
    response = await api.client.get("/health")
    body = await json_of(response)
    assert response.status == 200
    assert body["status"] == "ok"
    assert isinstance(body["head_position"], int)
    assert body["head_position"] >= 6  # the six dev accounts
    assert body["pid"] == os.getpid()
    await api.top_up("usernew1", 1)
    later = await json_of(await api.client.get("/health"))
    assert later["head_position"] == body["head_position"] + 1


# -- logs ------------------------------------------------------------------------------------------


async def test_logs_never_carry_passwords_or_tokens(api: Api) -> None:
    """Logins, Bearer and Basic calls, good and bad: no password or token in any log line."""
    # The dev accounts' passwords are their usernames, which may be logged: use others.
    service = api.client.app[SERVICE]
    buyer_password, admin_password, wrong = "Buyer-Pa55word!", "Admin-Pa55word!", "wr0ng-Pa55!"
    for username, role, password in (
        ("logbuyer", "buyer", buyer_password),
        ("logadmin", "admin", admin_password),
    ):
        command = RegisterUser(username, role, None, hash_password(password))
        await service.handle(command, Context("test"))
    good_basic = api.basic("logadmin", admin_password)
    bad_basic = api.basic("logadmin", wrong)
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        response = await login(api.client, {"username": "logbuyer", "password": buyer_password})
        token = (await json_of(response))["token"]
        await login(api.client, {"username": "logbuyer", "password": wrong})
        await login(api.client, {"username": "nobody", "password": wrong})
        await api.client.get("/balance", headers={"Authorization": f"Bearer {token}"})
        await api.client.get("/balance", headers={"Authorization": f"Bearer {_flip(token, 3)}"})
        await api.client.get("/balance", headers={"Authorization": f"Bearer {token}x"})
        await api.client.get("/balance", headers=good_basic)
        for headers in (good_basic, bad_basic, api.bearer("logadmin")):
            await api.client.post(
                "/balance/topup", json={"username": "logbuyer", "amount": 10}, headers=headers
            )
    assert logs, "nothing was logged"
    secrets = {
        "buyer password": buyer_password,
        "admin password": admin_password,
        "wrong password": wrong,
        "token payload": token.partition(".")[0],
        "token signature": token.partition(".")[2],
        "basic credentials": good_basic["Authorization"].removeprefix("Basic "),
        "bad basic credentials": bad_basic["Authorization"].removeprefix("Basic "),
        "other bearer": api.bearer("logadmin")["Authorization"].removeprefix("Bearer "),
    }
    for event in logs:
        text = repr(event)
        for name, secret in secrets.items():
            assert secret not in text, f"{name} in {text}"
    # The refusals are logged (with the username, never the password).
    assert any(event.get("event") == "login refused" for event in logs)
    assert any(event.get("event") == "bearer refused" for event in logs)


async def test_each_request_logs_one_request_line_with_its_id(api: Api) -> None:
    """One "request" event per request, with method, path, status, duration_ms and request_id."""
    calls: list[tuple[str, str, dict[str, str], int]] = [
        ("GET", "/health", {}, 200),
        ("GET", "/balance", api.bearer("usernew1"), 200),
        ("GET", "/balance", {}, 401),
        ("GET", "/no/such/path", {}, 404),
        ("GET", "/health", {"X-Request-ID": "client-chosen.id-42"}, 200),
    ]
    seen: list[tuple[str, str, int, str]] = []
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        for method, path, headers, status in calls:
            response = await api.client.request(method, path, headers=headers)
            assert response.status == status
            await response.read()
            seen.append((method, path, status, response.headers["X-Request-ID"]))

    assert seen[-1][3] == "client-chosen.id-42"
    lines = [event for event in logs if event.get("event") == "request"]
    assert len(lines) == len(calls), lines
    for (method, path, status, request_id), line in zip(seen, lines, strict=True):
        assert line["method"] == method
        assert line["path"] == path
        assert line["status"] == status
        assert isinstance(line["duration_ms"], int | float)
        assert line["duration_ms"] >= 0
        assert line["request_id"] == request_id
    for event in logs:  # every line logged while handling a request carries its id
        if "job" in event:  # a background job's own line (on PostgreSQL a lease is taken
            continue  # a moment after the app starts, within this window): no request's
        assert event.get("request_id") in {s[3] for s in seen}, event


async def test_a_burst_of_the_same_basic_credentials_costs_one_password_check(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixteen concurrent first calls of one platform share one scrypt; a wrong password is
    never shared with, or remembered for, the right one."""
    checks: list[str] = []
    real_verify = verify_password

    def counting_verify(password: str, stored: str) -> bool:
        checks.append(password)
        return real_verify(password, stored)

    monkeypatch.setattr(auth, "verify_password", counting_verify)
    body = {"platform": "ONMARKET", "invoice_id": "OM0000000000000"}

    async def done(password: str) -> int:
        response = await api.client.post(
            "/invoice/done", json=body, headers=api.basic("onmarket", password)
        )
        return response.status

    right = await asyncio.gather(*(done("onmarket") for _ in range(16)))
    wrong = await asyncio.gather(*(done("wrong") for _ in range(4)))

    assert right == [400] * 16  # authenticated; the invoice does not exist
    assert wrong == [401] * 4
    assert sorted(checks) == ["onmarket", "wrong"]


async def test_a_token_that_worked_is_refused_once_it_has_expired(api: Api) -> None:
    """A token read before (and remembered) is still checked for expiry on every request."""
    headers = api.bearer("usernew1")  # valid for 24 h from the fake clock's now
    first = await api.client.get("/balance", headers=headers)
    api.clock.advance(24 * 3600)
    second = await api.client.get("/balance", headers=headers)

    assert first.status == 200
    assert second.status == 401
    assert (await second.json())["message"] == "Auth Error"
