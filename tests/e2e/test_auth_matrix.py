"""The authentication matrix: every endpoint, asked in every wrong way, by everyone who may not.

Each case is one refused request, named ``endpoint.fault``. It must get the documented answer
(401 Auth Error; 403 Forbidden; 400 Invoice not found for someone else's invoice, exactly as for
a missing one), write nothing (the log's head and every balance stay put), name nothing of
another user in the answer, be logged as a refusal with its reason, and leave no password,
token, Basic value or callback token in any log line or in the answer.

The world is built once per session (accounts with passwords unlike their usernames, so a
password in a log is caught; a paid ONMARKET invoice, a pending ONDELIVERY one with a waybill,
and a topped-up balance, all of one buyer) and copied for each case, which makes a case cost one
app start. Refusals the service gets wrong are marked ``xfail(strict=True)`` with the exception
that only that defect raises, so every other check of the case still runs and counts.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import structlog
from _pytest.mark.structures import ParameterSet  # what pytest.param returns
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.typing import EventDict

from service.app import create_app
from service.application import Context, DisableUser, RegisterUser, TopUp
from service.config import Config
from service.http.keys import SERVICE, STORE
from service.security import TokenClaims, hash_password, issue_token
from tests.e2e.conftest import Api, FakeClock, checkout_body, e2e_config

Client = TestClient[web.Request, web.Application]

# -- the world -------------------------------------------------------------------------------------

VICTIM, INTRUDER = "mx-buyer", "mx-other"
MARKET, DELIVERY, ADMIN = "mx-market", "mx-delivery", "mx-admin"
NOBODY = "mx-nobody"
GONE, GONE_MARKET = "mx-gone", "mx-gone-market"  # disabled accounts (users disable)
ACCOUNTS: dict[str, tuple[str, str | None]] = {
    VICTIM: ("buyer", None),
    INTRUDER: ("buyer", None),
    MARKET: ("platform", "ONMARKET"),
    DELIVERY: ("platform", "ONDELIVERY"),
    ADMIN: ("admin", None),
    GONE: ("buyer", None),
    GONE_MARKET: ("platform", "ONMARKET"),
}
# Unlike the development accounts', these passwords are not the usernames (which may be logged).
PASSWORDS = {name: f"{name.title()}-Pa55word!" for name in ACCOUNTS}
WRONG_PASSWORD = "Wr0ng-Pa55word!"
OTHER_KEY = b"a secret that is not the app's"

VICTIM_BALANCE = 73519
MARKET_LINE, DELIVERY_LINE = "INV/MX/MARKET-0001", "INV/MX/DELIVERY-0001"
WAYBILL, MISSING_WAYBILL = "MX-WAYBILL-0001", "MX-WAYBILL-9999"
MISSING_INVOICE = "OM0000000000000"
AS_OF = "2100-01-01T00:00:00Z"  # after everything: the invoice as it stands

AUTH_ERROR = {"message": "Auth Error", "code": "AUTH_ERROR"}
FORBIDDEN = {"message": "Forbidden", "code": "FORBIDDEN"}
NOT_FOUND = {"message": "Invoice not found", "code": "INVOICE_NOT_FOUND"}
VALIDATION = {"message": "Invalid JSON Format", "code": "VALIDATION"}


@dataclass(frozen=True)
class World:
    """The session's database and what is in it: all of it belongs to VICTIM."""

    database: Path
    market_invoice: str  # ONMARKET, PAID, one transaction (MARKET_LINE)
    delivery_invoice: str  # ONDELIVERY, PENDING, one transaction with WAYBILL
    delivery_total: int
    references: tuple[str, ...]  # the gateway's references of both

    def private(self) -> list[str]:
        """What no refusal may show to anyone but VICTIM."""
        return [
            VICTIM,
            self.market_invoice,
            self.delivery_invoice,
            MARKET_LINE,
            DELIVERY_LINE,
            WAYBILL,
            str(VICTIM_BALANCE),
            *self.references,
        ]


async def _build_world(database: Path) -> World:
    clock = FakeClock()
    config = e2e_config(database)
    client: Client
    async with TestClient(TestServer(create_app(config, clock=clock))) as client:
        api = Api(client, config, clock)
        service = client.app[SERVICE]
        for username, (role, platform) in ACCOUNTS.items():
            hashed = await asyncio.to_thread(hash_password, PASSWORDS[username])
            await service.handle(RegisterUser(username, role, platform, hashed), Context("test"))
        for username in (GONE, GONE_MARKET):
            await service.handle(DisableUser(username), Context("test"))
        await service.handle(TopUp(ADMIN, VICTIM, VICTIM_BALANCE), Context("test"))

        market = await api.checkout(buyer=VICTIM, stores=1, invoice_onmarket=[MARKET_LINE])
        await api.pay(market["xendit_invoice"])
        body = checkout_body(service="ONDELIVERY", stores=1, invoice_onmarket=[DELIVERY_LINE])
        body["transaction"][0]["waybill_number"] = WAYBILL
        response = await client.post("/payment-checkout", json=body, headers=api.bearer(VICTIM))
        delivery: dict[str, Any] = await response.json()
        assert response.status == 200, delivery
    return World(
        database,
        market["invoice"],
        delivery["invoice"],
        body["total_amount"],
        (market["xendit_invoice"], delivery["xendit_invoice"]),
    )


