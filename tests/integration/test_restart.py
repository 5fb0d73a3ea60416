"""Stopping the service and starting it again on the same file loses nothing.

One app instance answers a series of requests and is closed mid-way through the story; a new
instance on the same settings must answer every acknowledged invoice the same, keep every
balance, keep the ledger balanced, pass ``verify``, and carry on with the work in flight
(refunds in process, invoices falling due, idempotency keys, marketplace reservations).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Config, load_config
from service.http.keys import STORE
from service.storage.sqlite.views_check import compare_views_with_replay
from tests.credentials import basic, bearer
from tests.sqlviews import views_query

START = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
BUYERS = ("usernew1", "seller1", "testing123")  # development accounts (sellers must exist)

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Coroutine[Any, Any, Client]]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settings(database: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "refund_delay_seconds": 0,
        "expiry_interval_seconds": 0.05,
        "log_level": "WARNING",
        **overrides,
    }
    return load_config(None, {}, database=str(database), **values)


@pytest.fixture
def start(
    aiohttp_client: Callable[..., Coroutine[Any, Any, Client]], clock: Clock
) -> Callable[[Config], Coroutine[Any, Any, Service]]:
    async def started(config: Config) -> Service:
        client = await aiohttp_client(create_app(config, clock=clock))
        return Service(client, config, clock)

    return started


class Service:
    """One running instance of the app, with the calls the story needs."""

    def __init__(self, client: Client, config: Config, clock: Clock) -> None:
        self.client, self.config, self.clock = client, config, clock

    def bearer(self, username: str) -> dict[str, str]:
        return bearer(self.config, self.clock, username)

    @staticmethod
    def basic(username: str) -> dict[str, str]:
        return basic(username)

    async def call(
        self, method: str, path: str, expect: int = 200, **options: Any
    ) -> dict[str, Any]:
        response = await self.client.request(method, path, **options)
        body: dict[str, Any] = await response.json()
        assert response.status == expect, (path, body)
        return body

    async def checkout(
        self,
        numbers: list[str],
        source: str = "XENDIT",
        expect: int = 200,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        lines: list[dict[str, Any]] = [
            {
                "amount": 10000 * (i + 1),
                "freight_charge": 5000,
                "insurance_amount": 100,
                "commission_onmarket": 1000,
                "seller_username": BUYERS[1 + i % 2],
                "invoice_onmarket": number,
            }
            for i, number in enumerate(numbers)
        ]
        total = sum(x["amount"] + x["freight_charge"] + x["insurance_amount"] for x in lines)
        body = {
            "total_amount": total,
            "service": "ONMARKET",
            "source": source,
            "transaction": lines,
        }
        return await self.call(
            "POST",
            "/payment-checkout",
            expect,
            json=body,
            headers={**self.bearer("usernew1"), **(headers or {})},
        )

    async def pay(self, reference: str) -> None:
        await self.call("POST", f"/sandbox/invoices/{reference}/pay", json={})

    async def platform(self, action: str, **body: Any) -> dict[str, Any]:
        return await self.call(
            "POST",
            f"/invoice/{action}",
            json={"platform": "ONMARKET", **body},
            headers=self.basic("onmarket"),
        )

    async def detail(self, invoice: str) -> dict[str, Any]:
        return await self.call(
            "GET", "/invoice/detail", params={"invoice": invoice}, headers=self.bearer("usernew1")
        )

    async def wait_for(self, invoice: str, status: str) -> dict[str, Any]:
        for _ in range(250):
            body = await self.detail(invoice)
            if body["status"] == status:
                return body
            await asyncio.sleep(0.02)
        raise AssertionError(f"{invoice} never became {status}: {body}")

    async def balances(self) -> dict[str, dict[str, Any]]:
        return {
            user: await self.call("GET", "/balance", headers=self.bearer(user)) for user in BUYERS
        }

    async def accounts(self) -> dict[str, int]:
        rows = await views_query(
            self.client.app[STORE], "SELECT account, balance FROM account_balances"
        )
        return {account: balance for account, balance in rows}

    async def close(self) -> None:
        await self.client.close()


async def assert_consistent(service: Service) -> None:
    """Ledger balanced, hash chain intact, views equal to a fresh replay of the log."""
    accounts = await service.accounts()
    assert sum(accounts.values()) == 0, accounts
    assert all(
        balance >= 0 for account, balance in accounts.items() if account.startswith("buyer:")
    )
    assert all(
        balance >= 0 for account, balance in accounts.items() if account.startswith("escrow:")
    )
    report = await service.client.app[STORE].verify()
    assert report.ok, report
    assert await compare_views_with_replay(Path(service.config.database)) == []


async def test_every_acknowledged_invoice_survives_a_restart(
    tmp_path: Path, start: Callable[[Config], Coroutine[Any, Any, Service]], clock: Clock
) -> None:
    """Invoices paid, pending, refunded and done answer the same after the app is reopened."""
    config = settings(tmp_path / "invoices.db")
    first = await start(config)
    await first.call(
        "POST",
        "/balance/topup",
        json={"username": "usernew1", "amount": 300000},
        headers=first.basic("admin"),
    )
    invoices: list[str] = []
    for n in range(3):  # paid
        created = await first.checkout([f"RS-PAID-{n}", f"RS-PAID-{n}b"])
        await first.pay(created["xendit_invoice"])
        invoices.append(created["invoice"])
        clock.advance(1)
    pending = [(await first.checkout([f"RS-PENDING-{n}"]))["invoice"] for n in range(2)]
    invoices += pending

    refunded = await first.checkout(["RS-REFUND"])
    await first.pay(refunded["xendit_invoice"])
    assert await first.platform(
        "cancel",
        invoice_id=refunded["invoice"],
        invoice_onmarket="RS-REFUND",
        buyer_username="usernew1",
    ) == {"message": "REFUND IN PROCESS"}
    await first.wait_for(refunded["invoice"], "REFUNDED")
    invoices.append(refunded["invoice"])

    done = await first.checkout(["RS-DONE"])
    await first.pay(done["xendit_invoice"])
    clock.advance(1)
    await first.platform("done", invoice_id=done["invoice"])
    invoices.append(done["invoice"])

    by_balance = await first.checkout(["RS-BALANCE"], source="BALANCE")
    invoices.append(by_balance["invoice"])

    canceled = await first.checkout(["RS-CANCEL"])
    await first.platform("cancel", invoice_id=canceled["invoice"])
    invoices.append(canceled["invoice"])

    before = {invoice: await first.detail(invoice) for invoice in invoices}
    assert [before[i]["status"] for i in invoices] == [
        "PAID",
        "PAID",
        "PAID",
        "PENDING",
        "PENDING",
        "REFUNDED",
        "COMPLETED",
        "PAID",
        "CANCELED",
    ]
    balances = await first.balances()
    accounts = await first.accounts()
    head = await first.client.app[STORE].head_position()
    await assert_consistent(first)
    await first.close()

    second = await start(config)
    assert await second.client.app[STORE].head_position() == head
    for invoice in invoices:
        assert await second.detail(invoice) == before[invoice], invoice
    assert await second.balances() == balances
    assert await second.accounts() == accounts
    await assert_consistent(second)

    # It carries on: a pending invoice is paid, a marketplace number still held is refused,
    # and the next invoice gets the next id.
    await second.pay(before[pending[0]]["xendit_invoice"])
    assert (await second.detail(pending[0]))["status"] == "PAID"
    refused = await second.checkout(["RS-PENDING-1"], expect=400)
    assert refused["code"] == "INVOICE_ONMARKET_IN_USE"
    fresh = await second.checkout(["RS-AFTER"])
    assert int((await second.detail(fresh["invoice"]))["id"]) == len(invoices) + 1
    await assert_consistent(second)
    await second.close()


async def test_a_refund_in_process_at_shutdown_completes_once_after_restart(
    tmp_path: Path, start: Callable[[Config], Coroutine[Any, Any, Service]], clock: Clock
) -> None:
    """A refund still REFUND_IN_PROCESS when the app stops is paid out by the next one, once."""
    database = tmp_path / "invoices.db"
    first = await start(settings(database, refund_delay_seconds=3600))
    created = await first.checkout(["RS-SLOW-1", "RS-SLOW-2"])
    await first.pay(created["xendit_invoice"])
    await first.platform(
        "cancel",
        invoice_id=created["invoice"],
        invoice_onmarket="RS-SLOW-1",
        buyer_username="usernew1",
    )
    await asyncio.sleep(0.1)  # the worker has seen the request and is waiting out the delay
    statuses = [t["status"] for t in (await first.detail(created["invoice"]))["transaction"]]
    assert statuses == ["REFUND_IN_PROCESS", "PAID"]
    await first.close()

    clock.advance(3600)
    second = await start(settings(database, refund_delay_seconds=3600))
    for _ in range(250):
        lines = (await second.detail(created["invoice"]))["transaction"]
        if lines[0]["status"] == "REFUNDED":
            break
        await asyncio.sleep(0.02)
    assert [t["status"] for t in lines] == ["REFUNDED", "PAID"]
    assert (await second.balances())["usernew1"]["balance"] == 10000 + 5000 + 100
    await second.close()

    # A third start finds nothing left to do: the refund is not paid twice.
    third = await start(settings(database, refund_delay_seconds=0))
    await asyncio.sleep(0.2)
    assert (await third.balances())["usernew1"]["balance"] == 10000 + 5000 + 100
    rows = await views_query(
        third.client.app[STORE], "SELECT COUNT(*) FROM events WHERE type = 'RefundCompleted'"
    )
    assert rows == [(1,)]
    await assert_consistent(third)


async def test_pending_invoices_fall_due_after_a_restart(
    tmp_path: Path, start: Callable[[Config], Coroutine[Any, Any, Service]], clock: Clock
) -> None:
    """An invoice left PENDING by the first instance is expired by the second one's task."""
    config = settings(tmp_path / "invoices.db")
    first = await start(config)
    created = await first.checkout(["RS-DUE"])
    await first.close()

    clock.advance(2 * 3600)
    second = await start(config)
    # The API shows it EXPIRED at once; the task records InvoiceExpired in the log soon after.
    assert (await second.detail(created["invoice"]))["status"] == "EXPIRED"
    store = second.client.app[STORE]
    for _ in range(250):
        rows = await views_query(
            store,
            "SELECT COUNT(*) FROM events WHERE type = 'InvoiceExpired' AND stream_id = ?",
            (f"invoice-{created['invoice']}",),
        )
        if rows == [(1,)]:
            break
        await asyncio.sleep(0.02)
    assert rows == [(1,)]
    rows = await views_query(
        store, "SELECT status FROM invoice_view WHERE invoice = ?", (created["invoice"],)
    )
    assert rows == [("EXPIRED",)]
    await assert_consistent(second)


async def test_an_idempotent_retry_after_a_restart_returns_the_first_answer(
    tmp_path: Path, start: Callable[[Config], Coroutine[Any, Any, Service]], clock: Clock
) -> None:
    """A client retrying a checkout across a restart gets the first answer, and one invoice."""
    config = settings(tmp_path / "invoices.db")
    key = {"Idempotency-Key": "restart-retry-1"}
    first = await start(config)
    answer = await first.checkout(["RS-IDEM"], headers=key)
    await first.close()

    second = await start(config)
    assert await second.checkout(["RS-IDEM"], headers=key) == answer
    rows = await views_query(second.client.app[STORE], "SELECT COUNT(*) FROM invoice_view")
    assert rows == [(1,)]
    other = await second.checkout(["RS-IDEM-OTHER"], headers=key, expect=409)
    assert other["code"] == "IDEMPOTENCY_KEY_REUSED"
