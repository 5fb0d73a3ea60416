"""import_events: a log copied from another store arrives unchanged, or not at all.

The source here is always an SQLite file, so on every other backend this is a copy across
backends: the same hashes must verify there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventstore import (
    NO_STREAM,
    EventStore,
    ImportRefused,
    NewEvent,
    RecordedEvent,
    open_store,
)
from tests.contract.backends import Backend


async def source_log(folder: Path, count: int) -> list[RecordedEvent]:
    """``count`` events over three streams, with two-stream appends and unicode in them."""
    async with await open_store(folder / "source.db") as source:
        for i in range(count):
            stream = f"s{i % 3}"
            await source.append(
                stream,
                [NewEvent("E", {"amount": i, "note": "Rp ✓"}, {"actor": "t"})],
                await source.stream_version(stream),
            )
        return [event async for event in source.read_all()]


async def stored(store: EventStore) -> list[RecordedEvent]:
    return [event async for event in store.read_all()]


async def test_a_whole_log_arrives_unchanged_and_verifies(
    tmp_path: Path, store: EventStore
) -> None:
    events = await source_log(tmp_path, 12)

    head = await store.import_events(events)

    assert head == 12 == await store.head_position()
    assert await stored(store) == events
    report = await store.verify()
    assert (report.ok, report.events_checked, report.head_position) == (True, 12, 12)


async def test_a_copy_in_pages_resumes_after_reopening(tmp_path: Path, backend: Backend) -> None:
    """A copy interrupted between pages is a clean prefix; the rest follows on later."""
    events = await source_log(tmp_path, 10)
    async with await backend.open() as store:
        await store.import_events(events[:4])
    async with await backend.open() as store:
        await store.import_events(events[4:7])
        await store.import_events(events[7:])

        assert await stored(store) == events
        assert (await store.verify()).ok


async def test_appends_after_a_copy_continue_its_chain(tmp_path: Path, store: EventStore) -> None:
    events = await source_log(tmp_path, 5)
    await store.import_events(events)

    (appended,) = await store.append("s0", [NewEvent("E", {"amount": 99})], 2)

    assert (appended.position, appended.version) == (6, 3)
    assert appended.recorded_at_text >= events[-1].recorded_at_text
    assert (await store.verify()).ok


@pytest.mark.parametrize(
    "damage",
    ["skip the first", "repeat the last", "change a byte", "turn time back"],
)
async def test_events_that_do_not_continue_the_log_are_refused_whole(
    tmp_path: Path, store: EventStore, damage: str
) -> None:
    events = await source_log(tmp_path, 6)
    await store.import_events(events[:3])
    rest = events[3:]
    if damage == "skip the first":
        rest = rest[1:]
    elif damage == "repeat the last":
        rest = [events[2], *rest]
    elif damage == "change a byte":
        rest[1] = rest[1]._replace(data_json=rest[1].data_json.replace("4", "5"))
    else:
        earlier = datetime.fromisoformat(events[2].recorded_at_text) - timedelta(seconds=1)
        text = earlier.astimezone(UTC).isoformat(timespec="microseconds")
        rest[0] = rest[0]._replace(recorded_at_text=text.replace("+00:00", "Z"))

    with pytest.raises(ImportRefused):
        await store.import_events(rest)

    assert await stored(store) == events[:3]
    assert (await store.verify()).ok


async def test_an_import_onto_a_log_of_its_own_is_refused(
    tmp_path: Path, store: EventStore
) -> None:
    """A target that already holds other events is not a prefix of the source."""
    events = await source_log(tmp_path, 3)
    await store.append("mine", [NewEvent("E", {"amount": 1})], NO_STREAM)

    with pytest.raises(ImportRefused):
        await store.import_events(events)

    assert [event.stream_id for event in await stored(store)] == ["mine"]


async def test_nothing_to_import_changes_nothing(store: EventStore) -> None:
    assert await store.import_events([]) == 0
    assert await stored(store) == []
