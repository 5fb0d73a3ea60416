"""GET /admin end to end: an admin's page with the charts, the refund backlog, the webhooks'
backlog and failed deliveries (resent by its button's post), and a search by invoice id or
waybill showing the timeline with actors and the state as of an earlier moment; everyone else
refused (no credentials 401 with the browser's prompt, a buyer or a platform 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from service.app import create_app
from service.config import Config
from service.domain.codec import parse_time
from service.domain.streams import webhook_message_stream
from service.domain.webhook_delivery import JITTER
from service.http.keys import STORE
from service.presenters import api_time, history_entry
from tests.e2e.conftest import Api, AppFactory, FakeClock, checkout_body
from tests.e2e.test_webhooks import messages, quick_webhooks, register, until
from tests.pgdb import fresh_database
from tests.webhook_receiver import Receiver

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}  # what a browser says of the page's own post


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
    # No script, nothing loaded from another host (a webhook's URL is shown as text only).
    assert not re.search(r"<script|(?:src|href|action)=\"?https?:|url\(\s*[\"']?https?:", text)
    parsed = Texts()
    parsed.feed(text)
    return parsed


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_admin_sees_the_counts_volume_and_refund_backlog(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock, backend: str
) -> None:
    """Two checkouts, one paid and half refunded (the refund worker waits): the page counts
    them by status, in the last 24 hours, and one refund waiting; no webhook pending nor
    failed. The same on both backends (the read model's queries)."""
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
    assert shown.by_id["webhook-pending"] == "0"
    assert shown.rows["failed-deliveries"][1:] == [["No failed deliveries."]]
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


async def _messages_with(api: Api, status: str, attempts: int) -> list[dict[str, Any]]:
    """The messages in ``status`` whose attempts are all recorded (at least ``attempts``)."""
    found = await messages(api, "admin", status=status)
    return [m for m in found if len(m["attempts"]) >= attempts]


async def resend(api: Api, delivery: str, account: str = "admin", **headers: str) -> Any:
    return await api.client.post(
        f"/admin/webhooks/{delivery}/resend",
        headers={**api.basic(account), **headers},
        allow_redirects=False,
    )


@pytest.mark.backends("sqlite", "postgresql")
async def test_the_webhooks_panel_shows_the_backlog_and_resends_a_failed_delivery(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """A receiver answering 500, retries an hour apart: a first message fails after its two
    attempts, a second waits for its retry. The panel counts one pending, 30 s old, and lists
    the failure (URL, event, time, "HTTP 500"); its Resend button, once the receiver answers
    200, has it delivered again, recorded as the admin's."""
    settings = quick_webhooks(config, schedule="0,3600")
    api = Api(await aiohttp_client(create_app(settings, clock=clock)), settings, clock)
    async with Receiver(status=500) as receiver:
        await register(api, receiver.url, event_types=["invoice.created"])
        await api.checkout()
        await until(lambda: _messages_with(api, "pending", attempts=1))
        clock.advance(3600 * (1 + JITTER) + 1)  # the retry is due: it fails for good
        failed_at = clock()
        [failed] = await until(lambda: _messages_with(api, "failed", attempts=2))
        await api.checkout()
        [waiting] = await until(lambda: _messages_with(api, "pending", attempts=1))
        clock.advance(30)

        shown = await page(api)
        assert shown.by_id["webhook-pending"] == "1"
        assert "the oldest 30 s old" in shown.by_id["webhooks"]
        assert shown.rows["failed-deliveries"][1:] == [
            [api_time(failed_at), "invoice.created", receiver.url, "HTTP 500", "Resend"]
        ]

        receiver.status = 200
        response = await resend(api, failed["id"], **SAME_ORIGIN)
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == f"/admin?resent={failed['id']}"
        assert response.headers["Content-Type"].startswith("text/html")
        await until(lambda: _messages_with(api, "delivered", attempts=3))
        deliveries = await receiver.wait_for(4)
    assert [d.id for d in deliveries] == [failed["id"]] * 2 + [waiting["id"], failed["id"]]
    after = await page(api, resent=failed["id"])
    assert failed["id"] in after.by_id["resent"]
    assert after.rows["failed-deliveries"][1:] == [["No failed deliveries."]]
    stream = api.client.app[STORE].read_stream(webhook_message_stream(failed["id"]))
    events = [history_entry(event) async for event in stream]
    resent = [event for event in events if event["type"] == "WebhookMessageResent"]
    assert [event["actor"] for event in resent] == ["admin"]


async def test_only_an_admin_resends_and_only_from_the_page(api: Api) -> None:
    """No credentials: 401 with the prompt; a platform's or a buyer's: 403 as for the page; a
    post another site made: 403; a message that does not exist: 404, never a 500."""
    unknown = "msg_" + "0" * 32
    response = await api.client.post(f"/admin/webhooks/{unknown}/resend")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    for account in ("onmarket", "usernew1"):
        response = await resend(api, unknown, account)
        assert response.status == 403, account
        assert (await response.json())["code"] == "FORBIDDEN"
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
        {"Origin": "http://[::1"},  # not an origin at all
    ):
        response = await resend(api, unknown, **headers)
        assert response.status == 403, headers
        assert (await response.json())["code"] == "CROSS_SITE_REQUEST"
    own = api.client.make_url("/")
    for delivery, headers in (
        (unknown, SAME_ORIGIN),
        (unknown, {"Origin": f"{own.scheme}://{own.host}:{own.port}"}),
        ("not-a-message", {}),
        ("msg_%2E%2E", {}),
    ):
        response = await resend(api, delivery, **headers)
        assert response.status == 404, delivery
        assert (await response.json())["code"] == "WEBHOOK_MESSAGE_NOT_FOUND"
    response = await api.client.get(
        "/admin", params={"resent": "not-a-message"}, headers=api.basic("admin")
    )
    assert response.status == 400


@pytest.mark.backends("sqlite", "postgresql")
async def test_a_delivery_to_an_endpoint_disabled_since_says_so_and_waits_for_it(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """410 Gone fails the message and disables the endpoint: the panel's reason says both. A
    resend waits while the endpoint is disabled (not pending in the backlog, nothing sent);
    enabled again, the message is delivered."""
    settings = quick_webhooks(config, schedule="0,3600")
    api = Api(await aiohttp_client(create_app(settings, clock=clock)), settings, clock)
    async with Receiver(status=410) as receiver:
        endpoint = await register(api, receiver.url, event_types=["invoice.created"])
        await api.checkout()
        [failed] = await until(lambda: _messages_with(api, "failed", attempts=1))
        shown = await page(api)
        assert shown.rows["failed-deliveries"][1][3] == "HTTP 410; endpoint disabled"

        receiver.status = 200
        response = await resend(api, failed["id"], **SAME_ORIGIN)
        assert response.status == 303
        await asyncio.sleep(0.2)  # several polls of the sender: none sends to a disabled endpoint
        assert len(receiver.deliveries) == 1
        assert (await page(api)).by_id["webhook-pending"] == "0"  # nothing it can deliver

        enabled = await api.client.patch(
            f"/webhooks/endpoints/{endpoint['id']}",
            json={"disabled": False},
            headers=api.basic("admin"),
        )
        assert enabled.status == 200, await enabled.text()
        await until(lambda: _messages_with(api, "delivered", attempts=2))
    assert [d.id for d in receiver.deliveries] == [failed["id"]] * 2
