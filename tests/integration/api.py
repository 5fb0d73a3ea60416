"""Talking to the app in-process while a test fills a database for the command line to read."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

Client = TestClient[web.Request, web.Application]
# Development accounts of the buyer role: a checkout's sellers must be accounts.
SELLERS = ("seller1", "testing123", "testing12345")


async def call(
    client: Client, method: str, path: str, expect: int = 200, **options: Any
) -> dict[str, Any]:
    response = await client.request(method, path, **options)
    body: dict[str, Any] = await response.json()
    assert response.status == expect, (path, body)
    return body


def checkout_body(service: str, source: str, numbers: list[str], **line: Any) -> dict[str, Any]:
    """A valid checkout of one store per marketplace number; ``line`` adds to every store."""
    lines = [
        {
            "amount": 10000 * (i + 1),
            "freight_charge": 5000,
            "insurance_amount": 100,
            "commission_onmarket": 1000,
            "seller_username": SELLERS[i % len(SELLERS)],
            "invoice_onmarket": number,
            **line,
        }
        for i, number in enumerate(numbers)
    ]
    total = sum(x["amount"] + x["freight_charge"] + x["insurance_amount"] for x in lines)
    return {"total_amount": total, "service": service, "source": source, "transaction": lines}