@pytest.fixture(scope="session")
def world(template_db: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    database = tmp_path_factory.mktemp("auth-matrix") / "invoices.db"
    shutil.copy(template_db, database)
    return asyncio.run(_build_world(database))


@pytest.fixture
def config(tmp_path: Path, world: World) -> Config:
    """Overrides conftest's: each case starts from a copy of the world."""
    database = tmp_path / "invoices.db"
    shutil.copy(world.database, database)
    return e2e_config(database)


# -- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """What a case needs to build its request: the world, the app's secrets, the time."""

    world: World
    secret: bytes
    callback_token: str
    now: datetime

    def token(
        self,
        username: str,
        *,
        expires_in: timedelta = timedelta(hours=24),
        secret: bytes | None = None,
    ) -> str:
        role, platform = ACCOUNTS[username]
        claims = TokenClaims(username, role, platform, self.now + expires_in)
        return issue_token(claims, secret or self.secret)


@dataclass(frozen=True)
class Credentials:
    """How a request says who it is, and the secrets in it that no log line may carry."""

    headers: dict[str, str] = field(default_factory=dict)
    raw_header: bytes | None = None  # one more header line, sent as raw (non-UTF-8) bytes
    secrets: tuple[str, ...] = ()
    advance: float = 0.0  # seconds the clock moves on before the request


@dataclass(frozen=True)
class Attempt:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    credentials: Credentials


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    text: str

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(self.text)
        return body


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def basic(username: str, password: str) -> Credentials:
    value = b64(f"{username}:{password}".encode())
    return Credentials({"Authorization": f"Basic {value}"}, secrets=(value, password))


def bearer(token: str) -> Credentials:
    return Credentials({"Authorization": f"Bearer {token}"}, secrets=(token,))


def tampered(token: str, **claims: Any) -> str:
    """``token`` with its payload's claims changed and its signature kept."""
    payload, _, signature = token.partition(".")
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = base64.urlsafe_b64encode(orjson.dumps({**data, **claims})).rstrip(b"=").decode()
    return f"{edited}.{signature}"


async def send(client: Client, attempt: Attempt) -> Answer:
    credentials = attempt.credentials
    if credentials.raw_header is not None:
        return await send_raw(client, attempt)
    response = await client.request(
        attempt.method,
        attempt.path,
        params=attempt.query,
        json=attempt.body,
        headers=credentials.headers,
    )
    text = await response.text()
    return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, text)


async def send_raw(client: Client, attempt: Attempt) -> Answer:
    """The request over a plain socket: aiohttp's client will not send non-UTF-8 header bytes."""
    target = attempt.path + (f"?{urlencode(attempt.query)}" if attempt.query else "")
    body = orjson.dumps(attempt.body) if attempt.body is not None else b""
    lines = [
        f"{attempt.method} {target} HTTP/1.1",
        "Host: localhost",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in attempt.credentials.headers.items()),
    ]
    head = "".join(f"{line}\r\n" for line in lines).encode("ascii")
    raw_header = attempt.credentials.raw_header or b""
    url = client.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(head + raw_header + b"\r\n\r\n" + body)
        await writer.drain()
        received = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head_part, _, body_part = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body_part.decode("utf-8"))


# -- the endpoints ---------------------------------------------------------------------------

Request = tuple[str, str, dict[str, str], Any]  # method, path, query, body
EndpointFn = Callable[[Ctx], Request]


def checkout_request(ctx: Ctx) -> Request:
    body = checkout_body(stores=1, invoice_onmarket=["INV/MX/NEW-0001"])
    return "POST", "/payment-checkout", {}, body


def detail_request(ctx: Ctx) -> Request:
    return "GET", "/invoice/detail", {"invoice": ctx.world.market_invoice}, None


def waybill_request(ctx: Ctx) -> Request:
    return "GET", "/invoice/detail", {"waybill_number": WAYBILL}, None


def as_of_request(ctx: Ctx) -> Request:
    return "GET", "/invoice/detail", {"invoice": ctx.world.market_invoice, "as_of": AS_OF}, None


def history_request(ctx: Ctx) -> Request:
    return "GET", "/invoice/history", {"invoice": ctx.world.market_invoice}, None


def balance_request(ctx: Ctx) -> Request:
    return "GET", "/balance", {}, None


def platform_body(ctx: Ctx, platform: str = "ONMARKET") -> dict[str, Any]:
    return {"platform": platform, "invoice_id": ctx.world.market_invoice}


def cancel_request(ctx: Ctx, platform: str = "ONMARKET") -> Request:
    body = {
        **platform_body(ctx, platform),
        "invoice_onmarket": MARKET_LINE,
        "buyer_username": VICTIM,
    }
    return "POST", "/invoice/cancel", {}, body


def done_request(ctx: Ctx, platform: str = "ONMARKET") -> Request:
    return (
        "POST",
        "/invoice/done",
        {},
        {**platform_body(ctx, platform), "invoice_onmarket": MARKET_LINE},
    )


def batch_request(ctx: Ctx, platform: str = "ONMARKET") -> Request:
    item = {"invoice_id": ctx.world.market_invoice, "invoice_onmarket": MARKET_LINE}
    return "POST", "/invoice/done/batch", {}, {"platform": platform, "items": [item]}


