"""``status_history`` on ``GET /invoice/detail``: each status the invoice reached, when and by
whom, oldest first, live and ``as_of`` a past point.

Driven through the real app as the other audit tests are (``tests/e2e/test_history.py``, whose
helpers this module shares, and whose reason for a clock starting now applies here too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Config
from service.http import schemas
from tests.e2e.conftest import Api, AppFactory, FakeClock
from tests.e2e.test_history import (
    BUYER,
    TTL,
    assert_replay_ends_live,
    checkout,
    detail_as_of,
    history,
    pay,
    platform,
    wait_for_status,
)

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock, starting now (``as_of`` is compared with the store's commit times)."""
    return FakeClock(datetime.now(UTC))


async def detail(api: Api, invoice: str) -> dict[str, Any]:
    body = await detail_as_of(api, invoice)  # no point given: the live detail, schema-checked
    assert body == await api.detail(invoice)
    return body


def changes(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Each entry's (status, actor)."""
    return [(entry["status"], entry["actor"]) for entry in body["status_history"]]


async def test_a_new_invoice_has_one_pending_entry_by_its_buyer(api: Api) -> None:
    """Fresh: PENDING at its creation time, by the buyer."""
    created, _ = await checkout(api)
    body = await detail(api, created["invoice"])
    assert body["status_history"] == [
        {"status": "PENDING", "at": body["createdAt"], "actor": BUYER}
    ]


async def test_a_paid_invoice_adds_paid_by_the_gateway(api: Api) -> None:
    """Paid: PENDING by the buyer, then PAID by the gateway at the invoice's update time."""
    created, _ = await checkout(api)
    invoice = created["invoice"]
    await pay(api, invoice, 40200, "pay-sh-1")
    body = await detail(api, invoice)
    assert changes(body) == [("PENDING", BUYER), ("PAID", "gateway")]
    assert body["status_history"][1]["at"] == body["updatedAt"]
    # A repeated callback changes no status: no entry.
    await pay(api, invoice, 40200, "pay-sh-1")
    assert changes(await detail(api, invoice)) == [("PENDING", BUYER), ("PAID", "gateway")]


async def test_a_canceled_invoice_adds_canceled_by_the_platform(api: Api) -> None:
    created, _ = await checkout(api)
    invoice = created["invoice"]
    await platform(api, "cancel", invoice_id=invoice)
    body = await detail(api, invoice)
    assert changes(body) == [("PENDING", BUYER), ("CANCELED", "onmarket")]
    await assert_replay_ends_live(api, await history(api, invoice))


async def test_one_entry_per_invoice_status_not_per_event(api: Api) -> None:
    """Completing one store of two changes no invoice status; the last refund settles it, by
    the refund worker that records it."""
    created, _ = await checkout(api)
    invoice = created["invoice"]
    first, second = (line["invoice_onmarket"] for line in created["transaction"])
    await pay(api, invoice, 40200, "pay-sh-2")
    await platform(api, "done", invoice_id=invoice, invoice_onmarket=first)
    assert changes(await detail(api, invoice)) == [("PENDING", BUYER), ("PAID", "gateway")]
    await platform(api, "cancel", invoice_id=invoice, invoice_onmarket=second, buyer_username=BUYER)
    await wait_for_status(api, invoice, "COMPLETED")
    body = await detail(api, invoice)
    assert changes(body) == [
        ("PENDING", BUYER),
        ("PAID", "gateway"),
        ("COMPLETED", "system:refund-worker"),
    ]
    await assert_replay_ends_live(api, await history(api, invoice))


async def test_a_completed_invoice_adds_completed_by_the_platform(api: Api) -> None:
    created, _ = await checkout(api, stores=1)
    invoice = created["invoice"]
    await pay(api, invoice, 15100, "pay-sh-3")
    await platform(api, "done", invoice_id=invoice)
    body = await detail(api, invoice)
    assert changes(body) == [("PENDING", BUYER), ("PAID", "gateway"), ("COMPLETED", "onmarket")]
    assert [entry["at"] for entry in body["status_history"]] == sorted(
        entry["at"] for entry in body["status_history"]
    )


async def test_a_refunded_invoice_adds_refunded(api: Api) -> None:
    created, _ = await checkout(api, stores=1)
    invoice = created["invoice"]
    await pay(api, invoice, 15100, "pay-sh-4")
    (line,) = created["transaction"]
    await platform(
        api,
        "cancel",
        invoice_id=invoice,
        invoice_onmarket=line["invoice_onmarket"],
        buyer_username=BUYER,
    )
    await wait_for_status(api, invoice, "REFUNDED")
    assert changes(await detail(api, invoice)) == [
        ("PENDING", BUYER),
        ("PAID", "gateway"),
        ("REFUNDED", "system:refund-worker"),
    ]


async def test_an_expired_invoice_ends_with_expired_by_the_expiry_task(
    api: Api, clock: FakeClock
) -> None:
    """Expired by the task: EXPIRED at ``expired_at`` by ``system:expiry``."""
    created, _ = await checkout(api)
    invoice = created["invoice"]
    clock.advance(TTL + 1)
    await api.wait_until_expired_in_view(invoice)
    body = await detail(api, invoice)
    assert body["status_history"] == [
        {"status": "PENDING", "at": body["createdAt"], "actor": BUYER},
        {"status": "EXPIRED", "at": body["expired_at"], "actor": "system:expiry"},
    ]
    await assert_replay_ends_live(api, await history(api, invoice))


async def test_an_expiry_not_yet_recorded_shows_the_same_history(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Past its expiry with no InvoiceExpired yet, the detail says EXPIRED and its history ends
    with the very entry the expiry task will record: it never contradicts ``status``."""
    lazy = dataclasses.replace(config, expiry_interval_seconds=3600)  # the task waits an hour
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(lazy, clock=clock)
    )
    api = Api(client, lazy, clock)
    created, _ = await checkout(api)
    invoice = created["invoice"]
    clock.advance(TTL + 1)
    body = await detail(api, invoice)
    assert [event["type"] for event in (await history(api, invoice))["events"]] == [
        "InvoiceCreated"
    ]
    assert body["status"] == "EXPIRED"
    assert body["status_history"] == [
        {"status": "PENDING", "at": body["createdAt"], "actor": BUYER},
        {"status": "EXPIRED", "at": body["expired_at"], "actor": "system:expiry"},
    ]


async def test_as_of_a_middle_point_shows_the_history_up_to_it(api: Api) -> None:
    created, _ = await checkout(api, stores=1)
    invoice = created["invoice"]
    await pay(api, invoice, 15100, "pay-sh-5")
    await platform(api, "done", invoice_id=invoice)
    events = (await history(api, invoice))["events"]
    live = await detail(api, invoice)
    paid = await detail_as_of(api, invoice, as_of_position=events[1]["position"])
    assert paid["status"] == "PAID"
    assert paid["status_history"] == live["status_history"][:2]
    created_only = await detail_as_of(api, invoice, as_of_position=events[0]["position"])
    assert created_only["status_history"] == live["status_history"][:1]


@pytest.mark.backends("sqlite")  # a row as an SQLite file made before migration 2 holds it
async def test_a_view_row_from_before_the_history_reads_it_from_the_log(api: Api) -> None:
    """A row without its history (as before migration 2, until the next open fills it) still
    answers it, read from the invoice's events."""
    created, _ = await checkout(api, stores=1)
    invoice = created["invoice"]
    await pay(api, invoice, 15100, "pay-sh-6")
    live = await detail(api, invoice)
    with contextlib.closing(sqlite3.connect(api.config.database, timeout=5)) as conn, conn:
        conn.execute("UPDATE invoice_view SET status_history = NULL WHERE invoice = ?", (invoice,))
    assert await detail(api, invoice) == live
    await platform(api, "done", invoice_id=invoice)  # the row stays NULL until the next open
    assert changes(await detail(api, invoice)) == [
        ("PENDING", BUYER),
        ("PAID", "gateway"),
        ("COMPLETED", "onmarket"),
    ]


def test_the_detail_schema_documents_status_history() -> None:
    assert "status_history" in schemas.DetailAnswer().fields
