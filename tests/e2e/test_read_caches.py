"""What the read path remembers between requests never changes an answer.

A detail remembers loaded queries (by their text), decoded invoice states (by their stored
text) and formatted times; a connection's socket gets its send timeout once. Each test reads
the same thing twice around a change that must show, or asks as two different people.
"""

from __future__ import annotations

import re
import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.http.keys import SEND_TIMEOUTS
from tests.e2e.conftest import Api, AppFactory, FakeClock, statuses

pytestmark = pytest.mark.backends("sqlite", "postgresql")

HEX_32 = re.compile(r"[0-9a-f]{32}")


async def test_the_same_query_shows_the_invoice_as_it_is_now(api: Api, clock: FakeClock) -> None:
    checkout = await api.checkout(stores=1)
    invoice = checkout["invoice"]
    before = await api.detail(invoice)

    clock.advance(60)
    await api.pay(checkout["xendit_invoice"])
    after = await api.detail(invoice)

    assert statuses(before) == ("PENDING", ["PENDING"])
    assert statuses(after) == ("PAID", ["PAID"])
    assert after["updatedAt"] != before["updatedAt"]


async def test_an_invoice_past_its_expiry_reads_expired_though_its_state_is_remembered(
    api: Api, clock: FakeClock
) -> None:
    invoice = (await api.checkout(stores=1))["invoice"]
    before = await api.detail(invoice)

    clock.advance(24 * 3600)
    after = await api.detail(invoice)

    assert (before["status"], after["status"]) == ("PENDING", "EXPIRED")


async def test_a_query_answered_to_its_buyer_is_not_answered_to_another(api: Api) -> None:
    invoice = (await api.checkout("usernew1", stores=1))["invoice"]
    await api.detail(invoice, viewer="usernew1")
    await api.detail(invoice, viewer="usernew1")

    refused = await api.detail(invoice, viewer="seller1", expect=400)  # another buyer

    assert refused["code"] == "INVOICE_NOT_FOUND"


async def test_a_refused_query_is_refused_every_time(api: Api) -> None:
    headers = api.bearer("usernew1")
    answers = []
    for _ in range(3):
        response = await api.client.get(
            "/invoice/detail", params={"invoice": "x", "as_of_position": "-1"}, headers=headers
        )
        answers.append((response.status, await response.json()))

    assert [status for status, _ in answers] == [400, 400, 400]
    assert answers[0][1] == answers[1][1] == answers[2][1]
    assert "as_of_position" in answers[0][1]["errors"]


async def test_a_long_query_is_loaded_and_checked_all_the_same(api: Api) -> None:
    invoice = (await api.checkout(stores=1))["invoice"]
    params = {"invoice": invoice, "x" * 300: "1"}

    response = await api.client.get(
        "/invoice/detail", params=params, headers=api.bearer("usernew1")
    )

    assert response.status == 400
    assert "Unknown field." in str((await response.json())["errors"])


async def test_every_request_gets_an_id_of_its_own(api: Api) -> None:
    ids = set()
    for _ in range(50):
        response = await api.client.get("/health")
        ids.add(response.headers["X-Request-ID"])

    assert len(ids) == 50
    assert all(HEX_32.fullmatch(request_id) for request_id in ids)


async def test_a_connection_gets_its_send_timeout_once_and_keeps_it(
    aiohttp_client: AppFactory, api: Api
) -> None:
    """Two requests over one keep-alive connection: the server's socket has the configured
    TCP_USER_TIMEOUT, remembered for that one connection."""
    client: TestClient[web.Request, web.Application] = api.client
    for _ in range(2):
        response = await client.get("/health")
        assert response.status == 200
    limited = client.app[SEND_TIMEOUTS]
    transports = [t for t in list(limited) if not t.is_closing()]
    expected = round(api.config.send_timeout_seconds * 1000)

    assert len(transports) == 1
    sock = transports[0].get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == expected
    assert limited[transports[0]] == expected