def mark_paid_request(ctx: Ctx, platform: str = "ONDELIVERY") -> Request:
    """The PENDING ONDELIVERY invoice marked paid: its platform's (or an admin's) to do."""
    body = {
        "platform": platform,
        "invoice_id": ctx.world.delivery_invoice,
        "reference": "MX-TRANSFER-0001",
        "reason": "paid by bank transfer",
    }
    return "POST", "/invoice/mark-paid", {}, body


def topup_request(ctx: Ctx, username: str = VICTIM) -> Request:
    return "POST", "/balance/topup", {}, {"username": username, "amount": 1000}


def invoice_callback_request(ctx: Ctx) -> Request:
    body = {
        "id": "mx-payment-1",
        "external_id": ctx.world.delivery_invoice,
        "status": "PAID",
        "paid_amount": ctx.world.delivery_total,
        "paid_at": "2026-03-01T08:00:01.000Z",
        "payment_method": "BANK_TRANSFER",
        "payment_channel": "BCA",
    }
    return "POST", "/callback/xendit/invoice", {}, body


def qr_callback_request(ctx: Ctx) -> Request:
    data = {
        "id": "mx-qr-payment-1",
        "qr_id": "qr_mx",
        "reference_id": ctx.world.delivery_invoice,
        "amount": ctx.world.delivery_total,
        "status": "SUCCEEDED",
    }
    return "POST", "/callback/xendit/qr", {}, {"event": "qr.payment", "data": data}


def admin_page_request(ctx: Ctx) -> Request:
    """The operator page, searching VICTIM's invoice (its timeline names VICTIM)."""
    return "GET", "/admin", {"q": ctx.world.market_invoice}, None


def webhook_endpoints_request(ctx: Ctx) -> Request:
    return "GET", "/webhooks/endpoints", {}, None


def webhook_messages_request(ctx: Ctx) -> Request:
    return "GET", "/webhooks/messages", {"invoice": ctx.world.market_invoice}, None


def webhook_create_request(ctx: Ctx) -> Request:
    return "POST", "/webhooks/endpoints", {}, {"url": "http://127.0.0.1:9/hook"}


def login_request(username: str, password: str) -> EndpointFn:
    return lambda ctx: ("POST", "/auth", {}, {"username": username, "password": password})


BEARER_ENDPOINTS: dict[str, EndpointFn] = {
    "checkout": checkout_request,
    "detail": detail_request,
    "detail-by-waybill": waybill_request,
    "detail-as-of": as_of_request,
    "history": history_request,
    "balance": balance_request,
}
# endpoint -> (request, the account it is for)
BASIC_ENDPOINTS: dict[str, tuple[EndpointFn, str]] = {
    "cancel": (cancel_request, MARKET),
    "done": (done_request, MARKET),
    "batch": (batch_request, MARKET),
    "mark-paid": (mark_paid_request, DELIVERY),
    "topup": (topup_request, ADMIN),
    "admin-page": (admin_page_request, ADMIN),
    "webhook-endpoints": (webhook_endpoints_request, MARKET),
    "webhook-messages": (webhook_messages_request, MARKET),
}
# /metrics, /health/live and /health/ready ask for no credentials (/metrics only with the
# setting metrics_token: tests/e2e/test_metrics.py), so they have no cell here.
CALLBACK_ENDPOINTS: dict[str, EndpointFn] = {
    "invoice-callback": invoice_callback_request,
    "qr-callback": qr_callback_request,
}


# -- the cells ----------------------------------------------------------------------------------

CredentialsFn = Callable[[Ctx], Credentials]


class MissingRefusalLog(AssertionError):
    """A refusal was answered as documented but not logged as a warning naming its reason."""


class KnownDefect(AssertionError):
    """A check that fails because of the defect its test's xfail reason describes."""


@dataclass(frozen=True)
class Cell:
    """One refused request and what must come of it."""

    request: EndpointFn
    credentials: CredentialsFn
    status: int
    body: dict[str, Any]
    caller: str | None = None  # the account the request line may name (None: nobody)
    warning: str | None = None  # the warning that names the reason (None: any with a reason)
    logged_as_refusal: bool = True  # False: a plain bad request, its request line is enough
    # The same request for something that does not exist (another request, or the same one
    # with other credentials): the answer must be the same.
    twin: EndpointFn | None = None
    twin_credentials: CredentialsFn | None = None

    @property
    def has_twin(self) -> bool:
        return self.twin is not None or self.twin_credentials is not None

    def attempt(self, ctx: Ctx, *, twin: bool = False) -> Attempt:
        method, path, query, body = (self.twin if twin and self.twin else self.request)(ctx)
        make = self.twin_credentials if twin and self.twin_credentials else self.credentials
        return Attempt(method, path, query, body, make(ctx))


