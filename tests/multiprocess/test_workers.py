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
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bench.servers import Server, child_environment
from tests.e2e.conftest import checkout_body
from tests.multiprocess.served import (
    COMMISSION,
    INSURANCE,
    PRICE,
    SELLER_SHARE,
    Service,
    alive,
    start,
    stop_with,
    wait_until,
)

pytestmark = pytest.mark.slow


def _rounds() -> int:
    if os.environ.get("RACE_ROUNDS"):
        return int(os.environ["RACE_ROUNDS"])
    return 1000 if os.environ.get("SOAK") == "1" else 200


ROUNDS = _rounds()
WORKERS = 3
TAKEOVER_LIMIT_SECONDS = 5.0
BUYER = "usernew1"

REFUND_IN_PROCESS = {"message": "REFUND IN PROCESS"}
COMPLETED = {"message": "TRANSACTION IS COMPLETED"}
ALREADY_COMPLETED = {
    "message": "TRANSACTION IS ALREADY COMPLETED",
    "code": "TRANSACTION_ALREADY_COMPLETED",
}
ALREADY_IN_PROCESS = {"message": "REFUND ALREADY IN PROCESS", "code": "REFUND_ALREADY_IN_PROCESS"}
ALREADY_REFUNDED = {
    "message": "TRANSACTION IS ALREADY CANCELED",
    "code": "TRANSACTION_ALREADY_REFUNDED",
}
INSUFFICIENT = {"message": "Insufficient balance", "code": "INSUFFICIENT_BALANCE"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """One ``serve --workers 3`` for the race tests (each uses buyers of its own), so that the
    workers start once."""
    server, database = start(tmp_path_factory.mktemp("workers"), WORKERS)
    try:
        yield server, database
    finally:
        server.stop()


@pytest.fixture
async def service(shared: tuple[Server, Path]) -> AsyncIterator[Service]:
    served = Service(*shared)
    try:
        yield served
    finally:
        await served.close()


async def paid_checkout(service: Service, buyer: str = BUYER) -> tuple[str, str]:
    """A one-store BALANCE checkout, paid at once: its invoice and store invoice number."""
    status, body = await service.checkout(buyer, checkout_body(stores=1, source="BALANCE"))
    assert (status, body["status"]) == (200, "PAID"), body
    return body["invoice"], body["transaction"][0]["invoice_onmarket"]


async def wait_for_events(
    service: Service, invoice: str, expected: list[str], within: float = 10.0
) -> None:
    deadline = time.monotonic() + within
    while service.event_types(invoice) != expected:
        assert time.monotonic() < deadline, (invoice, service.event_types(invoice), expected)
        await asyncio.sleep(0.02)


async def test_connections_are_spread_over_the_workers(service: Service) -> None:
    pids = {await service.health_pid() for _ in range(60)}
    assert len(pids) > 1, pids
    assert pids <= service.worker_pids()


async def test_cancel_and_done_across_workers_have_one_winner(service: Service) -> None:
    """Cancel (refund) and done at once on one PAID transaction, on two connections (mostly two
    processes): exactly one wins, the other gets its documented 400, and the money goes to the
    buyer or to the seller, commission and insurance, never both."""
    await service.top_up(BUYER, ROUNDS * PRICE)
    tally: Counter[str] = Counter()
    refunded, invoices = [], []
    for round_ in range(ROUNDS):
        invoice, store = await paid_checkout(service)
        invoices.append(invoice)
        cancel, done = await asyncio.gather(
            service.platform(
                "cancel", invoice_id=invoice, invoice_onmarket=store, buyer_username=BUYER
            ),
            service.platform("done", invoice_id=invoice, invoice_onmarket=store),
        )
        why = (round_, invoice, cancel, done)
        assert [cancel[0], done[0]].count(200) == 1, why
        if cancel[0] == 200:
            assert cancel == (200, REFUND_IN_PROCESS), why
            assert done in ((400, ALREADY_IN_PROCESS), (400, ALREADY_REFUNDED)), why
            tally["cancel won"] += 1
            refunded.append(invoice)
        else:
            assert done == (200, COMPLETED), why
            assert cancel == (400, ALREADY_COMPLETED), why
            tally["done won"] += 1
            assert service.event_types(invoice) == [
                "InvoiceCreated",
                "InvoicePaid",
                "TransactionCompleted",
            ], why
    print(f"\ncancel vs done over {WORKERS} workers: {dict(tally)}")
    for invoice in refunded:  # the refund worker (in whichever process) pays each out once
        await wait_for_events(
            service,
            invoice,
            ["InvoiceCreated", "InvoicePaid", "RefundRequested", "RefundCompleted"],
        )
    wins = tally["done won"]
    expected = {
        # topped up ROUNDS x PRICE, paid ROUNDS checkouts, refunded those canceled
        f"buyer:{BUYER}": len(refunded) * PRICE,
        "seller:seller1": wins * SELLER_SHARE,
        "platform:ONMARKET:commission": wins * COMMISSION,
        "platform:ONMARKET:insurance": wins * INSURANCE,
    }
    accounts = service.accounts()
    for account, amount in expected.items():
        assert accounts.get(account, 0) == amount, (account, accounts)
    assert not any(accounts.get(f"escrow:{invoice}") for invoice in invoices), accounts
    service.assert_balanced()
    service.verify()


async def test_balance_checkouts_split_over_workers_never_overdraw(service: Service) -> None:
    """n checkouts of one buyer at once, whose balance pays for k < n: exactly k PAID."""
    buyer = "testing123"
    paid_so_far, refused = 0, 0
    escrows: list[str] = []
    for round_ in range(max(10, ROUNDS // 5)):
        n = 3 + round_ % 4
        k = 1 + round_ % (n - 1)
        await service.top_up(buyer, k * PRICE if round_ else k * PRICE + PRICE - 1)
        answers = await asyncio.gather(
            *(service.checkout(buyer, checkout_body(stores=1, source="BALANCE")) for _ in range(n))
        )
        why = (round_, n, k, answers)
        paid = [body for status, body in answers if status == 200]
        assert len(paid) == k, why
        assert all(answer == (400, INSUFFICIENT) for answer in answers if answer[0] != 200), why
        assert all(body["status"] == "PAID" for body in paid), why
        escrows.extend(f"escrow:{body['invoice']}" for body in paid)
        paid_so_far += k
        refused += n - k
        assert await service.balance(buyer) == PRICE - 1, why
    accounts = service.accounts()
    assert [accounts.get(escrow) for escrow in escrows] == [PRICE] * paid_so_far, accounts
    assert refused > 0
    service.assert_balanced()
    service.verify()


async def test_one_callback_delivered_to_several_workers_pays_once(service: Service) -> None:
    """The gateway repeats a PAID callback (a retry, a double delivery), several copies arriving
    at once on different connections: one PAID, the others DUPLICATE, nothing credited twice."""
    buyer = "testing12345"
    for round_ in range(max(10, ROUNDS // 10)):
        status, body = await service.checkout(buyer, checkout_body(stores=1, source="XENDIT"))
        assert status == 200, body
        invoice = body["invoice"]
        callback = {
            "id": f"gw-{invoice}",
            "external_id": invoice,
            "payment_id": f"pay-{invoice}",
            "status": "PAID",
            "amount": PRICE,
            "paid_amount": PRICE,
            "payment_method": "BANK_TRANSFER",
            "payment_channel": "BCA",
        }
        token = {"x-callback-token": "dev-callback-token"}
        answers = await asyncio.gather(
            *(
                service.request("POST", "/callback/xendit/invoice", callback, token)
                for _ in range(6)
            )
        )
        why = (round_, invoice, answers)
        assert all(status == 200 for status, _ in answers), why
        messages = Counter(answer["message"] for _, answer in answers)
        assert messages == Counter({"PAID": 1, "DUPLICATE": 5}), why
        assert service.event_types(invoice) == ["InvoiceCreated", "InvoicePaid"], why
    assert f"buyer:{buyer}" not in service.accounts()  # nothing credited: every copy paid once
    service.assert_balanced()
    service.verify()


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
        assert service.event_types(invoice) == ["InvoiceCreated", "InvoicePaid"], why
    assert f"buyer:{buyer}" not in service.accounts()  # no second payment kept as balance
    service.assert_balanced()
    service.verify()


async def test_killing_the_job_holder_hands_its_jobs_over(tmp_path: Path) -> None:
    """Refunds asked for (paid out 2 s later) and invoices due, then ``kill -9`` of the worker
    holding the refund worker's lease: another worker holds it within 5 s (measured on the lock
    file), each refund is completed exactly once, each due invoice expired once, the ledger
    balances, and the supervisor has started a replacement worker."""
    server, database = start(tmp_path, WORKERS, refund_delay_seconds="2", invoice_ttl_seconds="3")
    service = Service(server, database)
    try:
        wait_until(lambda: service.lease_holder("refund-worker") is not None, 10, "a holder")
        workers = service.worker_pids()
        assert len(workers) == WORKERS
        refunds = 8
        await service.top_up(BUYER, refunds * PRICE)
        invoices = [await paid_checkout(service) for _ in range(refunds)]
        for invoice, store in invoices:
            answer = await service.platform(
                "cancel", invoice_id=invoice, invoice_onmarket=store, buyer_username=BUYER
            )
            assert answer == (200, REFUND_IN_PROCESS), answer
        pending = []
        for _ in range(4):
            status, body = await service.checkout(BUYER, checkout_body(stores=1, source="XENDIT"))
            assert status == 200, body
            pending.append(body["invoice"])

        victim = service.lease_holder("refund-worker")
        assert victim in workers
        held_by_victim = [
            job for job in ("refund-worker", "expiry-task") if service.lease_holder(job) == victim
        ]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()

        def taken_over() -> bool:
            holders = [service.lease_holder(job) for job in held_by_victim]
            return all(h is not None and h != victim and alive(h) for h in holders)

        wait_until(taken_over, TAKEOVER_LIMIT_SECONDS, f"{held_by_victim} taken over")
        took = time.monotonic() - killed_at
        print(f"\njobs {held_by_victim} taken over {took:.2f}s after kill -9 of {victim}")
        assert took < TAKEOVER_LIMIT_SECONDS

        for invoice, _ in invoices:
            await wait_for_events(
                service,
                invoice,
                ["InvoiceCreated", "InvoicePaid", "RefundRequested", "RefundCompleted"],
            )
        for invoice in pending:
            await wait_for_events(service, invoice, ["InvoiceCreated", "InvoiceExpired"])
        assert await service.balance(BUYER) == refunds * PRICE  # every refund credited once

        def replaced() -> bool:
            now = service.worker_pids()
            return len(now) == WORKERS and victim not in now

        wait_until(replaced, 30, "the killed worker replaced")
        await asyncio.sleep(1.5)  # a second completion or expiry, if any, would show now
        for invoice, _ in invoices:
            assert service.event_types(invoice).count("RefundCompleted") == 1
        for invoice in pending:
            assert service.event_types(invoice).count("InvoiceExpired") == 1
        service.assert_balanced()
        service.verify()
    finally:
        await service.close()
        server.stop()
    assert "worker replaced" in server.log_path.read_text()


async def test_sigterm_stops_the_workers_and_the_supervisor_exits_0(tmp_path: Path) -> None:
    server, _ = start(tmp_path, 2)
    service = Service(server, tmp_path / "invoices.db")
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
    server, _ = start(tmp_path, 2)
    service = Service(server, tmp_path / "invoices.db")
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
