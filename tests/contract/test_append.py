"""Appending: versions, positions, expected-version checks, and races for one stream."""

from __future__ import annotations

import asyncio
from datetime import UTC

import pytest

from eventstore import ANY, NO_STREAM, ConcurrencyError, EventStore, NewEvent, StreamAppend
from tests.contract.backends import Backend


def events(*types: str) -> list[NewEvent]:
    return [NewEvent(type_, {"n": i}) for i, type_ in enumerate(types)]


async def all_events(store: EventStore) -> list[tuple[str, int, int, str]]:
    return [(e.stream_id, e.version, e.position, e.type) async for e in store.read_all()]


async def test_append_to_a_new_stream_records_versions_positions_time_and_hash(
    store: EventStore,
) -> None:
    """A first append gets versions 1..n, the next global positions, a UTC time and a hash."""
    recorded = await store.append("invoice-1", events("Created", "Paid"), NO_STREAM)

    assert [(e.version, e.position) for e in recorded] == [(1, 1), (2, 2)]
    assert [e.data for e in recorded] == [{"n": 0}, {"n": 1}]
    assert all(e.recorded_at.tzinfo == UTC for e in recorded)
    assert all(len(e.hash) == 64 for e in recorded)
    assert recorded[0].hash != recorded[1].hash


async def test_a_recorded_event_is_its_stored_text_decoded_when_read(
    store: EventStore, backend: Backend
) -> None:
    """Data, metadata and time come from the stored text each time they are read, so changing
    what one read changes neither the event nor what the next read gives."""
    (recorded,) = await store.append(
        "invoice-1", [NewEvent("Created", {"n": 1, "s": "é"}, {"actor": "a"})], NO_STREAM
    )
    stored = backend.stored_text(recorded.position)
    assert (recorded.data_json, recorded.metadata_json, recorded.recorded_at_text) == stored
    first = recorded.data
    first["n"] = 2
    assert recorded.data == {"n": 1, "s": "é"}
    assert recorded.metadata == {"actor": "a"}
    assert recorded.recorded_at.isoformat(timespec="microseconds")[:-6] + "Z" == stored[2]
    (read,) = [event async for event in store.read_all()]
    assert read == recorded


async def test_positions_are_global_and_gap_free_across_streams(store: EventStore) -> None:
    """Positions count every event of every stream in commit order, without holes."""
    await store.append("a", events("A1"), NO_STREAM)
    await store.append("b", events("B1", "B2"), NO_STREAM)
    await store.append("a", events("A2"), 1)

    assert await all_events(store) == [
        ("a", 1, 1, "A1"),
        ("b", 1, 2, "B1"),
        ("b", 2, 3, "B2"),
        ("a", 2, 4, "A2"),
    ]
    assert await store.head_position() == 4
    assert await store.stream_version("a") == 2
    assert await store.stream_version("missing") == 0


@pytest.mark.parametrize(
    ("expected", "description"),
    [(NO_STREAM, "no stream"), (1, "behind"), (5, "ahead")],
)
async def test_a_wrong_expected_version_raises_with_the_actual_one_and_writes_nothing(
    store: EventStore, expected: int, description: str
) -> None:
    """NO_STREAM on an existing stream, a stale or a future version: ConcurrencyError."""
    await store.append("s", events("E1", "E2"), NO_STREAM)

    with pytest.raises(ConcurrencyError) as raised:
        await store.append("s", events("E3"), expected)

    assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == (
        "s",
        expected,
        2,
    )
    assert await store.head_position() == 2


async def test_any_appends_whatever_the_version(store: EventStore) -> None:
    """ANY skips the check and continues the stream's versions."""
    await store.append("s", events("E1"), ANY)
    recorded = await store.append("s", events("E2", "E3"), ANY)

    assert [e.version for e in recorded] == [2, 3]


async def test_read_stream_and_read_all_start_after_the_given_point(store: EventStore) -> None:
    """after_version and after_position exclude what the caller has already seen."""
    await store.append("s", events("E1", "E2", "E3"), NO_STREAM)
    await store.append("t", events("T1"), NO_STREAM)

    assert [e.type async for e in store.read_stream("s", after_version=1)] == ["E2", "E3"]
    assert [e.type async for e in store.read_all(after_position=2)] == ["E3", "T1"]
    assert [e async for e in store.read_stream("nothing-here")] == []


