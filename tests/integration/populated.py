"""A database the real app filled through its API with invoices in every final state (paid and
completed, refunded, canceled, paid from the balance, credited after a wrong amount, expired and
then paid), and what was made: for the command-line tests that audit, copy and move a log.
``final_states_template`` (tests/integration/conftest.py) makes one per session; tests copy it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.config import Config, load_config
from tests.credentials import basic, bearer
from tests.integration.api import call, checkout_body

BUYER = "usernew1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def app_config(database: Path) -> Config:
    return load_config(
        None,
        {},
        database=str(database),
        refund_delay_seconds=0,
        expiry_interval_seconds=0.05,
        log_level="WARNING",
    )


class Populated:
    """What ``populate`` made: each invoice's id and the API's history of it."""

    def __init__(self) -> None:
        self.invoices: dict[str, str] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}


async def populate(database: Path) -> Populated:
    """Invoices in every final state through the real app, and the API's history of each."""
    config, clock = app_config(database), Clock()
    buyer = bearer(config, clock, BUYER)
    made = Populated()
    async with TestClient(TestServer(create_app(config, clock=clock))) as client:

        async def checkout(name: str, source: str, numbers: list[str]) -> dict[str, Any]:
            body = checkout_body("ONMARKET", source, numbers)
            answer = await call(client, "POST", "/payment-checkout", json=body, headers=buyer)
            made.invoices[name] = answer["invoice"]
            return answer

        async def pay(reference: str) -> None:
            await call(client, "POST", f"/sandbox/invoices/{reference}/pay", json={})

        async def platform(action: str, **body: Any) -> None:
            await call(
                client,
                "POST",
                f"/invoice/{action}",
                json={"platform": "ONMARKET", **body},
                headers=basic("onmarket"),
            )

        async def history(name: str) -> list[dict[str, Any]]:
            answer = await call(
                client,
                "GET",
                "/invoice/history",
                params={"invoice": made.invoices[name]},
                headers=bearer(config, clock, "admin", role="admin"),
            )
            events: list[dict[str, Any]] = answer["events"]
            return events

        async def until(name: str, last_type: str) -> None:
            for _ in range(200):
                if (await history(name))[-1]["type"] == last_type:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"{name} never got {last_type}")

        await call(
            client,
            "POST",
            "/balance/topup",
            json={"username": BUYER, "amount": 500000},
            headers=basic("admin"),
        )
        mixed = await checkout("mixed", "XENDIT", ["AUD-1", "AUD-2"])
        await pay(mixed["xendit_invoice"])
        await platform("done", invoice_id=mixed["invoice"], invoice_onmarket="AUD-1")
        await platform(
            "cancel", invoice_id=mixed["invoice"], invoice_onmarket="AUD-2", buyer_username=BUYER
        )
        await until("mixed", "RefundCompleted")
        await checkout("balance", "BALANCE", ["AUD-3"])
        canceled = await checkout("canceled", "XENDIT", ["AUD-4"])
        await platform("cancel", invoice_id=canceled["invoice"])
        mismatched = await checkout("mismatched", "XENDIT", ["AUD-6"])
        for payment_id, amount in (("aud-wrong", 15000), ("aud-right", 15100)):
            callback = {
                "id": payment_id,
                "external_id": mismatched["invoice"],
                "status": "PAID",
                "paid_amount": amount,
            }
            token = {"x-callback-token": config.callback_token}
            await call(client, "POST", "/callback/xendit/invoice", json=callback, headers=token)
        late = await checkout("late", "XENDIT", ["AUD-5"])
        clock.now += timedelta(hours=3)
        await until("late", "InvoiceExpired")
        await pay(late["xendit_invoice"])
        for name in made.invoices:
            made.histories[name] = await history(name)
    return made
