"""A stateful model test: random sequences of the API's operations against the real app, every
step checked against a small model of what the SPEC and docs/api.md say must happen.

Hypothesis's ``RuleBasedStateMachine`` drives the real app (``create_app`` on its own database, an
SQLite file or a PostgreSQL database copied from a template, served by aiohttp's test server on an
event loop the machine owns; the clock is a ``FakeClock``): checkouts of every source (XENDIT,
QRIS, BALANCE) with one to three stores by three buyers, some without the balance they need, some
reusing a marketplace number, some sent again with or without an ``Idempotency-Key``; payments
through the sandbox's pay endpoint or the signed gateway callbacks (Xendit's invoice callback in
both of its shapes, the QR callback), wrong amounts (kept as the buyer's, the invoice still
PENDING), repeated callbacks, a payment id reported for another invoice, unsigned callbacks; late
payments (after expiry or cancel) and second payments; expiry by the clock (then the expiry pass,
or its background task) and by the gateway; cancels of PENDING invoices and of PAID stores
(refunds), the refund worker paying them, dones (one at a time and in batches), invoices marked
paid out of band (by their platform or an admin), admin top-ups, platforms acting on another
service's invoice or on one that does not exist, buyers asking for someone else's invoice.

Beside it a model keeps each invoice's status and its stores' statuses, who holds each
marketplace number, which payment ids each invoice has seen, the answers kept for idempotency
keys, and the money of every ledger account. Every answer, refusals included, must be the one
the model expects (status, message and code). After every step: the ledger sums to zero; no
buyer balance and no escrow is negative; every view equals a fresh replay of the log (what
``compare_views_with_replay``, i.e. ``python -m service verify``, checks); and the service agrees
with the model on every ledger account, every invoice and its stores (GET /invoice/detail), and
every buyer's and seller's balance and entries (GET /balance).

The test runs on both backends (``[sqlite]``, ``[postgresql]``). On PostgreSQL a replay of the
views costs a database of its own, so it is checked once, at each example's end, rather than
after every step. At the end of every example the log moves as ``migrate-store`` moves it: on
SQLite into another SQLite file and into PostgreSQL, on PostgreSQL into another PostgreSQL
database; every copy holds the same events (ids, positions, times, hashes), verifies, and has
the views and read-model answers of its source.

The refund worker is the real one, but it waits at a gate the machine opens in the rule "the
refund worker pays the refunds" (and closes once every refund asked for shows REFUNDED): so
REFUND_IN_PROCESS is a state the model can see, and what follows from it (a second cancel, a
done) is checked rather than raced.

``make test`` runs a short session; ``SOAK=1`` (``make soak``) a long one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
import secrets
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from eventstore import open_store
from eventstore.sqlite import SQLiteEventStore
from service.app import DEV_ACCOUNTS, create_app, make_gateway, make_service
from service.application import (
    Command,
    CompleteRefund,
    Context,
    DisableUser,
    EnableUser,
    RegisterUser,
)
from service.config import load_config
from service.http.auth import ACCOUNT_CACHE_SECONDS
from service.http.keys import READ_MODEL, SERVICE, STORE
from service.migration import copy_log, rebuild_and_verify
from service.presenters import api_time
from service.security import verify_password
from service.views.backends import projectors_for, read_model_of
from service.views.read_model import ReadModel
from service.views.sqlite import all_projectors
from service.workers.expiry import expire_due
from tests.contract.backends.postgresql import database_url, drop_database
from tests.dumps import sqlite_view_rows
from tests.e2e.conftest import (
    Api,
    FakeClock,
    database_from_template,
    postgresql_template,
    sqlite_template,
)
from tests.pgdb import fresh_database
from tests.sqlviews import view_tables, views_query
from tests.viewreplay import first_difference

T = TypeVar("T")

SOAK = os.environ.get("SOAK") == "1"
TTL = timedelta(hours=2)  # the configured invoice_ttl_seconds (the default)
KEY_TTL = timedelta(hours=24)  # idempotency_ttl_seconds (the default)
BUYERS = ("usernew1", "seller1", "buyer2")  # seller1 is a buyer account that also sells
SELLERS = ("seller1", "seller2", "seller3")
ONLY_SELLERS = ("seller2", "seller3")  # sellers that are not among the buyers: the ones disabled
PLATFORMS = {"ONMARKET": "onmarket", "ONDELIVERY": "ondelivery", "ONTICKET": "onticket"}
PREFIXES = {"ONMARKET": "OM", "ONDELIVERY": "OD", "ONTICKET": "OT"}
# Every buyer and seller has an account: tokens and sellers are checked against the accounts.
USERS = (
    *DEV_ACCOUNTS,
    ("buyer2", "buyer", None),
    ("seller2", "buyer", None),
    ("seller3", "buyer", None),
)
GATEWAY_ACCOUNT = "gateway:xendit"
TOPUP_ACCOUNT = "external:topup"
MANUAL_ACCOUNT = "external:manual"  # out-of-band payments (POST /invoice/mark-paid)
UNKNOWN_NUMBER = "INV/NOT/OF-THIS-INVOICE"
INVOICE_CALLBACK, QR_CALLBACK = "/callback/xendit/invoice", "/callback/xendit/qr"

PENDING, PAID, EXPIRED, CANCELED = "PENDING", "PAID", "EXPIRED", "CANCELED"
REFUND_IN_PROCESS, REFUNDED, COMPLETED = "REFUND_IN_PROCESS", "REFUNDED", "COMPLETED"
SETTLING = (REFUND_IN_PROCESS, REFUNDED, COMPLETED)  # a paid store on its way out, or out

# -- the answers the model expects ---------------------------------------------------------

Expected = tuple[int, dict[str, Any]]


def ok(message: str) -> Expected:
    return 200, {"message": message}


def refused(message: str, code: str, status: int = 400) -> Expected:
    return status, {"message": message, "code": code}


INVOICE_NOT_FOUND = refused("Invoice not found", "INVOICE_NOT_FOUND")
TRANSACTION_NOT_FOUND = refused("Transaction not found", "TRANSACTION_NOT_FOUND")
EXPIRED_INVOICE = refused("EXPIRED INVOICE", "INVOICE_EXPIRED")
ALREADY_CANCELED = refused("TRANSACTION IS ALREADY CANCELED", "TRANSACTION_ALREADY_CANCELED")
ALREADY_REFUNDED = refused("TRANSACTION IS ALREADY CANCELED", "TRANSACTION_ALREADY_REFUNDED")
ALREADY_IN_PROCESS = refused("REFUND ALREADY IN PROCESS", "REFUND_ALREADY_IN_PROCESS")
ALREADY_COMPLETED = refused("TRANSACTION IS ALREADY COMPLETED", "TRANSACTION_ALREADY_COMPLETED")
NOT_PAID = refused("TRANSACTION IS NOT PAID", "TRANSACTION_NOT_PAID")
FIELDS_REQUIRED = refused("Invalid JSON Format", "VALIDATION")
BUYER_MISMATCH = refused("Invalid JSON Format", "BUYER_MISMATCH")
NUMBER_IN_USE = refused("Invalid JSON Format", "INVOICE_ONMARKET_IN_USE")
SELLER_NOT_FOUND = refused("Invalid JSON Format", "SELLER_NOT_FOUND")
INSUFFICIENT_BALANCE = refused("Insufficient balance", "INSUFFICIENT_BALANCE")
AMOUNT_MISMATCH = refused("Paid amount does not match the invoice", "PAID_AMOUNT_MISMATCH")
PAYMENT_ID_REUSED = refused(
    "This payment id was already recorded for another invoice", "PAYMENT_ID_REUSED", 409
)
FORBIDDEN = refused("Forbidden", "FORBIDDEN", 403)
KEY_REUSED = refused(
    "Idempotency-Key was already used with a different request", "IDEMPOTENCY_KEY_REUSED", 409
)
AUTH_ERROR = refused("Auth Error", "AUTH_ERROR", 401)
ALREADY_PAID = refused("INVOICE ALREADY PAID", "ALREADY_PAID", 409)  # the sandbox's own answer
USER_NOT_FOUND = refused("User not found", "USER_NOT_FOUND")
NOT_A_BUYER = refused("Only buyer accounts have a balance to top up", "NOT_A_BUYER")
INVOICE_ALREADY_PAID = refused("INVOICE IS ALREADY PAID", "INVOICE_ALREADY_PAID")

# What done and cancel answer for a store of a PAID (or settled) invoice that is not PAID.
STORE_REFUSALS = {
    PENDING: NOT_PAID,
    REFUND_IN_PROCESS: ALREADY_IN_PROCESS,
    REFUNDED: ALREADY_REFUNDED,
    COMPLETED: ALREADY_COMPLETED,
}


# -- the model -------------------------------------------------------------------------------


@dataclass
class Store:
    """One store's transaction of an invoice."""

    number: str  # invoice_onmarket
    seller: str
    amount: int
    freight: int
    insurance: int
    commission: int
    status: str = PENDING

    @property
    def total(self) -> int:
        return self.amount + self.freight + self.insurance

    def line(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "freight_charge": self.freight,
            "insurance_amount": self.insurance,
            "commission_onmarket": self.commission,
            "seller_username": self.seller,
            "invoice_onmarket": self.number,
        }


