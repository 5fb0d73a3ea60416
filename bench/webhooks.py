"""Webhooks: commit-to-delivery latency, delivery throughput, and checkout with webhooks on.

In one process (the service's app on an aiohttp server, a local receiver, and the client),
on a fresh SQLite file (``synchronous=FULL``) or the empty PostgreSQL database ``--db`` names
(its sender then claims each message), development mode, the sandbox gateway:

1. **Latency**: ``--latency`` sequential checkouts, one endpoint selecting ``invoice.created``;
   each delivery's arrival (wall clock) minus its event's commit time (the body's
   ``timestamp``, milliseconds). Target: p50 <= 50 ms.
2. **Throughput**: 1,000 messages queued at once (through the application, as the outbox
   appends them) to an endpoint answering 200 at once, then one sender delivers and records
   them all. Target: >= 500 messages/s, counted when the last attempt is recorded.
3. **Checkout on vs off**: ``--connections`` concurrent checkouts for ``--duration`` s with no
   endpoint, then with an endpoint that takes 10 s to answer every delivery (so deliveries pile
   up in flight), alternating ``--rounds`` times; the best of each. Target: on >= 0.9 x off.

Run it as ``python -m bench.webhooks`` (``make bench`` does); ``--quick`` for a short check.
The exit status is 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from eventstore import Checkpoint
from service.app import create_app
from service.application import Context
from service.application.webhooks import CreateWebhookEndpoint, QueueWebhookMessages
from service.config import load_config
from service.domain.webhook_events import WebhookMessageQueued
from service.http.keys import SERVICE, STORE, WEBHOOK_SECRETS
from service.logging import configure_logging
from service.security import TokenClaims, issue_token
from service.webhooks.signing import new_secret

LATENCY_TARGET_MS, THROUGHPUT_TARGET, RATIO_TARGET = 50.0, 500.0, 0.9
PLATFORM = {"Authorization": "Basic " + base64.b64encode(b"onmarket:onmarket").decode()}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--latency", type=int, default=300, help="checkouts timed one by one")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--db", help="a postgresql:// URL of an empty database (default: a fresh SQLite file)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.latency, args.duration, args.rounds = 50, 1.5, 1
    return args


class Receiver:
    """Records each delivery's arrival; answers after ``delay`` seconds."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.arrivals: list[tuple[float, bytes]] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals.append((time.time(), await request.read()))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=204)

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = getattr(site._server, "sockets")[0].getsockname()[1]  # noqa: B009
        return runner


def checkout_body(n: int) -> dict[str, Any]:
    line = {
        "amount": 10000,
        "freight_charge": 5000,
        "insurance_amount": 100,
        "commission_onmarket": 1000,
        "seller_username": "seller1",
        "invoice_onmarket": f"INV/BENCH/{n}",
    }
    return {"total_amount": 15100, "service": "ONMARKET", "source": "XENDIT", "transaction": [line]}


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(
            None,
            {},
            database=args.db or str(Path(folder) / "invoices.db"),
            log_level="WARNING",
            log_format="json",
            port=0,
            public_base_url="http://127.0.0.1:1",
            webhook_concurrency=100,
        )
        configure_logging("WARNING", "json")
        app = create_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = getattr(site._server, "sockets")[0].getsockname()[1]  # noqa: B009
        receiver = Receiver()
        receiving = await receiver.start()
        base = f"http://127.0.0.1:{port}"
        token = issue_token(
            TokenClaims("usernew1", "buyer", None, datetime.now(UTC) + timedelta(days=1)),
            config.token_secret.encode(),
        )
        buyer = {"Authorization": f"Bearer {token}"}
        try:
            async with aiohttp.ClientSession(base) as client:
                p50, p99 = await latency(client, buyer, receiver, args.latency)
                per_second = await throughput(app, receiver, args.messages)
                off, on = await checkouts(client, buyer, receiver, args)
        finally:
            await receiving.cleanup()
            await runner.cleanup()
    ratio = on / off if off else 0.0
    print(f"commit-to-delivery latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p50 <= 50)")
    print(f"delivery throughput: {per_second:.0f} messages/s (target >= 500)")
    print(f"checkout: webhooks off {off:.0f}/s, on {on:.0f}/s: {ratio:.2f} x (target >= 0.9)")
    missed = p50 > LATENCY_TARGET_MS or per_second < THROUGHPUT_TARGET or ratio < RATIO_TARGET
    return 1 if missed else 0


