"""The read model answers every question of the service from a real SQLite file.

The app runs on its own database (the development accounts already in it) and is filled over
HTTP, the way the service fills it; each test then asks ``app[READ_MODEL]`` directly and checks
its answer against what was done, or against the log itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from eventstore import RecordedEvent
from eventstore.sqlite import SQLiteEventStore
from service.app import create_app
from service.application import Context, DisableUser, EnableUser
from service.config import Config
from service.http.keys import READ_MODEL, SERVICE, STORE
from service.storage.sqlite.views_check import compare_views_with_replay
from service.views import LedgerEntry, ReadModel
from service.views.sqlite import SQLiteReadModel, all_projectors
from tests.e2e.conftest import Api, AppFactory, FakeClock, checkout_body, copy_of, e2e_config

TTL = 2 * 3600  # the default invoice_ttl_seconds
NO_SUCH_INVOICE = "OM0000000000000"


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: any object with a username, role and platform will do."""

    username: str
    role: str = "buyer"
    platform: str | None = None


BUYER, OTHER_BUYER = Reader("usernew1"), Reader("seller1")
ADMIN = Reader("admin", "admin")
ONMARKET = Reader("onmarket", "platform", "ONMARKET")
ONDELIVERY = Reader("ondelivery", "platform", "ONDELIVERY")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database holding the development accounts, which the app makes as it starts."""
    path = tmp_path_factory.mktemp("read-model") / "invoices.db"

    async def start_and_stop() -> None:
        runner = web.AppRunner(create_app(e2e_config(path)))
        await runner.setup()
        await runner.cleanup()

    asyncio.run(start_and_stop())
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path, template: Path) -> Config:
    # The expiry task runs once at start, then not within a test: these tests expire by hand.
    return e2e_config(copy_of(template, tmp_path), expiry_interval_seconds=60)


@pytest.fixture
async def api(aiohttp_client: AppFactory, config: Config, clock: FakeClock) -> Api:
    return Api(await aiohttp_client(create_app(config, clock=clock)), config, clock)


def views_of(api: Api) -> ReadModel:
    return api.client.app[READ_MODEL]


async def log_of(api: Api) -> list[RecordedEvent]:
    return [event async for event in api.client.app[STORE].read_all()]


async def gateway_cancel(api: Api, reference: str) -> None:
    """The buyer abandons the payment at the sandbox gateway: it expires the invoice."""
    response = await api.client.post(f"/sandbox/invoices/{reference}/cancel", json={})
    assert response.status == 200, await response.text()


async def ondelivery_checkout(api: Api, buyer: str, waybill: str) -> str:
    body = checkout_body(service="ONDELIVERY", stores=1)
    body["transaction"][0]["waybill_number"] = waybill
    response = await api.client.post("/payment-checkout", json=body, headers=api.bearer(buyer))
    answer: dict[str, Any] = await response.json()
    assert response.status == 200, answer
    return str(answer["invoice"])


# -- invoices and who sees them ------------------------------------------------------------


async def test_an_invoice_is_seen_by_its_buyer_its_platform_and_admins_only(api: Api) -> None:
    """A buyer's ONMARKET invoice: its buyer, onmarket and an admin see it; nobody else."""
    invoice = (await api.checkout("usernew1", stores=1))["invoice"]
    views = views_of(api)

    seen = {
        reader.username: await views.invoice(invoice, reader)
        for reader in (BUYER, OTHER_BUYER, ADMIN, ONMARKET, ONDELIVERY)
    }

    assert {name for name, found in seen.items() if found} == {"usernew1", "admin", "onmarket"}
    found = seen["usernew1"]
    assert found is not None
    assert found.state.invoice == invoice
    assert found.state.created.username == "usernew1"
    assert str(found.seq) == (await api.detail(invoice))["id"]
    assert seen["admin"] == seen["onmarket"] == found


async def test_an_unknown_invoice_is_seen_by_nobody_and_does_not_exist(api: Api) -> None:
    """No invoice: None to an admin, and ``invoice_exists`` says no."""
    views = views_of(api)
    assert await views.invoice(NO_SUCH_INVOICE, ADMIN) is None
    assert not await views.invoice_exists(NO_SUCH_INVOICE)


async def test_an_invoice_exists_whoever_may_see_it(api: Api) -> None:
    """``invoice_exists`` answers for any invoice, hidden from the reader or not."""
    invoice = (await api.checkout("usernew1", stores=1))["invoice"]
    views = views_of(api)
    assert await views.invoice(invoice, OTHER_BUYER) is None
    assert await views.invoice_exists(invoice)


async def test_a_changed_invoice_is_read_as_it_is_now(api: Api) -> None:
    """The same read model reads an invoice, then the same invoice once paid: PAID."""
    checkout = await api.checkout("usernew1", stores=1)
    views = views_of(api)
    before = await views.invoice(checkout["invoice"], BUYER)

    await api.pay(checkout["xendit_invoice"])
    after = await views.invoice(checkout["invoice"], BUYER)

    assert before is not None
    assert after is not None
    assert (before.state.status, after.state.status) == ("PENDING", "PAID")
    assert before.seq == after.seq


