"""The log guards itself: append-only in the database, and a hash chain that shows any edit."""

from __future__ import annotations

import pytest

from eventstore import EventStore, NewEvent, verify_store
from tests.contract.backends import Backend, Change


async def fill(store: EventStore, count: int) -> None:
    for i in range(count):
        await store.append(
            f"s{i % 3}", [NewEvent("E", {"amount": i})], await store.stream_version(f"s{i % 3}")
        )


async def test_an_untouched_log_verifies(backend: Backend) -> None:
    """verify() walks every event, page by page, and finds nothing."""
    async with await backend.open(page_size=4) as store:
        await fill(store, 10)

        report = await store.verify()

    assert (report.ok, report.events_checked, report.head_position) == (True, 10, 10)
    assert report.first_bad_position is None


async def test_a_log_verifies_from_outside_a_store_and_names_the_edit(backend: Backend) -> None:
    """verify_store(location) checks a log nobody has open (a backup, a copy) as verify() does,
    and finds an edit at its position."""
    async with await backend.open() as store:
        await fill(store, 6)

    assert (await verify_store(backend.location)).ok
    backend.tamper_data(4, '{"amount":9999}')

    report = await verify_store(backend.location)

    assert (report.ok, report.first_bad_position, report.events_checked) == (False, 4, 3)


async def test_an_empty_log_verifies(store: EventStore) -> None:
    """Nothing written is nothing wrong."""
    report = await store.verify()

    assert (report.ok, report.events_checked) == (True, 0)


async def test_an_edited_event_is_found_at_its_position(
    backend: Backend, store: EventStore
) -> None:
    """Changing one amount behind the store's back breaks the chain exactly there."""
    await fill(store, 8)
    backend.tamper_data(5, '{"amount":9999}')

    report = await store.verify()

    assert (report.ok, report.first_bad_position, report.events_checked) == (False, 5, 4)


@pytest.mark.parametrize("change", ["update", "delete"])
async def test_the_database_refuses_to_change_the_log(
    backend: Backend, store: EventStore, change: Change
) -> None:
    """UPDATE and DELETE fail in the database itself, whoever sends them."""
    await fill(store, 2)
    with pytest.raises(backend.refused, match="append-only"):
        backend.change_event(change, 1)

    assert (await store.verify()).ok
    assert [e.data async for e in store.read_all()] == [{"amount": 0}, {"amount": 1}]
