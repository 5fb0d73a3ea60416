"""The PostgreSQL store's own behaviour, beyond the contract: its guards, migrations, settings,
checkpoints across processes, wake-ups, the hash chain shared with SQLite, and reconnection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    Checkpoint,
    CheckpointConflict,
    ConcurrencyError,
    EventSelection,
    EventStoreError,
    NewEvent,
    RecordedEvent,
    SchemaTooNewError,
    StoreWriteError,
    verify_store,
)
from eventstore.postgresql import Migration, PostgreSQLEventStore, apply_migrations
from eventstore.sqlite import SQLiteEventStore
from tests.contract.backends.postgresql import PostgreSQLBackend, admin_statement


@pytest.fixture
def pg() -> Iterator[PostgreSQLBackend]:
    backend = PostgreSQLBackend()
    try:
        yield backend
    finally:
        backend.dispose()


def events(count: int) -> list[NewEvent]:
    return [NewEvent("E", {"n": n}) for n in range(count)]


async def test_truncate_is_refused_and_a_disabled_guard_fails_verify(pg: PostgreSQLBackend) -> None:
    """TRUNCATE is refused like UPDATE and DELETE; a guard switched off, not only dropped, makes
    the log not ok even though every hash still matches."""
    async with await pg.open() as store:
        await store.append("s", events(2), NO_STREAM)
        with pytest.raises(asyncpg.PostgresError, match="append-only: TRUNCATE"):
            pg.rows("TRUNCATE events")
        pg.rows("ALTER TABLE events DISABLE TRIGGER events_are_append_only")

        report = await store.verify()

    assert (report.ok, report.events_checked, report.first_bad_position) == (False, 2, None)
    assert report.reason is not None
    assert "events_are_append_only" in report.reason


async def test_each_event_keeps_the_id_of_the_transaction_that_wrote_it(
    pg: PostgreSQLBackend,
) -> None:
    """One group commit is one transaction: its events share one xact_id; a later one's is
    higher."""
    async with await pg.open() as store:
        await asyncio.gather(*(store.append(f"s{i}", events(1), NO_STREAM) for i in range(5)))
        await store.append("later", events(1), NO_STREAM)

    rows = pg.rows("SELECT position, xact_id::text::bigint FROM events ORDER BY position")
    xacts = [xact for _, xact in rows]
    assert len(set(xacts[:5])) < 5  # batched: at least two of the five shared a transaction
    assert xacts == sorted(xacts)
    assert xacts[-1] > xacts[0]


async def test_a_database_migrated_by_a_newer_release_is_refused(pg: PostgreSQLBackend) -> None:
    """A migration this code does not know means the schema may mean something else."""
    async with await pg.open():
        pass
    pg.rows("INSERT INTO schema_migrations VALUES ('eventstore', 99, 'from the future', '2099')")

    with pytest.raises(SchemaTooNewError, match="version 99"):
        await pg.open()


async def test_components_keep_their_own_numbered_migrations(pg: PostgreSQLBackend) -> None:
    """A view's component applies each migration once, beside the store's own, and refuses a
    database that has a newer one of its own."""
    first = [Migration(1, "a table", "CREATE TABLE seen (n INTEGER)")]
    both = [*first, Migration(2, "a column", "ALTER TABLE seen ADD COLUMN m INTEGER")]
    conn = await asyncpg.connect(pg.location)
    try:
        assert await apply_migrations(conn, "views", first) == [1]
        assert await apply_migrations(conn, "views", both) == [2]
        assert await apply_migrations(conn, "views", both) == []
        with pytest.raises(SchemaTooNewError):
            await apply_migrations(conn, "views", first)
    finally:
        await conn.close()
    async with await pg.open():  # the store's own component is untouched by the view's
        pass
    recorded = pg.rows("SELECT component, version FROM schema_migrations ORDER BY 1, 2")
    assert recorded == [("eventstore", 1), ("views", 1), ("views", 2)]


async def test_every_connection_ends_a_transaction_left_idle(pg: PostgreSQLBackend) -> None:
    """idle_in_transaction_session_timeout is set on the store's sessions."""
    async with await pg.open(idle_timeout=12) as store:
        setting = await store.pool.fetchval("SHOW idle_in_transaction_session_timeout")

    assert setting == "12s"


