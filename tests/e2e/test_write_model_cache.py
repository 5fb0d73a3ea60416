"""The write model's cache never decides on a stale state: another process's events count."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Config
from tests.e2e.conftest import Api, AppFactory, FakeClock, statuses

pytestmark = pytest.mark.backends("sqlite", "postgresql")


async def test_a_cached_invoice_sees_what_another_process_appended(
    api: Api, aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Process A caches a PAID invoice; process B completes its store; A's cancel of that
    store must be refused as completed, not decided on A's cached PAID state."""
    other: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(config, clock=clock)
    )
    elsewhere = Api(other, config, clock)
    checkout = await api.checkout(stores=1)
    await api.pay(checkout["xendit_invoice"])
    number = checkout["transaction"][0]["invoice_onmarket"]
    invoice = checkout["invoice"]
    refused = await api.platform("done", expect=400, invoice_id=invoice, invoice_onmarket="nope")
    assert refused["code"] == "TRANSACTION_NOT_FOUND"  # A has now folded the PAID invoice

    await elsewhere.platform("done", invoice_id=invoice, invoice_onmarket=number)
    answer = await api.platform(
        "cancel",
        expect=400,
        invoice_id=invoice,
        invoice_onmarket=number,
        buyer_username="usernew1",
    )

    assert answer["message"] == "TRANSACTION IS ALREADY COMPLETED"
    assert statuses(await api.detail(invoice)) == ("COMPLETED", ["COMPLETED"])
    await api.assert_balanced()