def bearer_faults(owner: str) -> dict[str, tuple[CredentialsFn, str]]:
    """Ways to present no valid Bearer token of ``owner``, and the warning each must log."""

    def no_credentials(ctx: Ctx) -> Credentials:
        return Credentials()

    def wrong_scheme(ctx: Ctx) -> Credentials:
        token = ctx.token(owner)
        return Credentials({"Authorization": f"Token {token}"}, secrets=(token,))

    def empty(ctx: Ctx) -> Credentials:
        return Credentials({"Authorization": ""})

    def scheme_only(ctx: Ctx) -> Credentials:
        return Credentials({"Authorization": "Bearer"})

    def garbage(ctx: Ctx) -> Credentials:
        return Credentials({"Authorization": "Bearer !!not*a*token!!"})

    def no_signature(ctx: Ctx) -> Credentials:
        payload = ctx.token(owner).partition(".")[0]
        return Credentials({"Authorization": f"Bearer {payload}"}, secrets=(payload,))

    def non_utf8(ctx: Ctx) -> Credentials:
        token = ctx.token(owner)
        raw = b"Authorization: Bearer " + token.encode() + b"\xff\xfe"
        return Credentials(raw_header=raw, secrets=(token,))

    def huge(ctx: Ctx) -> Credentials:
        token = ctx.token(owner) + "A" * 7500  # under the server's 8190-byte limit
        return bearer(token)

    def expired(ctx: Ctx) -> Credentials:
        return bearer(ctx.token(owner, expires_in=timedelta(seconds=-1)))

    def expired_by_clock(ctx: Ctx) -> Credentials:
        # Good for a minute; the clock then reaches its expiry exactly (expired when now >= exp).
        return replace(bearer(ctx.token(owner, expires_in=timedelta(minutes=1))), advance=60)

    def another_key(ctx: Ctx) -> Credentials:
        return bearer(ctx.token(owner, secret=OTHER_KEY))

    def role_changed(ctx: Ctx) -> Credentials:
        return bearer(tampered(ctx.token(owner), role="admin", platform=None))

    def subject_changed(ctx: Ctx) -> Credentials:
        return bearer(tampered(ctx.token(INTRUDER), sub=owner))

    def basic_instead(ctx: Ctx) -> Credentials:
        return basic(owner, PASSWORDS[owner])

    def signed_for_nobody(ctx: Ctx) -> Credentials:
        claims = TokenClaims(NOBODY, "buyer", None, ctx.now + timedelta(hours=1))
        return bearer(issue_token(claims, ctx.secret))

    def signed_with_another_role(ctx: Ctx) -> Credentials:
        claims = TokenClaims(owner, "admin", None, ctx.now + timedelta(hours=1))
        return bearer(issue_token(claims, ctx.secret))

    def account_disabled(ctx: Ctx) -> Credentials:
        return bearer(ctx.token(GONE))

    refused = "bearer refused"
    return {
        "no-credentials": (no_credentials, refused),
        "wrong-scheme": (wrong_scheme, refused),
        "empty-header": (empty, refused),
        "scheme-only": (scheme_only, refused),
        "garbage-token": (garbage, refused),
        "no-signature": (no_signature, refused),
        "non-utf8-bytes": (non_utf8, refused),
        "huge-header": (huge, refused),
        "expired-token": (expired, refused),
        "expired-by-clock": (expired_by_clock, refused),
        "another-key": (another_key, refused),
        "tampered-role-admin": (role_changed, refused),
        "tampered-subject": (subject_changed, refused),
        "basic-instead": (basic_instead, refused),
        "signed-for-missing-account": (signed_for_nobody, refused),
        "signed-with-another-role": (signed_with_another_role, refused),
        "account-disabled": (account_disabled, refused),
    }


def basic_faults(owner: str) -> dict[str, tuple[CredentialsFn, str]]:
    """Ways to present no valid Basic credentials of ``owner``, and the warning each must log."""
    password = PASSWORDS[owner]

    def no_credentials(ctx: Ctx) -> Credentials:
        return Credentials()

    def wrong_scheme(ctx: Ctx) -> Credentials:
        value = b64(f"{owner}:{password}".encode())
        return Credentials({"Authorization": f"Token {value}"}, secrets=(value, password))

    def empty(ctx: Ctx) -> Credentials:
        return Credentials({"Authorization": ""})

    def scheme_only(ctx: Ctx) -> Credentials:
        return Credentials({"Authorization": "Basic"})

    def garbage(ctx: Ctx) -> Credentials:
        return Credentials({"Authorization": "Basic !!!not-base64!!!"})

    def no_colon(ctx: Ctx) -> Credentials:
        value = b64(f"{owner}{password}".encode())
        return Credentials({"Authorization": f"Basic {value}"}, secrets=(value, password))

    def non_utf8_credentials(ctx: Ctx) -> Credentials:
        value = b64(f"{owner}:{password}".encode() + b"\xff\xfe")
        return Credentials({"Authorization": f"Basic {value}"}, secrets=(value, password))

    def non_utf8_bytes(ctx: Ctx) -> Credentials:
        value = b64(f"{owner}:{password}".encode())
        raw = b"Authorization: Basic " + value.encode() + b"\xff\xfe"
        return Credentials(raw_header=raw, secrets=(value, password))

    def huge(ctx: Ctx) -> Credentials:
        return basic(owner, password + "x" * 5400)  # under the server's 8190-byte limit

    def wrong_password(ctx: Ctx) -> Credentials:
        return basic(owner, WRONG_PASSWORD)

    def unknown_user(ctx: Ctx) -> Credentials:
        return basic(NOBODY, password)

    def bearer_instead(ctx: Ctx) -> Credentials:
        return bearer(ctx.token(owner))

    def account_disabled(ctx: Ctx) -> Credentials:
        return basic(GONE_MARKET, PASSWORDS[GONE_MARKET])

    malformed, login = "basic credentials refused", "login refused"
    return {
        "no-credentials": (no_credentials, malformed),
        "wrong-scheme": (wrong_scheme, malformed),
        "empty-header": (empty, malformed),
        "scheme-only": (scheme_only, malformed),
        "garbage-base64": (garbage, malformed),
        "no-colon": (no_colon, malformed),
        "non-utf8-credentials": (non_utf8_credentials, malformed),
        "non-utf8-bytes": (non_utf8_bytes, malformed),
        "huge-header": (huge, login),
        "wrong-password": (wrong_password, login),
        "unknown-user": (unknown_user, login),
        "bearer-instead": (bearer_instead, malformed),
        "account-disabled": (account_disabled, login),
    }


