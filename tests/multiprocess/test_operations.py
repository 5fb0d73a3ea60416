"""Operations with real processes: one scrape of ``serve --workers 2`` sees both processes'
counts; SIGTERM under load cuts no request and loses no acknowledged write; readiness answers
503 once the database is gone.

Every request goes on a new connection (``served.Service``), so the kernel spreads them over
the workers and a stopping server is met as a client meets it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import checkout_body
from tests.multiprocess.served import Service, start, stop_with, wait_for
from tests.pgdb import ADMIN_URL, fresh_database
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

BUYER = "usernew1"
CHECKOUTS = 40
SETTLED = 6  # of them paid and completed, each request to whichever worker takes it
CLIENTS = 48  # requests kept in flight while SIGTERM arrives


async def scrape(service: Service) -> dict[tuple[str, frozenset[Any]], float]:
    """The samples of one scrape, parsed by prometheus-client's own parser."""
    async with service.http.get(service.base_url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_one_scrape_sums_the_counts_of_every_worker(tmp_path: Path) -> None:
    """40 checkouts spread over two workers: every scrape, whichever worker answers it, counts
    all 40 (one process alone saw about half of them), and their request durations too, and
    the 6 of them paid and completed count 6 invoices completed; their webhooks, sent by
    whichever worker holds the sender's lease, are counted in every scrape."""
    server, database = start(tmp_path, 2, webhook_poll_interval_seconds="0.05")
    service = Service(server, database)
    receiver = Receiver()
    try:
        await receiver.start()
        status, body = await service.request(
            "POST",
            "/webhooks/endpoints",
            {"url": receiver.url, "event_types": ["invoice.created"]},
            Service.basic("onmarket"),
        )
        assert status == 201, body
        pids = set()
        created = []
        for _ in range(CHECKOUTS):
            status, body = await service.checkout(BUYER, checkout_body(stores=1))
            assert status == 200, body
            created.append(body)
        for body in created[:SETTLED]:  # one transaction each: done settles the invoice
            await settle(service, body)
        for _ in range(20):
            pids.add(await service.health_pid())
        assert len(pids) == 2, pids  # both workers answer: the checkouts were spread too
        checkouts = ("invoices_created_total", frozenset({("source", "XENDIT")}))
        completed = ("invoices_completed_total", frozenset[tuple[str, str]]())
        timed = (
            "http_request_duration_seconds_count",
            frozenset({("method", "POST"), ("route", "/payment-checkout"), ("status", "200")}),
        )
        for _ in range(10):  # each on a new connection: both workers answer some
            samples = await scrape(service)
            assert samples[checkouts] == CHECKOUTS
            assert samples[completed] == SETTLED
            assert samples[("transactions_completed_total", frozenset())] == SETTLED
            assert samples[timed] == CHECKOUTS
            assert samples[("eventstore_head_position", frozenset())] > CHECKOUTS
        await receiver.wait_for(CHECKOUTS, within=30)
        delivered = ("webhook_deliveries_total", frozenset({("outcome", "delivered")}))

        async def all_counted() -> bool:
            return (await scrape(service))[delivered] == CHECKOUTS

        await wait_for(all_counted, 10, "every delivery counted")
        for _ in range(10):
            samples = await scrape(service)
            assert samples[delivered] == CHECKOUTS
            assert samples[("webhook_pending_messages", frozenset())] == 0
    finally:
        await receiver.stop()
        await service.close()
        server.stop()


async def settle(service: Service, created: dict[str, Any]) -> None:
    """Pay a one-transaction invoice at the sandbox and complete it: the invoice settles."""
    reference = created["xendit_invoice"]
    status, body = await service.request("POST", f"/sandbox/invoices/{reference}/pay", {})
    assert status == 200, body
    status, body = await service.platform("done", invoice_id=created["invoice"])
    assert status == 200, body


async def _load(service: Service, stop_at: float) -> list[tuple[str, str, float]]:
    """Checkouts sent by ``CLIENTS`` clients, each on a new connection, until the service
    stops taking connections; each as (its invoice_onmarket, outcome, when it ended)."""
    headers = await service.bearer(BUYER)
    results: list[tuple[str, str, float]] = []
    serial = iter(range(10**9))

    async def client(index: int) -> None:
        while True:
            body = checkout_body(stores=1, invoice_onmarket=[f"INV/SIGTERM/{next(serial)}"])
            number = body["transaction"][0]["invoice_onmarket"]
            try:
                async with service.http.post(
                    service.base_url + "/payment-checkout", json=body, headers=headers
                ) as response:
                    await response.read()
                    results.append((number, str(response.status), time.monotonic()))
            except aiohttp.ClientConnectorError:
                results.append((number, "refused", time.monotonic()))
                return  # the service no longer listens
            except aiohttp.ClientError as error:
                results.append((number, type(error).__name__, time.monotonic()))
                return
            if time.monotonic() > stop_at:
                return

    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    return results


def _checkout_statuses(log: Path) -> list[int]:
    """The status of each checkout request the service logged (JSON lines; others skipped)."""
    statuses = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "request" and entry.get("path") == "/payment-checkout":
            statuses.append(entry["status"])
    return statuses


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_under_load_finishes_what_it_took_and_loses_nothing(
    tmp_path: Path, workers: int
) -> None:
    """SIGTERM while ``CLIENTS`` checkouts are in flight: the service exits 0; every request
    answered is a 200; requests were still answered after the signal (those being handled
    finished); after a restart every acknowledged invoice is there, no request that got no
    answer left an invoice behind, and ``verify`` passes."""
    server, database = start(tmp_path, workers)
    service = Service(server, database)
    try:
        loop = asyncio.get_running_loop()
        load = asyncio.ensure_future(_load(service, time.monotonic() + 60))
        await asyncio.sleep(1.0)
        signalled = time.monotonic()
        exit_code = await loop.run_in_executor(None, stop_with, server, signal.SIGTERM)
        results = await load
    finally:
        await service.close()
        server.stop()
    assert exit_code == 0
    outcomes = {outcome for _, outcome, _ in results}
    assert outcomes <= {"200", "refused", "ServerDisconnectedError", "ClientOSError"}, outcomes
    acknowledged = [number for number, outcome, _ in results if outcome == "200"]
    unanswered = [number for number, outcome, _ in results if outcome not in ("200", "refused")]
    assert len(acknowledged) > CLIENTS
    assert any(outcome == "200" and ended > signalled for _, outcome, ended in results)
    # The service's own line for each checkout it handled (written as its handler ends, a
    # cancelled one included, as a 500): every request it took was answered 200, and the client
    # got each of those answers. A refused or reset connection was never a handled request.
    handled = _checkout_statuses(server.log_path)
    assert handled == [200] * len(acknowledged), Counter(handled)
    print(
        f"\nSIGTERM, {workers} worker(s): {len(acknowledged)} acknowledged, {len(unanswered)} cut"
    )

    server, database = start(tmp_path, 1)
    service = Service(server, database)
    try:
        # A marketplace invoice number is taken by a live invoice: reusing an acknowledged one
        # is refused, reusing one whose request got no answer is accepted (nothing was written).
        for number in acknowledged:
            body = checkout_body(stores=1, invoice_onmarket=[number])
            status, answer = await service.checkout(BUYER, body)
            assert (status, answer["code"]) == (400, "INVOICE_ONMARKET_IN_USE"), number
        for number in unanswered:
            status, answer = await service.checkout(
                BUYER, checkout_body(stores=1, invoice_onmarket=[number])
            )
            assert status == 200, (number, answer)
        await service.assert_balanced()
    finally:
        await service.close()
        server.stop()
    await database.verify()


async def test_readiness_answers_503_once_the_database_is_gone(tmp_path: Path) -> None:
    """On PostgreSQL: ready (database and jobs) while the database is there; once it is
    dropped, 503 NOT_READY naming the database, while liveness still answers 200."""
    async with fresh_database("ready") as url:
        server, database = start(tmp_path, 1, database=url)
        service = Service(server, database)
        try:
            status, body = await service.request("GET", "/health/ready")
            assert status == 200, body
            assert body["status"] == "ready"
            assert set(body["jobs"]) == {
                "refund-worker",
                "expiry-task",
                "webhook-outbox",
                "webhook-sender",
            }
            name = url.rsplit("/", 1)[1]
            admin = await asyncpg.connect(ADMIN_URL)
            try:
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            finally:
                await admin.close()
            status, body = await service.request("GET", "/health/ready")
            assert status == 503, body
            assert body["code"] == "NOT_READY"
            assert "database" in body["errors"]
            async with service.http.get(service.base_url + "/metrics") as response:
                assert response.status == 500  # a failed scrape: Prometheus sees the target down
            status, body = await service.request("GET", "/health/live")
            assert status == 200, body
        finally:
            await service.close()
            server.stop()
