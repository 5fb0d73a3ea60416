"""A writer process for the crash tests: appends from several tasks until it is killed.

Run as ``python crash_writer.py DB_PATH RUN_TAG``. Every acknowledged append prints one line,
``<event_id> <position>``, flushed at once, so the parent knows exactly which appends the store
acknowledged before the process died. Each task owns a stream of its own (named after the run tag,
so several runs can share one file) and appends with the exact expected version.

It stops by itself after ``MAX_SECONDS`` so an orphan cannot outlive a broken test run for long.
"""

from __future__ import annotations

import asyncio
import sys
import time

from eventstore import NO_STREAM, EventStore, NewEvent
from eventstore.sqlite import SQLiteEventStore

TASKS = 8
MAX_SECONDS = 30.0


async def _append_forever(store: EventStore, stream_id: str, deadline: float) -> None:
    version = NO_STREAM
    while time.monotonic() < deadline:
        event = NewEvent("Counted", {"stream": stream_id, "n": version + 1})
        (recorded,) = await store.append(stream_id, [event], version)
        version = recorded.version
        sys.stdout.write(f"{recorded.event_id} {recorded.position}\n")
        sys.stdout.flush()


async def main(path: str, run_tag: str) -> None:
    deadline = time.monotonic() + MAX_SECONDS
    store = await SQLiteEventStore.open(path, synchronous="FULL")
    try:
        await asyncio.gather(
            *(_append_forever(store, f"crash-{run_tag}-{task}", deadline) for task in range(TASKS))
        )
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