async def test_a_waybill_finds_the_newest_invoice_the_reader_may_see(api: Api) -> None:
    """Two invoices ship under one waybill: each reader gets the newest of those they see."""
    older = await ondelivery_checkout(api, "usernew1", "OND-RM-0001")
    newer = await ondelivery_checkout(api, "seller1", "OND-RM-0001")
    views = views_of(api)

    async def found_by(reader: Reader) -> str | None:
        found = await views.invoice_by_waybill("OND-RM-0001", reader)
        return None if found is None else found.state.invoice

    assert await found_by(ADMIN) == newer
    assert await found_by(ONDELIVERY) == newer
    assert await found_by(OTHER_BUYER) == newer
    assert await found_by(BUYER) == older
    assert await found_by(ONMARKET) is None
    assert await views.invoice_by_waybill("OND-RM-NONE", ADMIN) is None


async def test_a_waybill_exists_whoever_may_see_its_invoice(api: Api) -> None:
    await ondelivery_checkout(api, "usernew1", "OND-RM-0002")
    views = views_of(api)
    assert await views.invoice_by_waybill("OND-RM-0002", OTHER_BUYER) is None
    assert await views.waybill_exists("OND-RM-0002")
    assert not await views.waybill_exists("OND-RM-NONE")


async def test_the_gateway_reference_finds_its_invoice(api: Api) -> None:
    """The sandbox finds an invoice by the reference the gateway knows it by."""
    checkout = await api.checkout("usernew1", stores=1)
    views = views_of(api)

    state = await views.invoice_by_gateway_reference(checkout["xendit_invoice"])

    assert state is not None
    assert state.invoice == checkout["invoice"]
    assert await views.invoice_by_gateway_reference("no-such-reference") is None


# -- money ---------------------------------------------------------------------------------


async def test_balances_and_entries_follow_the_ledger(api: Api) -> None:
    """A top-up, a BALANCE checkout and its done: each side's balance and postings."""
    await api.top_up("usernew1", 50000)
    checkout = await api.checkout("usernew1", source="BALANCE", stores=1)
    line = checkout["transaction"][0]["invoice_onmarket"]
    await api.platform("done", invoice_id=checkout["invoice"], invoice_onmarket=line)
    views = views_of(api)

    entries = await views.ledger_entries("usernew1", 100)

    total = checkout["amount"]
    assert await views.balances("usernew1") == (50000 - total, 0)
    assert [(e.account, e.amount, e.event_type, e.invoice) for e in entries] == [
        ("buyer:usernew1", -total, "BalanceDebited", checkout["invoice"]),
        ("buyer:usernew1", 50000, "BalanceToppedUp", None),
    ]
    assert entries[0].position > entries[1].position
    seller_entries = await views.ledger_entries("seller1", 100)
    _, seller_balance = await views.balances("seller1")
    assert seller_balance > 0
    assert seller_balance == sum(e.amount for e in seller_entries)
    assert {e.account for e in seller_entries} == {"seller:seller1"}


async def test_entries_are_the_newest_first_up_to_the_limit(api: Api) -> None:
    for amount in (100, 200, 300):
        await api.top_up("usernew1", amount)
    views = views_of(api)

    every = await views.ledger_entries("usernew1", 10)
    latest = await views.ledger_entries("usernew1", 2)

    assert [e.amount for e in every] == [300, 200, 100]
    assert latest == every[:2]


async def test_entries_carry_their_commit_time(api: Api) -> None:
    await api.top_up("usernew1", 100)
    views = views_of(api)
    (entry,) = await views.ledger_entries("usernew1", 10)
    assert isinstance(entry, LedgerEntry)
    assert entry.recorded_at == await views.commit_time(entry.position)


async def test_an_account_never_posted_to_has_nothing(api: Api) -> None:
    views = views_of(api)
    assert await views.balances("nobody") == (0, 0)
    assert await views.ledger_entries("nobody", 10) == []


# -- the log -------------------------------------------------------------------------------


async def test_commit_time_is_that_of_the_event_at_or_before_the_position(api: Api) -> None:
    await api.checkout("usernew1", stores=1)
    views = views_of(api)
    log = await log_of(api)

    for event in log:
        assert await views.commit_time(event.position) == event.recorded_at
    assert await views.commit_time(log[-1].position + 10) == log[-1].recorded_at
    assert await views.commit_time(0) is None


async def test_streams_holding_names_the_streams_of_those_events(api: Api) -> None:
    await api.checkout("usernew1", stores=1)
    await api.checkout("usernew1", stores=1)
    views = views_of(api)
    first, last = (await log_of(api))[0], (await log_of(api))[-1]

    holding = await views.streams_holding([first.event_id, last.event_id, "no-such-event"])

    assert holding == {first.stream_id, last.stream_id}
    assert await views.streams_holding([]) == set()
    assert await views.streams_holding(["no-such-event"]) == set()


# -- accounts ------------------------------------------------------------------------------


