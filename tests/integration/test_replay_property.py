"""Replay equals live: random command sequences, then a rebuild of a copy gives the same views.

Hypothesis draws sequences of the domain's commands (checkouts of every source with one to
three stores, payments by callback or found by reconciliation, repeated and wrong payments,
done and cancel of random stores, invoices marked paid out of band, refunds, expiry by time and
by the gateway, late payments, top-ups, keyed retries, and pairs of commands racing each other)
and runs them through ``InvoiceService`` on a real SQLite file with the service's projectors.
Refusals are part of the domain and are ignored; anything else fails the test.

Then the live file is copied with the online backup, the copy's views are dropped and replayed
from its log, and every view table must be identical row by row (types included) to the live
one; ``compare_views_with_replay`` must agree, the ledger must sum to zero, and each invoice
replayed to the head (the ``as_of`` path) must equal its row in the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import strategies as st

from eventstore import Checkpoint, CheckpointConflict
from eventstore.sqlite import SQLiteEventStore
from service.app import make_gateway, make_service
from service.application import (
    Actor,
    CancelTransaction,
    Checkout,
    CheckoutOrder,
    CompleteRefund,
    CompleteTransaction,
    Context,
    ExpireByGateway,
    Idempotency,
    InvoiceService,
    MarkPaid,
    Reconcile,
    RecordPayment,
    RegisterUser,
    TopUp,
)
from service.config import load_config
from service.domain.errors import DomainError
from service.domain.events import TransactionLine
from service.domain.invoice import Invoice, Payment
from service.gateway.sandbox import SandboxGateway
from service.storage.sqlite.backup import backup_database
from service.storage.sqlite.views_check import VIEW_TABLES, compare_views_with_replay
from service.views.invoice_state import decode_state
from service.views.sqlite import SQLiteReadModel, all_projectors
from service.views.status_history import decode_history
from service.workers.expiry import expire_due
from service.workers.refunds import NAME as REFUND_WORKER

START = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
BUYERS = ("usernew1", "buyer2")
PLATFORMS = {"ONMARKET": "onmarket", "ONDELIVERY": "ondelivery", "ONTICKET": "onticket"}
ADMIN = Actor("admin", "admin")
ACCOUNTS = (
    *((buyer, "buyer", None) for buyer in BUYERS),
    ("seller1", "buyer", None),
    ("admin", "admin", None),
    *((platform, "platform", service) for service, platform in PLATFORMS.items()),
)

Op = tuple[Any, ...]


# -- the commands ----------------------------------------------------------------------------

pick = st.integers(min_value=0, max_value=1000)  # an index into what exists, taken modulo
money = st.sampled_from([0, 1, 999, 5000, 10000, 123457])
lines = st.lists(
    st.tuples(money, money, st.sampled_from([0, 100]), st.booleans()), min_size=1, max_size=3
)
checkout_op = st.tuples(
    st.just("checkout"),
    st.sampled_from(BUYERS),
    st.sampled_from(sorted(PLATFORMS)),
    st.sampled_from(["XENDIT", "QRIS", "BALANCE"]),
    lines,
    st.none() | pick,  # reuse the marketplace number of an earlier line
    st.none() | st.integers(min_value=0, max_value=2),  # an idempotency key
)
simple_ops = st.one_of(
    st.tuples(st.just("pay"), pick, st.sampled_from(["callback", "reconcile", "wrong-amount"])),
    st.tuples(st.just("repay"), pick),
    st.tuples(st.just("done"), pick, pick, st.booleans()),
    st.tuples(st.just("cancel"), pick, st.none() | pick | pick, st.booleans()),
    st.tuples(st.just("gateway-expire"), pick),
    st.tuples(st.just("mark-paid"), pick, st.booleans()),
    st.tuples(st.just("refunds")),
    st.tuples(st.just("topup"), st.sampled_from(BUYERS), st.sampled_from([1, 20000, 500000])),
)
clock_ops = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([1, 600, 3600, 7201])),
    st.tuples(st.just("expire")),
)
steps = st.lists(
    st.one_of(
        checkout_op,
        simple_ops,
        simple_ops,
        clock_ops,
        st.tuples(st.just("together"), st.lists(simple_ops | checkout_op, min_size=2, max_size=3)),
    ),
    min_size=3,
    max_size=25,
)
# Each sequence starts with money and an invoice, so the commands after it have work to do.
scenarios = st.tuples(
    st.tuples(st.just("topup"), st.sampled_from(BUYERS), st.sampled_from([20000, 500000])),
    checkout_op,
    steps,
).map(lambda drawn: [drawn[0], drawn[1], *drawn[2]])


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    """The service under test and what the commands have made so far."""

    store: SQLiteEventStore
    service: InvoiceService
    gateway: SandboxGateway
    clock: Clock
    invoices: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    payments: list[tuple[str, Payment]] = field(default_factory=list)
    counter: int = 0

    def nth(self, items: list[Any], index: int) -> Any:
        return items[index % len(items)] if items else None

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    async def nth_invoice(self, index: int) -> tuple[str, Invoice] | None:
        """The ``index``-th invoice made so far (cyclically) and its current state."""
        invoice = self.nth(self.invoices, index)
        if invoice is None:
            return None
        state, _ = await self.service.load_invoice(invoice)
        assert state is not None
        return invoice, state


async def run(world: World, op: Op) -> None:
    """Carry out one command; the domain's refusals are outcomes like any other."""
    with contextlib.suppress(DomainError):
        await COMMANDS[op[0]](world, *op[1:])