@dataclass
class Invoice:
    invoice: str
    buyer: str
    service: str
    source: str
    reference: str  # xendit_invoice
    expired_at: datetime
    stores: list[Store]
    status: str = PENDING  # as the log has it: a PENDING invoice may be past its expiry
    payment_ids: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(store.total for store in self.stores)

    def shown(self, now: datetime) -> str:
        """The status as the API shows it: never PENDING once expired_at has passed."""
        return EXPIRED if self.status == PENDING and now >= self.expired_at else self.status

    def shown_stores(self, now: datetime) -> list[str]:
        due = self.status == PENDING and now >= self.expired_at
        return [EXPIRED if due and s.status == PENDING else s.status for s in self.stores]

    def store(self, number: str) -> Store | None:
        return next((store for store in self.stores if store.number == number), None)

    def set_all(self, status: str) -> None:
        self.status = status
        for store in self.stores:
            store.status = status

    def settle(self) -> None:
        """Settled once every store is completed or refunded: COMPLETED if any was completed."""
        statuses = {store.status for store in self.stores}
        if statuses <= {COMPLETED, REFUNDED}:
            self.status = COMPLETED if COMPLETED in statuses else REFUNDED


@dataclass(frozen=True)
class SentCheckout:
    """A checkout as a buyer sent it, to send again."""

    buyer: str
    body: dict[str, Any]
    key: str | None  # the Idempotency-Key header

    def stores(self) -> list[Store]:
        return [
            Store(
                line["invoice_onmarket"],
                line["seller_username"],
                line["amount"],
                line["freight_charge"],
                line["insurance_amount"],
                line["commission_onmarket"],
            )
            for line in self.body["transaction"]
        ]


@dataclass(frozen=True)
class KeptAnswer:
    """The first answer to a checkout with an Idempotency-Key, as the service must keep it."""

    body: dict[str, Any]
    answer: dict[str, Any]
    expires_at: datetime


