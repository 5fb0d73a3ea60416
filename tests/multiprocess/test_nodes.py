"""Several nodes on one PostgreSQL database keep every guarantee of one process.

Each node is a real ``python -m service serve`` (development mode, sandbox gateway) on a port of
its own, all on one fresh database, started at the same moment (so that they also race to
create and migrate it). Each race sends its sides to different nodes; the log decides them
(stream versions checked in the append, positions assigned under the log's lock). After each
test the ledger, read from the database's views, sums to 0, no buyer or escrow went negative,
and the log verifies.

- cancel on one node against done on another, ``RACE_ROUNDS`` times (200; 1,000 with
  ``SOAK=1``): exactly one winner every time;
- BALANCE checkouts of one buyer split over the nodes: exactly as many PAID as the balance pays;
- one gateway callback delivered to every node at once: paid once;
- ``kill -9`` of the node holding the refund worker's lease (found in ``pg_stat_activity`` by
  its ``application_name``): another node holds its leases within 5 s (measured), every refund
  is completed once and every due invoice expired once;
- ``serve --workers 3`` on PostgreSQL: the cancel/done race (fewer rounds) and the ``kill -9``
  takeover among its workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.servers import Server
from tests.multiprocess import scenarios
from tests.multiprocess.databases import Database
from tests.multiprocess.served import Service, alive, start, wait_for
from tests.pgdb import fresh_database

pytestmark = pytest.mark.slow

ROUNDS = scenarios.race_rounds()
NODES = 3


@contextmanager
def database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database for a sync fixture (its URL), dropped after."""
    loop = asyncio.new_event_loop()
    fresh = fresh_database(prefix)
    try:
        yield loop.run_until_complete(fresh.__aenter__())
    finally:
        loop.run_until_complete(fresh.__aexit__(None, None, None))
        loop.close()


def start_nodes(tmp_path: Path, url: str, **settings: str) -> list[tuple[Server, Database]]:
    """``NODES`` ``serve`` processes on ``url``, started together, each ready."""
    with ThreadPoolExecutor(NODES) as pool:
        starts = [pool.submit(start, tmp_path, 1, url, **settings) for _ in range(NODES)]
        return [attempt.result() for attempt in starts]


def stop(started: list[tuple[Server, Database]]) -> None:
    for server, _ in started:
        server.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Server, Database]]]:
    """Three nodes on one database for the race tests (each uses buyers of its own)."""
    with database("nodes") as url:
        started = start_nodes(tmp_path_factory.mktemp("nodes"), url)
        try:
            yield started
        finally:
            stop(started)


@pytest.fixture
async def nodes(shared: list[tuple[Server, Database]]) -> AsyncIterator[list[Service]]:
    services = [Service(server, shared_database) for server, shared_database in shared]
    try:
        yield services
    finally:
        for service in services:
            await service.close()


async def test_each_node_is_a_process_of_its_own(nodes: list[Service]) -> None:
    pids = [await node.health_pid() for node in nodes]
    assert pids == [node.server.pid for node in nodes]
    assert len(set(pids)) == NODES


async def test_cancel_on_one_node_and_done_on_another_have_one_winner(
    nodes: list[Service],
) -> None:
    started = time.monotonic()
    tally = await scenarios.cancel_against_done(nodes, "usernew1", ROUNDS)
    print(
        f"\ncancel vs done over {NODES} nodes: {dict(tally)} in {time.monotonic() - started:.1f}s"
    )


async def test_balance_checkouts_split_over_nodes_never_overdraw(nodes: list[Service]) -> None:
    await scenarios.balance_checkouts_never_overdraw(nodes, "testing123", max(10, ROUNDS // 5))


async def test_one_callback_delivered_to_every_node_pays_once(nodes: list[Service]) -> None:
    await scenarios.duplicate_callbacks_pay_once(nodes, "testing12345", max(10, ROUNDS // 10))


async def test_killing_the_node_running_the_jobs_hands_them_over(tmp_path: Path) -> None:
    """Refunds asked for (paid out 2 s later) and invoices due, then ``kill -9`` of the node
    whose session holds the refund worker's advisory lock: the server ends that session, and
    other nodes hold the dead node's leases within 5 s; each refund completed exactly once,
    each due invoice expired once."""
    settings = {"refund_delay_seconds": "2", "invoice_ttl_seconds": "3"}
    async with fresh_database("nodes_kill") as url:
        started = await asyncio.to_thread(start_nodes, tmp_path, url, **settings)
        nodes = [Service(server, shared_database) for server, shared_database in started]
        try:
            first = nodes[0]

            async def holder() -> bool:
                return await first.lease_holder("refund-worker") is not None

            await wait_for(holder, 10, "a holder of the refund worker's lease")
            refunded, pending = await scenarios.refunds_and_due_invoices(first, "usernew1")
            victim_pid = await first.lease_holder("refund-worker")
            assert victim_pid is not None
            [victim] = [node for node in nodes if node.server.pid == victim_pid]
            held_by_victim = [
                job
                for job in ("refund-worker", "expiry-task")
                if await first.lease_holder(job) == victim_pid
            ]
            os.kill(victim_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            survivors = [node for node in nodes if node is not victim]

            async def taken_over() -> bool:
                holders = [await survivors[0].lease_holder(job) for job in held_by_victim]
                return all(h is not None and h != victim_pid and alive(h) for h in holders)

            await wait_for(taken_over, scenarios.TAKEOVER_LIMIT_SECONDS, "jobs taken over")
            took = time.monotonic() - killed_at
            print(f"\njobs {held_by_victim} taken over by another node {took:.2f}s after kill -9")
            assert took < scenarios.TAKEOVER_LIMIT_SECONDS
            await scenarios.each_done_once(survivors[0], "usernew1", refunded, pending)
        finally:
            for node in nodes:
                await node.close()
            stop(started)


async def test_serve_workers_on_postgresql_race_and_take_over(tmp_path: Path) -> None:
    """``serve --workers 3`` on a PostgreSQL database: cancel against done has one winner each
    time, and ``kill -9`` of the worker holding the jobs hands them to another within 5 s."""
    settings = {"refund_delay_seconds": "2", "invoice_ttl_seconds": "3"}
    async with fresh_database("workers") as url:
        server, shared_database = await asyncio.to_thread(start, tmp_path, 3, url, **settings)
        service = Service(server, shared_database)
        try:
            await scenarios.cancel_against_done([service, service], "testing123", ROUNDS // 4)
            took = await scenarios.kill_the_worker_holding_the_jobs(service, 3, "usernew1")
            print(f"\n--workers 3 on PostgreSQL: jobs taken over {took:.2f}s after kill -9")
            assert took < scenarios.TAKEOVER_LIMIT_SECONDS
        finally:
            await service.close()
            server.stop()
