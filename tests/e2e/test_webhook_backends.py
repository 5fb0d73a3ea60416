"""The core webhook deliveries on both backends (a fresh PostgreSQL database per test), and
with two apps on one database, as two nodes or processes: each message delivered once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Config
from service.http.keys import WEBHOOK_STATS
from tests.e2e.conftest import Api, AppFactory, FakeClock, e2e_config
from tests.e2e.test_webhooks import messages, register, until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def config(database: str) -> Config:
    return e2e_config(
        database,
        webhook_poll_interval_seconds=0.02,
        webhook_timeout_seconds=1.0,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


async def test_a_paid_checkout_is_delivered_signed_and_logged(api: Api, receiver: Receiver) -> None:
    endpoint = await register(api, receiver.url)
    created = await api.checkout(stores=1)
    await api.pay(created["xendit_invoice"])

    deliveries = await receiver.wait_for(2)

    bodies = [d.verified_by(endpoint["secret"]) for d in deliveries]
    assert [b["type"] for b in bodies] == ["invoice.created", "invoice.paid"]

    async def logged() -> list[dict[str, Any]] | None:
        found = await messages(api, status="delivered", invoice=created["invoice"])
        return found if len(found) == 2 else None

    found = await until(logged)
    assert {m["id"] for m in found} == {d.id for d in deliveries}
    assert all(m["attempts"][0]["status"] == 200 for m in found)


async def test_a_failed_message_is_recovered_with_its_id(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.status = 410  # fails the message and disables the endpoint
    endpoint = await register(api, receiver.url, event_types=["invoice.created"])
    await api.checkout(stores=1)
    first = (await receiver.wait_for(1))[0]

    async def failed() -> list[dict[str, Any]] | None:
        found = await messages(api, status="failed")
        return found or None

    await until(failed)
    receiver.status = 200
    path = f"/webhooks/endpoints/{endpoint['id']}"
    response = await api.client.patch(path, json={"disabled": False}, headers=api.basic("onmarket"))
    assert response.status == 200
    response = await api.client.post(
        f"{path}/recover", json={"since": "2026-01-01T00:00:00Z"}, headers=api.basic("onmarket")
    )
    assert (await response.json()) == {"resent": 1}

    second = (await receiver.wait_for(2))[1]
    assert second.id == first.id


async def test_two_apps_on_one_database_deliver_each_message_once(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock, receiver: Receiver
) -> None:
    """Both run the jobs and every message arrives once: on SQLite one sender holds the job's
    lease at a time; on PostgreSQL both senders run, each sending the messages it claimed.
    (Nodes as real processes: tests/multiprocess/test_webhook_processes.)"""
    apps = [create_app(config, clock=clock) for _ in range(2)]
    clients: list[TestClient[Any, Any]] = [await aiohttp_client(app) for app in apps]
    apis = [Api(client, config, clock) for client in clients]
    await register(apis[0], receiver.url)
    created = await asyncio.gather(*(apis[i % 2].checkout(stores=1) for i in range(10)))
    for i, invoice in enumerate(created):
        await apis[i % 2].pay(invoice["xendit_invoice"])

    await receiver.wait_for(20, within=15)
    await asyncio.sleep(0.5)  # nothing more comes

    counts = Counter(d.id for d in receiver.deliveries)
    assert len(counts) == 20
    assert set(counts.values()) == {1}
    delivered = [app[WEBHOOK_STATS].deliveries["delivered"] for app in apps]
    assert sum(delivered) == 20
    if "://" in str(config.database):
        # Each app's sender is woken at once by the messages its own appends queued, the
        # other's only later (the store's notification): both send.
        assert all(delivered), delivered


async def test_stopping_with_deliveries_in_flight_logs_no_error(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """The app stops while the receiver holds a delivery: the delivery is cancelled before the
    sender's HTTP session closes, so it neither tries again on the closed session nor logs an
    error (nothing is recorded; the message stays due for the next sender)."""
    hang = asyncio.Event()
    async with Receiver(hang=hang) as receiver:
        client = await aiohttp_client(create_app(config, clock=clock))
        api = Api(client, config, clock)
        await register(api, receiver.url, event_types=["invoice.created"])
        await api.checkout(stores=1)
        await receiver.wait_for(1)
        with structlog.testing.capture_logs() as logs:
            await client.close()
        hang.set()
    assert [entry for entry in logs if entry["log_level"] in ("error", "critical")] == []