async def checkout(
    world: World,
    buyer: str,
    service: str,
    source: str,
    drawn: list[tuple[int, int, int, bool]],
    reuse: int | None,
    key: int | None,
) -> None:
    transactions = []
    for i, (amount, freight, insurance, waybill) in enumerate(drawn):
        number = world.fresh("INV")
        if reuse is not None and i == 0 and world.numbers:
            number = world.nth(world.numbers, reuse)
        world.numbers.append(number)
        transactions.append(
            TransactionLine(
                number,
                f"seller{i + 1}",
                amount,
                freight,
                insurance,
                amount // 10,
                f"WB-{amount}" if waybill and service == "ONDELIVERY" else None,
            )
        )
    total = sum(line.total for line in transactions)
    if total == 0:
        return  # the API refuses it before the service sees it
    order = CheckoutOrder(buyer, service, source, total, tuple(transactions))
    idempotency = None if key is None else Idempotency(f"key-{key}", f"{buyer}:{order!r}")
    _, answer = await world.service.handle(
        Checkout(order, idempotency), Context(buyer, world.fresh("req"))
    )
    if answer["invoice"] not in world.invoices:
        world.invoices.append(answer["invoice"])


async def pay(world: World, index: int, how: str) -> None:
    found = await world.nth_invoice(index)
    if found is None:
        return
    invoice, state = found
    amount = state.created.total_amount + (1 if how == "wrong-amount" else 0)
    payment = Payment(world.fresh("pay"), amount, "BANK_TRANSFER", "BCA", world.clock())
    context = Context("gateway", world.fresh("req"))
    if how == "reconcile":  # paid at the gateway, the callback lost: reconciliation finds it
        reference = state.created.gateway_reference
        world.gateway.record_payment(reference, payment.payment_id, amount, payment.paid_at, "X")
        await world.service.handle(Reconcile(invoice), context)
    else:
        await world.service.handle(RecordPayment(invoice, payment), context)
    world.payments.append((invoice, payment))


async def repay(world: World, index: int) -> None:
    """A payment the gateway reports again (a repeated callback)."""
    if world.payments:
        invoice, payment = world.nth(world.payments, index)
        await world.service.handle(RecordPayment(invoice, payment), Context("gateway"))


async def done(world: World, index: int, line: int, name_it: bool) -> None:
    found = await world.nth_invoice(index)
    if found is None:
        return
    invoice, state = found
    service = state.created.service
    number = world.nth([t.line.invoice_onmarket for t in state.transactions], line)
    command = CompleteTransaction(
        Actor(PLATFORMS[service], "platform", service),
        invoice,
        invoice_onmarket=number if name_it or len(state.transactions) > 1 else None,
    )
    await world.service.handle(command, Context(PLATFORMS[service], world.fresh("req")))


async def cancel(world: World, index: int, line: int | None, right_buyer: bool) -> None:
    found = await world.nth_invoice(index)
    if found is None:
        return
    invoice, state = found
    service = state.created.service
    numbers = [t.line.invoice_onmarket for t in state.transactions]
    command = CancelTransaction(
        Actor(PLATFORMS[service], "platform", service),
        invoice,
        invoice_onmarket=None if line is None else world.nth(numbers, line),
        buyer_username=state.created.username if right_buyer else "someone-else",
    )
    await world.service.handle(command, Context(PLATFORMS[service], world.fresh("req")))


async def mark_paid(world: World, index: int, by_admin: bool) -> None:
    found = await world.nth_invoice(index)
    if found is None:
        return
    invoice, state = found
    service = state.created.service
    actor = ADMIN if by_admin else Actor(PLATFORMS[service], "platform", service)
    reference = world.fresh("transfer")
    command = MarkPaid(actor, service, invoice, reference, "paid by bank transfer")
    await world.service.handle(command, Context(actor.username, world.fresh("req")))


async def gateway_expire(world: World, index: int) -> None:
    invoice = world.nth(world.invoices, index)
    if invoice is not None:
        await world.service.handle(ExpireByGateway(invoice), Context("gateway"))


