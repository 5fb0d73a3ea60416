"""The SQLite store's own ways beyond the interface's contract: group commit.

Appends queued together share one transaction and one commit (``eventstore.sqlite.writer``).
That is how this store gets its throughput, not something the interface promises, so it is
tested here rather than in ``tests/contract``.
"""

from __future__ import annotations

import asyncio

from eventstore import NO_STREAM, EventStore, NewEvent


def events(*types: str) -> list[NewEvent]:
    return [NewEvent(type_, {"n": i}) for i, type_ in enumerate(types)]


async def test_concurrent_appends_commit_together(store: EventStore) -> None:
    """Appends queued together share one transaction: group commit gives them one commit time."""
    results = await asyncio.gather(
        *(store.append(f"stream-{i}", events("E"), NO_STREAM) for i in range(32))
    )

    commit_times = {recorded[0].recorded_at for recorded in results}
    assert len(commit_times) < 32
    assert sorted(recorded[0].position for recorded in results) == list(range(1, 33))