class Model:
    """What the service must have done, kept by hand from the SPEC and docs/api.md."""

    def __init__(self) -> None:
        self.invoices: dict[str, Invoice] = {}
        self.keys: dict[tuple[str, str], KeptAnswer] = {}  # (buyer, Idempotency-Key)
        self.holders: dict[str, str] = {}  # marketplace number -> the invoice that last took it
        self.payment_owners: dict[str, str] = {}  # gateway payment id -> the invoice it paid
        # What the sandbox took: gateway reference -> (payment id, amount), one payment each.
        self.sandbox_paid: dict[str, tuple[str, int]] = {}
        self.accounts: Counter[str] = Counter()
        self.disabled: set[str] = set()  # accounts disabled by an operator

    def move(self, source: str, destination: str, amount: int) -> None:
        self.accounts[source] -= amount
        self.accounts[destination] += amount

    def balance(self, username: str) -> int:
        return self.accounts[f"buyer:{username}"]

    def holds(self, number: str, now: datetime) -> bool:
        """Is the number part of another invoice that is still PENDING or PAID?"""
        holder = self.holders.get(number)
        return holder is not None and self.invoices[holder].shown(now) in (PENDING, PAID)

    def kept_answer(self, checkout: SentCheckout, now: datetime) -> Expected | None:
        """A repeat of a keyed checkout within 24 h: the first answer, or 409 for another body."""
        kept = self.keys.get((checkout.buyer, checkout.key)) if checkout.key else None
        if kept is None or kept.expires_at <= now:
            return None
        return (200, kept.answer) if kept.body == checkout.body else KEY_REUSED

    def checkout_refusal(
        self, buyer: str, source: str, stores: list[Store], now: datetime
    ) -> Expected | None:
        if any(store.seller in self.disabled for store in stores):
            return SELLER_NOT_FOUND
        if any(self.holds(store.number, now) for store in stores):
            return NUMBER_IN_USE
        if source == "BALANCE" and self.balance(buyer) < sum(store.total for store in stores):
            return INSUFFICIENT_BALANCE
        return None

    def created(self, invoice: Invoice) -> None:
        self.invoices[invoice.invoice] = invoice
        for store in invoice.stores:
            self.holders[store.number] = invoice.invoice
        if invoice.source == "BALANCE":  # paid at once from the buyer's balance
            invoice.set_all(PAID)
            self.move(f"buyer:{invoice.buyer}", f"escrow:{invoice.invoice}", invoice.total)

    def pay(self, name: str, ids: tuple[str, ...], amount: int, now: datetime) -> Expected:
        """A gateway payment: ``ids`` are the payment's id and the other ids it is known by."""
        invoice = self.invoices[name]
        if set(ids) & invoice.payment_ids:
            return ok("DUPLICATE")
        if amount != invoice.total and amount <= 0:
            return AMOUNT_MISMATCH  # no money to keep
        if self.payment_owners.get(ids[0], name) != name:
            return PAYMENT_ID_REUSED
        self.payment_owners[ids[0]] = name
        if invoice.shown(now) == PENDING and amount != invoice.total:
            # The wrong amount: the buyer's money, the invoice still PENDING. Only the payment's
            # own id is used up, so the gateway invoice's id can still pay it.
            invoice.payment_ids.add(ids[0])
            self.move(GATEWAY_ACCOUNT, f"buyer:{invoice.buyer}", amount)
            return ok("AMOUNT_MISMATCH_CREDITED")
        invoice.payment_ids.update(ids)
        if invoice.shown(now) == PENDING:
            invoice.set_all(PAID)
            self.move(GATEWAY_ACCOUNT, f"escrow:{name}", amount)
            return ok("PAID")
        # Too late (expired, canceled) or a second payment, of any amount: real money, kept as
        # the buyer's.
        if invoice.status == PENDING:
            invoice.set_all(EXPIRED)  # the late payment records the expiry too
        self.move(GATEWAY_ACCOUNT, f"buyer:{invoice.buyer}", amount)
        return ok("CREDITED")

    def gateway_expiry(self, name: str, now: datetime) -> set[str]:
        """The gateway's EXPIRED callback: the answers the service may give."""
        invoice = self.invoices[name]
        if invoice.status != PENDING:
            return {"IGNORED"}
        invoice.set_all(EXPIRED)
        # Past expired_at the expiry task may have recorded the expiry already: then IGNORED.
        return {"EXPIRED", "IGNORED"} if now >= invoice.expired_at else {"EXPIRED"}

    def expire_due(self, now: datetime) -> list[str]:
        due = [i for i in self.invoices.values() if i.status == PENDING and now >= i.expired_at]
        for invoice in due:
            invoice.set_all(EXPIRED)
        return [invoice.invoice for invoice in due]

    def cancel(self, name: str, number: str | None, buyer: str | None, now: datetime) -> Expected:
        invoice = self.invoices[name]
        shown = invoice.shown(now)
        if shown == PENDING:
            if number is not None and invoice.store(number) is None:
                return TRANSACTION_NOT_FOUND
            if buyer is not None and buyer != invoice.buyer:
                return BUYER_MISMATCH
            invoice.set_all(CANCELED)
            return ok("INVOICE CANCELED")
        if shown == EXPIRED:
            return EXPIRED_INVOICE
        if shown == CANCELED:
            return ALREADY_CANCELED
        if number is None or buyer is None:
            return FIELDS_REQUIRED
        if buyer != invoice.buyer:
            return BUYER_MISMATCH
        store = invoice.store(number)
        if store is None:
            return TRANSACTION_NOT_FOUND
        if store.status != PAID:
            return STORE_REFUSALS[store.status]
        store.status = REFUND_IN_PROCESS
        return ok("REFUND IN PROCESS")

    def done(self, name: str, number: str | None, now: datetime) -> Expected:
        invoice = self.invoices[name]
        shown = invoice.shown(now)
        if shown == EXPIRED:
            return EXPIRED_INVOICE
        if shown == CANCELED:
            return ALREADY_CANCELED
        if number is None:
            if len(invoice.stores) != 1:
                return FIELDS_REQUIRED
            store: Store | None = invoice.stores[0]
        else:
            store = invoice.store(number)
        if store is None:
            return TRANSACTION_NOT_FOUND
        if store.status != PAID:
            return STORE_REFUSALS[store.status]
        store.status = COMPLETED
        escrow, service = f"escrow:{name}", invoice.service
        self.move(escrow, f"seller:{store.seller}", store.amount + store.freight - store.commission)
        self.move(escrow, f"platform:{service}:commission", store.commission)
        self.move(escrow, f"platform:{service}:insurance", store.insurance)
        invoice.settle()
        return ok("TRANSACTION IS COMPLETED")

    def mark_paid(self, name: str, now: datetime) -> Expected:
        """Paid out of band: PAID as if the gateway had paid it, the total from external:manual.
        No gateway payment id is used up, so a gateway payment afterwards is a late one."""
        invoice = self.invoices[name]
        shown = invoice.shown(now)
        if shown == EXPIRED:
            return EXPIRED_INVOICE
        if shown == CANCELED:
            return ALREADY_CANCELED
        if shown != PENDING:
            return INVOICE_ALREADY_PAID  # paid, and maybe completed or refunded since
        invoice.set_all(PAID)
        self.move(MANUAL_ACCOUNT, f"escrow:{name}", invoice.total)
        return ok("INVOICE MARKED AS PAID")

    def payable(self, now: datetime) -> list[str]:
        """The gateway invoices a first payment would pay."""
        return [
            name
            for name, invoice in self.invoices.items()
            if invoice.source != "BALANCE" and invoice.shown(now) == PENDING
        ]

    def stores_in(self, *statuses: str) -> list[tuple[str, str]]:
        """(invoice, invoice_onmarket) of every store in one of ``statuses``."""
        return [
            (invoice.invoice, store.number)
            for invoice in self.invoices.values()
            for store in invoice.stores
            if store.status in statuses
        ]

    def settleable(self) -> list[str]:
        """PAID invoices (the stores of an invoice that is not are all settled or unpaid)."""
        return [name for name, invoice in self.invoices.items() if invoice.status == PAID]

    def complete_refunds(self) -> None:
        for name, number in self.stores_in(REFUND_IN_PROCESS):
            invoice = self.invoices[name]
            store = invoice.store(number)
            assert store is not None
            store.status = REFUNDED
            self.move(f"escrow:{name}", f"buyer:{invoice.buyer}", store.total)
            invoice.settle()

    def top_up(self, username: str, amount: int) -> Expected:
        role = next((role for name, role, _ in USERS if name == username), None)
        if role is None:
            return USER_NOT_FOUND
        if role != "buyer":
            return NOT_A_BUYER
        self.move(TOPUP_ACCOUNT, f"buyer:{username}", amount)
        return ok("BALANCE TOPPED UP")


@dataclass(frozen=True)
class SentPayment:
    """A payment as it was sent (the sandbox's pay endpoint or a gateway callback), to repeat."""

    invoice: str
    path: str
    body: dict[str, Any]

    @property
    def by_sandbox(self) -> bool:
        return self.path.startswith("/sandbox/")

    def ids(self) -> tuple[str, ...]:
        """The payment's id, then the other ids the service must know it by."""
        if self.by_sandbox:
            return (self.body["payment_id"],)
        if self.path == QR_CALLBACK:
            return (self.body["data"]["id"],)
        payment_id = self.body.get("payment_id") or self.body["id"]
        return (payment_id,) if payment_id == self.body["id"] else (payment_id, self.body["id"])

    def amount(self, invoice: Invoice) -> int:
        if self.by_sandbox:
            return int(self.body.get("amount", invoice.total))
        if self.path == QR_CALLBACK:
            return int(self.body["data"]["amount"])
        return int(self.body["paid_amount"])

    def for_invoice(self, invoice: Invoice) -> SentPayment:
        """The same payment id reported for another invoice (its right amount)."""
        if self.by_sandbox:
            body = {"payment_id": self.body["payment_id"]}
            return SentPayment(invoice.invoice, sandbox_pay_path(invoice), body)
        if self.path == QR_CALLBACK:
            data = {
                **self.body["data"],
                "qr_id": invoice.reference,
                "reference_id": invoice.invoice,
                "amount": invoice.total,
            }
            return SentPayment(invoice.invoice, self.path, {**self.body, "data": data})
        body = {
            **self.body,
            "external_id": invoice.invoice,
            "amount": invoice.total,
            "paid_amount": invoice.total,
        }
        if "payment_id" in body:
            body["id"] = invoice.reference
        return SentPayment(invoice.invoice, self.path, body)


def sandbox_pay_path(invoice: Invoice) -> str:
    return f"/sandbox/invoices/{invoice.reference}/pay"


# -- the machine -----------------------------------------------------------------------------

lines = st.lists(
    st.tuples(
        st.sampled_from([1000, 10000, 25000]),  # amount
        st.sampled_from([0, 5000]),  # freight_charge
        st.sampled_from([0, 100]),  # insurance_amount
        st.sampled_from([0, 10, 100]),  # commission, in percent of the amount
        st.sampled_from(SELLERS),
    ),
    min_size=1,
    max_size=3,
)
Lines = list[tuple[int, int, int, int, str]]
keys = st.sampled_from((None, None, "key-1", "key-2"))
reuse = st.one_of(st.none(), st.none(), st.none(), st.integers(min_value=0, max_value=1000))
services = st.sampled_from(sorted(PLATFORMS))
which_store = st.sampled_from((0, 1, 2, 0, 1, 2, None, UNKNOWN_NUMBER))
acting = st.sampled_from(("own", "own", "own", "own", "other", "no-such-invoice"))
sometimes = st.sampled_from((False, False, False, True))
signed_ways = ("sandbox", "callback", "xendit-callback")


