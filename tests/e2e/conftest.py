"""End-to-end fixtures: the real app on a real SQLite file, driven over HTTP.

Each test gets its own database, copied from a template made once per session that already
holds the development accounts (hashing their passwords with scrypt costs about 50 ms each).
Tokens are issued with the app's own secret, so only the tests of ``/auth`` pay for a login.
The clock is a ``FakeClock`` the test moves by hand; the app, tokens and decisions all read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from eventstore.sqlite import SQLiteEventStore
from service.app import DEV_ACCOUNTS, create_app, ensure_dev_accounts, make_gateway, make_service
from service.application import Context, RegisterUser
from service.config import Config, load_config
from service.gateway.xendit import XenditGateway
from service.http.keys import STORE
from service.security import hash_password
from service.views.sqlite import all_projectors
from tests.credentials import basic, bearer
from tests.fakes.xendit import SECRET_KEY, FakeXendit
from tests.sqlviews import sql_store

START = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
# The sellers of checkout_body's lines, in turn: seller1 and the seed's two are development
# accounts, the others are made in the template (a checkout's sellers must be accounts).
EXTRA_SELLERS = ("seller2", "seller3")
SELLERS = ("seller1", *EXTRA_SELLERS, "testing123", "testing12345")
ROLES = {username: (role, platform) for username, role, platform in DEV_ACCOUNTS}


class FakeClock:
    """The app's clock, moved by the test."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "invoices.db"
    config = load_config(None, {}, database=str(path))

    async def create() -> None:
        async with await SQLiteEventStore.open(path, projectors=all_projectors()) as store:
            service = make_service(store, make_gateway(config), config)
            await ensure_dev_accounts(service)
            for seller in EXTRA_SELLERS:  # a seller must be an account (password = username)
                command = RegisterUser(seller, "buyer", None, hash_password(seller))
                await service.handle(command, Context("test"))

    asyncio.run(create())
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def e2e_config(database: Path, **overrides: Any) -> Config:
    """The end-to-end tests' settings on ``database``: refunds paid out at once, an expiry task
    that runs every 50 ms, JSON logs; ``overrides`` change any of them."""
    settings: dict[str, Any] = {
        "refund_delay_seconds": 0,
        "expiry_interval_seconds": 0.05,
        "log_format": "json",
        **overrides,
    }
    return load_config(None, {}, database=str(database), **settings)


def copy_of(template_db: Path, folder: Path) -> Path:
    """A database of the test's own, copied from the session's template."""
    database = folder / "invoices.db"
    shutil.copy(template_db, database)
    return database


@pytest.fixture
def config(tmp_path: Path, template_db: Path) -> Config:
    return e2e_config(copy_of(template_db, tmp_path))


AppFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def client(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(config, clock=clock))