def callback_faults() -> dict[str, CredentialsFn]:
    """Ways to send a callback without the configured ``x-callback-token``."""

    def sent(value: str) -> CredentialsFn:
        return lambda ctx: Credentials({"x-callback-token": value}, secrets=(value,))

    def changed(edit: Callable[[str], str]) -> CredentialsFn:
        def make(ctx: Ctx) -> Credentials:
            value = edit(ctx.callback_token)
            return Credentials({"x-callback-token": value}, secrets=(value,))

        return make

    def non_utf8(ctx: Ctx) -> Credentials:
        return Credentials(raw_header=b"x-callback-token: " + ctx.callback_token.encode() + b"\xff")

    def authorization_instead(ctx: Ctx) -> Credentials:
        return basic(ADMIN, PASSWORDS[ADMIN])

    def bearer_token_instead(ctx: Ctx) -> Credentials:
        token = ctx.token(ADMIN)
        return Credentials({"x-callback-token": token}, secrets=(token,))

    return {
        "no-token": lambda ctx: Credentials(),
        "empty-token": sent(""),
        "wrong-token": sent("not-the-callback-token"),
        "case-changed": changed(str.upper),
        "truncated": changed(lambda token: token[:-1]),
        "extended": changed(lambda token: token + "0"),
        "non-utf8-bytes": non_utf8,
        "huge-token": changed(lambda token: token + "A" * 7500),
        "authorization-instead": authorization_instead,
        "bearer-token-instead": bearer_token_instead,
    }


def as_account(username: str) -> CredentialsFn:
    """A valid Bearer token of ``username``."""
    return lambda ctx: bearer(ctx.token(username))


def as_basic(username: str) -> CredentialsFn:
    """Valid Basic credentials of ``username``."""
    return lambda ctx: basic(username, PASSWORDS[username])


def no_header(*secrets: str) -> CredentialsFn:
    """No credentials header; ``secrets`` travel in the body or the query."""
    return lambda ctx: Credentials(secrets=secrets)


def with_query(request: EndpointFn, **query: str) -> EndpointFn:
    def make(ctx: Ctx) -> Request:
        method, path, params, body = request(ctx)
        return method, path, {**params, **query}, body

    return make


