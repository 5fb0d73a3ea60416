"""Races, repeated: competing requests sent at once to the real app, each race many times over.

Four races the contract says must each settle one way, run ``ROUNDS`` times on one app and one
real SQLite file per race (a fresh invoice every round). The competitors are real HTTP requests
through the aiohttp test client started together with ``asyncio.gather`` (the expiry pass runs
in the same event loop), one of them held back by 0 to 32 turns of the event loop, a different
head start each round, so that each side sometimes gets there first:

1. cancel vs done on one PAID transaction;
2. a payment callback vs the cancel of the PENDING invoice;
3. the expiry pass vs a payment callback at (or after, or across) ``expired_at``;
4. concurrent BALANCE checkouts of one buyer whose balance pays for only some of them.

After every round the loser's answer is the documented one, the invoice's events are exactly
those of the winner, and the whole ledger equals, account by account, what the test derives from
the winners so far (and sums to zero). After the last round no buyer balance or escrow was ever
negative at any position of the log, the hash chain verifies, the views equal a fresh replay,
and nothing was logged at error level. Who won is counted and printed (``-s``) and recorded as a
test property; each side must have won sometimes. Commands of one process on one stream take
turns (``service.application.serialise``): the race is decided by who reads the stream first, so
the appends the store refused because a concurrent one got there first, still counted, stay at
0 here; ``tests/e2e/test_contention.py`` holds that to 0 and races two apps on one file.

``RACE_ROUNDS`` sets the rounds per race: 50 by default, 1,000 with ``SOAK=1`` (``make soak``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import structlog
from structlog.typing import EventDict, WrappedLogger

from eventstore import ConcurrencyError, DuplicateEventError, EventStore
from eventstore.backends import is_postgresql
from service.application import Context, RegisterUser
from service.config import Config
from service.http.keys import READ_MODEL, SERVICE, STORE
from service.workers.expiry import expire_due
from tests.e2e.conftest import Api, checkout_body, e2e_config
from tests.sqlviews import views_query
from tests.viewreplay import replay_differences

pytestmark = pytest.mark.backends("sqlite", "postgresql")

T = TypeVar("T")
U = TypeVar("U")
Answer = tuple[int, dict[str, Any]]


def _rounds() -> int:
    if os.environ.get("RACE_ROUNDS"):
        return int(os.environ["RACE_ROUNDS"])
    return 1000 if os.environ.get("SOAK") == "1" else 50


ROUNDS = _rounds()
# Fewer rounds than this (a quick local run) may by chance see one side only.
ROUNDS_TO_SEE_BOTH_SIDES = 20

BUYER = "usernew1"
SELLER = "seller1"
TTL = 2 * 3600
# A one-store checkout (checkout_body(stores=1)): amount 10000, freight 5000, insurance 100,
# commission 1000.
PRICE = 15100
SELLER_SHARE, COMMISSION, INSURANCE = 14000, 1000, 100
GATEWAY = "gateway:xendit"
TOPUP = "external:topup"

REFUND_IN_PROCESS = {"message": "REFUND IN PROCESS"}
COMPLETED = {"message": "TRANSACTION IS COMPLETED"}
CANCELED = {"message": "INVOICE CANCELED"}
PAID = {"message": "PAID"}
CREDITED = {"message": "CREDITED"}
ALREADY_COMPLETED = {
    "message": "TRANSACTION IS ALREADY COMPLETED",
    "code": "TRANSACTION_ALREADY_COMPLETED",
}
ALREADY_IN_PROCESS = {"message": "REFUND ALREADY IN PROCESS", "code": "REFUND_ALREADY_IN_PROCESS"}
ALREADY_REFUNDED = {
    "message": "TRANSACTION IS ALREADY CANCELED",
    "code": "TRANSACTION_ALREADY_REFUNDED",
}
STORE_AND_BUYER_REQUIRED = {
    "message": "Invalid JSON Format",
    "code": "VALIDATION",
    "errors": {
        "invoice_onmarket": ["Required to refund a paid invoice."],
        "buyer_username": ["Required to refund a paid invoice."],
    },
}
INSUFFICIENT = {"message": "Insufficient balance", "code": "INSUFFICIENT_BALANCE"}
# Rounds in which a competitor had read the state its rival then changed, so its append was
# refused and it decided again: within one process, commands on one stream take turns, so 0.
OVERLAPPED = "rounds overlapping at the store"


# -- the app under test: one per race ---------------------------------------------------------


@pytest.fixture
def config(database: str) -> Config:
    """As the e2e default, but no background expiry pass joins the races uninvited (it runs
    once at start, then every 60 s) and refunds are paid out at once."""
    return e2e_config(database, expiry_interval_seconds=60, reconcile_interval_seconds=0)


def _errors_only(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if method_name not in ("error", "exception", "critical"):
        raise structlog.DropEvent
    return event_dict


@pytest.fixture
def error_logs() -> Iterator[list[EventDict]]:
    """Every line logged at error level meanwhile, with its traceback: a 500, a worker's crash."""
    with structlog.testing.capture_logs(
        processors=[_errors_only, structlog.processors.format_exc_info]
    ) as entries:
        yield entries


