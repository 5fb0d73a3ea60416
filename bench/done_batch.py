"""Batch completion: 100 PAID transactions completed by one ``POST /invoice/done/batch`` against
100 others completed by 100 single ``POST /invoice/done`` calls, in the same run.

Both on one keep-alive connection to a real ``python -m service serve`` (development mode,
sandbox gateway, ``synchronous=FULL`` unless ``--synchronous`` says otherwise). Each round sets
up 200 fresh PAID transactions (BALANCE checkouts of a registered buyer, two stores each), then
times the batch and the singles in turn, alternating which goes first from round to round so a
drifting machine affects both alike. The batch's items run concurrently, so their appends share
the store's group commits; the singles, one after another on one connection, each wait for a
commit of their own.

Target: the batch >= 3x faster than the singles (the median of the rounds' ratios). The exit
status is 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.fixtures import ADMIN_AUTH, SetupFailed, register_buyers
from bench.loadgen import JSON_HEADERS, Tokens, checkout_body
from bench.servers import start_service

TARGET = 3.0
ITEMS = 100  # transactions on each side per round: two per invoice
BUYER = "dbbuyer"
PLATFORM = {
    "Authorization": "Basic " + base64.b64encode(b"onmarket:onmarket").decode(),
    **JSON_HEADERS,
}


async def post(
    session: aiohttp.ClientSession, path: str, headers: dict[str, str], body: Any
) -> Any:
    async with session.post(path, data=orjson.dumps(body), headers=headers) as answer:
        content = await answer.read()
        if answer.status != 200:
            raise SetupFailed(f"POST {path}: {answer.status} {content[:300]!r}")
        return orjson.loads(content)


async def paid_transactions(
    session: aiohttp.ClientSession, tokens: Tokens, tag: str, count: int
) -> list[dict[str, str]]:
    """``count`` PAID transactions as batch items (BALANCE checkouts are paid at once)."""
    items: list[dict[str, str]] = []
    for i in range(count // 2):
        prefix = f"INV/DB/{tag}/{i}"
        async with session.post(
            "/payment-checkout", data=checkout_body(prefix, "BALANCE"), headers=tokens.fresh(BUYER)
        ) as answer:
            content = await answer.read()
            if answer.status != 200:
                raise SetupFailed(f"checkout: {answer.status} {content[:300]!r}")
            invoice = orjson.loads(content)["invoice"]
        items += [{"invoice_id": invoice, "invoice_onmarket": f"{prefix}-{n}"} for n in (1, 2)]
    return items


async def by_batch(session: aiohttp.ClientSession, items: list[dict[str, str]]) -> float:
    started = time.perf_counter()
    answer = await post(
        session, "/invoice/done/batch", PLATFORM, {"platform": "ONMARKET", "items": items}
    )
    seconds = time.perf_counter() - started
    failed = [r for r in answer["results"] if r["status"] != "success"]
    if failed:
        raise SetupFailed(f"batch items failed: {failed[:3]}")
    return seconds


async def by_singles(session: aiohttp.ClientSession, items: list[dict[str, str]]) -> float:
    started = time.perf_counter()
    for item in items:
        await post(session, "/invoice/done", PLATFORM, {"platform": "ONMARKET", **item})
    return time.perf_counter() - started


async def measure(base_url: str, token_secret: str, rounds: int) -> list[tuple[float, float]]:
    tokens = Tokens(token_secret)
    # One connection, kept alive: what a platform's back office would hold open.
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        admin = {"Authorization": ADMIN_AUTH, **JSON_HEADERS}
        # Each round's 2 x ITEMS transactions are ITEMS invoices of 40,200; and the warm-up's 2.
        amount = 40200 * (ITEMS * rounds + 2)
        await post(session, "/balance/topup", admin, {"username": BUYER, "amount": amount})
        # A warm-up: the platform's Basic login (scrypt) once, and both paths once.
        warm = await paid_transactions(session, tokens, "warm", 4)
        await by_batch(session, warm[:2])
        await by_singles(session, warm[2:])
        results = []
        for index in range(rounds):
            batch_items = await paid_transactions(session, tokens, f"b{index}", ITEMS)
            single_items = await paid_transactions(session, tokens, f"s{index}", ITEMS)
            if index % 2 == 0:
                batch = await by_batch(session, batch_items)
                singles = await by_singles(session, single_items)
            else:
                singles = await by_singles(session, single_items)
                batch = await by_batch(session, batch_items)
            print(
                f"  round {index + 1}: batch {batch * 1000:7.1f} ms   100 singles"
                f" {singles * 1000:7.1f} ms   {singles / batch:5.1f}x",
                flush=True,
            )
            results.append((batch, singles))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--synchronous", default="FULL", choices=["OFF", "NORMAL", "FULL", "EXTRA"])
    args = parser.parse_args()
    token_secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="done-batch-") as folder:
        work = Path(folder)
        database = work / "invoices.db"
        asyncio.run(register_buyers(database, [BUYER]))
        server = start_service(
            "service",
            database,
            work / "service.log",
            token_secret=token_secret,
            synchronous=args.synchronous,
        )
        try:
            server.wait_ready()
            server.wait_settled(30)
            print(
                f"done/batch: {ITEMS} transactions by one batch vs {ITEMS} single dones, one"
                f" keep-alive connection, synchronous={args.synchronous}",
                flush=True,
            )
            results = asyncio.run(measure(server.base_url, token_secret, args.rounds))
        finally:
            server.stop()
    ratios = [singles / batch for batch, singles in results]
    batch_ms = statistics.median(b for b, _ in results) * 1000
    singles_ms = statistics.median(s for _, s in results) * 1000
    ratio = statistics.median(ratios)
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(
        f"median: batch {batch_ms:.1f} ms, singles {singles_ms:.1f} ms, {ratio:.1f}x"
        f" (range {min(ratios):.1f}-{max(ratios):.1f}x; target >= {TARGET:.0f}x: {verdict})"
    )
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
