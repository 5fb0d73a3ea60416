"""The PostgreSQL views answer every question of the read model exactly as the SQLite views do.

A log is made the way the service makes it: the real app on a real SQLite file, driven over HTTP
through every flow that writes a view (checkouts of each source, sandbox payments, cancel,
refund, done, batch done, the gateway's cancel, expiry, late and mismatched payments, accounts
disabled and enabled). The SQLite read model's answers to every question, for every invoice,
waybill, account and kind of viewer, are the expected ones. The same log is then fed through
the PostgreSQL projectors on a real PostgreSQL database of the test's own (in pages, one event
per transaction, all in one; reset and replayed; replayed by the ledger's replayer), and
``PostgreSQLReadModel`` must give the very same answers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventstore import RecordedEvent, SchemaTooNewError
from eventstore.postgresql import apply_migrations
from service.app import create_app
from service.application import Context, DisableUser, EnableUser, RegisterUser
from service.domain.events import InvoiceCreated, UserRegistered
from service.http.keys import READ_MODEL, SERVICE, STORE
from service.records import decode
from service.security import hash_password
from service.views import ReadModel
from service.views.postgresql import (
    InvoiceAndUserViews,
    LedgerView,
    PostgreSQLReadModel,
    all_projectors,
)
from service.views.postgresql.invoices import MIGRATIONS as INVOICE_MIGRATIONS
from service.views.sqlite.read_model import SQLiteReadModel
from tests.e2e.conftest import EXTRA_SELLERS, Api, FakeClock, checkout_body, e2e_config
from tests.e2e.test_callbacks import paid_body, send
from tests.pgdb import fresh_database

TTL = 2 * 3600  # the default invoice_ttl_seconds
PAGE = 50  # events per transaction when the log is fed in pages


@dataclass(frozen=True, slots=True)
class Reader:
    username: str
    role: str = "buyer"
    platform: str | None = None


Question = tuple[Any, ...]
Answers = dict[Question, Any]


@dataclass(frozen=True, slots=True)
class Recorded:
    """A log the service made, and the SQLite read model's answers to every question on it."""

    log: list[RecordedEvent]
    answers: Answers
    now: datetime  # the app's clock when they were asked
    operations: Answers  # the operator's questions (ask_operations)


# -- the log, made by the service on SQLite ----------------------------------------------------


async def checkout(api: Api, buyer: str, **overrides: Any) -> dict[str, Any]:
    """A checkout 7 s after the one before it, so each invoice expires at a moment of its own."""
    api.clock.advance(7)
    return await api.checkout(buyer, **overrides)


async def ondelivery_checkout(api: Api, buyer: str, waybill: str) -> dict[str, Any]:
    api.clock.advance(7)
    body = checkout_body(service="ONDELIVERY", stores=1)
    body["transaction"][0]["waybill_number"] = waybill
    response = await api.client.post("/payment-checkout", json=body, headers=api.bearer(buyer))
    answer: dict[str, Any] = await response.json()
    assert response.status == 200, answer
    return answer