def build_cells() -> list[ParameterSet]:
    cells: list[ParameterSet] = []

    def add(name: str, cell: Cell, *marks: pytest.MarkDecorator) -> None:
        cells.append(pytest.param(cell, id=name, marks=marks))

    # Bearer endpoints: VICTIM's own requests, with no valid token.
    for endpoint, request in BEARER_ENDPOINTS.items():
        for fault, (credentials, warning) in bearer_faults(VICTIM).items():
            add(f"{endpoint}.{fault}", Cell(request, credentials, 401, AUTH_ERROR, warning=warning))

    # Bearer endpoints: a valid token of someone who may not see VICTIM's invoice.
    missing_detail = with_query(detail_request, invoice=MISSING_INVOICE)
    missing_by_waybill = with_query(waybill_request, waybill_number=MISSING_WAYBILL)
    missing_as_of = with_query(as_of_request, invoice=MISSING_INVOICE)
    missing_history = with_query(history_request, invoice=MISSING_INVOICE)
    unseen: list[tuple[str, EndpointFn, EndpointFn, str]] = [
        ("detail.another-buyer", detail_request, missing_detail, INTRUDER),
        ("detail-by-waybill.another-buyer", waybill_request, missing_by_waybill, INTRUDER),
        ("detail-as-of.another-buyer", as_of_request, missing_as_of, INTRUDER),
        ("history.another-buyer", history_request, missing_history, INTRUDER),
        ("detail.another-service", detail_request, missing_detail, DELIVERY),
        ("detail-by-waybill.another-service", waybill_request, missing_by_waybill, MARKET),
        ("detail-as-of.another-service", as_of_request, missing_as_of, DELIVERY),
        ("history.another-service", history_request, missing_history, DELIVERY),
    ]
    for name, request, twin, viewer in unseen:
        cell = Cell(request, as_account(viewer), 400, NOT_FOUND, caller=viewer, twin=twin)
        add(name, cell)
    # /balance has no way to name another user: asking anyway is a 400 that names no one.
    add(
        "balance.another-buyer",
        Cell(
            with_query(balance_request, username=VICTIM),
            as_account(INTRUDER),
            400,
            VALIDATION,
            caller=INTRUDER,
            twin=with_query(balance_request, username=NOBODY),
            logged_as_refusal=False,
        ),
    )
    for account in (MARKET, ADMIN):
        role = ACCOUNTS[account][0]
        cell = Cell(checkout_request, as_account(account), 403, FORBIDDEN, caller=account)
        add(f"checkout.{role}-account", cell)

    # Basic endpoints: no valid credentials of the account they are for.
    for endpoint, (request, owner) in BASIC_ENDPOINTS.items():
        faults = basic_faults(owner)
        for fault, (credentials, warning) in faults.items():
            cell = Cell(request, credentials, 401, AUTH_ERROR, warning=warning)
            if fault == "unknown-user":  # answered exactly as a wrong password
                cell = replace(cell, twin_credentials=faults["wrong-password"][0])
            add(f"{endpoint}.{fault}", cell)

    # Basic endpoints: valid credentials of an account that may not do this.
    platform_endpoints = (
        ("cancel", cancel_request),
        ("done", done_request),
        ("batch", batch_request),
    )
    for endpoint, request in platform_endpoints:

        def on(platform: str, request: Callable[..., Request] = request) -> EndpointFn:
            return lambda ctx: request(ctx, platform)

        platform_cases: list[tuple[str, EndpointFn, str]] = [
            ("buyer-account", request, VICTIM),
            ("admin-account", request, ADMIN),
            ("another-service", on("ONDELIVERY"), DELIVERY),
            ("body-platform-mismatch", on("ONDELIVERY"), MARKET),
            ("claims-another-platform", request, DELIVERY),
        ]
        for fault, platform_request, account in platform_cases:
            if endpoint == "batch" and fault == "another-service":
                continue  # another service's invoice fails alone, as an item (test_done_batch)
            cell = Cell(platform_request, as_basic(account), 403, FORBIDDEN, caller=account)
            add(f"{endpoint}.{fault}", cell)

    # mark-paid: the invoice's platform or an admin may; the invoice is ONDELIVERY's.
    def mark_paid_on(platform: str) -> EndpointFn:
        return lambda ctx: mark_paid_request(ctx, platform)

    def mark_paid_missing(ctx: Ctx) -> Request:
        """Another service's invoice that does not exist: answered as one that does."""
        method, path, query, body = mark_paid_request(ctx, "ONMARKET")
        return method, path, query, {**body, "invoice_id": "OD0000000000000"}

    mark_paid_cases: list[tuple[str, EndpointFn, str, EndpointFn | None]] = [
        ("buyer-account", mark_paid_request, VICTIM, None),
        ("another-service", mark_paid_on("ONMARKET"), MARKET, mark_paid_missing),
        ("body-platform-mismatch", mark_paid_on("ONMARKET"), DELIVERY, None),
        ("claims-another-platform", mark_paid_request, MARKET, None),
        ("admin-naming-another-service", mark_paid_on("ONMARKET"), ADMIN, None),
    ]
    for fault, request, account, missing in mark_paid_cases:
        cell = Cell(request, as_basic(account), 403, FORBIDDEN, caller=account, twin=missing)
        add(f"mark-paid.{fault}", cell)
    topup_cases: list[tuple[str, EndpointFn, str]] = [
        ("buyer-tops-up-itself", lambda ctx: topup_request(ctx, INTRUDER), INTRUDER),
        ("buyer-tops-up-another", topup_request, INTRUDER),
        ("victim-tops-up-itself", topup_request, VICTIM),
        ("platform-account", topup_request, MARKET),
    ]
    for fault, topup, account in topup_cases:
        cell = Cell(topup, as_basic(account), 403, FORBIDDEN, caller=account)
        add(f"topup.{fault}", cell)
    # The operator page: an admin's only.
    for fault, account in (("buyer-account", VICTIM), ("platform-account", MARKET)):
        cell = Cell(admin_page_request, as_basic(account), 403, FORBIDDEN, caller=account)
        add(f"admin-page.{fault}", cell)

    # Webhooks: platform accounts (and admins, to read); buyers never; only platforms create.
    webhook_cases: list[tuple[str, EndpointFn, str]] = [
        ("webhook-endpoints.buyer-account", webhook_endpoints_request, VICTIM),
        ("webhook-messages.buyer-account", webhook_messages_request, VICTIM),
        ("webhook-create.buyer-account", webhook_create_request, VICTIM),
        ("webhook-create.admin-account", webhook_create_request, ADMIN),
    ]
    for name, request, account in webhook_cases:
        add(name, Cell(request, as_basic(account), 403, FORBIDDEN, caller=account))
    for fault, (credentials, warning) in basic_faults(MARKET).items():
        cell = Cell(webhook_create_request, credentials, 401, AUTH_ERROR, warning=warning)
        if fault == "unknown-user":
            cell = replace(cell, twin_credentials=basic_faults(MARKET)["wrong-password"][0])
        add(f"webhook-create.{fault}", cell)

    # POST /auth: wrong logins, all alike.
    logins: list[tuple[str, str, str]] = [
        ("wrong-password", VICTIM, WRONG_PASSWORD),
        ("another-accounts-password", VICTIM, PASSWORDS[INTRUDER]),
        ("password-with-a-trailing-space", VICTIM, PASSWORDS[VICTIM] + " "),
        ("username-case", VICTIM.upper(), PASSWORDS[VICTIM]),
        ("account-disabled", GONE, PASSWORDS[GONE]),
    ]
    for fault, username, password in logins:
        cell = Cell(
            login_request(username, password),
            no_header(password),
            401,
            AUTH_ERROR,
            warning="login refused",
        )
        add(f"auth.{fault}", cell)
    add(
        "auth.unknown-user",
        Cell(
            login_request(NOBODY, PASSWORDS[VICTIM]),
            no_header(PASSWORDS[VICTIM]),
            401,
            AUTH_ERROR,
            warning="login refused",
            # An unknown user answers exactly as a known one with a wrong password.
            twin=login_request(VICTIM, WRONG_PASSWORD),
            twin_credentials=no_header(WRONG_PASSWORD),
        ),
    )

    # The gateway's callbacks: no valid x-callback-token.
    for endpoint, request in CALLBACK_ENDPOINTS.items():
        for fault, credentials in callback_faults().items():
            cell = Cell(request, credentials, 401, AUTH_ERROR, warning="callback refused")
            add(f"{endpoint}.{fault}", cell)

        def token_in_query(ctx: Ctx, request: EndpointFn = request) -> Request:
            return with_query(request, **{"x-callback-token": ctx.callback_token})(ctx)

        cell = Cell(
            token_in_query,
            no_header(),
            401,
            AUTH_ERROR,
            warning="callback refused",
        )
        add(f"{endpoint}.token-in-query", cell)
    return cells


