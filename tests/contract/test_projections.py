"""Inline projections: views written in the same transaction as their events."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import NO_STREAM, NewEvent
from tests.contract.backends import Backend


def amount(value: int) -> list[NewEvent]:
    return [NewEvent("Added", {"amount": value})]


async def test_a_view_commits_with_its_events(backend: Backend) -> None:
    """After an append returns, its view rows are there (read-your-writes)."""
    async with await backend.open(projectors=[backend.totals_view()]) as store:
        await store.append("a", amount(5), NO_STREAM)
        await store.append("a", amount(7), 1)
        await store.append("b", amount(1), NO_STREAM)

        assert backend.totals() == {"a": 12, "b": 1}


async def test_a_failing_projector_fails_only_its_own_append(backend: Backend) -> None:
    """The append whose view update raises writes neither events nor rows; its batch goes on."""
    async with await backend.open(projectors=[backend.totals_view()]) as store:
        results = await asyncio.gather(
            store.append("a", amount(5), NO_STREAM),
            store.append("bad", amount(-1), NO_STREAM),
            store.append("c", amount(3), NO_STREAM),
            return_exceptions=True,
        )

        assert isinstance(results[1], ValueError)
        assert backend.totals() == {"a": 5, "c": 3}
        assert await store.stream_version("bad") == 0
        assert [e.position async for e in store.read_all()] == [1, 2]


async def test_rebuild_replays_the_log_into_an_emptied_view(backend: Backend) -> None:
    """Dropping the view's rows and replaying gives the live view back, reporting progress."""
    async with await backend.open(projectors=[backend.totals_view()], page_size=4) as store:
        for i in range(10):
            await store.append(f"s{i % 3}", amount(i), await store.stream_version(f"s{i % 3}"))
        live = backend.totals()
        backend.clear_totals()
        progress: list[tuple[int, int]] = []

        replayed = await store.rebuild_projections(
            lambda done, total: progress.append((done, total))
        )

        assert replayed == 10
        assert backend.totals() == live
        assert progress[-1] == (10, 10)
        assert [done for done, _ in progress] == [4, 8, 10]


async def test_reads_do_not_wait_for_the_writer(backend: Backend) -> None:
    """While an append is held inside its transaction, readers still answer."""
    totals = backend.totals_view()
    async with await backend.open(projectors=[totals]) as store:
        await store.append("a", amount(1), NO_STREAM)
        totals.pause.clear()
        pending = asyncio.create_task(store.append("a", amount(2), 1))
        await asyncio.sleep(0.05)

        async with asyncio.timeout(2):
            assert [e.position async for e in store.read_all()] == [1]
            assert await store.stream_version("a") == 1
        assert not pending.done()

        totals.pause.set()
        await pending
        assert await store.stream_version("a") == 2


@pytest.mark.parametrize("count", [1, 40])
async def test_rebuild_and_appends_interleave_without_double_counting(
    backend: Backend, count: int
) -> None:
    """Appends queued around a rebuild are counted once in the rebuilt view."""
    async with await backend.open(projectors=[backend.totals_view()]) as store:
        await store.append("a", amount(1), NO_STREAM)
        await asyncio.gather(
            *(store.append(f"x{i}", amount(1), NO_STREAM) for i in range(count)),
            store.rebuild_projections(),
            *(store.append(f"y{i}", amount(1), NO_STREAM) for i in range(count)),
        )

        assert sum(backend.totals().values()) == 1 + 2 * count