async def test_a_user_is_found_with_role_platform_and_password_hash(api: Api) -> None:
    views = views_of(api)

    buyer, platform = await views.user("usernew1"), await views.user("onmarket")

    assert buyer is not None
    assert platform is not None
    assert (buyer.username, buyer.role, buyer.platform) == ("usernew1", "buyer", None)
    assert (platform.role, platform.platform) == ("platform", "ONMARKET")
    assert buyer.password_hash.startswith("scrypt$")
    assert await views.user("nobody") is None


async def enabled(views: ReadModel, username: str) -> bool:
    user = await views.user(username)
    assert user is not None
    return user.enabled


async def test_a_disabled_user_is_found_disabled_and_enabled_again(api: Api) -> None:
    """The users view follows UserDisabled and UserEnabled, and a rebuild gives the same."""
    service, views = api.client.app[SERVICE], views_of(api)
    assert await enabled(views, "seller1") is True

    await service.handle(DisableUser("seller1"), Context("test"))
    assert await enabled(views, "seller1") is False
    await api.client.app[STORE].rebuild_projections()
    assert await enabled(views, "seller1") is False

    await service.handle(EnableUser("seller1"), Context("test"))
    assert await enabled(views, "seller1") is True


async def test_a_database_from_before_accounts_could_be_disabled_opens_all_enabled(
    tmp_path: Path, template: Path
) -> None:
    """A users view without the enabled column (view:users at version 1) gains it on open,
    every account enabled, and the views still equal a replay of the log."""
    database = copy_of(template, tmp_path)
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("ALTER TABLE users DROP COLUMN enabled")
        conn.execute("DELETE FROM schema_migrations WHERE component = 'view:users' AND version = 2")
    finally:
        conn.close()

    async with await SQLiteEventStore.open(database, projectors=all_projectors()) as store:
        user = await SQLiteReadModel(store).user("usernew1")
    assert user is not None
    assert user.enabled is True
    assert await compare_views_with_replay(database) == []


# -- the workers' scans --------------------------------------------------------------------


async def test_due_invoices_are_the_pending_ones_past_expiry_earliest_first(
    api: Api, clock: FakeClock
) -> None:
    first = (await api.checkout(stores=1))["invoice"]
    paid = await api.checkout(stores=1)
    await api.pay(paid["xendit_invoice"])
    clock.advance(600)
    second = (await api.checkout(stores=1))["invoice"]
    clock.advance(600)
    await api.checkout(stores=1)  # due 600 s after the second
    views, created = views_of(api), clock() - timedelta(seconds=1200)

    due_at = created + timedelta(seconds=TTL + 600)

    assert await views.due_invoices(created + timedelta(seconds=TTL - 1), 10) == []
    assert await views.due_invoices(created + timedelta(seconds=TTL), 10) == [first]
    assert await views.due_invoices(due_at, 10) == [first, second]
    assert await views.due_invoices(due_at, 1) == [first]


async def test_reconcile_candidates_are_the_gateway_invoices_still_open_or_lately_closed(
    api: Api, clock: FakeClock
) -> None:
    """PENDING ones, and EXPIRED or CANCELED ones whose expiry is not before ``since``; never a
    paid one nor one paid from the balance; in creation order."""
    created = clock()
    pending = (await api.checkout(stores=1))["invoice"]
    expired = await api.checkout(stores=1)
    await gateway_cancel(api, expired["xendit_invoice"])
    canceled = (await api.checkout(stores=1))["invoice"]
    await api.platform("cancel", invoice_id=canceled)
    paid = await api.checkout(stores=1)
    await api.pay(paid["xendit_invoice"])
    await api.top_up("usernew1", 50000)
    await api.checkout(source="BALANCE", stores=1)
    views = views_of(api)
    expiry = created + timedelta(seconds=TTL)

    assert await views.reconcile_candidates(created) == [pending, expired["invoice"], canceled]
    assert await views.reconcile_candidates(expiry) == [pending, expired["invoice"], canceled]
    assert await views.reconcile_candidates(expiry + timedelta(microseconds=1)) == [pending]


async def test_rows_without_a_status_history_get_it_at_the_next_open(
    api: Api, config: Config
) -> None:
    """Rows from before the view kept the status history (NULL) are folded from their events at
    the next open of the store, so the views equal a replay again without a rebuild."""
    created = await api.checkout(stores=1)
    await api.pay(created["xendit_invoice"])
    expected = (await api.detail(created["invoice"]))["status_history"]
    await api.client.close()
    with sqlite3.connect(config.database) as conn:
        conn.execute("UPDATE invoice_view SET status_history = NULL")
    assert await compare_views_with_replay(Path(config.database)) != []

    async with await SQLiteEventStore.open(config.database, projectors=all_projectors()):
        pass

    with sqlite3.connect(config.database) as conn:
        stored = conn.execute(
            "SELECT status_history FROM invoice_view WHERE invoice = ?", (created["invoice"],)
        ).fetchone()[0]
    assert stored is not None
    assert [entry["status"] for entry in expected] == ["PENDING", "PAID"]
    assert await compare_views_with_replay(Path(config.database)) == []
