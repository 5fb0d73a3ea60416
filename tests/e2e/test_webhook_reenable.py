"""An endpoint disabled for failing for days, then enabled again by its platform, starts with a
clean slate: the failures before it was disabled do not disable it again at its next failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.config import Config
from tests.e2e.conftest import Api, FakeClock, e2e_config
from tests.e2e.test_webhooks import messages, register, until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def config(database: str) -> Config:
    return e2e_config(
        database,
        webhook_poll_interval_seconds=0.02,
        webhook_timeout_seconds=2.0,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver(status=500) as server:
        yield server


async def endpoint_of(api: Api, endpoint: str) -> dict[str, Any]:
    response = await api.client.get(
        f"/webhooks/endpoints/{endpoint}", headers=api.basic("onmarket")
    )
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


async def attempted(api: Api, invoice: str) -> list[dict[str, Any]] | None:
    found = await messages(api, invoice=invoice)
    return found if found and found[0]["attempts"] else None


async def test_a_re_enabled_endpoint_is_not_disabled_again_by_its_old_failures(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    endpoint = (await register(api, receiver.url, event_types=["invoice.created"]))["id"]
    await api.checkout()
    await receiver.wait_for(1)
    clock.advance(api.config.webhook_disable_after_seconds + 10)
    await api.checkout()  # fails five days after the first failure: the endpoint is disabled

    async def disabled() -> dict[str, Any] | None:
        body = await endpoint_of(api, endpoint)
        return body if body["disabled"] else None

    assert (await until(disabled))["disabled_reason"].startswith("failing since")

    response = await api.client.patch(
        f"/webhooks/endpoints/{endpoint}", json={"disabled": False}, headers=api.basic("onmarket")
    )
    assert response.status == 200, await response.json()
    created = await api.checkout()  # one more failure, the first since it was enabled again
    await until(lambda: attempted(api, created["invoice"]))
    await asyncio.sleep(0.2)  # the sender decides on disabling just after recording the attempt

    body = await endpoint_of(api, endpoint)
    assert body["disabled"] is False, body["disabled_reason"]
