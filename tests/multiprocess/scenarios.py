"""The races and the job takeover that several processes (``serve --workers N``) and several
nodes (``serve`` processes on one PostgreSQL database) must survive, written once for both.

Each scenario gets ``nodes``: the services to spread its requests over (node ``i % n`` for the
``i``-th request of a round). A ``serve --workers N`` test passes its one service (the kernel
spreads the connections over the workers); a multi-node test passes one ``Service`` per node, so
the two sides of each race reach different processes for sure. Reads go to the shared database.
After each scenario the ledger sums to 0, no buyer or escrow went negative, and the log
verifies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

from tests.e2e.conftest import checkout_body
from tests.multiprocess.served import (
    COMMISSION,
    INSURANCE,
    PRICE,
    SELLER_SHARE,
    Service,
    alive,
    wait_for,
    wait_until,
)


def race_rounds() -> int:
    """``RACE_ROUNDS``, or 200 (1,000 with ``SOAK=1``, ``make soak``)."""
    if os.environ.get("RACE_ROUNDS"):
        return int(os.environ["RACE_ROUNDS"])
    return 1000 if os.environ.get("SOAK") == "1" else 200


# A process that dies hands its jobs over within this (SPEC, issue 18).
TAKEOVER_LIMIT_SECONDS = 5.0
REFUNDED_EVENTS = ["InvoiceCreated", "InvoicePaid", "RefundRequested", "RefundCompleted"]
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


async def paid_checkout(service: Service, buyer: str) -> tuple[str, str]:
    """A one-store BALANCE checkout, paid at once: its invoice and store invoice number."""
    status, body = await service.checkout(buyer, checkout_body(stores=1, source="BALANCE"))
    assert (status, body["status"]) == (200, "PAID"), body
    return body["invoice"], body["transaction"][0]["invoice_onmarket"]


async def wait_for_events(
    service: Service, invoice: str, expected: list[str], within: float = 10.0
) -> None:
    deadline = time.monotonic() + within
    while await service.event_types(invoice) != expected:
        assert time.monotonic() < deadline, (invoice, await service.event_types(invoice), expected)
        await asyncio.sleep(0.02)


async def cancel_against_done(nodes: list[Service], buyer: str, rounds: int) -> Counter[str]:
    """Cancel (refund) and done at once on one PAID transaction, ``rounds`` times, cancel sent
    to one node and done to another: exactly one wins, the other gets its documented 400, and
    the money goes to the buyer or to the seller, commission and insurance, never both. The
    tally of winners."""
    first = nodes[0]
    await first.top_up(buyer, rounds * PRICE)
    tally: Counter[str] = Counter()
    refunded, invoices = [], []
    for round_ in range(rounds):
        invoice, store = await paid_checkout(nodes[round_ % len(nodes)], buyer)
        invoices.append(invoice)
        cancel, done = await asyncio.gather(
            nodes[round_ % len(nodes)].platform(
                "cancel", invoice_id=invoice, invoice_onmarket=store, buyer_username=buyer
            ),
            nodes[(round_ + 1) % len(nodes)].platform(
                "done", invoice_id=invoice, invoice_onmarket=store
            ),
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
            assert await first.event_types(invoice) == [
                "InvoiceCreated",
                "InvoicePaid",
                "TransactionCompleted",
            ], why
    for invoice in refunded:  # the refund worker (in whichever process) pays each out once
        await wait_for_events(first, invoice, REFUNDED_EVENTS)
    wins = tally["done won"]
    expected = {
        # topped up rounds x PRICE, paid that many checkouts, refunded those canceled
        f"buyer:{buyer}": len(refunded) * PRICE,
        "seller:seller1": wins * SELLER_SHARE,
        "platform:ONMARKET:commission": wins * COMMISSION,
        "platform:ONMARKET:insurance": wins * INSURANCE,
    }
    accounts = await first.accounts()
    for account, amount in expected.items():
        assert accounts.get(account, 0) == amount, (account, accounts)
    assert not any(accounts.get(f"escrow:{invoice}") for invoice in invoices), accounts
    await first.assert_balanced()
    await first.verify()
    return tally


async def balance_checkouts_never_overdraw(nodes: list[Service], buyer: str, rounds: int) -> None:
    """n checkouts of one buyer at once, spread over the nodes, whose balance pays for k < n:
    exactly k PAID, the others refused as insufficient."""
    first = nodes[0]
    paid_so_far, refused = 0, 0
    escrows: list[str] = []
    for round_ in range(rounds):
        n = 3 + round_ % 4
        k = 1 + round_ % (n - 1)
        await first.top_up(buyer, k * PRICE if round_ else k * PRICE + PRICE - 1)
        answers = await asyncio.gather(
            *(
                nodes[i % len(nodes)].checkout(buyer, checkout_body(stores=1, source="BALANCE"))
                for i in range(n)
            )
        )
        why = (round_, n, k, answers)
        paid = [body for status, body in answers if status == 200]
        assert len(paid) == k, why
        assert all(answer == (400, INSUFFICIENT) for answer in answers if answer[0] != 200), why
        assert all(body["status"] == "PAID" for body in paid), why
        escrows.extend(f"escrow:{body['invoice']}" for body in paid)
        paid_so_far += k
        refused += n - k
        for node in nodes:  # every node's read of the balance is the log's
            assert await node.balance(buyer) == PRICE - 1, why
    accounts = await first.accounts()
    assert [accounts.get(escrow) for escrow in escrows] == [PRICE] * paid_so_far, accounts
    assert refused > 0
    await first.assert_balanced()
    await first.verify()


async def duplicate_callbacks_pay_once(nodes: list[Service], buyer: str, rounds: int) -> None:
    """The gateway repeats a PAID callback (a retry, a double delivery), six copies arriving at
    once at different nodes: one PAID, the others DUPLICATE, nothing credited twice."""
    first = nodes[0]
    for round_ in range(rounds):
        status, body = await first.checkout(buyer, checkout_body(stores=1, source="XENDIT"))
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
                nodes[i % len(nodes)].request("POST", "/callback/xendit/invoice", callback, token)
                for i in range(6)
            )
        )
        why = (round_, invoice, answers)
        assert all(status == 200 for status, _ in answers), why
        messages = Counter(answer["message"] for _, answer in answers)
        assert messages == Counter({"PAID": 1, "DUPLICATE": 5}), why
        assert await first.event_types(invoice) == ["InvoiceCreated", "InvoicePaid"], why
    assert f"buyer:{buyer}" not in await first.accounts()  # each copy paid once, none credited
    await first.assert_balanced()
    await first.verify()


async def refunds_and_due_invoices(
    service: Service, buyer: str, refunds: int = 8, due: int = 4
) -> tuple[list[str], list[str]]:
    """Refunds asked for (paid out after the refund delay) and XENDIT invoices left to expire:
    (the refunded invoices, the pending ones)."""
    await service.top_up(buyer, refunds * PRICE)
    refunded = []
    for _ in range(refunds):
        invoice, store = await paid_checkout(service, buyer)
        answer = await service.platform(
            "cancel", invoice_id=invoice, invoice_onmarket=store, buyer_username=buyer
        )
        assert answer == (200, REFUND_IN_PROCESS), answer
        refunded.append(invoice)
    pending = []
    for _ in range(due):
        status, body = await service.checkout(buyer, checkout_body(stores=1, source="XENDIT"))
        assert status == 200, body
        pending.append(body["invoice"])
    return refunded, pending


async def each_done_once(
    service: Service, buyer: str, refunded: list[str], pending: list[str]
) -> None:
    """Every refund completed and every due invoice expired, each exactly once (after a pause in
    which a second completion or expiry, if any, would show), the buyer credited once each."""
    for invoice in refunded:
        await wait_for_events(service, invoice, REFUNDED_EVENTS)
    for invoice in pending:
        await wait_for_events(service, invoice, ["InvoiceCreated", "InvoiceExpired"])
    assert await service.balance(buyer) == len(refunded) * PRICE
    await asyncio.sleep(1.5)
    for invoice in refunded:
        assert (await service.event_types(invoice)).count("RefundCompleted") == 1
    for invoice in pending:
        assert (await service.event_types(invoice)).count("InvoiceExpired") == 1
    await service.assert_balanced()
    await service.verify()


async def kill_the_worker_holding_the_jobs(service: Service, workers: int, buyer: str) -> float:
    """``kill -9`` of the worker of ``serve --workers N`` holding the refund worker's lease, with
    refunds and expiries pending: the seconds until other workers hold its leases; each refund
    and expiry then done once, and the supervisor replaces the killed worker. On SQLite
    (tests/multiprocess/test_workers.py) and on PostgreSQL (test_nodes.py)."""

    async def holder() -> bool:
        return await service.lease_holder("refund-worker") is not None

    await wait_for(holder, 10, "a holder")
    pids = service.worker_pids()
    assert len(pids) == workers
    refunded, pending = await refunds_and_due_invoices(service, buyer)
    victim = await service.lease_holder("refund-worker")
    assert victim in pids
    held_by_victim = [
        job for job in ("refund-worker", "expiry-task") if await service.lease_holder(job) == victim
    ]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    async def taken_over() -> bool:
        holders = [await service.lease_holder(job) for job in held_by_victim]
        return all(h is not None and h != victim and alive(h) for h in holders)

    await wait_for(taken_over, TAKEOVER_LIMIT_SECONDS, f"{held_by_victim} taken over")
    took = time.monotonic() - killed_at
    await each_done_once(service, buyer, refunded, pending)

    def replaced() -> bool:
        now = service.worker_pids()
        return len(now) == workers and victim not in now

    wait_until(replaced, 30, "the killed worker replaced")
    return took