async def test_a_stale_worker_cannot_move_a_checkpoint_another_process_moved(
    pg: PostgreSQLBackend,
) -> None:
    """Two processes handling the same event: the checkpoint's compare-and-swap lets exactly
    one write its effects."""
    async with await pg.open() as first, await pg.open() as second:
        await first.append("source", events(1), NO_STREAM)
        results = await asyncio.gather(
            *(
                store.append(f"effect-{n}", events(1), NO_STREAM, checkpoint=Checkpoint("w", 1))
                for n, store in enumerate([first, second, first, second])
            ),
            return_exceptions=True,
        )
        conflicts = [r for r in results if isinstance(r, CheckpointConflict)]
        written = [e.stream_id async for e in first.read_all() if e.stream_id != "source"]

        assert (len(conflicts), len(written)) == (3, 1)
        assert await second.load_checkpoint("w") == 1


async def test_another_process_commit_wakes_a_subscription_before_its_poll(
    pg: PostgreSQLBackend,
) -> None:
    """The NOTIFY sent with a commit wakes a subscriber whose poll is half a minute away."""
    async with await pg.open(poll_interval=30) as reader, await pg.open() as writer:
        await reader.append("warm-up", events(1), NO_STREAM)

        async def second_event() -> str:
            async for event in reader.subscribe("s", after_position=1):
                return event.stream_id
            return ""

        waiting = asyncio.create_task(second_event())
        await asyncio.sleep(0.1)  # let it catch up and wait
        await writer.append("elsewhere", events(1), NO_STREAM)
        async with asyncio.timeout(10):
            assert await waiting == "elsewhere"


async def test_a_log_copied_between_backends_has_the_same_hashes(
    pg: PostgreSQLBackend, tmp_path: Path
) -> None:
    """The server computes records.chain_hash exactly: the same events at the same time hash
    the same on SQLite and on PostgreSQL, with data holding every kind of character."""
    moment = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    batch = [
        NewEvent("Créé", {"text": 'ünï "quoted" \\ back\nline ☃ 🎉', "n": 10**18}, {"by": "é"}),
        NewEvent("Paid", {"amount": -1.5, "none": None, "list": [1, "two", {"three": 3}]}),
    ]
    others = events(3)
    async with await pg.open(clock=lambda: moment) as store:
        on_pg = await store.append("stream-é", batch, NO_STREAM)
        on_pg += await store.append("other", others, NO_STREAM)
    async with await SQLiteEventStore.open(tmp_path / "e.db", clock=lambda: moment) as store:
        on_sqlite = await store.append("stream-é", batch, NO_STREAM)
        on_sqlite += await store.append("other", others, NO_STREAM)

    assert [e.hash for e in on_pg] == [e.hash for e in on_sqlite]
    assert (await verify_store(pg.location)).ok


async def test_a_missing_database_is_named_when_opened_or_verified(pg: PostgreSQLBackend) -> None:
    """The store does not create databases: one that does not exist is a clear error."""
    missing = pg.location + "_missing"

    with pytest.raises(EventStoreError, match="_missing"):
        await verify_store(missing)
    with pytest.raises(EventStoreError, match="_missing"):
        await PostgreSQLEventStore.open(missing)


async def test_verify_url_creates_nothing(pg: PostgreSQLBackend) -> None:
    """Verifying a database that holds no store reports it, and leaves the database empty."""
    report = await verify_store(pg.location)

    assert (report.ok, report.reason) == (False, "no event log")
    assert pg.rows("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


async def test_the_store_reconnects_after_its_connections_are_killed(
    pg: PostgreSQLBackend,
) -> None:
    """A server restart or a killed session fails the batch in flight at most; the next appends
    and reads go through on new connections."""
    async with await pg.open(poll_interval=0.05) as store:
        await store.append("before", events(1), NO_STREAM)
        pg.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'eventstore'"
        )
        for _ in range(3):  # the first may meet a connection that is not yet known to be dead
            try:
                await store.append("after", events(1), NO_STREAM)
                break
            except (StoreWriteError, asyncpg.InterfaceError, asyncpg.PostgresError):
                continue
        assert await store.stream_version("after") == 1
        assert (await store.verify()).ok


async def test_the_writer_closes_with_the_appends_queued(pg: PostgreSQLBackend) -> None:
    """close() finishes every append already queued before it lets go of the connection."""
    store = await pg.open()
    pending = [asyncio.create_task(store.append(f"s{i}", events(1), NO_STREAM)) for i in range(20)]
    await asyncio.sleep(0)
    await store.close()

    assert [len(recorded) for recorded in await asyncio.gather(*pending)] == [1] * 20
    async with await pg.open() as reopened:
        assert await reopened.head_position() == 20


