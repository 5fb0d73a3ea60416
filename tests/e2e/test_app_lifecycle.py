"""The app opens its resources in order and closes them in the reverse one.

What uses a resource stops before the resource closes: the workers stop first, then the gateway
and the HTTP client close, and the store closes last, so a worker finishing its step can still
call the gateway and write to the store.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from eventstore import StoreClosedError
from service.app import create_app
from service.config import Config
from service.gateway.qris import Merchant
from service.gateway.sandbox import SandboxGateway
from service.http.keys import HTTP_CLIENT, STORE
from tests.e2e.conftest import FakeClock, e2e_config

pytestmark = pytest.mark.backends("sqlite", "postgresql")

WORKERS = frozenset({"refund-worker", "expiry-task", "reconcile-task"})


class WatchedGateway(SandboxGateway):
    """A sandbox gateway that notes, when it is closed, what else of the app is still open."""

    def __init__(self, config: Config) -> None:
        merchant = Merchant(config.merchant_name, config.merchant_city, config.merchant_account_id)
        super().__init__(config.public_base_url, merchant)
        self.app: web.Application | None = None
        self.seen_at_close: dict[str, Any] = {}

    async def close(self) -> None:
        assert self.app is not None
        self.seen_at_close = {
            "workers running": sorted(
                task.get_name()
                for task in asyncio.all_tasks()
                if task.get_name() in WORKERS and not task.done()
            ),
            "http client closed": self.app[HTTP_CLIENT].closed,
            "store answers": await self.app[STORE].head_position() >= 0,
        }
        await super().close()


@pytest.fixture
def config(database: str) -> Config:
    return e2e_config(database, reconcile_interval_seconds=60)


async def test_the_workers_stop_before_the_gateway_and_http_client_close_and_the_store_last(
    config: Config, clock: FakeClock
) -> None:
    gateway = WatchedGateway(config)
    app = create_app(config, clock=clock, gateway=gateway)
    gateway.app = app
    runner = web.AppRunner(app)
    await runner.setup()
    running = {task.get_name() for task in asyncio.all_tasks() if task.get_name() in WORKERS}

    await runner.cleanup()

    assert running == WORKERS
    assert gateway.seen_at_close == {
        "workers running": [],
        "http client closed": False,
        "store answers": True,
    }
    assert app[HTTP_CLIENT].closed
    with pytest.raises(StoreClosedError):
        await app[STORE].head_position()
