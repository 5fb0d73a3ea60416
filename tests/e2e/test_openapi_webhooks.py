"""The OpenAPI document's ``webhooks``: one delivery per event type, and real deliveries (to a
real local receiver) fit the headers and body it documents for their type."""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import jsonschema_rs

from service.app import create_app
from service.config import Config
from service.domain.webhook_delivery import WEBHOOK_EVENT_TYPES
from tests.e2e.conftest import Api, AppFactory, FakeClock
from tests.e2e.test_openapi import document
from tests.e2e.test_webhooks import register
from tests.webhook_receiver import Delivery, Receiver

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _post(doc: dict[str, Any], event_type: str) -> dict[str, Any]:
    post: dict[str, Any] = doc["webhooks"][event_type]["post"]
    return post


def body_validator(doc: dict[str, Any], event_type: str) -> Any:
    schema = _post(doc, event_type)["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator(schema)


def problems(doc: dict[str, Any], delivery: Delivery) -> list[str]:
    """Where ``delivery`` differs from what the document says of its type (none: it fits)."""
    body = delivery.json()
    found = [str(error) for error in body_validator(doc, body["type"]).iter_errors(body)]
    for parameter in _post(doc, body["type"])["parameters"]:
        value = delivery.headers.get(parameter["name"])
        if value is None or not re.fullmatch(parameter["schema"]["pattern"], value):
            found.append(f"header {parameter['name']}: {value!r}")
    return found


async def test_the_document_describes_each_event_types_delivery(api: Api) -> None:
    doc = await document(api)

    assert list(doc["webhooks"]) == list(WEBHOOK_EVENT_TYPES)
    for event_type, item in doc["webhooks"].items():
        assert set(item) == {"post"}, event_type
        post = item["post"]
        assert [p["name"] for p in post["parameters"]] == list(HEADERS)
        assert all(p["in"] == "header" and p["required"] for p in post["parameters"])
        assert set(post["responses"]) == {"2XX", "410", "default"}
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["type"] == {"const": event_type}
        data = body["properties"]["data"]
        assert {"invoice", "status", "service", "sequence"} <= set(data["required"])
    page = await (await api.client.get("/docs")).text()
    for event_type in WEBHOOK_EVENT_TYPES:  # the docs page shows them too
        assert f"<code>{event_type}</code>" in page, event_type
    assert "webhook-signature" in page
    signature = _post(doc, "invoice.paid")["parameters"][2]
    assert "space-separated" in signature["description"]
    assert re.fullmatch(signature["schema"]["pattern"], "v1,bmV3 v1,b2xk")


async def test_real_deliveries_fit_the_documented_headers_and_bodies(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    settings = dataclasses.replace(config, webhook_poll_interval_seconds=0.02)
    api = Api(await aiohttp_client(create_app(settings, clock=clock)), settings, clock)
    doc = await document(api)
    async with Receiver() as receiver:
        secret = (await register(api, receiver.url))["secret"]
        created = await api.checkout(stores=1)
        await api.pay(created["xendit_invoice"])
        number = created["transaction"][0]["invoice_onmarket"]
        await api.platform("done", invoice_id=created["invoice"], invoice_onmarket=number)

        deliveries = await receiver.wait_for(4)

    types = [d.verified_by(secret)["type"] for d in deliveries]
    assert types == [
        "invoice.created",
        "invoice.paid",
        "transaction.completed",
        "invoice.completed",
    ]
    for delivery in deliveries:
        assert problems(doc, delivery) == [], delivery.json()
    # The schemas are exact: a field more, or one missing, does not fit.
    paid = deliveries[1].json()
    extra, missing = copy.deepcopy(paid), copy.deepcopy(paid)
    extra["data"]["undocumented"] = 1
    del missing["data"]["channel"]
    for wrong in (extra, missing):
        assert not body_validator(doc, "invoice.paid").is_valid(wrong)
    assert not body_validator(doc, "invoice.created").is_valid(paid)


async def test_every_event_types_real_delivery_fits_its_documented_body(
    aiohttp_client: AppFactory, config: Config, clock: FakeClock
) -> None:
    """Real flows that make all ten types, among them an invoice completed by a refund (its
    ``amount`` is there) and one refunded; each delivery fits its type's schema."""
    settings = dataclasses.replace(config, webhook_poll_interval_seconds=0.02)
    api = Api(await aiohttp_client(create_app(settings, clock=clock)), settings, clock)
    doc = await document(api)
    async with Receiver() as receiver:
        await register(api, receiver.url)
        await _one_store_done_and_one_refunded(api)
        refunded = await api.checkout(stores=1)
        await api.pay(refunded["xendit_invoice"])
        await _cancel(api, refunded, refunded["transaction"][0]["invoice_onmarket"])
        canceled = await api.checkout(stores=1)
        await _cancel(api, canceled)
        await _pay_late(api, canceled["invoice"])
        expiring = await api.checkout(stores=1)
        clock.advance(settings.invoice_ttl_seconds + 1)
        await api.wait_until_expired_in_view(expiring["invoice"])

        deliveries = await receiver.wait_for(16)

    assert {d.json()["type"] for d in deliveries} == set(WEBHOOK_EVENT_TYPES)
    for delivery in deliveries:
        assert problems(doc, delivery) == [], delivery.json()
    completed = [d.json() for d in deliveries if d.json()["type"] == "invoice.completed"]
    assert [body["data"]["amount"] for body in completed] == [20_000 + 5_000 + 100]


async def _one_store_done_and_one_refunded(api: Api) -> None:
    created = await api.checkout(stores=2)
    await api.pay(created["xendit_invoice"])
    first, second = (t["invoice_onmarket"] for t in created["transaction"])
    await api.platform("done", invoice_id=created["invoice"], invoice_onmarket=first)
    await _cancel(api, created, second)


async def _cancel(api: Api, created: dict[str, Any], store: str | None = None) -> None:
    fields: dict[str, Any] = (
        {"invoice_onmarket": store, "buyer_username": "usernew1"} if store else {}
    )
    await api.platform("cancel", invoice_id=created["invoice"], **fields)


async def _pay_late(api: Api, invoice: str) -> None:
    total = 10_000 + 5_000 + 100  # checkout_body's one store
    response = await api.client.post(
        "/callback/xendit/invoice",
        json={
            "id": "late-pay-openapi",
            "external_id": invoice,
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