async def latency(
    client: aiohttp.ClientSession, buyer: dict[str, str], receiver: Receiver, count: int
) -> tuple[float, float]:
    async with client.post(
        "/webhooks/endpoints",
        json={"url": f"http://127.0.0.1:{receiver.port}/hook", "event_types": ["invoice.created"]},
        headers=PLATFORM,
    ) as answer:
        endpoint = await answer.json()
        assert answer.status == 201, endpoint
    for n in range(count):
        async with client.post("/payment-checkout", json=checkout_body(n), headers=buyer) as done:
            assert done.status == 200, await done.text()
        await asyncio.sleep(0.01)  # one at a time: each delivery's own latency
    deadline = time.monotonic() + 30
    while len(receiver.arrivals) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # the receiver's own count: polled, as a client would
    delays = []
    for arrived, body in receiver.arrivals:
        stamp = datetime.fromisoformat(orjson.loads(body)["timestamp"].replace("Z", "+00:00"))
        delays.append((arrived - stamp.timestamp()) * 1000)
    async with client.delete(f"/webhooks/endpoints/{endpoint['id']}", headers=PLATFORM):
        pass
    receiver.arrivals.clear()
    quantiles = statistics.quantiles(delays, n=100)
    return statistics.median(delays), quantiles[98]


async def throughput(app: web.Application, receiver: Receiver, count: int) -> float:
    service, store = app[SERVICE], app[STORE]
    endpoint = await service.handle(
        CreateWebhookEndpoint(
            "ep_" + "b" * 24,
            "ONMARKET",
            f"http://127.0.0.1:{receiver.port}/hook",
            ("invoice.expired",),  # nothing else of the run selects it
            "throughput",
            app[WEBHOOK_SECRETS].seal(new_secret()),
            "bench",
        ),
        Context("bench"),
    )
    now = datetime.now(UTC)
    started = time.perf_counter()
    for first in range(0, count, 100):
        batch = tuple(
            WebhookMessageQueued(
                f"msg_{n:032x}",
                endpoint.endpoint,
                "ONMARKET",
                "OM0000000000000",
                "invoice.expired",
                '{"type":"invoice.expired"}',
                1,
                now,
            )
            for n in range(first, min(first + 100, count))
        )
        head = await store.head_position()
        await service.handle(
            QueueWebhookMessages(batch, Checkpoint("bench-fill", head)), Context("bench")
        )
    views = app[SERVICE].views
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = await views.webhook_messages(
            None, endpoint=endpoint.endpoint, status="delivered", invoice=None, limit=count
        )
        if len(done) >= count:
            break
        await asyncio.sleep(0.02)
    return count / (time.perf_counter() - started)


async def checkouts(
    client: aiohttp.ClientSession,
    buyer: dict[str, str],
    receiver: Receiver,
    args: argparse.Namespace,
) -> tuple[float, float]:
    numbers = iter(range(10**6, 10**8))
    best = {"off": 0.0, "on": 0.0}
    endpoint: dict[str, Any] | None = None
    for _ in range(args.rounds):
        for cell in ("off", "on"):
            if cell == "on":
                receiver.delay = 10.0  # an endpoint that takes 10 s to answer
                async with client.post(
                    "/webhooks/endpoints",
                    json={"url": f"http://127.0.0.1:{receiver.port}/hook"},
                    headers=PLATFORM,
                ) as answer:
                    endpoint = await answer.json()
            done = 0
            stop = time.monotonic() + args.duration

            async def worker(stop: float = stop) -> None:
                nonlocal done
                while time.monotonic() < stop:
                    body = checkout_body(next(numbers))
                    async with client.post("/payment-checkout", json=body, headers=buyer) as r:
                        await r.read()
                        if r.status == 200:
                            done += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.connections)))
            best[cell] = max(best[cell], done / (time.perf_counter() - started))
            if endpoint is not None:
                async with client.delete(f"/webhooks/endpoints/{endpoint['id']}", headers=PLATFORM):
                    pass
                endpoint = None
    return best["off"], best["on"]


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
