"""Rebuilds read only the events their projectors select, and report progress by position."""

from __future__ import annotations

from tests.contract.backends import Backend, append_mixed


async def test_a_rebuild_offers_only_the_events_its_projectors_select(
    backend: Backend,
) -> None:
    """Live appends offer every event; a rebuild reads only those some projector selects."""
    wanted = await append_mixed(backend, projectors=[backend.offered_view()])
    assert backend.offered() == list(range(1, 13))
    progress: list[tuple[int, int]] = []

    async with await backend.open(projectors=[backend.offered_view()], page_size=2) as store:
        replayed = await store.rebuild_projections(
            lambda done, total: progress.append((done, total))
        )

    assert replayed == 12  # the whole log was replayed through, read or not
    assert backend.offered() == wanted
    # Pages of two selected events end at positions 4, 7 and 10; the unread tail still counts.
    assert progress == [(4, 12), (7, 12), (10, 12), (12, 12)]
