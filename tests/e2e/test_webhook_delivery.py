"""Webhook deliveries that fail, and what follows: the retry schedule on a fast clock,
``Retry-After``, 410 and days of failures disabling the endpoint; resend and recover; secret
rotation; isolation between platforms; the SSRF guard in production."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Config
from service.domain.webhook_delivery import DEFAULT_SCHEDULE, JITTER
from tests.e2e.conftest import Api, AppFactory, FakeClock, copy_of, e2e_config
from tests.e2e.test_webhooks import messages, register, until
from tests.webhook_receiver import Receiver


@pytest.fixture
def config(tmp_path: Path, template_db: Path) -> Config:
    return e2e_config(
        copy_of(template_db, tmp_path),
        webhook_poll_interval_seconds=0.02,
        webhook_timeout_seconds=2.0,  # a loaded machine's receiver may be slow to answer
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver(status=500) as server:
        yield server


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _only_message(api: Api, attempts: int, account: str = "onmarket") -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        listed = await messages(api, account)
        if listed and len(listed[0]["attempts"]) >= attempts:
            return listed[0]
        return None

    message: dict[str, Any] = await until(found)
    return message


async def test_a_failing_receiver_is_retried_on_the_schedule_then_failed(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    await register(api, receiver.url, event_types=["invoice.created"])
    await api.checkout()

    for attempt in range(1, len(DEFAULT_SCHEDULE) + 1):
        await receiver.wait_for(attempt)
        message = await _only_message(api, attempt)
        clock.advance(DEFAULT_SCHEDULE[min(attempt, len(DEFAULT_SCHEDULE) - 1)] * 1.2 + 1)

    assert message["status"] == "failed"
    attempts = message["attempts"]
    assert [a["status"] for a in attempts] == [500] * len(DEFAULT_SCHEDULE)
    assert all(a["response"] == "answer 500" for a in attempts)
    for number, made in enumerate(attempts[:-1], start=1):
        wait = (_time(made["next_attempt_at"]) - _time(made["at"])).total_seconds()
        planned = DEFAULT_SCHEDULE[number]
        assert planned * (1 - JITTER) <= wait <= planned * (1 + JITTER), (number, wait)
    assert attempts[-1]["next_attempt_at"] is None
    assert len({d.id for d in receiver.deliveries}) == 1  # one webhook-id on every retry


def _in_an_hour() -> str:
    """An HTTP date an hour from now by the wall clock (the sender reads it by that clock)."""
    return email.utils.formatdate(time.time() + 3600, usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "least", "most"),
    [(lambda: "120", 120, 121), (_in_an_hour, 3590, 3601)],
    ids=["seconds", "http-date"],
)
async def test_retry_after_is_honoured(
    api: Api, receiver: Receiver, retry_after: Any, least: float, most: float
) -> None:
    """In seconds or as an HTTP date; the schedule's own wait (5 s) is far shorter."""
    receiver.status, receiver.headers = 429, {"Retry-After": retry_after()}
    await register(api, receiver.url, event_types=["invoice.created"])
    await api.checkout()

    message = await _only_message(api, 1)

    first = message["attempts"][0]
    assert first["status"] == 429
    wait = (_time(first["next_attempt_at"]) - _time(first["at"])).total_seconds()
    assert least <= wait <= most, wait


async def test_a_timeout_and_a_refused_connection_are_failures_with_their_reason(
    api: Api, receiver: Receiver
) -> None:
    receiver.hang = asyncio.Event()
    await register(api, receiver.url, event_types=["invoice.created"])
    async with Receiver() as closed:
        refused_url = closed.url
    await register(api, refused_url, event_types=["invoice.created"])
    await api.checkout()

    async def both() -> list[dict[str, Any]] | None:
        listed = await messages(api)
        return listed if len(listed) == 2 and all(m["attempts"] for m in listed) else None

    listed = await until(both, within=15)

    errors = sorted(m["attempts"][0]["error"] for m in listed)
    assert [m["attempts"][0]["status"] for m in listed] == [0, 0]
    assert errors[1].startswith("timeout"), errors
    assert "Connect" in errors[0], errors
    assert all(m["status"] == "pending" for m in listed)


