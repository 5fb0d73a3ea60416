"""Webhooks with real processes: ``serve --workers 2`` on one SQLite file, ``kill -9`` of the
sender between its send and its record, and the message is sent again with the same
``webhook-id`` (every other message delivered once); two ``serve`` nodes on one PostgreSQL
database, each message delivered once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.servers import Server, child_environment, free_port
from tests.e2e.conftest import checkout_body
from tests.multiprocess.databases import PostgreSQLDatabase
from tests.multiprocess.served import Service, alive, start, wait_for, wait_until
from tests.pgdb import fresh_database
from tests.webhook_receiver import Delivery, Receiver

pytestmark = pytest.mark.slow

BUYER = "usernew1"


async def test_kill_9_between_send_and_record_redelivers_with_the_same_id(
    tmp_path: Path,
) -> None:
    server, database = start(tmp_path, 2, webhook_poll_interval_seconds="0.1")
    service = Service(server, database)
    hang = asyncio.Event()
    first: list[Delivery] = []

    def answer(delivery: Delivery) -> int:
        return 200

    async with Receiver(hang=hang, answer=answer) as receiver:
        try:

            async def sender_running() -> bool:
                return await service.lease_holder("webhook-sender") is not None

            await wait_for(sender_running, 10, "a sender")
            status, body = await service.request(
                "POST",
                "/webhooks/endpoints",
                {"url": receiver.url, "event_types": ["invoice.created"]},
                service.basic("onmarket"),
            )
            assert status == 201, body
            status, created = await service.checkout(BUYER, checkout_body(stores=1))
            assert status == 200, created
            first = await receiver.wait_for(1, within=10)  # sent, and the receiver hangs

            victim = await service.lease_holder("webhook-sender")
            assert victim is not None
            receiver.hang = None  # from now on the receiver answers at once
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: not alive(victim), 10, "the sender dead")

            again = await receiver.wait_for(2, within=15)
            assert again[1].id == first[0].id
            assert again[1].body == first[0].body

            async def delivered() -> bool:
                status, listed = await service.request(
                    "GET", "/webhooks/messages", headers=service.basic("onmarket")
                )
                assert status == 200, listed
                return [m["status"] for m in listed["messages"]] == ["delivered"]

            deadline = asyncio.get_running_loop().time() + 10
            while not await delivered():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)

            # The other worker (or the replacement) now sends each new message once.
            for _ in range(5):
                status, body = await service.checkout(BUYER, checkout_body(stores=1))
                assert status == 200, body
            deliveries = await receiver.wait_for(7, within=15)
            await asyncio.sleep(0.5)
            counts: Counter[str] = Counter(d.id for d in receiver.deliveries)
            assert counts[first[0].id] == 2
            assert [n for message, n in counts.items() if message != first[0].id] == [1] * 5
            assert len(deliveries) >= 7
        finally:
            hang.set()
            server.stop()
            await service.close()


def _node(tmp_path: Path, url: str, name: str) -> Server:
    """``python -m service serve`` on the PostgreSQL database at ``url``: one node."""
    port = free_port()
    env = child_environment(
        {
            "INVOICE_MODE": "development",
            "INVOICE_LOG_FORMAT": "json",
            "INVOICE_WEBHOOK_POLL_INTERVAL_SECONDS": "0.1",
        }
    )
    argv = [sys.executable, "-m", "service", "serve", "--port", str(port), "--db", url]
    server = Server(name, argv, env, port, tmp_path / f"{name}.log")
    server.wait_ready(60)
    return server


async def test_two_nodes_on_postgresql_deliver_each_message_once(tmp_path: Path) -> None:
    """Two ``serve`` processes on one PostgreSQL database, checkouts spread over both: one
    sender at a time (the advisory lease), every message delivered exactly once."""
    async with fresh_database("webhook_nodes") as url, Receiver() as receiver:
        nodes = [_node(tmp_path, url, f"node{i}") for i in range(2)]
        services = [Service(node, PostgreSQLDatabase(url)) for node in nodes]
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
            await receiver.wait_for(10, within=20)
            await asyncio.sleep(1.0)  # nothing more comes
            counts = Counter(d.id for d in receiver.deliveries)
            assert len(counts) == 10
            assert set(counts.values()) == {1}
        finally:
            for node, service in zip(nodes, services, strict=True):
                node.stop()
                await service.close()