class InvoiceMachine(RuleBasedStateMachine):
    """The real app, driven over HTTP; rules are named for what happens in the story.

    Most rules pick any invoice (or payment) made so far, so refusals are exercised as often as
    successes; a few pick one the model knows to be payable, or a PAID store, so that payments,
    dones and refunds happen in most examples too."""

    invoices: Bundle[str] = Bundle("invoices")
    gateway_invoices: Bundle[str] = Bundle("gateway_invoices")  # XENDIT and QRIS ones
    payments: Bundle[SentPayment] = Bundle("payments")
    # The database each example starts from a copy of: an SQLite file, or the name of a
    # PostgreSQL template database.
    template: ClassVar[Path | str]
    moved: ClassVar[int] = 0  # SQLite examples whose log was moved into PostgreSQL as well

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory(prefix="stateful-")
        self.database = Path(self.folder.name) / "invoices.db"
        self.pg_database: str | None = None  # the example's own PostgreSQL database, if any
        if isinstance(self.template, Path):
            shutil.copy(self.template, self.database)
            self.location = str(self.database)
        else:
            self.pg_database = database_from_template(self.template)
            self.location = database_url(self.pg_database)
        self.config = load_config(
            None,
            {},
            database=self.location,
            refund_delay_seconds=0,
            expiry_interval_seconds=0.05,
            log_format="json",
            # Durability is not what this test is about (the crash tests are): without an fsync
            # per commit an example runs several times faster.
            synchronous="OFF",
        )
        self.clock = FakeClock()
        self.model = Model()
        self.checkouts: list[SentCheckout] = []  # every checkout sent, to send again
        # When each account was last disabled or enabled (the loop's time): a token may be
        # answered from the authenticator's cache of the old state for ACCOUNT_CACHE_SECONDS.
        self.switched: dict[str, float] = {}
        self.counter = 0
        self.loop = asyncio.new_event_loop()
        try:
            self.app = create_app(self.config, clock=self.clock)
            self.client: TestClient[web.Request, web.Application] = TestClient(
                TestServer(self.app), loop=self.loop
            )
            self.run(self.client.start_server())
        except BaseException:
            self._close_loop()
            raise
        self.api = Api(self.client, self.config, self.clock)
        self.refund_gate = asyncio.Event()
        self._gate_the_refund_worker()

    def _gate_the_refund_worker(self) -> None:
        """The real refund worker, held before each refund until the machine lets it pay."""
        service = self.app[SERVICE]
        handle = service.handle
        gate = self.refund_gate

        async def gated(command: Command[Any], context: Context) -> Any:
            if isinstance(command, CompleteRefund):
                await gate.wait()
            return await handle(command, context)

        service.handle = gated  # type: ignore[method-assign]

    def teardown(self) -> None:
        try:
            self.run(self.client.close())  # the app's cleanup: workers stopped, store closed
            if self.pg_database is None:
                self.run(self.the_log_moves_whole())
            if self.pg_database is not None or self._moves_into_postgresql():
                self.run(self.the_log_moves_into_postgresql())
        finally:
            self._close_loop()

    async def the_log_moves_whole(self) -> None:
        """``migrate-store``'s copy of the example's log holds the same events, hashes and
        all, verifies, and has the same views once rebuilt."""
        target = self.database.with_name("moved.db")
        await copy_log(str(self.database), str(target))
        assert (await rebuild_and_verify(str(target))).ok
        async with await open_store(self.database) as source, await open_store(target) as moved:
            assert [e async for e in moved.read_all()] == [e async for e in source.read_all()]
        assert sqlite_view_rows(target) == sqlite_view_rows(self.database)

    def _moves_into_postgresql(self) -> bool:
        """Is this SQLite example's log one of the few moved into PostgreSQL too?"""
        if not self.model.invoices or type(self).moved >= MOVES_INTO_POSTGRESQL:
            return False
        type(self).moved += 1
        return True

    async def the_log_moves_into_postgresql(self) -> None:
        """``migrate-store`` into a new PostgreSQL database (from either backend): the same
        events, hashes and all; the chain verifies; from PostgreSQL, the copy's rebuilt views
        equal the source's own (which are thereby checked against a replay of the log); and the
        copy's read model answers every question about invoices, balances, entries and
        accounts as the source's does."""
        async with fresh_database("stateful_moved") as target:
            await copy_log(self.location, target)
            assert (await rebuild_and_verify(target)).ok
            async with (
                await open_store(self.location, projectors=projectors_for(self.location)) as source,
                await open_store(target, projectors=projectors_for(target)) as moved,
            ):
                assert [e async for e in moved.read_all()] == [e async for e in source.read_all()]
                if self.pg_database is not None:
                    assert_same_views(await view_tables(source), await view_tables(moved))
                assert await self._answers(read_model_of(moved)) == await self._answers(
                    read_model_of(source)
                )

    async def _answers(self, views: ReadModel) -> list[Any]:
        """What ``views`` answers about every invoice, buyer, seller and account."""
        users = sorted({*BUYERS, *SELLERS, *(username for username, _, _ in USERS)})
        answers: list[Any] = []
        for name, invoice in sorted(self.model.invoices.items()):
            answers.append(await views.invoice(name, ADMIN))
            answers.append(await views.invoice_by_gateway_reference(invoice.reference))
        for user in users:
            answers.append(await views.balances(user))
            answers.append(await views.ledger_entries(user, 1000))
            answers.append(await views.user(user))
        return answers

    def _close_loop(self) -> None:
        try:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
            self.folder.cleanup()
            if self.pg_database is not None:
                drop_database(self.pg_database)

    # -- helpers -----------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    async def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        response = await self.client.post(path, json=body, headers=headers)
        answer: dict[str, Any] = await response.json()
        return response.status, answer

    async def get(
        self, path: str, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        response = await self.client.get(path, params=params, headers=headers)
        answer: dict[str, Any] = await response.json()
        return response.status, answer

    @staticmethod
    def expect(got: tuple[int, dict[str, Any]], expected: Expected, what: str) -> None:
        status, body = got
        shown = {key: body.get(key) for key in expected[1]}
        assert (status, shown) == expected, f"{what}: answered {status} {body}, not {expected}"

    # -- every example starts with money and an invoice -------------------------------------

    @initialize(amounts=st.lists(st.sampled_from((0, 40000, 250000)), min_size=3, max_size=3))
    def the_buyers_have_money(self, amounts: list[int]) -> None:
        for buyer, amount in zip(BUYERS, amounts, strict=True):
            if amount:
                self.an_admin_tops_up(buyer, amount)

    @initialize(
        targets=(invoices, gateway_invoices),
        buyer=st.sampled_from(BUYERS),
        service=services,
        source=st.sampled_from(("XENDIT", "QRIS")),
        drawn=lines,
    )
    def a_first_checkout(
        self, buyer: str, service: str, source: str, drawn: Lines
    ) -> MultipleResults[str]:
        return self._check_out(buyer, service, source, drawn, None, None)

    # -- checkouts ---------------------------------------------------------------------------

    @rule(
        targets=(invoices, gateway_invoices),
        buyer=st.sampled_from(BUYERS),
        service=services,
        source=st.sampled_from(("XENDIT", "QRIS")),
        drawn=lines,
        reused=reuse,
        key=keys,
    )
    def a_buyer_checks_out_at_the_gateway(
        self,
        buyer: str,
        service: str,
        source: str,
        drawn: Lines,
        reused: int | None,
        key: str | None,
    ) -> MultipleResults[str]:
        return self._check_out(buyer, service, source, drawn, reused, key)

    @rule(
        target=invoices,
        buyer=st.sampled_from(BUYERS),
        service=services,
        drawn=lines,
        reused=reuse,
        key=keys,
    )
    def a_buyer_checks_out_from_their_balance(
        self, buyer: str, service: str, drawn: Lines, reused: int | None, key: str | None
    ) -> MultipleResults[str]:
        return self._check_out(buyer, service, "BALANCE", drawn, reused, key)

    @precondition(lambda self: bool(self.checkouts))
    @rule(target=invoices, data=st.data())
    def a_buyer_sends_a_checkout_again(self, data: st.DataObject) -> MultipleResults[str]:
        """A retry (a double submit, a lost answer): with its Idempotency-Key the first answer
        again and nothing created; without one, a checkout like any other."""
        keyed = [checkout for checkout in self.checkouts if checkout.key is not None]
        choices = st.sampled_from(self.checkouts)
        if keyed:  # as often a keyed one as any
            choices = st.sampled_from(keyed) | choices
        return self._send_checkout(data.draw(choices, label="checkout"))

    def _check_out(
        self,
        buyer: str,
        service: str,
        source: str,
        drawn: Lines,
        reused: int | None,
        key: str | None,
    ) -> MultipleResults[str]:
        stores = [
            Store(self.fresh("INV/ST"), seller, amount, freight, insurance, amount * percent // 100)
            for amount, freight, insurance, percent, seller in drawn
        ]
        if reused is not None and self.model.holders:  # a number an earlier invoice took
            numbers = sorted(self.model.holders)
            stores[0].number = numbers[reused % len(numbers)]
        body = {
            "total_amount": sum(store.total for store in stores),
            "service": service,
            "source": source,
            "transaction": [store.line() for store in stores],
        }
        return self._send_checkout(SentCheckout(buyer, body, key))

    def _send_checkout(self, checkout: SentCheckout) -> MultipleResults[str]:
        buyer, body, stores = checkout.buyer, checkout.body, checkout.stores()
        service, source, total = body["service"], body["source"], body["total_amount"]
        if checkout not in self.checkouts:
            self.checkouts.append(checkout)
        headers = self.api.bearer(buyer)
        if checkout.key is not None:
            headers["Idempotency-Key"] = checkout.key
        now = self.clock()
        kept = self.model.kept_answer(checkout, now)
        got = self.run(self.post("/payment-checkout", body, headers))
        if kept is not None:
            assert got == kept, f"checkout again: answered {got}, not {kept}"
            return multiple()
        refusal = self.model.checkout_refusal(buyer, source, stores, now)
        if refusal is not None:
            self.expect(got, refusal, "checkout")
            return multiple()
        status, answer = got
        assert status == 200, answer
        name = answer["invoice"]
        assert name[:2] == PREFIXES[service], answer
        assert len(name) == 15, answer
        assert name.isalnum(), answer
        assert name not in self.model.invoices, answer
        assert answer["expired_at"] == api_time(now + TTL), answer
        if source == "QRIS":
            assert answer["amount"] == total, answer
            assert answer["qr_string"], answer
            assert answer["xendit_invoice"].startswith("qr_"), answer
        else:
            status_now = PAID if source == "BALANCE" else PENDING
            assert answer["transaction"] == [
                {"invoice_onmarket": store.number, "status": status_now} for store in stores
            ], answer
        if source == "XENDIT":
            assert answer["payment_url"].endswith(answer["xendit_invoice"]), answer
        if source == "BALANCE":
            assert answer["status"] == PAID, answer
            assert answer["amount"] == total, answer
            assert answer["xendit_invoice"] == f"balance-{name}", answer
        reference = answer["xendit_invoice"]
        self.model.created(Invoice(name, buyer, service, source, reference, now + TTL, stores))
        if checkout.key is not None:
            self.model.keys[buyer, checkout.key] = KeptAnswer(body, answer, now + KEY_TTL)
        return multiple(name)

    # -- accounts ----------------------------------------------------------------------------

    @rule(seller=st.sampled_from(ONLY_SELLERS), disable=st.booleans())
    def an_operator_disables_or_enables_a_seller(self, seller: str, disable: bool) -> None:
        """As ``python -m service users disable|enable`` does: checkouts paying a disabled
        seller are refused (SELLER_NOT_FOUND) from the next decision on."""
        command = DisableUser(seller) if disable else EnableUser(seller)
        changed = self.run(self.app[SERVICE].handle(command, Context("cli:stateful")))
        assert changed == (disable != (seller in self.model.disabled))
        if disable:
            self.model.disabled.add(seller)
        else:
            self.model.disabled.discard(seller)
        self.switched[seller] = self.loop.time()

    # -- payments ----------------------------------------------------------------------------

    @rule(
        target=payments,
        name=gateway_invoices,
        via=st.sampled_from((*signed_ways, *signed_ways, "unsigned")),
        wrong_amount=sometimes,
    )
    def a_payment_arrives(
        self, name: str, via: str, wrong_amount: bool
    ) -> MultipleResults[SentPayment]:
        """Through the sandbox's pay endpoint or a gateway callback (which must be signed):
        for an invoice in any state, so late and second payments are as likely as first ones."""
        payment = self._new_payment(name, via, wrong_amount)
        if via == "unsigned":
            headers = {"x-callback-token": "not-the-token"} if wrong_amount else {}
            got = self.run(self.post(payment.path, payment.body, headers))
            self.expect(got, AUTH_ERROR, "unsigned callback")
            return multiple()
        return multiple(self._pay(payment))

    @precondition(lambda self: bool(self.model.payable(self.clock())))
    @rule(target=payments, data=st.data(), via=st.sampled_from(signed_ways))
    def a_buyer_pays_a_pending_invoice(self, data: st.DataObject, via: str) -> SentPayment:
        name = data.draw(st.sampled_from(self.model.payable(self.clock())), label="invoice")
        return self._pay(self._new_payment(name, via, wrong_amount=False))

    @rule(payment=payments)
    def the_gateway_repeats_a_callback(self, payment: SentPayment) -> None:
        self._pay(payment)

    @rule(payment=payments, name=gateway_invoices)
    def a_payment_id_is_reported_for_another_invoice(self, payment: SentPayment, name: str) -> None:
        self._pay(payment.for_invoice(self.model.invoices[name]))

    def _new_payment(self, name: str, via: str, wrong_amount: bool) -> SentPayment:
        invoice = self.model.invoices[name]
        payment_id = self.fresh("payment")
        amount = invoice.total + (1 if wrong_amount else 0)
        if via == "sandbox":
            body: dict[str, Any] = {"payment_id": payment_id}
            if wrong_amount:
                body["amount"] = amount
            return SentPayment(name, sandbox_pay_path(invoice), body)
        paid_at = api_time(self.clock())
        if invoice.source == "QRIS":
            data = {
                "id": payment_id,
                "qr_id": invoice.reference,
                "reference_id": name,
                "amount": amount,
                "status": "SUCCEEDED",
                "created": paid_at,
                "channel_code": "ID_DANA",
            }
            return SentPayment(name, QR_CALLBACK, {"event": "qr.payment", "data": data})
        body = {
            "id": payment_id,
            "external_id": name,
            "status": "PAID",
            "amount": invoice.total,
            "paid_amount": amount,
            "paid_at": paid_at,
            "payment_method": "BANK_TRANSFER",
            "payment_channel": "BCA",
        }
        if via == "xendit-callback":  # as Xendit sends it: the gateway invoice's id in "id"
            body.update(id=invoice.reference, payment_id=payment_id)
        return SentPayment(name, INVOICE_CALLBACK, body)

    def _pay(self, payment: SentPayment) -> SentPayment:
        invoice = self.model.invoices[payment.invoice]
        ids, amount = payment.ids(), payment.amount(invoice)
        if payment.by_sandbox:
            # The sandbox takes one payment per gateway invoice or QR code (the same payment
            # again repeats its callback); its invoice callback names the gateway invoice too.
            taken = self.model.sandbox_paid.setdefault(invoice.reference, (ids[0], amount))
            if taken != (ids[0], amount):
                got = self.run(self.post(payment.path, payment.body))
                self.expect(got, ALREADY_PAID, f"sandbox payment {payment}")
                return payment
            if invoice.source != "QRIS":
                ids = (*ids, invoice.reference)
        expected = self.model.pay(payment.invoice, ids, amount, self.clock())
        if payment.by_sandbox:
            status, answer = self.run(self.post(payment.path, payment.body))
            assert answer["message"] == "CALLBACK SENT", answer
            assert answer["payment_id"] == payment.body["payment_id"], answer
            assert answer["callback"]["status"] == status, answer
            got = (status, answer["callback"]["body"])
        else:
            token = {"x-callback-token": self.config.callback_token}
            got = self.run(self.post(payment.path, payment.body, token))
        self.expect(got, expected, f"payment {payment}")
        return payment

    @rule(name=gateway_invoices, via=st.sampled_from(("sandbox", "callback")))
    def the_gateway_expires_the_payment(self, name: str, via: str) -> None:
        """The buyer abandons the payment on the sandbox's page (the gateway expires it and
        sends its EXPIRED callback), or the gateway's signed EXPIRED callback arrives."""
        invoice = self.model.invoices[name]
        allowed = self.model.gateway_expiry(name, self.clock())
        if via == "sandbox":
            path = f"/sandbox/invoices/{invoice.reference}/cancel"
            status, answer = self.run(self.post(path))
            assert status == 200, answer
            assert answer["message"] == "CALLBACK SENT", answer
            status, answer = answer["callback"]["status"], answer["callback"]["body"]
        else:
            body = {"id": invoice.reference, "external_id": name, "status": "EXPIRED"}
            token = {"x-callback-token": self.config.callback_token}
            status, answer = self.run(self.post(INVOICE_CALLBACK, body, token))
        assert status == 200, answer
        assert answer["message"] in allowed, (answer, allowed)

    # -- time --------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from((1, 60, 600, 3600, 7199, 7200, 7201, 86400)))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(by=st.sampled_from(("pass", "task")))
    def the_expiry_pass_runs(self, by: str) -> None:
        """The expiry pass (or its background task) records every due invoice's expiry: then
        the view's own status column is the model's for every invoice."""
        now = self.clock()
        due = self.model.expire_due(now)
        self.run(self._expire(by, now, len(due)))
        rows = self.run(views_query(self.app[STORE], "SELECT invoice, status FROM invoice_view"))
        recorded = dict(rows)
        for name, invoice in self.model.invoices.items():
            assert recorded[name] == invoice.status, (name, recorded[name], invoice.status)

    async def _expire(self, by: str, now: datetime, due: int) -> None:
        store = self.app[STORE]
        if by == "pass":
            # The task may have expired some already: never more than were due.
            assert await expire_due(self.app[READ_MODEL], self.app[SERVICE], now) <= due
            return
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            rows = await views_query(
                store,
                "SELECT COUNT(*) FROM invoice_view WHERE status = 'PENDING' AND expired_at <= ?",
                (now,),
            )
            if rows[0][0] == 0:
                return
            assert asyncio.get_running_loop().time() < deadline, "the expiry task did not run"
            await asyncio.sleep(0.01)

    # -- platforms ---------------------------------------------------------------------------

    @rule(
        name=invoices,
        store=which_store,
        buyer=st.sampled_from(("buyer", "buyer", "none", "another")),
        who=acting,
    )
    def the_platform_cancels(
        self, name: str, store: int | str | None, buyer: str, who: str
    ) -> None:
        invoice = self.model.invoices[name]
        named = {"buyer": invoice.buyer, "none": None}
        buyer_username = named.get(buyer, next(b for b in BUYERS if b != invoice.buyer))
        self._platform("cancel", invoice, self._number(invoice, store), buyer_username, who)

    @rule(name=invoices, store=which_store, who=acting)
    def the_platform_completes(self, name: str, store: int | str | None, who: str) -> None:
        invoice = self.model.invoices[name]
        self._platform("done", invoice, self._number(invoice, store), None, who)

    @precondition(lambda self: bool(self.model.stores_in(PAID, *SETTLING)))
    @rule(data=st.data(), refund=st.booleans())
    def the_platform_settles_a_store(self, data: st.DataObject, refund: bool) -> None:
        """Done (pay-out to the seller) or cancel (refund to the buyer) of a store of a paid
        invoice: as often one still PAID as one already refunding, refunded or completed."""
        choices = [
            st.sampled_from(stores)
            for stores in (self.model.stores_in(PAID), self.model.stores_in(*SETTLING))
            if stores
        ]
        name, number = data.draw(st.one_of(choices), label="store")
        invoice = self.model.invoices[name]
        if refund:
            self._platform("cancel", invoice, number, invoice.buyer, "own")
        else:
            self._platform("done", invoice, number, None, "own")

    @precondition(lambda self: bool(self.model.settleable()))
    @rule(data=st.data(), refunds=st.lists(st.booleans(), min_size=3, max_size=3))
    def the_platform_settles_an_order(self, data: st.DataObject, refunds: list[bool]) -> None:
        """Every PAID store of one invoice completed or refunded, then the refunds paid: the
        invoice ends COMPLETED (any store completed) or REFUNDED (all refunded)."""
        name = data.draw(st.sampled_from(self.model.settleable()), label="invoice")
        invoice = self.model.invoices[name]
        paid = [store.number for store in invoice.stores if store.status == PAID]
        for number, refund in zip(paid, refunds, strict=False):
            if refund:
                self._platform("cancel", invoice, number, invoice.buyer, "own")
            else:
                self._platform("done", invoice, number, None, "own")
        self._let_the_refund_worker_pay()

    @staticmethod
    def _number(invoice: Invoice, store: int | str | None) -> str | None:
        if isinstance(store, int):
            return invoice.stores[store % len(invoice.stores)].number
        return store

    def _platform(
        self, action: str, invoice: Invoice, number: str | None, buyer: str | None, who: str
    ) -> None:
        services = sorted(PLATFORMS)
        service = invoice.service
        if who == "other":  # another service's platform account, for its own service
            service = services[(services.index(service) + 1) % len(services)]
        invoice_id = invoice.invoice if who != "no-such-invoice" else PREFIXES[service] + "0" * 13
        body: dict[str, Any] = {"platform": service, "invoice_id": invoice_id}
        if number is not None:
            body["invoice_onmarket"] = number
        if buyer is not None:
            body["buyer_username"] = buyer
        now = self.clock()
        if who == "no-such-invoice":
            expected = INVOICE_NOT_FOUND
        elif who == "other":
            expected = FORBIDDEN
        elif action == "cancel":
            expected = self.model.cancel(invoice.invoice, number, buyer, now)
        else:
            expected = self.model.done(invoice.invoice, number, now)
        headers = self.api.basic(PLATFORMS[service])
        self.expect(self.run(self.post(f"/invoice/{action}", body, headers)), expected, action)

    @rule(data=st.data(), who=acting)
    def the_platform_completes_a_batch(self, data: st.DataObject, who: str) -> None:
        """1 to 4 items, each answered as /invoice/done would have: another service's invoice
        fails alone (FORBIDDEN), a missing one is not found. Each store is named once, so the
        items' outcomes do not depend on the order they are carried out in."""
        picks = data.draw(
            st.lists(
                st.tuples(st.sampled_from(sorted(self.model.invoices)), which_store),
                min_size=1,
                max_size=4,
            ),
            label="items",
        )
        service = self.model.invoices[picks[0][0]].service
        if who == "other":
            services = sorted(PLATFORMS)
            service = services[(services.index(service) + 1) % len(services)]
        items: list[dict[str, Any]] = []
        expected: list[tuple[str, str | None, str]] = []
        named: set[tuple[str, str | None]] = set()
        for name, store in picks:
            invoice = self.model.invoices[name]
            number = self._number(invoice, store)
            one = invoice.stores[0].number if len(invoice.stores) == 1 else None
            key = (name, number or one)
            if key in named:
                continue
            named.add(key)
            invoice_id = name if who != "no-such-invoice" else PREFIXES[service] + "0" * 13
            if who == "no-such-invoice":
                answer = INVOICE_NOT_FOUND
            elif invoice.service != service:
                answer = FORBIDDEN
            else:
                answer = self.model.done(name, number, self.clock())
            items.append({"invoice_id": invoice_id, "invoice_onmarket": number})
            status, shown = answer
            code = None if status == 200 else shown["code"]
            expected.append(("success" if status == 200 else "failed", code, shown["message"]))
        headers = self.api.basic(PLATFORMS[service])
        sent = {"platform": service, "items": items}
        status, results = self.run(self.post("/invoice/done/batch", sent, headers))
        assert status == 200, results
        got = [(r["status"], r["code"], r["message"]) for r in results["results"]]
        assert got == expected, (items, results)

    @rule(name=invoices, who=st.sampled_from(("own", "own", "admin", "other", "no-such-invoice")))
    def a_payment_out_of_band_is_marked(self, name: str, who: str) -> None:
        self._mark_paid(self.model.invoices[name], who)

    @precondition(lambda self: bool(self.model.payable(self.clock())))
    @rule(data=st.data(), who=st.sampled_from(("own", "admin")))
    def a_pending_invoice_is_marked_paid(self, data: st.DataObject, who: str) -> None:
        name = data.draw(st.sampled_from(self.model.payable(self.clock())), label="invoice")
        self._mark_paid(self.model.invoices[name], who)

    def _mark_paid(self, invoice: Invoice, who: str) -> None:
        services = sorted(PLATFORMS)
        service = invoice.service
        if who == "other":  # another service's platform account, for its own service
            service = services[(services.index(service) + 1) % len(services)]
        invoice_id = invoice.invoice if who != "no-such-invoice" else PREFIXES[service] + "0" * 13
        body = {
            "platform": service,
            "invoice_id": invoice_id,
            "reference": self.fresh("TRF"),
            "reason": "paid by bank transfer",
        }
        if who == "no-such-invoice":
            expected = INVOICE_NOT_FOUND
        elif who == "other":
            expected = FORBIDDEN
        else:
            expected = self.model.mark_paid(invoice.invoice, self.clock())
        account = "admin" if who == "admin" else PLATFORMS[service]
        got = self.run(self.post("/invoice/mark-paid", body, self.api.basic(account)))
        self.expect(got, expected, "mark-paid")

    @precondition(lambda self: bool(self.model.stores_in(REFUND_IN_PROCESS)))
    @rule()
    def the_refund_worker_pays_the_refunds(self) -> None:
        self._let_the_refund_worker_pay()

    def _let_the_refund_worker_pay(self) -> None:
        """The worker may pay: each refund asked for becomes REFUNDED (within 10 s)."""
        waiting = self.model.stores_in(REFUND_IN_PROCESS)
        if waiting:
            self.run(self._let_refunds_through(waiting))
            self.model.complete_refunds()

    async def _let_refunds_through(self, waiting: list[tuple[str, str]]) -> None:
        self.refund_gate.set()
        try:
            deadline = asyncio.get_running_loop().time() + 10
            for name, number in waiting:
                buyer = self.model.invoices[name].buyer
                while True:
                    detail = await self.api.detail(name, viewer=buyer)
                    shown = {t["invoice_onmarket"]: t["status"] for t in detail["transaction"]}
                    if shown[number] == REFUNDED:
                        break
                    assert asyncio.get_running_loop().time() < deadline, detail
                    await asyncio.sleep(0.005)
        finally:
            self.refund_gate.clear()

    # -- buyers and admins -------------------------------------------------------------------

    @rule(
        username=st.sampled_from((*BUYERS, *BUYERS, "onmarket", "admin", "nobody")),
        amount=st.sampled_from((1000, 40000, 250000)),
    )
    def an_admin_tops_up(self, username: str, amount: int) -> None:
        expected = self.model.top_up(username, amount)
        body = {"username": username, "amount": amount}
        status, answer = self.run(self.post("/balance/topup", body, self.api.basic("admin")))
        self.expect((status, answer), expected, "top-up")
        if status == 200:
            assert answer["username"] == username, answer
            assert answer["balance"] == self.model.balance(username), answer

    @rule(name=invoices, viewer=st.sampled_from(BUYERS))
    def a_buyer_sees_only_their_own_invoices(self, name: str, viewer: str) -> None:
        invoice = self.model.invoices[name]
        got = self.run(self.get("/invoice/detail", {"invoice": name}, self.api.bearer(viewer)))
        if viewer == invoice.buyer:
            assert got[0] == 200, got
            assert got[1]["invoice"] == name, got
        else:
            self.expect(got, INVOICE_NOT_FOUND, "someone else's invoice")

    # -- after every step --------------------------------------------------------------------

    @invariant()
    def the_ledger_balances_and_agrees_with_the_model(self) -> None:
        store = self.app[STORE]
        rows = self.run(views_query(store, "SELECT account, balance FROM account_balances"))
        entries = self.run(
            views_query(store, "SELECT COALESCE(SUM(amount), 0) FROM ledger_entries")
        )
        accounts = {account: balance for account, balance in rows}
        assert sum(accounts.values()) == 0, accounts
        assert entries[0][0] == 0
        overdrawn = {
            account: balance
            for account, balance in accounts.items()
            if balance < 0 and account.startswith(("buyer:", "escrow:"))
        }
        assert not overdrawn, overdrawn
        expected = {account: money for account, money in self.model.accounts.items() if money}
        assert {account: money for account, money in accounts.items() if money} == expected

    @invariant()
    def every_view_equals_a_fresh_replay(self) -> None:
        # On PostgreSQL a replay needs a database of its own: checked at teardown instead.
        if self.pg_database is None:
            assert self.run(views_differing_from_a_replay(self.database)) == {}

    @invariant()
    def every_invoice_is_as_the_model_says(self) -> None:
        now = self.clock()
        names = list(self.model.invoices)
        details = self.run(self._details(names))
        for name, (status, detail) in zip(names, details, strict=True):
            invoice = self.model.invoices[name]
            assert status == 200, detail
            shown = (detail["status"], [t["status"] for t in detail["transaction"]])
            assert shown == (invoice.shown(now), invoice.shown_stores(now)), (name, detail)
            # The status history starts PENDING, changes at each entry, and ends where the
            # status is (an expiry not yet recorded included).
            history = [entry["status"] for entry in detail["status_history"]]
            assert history[0] == "PENDING", detail
            assert history[-1] == detail["status"], detail
            assert all(a != b for a, b in itertools.pairwise(history)), detail
            assert detail["amount"] == invoice.total, detail
            assert detail["src"] == invoice.source, detail
            assert detail["username"] == invoice.buyer
            assert [t["invoice_onmarket"] for t in detail["transaction"]] == [
                store.number for store in invoice.stores
            ]

    async def _details(self, names: list[str]) -> list[tuple[int, dict[str, Any]]]:
        return await asyncio.gather(
            *(
                self.get(
                    "/invoice/detail",
                    {"invoice": name},
                    self.api.bearer(self.model.invoices[name].buyer),
                )
                for name in names
            )
        )

    @invariant()
    def every_balance_is_as_the_model_says(self) -> None:
        # A disabled account's token is refused, and for ACCOUNT_CACHE_SECONDS after a switch
        # either answer is right: those accounts are checked at a later step.
        settled = self.loop.time() - ACCOUNT_CACHE_SECONDS
        users = sorted(
            user
            for user in {*BUYERS, *SELLERS}
            if user not in self.model.disabled and self.switched.get(user, 0.0) < settled
        )
        answers = self.run(self._balances(users))
        for user, (status, answer) in zip(users, answers, strict=True):
            assert status == 200, answer
            got = (answer["balance"], answer["seller_balance"])
            expected = (self.model.accounts[f"buyer:{user}"], self.model.accounts[f"seller:{user}"])
            assert got == expected, (user, answer)
            entries = answer["entries"]  # newest first; all of them while fewer than the limit
            positions = [entry["position"] for entry in entries]
            assert positions == sorted(positions, reverse=True), (user, answer)
            if len(entries) < 100:
                summed = tuple(
                    sum(e["amount"] for e in entries if e["account"] == f"{kind}:{user}")
                    for kind in ("buyer", "seller")
                )
                assert summed == got, (user, answer)

    async def _balances(self, users: list[str]) -> list[tuple[int, dict[str, Any]]]:
        return await asyncio.gather(
            *(self.get("/balance", {}, self.api.bearer(user)) for user in users)
        )


# -- the views, replayed --------------------------------------------------------------------


def take_snapshot(database: Path, target: Path) -> None:
    """A consistent copy of ``database`` (only read), as ``service.storage.sqlite.backup`` takes
    it, unsynced."""
    source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        copy.execute("PRAGMA synchronous = OFF")
        source.backup(copy)  # all pages in one step: one consistent snapshot
    finally:
        copy.close()
        source.close()


async def views_differing_from_a_replay(database: Path) -> dict[str, str]:
    """The view tables of ``database`` that differ from a fresh replay of its log.

    What ``compare_views_with_replay`` (``python -m service verify``) does, several times
    faster: one consistent snapshot (SQLite's online backup, which the service's writes never
    block), its views read, then emptied and replayed from its log by the service's own
    projectors (``rebuild_projections``, without fsyncs), and each table compared row by row."""
    snapshot = database.with_name("replay.db")
    snapshot.unlink(missing_ok=True)
    take_snapshot(database, snapshot)
    live = sqlite_view_rows(snapshot)
    replica = await SQLiteEventStore.open(snapshot, projectors=all_projectors(), synchronous="OFF")
    async with replica:
        await replica.rebuild_projections()
    replayed = sqlite_view_rows(snapshot)
    return {
        table: first_difference(rows, replayed[table])
        for table, rows in live.items()
        if rows != replayed[table]
    }


def assert_same_views(
    ours: dict[str, list[tuple[Any, ...]]], theirs: dict[str, list[tuple[Any, ...]]]
) -> None:
    differing = {
        table: first_difference(rows, theirs[table])
        for table, rows in ours.items()
        if rows != theirs[table]
    }
    assert differing == {}, differing


@dataclass(frozen=True)
class Admin:
    """The viewer every invoice is visible to, for the read models' answers."""

    username: str = "admin"
    role: str = "admin"
    platform: str | None = None


ADMIN = Admin()


# -- the test --------------------------------------------------------------------------------


def cheap_password_hash(password: str) -> str:
    """A valid scrypt hash with the smallest parameters, so that the platform and admin logins
    of each example cost microseconds rather than 50 ms each (the service reads the parameters
    from the hash; the check itself is the same code)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2, r=1, p=1, dklen=32)
    return f"scrypt$2$1$1${b64(salt)}${b64(digest)}"


async def create_template(location: str) -> None:
    """A database with the development accounts, a third buyer and the sellers, copied for each
    example."""
    config = load_config(None, {}, database=location)
    async with await open_store(location, projectors=projectors_for(location)) as store:
        service = make_service(store, make_gateway(config), config)
        for username, role, platform in USERS:
            password_hash = cheap_password_hash(username)
            assert verify_password(username, password_hash)
            await service.handle(
                RegisterUser(username, role, platform, password_hash),
                Context("test:stateful"),
            )


@pytest.fixture(scope="session")
def stateful_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sqlite_template(tmp_path_factory, "stateful-template", create_template)


@pytest.fixture(scope="session")
def stateful_pg_template() -> Iterator[str]:
    """The PostgreSQL template's name."""
    with postgresql_template("stateful_template", create_template) as name:
        yield name


# make test: 40 examples of up to 30 steps (15 on PostgreSQL), 10-20 s on 2 cores; SOAK=1: 300
# of up to 50, about 3 minutes. A failure is shrunk to a short sequence of steps, which
# Hypothesis may spend up to 5 minutes on (each step replays the log and asks the API about
# everything).
SETTINGS = settings(
    max_examples=300 if SOAK else 40,
    stateful_step_count=50 if SOAK else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# On PostgreSQL each example costs two databases (its own and the copy the log moves into):
# fewer examples in make test keep its time near SQLite's.
PG_SETTINGS = settings(SETTINGS, max_examples=300 if SOAK else 15)
# The examples of a run (per backend) whose log is also moved into PostgreSQL from SQLite: the
# move costs a database each, so make test moves the first few with invoices in them.
MOVES_INTO_POSTGRESQL = 300 if SOAK else 8


@pytest.mark.backends("sqlite", "postgresql")
def test_the_service_agrees_with_a_model_of_it(
    e2e_backend: str, request: pytest.FixtureRequest
) -> None:
    """Random sequences of checkouts, payments, expiries, cancels, refunds, dones and top-ups:
    every answer is the model's, and after every step the ledger balances, the views equal a
    replay of the log, and every invoice and balance is what the model says."""
    fixture = {"sqlite": "stateful_template", "postgresql": "stateful_pg_template"}[e2e_backend]
    template: Path | str = request.getfixturevalue(fixture)

    class Machine(InvoiceMachine):
        pass

    Machine.template = template
    Machine.moved = 0

    chosen = PG_SETTINGS if e2e_backend == "postgresql" else SETTINGS
    run_state_machine_as_test(Machine, settings=chosen)