async def refunds(world: World) -> None:
    """What the refund worker does, from its checkpoint, one refund after another."""
    after = await world.store.load_checkpoint(REFUND_WORKER)
    requested = [
        event
        async for event in world.store.read_all(after_position=after)
        if event.type == "RefundRequested"
    ]
    for event in requested:
        command = CompleteRefund.of(event, Checkpoint(REFUND_WORKER, event.position))
        context = Context("system:refund-worker", event.metadata.get("request_id"))
        # Two of these racing is two workers: the one that finds the refund done and the
        # checkpoint moved already skips it, as the real worker does.
        with contextlib.suppress(CheckpointConflict):
            await world.service.handle(command, context)


async def top_up(world: World, buyer: str, amount: int) -> None:
    command = TopUp(ADMIN.username, buyer, amount)
    await world.service.handle(command, Context("admin", world.fresh("req")))


async def advance(world: World, seconds: int) -> None:
    world.clock.now += timedelta(seconds=seconds)


async def expire(world: World) -> None:
    await expire_due(SQLiteReadModel(world.store), world.service, world.clock())


async def together(world: World, racing: list[Op]) -> None:
    """Commands at once, as concurrent requests would be (their appends may share a commit)."""
    await asyncio.gather(*(run(world, op) for op in racing))


COMMANDS: dict[str, Callable[..., Awaitable[None]]] = {
    "checkout": checkout,
    "pay": pay,
    "repay": repay,
    "done": done,
    "cancel": cancel,
    "gateway-expire": gateway_expire,
    "mark-paid": mark_paid,
    "refunds": refunds,
    "topup": top_up,
    "advance": advance,
    "expire": expire,
    "together": together,
}


# -- the property ----------------------------------------------------------------------------


def table_rows(database: Path) -> dict[str, list[str]]:
    """Every row of every view table, each as text that tells 1 from 1.0 and '1' from 1."""
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {
            table: [repr(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]
            for table, order in VIEW_TABLES.items()
        }
    finally:
        conn.close()


def scalar(database: Path, sql: str) -> Any:
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


async def scenario(folder: Path, commands: list[Op], page_size: int = 1000) -> set[str]:
    """Run ``commands``, check the property; the event types the log ended with."""
    live, copy = folder / "live.db", folder / "copy.db"
    config = load_config(None, {}, database=str(live))
    gateway = make_gateway(config)
    assert isinstance(gateway, SandboxGateway)
    clock = Clock()
    async with await SQLiteEventStore.open(
        live, projectors=all_projectors(), synchronous="OFF"
    ) as store:
        service = make_service(store, gateway, config, clock)
        for username, role, platform in ACCOUNTS:
            command = RegisterUser(username, role, platform, "not-a-hash")
            await service.handle(command, Context("test"))
        world = World(store, service, gateway, clock)
        for op in commands:
            await run(world, op)

        # The copy is taken while the live store is open, as an operator's would be.
        report = await backup_database(live, copy)
        assert report.ok, report.reason
        # Small pages put an invoice's events in different pages of the replay. The replica
        # rebuilds in parallel however short its log (the ledger in a worker process), and
        # compare_views_with_replay below in this process: both must give the live views.
        replica = await SQLiteEventStore.open(
            copy, projectors=all_projectors(), page_size=page_size, rebuild_parallel_from=1
        )
        async with replica:
            replayed = await replica.rebuild_projections()
        assert replayed == report.events_checked == await store.head_position()

        live_rows, replayed_rows = table_rows(live), table_rows(copy)
        for table in VIEW_TABLES:
            assert replayed_rows[table] == live_rows[table], table
        assert await compare_views_with_replay(live) == []
        assert scalar(live, "SELECT COALESCE(SUM(balance), 0) FROM account_balances") == 0
        assert scalar(live, "SELECT COALESCE(SUM(amount), 0) FROM ledger_entries") == 0

        head = await store.head_position()
        rows = await store.query("SELECT invoice, state, status_history FROM invoice_view")
        for invoice, state_text, history_text in rows:
            as_of = await service.invoice_as_of(invoice, position=head)
            assert as_of is not None
            assert as_of[0] == decode_state(state_text), invoice
            assert as_of[1] == decode_history(history_text), invoice
        return {event.type async for event in store.read_all()}


@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
@hypothesis.given(scenarios, st.sampled_from([1, 2, 3, 7, 1000]))
def test_a_rebuild_gives_views_identical_to_the_live_ones(
    commands: list[Op], page_size: int
) -> None:
    """Any command sequence: replayed views equal the live ones row for row; ledger sums to 0."""
    with tempfile.TemporaryDirectory(prefix="replay-") as folder:
        for event_type in sorted(asyncio.run(scenario(Path(folder), commands, page_size))):
            hypothesis.event(event_type)
