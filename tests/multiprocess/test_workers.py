"""``serve --workers 3``: three real processes on one port and one SQLite file keep every
guarantee of one.

Each test starts the service as users do (``python -m service serve --workers N``) and talks to
it over HTTP, every request on a new connection, so the kernel spreads them over the workers
(the first test shows it does). Races between processes are decided by the log: the stream
versions of each append and the file's one writer at a time. After each test the ledger sums to
0, no buyer or escrow account ever went negative, and ``python -m service verify`` passes.

- cancel against done of one PAID transaction, ``ROUNDS`` times: exactly one wins;
- BALANCE checkouts of one buyer sent together: exactly as many PAID as the balance covers;
- one gateway callback delivered several times at once: the invoice is paid once;
- the sandbox's Pay pressed several times at once: one payment taken, across workers too;
- ``kill -9`` of the worker holding the refund worker's lease: another takes it within 5 s,
  every refund asked for before the kill is completed exactly once, the supervisor replaces
  the killed worker, and due invoices are still expired once;
- SIGTERM to the supervisor: the workers stop and it exits 0; SIGKILL of it: the workers stop by
  themselves; workers that cannot bind the port: the supervisor gives up with status 1.

``RACE_ROUNDS`` sets the rounds: 200 by default, 1,000 with ``SOAK=1`` (``make soak``).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bench.servers import Server, child_environment
from tests.e2e.conftest import checkout_body
from tests.multiprocess import scenarios
from tests.multiprocess.databases import Database
from tests.multiprocess.served import Service, alive, start, stop_with, wait_until

pytestmark = pytest.mark.slow

ROUNDS = scenarios.race_rounds()
WORKERS = 3
TAKEOVER_LIMIT_SECONDS = scenarios.TAKEOVER_LIMIT_SECONDS
BUYER = "usernew1"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Database]]:
    """One ``serve --workers 3`` for the race tests (each uses buyers of its own), so that the
    workers start once."""
    server, database = start(tmp_path_factory.mktemp("workers"), WORKERS)
    try:
        yield server, database
    finally:
        server.stop()


@pytest.fixture
async def service(shared: tuple[Server, Database]) -> AsyncIterator[Service]:
    served = Service(*shared)
    try:
        yield served
    finally:
        await served.close()


async def test_connections_are_spread_over_the_workers(service: Service) -> None:
    pids = {await service.health_pid() for _ in range(60)}
    assert len(pids) > 1, pids
    assert pids <= service.worker_pids()


async def test_cancel_and_done_across_workers_have_one_winner(service: Service) -> None:
    """Cancel (refund) and done at once on one PAID transaction, on two connections (mostly two
    processes): exactly one wins (``scenarios.cancel_against_done``)."""
    tally = await scenarios.cancel_against_done([service, service], BUYER, ROUNDS)
    print(f"\ncancel vs done over {WORKERS} workers: {dict(tally)}")


async def test_balance_checkouts_split_over_workers_never_overdraw(service: Service) -> None:
    """n checkouts of one buyer at once, whose balance pays for k < n: exactly k PAID."""
    await scenarios.balance_checkouts_never_overdraw([service], "testing123", max(10, ROUNDS // 5))


async def test_one_callback_delivered_to_several_workers_pays_once(service: Service) -> None:
    """A PAID callback delivered six times at once on different connections: paid once."""
    await scenarios.duplicate_callbacks_pay_once([service], "testing12345", max(10, ROUNDS // 10))


async def test_the_sandbox_takes_one_payment_however_pay_is_spread_over_workers(
    service: Service,
) -> None:
    """The buyer's Pay sent several times at once (a double click, two tabs), each copy with a
    payment of its own and reaching any worker: the sandbox, shared by the workers like a real
    gateway, takes one payment; the others answer 409 ALREADY_PAID and send nothing."""
    buyer = "seller1"  # a buyer of its own in this module's shared service
    for round_ in range(max(5, ROUNDS // 20)):
        status, body = await service.checkout(buyer, checkout_body(stores=1, source="XENDIT"))
        assert status == 200, body
        invoice, reference = body["invoice"], body["xendit_invoice"]
        answers = await asyncio.gather(
            *(service.request("POST", f"/sandbox/invoices/{reference}/pay", {}) for _ in range(4))
        )
        why = (round_, invoice, answers)
        assert sorted(status for status, _ in answers) == [200, 409, 409, 409], why
        assert await service.event_types(invoice) == ["InvoiceCreated", "InvoicePaid"], why
    assert f"buyer:{buyer}" not in await service.accounts()  # no second payment kept as balance
    await service.assert_balanced()
    await service.verify()


async def test_killing_the_job_holder_hands_its_jobs_over(tmp_path: Path) -> None:
    """Refunds asked for (paid out 2 s later) and invoices due, then ``kill -9`` of the worker
    holding the refund worker's lease: another worker holds it within 5 s (measured on the lock
    file), each refund is completed exactly once, each due invoice expired once, the ledger
    balances, and the supervisor has started a replacement worker."""
    server, database = start(tmp_path, WORKERS, refund_delay_seconds="2", invoice_ttl_seconds="3")
    service = Service(server, database)
    try:
        took = await scenarios.kill_the_worker_holding_the_jobs(service, WORKERS, BUYER)
        print(f"\njobs taken over {took:.2f}s after kill -9 of their worker")
        assert took < TAKEOVER_LIMIT_SECONDS
    finally:
        await service.close()
        server.stop()
    assert "worker replaced" in server.log_path.read_text()


async def test_sigterm_stops_the_workers_and_the_supervisor_exits_0(tmp_path: Path) -> None:
    server, database = start(tmp_path, 2)
    service = Service(server, database)
    try:
        workers = service.worker_pids()
        assert len(workers) == 2
        assert stop_with(server, signal.SIGTERM) == 0
        assert not any(alive(pid) for pid in workers)
    finally:
        await service.close()
        server.stop()
    assert "workers stopped" in server.log_path.read_text()


async def test_workers_stop_by_themselves_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the supervisor passes nothing on: its workers notice and stop, not holding the
    port unsupervised."""
    server, database = start(tmp_path, 2)
    service = Service(server, database)
    try:
        workers = service.worker_pids()
        assert len(workers) == 2
        assert stop_with(server, signal.SIGKILL) == -signal.SIGKILL
        wait_until(lambda: not any(alive(pid) for pid in workers), 15, "orphaned workers stop")
    finally:
        await service.close()
        server.stop()


async def test_workers_that_cannot_start_stop_the_service_with_status_1(tmp_path: Path) -> None:
    """The port is held by another program (without SO_REUSEPORT): each worker fails to bind;
    the supervisor gives up after a few failed starts instead of restarting them forever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "service", "serve", "--workers", "2"),
            *("--port", str(port), "--db", str(tmp_path / "invoices.db")),
            cwd=tmp_path,
            env=child_environment({"INVOICE_LOG_FORMAT": "json"}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(done.communicate(), 90)
    text = output.decode()
    assert done.returncode == 1, text
    assert "worker keeps failing to start" in text