async def test_last_events_gives_each_existing_streams_last_event(store: EventStore) -> None:
    """One read answers the last event of many streams; a missing stream is simply absent."""
    await store.append("s", events("E1", "E2", "E3"), NO_STREAM)
    await store.append("t", events("T1"), NO_STREAM)
    await store.append("s", events("E4"), 3)

    last = await store.last_events(["s", "t", "missing", "s"])

    assert {stream: (e.type, e.version) for stream, e in last.items()} == {
        "s": ("E4", 4),
        "t": ("T1", 1),
    }
    assert last["s"].data == {"n": 0}
    assert await store.last_events([]) == {}


@pytest.mark.parametrize("count", [1, 2, 3, 8, 9, 20])
async def test_last_events_answers_the_newest_event_of_each_of_few_or_many_streams(
    store: EventStore, count: int
) -> None:
    """However many streams are asked for at once (a backend may ask few and many streams in
    different ways), each existing one answers its newest event and a missing one nothing."""
    names = [f"s{i}" for i in range(count)]
    for i, name in enumerate(names):
        await store.append(name, events(*[f"E{n}" for n in range(i % 3 + 1)]), NO_STREAM)

    last = await store.last_events([*names, "missing"])

    assert {s: (e.type, e.version) for s, e in last.items()} == {
        name: (f"E{i % 3}", i % 3 + 1) for i, name in enumerate(names)
    }


async def test_stream_tail_reads_a_streams_next_events_up_to_a_limit(store: EventStore) -> None:
    """After a version, at most ``limit`` events, oldest first; none past the end."""
    await store.append("s", events("E1", "E2", "E3", "E4"), NO_STREAM)
    await store.append("t", events("T1"), NO_STREAM)

    assert [e.type for e in await store.stream_tail("s", 1, limit=2)] == ["E2", "E3"]
    assert [e.type for e in await store.stream_tail("s", 3)] == ["E4"]
    assert await store.stream_tail("s", 4) == []
    assert await store.stream_tail("missing", 0) == []


async def test_last_events_reads_more_streams_than_one_query_takes(
    backend: Backend, store: EventStore
) -> None:
    """Beyond one query's worth of streams, every stream is still answered."""
    names = [f"s{i}" for i in range(backend.last_events_chunk + 3)]
    await store.append_streams([StreamAppend(name, NO_STREAM, events("E")) for name in names])

    assert set(await store.last_events(names)) == set(names)


async def test_reads_page_through_long_logs(backend: Backend) -> None:
    """With a page of 3, reading 10 events crosses pages without losing or repeating one."""
    async with await backend.open(page_size=3) as store:
        for i in range(10):
            await store.append(f"s{i % 2}", events(f"E{i}"), ANY)

        assert [e.position async for e in store.read_all()] == list(range(1, 11))
        assert [e.type async for e in store.read_stream("s0")] == ["E0", "E2", "E4", "E6", "E8"]


async def test_racing_appends_to_one_stream_have_exactly_one_winner_per_version(
    store: EventStore,
) -> None:
    """20 tasks race for each of 10 versions of one stream: each version is won exactly once."""
    won: list[int] = []

    async def contender(name: int) -> None:
        while True:
            version = await store.stream_version("contested")
            if version >= 10:
                return
            try:
                await store.append("contested", [NewEvent("Won", {"by": name})], version)
            except ConcurrencyError:
                continue
            won.append(version + 1)

    await asyncio.gather(*(contender(i) for i in range(20)))

    assert sorted(won) == list(range(1, 11))
    stream = [e async for e in store.read_stream("contested")]
    assert [e.version for e in stream] == list(range(1, 11))


async def test_many_callers_racing_on_one_version_lose_cleanly(store: EventStore) -> None:
    """50 simultaneous appends expecting NO_STREAM: one succeeds, 49 get ConcurrencyError."""
    results = await asyncio.gather(
        *(store.append("once", events("Only"), NO_STREAM) for _ in range(50)),
        return_exceptions=True,
    )

    successes = [r for r in results if isinstance(r, list)]
    conflicts = [r for r in results if isinstance(r, ConcurrencyError)]
    assert (len(successes), len(conflicts)) == (1, 49)
    assert all(c.actual == 1 for c in conflicts)
    assert await store.head_position() == 1


async def test_recorded_at_never_goes_backwards(backend: Backend) -> None:
    """A clock that jumps back does not make a later event look older than an earlier one."""
    from datetime import datetime, timedelta

    times = iter([datetime(2030, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC)])
    async with await backend.open(clock=lambda: next(times)) as store:
        first = await store.append("s", events("E1"), NO_STREAM)
        second = await store.append("s", events("E2"), 1)

    assert second[0].recorded_at >= first[0].recorded_at
    assert second[0].recorded_at - first[0].recorded_at < timedelta(seconds=1)