@dataclass
class LostAppends:
    """Appends the store refused because a concurrent one changed a stream first: each is a
    request that had read the same state as its rival, i.e. a real overlap, then decided again."""

    count: int = 0


@pytest.fixture
def lost_appends(api: Api, monkeypatch: pytest.MonkeyPatch) -> LostAppends:
    assert api.client.app is not None
    store = api.client.app[STORE]
    lost = LostAppends()

    def counting(append: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await append(*args, **kwargs)
            except (ConcurrencyError, DuplicateEventError):
                lost.count += 1
                raise

        return wrapper

    monkeypatch.setattr(store, "append", counting(store.append))
    monkeypatch.setattr(store, "append_streams", counting(store.append_streams))
    return lost


# -- helpers ----------------------------------------------------------------------------------


@dataclass
class Books:
    """What every account must hold, derived by the test from each round's winner."""

    expected: Counter[str] = field(default_factory=Counter)

    def move(self, source: str, target: str, amount: int) -> None:
        self.expected[source] -= amount
        self.expected[target] += amount

    async def check(self, api: Api, why: object) -> None:
        """The whole ledger is exactly as expected, and it sums to zero."""
        assert await api.accounts() == {a: v for a, v in self.expected.items() if v}, why
        await api.assert_balanced()


# How many turns of the event loop later the second competitor starts than the first (negative:
# the first starts later). Rounds sweep these, so that each side gets every head start and the
# requests meet at every stage of each other's handling; all of them are in flight together.
STAGGERS = (0, 1, -1, 2, -2, 4, -4, 8, -8, 16, -16, 32, -32)


def stagger(round_: int, offset: int = 0) -> int:
    """The round's stagger; ``offset`` holds back the first competitor when its path to the
    store is shorter (say, the expiry pass, called directly, over a callback through HTTP)."""
    return STAGGERS[round_ % len(STAGGERS)] + offset


async def after_turns(turns: int, awaitable: Awaitable[T]) -> T:
    for _ in range(turns):
        await asyncio.sleep(0)
    return await awaitable


async def at_once(first: Awaitable[T], second: Awaitable[U], *, apart: int) -> tuple[T, U]:
    """Both concurrently, ``second`` started ``apart`` loop turns after ``first`` (before it
    if negative); the answers in the order given."""
    return await asyncio.gather(
        after_turns(max(0, -apart), first), after_turns(max(0, apart), second)
    )


async def post(api: Api, path: str, body: dict[str, Any], headers: dict[str, str]) -> Answer:
    response = await api.client.post(path, json=body, headers=headers)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


def platform(api: Api, action: str, **body: Any) -> Awaitable[Answer]:
    return post(api, f"/invoice/{action}", {"platform": "ONMARKET", **body}, api.basic("onmarket"))


def payment_callback(api: Api, invoice: str, payment_id: str) -> Awaitable[Answer]:
    """The gateway's signed callback: ``invoice`` was paid in full."""
    body = {
        "id": payment_id,
        "external_id": invoice,
        "status": "PAID",
        "amount": PRICE,
        "paid_amount": PRICE,
        "payment_method": "BANK_TRANSFER",
        "payment_channel": "BCA",
    }
    return post(
        api,
        "/callback/xendit/invoice",
        body,
        {"x-callback-token": api.config.callback_token},
    )


async def checkout(api: Api, source: str) -> tuple[str, str]:
    """A one-store checkout: its invoice and store invoice number."""
    answer = await api.checkout(stores=1, source=source)
    return answer["invoice"], answer["transaction"][0]["invoice_onmarket"]


async def top_up(api: Api, books: Books, amount: int, username: str = BUYER) -> None:
    await api.top_up(username, amount)  # the admin's scrypt once, then the login is cached
    books.move(TOPUP, f"buyer:{username}", amount)


async def events_of(api: Api, invoice: str) -> list[tuple[str, str]]:
    """The invoice's events, oldest first: (type, actor)."""
    assert api.client.app is not None
    stream = api.client.app[STORE].read_stream(f"invoice-{invoice}")
    return [(event.type, event.metadata.get("actor", "")) async for event in stream]


async def types_of(api: Api, invoice: str) -> list[str]:
    return [kind for kind, _ in await events_of(api, invoice)]


async def wait_for_status(api: Api, invoice: str, status: str, within: float = 10.0) -> None:
    """Until the invoice view stores ``status`` (the refund worker runs in the background)."""
    assert api.client.app is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        rows = await views_query(
            api.client.app[STORE], "SELECT status FROM invoice_view WHERE invoice = ?", (invoice,)
        )
        if rows[0][0] == status:
            return
        assert loop.time() < deadline, f"{invoice} still {rows[0][0]}, not {status}"
        await asyncio.sleep(0.002)


async def shown(api: Api, invoice: str) -> tuple[str, list[str]]:
    """The invoice's status and its transactions', as /invoice/detail answers them."""
    detail = await api.detail(invoice, viewer=BUYER)
    return detail["status"], [t["status"] for t in detail["transaction"]]


async def never_negative(store: EventStore) -> dict[str, int]:
    """Buyer and escrow accounts whose running balance went below 0 at any event: lowest."""
    rows = await views_query(
        store,
        "SELECT account, MIN(running) FROM ("
        "  SELECT account, SUM(amount) OVER ("
        "    PARTITION BY account ORDER BY position, line"
        "    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running"
        "  FROM ledger_entries WHERE account LIKE 'buyer:%' OR account LIKE 'escrow:%'"
        ") AS runs GROUP BY account HAVING MIN(running) < 0",
    )
    return dict(rows)


async def finish(
    api: Api,
    books: Books,
    error_logs: list[EventDict],
    lost: LostAppends,
    record_property: Callable[[str, object], None],
    name: str,
    tally: Counter[str],
    started: float,
    rounds: int = ROUNDS,
) -> None:
    """The checks after the last round, and the race's figures for the record (``rounds``:
    how many were run, for a race with its own count)."""
    assert api.client.app is not None
    store = api.client.app[STORE]
    await asyncio.sleep(0.05)  # a late double credit would show now
    await books.check(api, "after the last round")
    assert await never_negative(store) == {}
    report = await store.verify()
    assert report.ok, report
    assert await replay_differences(store, api.config.database) == []
    assert error_logs == []
    seconds = time.perf_counter() - started
    figures = {"rounds": rounds, "seconds": round(seconds, 1), "lost_appends": lost.count}
    record_property("race_outcomes", json.dumps(dict(sorted(tally.items()))))
    record_property("race_figures", json.dumps(figures))
    print(f"\n{name}: {figures} {dict(sorted(tally.items()))}")


def both_sides_won(tally: Counter[str], *sides: str) -> None:
    if ROUNDS >= ROUNDS_TO_SEE_BOTH_SIDES:
        assert all(tally[side] for side in sides), tally


# -- 1. cancel vs done on one PAID transaction -------------------------------------------------


async def test_cancel_and_done_on_one_paid_transaction_have_one_winner(
    error_logs: list[EventDict],
    api: Api,
    lost_appends: LostAppends,
    record_property: Callable[[str, object], None],
) -> None:
    """Cancel (refund) and done at once on one PAID transaction: exactly one wins; the other
    gets its documented 400; the money goes to the buyer (refund) or to the seller, commission
    and insurance (done), never both."""
    started, books, tally = time.perf_counter(), Books(), Counter[str]()
    buyer, escrow_of = f"buyer:{BUYER}", "escrow:{}".format
    await top_up(api, books, ROUNDS * PRICE)
    for round_ in range(ROUNDS):
        invoice, store = await checkout(api, "BALANCE")
        books.move(buyer, escrow_of(invoice), PRICE)

        lost = lost_appends.count
        cancel, done = await at_once(
            platform(
                api, "cancel", invoice_id=invoice, invoice_onmarket=store, buyer_username=BUYER
            ),
            platform(api, "done", invoice_id=invoice, invoice_onmarket=store),
            apart=stagger(round_),
        )
        tally[OVERLAPPED] += lost_appends.count > lost

        why = (round_, invoice, cancel, done, error_logs)
        assert [cancel[0], done[0]].count(200) == 1, why
        if cancel[0] == 200:
            assert cancel == (200, REFUND_IN_PROCESS), why
            # Done came second: the refund is in process, or already paid out by the worker.
            assert done in ((400, ALREADY_IN_PROCESS), (400, ALREADY_REFUNDED)), why
            tally["cancel won"] += 1
            tally[f"done lost: {done[1]['code']}"] += 1
            await wait_for_status(api, invoice, "REFUNDED")
            assert await shown(api, invoice) == ("REFUNDED", ["REFUNDED"]), why
            assert await types_of(api, invoice) == [
                "InvoiceCreated",
                "InvoicePaid",
                "RefundRequested",
                "RefundCompleted",
            ], why
            books.move(escrow_of(invoice), buyer, PRICE)
        else:
            assert done == (200, COMPLETED), why
            assert cancel == (400, ALREADY_COMPLETED), why
            tally["done won"] += 1
            assert await shown(api, invoice) == ("COMPLETED", ["COMPLETED"]), why
            assert await types_of(api, invoice) == [
                "InvoiceCreated",
                "InvoicePaid",
                "TransactionCompleted",
            ], why
            books.move(escrow_of(invoice), f"seller:{SELLER}", SELLER_SHARE)
            books.move(escrow_of(invoice), "platform:ONMARKET:commission", COMMISSION)
            books.move(escrow_of(invoice), "platform:ONMARKET:insurance", INSURANCE)
        await books.check(api, why)

    await finish(
        api, books, error_logs, lost_appends, record_property, "cancel vs done", tally, started
    )
    both_sides_won(tally, "cancel won", "done won")


# -- 2. a payment callback vs the cancel of the PENDING invoice --------------------------------


async def test_payment_and_cancel_of_a_pending_invoice_leave_the_money_in_one_place(
    error_logs: list[EventDict],
    api: Api,
    lost_appends: LostAppends,
    record_property: Callable[[str, object], None],
) -> None:
    """The gateway's PAID callback and the platform's cancel at once on a PENDING invoice.

    Cancel first: INVOICE CANCELED, and the payment, now late, is kept as the buyer's balance
    (200 CREDITED). Payment first: PAID with the money in escrow, and the cancel finds a paid
    invoice: with the invoice id only it is refused (400 VALIDATION: name the store and the
    buyer to refund); with the seed's full body (store and buyer named) it becomes that store's
    refund (REFUND IN PROCESS), and the refund worker pays the buyer back. Rounds alternate the
    two bodies. Either way the payment is counted once, never lost, never in two places."""
    started, books, tally = time.perf_counter(), Books(), Counter[str]()
    buyer, escrow_of = f"buyer:{BUYER}", "escrow:{}".format
    for round_ in range(ROUNDS):
        invoice, store = await checkout(api, "XENDIT")
        body = "full" if round_ % 4 >= 2 else "bare"
        named = {"invoice_onmarket": store, "buyer_username": BUYER} if body == "full" else {}

        lost = lost_appends.count
        cancel, payment = await at_once(
            platform(api, "cancel", invoice_id=invoice, **named),
            payment_callback(api, invoice, f"race-2-{round_}"),
            apart=stagger(round_, offset=-2),
        )
        tally[OVERLAPPED] += lost_appends.count > lost

        why = (round_, body, invoice, cancel, payment, error_logs)
        if cancel == (200, CANCELED):
            assert payment == (200, CREDITED), why
            tally[f"{body}: cancel won"] += 1
            assert await shown(api, invoice) == ("CANCELED", ["CANCELED"]), why
            assert await types_of(api, invoice) == [
                "InvoiceCreated",
                "InvoiceCanceled",
                "LatePaymentReceived",
            ], why
            books.move(GATEWAY, buyer, PRICE)
        else:
            assert payment == (200, PAID), why
            tally[f"{body}: payment won"] += 1
            books.move(GATEWAY, escrow_of(invoice), PRICE)
            if body == "bare":
                assert cancel == (400, STORE_AND_BUYER_REQUIRED), why
                assert await shown(api, invoice) == ("PAID", ["PAID"]), why
                assert await types_of(api, invoice) == ["InvoiceCreated", "InvoicePaid"], why
            else:
                assert cancel == (200, REFUND_IN_PROCESS), why
                await wait_for_status(api, invoice, "REFUNDED")
                assert await shown(api, invoice) == ("REFUNDED", ["REFUNDED"]), why
                assert await types_of(api, invoice) == [
                    "InvoiceCreated",
                    "InvoicePaid",
                    "RefundRequested",
                    "RefundCompleted",
                ], why
                books.move(escrow_of(invoice), buyer, PRICE)
        await books.check(api, why)

    await finish(
        api, books, error_logs, lost_appends, record_property, "payment vs cancel", tally, started
    )
    both_sides_won(tally, "bare: cancel won", "bare: payment won")
    both_sides_won(tally, "full: cancel won", "full: payment won")


# -- 3. the expiry pass vs a payment callback --------------------------------------------------


async def test_expiry_and_payment_at_the_expiry_moment_record_one_expiry(
    error_logs: list[EventDict],
    api: Api,
    lost_appends: LostAppends,
    record_property: Callable[[str, object], None],
) -> None:
    """The expiry pass (``expire_due``) and the gateway's PAID callback at once, the clock at
    exactly ``expired_at`` or 1 ms past it, or (every third round) crossing it while both run.

    Past the deadline the payment is late whoever is first: exactly one InvoiceExpired is
    recorded (by the pass, or by the callback's own decision), the callback answers CREDITED and
    the buyer's balance gets the money. Crossing, the payment may also land first: PAID, the
    money in escrow, and the pass finds nothing to expire."""
    assert api.client.app is not None
    views, service, clock = api.client.app[READ_MODEL], api.client.app[SERVICE], api.clock
    started, books, tally = time.perf_counter(), Books(), Counter[str]()
    buyer, escrow_of = f"buyer:{BUYER}", "escrow:{}".format

    async def expiry_pass(crossing: bool, yields: int) -> int:
        if crossing:  # the deadline passes while the callback is on its way
            for _ in range(yields):
                await asyncio.sleep(0)
            clock.advance(0.001)
        return await expire_due(views, service, clock())

    for round_ in range(ROUNDS):
        invoice, _ = await checkout(api, "XENDIT")
        mode = ("exact", "after", "crossing")[round_ % 3]
        clock.advance({"exact": TTL, "after": TTL + 0.001, "crossing": TTL - 0.001}[mode])

        lost = lost_appends.count
        expired, payment = await at_once(
            expiry_pass(mode == "crossing", round_ // 3 % 12),
            payment_callback(api, invoice, f"race-3-{round_}"),
            apart=stagger(round_ // 3),
        )
        tally[OVERLAPPED] += lost_appends.count > lost

        events = await events_of(api, invoice)
        why = (round_, mode, invoice, expired, payment, events, error_logs)
        if payment == (200, PAID):
            assert mode == "crossing", why
            assert expired == 0, why
            assert await shown(api, invoice) == ("PAID", ["PAID"]), why
            assert [kind for kind, _ in events] == ["InvoiceCreated", "InvoicePaid"], why
            tally[f"{mode}: payment in time"] += 1
            books.move(GATEWAY, escrow_of(invoice), PRICE)
        else:
            assert payment == (200, CREDITED), why
            assert await shown(api, invoice) == ("EXPIRED", ["EXPIRED"]), why
            kinds = [kind for kind, _ in events]
            assert kinds == ["InvoiceCreated", "InvoiceExpired", "LatePaymentReceived"], why
            expired_by = events[1][1]
            assert expired_by in ("system:expiry", "gateway"), why
            if expired == 1:
                assert expired_by == "system:expiry", why
                tally[f"{mode}: expiry pass won"] += 1
            elif expired_by == "gateway":
                tally[f"{mode}: callback won"] += 1
            else:  # the app's own background pass, which wakes every 60 s
                tally[f"{mode}: background pass won"] += 1
            books.move(GATEWAY, buyer, PRICE)
        await books.check(api, why)

    await finish(
        api, books, error_logs, lost_appends, record_property, "expiry vs payment", tally, started
    )
    past, crossing = Counter[str](), Counter[str]()
    for outcome, count in tally.items():
        mode, _, winner = outcome.partition(": ")
        if mode in ("exact", "after"):
            past[winner] += count
        elif mode == "crossing":
            crossing["paid" if winner == "payment in time" else "expired"] += count
    both_sides_won(past, "expiry pass won", "callback won")
    # On PostgreSQL a payment's round trip outlasts the crossing's window, so it always comes
    # late there (each round's outcome is still checked); that both sides win is SQLite's.
    if not is_postgresql(api.config.database):
        both_sides_won(crossing, "paid", "expired")


# -- 4. concurrent BALANCE checkouts -----------------------------------------------------------


async def test_concurrent_balance_checkouts_pay_exactly_what_the_balance_covers(
    error_logs: list[EventDict],
    api: Api,
    lost_appends: LostAppends,
    record_property: Callable[[str, object], None],
) -> None:
    """2 to 5 BALANCE checkouts of one buyer at once, the balance covering k of them and
    PRICE - 1 more (0 < k < n): exactly k are PAID, the others get 400 Insufficient balance,
    and the balance ends at PRICE - 1, never below 0 in between.

    A new buyer every round: a BALANCE checkout folds the buyer's whole balance stream, so one
    buyer with thousands of checkouts would make the soak slow, not the race any sharper."""
    assert api.client.app is not None
    store, service = api.client.app[STORE], api.client.app[SERVICE]
    started, books, tally = time.perf_counter(), Books(), Counter[str]()
    escrow_of = "escrow:{}".format
    paid_so_far = 0
    for round_ in range(ROUNDS):
        n = 2 + round_ % 4
        k = 1 + round_ // 4 % (n - 1)
        buyer = f"racer{round_}"
        # Registered without a usable password: the test signs its tokens.
        await service.handle(RegisterUser(buyer, "buyer", None, "-"), Context("test"))
        await top_up(api, books, k * PRICE + PRICE - 1, buyer)
        bodies = [checkout_body(stores=1, source="BALANCE") for _ in range(n)]

        lost = lost_appends.count
        answers = await asyncio.gather(
            *(post(api, "/payment-checkout", body, api.bearer(buyer)) for body in bodies)
        )
        tally[OVERLAPPED] += lost_appends.count > lost

        why = (round_, n, k, answers, error_logs)
        paid = [answer for status, answer in answers if status == 200]
        assert len(paid) == k, why
        assert all(answer == (400, INSUFFICIENT) for answer in answers if answer[0] != 200), why
        # Which ones won: not always the first sent, so the checkouts really overlap.
        winners = tuple(i for i, (status, _) in enumerate(answers) if status == 200)
        tally["paid"] += k
        tally["refused"] += n - k
        tally["a later one won" if winners != tuple(range(k)) else "the first k won"] += 1
        for answer in paid:
            assert answer["status"] == "PAID", why
            books.move(f"buyer:{buyer}", escrow_of(answer["invoice"]), PRICE)
        paid_so_far += k
        rows = await views_query(store, "SELECT COUNT(*) FROM invoice_view")
        assert rows[0][0] == paid_so_far, why  # the refused ones created nothing
        assert (await api.balance(buyer))["balance"] == PRICE - 1, why
        await books.check(api, why)

    await finish(
        api, books, error_logs, lost_appends, record_property, "balance checkouts", tally, started
    )
    both_sides_won(tally, "paid", "refused")
