"""The operator page in a real browser: log in with Basic credentials, read the charts and the
backlogs, find an invoice by waybill, read its timeline, go back in time (as_of), and resend a
failed webhook delivery with its button.

Headless Chromium (Debian's) driven by Playwright against the service on a real port, like the
sandbox page's tests; the page must ask nothing of any other host and log no error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from service.domain.codec import parse_time
from service.presenters import api_time
from tests.browser.conftest import Server, serve
from tests.browser.test_checkout_browser import Watched
from tests.credentials import basic
from tests.e2e.conftest import FakeClock, checkout_body
from tests.webhook_receiver import Receiver

if TYPE_CHECKING:
    from playwright.async_api import Browser

WAYBILL = "WB-BROWSER-1"
# Set to a path to keep the screenshot of the page with a search (docs/admin.png is one).
SCREENSHOT_COPY = os.environ.get("ADMIN_SCREENSHOT")


@pytest.fixture
def clock() -> FakeClock:
    """The app's clock at the real time: as_of moments are the log's (real) commit times, and
    the invoice must not be past its expiry at them."""
    return FakeClock(datetime.now(UTC))


@pytest.fixture
async def http(server: Server) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.base_url) as session:
        yield session


async def paid_invoice(http: aiohttp.ClientSession, server: Server) -> dict[str, Any]:
    body = checkout_body(service="ONDELIVERY", stores=1)
    body["transaction"][0]["waybill_number"] = WAYBILL
    async with http.post("/payment-checkout", json=body, headers=server.bearer("usernew1")) as sent:
        created: dict[str, Any] = await sent.json()
        assert sent.status == 200, created
    # Commit times are stamped in ms: 20 ms apart, 1 ms after the checkout is before the payment.
    await asyncio.sleep(0.02)
    async with http.post(f"/sandbox/invoices/{created['xendit_invoice']}/pay", json={}) as paid:
        assert paid.status == 200, await paid.text()
    return created


async def test_an_admin_finds_an_invoice_reads_its_timeline_and_goes_back_in_time(
    browser: Browser, server: Server, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    created = await paid_invoice(http, server)
    await http.post(
        "/payment-checkout", json=checkout_body(stores=1), headers=server.bearer("usernew1")
    )
    context = await browser.new_context(
        http_credentials={"username": "admin", "password": "admin"},
        viewport={"width": 1200, "height": 900},
    )
    page = await context.new_page()
    page.set_default_timeout(5000)
    watched = Watched(page, server)

    await page.goto(f"{server.base_url}/admin")

    await expect(page).to_have_title("Operator page")
    await expect(page.locator("svg.chart")).to_have_count(3)
    await expect(page.locator('#status-counts td[data-status="PAID"]')).to_have_text("1")
    await expect(page.locator('#status-counts td[data-status="PENDING"]')).to_have_text("1")
    await expect(page.locator("#day-invoices")).to_have_text("2")
    await expect(page.locator("#refund-backlog")).to_have_text("0")
    await expect(page.locator("#webhook-pending")).to_have_text("0")
    await page.screenshot(path=tmp_path / "admin-overview.png", full_page=True)

    await page.locator("#q").fill(WAYBILL)
    await page.locator("#find").click()

    await expect(page.locator("#found-invoice")).to_contain_text(created["invoice"])
    await expect(page.locator("#found-status")).to_have_text("PAID")
    timeline = page.locator("#timeline tr[data-type]")
    await expect(timeline).to_have_count(2)
    await expect(timeline.nth(0)).to_contain_text("InvoiceCreated")
    await expect(timeline.nth(0).locator(".actor")).to_have_text("usernew1")
    await expect(timeline.nth(1)).to_contain_text("InvoicePaid")
    await expect(timeline.nth(1).locator(".actor")).to_have_text("gateway")
    await page.screenshot(path=tmp_path / "admin-search.png", full_page=True)
    if SCREENSHOT_COPY:
        shutil.copy(tmp_path / "admin-search.png", SCREENSHOT_COPY)

    # The state just after the checkout's event: PENDING.
    await timeline.nth(0).get_by_role("link", name="state after").click()
    await expect(page.locator("#found-status")).to_have_text("PENDING")
    await expect(page.locator("#shown-at")).to_contain_text("As it stood at position")

    # As of a moment typed in: 1 ms after the checkout's commit, and one before the invoice.
    created_at = await timeline.nth(0).locator("td").nth(2).inner_text()
    moment = api_time(parse_time(created_at) + timedelta(milliseconds=1))
    await page.locator("#as-of").fill(moment)
    await page.locator("#show-as-of").click()
    await expect(page.locator("#found-status")).to_have_text("PENDING")
    await expect(page.locator("#transactions .status")).to_have_text(["PENDING"])
    await page.locator("#as-of").fill("2020-01-01T00:00:00Z")
    await page.locator("#show-as-of").click()
    await expect(page.locator("#not-found")).to_be_visible()
    watched.assert_clean()
    await context.close()


async def test_the_page_asks_the_browser_for_credentials_and_refuses_others(
    browser: Browser, server: Server
) -> None:
    """No credentials: 401 with a Basic prompt; a buyer's or a platform's: 403."""
    for credentials, status in ((None, 401), ("usernew1", 403), ("onmarket", 403)):
        options: dict[str, Any] = {}
        if credentials is not None:
            options["http_credentials"] = {"username": credentials, "password": credentials}
        context = await browser.new_context(**options)
        if credentials is None:
            # Headless Chromium has nobody to show its prompt to: it fails the navigation, so
            # the answer is read as the browser received it, through the context's requests.
            answer = await context.request.get(f"{server.base_url}/admin")
            assert answer.status == status
            assert answer.headers["www-authenticate"].startswith("Basic")
        else:
            page = await context.new_page()
            response = await page.goto(f"{server.base_url}/admin")
            assert response is not None
            assert response.status == status, credentials
        await context.close()


async def _failed_messages(http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    params = {"status": "failed"}
    async with http.get("/webhooks/messages", params=params, headers=basic("admin")) as answer:
        body = await answer.json()
        assert answer.status == 200, body
    found: list[dict[str, Any]] = body["messages"]
    return found


async def test_an_admin_resends_a_failed_webhook_delivery_with_its_button(
    browser: Browser, tmp_path: Path, template_db: Path, clock: FakeClock
) -> None:
    """One attempt per round: a receiver answering 500 fails a checkout's message at once. The
    page lists it; the receiver fixed, the admin presses Resend: back on the page, a notice
    says it was resent, and the receiver gets the message again (its second delivery)."""
    from playwright.async_api import expect

    settings = {"webhook_retry_schedule": "0", "webhook_poll_interval_seconds": 0.05}
    async with (
        Receiver(status=500) as receiver,
        serve(tmp_path, template_db, clock, **settings) as server,
        aiohttp.ClientSession(base_url=server.base_url) as http,
    ):
        hook = {"url": receiver.url, "event_types": ["invoice.created"]}
        onmarket = basic("onmarket")
        async with http.post("/webhooks/endpoints", json=hook, headers=onmarket) as registered:
            assert registered.status == 201, await registered.text()
        body = checkout_body(stores=1)
        async with http.post("/payment-checkout", json=body, headers=server.bearer("usernew1")):
            pass
        await receiver.wait_for(1)
        for _ in range(100):
            failed = await _failed_messages(http)
            if failed:
                break
            await asyncio.sleep(0.05)
        [message] = failed
        receiver.status = 200

        context = await browser.new_context(
            http_credentials={"username": "admin", "password": "admin"},
            viewport={"width": 1200, "height": 900},
        )
        page = await context.new_page()
        page.set_default_timeout(5000)
        watched = Watched(page, server)
        await page.goto(f"{server.base_url}/admin")
        row = page.locator("#failed-deliveries tr", has_text=receiver.url)
        await expect(row).to_contain_text("HTTP 500")
        await expect(row).to_contain_text("invoice.created")

        await page.screenshot(path=tmp_path / "admin-failed-webhook.png", full_page=True)
        await row.get_by_role("button", name="Resend").click()

        await expect(page).to_have_url(f"{server.base_url}/admin?resent={message['id']}")
        await expect(page.locator("#resent")).to_contain_text(message["id"])
        deliveries = await receiver.wait_for(2)
        assert [d.id for d in deliveries] == [message["id"]] * 2
        await page.reload()
        await expect(page.locator("#failed-deliveries")).to_contain_text("No failed deliveries.")
        watched.assert_clean()
        await context.close()