CELLS = build_cells()


# -- checks --------------------------------------------------------------------------------------


def forbidden_strings(secrets: tuple[str, ...], ctx: Ctx) -> list[str]:
    """Every secret, and the start of each long one (a log or an answer may cut it short)."""
    found = [ctx.secret.decode(), ctx.callback_token, *PASSWORDS.values(), *secrets]
    strings = [s for s in found if len(s) >= 8]
    return strings + [s[:40] for s in strings if len(s) > 40]


def captured_texts(events: list[EventDict], records: list[logging.LogRecord]) -> list[str]:
    """Every structlog event, and every stdlib record that would reach stderr (WARNING and up)."""
    texts = [repr(event) for event in events]
    for record in records:
        if record.levelno >= logging.WARNING:
            formatted = logging.Formatter().format(record)
            texts.append(f"{record.name} {formatted} {record.args!r}")
    return texts


def same_answer(first: Answer, second: Answer) -> None:
    """Identical but for the request id (and the date)."""

    def comparable(answer: Answer) -> tuple[int, str, dict[str, str]]:
        headers = {k: v for k, v in answer.headers.items() if k not in ("x-request-id", "date")}
        return answer.status, answer.text, headers

    assert comparable(first) == comparable(second)


@pytest.fixture
def ctx(api: Api, world: World) -> Ctx:
    return Ctx(world, api.config.token_secret.encode(), api.config.callback_token, api.clock())


async def snapshot(api: Api) -> tuple[int, dict[str, int]]:
    """What a refusal must leave as it was: the log's head and every balance."""
    return await api.client.app[STORE].head_position(), await api.accounts()


def refusal_warnings(events: list[EventDict]) -> list[EventDict]:
    return [
        event
        for event in events
        if event.get("log_level") == "warning" and isinstance(event.get("reason"), str)
    ]


def capture() -> AbstractContextManager[list[EventDict]]:
    return structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.format_exc_info]
    )


@pytest.mark.parametrize("cell", CELLS)
async def test_a_request_without_the_right_is_refused_and_changes_and_leaks_nothing(
    api: Api, ctx: Ctx, caplog: pytest.LogCaptureFixture, cell: Cell
) -> None:
    """The documented refusal; no event, no money moved; nothing of anyone else in the answer;
    the refusal logged with its reason, and no secret in any log line."""
    attempt = cell.attempt(ctx)
    twin_attempt = cell.attempt(ctx, twin=True) if cell.has_twin else None
    before = await snapshot(api)
    api.clock.advance(attempt.credentials.advance)
    with capture() as events:
        answer = await send(api.client, attempt)
        twin = await send(api.client, twin_attempt) if twin_attempt else None
    after = await snapshot(api)

    assert answer.status == cell.status, answer.text
    body = answer.json()
    assert {k: body.get(k) for k in ("message", "code")} == cell.body, body
    # Only validation errors and the role refusals' explanation add "errors" to the body.
    assert set(body) <= {"message", "code", "errors"}, body
    assert answer.headers.get("x-request-id"), answer.headers
    assert after == before, "a refused request wrote something"
    for private in ctx.world.private():
        assert private not in answer.text, f"{private!r} in the answer"
    if twin is not None:
        same_answer(answer, twin)

    request_id = answer.headers["x-request-id"]
    own = [event for event in events if event.get("request_id") == request_id]
    lines = [event for event in own if event.get("event") == "request"]
    assert len(lines) == 1, own
    assert lines[0]["status"] == cell.status
    assert lines[0]["path"] == attempt.path
    assert lines[0]["user"] == cell.caller, lines[0]

    sent = attempt.credentials.secrets + (twin_attempt.credentials.secrets if twin_attempt else ())
    secrets = forbidden_strings(sent, ctx)
    for text in captured_texts(events, caplog.records):
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:12]}…) in the log: {text[:300]}"
    for secret in secrets:
        assert secret not in answer.text, f"a secret ({secret[:12]}…) in the answer"

    warnings = refusal_warnings(own)
    if cell.warning is not None:
        warnings = [event for event in warnings if event["event"] == cell.warning]
    if cell.logged_as_refusal and not warnings:
        raise MissingRefusalLog(f"no warning naming the reason: {own}")


