"""Subscriptions: events as they commit, in order, with checkpoints stored in the database."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eventstore import (
    NO_STREAM,
    Checkpoint,
    CheckpointConflict,
    EventStore,
    NewEvent,
    RecordedEvent,
)
from tests.contract.backends import Backend


async def take(store: EventStore, name: str, count: int, **kwargs: Any) -> list[RecordedEvent]:
    seen: list[RecordedEvent] = []
    async with asyncio.timeout(10):
        async for event in store.subscribe(name, **kwargs):
            seen.append(event)
            if len(seen) == count:
                break
    return seen


async def test_a_subscription_sees_every_event_in_order_while_writers_race(
    store: EventStore,
) -> None:
    """8 writers append 25 events each while a subscriber reads: 200 events, positions 1..200."""

    async def writer(w: int) -> None:
        for i in range(25):
            await store.append(f"w{w}-{i}", [NewEvent("E", {"w": w, "i": i})], NO_STREAM)
            if i % 5 == 0:
                await asyncio.sleep(0)

    subscriber = asyncio.create_task(take(store, "all", 200, after_position=0))
    await asyncio.gather(*(writer(w) for w in range(8)))
    seen = await subscriber

    assert [e.position for e in seen] == list(range(1, 201))


async def test_a_subscription_starts_after_the_given_position(store: EventStore) -> None:
    """Events at or before after_position are not delivered again."""
    for i in range(5):
        await store.append(f"s{i}", [NewEvent("E", {})], NO_STREAM)

    seen = await take(store, "late", 2, after_position=3)

    assert [e.position for e in seen] == [4, 5]


async def test_a_subscription_waits_for_new_commits(store: EventStore) -> None:
    """Caught up, it blocks until the next commit and then yields it at once."""
    await store.append("s", [NewEvent("Before", {})], NO_STREAM)
    subscriber = asyncio.create_task(take(store, "waiting", 2, after_position=0))
    await asyncio.sleep(0.05)
    assert not subscriber.done()

    await store.append("s", [NewEvent("After", {})], 1)

    assert [e.type for e in await subscriber] == ["Before", "After"]


async def test_a_subscription_ends_when_the_store_closes(backend: Backend) -> None:
    """Closing the store finishes a waiting subscription instead of leaving it hanging."""
    store = await backend.open()

    async def consume() -> int:
        return len([event async for event in store.subscribe("s", after_position=0)])

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await store.close()

    async with asyncio.timeout(5):
        assert await consumer == 0


async def test_a_subscription_to_a_closed_store_ends_without_error(backend: Backend) -> None:
    """Subscribing after close, from a checkpoint, yields nothing and raises nothing (as the
    interface says: it ends, without error, when the store closes)."""
    store = await backend.open()
    await store.close()

    async with asyncio.timeout(5):
        assert [event async for event in store.subscribe("s")] == []


async def test_a_checkpoint_moves_with_the_append_it_belongs_to(store: EventStore) -> None:
    """The checkpoint is saved in the same transaction as the subscriber's own events."""
    (source,) = await store.append("invoice", [NewEvent("RefundRequested", {})], NO_STREAM)

    await store.append(
        "balance", [NewEvent("Credited", {})], NO_STREAM, checkpoint=Checkpoint("refunds", 1)
    )

    assert await store.load_checkpoint("refunds") == source.position
    assert await store.load_checkpoint("never-saved") == 0


async def test_a_checkpoint_never_moves_back_and_refusing_writes_nothing(
    store: EventStore,
) -> None:
    """Processing an event twice fails on the checkpoint, and its effects are not written."""
    await store.append("invoice", [NewEvent("RefundRequested", {})], NO_STREAM)
    await store.save_checkpoint("refunds", 1)

    with pytest.raises(CheckpointConflict) as raised:
        await store.append(
            "balance", [NewEvent("Credited", {})], NO_STREAM, checkpoint=Checkpoint("refunds", 1)
        )

    assert (raised.value.stored, raised.value.requested) == (1, 1)
    assert await store.stream_version("balance") == 0


async def test_a_checkpoint_cannot_pass_the_end_of_the_log(store: EventStore) -> None:
    """A position that does not exist yet cannot have been processed."""
    with pytest.raises(ValueError, match="end"):
        await store.save_checkpoint("future", 5)


async def test_a_subscriber_resumes_from_its_checkpoint_after_a_restart_exactly_once(
    backend: Backend,
) -> None:
    """Each source event gets exactly one effect, across a stop in the middle."""

    async def process(store: EventStore, limit: int) -> None:
        handled = 0
        async with asyncio.timeout(10):
            async for event in store.subscribe("doubler"):
                if event.type != "Number":
                    await store.save_checkpoint("doubler", event.position)
                    continue
                await store.append(
                    f"double-{event.stream_id}",
                    [NewEvent("Doubled", {"value": event.data["value"] * 2})],
                    NO_STREAM,
                    checkpoint=Checkpoint("doubler", event.position),
                )
                handled += 1
                if handled == limit:
                    return

    async with await backend.open() as store:
        for i in range(6):
            await store.append(f"n{i}", [NewEvent("Number", {"value": i})], NO_STREAM)
        await process(store, limit=4)

    async with await backend.open() as store:  # a restart: only the checkpoint remembers
        await process(store, limit=2)
        doubled = [e.data["value"] async for e in store.read_all() if e.type == "Doubled"]

    assert sorted(doubled) == [0, 2, 4, 6, 8, 10]


async def test_commits_from_another_process_reach_a_subscription(backend: Backend) -> None:
    """A second store on the same database (another process) is found by polling."""
    async with (
        await backend.open(poll_interval=0.05) as reader,
        await backend.open() as other_process,
    ):
        subscriber = asyncio.create_task(take(reader, "other", 1, after_position=0))
        await asyncio.sleep(0.05)
        await other_process.append("s", [NewEvent("FromElsewhere", {})], NO_STREAM)

        assert [e.type for e in await subscriber] == ["FromElsewhere"]


async def test_a_filtered_subscription_sees_only_its_types_in_order_while_writers_race(
    store: EventStore,
) -> None:
    """Writers append two kinds of events; a subscriber to one kind gets every one of them, in
    position order, and never the other kind, including those committed after it caught up."""

    async def writer(w: int) -> None:
        for i in range(20):
            kind = "Wanted" if i % 3 == 0 else "Other"
            await store.append(f"w{w}-{i}", [NewEvent(kind, {"w": w, "i": i})], NO_STREAM)
            await asyncio.sleep(0)

    subscriber = asyncio.create_task(
        take(store, "wanted", 4 * 7, after_position=0, types=["Wanted"])
    )
    await asyncio.gather(*(writer(w) for w in range(4)))
    seen = await subscriber
    wanted = [e.position async for e in store.read_all() if e.type == "Wanted"]

    assert [e.type for e in seen] == ["Wanted"] * 28
    assert [e.position for e in seen] == wanted


async def test_read_all_can_skip_the_types_it_is_not_asked_for(backend: Backend) -> None:
    """With types, pages still cross correctly (a page of 2 here) and skip the rest."""
    async with await backend.open(page_size=2) as store:
        for i in range(9):
            await store.append(f"s{i}", [NewEvent("A" if i % 2 else "B", {"i": i})], NO_STREAM)

        b_events = [e.data["i"] async for e in store.read_all(types=["B"])]
        after = [e.data["i"] async for e in store.read_all(after_position=4, types={"A"})]

    assert b_events == [0, 2, 4, 6, 8]
    assert after == [5, 7]
