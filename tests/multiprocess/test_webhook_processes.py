"""Webhooks with real processes. ``serve --workers 2``, ``kill -9`` of the sender between its
send and its record, and the message is sent again with the same ``webhook-id`` (every other
message delivered once): on one SQLite file (the sender's job lease passes to the other worker)
and on PostgreSQL (the dead sender's claim runs out and another sender takes the message). Two
``serve`` nodes on one PostgreSQL database: both send at once, each message delivered once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.servers import Server, child_environment, free_port
from tests.e2e.conftest import checkout_body
from tests.multiprocess.databases import PostgreSQLDatabase
from tests.multiprocess.served import Service, alive, start, wait_for, wait_until
from tests.pgdb import fresh_database
from tests.webhook_receiver import Delivery, Receiver

pytestmark = pytest.mark.slow

BUYER = "usernew1"


async def _kill_9_mid_send(
    service: Service,
    receiver: Receiver,
    sender_of: Callable[[Delivery], Awaitable[int | None]],
    redelivered_within: float,
) -> Delivery:
    """Register ``receiver``, check out once, and ``kill -9`` the process that sent the
    message (``sender_of`` names it) while the receiver holds the request; the message is sent
    again with the same ``webhook-id`` and body, and recorded delivered. The first delivery."""
    status, body = await service.request(
        "POST",
        "/webhooks/endpoints",
        {"url": receiver.url, "event_types": ["invoice.created"]},
        service.basic("onmarket"),
    )
    assert status == 201, body
    status, created = await service.checkout(BUYER, checkout_body(stores=1))
    assert status == 200, created
    first = (await receiver.wait_for(1, within=10))[0]  # sent, and the receiver hangs

    victim = await sender_of(first)
    assert victim in service.worker_pids()
    receiver.hang = None  # from now on the receiver answers at once
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim), 10, "the sender dead")

    again = (await receiver.wait_for(2, within=redelivered_within))[1]
    assert again.id == first.id
    assert again.body == first.body

    async def delivered() -> bool:
        return [m["status"] for m in await _messages(service)] == ["delivered"]

    await wait_for(delivered, 10, "the message delivered")
    return first


async def _messages(service: Service) -> list[dict[str, Any]]:
    status, listed = await service.request(
        "GET", "/webhooks/messages", headers=service.basic("onmarket")
    )
    assert status == 200, listed
    messages: list[dict[str, Any]] = listed["messages"]
    return messages


async def _then_each_message_once(service: Service, receiver: Receiver, first: Delivery) -> None:
    """Five more checkouts after the kill: each of their messages is delivered once, and the
    killed one was delivered twice in all."""
    for _ in range(5):
        status, body = await service.checkout(BUYER, checkout_body(stores=1))
        assert status == 200, body
    await receiver.wait_for(7, within=15)
    await asyncio.sleep(0.5)  # nothing more comes
    counts: Counter[str] = Counter(d.id for d in receiver.deliveries)
    assert counts[first.id] == 2
    assert [n for message, n in counts.items() if message != first.id] == [1] * 5


async def test_kill_9_between_send_and_record_redelivers_with_the_same_id(
    tmp_path: Path,
) -> None:
    """One SQLite file, ``serve --workers 2``: the sender's job lease passes to the other
    worker (or the replacement), which sends the message again."""
    server, database = start(tmp_path, 2, webhook_poll_interval_seconds="0.1")
    service = Service(server, database)
    hang = asyncio.Event()
    async with Receiver(hang=hang) as receiver:
        try:

            async def sender_running() -> bool:
                return await service.lease_holder("webhook-sender") is not None

            await wait_for(sender_running, 10, "a sender")

            async def lease_holder(_: Delivery) -> int | None:
                return await service.lease_holder("webhook-sender")

            first = await _kill_9_mid_send(service, receiver, lease_holder, 15)
            await _then_each_message_once(service, receiver, first)
        finally:
            hang.set()  # the killed send's request is let go
            server.stop()
            await service.close()


def _node(tmp_path: Path, url: str, name: str, **settings: str) -> Server:
    """``python -m service serve`` on the PostgreSQL database at ``url``: one node."""
    port = free_port()
    env = child_environment(
        {
            "INVOICE_MODE": "development",
            "INVOICE_LOG_FORMAT": "json",
            "INVOICE_WEBHOOK_POLL_INTERVAL_SECONDS": "0.1",
            **{f"INVOICE_{key.upper()}": value for key, value in settings.items()},
        }
    )
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port), "--db", url]
    server = Server(name, argv, env, port, tmp_path / f"{name}.log")
    server.wait_ready(60)
    return server


async def test_two_nodes_on_postgresql_send_at_once_and_deliver_each_message_once(
    tmp_path: Path,
) -> None:
    """Two ``serve`` processes on one PostgreSQL database, checkouts spread over both. With
    the receiver holding every request and two deliveries in flight per sender, both senders
    hold claims at once (the claims' table names both processes); then every message is
    delivered exactly once."""
    hang = asyncio.Event()
    async with fresh_database("webhook_nodes") as url, Receiver(hang=hang) as receiver:
        nodes = [_node(tmp_path, url, f"node{i}", webhook_concurrency="2") for i in range(2)]
        services = [Service(node, PostgreSQLDatabase(url)) for node in nodes]
        database = PostgreSQLDatabase(url)
        try:
            status, body = await services[0].request(
                "POST",
                "/webhooks/endpoints",
                {"url": receiver.url, "event_types": ["invoice.created"]},
                services[0].basic("onmarket"),
            )
            assert status == 201, body
            for i in range(10):
                status, body = await services[i % 2].checkout(BUYER, checkout_body(stores=1))
                assert status == 200, body

            async def both_sending() -> bool:
                senders = set((await database.webhook_claimants()).values())
                return senders == {node.pid for node in nodes}

            await wait_for(both_sending, 15, "claims held by both nodes at once")
            hang.set()
            receiver.hang = None
            await receiver.wait_for(10, within=20)
            await asyncio.sleep(1.0)  # nothing more comes
            counts = Counter(d.id for d in receiver.deliveries)
            assert len(counts) == 10
            assert set(counts.values()) == {1}
        finally:
            hang.set()
            for node, service in zip(nodes, services, strict=True):
                node.stop()
                await service.close()


async def test_kill_9_on_postgresql_redelivers_once_the_claim_runs_out(tmp_path: Path) -> None:
    """``serve --workers 2`` on PostgreSQL: the worker whose sender claimed the message is
    killed while the receiver holds its request; once the claim runs out (twice the 3 s
    timeout and a margin) the other worker's sender sends it again with the same
    ``webhook-id``, and that attempt is the message's only record."""
    hang = asyncio.Event()
    async with fresh_database("webhook_kill") as url, Receiver(hang=hang) as receiver:
        server, database = start(
            tmp_path,
            2,
            database=url,
            webhook_poll_interval_seconds="0.1",
            webhook_timeout_seconds="3",
        )
        service = Service(server, database)
        claims = PostgreSQLDatabase(url)
        try:

            async def claimant(delivery: Delivery) -> int | None:
                return (await claims.webhook_claimants())[delivery.id]

            first = await _kill_9_mid_send(service, receiver, claimant, 30)
            # The killed send left no record: the redelivery is the only attempt.
            attempts = (await _messages(service))[0]["attempts"]
            assert [a["status"] for a in attempts] == [200]
            await _then_each_message_once(service, receiver, first)
        finally:
            hang.set()
            server.stop()
            await service.close()