async def test_a_role_without_update_rights_serves_and_cannot_change_the_log(
    pg: PostgreSQLBackend,
) -> None:
    """The setup docs/design.md advises: migrate as the owner, serve as a role that may only
    read and append. The store opens, appends and moves checkpoints as that role, and the
    database refuses the role's UPDATE even with the triggers gone."""
    async with await pg.open() as store:  # the owner migrates
        await store.append("s", events(1), NO_STREAM)
    role = f"service_{pg.database}"
    pg.rows(f"CREATE ROLE {role} LOGIN")
    try:
        pg.rows(f"GRANT SELECT, INSERT ON events TO {role}")
        pg.rows(f"GRANT SELECT, INSERT, UPDATE ON checkpoints, schema_migrations TO {role}")
        as_role = pg.location.replace("postgres@", f"{role}@", 1)
        async with await PostgreSQLEventStore.open(as_role) as store:
            await store.append("s", events(1), 1, checkpoint=Checkpoint("worker", 1))
            assert await store.load_checkpoint("worker") == 1
            assert (await store.verify()).ok
        pg.tamper()  # the guards dropped: the role's rights still refuse the change
        conn = await asyncpg.connect(as_role)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE events SET data = '{}'")
        finally:
            await conn.close()
    finally:
        pg.dispose()  # the role owns nothing once the database is gone
        admin_statement(f"DROP ROLE {role}")


class CountingReplayer:
    """A replayer that sums in memory and writes once, at ``finish``."""

    def __init__(self, pages: list[int]) -> None:
        self.pages = pages
        self.count = 0

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        self.pages.append(len(events))
        self.count += len(events)

    async def finish(self, conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO counted VALUES ($1)", self.count)


class Counted:
    """A view of how many ``Wanted`` events there are, replayed by its own replayer."""

    name = "counted"
    reads = EventSelection(types=frozenset({"Wanted"}))

    def __init__(self) -> None:
        self.pages: list[int] = []

    async def setup(self, conn: asyncpg.Connection) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS counted (n BIGINT NOT NULL)")

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM counted")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        wanted = sum(event.type == "Wanted" for event in events)
        if wanted:
            await conn.execute("INSERT INTO counted VALUES ($1)", wanted)

    def replayer(self) -> CountingReplayer:
        return CountingReplayer(self.pages)


async def test_a_rebuild_gives_the_selected_events_to_the_replayer_in_pages_then_finishes(
    pg: PostgreSQLBackend,
) -> None:
    """An AsyncProjector's replayer gets only the events it reads, a page at a time through the
    cursor, and its finish once, in the rebuild's transaction."""
    view = Counted()
    async with await pg.open(projectors=[view], page_size=3) as store:
        for i in range(10):
            await store.append(f"s{i}", [NewEvent("Wanted" if i % 2 else "Other", {})], NO_STREAM)
        assert pg.rows("SELECT sum(n)::int FROM counted") == [(5,)]

        assert await store.rebuild_projections() == 10

    assert view.pages == [3, 2]
    assert pg.rows("SELECT n FROM counted") == [(5,)]


async def test_stores_racing_on_one_stream_keep_versions_and_positions_whole(
    pg: PostgreSQLBackend,
) -> None:
    """Three stores (as three processes) race on one stream, with exact versions and with ANY:
    each exact version is won once, every ANY append lands, and the log stays gap-free and
    verifies."""
    stores = [await pg.open() for _ in range(3)]
    won: list[int] = []

    async def contender(store: PostgreSQLEventStore, name: int) -> None:
        while (version := await store.stream_version("contested")) < 15:
            try:
                await store.append("contested", [NewEvent("Won", {"by": name})], version)
            except ConcurrencyError:
                continue
            won.append(version + 1)

    async def any_writer(store: PostgreSQLEventStore) -> None:
        for _ in range(5):
            await store.append("shared", events(1), ANY)

    try:
        await asyncio.gather(
            *(contender(stores[n % 3], n) for n in range(9)),
            *(any_writer(store) for store in stores),
        )
        reader = stores[0]
        assert sorted(won) == list(range(1, 16))
        assert [e.version async for e in reader.read_stream("shared")] == list(range(1, 16))
        assert [e.position async for e in reader.read_all()] == list(range(1, 31))
        assert (await reader.verify()).ok
    finally:
        for store in stores:
            await store.close()
