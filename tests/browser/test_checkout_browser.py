"""The sandbox checkout page in a real browser: open payment_url, read it, press its buttons.

Headless Chromium (Debian's) driven by Playwright against the service on a real port. Each
test also checks that the page asked nothing of any other host and logged no error (a blocked
script or style, a Content-Security-Policy violation, a failed request).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.browser.conftest import Server
from tests.e2e.conftest import checkout_body

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

BUYER = "usernew1"
TOTAL = 40200  # the default two-store checkout


@pytest.fixture
async def http(server: Server) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.base_url) as session:
        yield session


async def checkout(
    http: aiohttp.ClientSession, server: Server, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post("/payment-checkout", json=body, headers=server.bearer(BUYER)) as sent:
        answer: dict[str, Any] = await sent.json()
        assert sent.status == 200, answer
        return answer


async def detail_status(http: aiohttp.ClientSession, server: Server, invoice: str) -> str:
    async with http.get(
        "/invoice/detail", params={"invoice": invoice}, headers=server.bearer(BUYER)
    ) as sent:
        answer: dict[str, Any] = await sent.json()
        assert sent.status == 200, answer
        return str(answer["status"])


class Watched:
    """A page whose requests and console errors are recorded, to be checked at the end."""

    def __init__(self, page: Page, server: Server) -> None:
        self.page, self.server = page, server
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )

    def assert_clean(self) -> None:
        foreign = [
            url
            for url in self.requests
            if not url.startswith((f"{self.server.base_url}/", "data:"))
        ]
        assert foreign == []
        assert self.errors == []


async def open_page(browser: Browser, server: Server) -> Watched:
    page = await browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(5000)
    return Watched(page, server)


def plain(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\xa0", " ")).strip()


async def test_pay_on_the_checkout_page(
    browser: Browser, server: Server, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Open payment_url, see the invoice, its total, both stores and a live countdown; press
    Pay; the page shows Paid, and /invoice/detail says PAID."""
    from playwright.async_api import expect

    body = checkout_body()
    created = await checkout(http, server, body)
    assert created["payment_url"].startswith(f"{server.base_url}/sandbox/checkout/")
    watched = await open_page(browser, server)
    page = watched.page

    await page.goto(created["payment_url"])

    await expect(page).to_have_title(f"Sandbox checkout {created['invoice']}")
    await expect(page.locator("#invoice-id")).to_have_text(created["invoice"])
    assert plain(await page.locator("#total").inner_text()) == "Rp 40.200"
    await expect(page.locator("#status")).to_have_text("Pending")
    rows = page.locator("table.lines tbody tr")
    await expect(rows).to_have_count(2)
    for index, line in enumerate(body["transaction"]):
        cells = [plain(text) for text in await rows.nth(index).locator("td").all_inner_texts()]
        assert cells[:2] == [line["invoice_onmarket"], line["seller_username"]]
        assert cells[5] == "Rp " + f"{line['amount'] + 5100:,}".replace(",", ".")
    # The countdown runs in the browser (its script passed the page's CSP).
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^1:59:5\d left$"))
    pay = page.get_by_role("button", name="Pay", exact=True)
    await expect(pay).to_be_visible()
    await expect(page.get_by_role("button", name="Cancel payment")).to_be_visible()
    await page.screenshot(path=tmp_path / "checkout-pending.png", full_page=True)

    await pay.click()

    await expect(page.locator("#status")).to_have_text("Paid")
    await expect(page.locator("#state-message")).to_contain_text("Paid.")
    assert page.url == created["payment_url"]
    await expect(page.get_by_role("button")).to_have_count(0)
    await page.screenshot(path=tmp_path / "checkout-paid.png", full_page=True)
    assert await detail_status(http, server, created["invoice"]) == "PAID"
    watched.assert_clean()


async def test_qris_page_shows_the_qr_code_and_pays(
    browser: Browser, server: Server, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    created = await checkout(http, server, checkout_body(source="QRIS"))
    watched = await open_page(browser, server)
    page = watched.page
    from playwright.async_api import expect

    await page.goto(f"{server.base_url}/sandbox/checkout/{created['xendit_invoice']}")

    qr = page.locator("svg.qr-code")
    await expect(qr).to_be_visible()
    box = await qr.bounding_box()
    assert box is not None
    assert box["width"] >= 150
    assert box["width"] == pytest.approx(box["height"], abs=1)
    await page.screenshot(path=tmp_path / "checkout-qris.png", full_page=True)

    await page.get_by_role("button", name="Pay", exact=True).click()

    await expect(page.locator("#status")).to_have_text("Paid")
    await expect(page.locator("svg.qr-code")).to_have_count(0)
    assert await detail_status(http, server, created["invoice"]) == "PAID"
    watched.assert_clean()


async def test_cancel_payment_on_the_checkout_page(
    browser: Browser, server: Server, http: aiohttp.ClientSession
) -> None:
    created = await checkout(http, server, checkout_body())
    watched = await open_page(browser, server)
    page = watched.page
    from playwright.async_api import expect

    await page.goto(created["payment_url"])
    await page.get_by_role("button", name="Cancel payment").click()

    await expect(page.locator("#status")).to_have_text("Expired")
    await expect(page.get_by_role("button")).to_have_count(0)
    assert await detail_status(http, server, created["invoice"]) == "EXPIRED"
    watched.assert_clean()


async def test_the_countdown_reaching_zero_disables_the_buttons(
    browser: Browser, server: Server, http: aiohttp.ClientSession
) -> None:
    """Left open until it expires, the page says so and its buttons no longer work."""
    created = await checkout(http, server, checkout_body())
    server.clock.advance(server.config.invoice_ttl_seconds - 1.5)  # 1 s left, on the page
    watched = await open_page(browser, server)
    page = watched.page
    from playwright.async_api import expect

    await page.goto(created["payment_url"])
    await expect(page.locator("#countdown")).to_have_attribute("data-remaining", "1")

    await expect(page.locator("#countdown")).to_have_text("expired", timeout=3000)
    await expect(page.get_by_role("button", name="Pay", exact=True)).to_be_disabled()
    await expect(page.get_by_role("button", name="Cancel payment")).to_be_disabled()
    await expect(page.locator("#expired-hint")).to_be_visible()
    watched.assert_clean()


# -- when there is no browser ------------------------------------------------------------------


@pytest.mark.parametrize("ci", [None, "true"])
def test_no_chromium_skips_outside_ci_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str | None
) -> None:
    from tests.browser import conftest

    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "no-chromium")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
            conftest.require_browser()
    else:
        monkeypatch.setenv("CI", ci)
        with pytest.raises(pytest.fail.Exception, match="must run in CI"):
            conftest.require_browser()