@dataclass
class Api:
    """Small helpers over the test client, so tests read as the API's story."""

    client: TestClient[web.Request, web.Application]
    config: Config
    clock: FakeClock

    def bearer(self, username: str) -> dict[str, str]:
        return bearer(self.config, self.clock, username, *ROLES.get(username, ("buyer", None)))

    @staticmethod
    def basic(username: str, password: str | None = None) -> dict[str, str]:
        return basic(username, password)

    async def checkout(
        self,
        buyer: str = "usernew1",
        expect: int = 200,
        headers: dict[str, str] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/payment-checkout",
            json=checkout_body(**overrides),
            headers={**self.bearer(buyer), **(headers or {})},
        )
        body: dict[str, Any] = await response.json()
        assert response.status == expect, body
        return body

    async def pay(self, reference: str, expect: int = 200, **options: Any) -> dict[str, Any]:
        response = await self.client.post(f"/sandbox/invoices/{reference}/pay", json=options)
        body: dict[str, Any] = await response.json()
        assert response.status == expect, body
        return body

    async def detail(
        self, invoice: str, viewer: str = "usernew1", expect: int = 200
    ) -> dict[str, Any]:
        response = await self.client.get(
            "/invoice/detail", params={"invoice": invoice}, headers=self.bearer(viewer)
        )
        body: dict[str, Any] = await response.json()
        assert response.status == expect, body
        return body

    async def platform(
        self, action: str, expect: int = 200, account: str = "onmarket", **body: Any
    ) -> dict[str, Any]:
        response = await self.client.post(
            f"/invoice/{action}", json={"platform": "ONMARKET", **body}, headers=self.basic(account)
        )
        answer: dict[str, Any] = await response.json()
        assert response.status == expect, answer
        return answer

    async def balance(self, username: str = "usernew1") -> dict[str, Any]:
        response = await self.client.get("/balance", headers=self.bearer(username))
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body

    async def top_up(self, username: str, amount: int) -> dict[str, Any]:
        response = await self.client.post(
            "/balance/topup",
            json={"username": username, "amount": amount},
            headers=self.basic("admin"),
        )
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body

    async def accounts(self) -> dict[str, int]:
        """Every account of the whole ledger that holds money (zero balances left out)."""
        rows = await sql_store(self.client.app[STORE]).query(
            "SELECT account, balance FROM account_balances"
        )
        return {account: balance for account, balance in rows if balance}

    async def assert_balanced(self) -> None:
        assert await self.ledger_sum() == 0
        assert sum((await self.accounts()).values()) == 0

    async def wait_until_expired_in_view(self, invoice: str, within: float = 1.0) -> None:
        """Until the expiry task has written the invoice's expiry (at most ``within`` s)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            rows = await sql_store(self.client.app[STORE]).query(
                "SELECT status FROM invoice_view WHERE invoice = ?", (invoice,)
            )
            if rows[0][0] == "EXPIRED":
                return
            assert asyncio.get_running_loop().time() < deadline, rows
            await asyncio.sleep(0.01)

    async def ledger_sum(self) -> int:
        rows = await sql_store(self.client.app[STORE]).query(
            "SELECT COALESCE(SUM(balance), 0) FROM account_balances"
        )
        return int(rows[0][0])


@pytest.fixture
def api(client: TestClient[web.Request, web.Application], config: Config, clock: FakeClock) -> Api:
    return Api(client, config, clock)


_ONMARKET_SEQUENCE = iter(range(1, 10**9))


def checkout_body(
    *,
    service: str = "ONMARKET",
    source: str = "XENDIT",
    stores: int = 2,
    invoice_onmarket: list[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid checkout (the seed's example, corrected), with fresh marketplace invoice numbers."""
    numbers = invoice_onmarket or [f"INV/ONM/T-{next(_ONMARKET_SEQUENCE)}" for _ in range(stores)]
    lines: list[dict[str, Any]] = [
        {
            "amount": 10000 * (i + 1),
            "freight_charge": 5000,
            "insurance_amount": 100,
            "commission_onmarket": 1000,
            "seller_username": SELLERS[i % len(SELLERS)],
            "invoice_onmarket": number,
        }
        for i, number in enumerate(numbers)
    ]
    total = sum(
        line["amount"] + line["freight_charge"] + line["insurance_amount"] for line in lines
    )
    return {
        "total_amount": total,
        "service": service,
        "source": source,
        "transaction": lines,
        **overrides,
    }


def statuses(detail: dict[str, Any]) -> tuple[str, list[str]]:
    """An invoice's status and its transactions' statuses, from a detail answer."""
    return detail["status"], [t["status"] for t in detail["transaction"]]


# -- the Xendit adapter against a fake Xendit, for the tests of that adapter's checkouts -------

XENDIT_ATTEMPTS = 3  # the adapter's tries of a failing request


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeXendit]:
    """A local fake of Xendit's API, on the test's clock (modules using it give ``clock`` a
    wall-clock start: the fake's expiry times are compared with real ones)."""
    async with FakeXendit(clock=clock) as server:
        yield server


@pytest.fixture
async def xapi(
    fake: FakeXendit, aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> Api:
    """The app with Xendit's adapter on the fake (a short backoff keeps failures quick)."""
    settings = fake.service_config(config)
    gateway = XenditGateway(
        SECRET_KEY, base_url=fake.url, timeout=2.0, attempts=XENDIT_ATTEMPTS, backoff=0.01
    )
    client = await aiohttp_client(create_app(settings, clock=clock, gateway=gateway))
    return Api(client, settings, clock)


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value


async def raw_request(api: Api, data: bytes) -> RawAnswer | None:
    """``data`` sent as is on a socket of its own; the answer, or None if the server closed the
    connection without one. Reads the answer by its Content-Length, not until the server
    closes: after refusing a body it did not read, the server drains it for a while first."""
    url = api.client.make_url("/")
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await writer.drain()
        async with asyncio.timeout(5):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return RawAnswer(int(status_line.split()[1]), headers, body, time.perf_counter() - started)
