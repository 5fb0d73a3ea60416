"""GET /metrics, continued: invoices counted once as they settle (not per transaction), the age
of the oldest refund waiting and of the most overdue webhook message on the app's clock, on
both backends, and a gateway failure counted."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from service.app import create_app
from service.config import Config
from service.http.keys import JOBS
from tests.e2e.conftest import Api, AppFactory, FakeClock
from tests.e2e.test_metrics import Samples, counter, moved, scrape, value
from tests.e2e.test_webhooks import messages, quick_webhooks, register, until
from tests.fakes.xendit import FakeXendit
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BUYER = "usernew1"


async def moves(api: Api, before: Samples, expected: Mapping[Any, float]) -> Samples:
    """The scrape once the counters moved from ``before`` by ``expected`` (the refund worker
    writes on its own: waited for), asserting they moved by exactly that."""
    for _ in range(200):
        after = await scrape(api)
        if moved(before, after) == expected:
            break
        await asyncio.sleep(0.01)
    assert moved(before, after) == expected
    return after


async def paid_lines(api: Api) -> tuple[str, list[str]]:
    """A paid two-transaction invoice and its transactions' marketplace numbers."""
    created = await api.checkout()
    await api.pay(created["xendit_invoice"])
    detail = await api.detail(created["invoice"])
    return created["invoice"], [line["invoice_onmarket"] for line in detail["transaction"]]


async def test_an_invoice_is_counted_once_when_it_settles(api: Api) -> None:
    """A two-transaction invoice completed item by item: each completion counts a transaction,
    only the second the invoice. Another refunded item by item: only the second refund counts
    the invoice refunded. No refund waits after: the refund age is 0 however late it is."""
    invoice, (first, second) = await paid_lines(api)
    samples = await scrape(api)
    for line, expected in (
        (first, {counter("transactions_completed"): 1}),
        (second, {counter("transactions_completed"): 1, counter("invoices_completed"): 1}),
    ):
        await api.platform("done", invoice_id=invoice, invoice_onmarket=line)
        samples = await moves(api, samples, expected)
    invoice, (first, second) = await paid_lines(api)
    samples = await scrape(api)
    refund = {counter("refunds_requested"): 1, counter("refunds_completed"): 1}
    for line, expected in ((first, refund), (second, {**refund, counter("invoices_refunded"): 1})):
        await api.platform(
            "cancel", invoice_id=invoice, invoice_onmarket=line, buyer_username=BUYER
        )
        samples = await moves(api, samples, expected)
    assert (await api.detail(invoice))["status"] == "REFUNDED"
    api.clock.advance(600)
    later = await scrape(api)
    assert value(later, "refund_backlog") == 0
    assert value(later, "refund_oldest_pending_age_seconds") == 0


async def test_the_oldest_waiting_refund_ages_on_the_apps_clock(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Refunds held an hour (``refund_delay_seconds``): none waiting, age 0; one asked for, its
    age follows the clock; a second asked for later leaves the age the first one's."""
    slow = dataclasses.replace(config, refund_delay_seconds=3600)
    api = Api(await aiohttp_client(create_app(slow, clock=clock)), slow, clock)
    invoice, (first, second) = await paid_lines(api)
    assert value(await scrape(api), "refund_oldest_pending_age_seconds") == 0
    await api.platform("cancel", invoice_id=invoice, invoice_onmarket=first, buyer_username=BUYER)
    assert value(await scrape(api), "refund_oldest_pending_age_seconds") == 0  # asked just now
    clock.advance(120)
    assert value(await scrape(api), "refund_oldest_pending_age_seconds") == 120
    await api.platform("cancel", invoice_id=invoice, invoice_onmarket=second, buyer_username=BUYER)
    clock.advance(30)
    samples = await scrape(api)
    assert value(samples, "refund_backlog") == 2
    assert value(samples, "refund_oldest_pending_age_seconds") == 150


async def test_a_gateway_failure_is_counted(fake: FakeXendit, xapi: Api) -> None:
    """Xendit down: the checkout answers 502 and ``gateway_errors`` (no labels) moves by one,
    nothing else does; a 4xx refusal is no gateway error."""
    before = await scrape(xapi)
    fake.down = True
    answer = await xapi.checkout(expect=502)
    assert answer["code"] == "GATEWAY_UNAVAILABLE"
    after = await scrape(xapi)
    assert moved(before, after) == {counter("gateway_errors"): 1}
    fake.down = False
    await xapi.checkout(expect=400, transaction=[])
    assert moved(after, await scrape(xapi)) == {}


async def test_a_message_due_and_not_sent_shows_its_overdue_age(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """A receiver answering 500 on a one-hour retry: pending, aged by the clock, but not due
    (its overdue age 0). The sender's job is stopped (a stuck sender) and the clock passes the
    retry's time by 45 s: the message is due, 45 s overdue; its pending age counts from its
    queueing."""
    settings = quick_webhooks(config, schedule="0,3600")
    api = Api(await aiohttp_client(create_app(settings, clock=clock)), settings, clock)
    queued_at = clock.now
    async with Receiver(status=500) as flaky:
        await register(api, flaky.url, event_types=["invoice.created"])
        await api.checkout()

        async def retry_recorded() -> list[dict[str, Any]]:
            found = await messages(api)
            return found if found and found[0]["attempts"] else []

        [message] = await until(retry_recorded, within=10)
        clock.advance(120)
        samples = await scrape(api)
        assert value(samples, "webhook_pending_messages") == 1
        assert value(samples, "webhook_oldest_pending_age_seconds") == 120
        assert value(samples, "webhook_oldest_due_age_seconds") == 0  # its retry is an hour off
        await stop_the_sender(api)
        retry_at = datetime.fromisoformat(message["next_attempt_at"])
        clock.advance((retry_at - clock.now).total_seconds() + 45)
        samples = await scrape(api)
    assert value(samples, "webhook_pending_messages") == 1
    pending_age = (clock.now - queued_at).total_seconds()
    assert value(samples, "webhook_oldest_pending_age_seconds") == pytest.approx(pending_age)
    # The message's time as the API shows it is cut to milliseconds.
    assert value(samples, "webhook_oldest_due_age_seconds") == pytest.approx(45, abs=0.002)


async def stop_the_sender(api: Api) -> None:
    """Cancel the webhook sender's job, as if it were stuck: due messages stay unsent."""
    sender = api.client.app[JOBS]["webhook-sender"]
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
