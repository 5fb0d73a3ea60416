"""The sender on answers and secrets that are not the usual: a secret it cannot open (the
``webhook_secret_key`` was changed) is a failed attempt on the retry schedule, not an error
retried at every poll with nothing recorded; an answer that arrives in small pieces is kept up
to its first KiB, not up to the first piece; a ``Retry-After`` that is no number of seconds
nor a date is the schedule's wait, not an error that sends again at every poll."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from aiohttp import web

from service.app import create_app
from service.config import Config
from service.domain.webhook_delivery import DEFAULT_SCHEDULE
from service.webhooks.sender import RESPONSE_KEPT, UNREADABLE_SECRET
from tests.e2e.conftest import Api, AppFactory, FakeClock, e2e_config
from tests.e2e.test_webhooks import messages, register, until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.backends("sqlite", "postgresql")

# Three KiB, every 16 bytes different from the next, so a wrong slice cannot pass for the first.
STREAMED = b"".join(f"{i:015d}\n".encode() for i in range(192))


def settings(database: str, **overrides: Any) -> Config:
    return e2e_config(
        database,
        webhook_poll_interval_seconds=0.02,
        webhook_timeout_seconds=2.0,
        **overrides,
    )


@pytest.fixture
def config(database: str) -> Config:
    return settings(database)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


async def attempts_of(api: Api, invoice: str, count: int) -> dict[str, Any]:
    """The invoice's only message, once it has ``count`` attempts recorded."""

    async def found() -> dict[str, Any] | None:
        listed = await messages(api, invoice=invoice)
        return listed[0] if listed and len(listed[0]["attempts"]) >= count else None

    message: dict[str, Any] = await until(found)
    return message


async def after_a_key_change(
    aiohttp_client: AppFactory, database: str, clock: FakeClock, receiver: Receiver
) -> tuple[Api, str]:
    """The app, and an endpoint registered before its ``webhook_secret_key`` was changed."""
    before = settings(database, webhook_secret_key="the key it was sealed with")
    first = await aiohttp_client(create_app(before, clock=clock))
    endpoint = await register(
        Api(first, before, clock), receiver.url, event_types=["invoice.created"]
    )
    await first.close()
    after = settings(database, webhook_secret_key="a key set in its place since")
    return Api(await aiohttp_client(create_app(after, clock=clock)), after, clock), endpoint["id"]


async def test_a_secret_sealed_under_another_key_is_a_failed_attempt_on_the_schedule(
    aiohttp_client: AppFactory, database: str, clock: FakeClock, receiver: Receiver
) -> None:
    api, _ = await after_a_key_change(aiohttp_client, database, clock, receiver)

    with structlog.testing.capture_logs() as logs:
        invoice = (await api.checkout())["invoice"]
        await attempts_of(api, invoice, 1)
        clock.advance(DEFAULT_SCHEDULE[1] * 1.2 + 1)  # the retry comes due
        message = await attempts_of(api, invoice, 2)
        await asyncio.sleep(0.1)  # a poll or two: an error retried at each would show

    attempts = message["attempts"]
    assert [(a["status"], a["error"]) for a in attempts] == [(0, UNREADABLE_SECRET)] * 2
    assert message["status"] == "pending"
    assert attempts[-1]["next_attempt_at"] is not None
    assert receiver.deliveries == []
    errors = [entry for entry in logs if entry["log_level"] in ("error", "critical")]
    assert [entry["event"] for entry in errors] == [UNREADABLE_SECRET] * 2


async def test_a_secret_rotated_after_a_key_change_signs_at_once(
    aiohttp_client: AppFactory, database: str, clock: FakeClock, receiver: Receiver
) -> None:
    """The previous secret, unreadable now, is left out during its grace period."""
    api, endpoint = await after_a_key_change(aiohttp_client, database, clock, receiver)
    invoice = (await api.checkout())["invoice"]
    await attempts_of(api, invoice, 1)

    response = await api.client.post(
        f"/webhooks/endpoints/{endpoint}/rotate-secret", headers=api.basic("onmarket")
    )
    rotated = await response.json()
    assert response.status == 200, rotated
    clock.advance(DEFAULT_SCHEDULE[1] * 1.2 + 1)  # the retry comes due

    (delivery,) = await receiver.wait_for(1)
    assert delivery.verified_by(rotated["secret"])["data"]["invoice"] == invoice
    assert delivery.headers["webhook-signature"].count("v1,") == 1
    message = await attempts_of(api, invoice, 2)
    assert [a["status"] for a in message["attempts"]] == [0, 200]


async def stream_in_pieces(request: web.Request) -> web.StreamResponse:
    """Answers ``STREAMED`` 100 bytes at a time, each piece sent before the next is written."""
    await request.read()
    answer = web.StreamResponse(status=500)
    await answer.prepare(request)
    for start in range(0, len(STREAMED), 100):
        await answer.write(STREAMED[start : start + 100])  # waits until the piece is sent
        await asyncio.sleep(0.002)
    await answer.write_eof()
    return answer


@pytest.fixture
async def streaming_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", stream_in_pieces)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def test_an_answer_in_small_pieces_is_kept_up_to_its_first_kib(
    api: Api, streaming_url: str
) -> None:
    await register(api, streaming_url, event_types=["invoice.created"])
    invoice = (await api.checkout())["invoice"]

    attempt = (await attempts_of(api, invoice, 1))["attempts"][0]

    assert attempt["status"] == 500, attempt["error"]
    assert attempt["response"] == STREAMED[:RESPONSE_KEPT].decode()
    assert len(attempt["response"]) == RESPONSE_KEPT == 1024


@pytest.mark.parametrize("value", ["\u00b2", "1e3", "soon", "Mon, 99 Foo 9999 99:99:99 GMT"])
async def test_a_retry_after_that_is_no_time_leaves_the_schedule_s_wait(
    api: Api, receiver: Receiver, value: str
) -> None:
    receiver.status, receiver.headers = 503, {"Retry-After": value}
    await register(api, receiver.url, event_types=["invoice.created"])
    invoice = (await api.checkout())["invoice"]

    message = await attempts_of(api, invoice, 1)
    await asyncio.sleep(0.2)  # several of the sender's polls: nothing is sent again meanwhile

    (attempt,) = message["attempts"]
    assert attempt["status"] == 503
    wait = _seconds(attempt["next_attempt_at"]) - _seconds(attempt["at"])
    assert DEFAULT_SCHEDULE[1] * 0.9 <= wait <= DEFAULT_SCHEDULE[1] * 1.1
    assert len(receiver.deliveries) == 1


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
