"""End-to-end fixtures: the real app on a real database, driven over HTTP.

Each test gets its own database, copied from a template made once per session that already
holds the development accounts (hashing their passwords with scrypt costs about 50 ms each).
Tokens are issued with the app's own secret, so only the tests of ``/auth`` pay for a login.
The clock is a ``FakeClock`` the test moves by hand; the app, tokens and decisions all read it.

Which backends a module runs on is said by the module, and only there:
``pytestmark = pytest.mark.backends("sqlite", "postgresql")`` runs each of its tests once per
backend (ids ``[sqlite]`` and ``[postgresql]``); a module without the mark runs on SQLite only.
The modules whose outcome depends on the store are marked (flows, races, the stateful model,
idempotency, callbacks, history, expiry, reconciliation, caches); the ones about HTTP itself
(OpenAPI, errors, strict input, abuse, the auth matrix, the sandbox's page, answer schemas,
smoke) are not, to keep the suite fast. A test that needs SQLite's own file inside a marked
module says so with ``@pytest.mark.backends("sqlite")``.

On SQLite the test's database is a copy of the template file. On PostgreSQL the template is a
database made once per session (``e2e_template_<hex>``) and each test's database is
``CREATE DATABASE e2e_<hex> TEMPLATE …`` (a file copy on the server), dropped ``WITH (FORCE)``
after the test. The server is ``INVOICE_TEST_POSTGRES`` (by default the local ``postgres``
superuser); an unreachable one fails the tests, they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from eventstore import open_store
from service.app import DEV_ACCOUNTS, create_app, ensure_dev_accounts, make_gateway, make_service
from service.application import Context, RegisterUser
from service.config import Config, load_config
from service.gateway.xendit import XenditGateway
from service.http.keys import STORE
from service.security import hash_password
from service.views.backends import projectors_for
from tests.contract.backends.postgresql import admin_statement, database_url, drop_database, run
from tests.credentials import basic, bearer
from tests.fakes.xendit import SECRET_KEY, FakeXendit
from tests.sqlviews import views_query

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


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test of a module marked ``backends(...)`` runs once on each backend the mark names."""
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is None or "e2e_backend" not in metafunc.fixturenames:
        return
    unknown = set(marker.args) - set(BACKENDS)
    assert marker.args, "backends(): name at least one backend"
    assert not unknown, f"backends{marker.args}: not among {BACKENDS}"
    metafunc.parametrize("e2e_backend", marker.args)


@pytest.fixture
def e2e_backend() -> str:
    """The backend of the test's database: SQLite unless its module is marked ``backends``."""
    return "sqlite"


async def register_accounts(location: str) -> None:
    """The development accounts and the extra sellers, in the store at ``location``."""
    config = load_config(None, {}, database=location)
    async with await open_store(location, projectors=projectors_for(location)) as store:
        service = make_service(store, make_gateway(config), config)
        await ensure_dev_accounts(service)
        for seller in EXTRA_SELLERS:  # a seller must be an account (password = username)
            command = RegisterUser(seller, "buyer", None, hash_password(seller))
            await service.handle(command, Context("test"))


Fill = Callable[[str], Coroutine[Any, Any, None]]


def sqlite_template(tmp_path_factory: pytest.TempPathFactory, folder: str, fill: Fill) -> Path:
    """An SQLite file that ``fill(location)`` filled, to copy a test's database from."""
    path = tmp_path_factory.mktemp(folder) / "invoices.db"
    asyncio.run(fill(str(path)))
    return path


@contextlib.contextmanager
def postgresql_template(prefix: str, fill: Fill) -> Iterator[str]:
    """A PostgreSQL database that ``fill(url)`` filled, to create a test's database from: its
    name. Closed once filled (a template must have nobody connected); dropped on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex}"
    admin_statement(f"CREATE DATABASE {name}")
    try:
        run(lambda: fill(database_url(name)))
        yield name
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sqlite_template(tmp_path_factory, "template", register_accounts)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """The name of the session's PostgreSQL template database."""
    with postgresql_template("e2e_template", register_accounts) as name:
        yield name


def database_from_template(template: str) -> str:
    """A new PostgreSQL database copied from ``template``: its name."""
    name = f"e2e_{uuid.uuid4().hex}"
    admin_statement(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


@pytest.fixture
def database(e2e_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's own database (a file's path or a ``postgresql://`` URL), from a template."""
    if e2e_backend == "sqlite":
        yield str(copy_of(request.getfixturevalue("template_db"), tmp_path))
        return
    name = database_from_template(request.getfixturevalue("pg_template"))
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def e2e_config(database: str | Path, **overrides: Any) -> Config:
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
def config(database: str) -> Config:
    return e2e_config(database)


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
        rows = await views_query(
            self.client.app[STORE], "SELECT account, balance FROM account_balances"
        )
        return {account: balance for account, balance in rows if balance}

    async def assert_balanced(self) -> None:
        assert await self.ledger_sum() == 0
        assert sum((await self.accounts()).values()) == 0

    async def wait_until_expired_in_view(self, invoice: str, within: float = 1.0) -> None:
        """Until the expiry task has written the invoice's expiry (at most ``within`` s)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            rows = await views_query(
                self.client.app[STORE],
                "SELECT status FROM invoice_view WHERE invoice = ?",
                (invoice,),
            )
            if rows[0][0] == "EXPIRED":
                return
            assert asyncio.get_running_loop().time() < deadline, rows
            await asyncio.sleep(0.01)

    async def ledger_sum(self) -> int:
        rows = await views_query(
            self.client.app[STORE], "SELECT COALESCE(SUM(balance), 0) FROM account_balances"
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