async def until(condition: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Until a background task of the app (expiry, refunds) has done its part."""
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "the app's task did not finish"
        await asyncio.sleep(0.02)


async def drive(api: Api) -> None:
    """Every flow that writes a view, over HTTP (accounts through the service's commands)."""
    assert api.client.app is not None
    store, service = api.client.app[STORE], api.client.app[SERVICE]
    for seller in EXTRA_SELLERS:  # checkout_body's other sellers must be accounts
        command = RegisterUser(seller, "buyer", None, hash_password(seller))
        await service.handle(command, Context("test"))
    await api.top_up("usernew1", 500_000)
    await api.top_up("seller1", 200_000)

    expiring = await checkout(api, "usernew1", stores=2)
    paid = await checkout(api, "usernew1", stores=2)
    await api.pay(paid["xendit_invoice"])
    qris = await checkout(api, "seller1", source="QRIS", stores=1)
    await api.pay(qris["xendit_invoice"])
    from_balance = await checkout(api, "usernew1", source="BALANCE", stores=3)
    await checkout(api, "seller1", source="BALANCE", stores=1)
    shipped = await ondelivery_checkout(api, "usernew1", "WB-1")
    await api.pay(shipped["xendit_invoice"])
    await ondelivery_checkout(api, "seller1", "WB-1")  # the same waybill, a newer invoice
    await ondelivery_checkout(api, "usernew1", "WB-2")

    canceled = await checkout(api, "usernew1", stores=1)
    await api.platform("cancel", invoice_id=canceled["invoice"])
    marked = await checkout(api, "usernew1", stores=1)
    await api.platform(
        "mark-paid", invoice_id=marked["invoice"], reference="BANK-1", reason="a bank transfer"
    )
    detail = await api.detail(paid["invoice"])
    first, second = (line["invoice_onmarket"] for line in detail["transaction"])
    await api.platform("done", invoice_id=paid["invoice"], invoice_onmarket=first)
    await api.platform(
        "cancel", invoice_id=paid["invoice"], invoice_onmarket=second, buyer_username="usernew1"
    )
    lines = (await api.detail(from_balance["invoice"]))["transaction"]
    items = [
        {"invoice_id": from_balance["invoice"], "invoice_onmarket": line["invoice_onmarket"]}
        for line in lines
    ]
    response = await api.client.post(
        "/invoice/done/batch",
        json={"platform": "ONMARKET", "items": items},
        headers=api.basic("onmarket"),
    )
    assert response.status == 200, await response.text()

    mismatched = await checkout(api, "usernew1", stores=2)
    assert (await send(api, paid_body(mismatched["invoice"], 1234, "wrong-1")))[0] == 200
    abandoned = await checkout(api, "seller1", stores=1)
    response = await api.client.post(f"/sandbox/invoices/{abandoned['xendit_invoice']}/cancel")
    assert response.status == 200, await response.text()

    api.clock.advance(TTL + 1)
    views = api.client.app[READ_MODEL]
    await until(lambda: _nothing_due(views, api.clock()))
    assert (await send(api, paid_body(expiring["invoice"], payment_id="late-1")))[0] == 200
    api.clock.advance(600)
    # Still PENDING at the end: due at three moments, the last two at the same one.
    await checkout(api, "seller1", stores=1)
    await checkout(api, "usernew1", stores=2)
    await api.checkout("seller1", stores=1)

    await service.handle(DisableUser("testing123"), Context("test"))
    await service.handle(DisableUser("seller1"), Context("test"))
    await service.handle(EnableUser("seller1"), Context("test"))

    async def refunded() -> bool:
        return any([e async for e in store.read_all(types=["RefundCompleted"])])

    await until(refunded)


async def _nothing_due(views: ReadModel, now: datetime) -> bool:
    return await views.due_invoices(now, 1) == []


async def record(database: Path) -> Recorded:
    clock = FakeClock()
    config = e2e_config(database, reconcile_interval_seconds=3600)
    async with TestClient(TestServer(create_app(config, clock=clock))) as client:
        api = Api(client, config, clock)
        await drive(api)
        log = [event async for event in client.app[STORE].read_all()]
        views = client.app[READ_MODEL]
        assert isinstance(views, SQLiteReadModel)
        answers = await ask_everything(views, log, clock())
        return Recorded(log, answers, clock(), await ask_operations(views, log))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return asyncio.run(record(tmp_path_factory.mktemp("pg-views") / "invoices.db"))


# -- every question, asked of a read model -------------------------------------------------------


async def ask_everything(views: ReadModel, log: Sequence[RecordedEvent], now: datetime) -> Answers:
    """Every question of the read model, for every invoice, waybill, account and viewer the log
    names (and some it does not), with the answers."""
    created = [decode(e) for e in log if e.type == "InvoiceCreated"]
    invoices = [event.invoice for event in created if isinstance(event, InvoiceCreated)]
    users = [u.username for u in map(decode, log) if isinstance(u, UserRegistered)]
    waybills = sorted(
        {
            line.waybill_number
            for event in created
            if isinstance(event, InvoiceCreated)
            for line in event.transactions
            if line.waybill_number
        }
    )
    viewers = [Reader(name) for name in (*users, "stranger")] + [
        Reader("admin", "admin"),
        Reader("onmarket", "platform", "ONMARKET"),
        Reader("ondelivery", "platform", "ONDELIVERY"),
        Reader("onticket", "platform", "ONTICKET"),
    ]
    # Each expiry, and a microsecond either side of it: the bounds of due and reconcile.
    expiries = {e.expired_at for e in created if isinstance(e, InvoiceCreated)}
    tick = timedelta(microseconds=1)
    times = sorted({moment + step for moment in expiries for step in (-tick, 0 * tick, tick)})
    times += [min(times) - timedelta(days=1), now, now + timedelta(days=1)]
    answers: Answers = {}
    for invoice in [*invoices, "OM0000000000000"]:
        answers["invoice_exists", invoice] = await views.invoice_exists(invoice)
        for viewer in viewers:
            answers["invoice", invoice, viewer] = await views.invoice(invoice, viewer)
    for waybill in [*waybills, "WB-NONE"]:
        answers["waybill_exists", waybill] = await views.waybill_exists(waybill)
        for viewer in viewers:
            answers["invoice_by_waybill", waybill, viewer] = await views.invoice_by_waybill(
                waybill, viewer
            )
    for event in created:
        assert isinstance(event, InvoiceCreated)
        reference = event.gateway_reference
        answers["by_reference", reference] = await views.invoice_by_gateway_reference(reference)
    answers["by_reference", "none"] = await views.invoice_by_gateway_reference("none")
    for username in [*users, "stranger"]:
        answers["user", username] = await views.user(username)
        answers["balances", username] = await views.balances(username)
        for limit in (1, 3, 1000):
            answers["ledger_entries", username, limit] = await views.ledger_entries(username, limit)
    for position in range(len(log) + 2):
        answers["commit_time", position] = await views.commit_time(position)
    ids = [e.event_id for e in log]
    for chosen in (ids, ids[::7], ids[-3:], ["no-such-event"], []):
        answers["streams_holding", *chosen] = await views.streams_holding(chosen)
    for moment in times:
        for limit in (1, 2, 100):
            answers["due", moment, limit] = await views.due_invoices(moment, limit)
        answers["reconcile", moment] = await views.reconcile_candidates(moment)
    return answers


async def ask_operations(views: ReadModel, log: Sequence[RecordedEvent]) -> Answers:
    """The operator's questions (/metrics, /admin): counts by status, the refund backlog and its
    oldest refund's request time, and the checkouts by hour since moments around every
    creation. They read every row by design (a scrape or a page, not a request's path), so
    they are kept out of the index test."""
    created = [decode(e) for e in log if e.type == "InvoiceCreated"]
    moments = {e.created_at for e in created if isinstance(e, InvoiceCreated)}
    tick = timedelta(microseconds=1)
    answers: Answers = {
        ("invoice_status_counts",): await views.invoice_status_counts(),
        ("refund_backlog",): await views.refund_backlog(),
        ("oldest_refund_requested_at",): await views.oldest_refund_requested_at(),
    }
    for moment in sorted({m + step for m in moments for step in (-tick, 0 * tick, tick)}):
        answers["hourly_volume", moment] = await views.hourly_volume(moment)
    return answers


def differences(expected: Answers, got: Answers) -> list[tuple[Question, Any, Any]]:
    return [(q, a, got.get(q)) for q, a in expected.items() if got.get(q) != a][:5]


# -- the PostgreSQL side ------------------------------------------------------------------------

# The log's table as the PostgreSQL store keeps it (the columns the read model reads): the
# test writes it itself, since these views are tested apart from that store.
EVENTS_TABLE = """
CREATE TABLE events (
    position    BIGINT  PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    UNIQUE (stream_id, version)
)
"""


@dataclass(frozen=True, slots=True)
class Database:
    """A database of the test's own: its pool (the read model's) and its URL, for connections
    of their own (the store's writer and migrations use such, not the pool's)."""

    url: str
    pool: asyncpg.Pool

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(self.url)
        try:
            yield conn
        finally:
            await conn.close()


Feed = Callable[[Database, Sequence[RecordedEvent]], Awaitable[None]]


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with (
        fresh_database("pgviews") as url,
        asyncpg.create_pool(url, min_size=1, max_size=2) as pool,
    ):
        yield Database(url, pool)


async def open_views(db: Database, log: Sequence[RecordedEvent]) -> PostgreSQLReadModel:
    """The log's table filled with ``log`` and the views' tables set up, empty."""
    async with db.connect() as conn:
        await conn.execute(EVENTS_TABLE)
        await conn.copy_records_to_table("events", records=[tuple(e) for e in log])
        for projector in all_projectors():
            await projector.setup(conn)
    return PostgreSQLReadModel(db.pool)


async def in_pages(db: Database, log: Sequence[RecordedEvent], size: int = PAGE) -> None:
    """Apply ``log`` through every projector, ``size`` events per transaction, as appends do."""
    projectors = all_projectors()
    async with db.connect() as conn:
        for start in range(0, len(log), size):
            async with conn.transaction():
                for projector in projectors:
                    await projector.apply(conn, log[start : start + size])


async def one_by_one(db: Database, log: Sequence[RecordedEvent]) -> None:
    await in_pages(db, log, 1)


async def all_at_once(db: Database, log: Sequence[RecordedEvent]) -> None:
    await in_pages(db, log, len(log))


@pytest.mark.parametrize("feed", [in_pages, one_by_one, all_at_once])
async def test_postgresql_views_answer_every_question_as_sqlite_views_do(
    recorded: Recorded, db: Database, feed: Feed
) -> None:
    """The service's log fed in pages, one event per transaction or all at once: every answer
    of the PostgreSQL read model equals the SQLite read model's."""
    views = await open_views(db, recorded.log)
    await feed(db, recorded.log)

    got = await ask_everything(views, recorded.log, recorded.now)

    assert differences(recorded.answers, got) == []
    assert got == recorded.answers
    operations = await ask_operations(views, recorded.log)
    assert differences(recorded.operations, operations) == []
    assert operations == recorded.operations
    # Equal times may still differ in zone; both answer UTC times, as the API writes them.
    assert {t.tzinfo for t in times_in(got)} == {t.tzinfo for t in times_in(recorded.answers)}
    assert {t.tzinfo for t in times_in(got)} == {UTC}


def times_in(answers: Answers) -> list[datetime]:
    """The times among the answers: commit times, and the ledger entries' ``recorded_at``."""
    times = [a for q, a in answers.items() if q[0] == "commit_time" and a is not None]
    entries = [e for q, a in answers.items() if q[0] == "ledger_entries" for e in a]
    return times + [entry.recorded_at for entry in entries]


async def test_the_log_made_every_kind_of_answer(recorded: Recorded) -> None:
    """The comparison means something: the log holds each flow, and the answers each case."""
    types = {event.type for event in recorded.log}
    assert {
        "InvoicePaid",
        "InvoiceMarkedPaid",
        "InvoiceCanceled",
        "InvoiceExpired",
        "RefundCompleted",
        "TransactionCompleted",
        "LatePaymentReceived",
        "MismatchedPaymentReceived",
        "BalanceDebited",
        "UserDisabled",
        "UserEnabled",
    } <= types
    answers = recorded.answers
    statuses = {a.state.status for q, a in answers.items() if q[0] == "invoice" and a}
    assert {"PENDING", "PAID", "EXPIRED", "CANCELED"} <= statuses
    assert any(a is None for q, a in answers.items() if q[0] == "invoice")
    assert any(not a.enabled for q, a in answers.items() if q[0] == "user" and a)
    assert any(len(a) > 1 for q, a in answers.items() if q[0] == "due")
    assert any(a for q, a in answers.items() if q[0] == "reconcile")
    assert any(a[1] for q, a in answers.items() if q[0] == "balances")  # a seller's earnings
    assert any(a for q, a in answers.items() if q[0] == "invoice_by_waybill")
    operations = recorded.operations
    assert len(operations["invoice_status_counts",]) >= 4
    assert len({len(a) for q, a in operations.items() if q[0] == "hourly_volume"}) > 1


async def test_a_reset_and_replay_gives_the_same_rows(recorded: Recorded, db: Database) -> None:
    """After ``reset`` each projector replays the log (the ledger through its replayer) into
    the very rows the live appends wrote."""
    await open_views(db, recorded.log)
    await in_pages(db, recorded.log)
    before = await view_rows(db)

    async with db.connect() as conn, conn.transaction():
        invoices_and_users, ledger = InvoiceAndUserViews(), LedgerView()
        await invoices_and_users.reset(conn)
        await ledger.reset(conn)
        assert await _count(conn, "invoice_view") == await _count(conn, "ledger_entries") == 0
        replay = ledger.replayer()
        for start in range(0, len(recorded.log), 100):
            page = recorded.log[start : start + 100]
            await invoices_and_users.apply(conn, page)
            await replay.apply(conn, page)
        await replay.finish(conn)

    assert await view_rows(db) == before


VIEW_TABLES = ("invoice_view", "invoice_waybills", "users", "ledger_entries", "account_balances")


async def view_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    async with db.connect() as conn:
        return {
            table: [tuple(row) for row in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
            for table in VIEW_TABLES
        }


async def _count(conn: asyncpg.Connection, table: str) -> int:
    count: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def test_migrations_are_recorded_once_and_a_newer_schema_is_refused(
    db: Database,
) -> None:
    """A second open applies nothing; a database migrated by newer code is not opened."""
    async with db.connect() as conn:
        for projector in all_projectors():
            await projector.setup(conn)
        assert await apply_migrations(conn, "view:invoices", INVOICE_MIGRATIONS) == []
        recorded = await conn.fetch(
            "SELECT component, version FROM schema_migrations WHERE component LIKE 'view:%'"
            " ORDER BY component, version"
        )
        assert [tuple(r) for r in recorded] == [
            ("view:invoices", 1),
            ("view:ledger", 1),
            ("view:users", 1),
            ("view:webhooks", 1),
            ("view:webhooks", 2),
        ]
        await conn.execute(
            "INSERT INTO schema_migrations (component, version, name, applied_at)"
            " VALUES ($1, 2, 'newer', '')",
            "view:invoices",
        )
        with pytest.raises(SchemaTooNewError, match="view:invoices schema version 2"):
            await all_projectors()[0].setup(conn)


async def test_concurrent_opens_migrate_once(db: Database) -> None:
    """Processes opening one new database at once: the tables are made once, no open fails."""

    async def open_one() -> None:
        async with db.connect() as conn:
            for projector in all_projectors():
                await projector.setup(conn)

    await asyncio.gather(open_one(), open_one(), open_one())

    async with db.connect() as conn:
        rows = await conn.fetch(
            "SELECT component FROM schema_migrations WHERE component LIKE 'view:%'"
        )
        assert len(rows) == 5  # one row per migration: webhooks has two


async def test_readers_go_on_reading_the_old_rows_while_a_rebuild_resets_the_views(
    recorded: Recorded, db: Database
) -> None:
    """A rebuild's reset (not yet committed) neither empties the views for readers nor makes
    them wait: they read the rows as they were until the rebuild commits."""
    views = await open_views(db, recorded.log)
    await in_pages(db, recorded.log)
    invoice = next(q[1] for q, a in recorded.answers.items() if q[0] == "invoice" and a)
    admin = Reader("admin", "admin")
    before = await views.invoice(invoice, admin)
    assert before is not None

    async with db.connect() as conn, conn.transaction():
        for projector in all_projectors():
            await projector.reset(conn)
        async with asyncio.timeout(5):
            assert await views.invoice(invoice, admin) == before
            assert await views.balances("usernew1") == recorded.answers["balances", "usernew1"]
            assert await views.user("seller1") == recorded.answers["user", "seller1"]


class RecordingPool:
    """The read model's pool, noting every statement sent through it with its arguments."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements: dict[str, tuple[Any, ...]] = {}

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.pool, name)

        async def call(sql: str, *args: Any) -> Any:
            self.statements.setdefault(sql, args)
            return await method(sql, *args)

        return call


async def test_every_question_is_answered_from_an_index(recorded: Recorded, db: Database) -> None:
    """No statement of the read model scans a whole table when sequential scans are made a last
    resort: each has an index to use, however large the views grow."""
    await open_views(db, recorded.log)
    await in_pages(db, recorded.log)
    pool = RecordingPool(db.pool)
    await ask_everything(PostgreSQLReadModel(cast(asyncpg.Pool, pool)), recorded.log, recorded.now)
    assert len(pool.statements) >= 12  # one or more for each question

    whole_scans = {}
    async with db.connect() as conn:
        await conn.execute("SET enable_seqscan = off")
        for sql, args in pool.statements.items():
            plan = orjson.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            scans = list(whole_table_scans(plan[0]["Plan"]))
            if scans:
                whole_scans[sql] = scans
    assert whole_scans == {}


def whole_table_scans(node: dict[str, Any]) -> Iterator[str]:
    """The plan's scans that read a whole table or index (no condition bounds them)."""
    kind = node["Node Type"]
    if kind == "Seq Scan" or (
        kind.startswith(("Index", "Bitmap Index")) and "Index Cond" not in node
    ):
        yield f"{kind} on {node.get('Relation Name') or node.get('Index Name')}"
    for child in node.get("Plans", []):
        yield from whole_table_scans(child)


async def test_a_role_that_may_not_create_tables_opens_a_migrated_database(db: Database) -> None:
    """The service may run as a role without the right to create tables (its schema made by
    another): opening a database whose views are up to date creates nothing, so it works."""
    async with db.connect() as conn:
        for projector in all_projectors():
            await projector.setup(conn)
        role = f"pgviews_service_{uuid.uuid4().hex[:12]}"
        await conn.execute(f'CREATE ROLE "{role}" LOGIN')
        try:
            await conn.execute(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC, "{role}"')
            await conn.execute(f'GRANT SELECT ON schema_migrations TO "{role}"')
            service = await asyncpg.connect(db.url, user=role)
            try:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await service.execute("CREATE TABLE nothing_here (id int)")
                for projector in all_projectors():
                    await projector.setup(service)
            finally:
                await service.close()
        finally:
            await conn.execute(f'DROP OWNED BY "{role}"')
            await conn.execute(f'DROP ROLE "{role}"')
