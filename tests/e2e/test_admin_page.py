"""GET /admin end to end: an admin's page with the charts, the refund backlog and a search by
invoice id or waybill showing the timeline with actors and the state as of an earlier moment;
everyone else refused (no credentials 401 with the browser's prompt, a buyer or a platform 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from service.app import create_app
from service.config import Config
from service.domain.codec import parse_time
from service.presenters import api_time
from tests.e2e.conftest import Api, AppFactory, FakeClock, checkout_body
from tests.pgdb import fresh_database


class Texts(HTMLParser):
    """The text of each element with an id, and every table row's cells (by table id)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self._open: list[tuple[str, str | None]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if tag == "table":
            self._table = ident
            self.rows.setdefault(ident or "", [])
        if tag == "tr" and self._table is not None:
            self.rows[self._table].append([])
        if tag in ("td", "th"):
            self._cell = []
        self._open.append((tag, ident))
        if ident:
            self.by_id[ident] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.rows[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, ident in self._open:
            if ident:
                self.by_id[ident] += data


async def page(api: Api, expect: int = 200, **params: str) -> Texts:
    response = await api.client.get("/admin", params=params, headers=api.basic("admin"))
    text = await response.text()
    assert response.status == expect, text
    assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert not re.search(r"<script|https?://(?!www\.w3\.org/2000/svg)", text)  # no CDN, no JS
    parsed = Texts()
    parsed.feed(text)
    return parsed


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_admin_sees_the_counts_volume_and_refund_backlog(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock, backend: str
) -> None:
    """Two checkouts, one paid and half refunded (the refund worker waits): the page counts
    them by status, in the last 24 hours, and one refund waiting; webhooks not available. The
    same on both backends (the read model's queries)."""
    async with contextlib.AsyncExitStack() as stack:
        slow = dataclasses.replace(config, refund_delay_seconds=3600)
        if backend == "postgresql":
            url = await stack.enter_async_context(fresh_database("admin"))
            slow = dataclasses.replace(slow, database=url)
        api = Api(await aiohttp_client(create_app(slow, clock=clock)), slow, clock)
        await _counts_volume_and_backlog(api, clock)
        await api.client.close()


async def _counts_volume_and_backlog(api: Api, clock: FakeClock) -> None:
    paid = await api.checkout(stores=1)  # seller1: a development account on both backends
    await api.checkout(stores=1)
    await api.pay(paid["xendit_invoice"])
    line = (await api.detail(paid["invoice"]))["transaction"][0]
    await api.platform(
        "cancel",
        invoice_id=paid["invoice"],
        invoice_onmarket=line["invoice_onmarket"],
        buyer_username="usernew1",
    )
    shown = await page(api)
    header, counts = shown.rows["status-counts"][0], shown.rows["status-counts"][1]
    assert dict(zip(header, counts, strict=True))["PAID"] == "1"
    assert dict(zip(header, counts, strict=True))["PENDING"] == "1"
    assert shown.by_id["day-invoices"] == "2"
    assert shown.by_id["refund-backlog"] == "1"
    assert "not available" in shown.by_id["webhooks-unavailable"]
    clock.advance(25 * 3600)  # a day later: nothing in the last 24 hours
    assert (await page(api)).by_id["day-invoices"] == "0"


async def test_a_search_shows_the_timeline_with_actors_and_the_state_as_of(
    aiohttp_client: AppFactory, config: Config
) -> None:
    """By invoice id and by waybill: the timeline's events with their actors; as of a moment
    before the payment the invoice was PENDING, now it is PAID; as of a log position too."""
    # as_of moments are the log's commit times, which are real: the app's clock starts at the
    # real time, so that the invoice is not already past its expiry at those moments.
    clock = FakeClock(datetime.now(UTC))
    api = Api(await aiohttp_client(create_app(config, clock=clock)), config, clock)
    body = checkout_body(service="ONDELIVERY", stores=1)
    body["transaction"][0]["waybill_number"] = "WB-ADMIN-1"
    response = await api.client.post("/payment-checkout", json=body, headers=api.bearer("usernew1"))
    created = await response.json()
    # The log stamps commits with the real time (ms in the API's text): apart by 20 ms, a
    # moment 1 ms after the checkout's stamp is before the payment's.
    await asyncio.sleep(0.02)
    await api.pay(created["xendit_invoice"])
    invoice = created["invoice"]

    for query in (invoice, "WB-ADMIN-1"):
        shown = await page(api, q=query)
        assert shown.by_id["found-invoice"].startswith(invoice)
        assert shown.by_id["found-status"] == "PAID"
        timeline = shown.rows["timeline"][1:]
        assert [row[1] for row in timeline] == ["InvoiceCreated", "InvoicePaid"]
        assert [row[3] for row in timeline] == ["usernew1", "gateway"]

    # The log's commit times: as of the checkout's commit, before the payment's.
    created_row = (await page(api, q=invoice)).rows["timeline"][1]
    moment = parse_time(created_row[2]) + timedelta(milliseconds=1)
    before = await page(api, q=invoice, as_of=api_time(moment))
    assert before.by_id["found-status"] == "PENDING"
    assert [row[-1] for row in before.rows["transactions"][1:]] == ["PENDING"]
    assert before.by_id["shown-at"].startswith(f"As it stood at {api_time(moment)}")
    first = int(created_row[0])
    at_position = await page(api, q=invoice, as_of_position=str(first))
    assert at_position.by_id["found-status"] == "PENDING"
    earlier = await page(api, q=invoice, as_of="2020-01-01T00:00:00Z")
    assert "not-found" in earlier.by_id
    missing = await page(api, q="NO-SUCH-INVOICE")
    assert "not-found" in missing.by_id


async def test_only_an_admin_gets_the_page(api: Api) -> None:
    """No credentials: 401 with a Basic prompt; a buyer's token, a platform's or a buyer's Basic
    credentials: refused; a bad query: 400."""
    response = await api.client.get("/admin")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert (await response.json())["code"] == "AUTH_ERROR"
    for headers, status in (
        (api.basic("onmarket"), 403),
        (api.basic("usernew1"), 403),
        (api.bearer("usernew1"), 401),
        (api.basic("admin", "wrong"), 401),
    ):
        response = await api.client.get("/admin", headers=headers)
        assert response.status == status, headers
    response = await api.client.get(
        "/admin", params={"q": "x", "unknown": "1"}, headers=api.basic("admin")
    )
    assert response.status == 400
    assert (await response.json())["code"] == "VALIDATION"
