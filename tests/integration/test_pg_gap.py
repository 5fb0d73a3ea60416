"""The sequence-gap test, in Marten's style: a subscriber never skips an event committed late.

With positions from a sequence, an append that took position 1 and is still open lets a later
append take position 2 and commit first; a subscriber reading ``position > 0`` then yields 2,
moves past 1, and never sees it once it commits. Here one append is held open inside its
transaction (its projector waits) and another store, with connections of its own as another
process would have, appends meanwhile: it must wait for the log's lock, so nothing with a higher
position commits first, and the subscriber sees the first append exactly once (or, rolled back,
never) and the second after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from eventstore import NO_STREAM, ConcurrencyError, EventStore, NewEvent, RecordedEvent
from eventstore.postgresql import PostgreSQLEventStore
from eventstore.postgresql.schema import APPEND_LOCK
from tests.contract.backends.postgresql import PostgreSQLBackend, PostgreSQLTotals

Stores = tuple[PostgreSQLEventStore, PostgreSQLTotals, PostgreSQLEventStore, PostgreSQLEventStore]


@pytest.fixture
def pg() -> Iterator[PostgreSQLBackend]:
    backend = PostgreSQLBackend()
    try:
        yield backend
    finally:
        backend.dispose()


async def holding(store: PostgreSQLEventStore, granted: bool) -> bool:
    """Whether a session holds (``granted``) or waits for the log's lock."""
    count = await store.pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = $1"
        " AND ((classid::bigint << 32) | objid::bigint) = $2",
        granted,
        APPEND_LOCK,
    )
    return int(count) > 0


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check()`` until it is true (bounded by the caller's timeout): the state asked
    for is in the database's lock table, which sends no signal."""
    for _ in range(1000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the database never reached the state waited for")


async def collect(store: EventStore, seen: list[RecordedEvent], last: str) -> None:
    """Subscribe from the start and keep every event, up to the one of stream ``last``."""
    async for event in store.subscribe("gap-test", after_position=0):
        seen.append(event)
        if event.stream_id == last:
            return


@pytest.fixture
async def stores(pg: PostgreSQLBackend) -> AsyncIterator[Stores]:
    """A writer whose ``totals`` projector can be paused, another writer, and a reader."""
    totals = PostgreSQLTotals()
    held = await pg.open(projectors=[totals])
    other = await pg.open()
    reader = await pg.open(poll_interval=0.02)
    try:
        yield held, totals, other, reader
    finally:
        for store in (held, other, reader):
            await store.close()


@pytest.mark.parametrize("first_commits", [True, False], ids=["commit", "rollback"])
async def test_a_subscriber_waits_for_an_open_append_instead_of_skipping_it(
    stores: Stores, first_commits: bool
) -> None:
    """The later append waits for the lock the open one holds; the subscriber sees nothing
    until the first one ends, then each committed event exactly once, in order."""
    held, totals, other, reader = stores
    seen: list[RecordedEvent] = []
    async with asyncio.timeout(20):
        subscriber = asyncio.create_task(collect(reader, seen, "sentinel"))
        totals.pause.clear()
        amount = 1 if first_commits else -1  # a negative amount makes the projector raise
        first = asyncio.create_task(
            held.append("first", [NewEvent("Added", {"amount": amount})], NO_STREAM)
        )
        await until(lambda: holding(reader, granted=True))
        second = asyncio.create_task(other.append("second", [NewEvent("E", {})], NO_STREAM))
        await until(lambda: holding(reader, granted=False))

        # The first append holds the lock inside its open transaction; the second waits.
        assert not first.done()
        assert not second.done()
        assert await reader.head_position() == 0
        assert [event async for event in reader.read_all()] == []
        assert seen == []

        totals.pause.set()
        results = await asyncio.gather(first, second, return_exceptions=True)
        await other.append("sentinel", [NewEvent("E", {})], NO_STREAM)
        await subscriber

    if first_commits:
        assert [(e.stream_id, e.position) for e in seen] == [
            ("first", 1),
            ("second", 2),
            ("sentinel", 3),
        ]
    else:
        assert isinstance(results[0], ValueError)
        assert [(e.stream_id, e.position) for e in seen] == [("second", 1), ("sentinel", 2)]
    assert (await reader.verify()).ok


async def test_the_lock_is_taken_last_so_conflicts_and_retries_never_wait_for_it(
    stores: Stores,
) -> None:
    """While one append holds the log's lock, another process's append that conflicts, and
    its retry of an append already stored, are answered at once: every check comes before
    the lock."""
    held, totals, other, reader = stores
    (stored,) = await other.append("taken", [NewEvent("E", {})], NO_STREAM)
    async with asyncio.timeout(20):
        totals.pause.clear()
        first = asyncio.create_task(
            held.append("first", [NewEvent("Added", {"amount": 1})], NO_STREAM)
        )
        await until(lambda: holding(reader, granted=True))

        with pytest.raises(ConcurrencyError):
            await other.append("taken", [NewEvent("E", {})], NO_STREAM)
        retried = await other.append(
            "taken", [NewEvent(stored.type, {}, event_id=stored.event_id)], NO_STREAM
        )
        assert retried == [stored]
        assert not first.done()  # all of that while the lock was held

        totals.pause.set()
        await first
