"""What the HTTP benchmark's scenarios need before they run.

- Buyer accounts for the BALANCE checkouts (a top-up needs an account; a Bearer token does not):
  registered before the service starts, by the application's own ``register_user`` (what
  ``python -m service users add`` calls), sharing one scrypt hash instead of paying a process
  and 50 ms of scrypt for each of hundreds of accounts.
- Over HTTP, once the service runs: their balances topped up (``POST /balance/topup``, Basic
  admin), the invoices the detail reads look at (checkouts), and one detail answer, for the bare
  app's GET to send the same bytes.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.loadgen import JSON_HEADERS, Tokens, checkout_body
from eventstore import open_store
from service.app import make_gateway, make_service
from service.application import Context, RegisterUser
from service.config import load_config
from service.security import hash_password
from service.views.backends import projectors_for

ADMIN_AUTH = "Basic " + base64.b64encode(b"admin:admin").decode()
SETUP_CONCURRENCY = 16


class SetupFailed(RuntimeError):
    """A set-up request was refused: the benchmark cannot measure what it meant to."""


def read_buyers(tag: str, reads: int) -> list[str]:
    """The buyers of the invoices ``prepare`` creates for the detail reads (to be registered
    before the service starts: a token must name an account)."""
    return [f"hr{tag}b{i}" for i in range(reads)]


async def register_buyers(database: Path | str, names: list[str]) -> None:
    """Buyer accounts ``names`` in a database no server has open (an SQLite file or a
    ``postgresql://`` URL)."""
    config = load_config(None, environ={}, database=str(database))
    password_hash = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16))
    gateway = make_gateway(config)
    try:
        async with await open_store(database, projectors=projectors_for(database)) as store:
            service = make_service(store, gateway, config)
            await asyncio.gather(
                *(
                    service.handle(
                        RegisterUser(name, "buyer", None, password_hash), Context("bench")
                    )
                    for name in names
                )
            )
    finally:
        await gateway.close()


async def _limited(calls: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
) -> Any:
    async with session.request(method, path, data=body, headers=headers) as answer:
        content = await answer.read()
        if answer.status != 200:
            raise SetupFailed(f"{method} {path}: {answer.status} {content[:300]!r}")
        return orjson.loads(content)


async def prepare(
    base_url: str,
    token_secret: str,
    *,
    balance_buyers: list[str],
    top_up: int,
    reads: int,
    tag: str,
) -> tuple[list[list[str]], dict[str, Any]]:
    """Top up ``balance_buyers``; create ``reads`` invoices of distinct buyers. Returns the
    invoices as ``[invoice, buyer]`` pairs and the detail answer of the first."""
    tokens = Tokens(token_secret)
    admin = {"Authorization": ADMIN_AUTH, **JSON_HEADERS}
    async with aiohttp.ClientSession(base_url) as session:
        top_ups = [
            _send(
                session,
                "POST",
                "/balance/topup",
                admin,
                orjson.dumps({"username": name, "amount": top_up}),
            )
            for name in balance_buyers
        ]
        # The first alone: until one Basic login is remembered, every concurrent one pays for its
        # own scrypt (CPU, and 16 MiB in each worker thread, which the server's RSS keeps).
        await _limited(top_ups[:1])
        await _limited(top_ups[1:])
        buyers = read_buyers(tag, reads)
        answers = await _limited(
            [
                _send(
                    session,
                    "POST",
                    "/payment-checkout",
                    tokens.fresh(buyer),
                    checkout_body(f"INV/HR/{tag}/{i}", "XENDIT"),
                )
                for i, buyer in enumerate(buyers)
            ]
        )
        pairs = [[answer["invoice"], buyer] for answer, buyer in zip(answers, buyers, strict=True)]
        invoice, buyer = pairs[0]
        detail = await _send(
            session, "GET", f"/invoice/detail?invoice={invoice}", tokens.headers(buyer)
        )
    return pairs, detail
