"""Webhooks end to end on SQLite: endpoints over HTTP, messages derived from real flows,
delivered to a real local receiver and verified with the Standard Webhooks library."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.config import Config
from tests.e2e.conftest import Api, FakeClock, copy_of, e2e_config
from tests.webhook_receiver import Receiver


def quick_webhooks(config: Config, schedule: str) -> Config:
    """``config`` with retries looked for every 20 ms on the retry ``schedule`` given."""
    return dataclasses.replace(
        config,
        webhook_retry_schedule=schedule,
        webhook_poll_interval_seconds=0.02,
        webhook_timeout_seconds=2.0,  # a loaded machine's receiver may be slow to answer
    )


@pytest.fixture
def config(tmp_path: Path, template_db: Path) -> Config:
    return e2e_config(
        copy_of(template_db, tmp_path),
        webhook_poll_interval_seconds=0.02,
        webhook_timeout_seconds=1.0,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


async def register(
    api: Api, url: str, account: str = "onmarket", expect: int = 201, **fields: Any
) -> dict[str, Any]:
    response = await api.client.post(
        "/webhooks/endpoints", json={"url": url, **fields}, headers=api.basic(account)
    )
    body: dict[str, Any] = await response.json()
    assert response.status == expect, body
    return body


async def messages(api: Api, account: str = "onmarket", **query: str) -> list[dict[str, Any]]:
    response = await api.client.get("/webhooks/messages", params=query, headers=api.basic(account))
    body = await response.json()
    assert response.status == 200, body
    found: list[dict[str, Any]] = body["messages"]
    return found


async def until(condition: Any, within: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await condition()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_checkout_and_its_payment_arrive_signed_in_order(
    api: Api, receiver: Receiver
) -> None:
    endpoint = await register(api, receiver.url)
    assert endpoint["secret"].startswith("whsec_")

    created = await api.checkout()
    await api.pay(created["xendit_invoice"])

    first, second = await receiver.wait_for(2)
    bodies = [d.verified_by(endpoint["secret"]) for d in (first, second)]
    assert [b["type"] for b in bodies] == ["invoice.created", "invoice.paid"]
    assert [b["data"]["status"] for b in bodies] == ["PENDING", "PAID"]
    assert bodies[0]["data"]["sequence"] < bodies[1]["data"]["sequence"]
    assert all(b["data"]["invoice"] == created["invoice"] for b in bodies)
    assert all(b["data"]["service"] == "ONMARKET" for b in bodies)
    assert first.id != second.id
    assert first.id.startswith("msg_")
    assert first.headers["content-type"] == "application/json"

    log = await until(lambda: _delivered(api, 2))
    assert all(m["attempts"][0]["status"] == 200 for m in log)
    assert log[0]["attempts"][0]["response"] == "answer 200"


async def _delivered(api: Api, count: int) -> list[dict[str, Any]] | None:
    found = await messages(api, status="delivered")
    return found if len(found) >= count else None


# -- every event type, from real flows ---------------------------------------------------------


async def _types_received(receiver: Receiver, count: int, secret: str) -> list[str]:
    deliveries = await receiver.wait_for(count)
    await asyncio.sleep(0.1)  # nothing more than expected arrives
    assert len(receiver.deliveries) == count, [d.json()["type"] for d in receiver.deliveries]
    return [d.verified_by(secret)["type"] for d in deliveries]


async def test_completing_every_store_sends_transaction_and_invoice_completed(
    api: Api, receiver: Receiver
) -> None:
    secret = (await register(api, receiver.url))["secret"]
    created = await api.checkout(stores=2)
    await api.pay(created["xendit_invoice"])
    for number in [t["invoice_onmarket"] for t in created["transaction"]]:
        await api.platform("done", invoice_id=created["invoice"], invoice_onmarket=number)

    types = await _types_received(receiver, 5, secret)

    assert types == [
        "invoice.created",
        "invoice.paid",
        "transaction.completed",
        "transaction.completed",
        "invoice.completed",
    ]
    last = receiver.deliveries[-1].json()["data"]
    assert last["status"] == "COMPLETED"
    assert last["invoice_onmarket"] == created["transaction"][1]["invoice_onmarket"]


async def test_a_refund_sends_requested_refunded_and_invoice_refunded(
    api: Api, receiver: Receiver
) -> None:
    secret = (await register(api, receiver.url))["secret"]
    created = await api.checkout(stores=1)
    await api.pay(created["xendit_invoice"])
    number = created["transaction"][0]["invoice_onmarket"]
    await api.platform(
        "cancel", invoice_id=created["invoice"], invoice_onmarket=number, buyer_username="usernew1"
    )

    types = await _types_received(receiver, 5, secret)

    assert types == [
        "invoice.created",
        "invoice.paid",
        "transaction.refund_requested",
        "transaction.refunded",
        "invoice.refunded",
    ]
    requested = receiver.deliveries[2].json()["data"]
    assert requested["transaction_status"] == "REFUND_IN_PROCESS"


async def test_cancel_then_a_late_payment_sends_canceled_and_late_credited(
    api: Api, receiver: Receiver
) -> None:
    secret = (await register(api, receiver.url))["secret"]
    created = await api.checkout(stores=1)
    await api.platform("cancel", invoice_id=created["invoice"])
    total = 10000 + 5000 + 100  # checkout_body's one store
    response = await api.client.post(
        "/callback/xendit/invoice",
        json={
            "id": "late-pay-1",
            "external_id": created["invoice"],
            "status": "PAID",
            "amount": total,
            "paid_amount": total,
            "paid_at": "2026-03-01T08:00:01.000Z",
            "payment_method": "BANK_TRANSFER",
            "payment_channel": "BCA",
        },
        headers={"x-callback-token": api.config.callback_token},
    )
    assert response.status == 200, await response.text()

    types = await _types_received(receiver, 3, secret)

    assert types == ["invoice.created", "invoice.canceled", "payment.late_credited"]
    assert receiver.deliveries[-1].json()["data"]["status"] == "CANCELED"


async def test_expiry_and_mark_paid_send_their_types(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    secret = (await register(api, receiver.url))["secret"]
    expiring = await api.checkout(stores=1)
    clock.advance(api.config.invoice_ttl_seconds + 1)
    await api.wait_until_expired_in_view(expiring["invoice"])
    marked = await api.checkout(stores=1)
    await api.platform(
        "mark-paid", invoice_id=marked["invoice"], reference="TRF-1", reason="bank transfer"
    )

    types = await _types_received(receiver, 4, secret)

    assert types == ["invoice.created", "invoice.expired", "invoice.created", "invoice.paid"]
    assert receiver.deliveries[-1].json()["data"]["channel"] == "MANUAL"


async def test_an_endpoint_gets_only_the_types_it_selects_and_only_its_service(
    api: Api, receiver: Receiver
) -> None:
    secret = (await register(api, receiver.url, event_types=["invoice.paid"]))["secret"]
    async with Receiver() as other:
        await register(api, other.url, account="ondelivery")
        created = await api.checkout()
        await api.pay(created["xendit_invoice"])

        types = await _types_received(receiver, 1, secret)

        assert types == ["invoice.paid"]
        assert other.deliveries == []  # an ONMARKET invoice is not ONDELIVERY's business


async def test_a_disabled_endpoint_gets_nothing_until_enabled(api: Api, receiver: Receiver) -> None:
    endpoint = await register(api, receiver.url)
    path = f"/webhooks/endpoints/{endpoint['id']}"
    response = await api.client.patch(path, json={"disabled": True}, headers=api.basic("onmarket"))
    assert response.status == 200
    assert (await response.json())["disabled"] is True

    missed = await api.checkout()
    await asyncio.sleep(0.2)
    assert receiver.deliveries == []

    response = await api.client.patch(path, json={"disabled": False}, headers=api.basic("onmarket"))
    assert response.status == 200
    assert (await response.json())["disabled"] is False
    sent = await api.checkout()

    (delivery,) = await receiver.wait_for(1)
    assert delivery.verified_by(endpoint["secret"])["data"]["invoice"] == sent["invoice"]
    # What happened while it was disabled was never queued for it: not sent on enabling, not
    # listed, and not recoverable (recover resends failed messages only).
    await asyncio.sleep(0.2)
    assert len(receiver.deliveries) == 1
    assert await messages(api, invoice=missed["invoice"]) == []
    response = await api.client.post(
        f"{path}/recover", json={"since": "2020-01-01T00:00:00Z"}, headers=api.basic("onmarket")
    )
    assert await response.json() == {"resent": 0}
    await asyncio.sleep(0.1)
    assert len(receiver.deliveries) == 1


async def test_the_delivery_log_filters_by_endpoint_invoice_and_status(
    api: Api, receiver: Receiver
) -> None:
    """Two endpoints (one answering 500) and two invoices: each filter keeps only its own."""
    async with Receiver(status=500) as failing:
        good = await register(api, receiver.url, event_types=["invoice.created"])
        bad = await register(api, failing.url, event_types=["invoice.created"])
        first, second = await api.checkout(), await api.checkout()

        async def all_tried() -> list[dict[str, Any]] | None:
            listed = await messages(api)
            return listed if len(listed) == 4 and all(m["attempts"] for m in listed) else None

        await until(all_tried)

    def keys(listed: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {(m["endpoint_id"], m["invoice"], m["status"]) for m in listed}

    good_id, bad_id = good["id"], bad["id"]
    one, two = first["invoice"], second["invoice"]
    assert keys(await messages(api, endpoint_id=good_id)) == {
        (good_id, one, "delivered"),
        (good_id, two, "delivered"),
    }
    assert keys(await messages(api, invoice=two)) == {
        (good_id, two, "delivered"),
        (bad_id, two, "pending"),
    }
    assert keys(await messages(api, status="pending")) == {
        (bad_id, one, "pending"),
        (bad_id, two, "pending"),
    }
    assert keys(await messages(api, endpoint_id=bad_id, invoice=one, status="pending")) == {
        (bad_id, one, "pending")
    }
    assert await messages(api, endpoint_id=good_id, status="failed") == []


async def test_a_deleted_endpoints_pending_messages_stay_pending_and_are_never_sent(
    api: Api, clock: FakeClock
) -> None:
    async with Receiver(status=500) as failing:
        endpoint = await register(api, failing.url, event_types=["invoice.created"])
        await api.checkout()
        await failing.wait_for(1)  # failed once; the retry is due in about 5 s
        response = await api.client.delete(
            f"/webhooks/endpoints/{endpoint['id']}", headers=api.basic("onmarket")
        )
        assert response.status == 204
        failing.status = 200
        clock.advance(3600)  # long past every retry of the round
        await asyncio.sleep(0.3)

        assert len(failing.deliveries) == 1
    (message,) = await messages(api, endpoint_id=endpoint["id"])
    assert message["status"] == "pending"
    assert len(message["attempts"]) == 1