CONTROLS: list[tuple[str, EndpointFn, Callable[[Ctx], Credentials]]] = [
    *((name, request, as_account(VICTIM)) for name, request in BEARER_ENDPOINTS.items()),
    *((name, request, as_basic(owner)) for name, (request, owner) in BASIC_ENDPOINTS.items()),
    ("mark-paid-by-admin", mark_paid_request, as_basic(ADMIN)),
    *(
        (name, request, lambda ctx: Credentials({"x-callback-token": ctx.callback_token}))
        for name, request in CALLBACK_ENDPOINTS.items()
    ),
    ("auth", login_request(VICTIM, PASSWORDS[VICTIM]), lambda ctx: Credentials()),
]


@pytest.mark.parametrize(
    ("request_of", "credentials"),
    [pytest.param(request, credentials, id=name) for name, request, credentials in CONTROLS],
)
async def test_the_same_requests_pass_with_the_right_credentials(
    api: Api, ctx: Ctx, request_of: EndpointFn, credentials: CredentialsFn
) -> None:
    """The matrix's requests, made by the account they are for, are answered 200: the refusals
    are about who asks, not about the request."""
    method, path, query, body = request_of(ctx)
    answer = await send(api.client, Attempt(method, path, query, body, credentials(ctx)))
    assert answer.status == 200, answer.text
    if path == "/balance":  # the data the refusals must not show is really there
        assert answer.json()["balance"] == VICTIM_BALANCE


def oversized(ctx: Ctx) -> dict[str, tuple[EndpointFn, str, str]]:
    """endpoint -> (request, header name, header value) with a value over 8190 bytes."""
    market_basic = b64(f"{MARKET}:{PASSWORDS[MARKET]}".encode() + b"x" * 6200)
    return {
        "balance-bearer": (
            balance_request,
            "Authorization",
            f"Bearer {ctx.token(VICTIM)}" + "A" * 8200,
        ),
        "done-basic": (done_request, "Authorization", f"Basic {market_basic}"),
        "invoice-callback-token": (
            invoice_callback_request,
            "x-callback-token",
            ctx.callback_token + "A" * 8200,
        ),
    }


OVERSIZED_ANSWER = (
    "a header over aiohttp's 8190-byte field limit is refused by aiohttp's parser before the app"
    " runs: its answer is 400 text/plain 'Got more than 8190 bytes when reading: b'<the first"
    " 100 bytes of the value>...'', with no X-Request-ID and no request line; it goes back only"
    " to the client that sent those bytes (aiohttp offers no hook for that answer)"
)


@pytest.mark.parametrize("kind", ["balance-bearer", "done-basic", "invoice-callback-token"])
async def test_an_oversized_credential_header_is_refused_and_its_credential_never_logged(
    api: Api, ctx: Ctx, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Over the server's header limit: a 4xx that writes nothing; the parser's refusal is
    logged as a warning naming the kind of error, without the bytes it quoted."""
    request, header, value = oversized(ctx)[kind]
    method, path, query, body = request(ctx)
    credential = value.partition(" ")[2] if header == "Authorization" else value
    secrets = forbidden_strings((credential,), ctx)
    before = await snapshot(api)
    with capture() as events:
        answer = await send(
            api.client, Attempt(method, path, query, body, Credentials({header: value}))
        )

    assert 400 <= answer.status < 500, answer.text
    assert await snapshot(api) == before
    logged = [t for t in captured_texts(events, caplog.records) for s in secrets if s in t]
    assert not logged, f"a credential in the log: {logged}"
    refusals = [r for r in caplog.records if "refused by the HTTP parser" in r.getMessage()]
    assert [r.levelname for r in refusals] == ["WARNING"], caplog.records
    assert "LineTooLong" in refusals[0].getMessage()


@pytest.mark.xfail(strict=True, raises=KnownDefect, reason=OVERSIZED_ANSWER)
@pytest.mark.parametrize("kind", ["balance-bearer", "done-basic", "invoice-callback-token"])
async def test_an_oversized_credential_header_gets_a_json_answer_that_does_not_echo_it(
    api: Api, ctx: Ctx, kind: str
) -> None:
    """The answer itself: JSON with a request id, the credential not sent back."""
    request, header, value = oversized(ctx)[kind]
    method, path, query, body = request(ctx)
    credential = value.partition(" ")[2] if header == "Authorization" else value
    answer = await send(
        api.client, Attempt(method, path, query, body, Credentials({header: value}))
    )

    assert 400 <= answer.status < 500, answer.text
    leaks = [s for s in forbidden_strings((credential,), ctx) if s in answer.text]
    if leaks:
        raise KnownDefect(f"credential echoed in the answer {leaks}")
    if not answer.headers.get("content-type", "").startswith("application/json"):
        raise KnownDefect(f"not a JSON answer: {answer.text[:200]}")
    if not answer.headers.get("x-request-id"):
        raise KnownDefect("no X-Request-ID")
