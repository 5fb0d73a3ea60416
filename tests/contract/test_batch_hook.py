"""The ``on_batch`` option: each committed group commit tells how many appends it took, on
every backend, so the service can observe batch sizes without the store knowing of metrics."""

from __future__ import annotations

import asyncio
import threading

from eventstore import NO_STREAM, NewEvent
from tests.contract.backends import Backend


async def test_each_group_commit_reports_its_number_of_appends(backend: Backend) -> None:
    """Appends sent one at a time and many at once: the sizes reported sum to the appends
    committed, and concurrent appends share commits (some batch holds more than one)."""
    sizes: list[int] = []
    lock = threading.Lock()  # SQLite's writer reports from its own thread

    def note(size: int) -> None:
        with lock:
            sizes.append(size)

    store = await backend.open(on_batch=note)
    try:
        await store.append("alone", [NewEvent("E", {})], NO_STREAM)
        assert sizes == [1]
        await asyncio.gather(
            *(store.append(f"s-{i}", [NewEvent("E", {"i": i})], NO_STREAM) for i in range(200))
        )
    finally:
        await store.close()
    assert sum(sizes) == 201
    assert max(sizes) > 1