async def test_410_disables_the_endpoint(api: Api, receiver: Receiver) -> None:
    receiver.status = 410
    endpoint = await register(api, receiver.url)
    await api.checkout()

    async def disabled() -> dict[str, Any] | None:
        response = await api.client.get(
            f"/webhooks/endpoints/{endpoint['id']}", headers=api.basic("onmarket")
        )
        body: dict[str, Any] = await response.json()
        return body if body["disabled"] else None

    body = await until(disabled)

    assert "410" in body["disabled_reason"]
    assert (await _only_message(api, 1))["status"] == "failed"
    await api.checkout()
    await asyncio.sleep(0.2)
    assert len(receiver.deliveries) == 1  # nothing more to a disabled endpoint


async def test_an_endpoint_failing_for_too_long_is_disabled(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    assert api.config.webhook_disable_after_seconds == 5 * 24 * 3600  # SPEC: 5 days
    endpoint = await register(api, receiver.url, event_types=["invoice.created"])
    await api.checkout()
    await receiver.wait_for(1)

    async def disabled() -> dict[str, Any] | None:
        response = await api.client.get(
            f"/webhooks/endpoints/{endpoint['id']}", headers=api.basic("onmarket")
        )
        body: dict[str, Any] = await response.json()
        return body if body["disabled"] else None

    with structlog.testing.capture_logs() as logs:
        clock.advance(api.config.webhook_disable_after_seconds + 10)
        await api.checkout()  # a new message, due now: it fails too, days after the first
        body = await until(disabled)
    assert body["disabled_reason"].startswith("failing since")
    disabling = [e for e in logs if e["event"] == "webhook endpoint disabled"]
    assert [e["log_level"] for e in disabling] == ["error"], logs
    assert disabling[0]["endpoint"] == endpoint["id"]
    assert disabling[0]["reason"] == body["disabled_reason"]


async def test_a_success_ends_the_failing_streak(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    endpoint = await register(api, receiver.url, event_types=["invoice.created"])
    await api.checkout()
    await receiver.wait_for(1)
    receiver.status = 200
    clock.advance(10)  # the retry comes due and succeeds
    await receiver.wait_for(2)
    clock.advance(api.config.webhook_disable_after_seconds + 10)
    receiver.status = 500
    await api.checkout()
    await receiver.wait_for(3)
    await asyncio.sleep(0.1)

    response = await api.client.get(
        f"/webhooks/endpoints/{endpoint['id']}", headers=api.basic("onmarket")
    )
    assert (await response.json())["disabled"] is False


# -- resend and recover -------------------------------------------------------------------------


async def test_resend_sends_a_delivered_message_again_with_the_same_id(
    api: Api, receiver: Receiver
) -> None:
    receiver.status = 200
    await register(api, receiver.url, event_types=["invoice.created"])
    await api.checkout()
    message = await _only_message(api, 1)
    assert message["status"] == "delivered"

    response = await api.client.post(
        f"/webhooks/messages/{message['id']}/resend", headers=api.basic("onmarket")
    )
    assert response.status == 202
    assert await response.json() == {"resent": 1}

    first, second = await receiver.wait_for(2)
    assert first.id == second.id == message["id"]
    assert first.body == second.body
    again = await _only_message(api, 2)
    assert again["attempts"][1]["status"] == 200, again


async def test_recover_resends_every_failed_message_since_a_time(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock, receiver: Receiver
) -> None:
    settings = dataclasses.replace(config, webhook_retry_schedule="0")  # one attempt a round
    client = await aiohttp_client(create_app(settings, clock=clock))
    api = Api(client, settings, clock)
    endpoint = await register(api, receiver.url, event_types=["invoice.created"])
    await api.checkout()
    await api.checkout()

    async def failed() -> list[dict[str, Any]] | None:
        found = await messages(api, status="failed")
        return found if len(found) == 2 else None

    before = await until(failed)
    receiver.status = 200
    response = await client.post(
        f"/webhooks/endpoints/{endpoint['id']}/recover",
        json={"since": "2026-01-01T00:00:00Z"},
        headers=api.basic("onmarket"),
    )
    assert response.status == 202
    assert await response.json() == {"resent": 2}

    deliveries = await receiver.wait_for(4)
    assert {d.id for d in deliveries[2:]} == {m["id"] for m in before}

    async def delivered() -> list[dict[str, Any]] | None:
        found = await messages(api, status="delivered")
        return found if len(found) == 2 else None

    assert await until(delivered)


# -- secret rotation ----------------------------------------------------------------------------


async def test_a_rotated_secret_signs_beside_the_old_one_for_24_hours(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.status = 200
    endpoint = await register(api, receiver.url, event_types=["invoice.created"])
    old = endpoint["secret"]
    response = await api.client.post(
        f"/webhooks/endpoints/{endpoint['id']}/rotate-secret", headers=api.basic("onmarket")
    )
    rotated = await response.json()
    assert response.status == 200, rotated
    new = rotated["secret"]
    assert new != old

    await api.checkout()
    during = (await receiver.wait_for(1))[0]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    during.verified_by(old)
    during.verified_by(new)

    clock.advance(24 * 3600 + 1)
    await api.checkout()
    after = (await receiver.wait_for(2))[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    after.verified_by(new)
    with pytest.raises(Exception, match="No matching signature"):
        after.verified_by(old)


# -- platforms see only their own ---------------------------------------------------------------


async def test_a_platform_sees_and_touches_only_its_own_endpoints_and_messages(
    api: Api, receiver: Receiver
) -> None:
    receiver.status = 200
    endpoint = await register(api, receiver.url, event_types=["invoice.created"])
    await api.checkout()
    message = await _only_message(api, 1)
    other = api.basic("ondelivery")
    path = f"/webhooks/endpoints/{endpoint['id']}"

    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"description": "mine now"}),
        ("DELETE", path, None),
        ("POST", f"{path}/rotate-secret", None),
        ("POST", f"{path}/recover", {"since": "2026-01-01T00:00:00Z"}),
        ("POST", f"/webhooks/messages/{message['id']}/resend", None),
    ]:
        response = await api.client.request(method, url, json=body, headers=other)
        answer = await response.json()
        assert response.status == 404, (method, url, answer)
        assert answer["code"] in ("WEBHOOK_ENDPOINT_NOT_FOUND", "WEBHOOK_MESSAGE_NOT_FOUND")
    listed = await api.client.get("/webhooks/endpoints", headers=other)
    assert (await listed.json()) == {"endpoints": []}
    assert await messages(api, "ondelivery") == []
    admin = await api.client.get("/webhooks/endpoints", headers=api.basic("admin"))
    assert [e["id"] for e in (await admin.json())["endpoints"]] == [endpoint["id"]]
    buyer = await api.client.get("/webhooks/endpoints", headers=api.basic("usernew1"))
    assert buyer.status == 403


async def test_a_deleted_endpoint_is_gone(api: Api, receiver: Receiver) -> None:
    endpoint = await register(api, receiver.url)
    path = f"/webhooks/endpoints/{endpoint['id']}"
    response = await api.client.delete(path, headers=api.basic("onmarket"))
    assert response.status == 204
    response = await api.client.get(path, headers=api.basic("onmarket"))
    assert response.status == 404
    await api.checkout()
    await asyncio.sleep(0.2)
    assert receiver.deliveries == []


# -- SSRF -----------------------------------------------------------------------------------------


@pytest.fixture
async def production(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> TestClient[Any, Any]:
    settings = dataclasses.replace(
        config,
        mode="production",
        token_secret="x" * 32,
        callback_token="y" * 32,
        webhook_secret_key="z" * 32,
    )
    return await aiohttp_client(create_app(settings, clock=clock))


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # not https
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://localhost/hook",  # a name resolving to loopback
        "https://user:pw@example.com/hook",
        "ftp://example.com/hook",
    ],
)
async def test_production_refuses_urls_into_private_networks(
    production: TestClient[Any, Any], url: str
) -> None:
    headers = Api.basic("onmarket")
    response = await production.post("/webhooks/endpoints", json={"url": url}, headers=headers)
    body = await response.json()
    assert response.status == 400, body
    assert body["code"] == "WEBHOOK_URL_REFUSED"
    listed = await production.get("/webhooks/endpoints", headers=headers)
    assert (await listed.json()) == {"endpoints": []}


async def test_bad_bodies_are_refused_with_400(api: Api) -> None:
    headers = api.basic("onmarket")
    for body in [
        {},
        {"url": "http://127.0.0.1:9/x", "event_types": ["invoice.unknown"]},
        {"url": "http://127.0.0.1:9/x", "extra": 1},
        {"url": 5},
    ]:
        response = await api.client.post("/webhooks/endpoints", json=body, headers=headers)
        assert response.status == 400, body
        assert (await response.json())["code"] == "VALIDATION"
    response = await api.client.patch(
        "/webhooks/endpoints/ep_" + "0" * 24, json={"disabled": 1}, headers=headers
    )
    assert response.status == 400
