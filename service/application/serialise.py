"""Commands of one process on the same stream take turns: a lock per stream, held by the attempt
that reads the stream until its append is committed (or it gives up).

Why: without it, N concurrent commands on one stream (a buyer's balance) all read the same
version, one wins the append and N - 1 decide again, so a busy stream turns into a storm of lost
races in one process. With it, each command reads the stream only after the previous one has
appended, decides on fresh state and wins at once; optimistic conflicts are left to writers in
other processes.

How, without deadlocks: an attempt discovers its streams as it reads them (an invoice, then its
buyer's balance), so it cannot take all its locks up front. It takes them as it reads, under
one rule: it may *wait* for a stream's lock only if the stream sorts after every stream it
already holds. A stream that sorts before one it holds is taken only if nobody holds or awaits
it; otherwise the attempt stops (``OutOfOrder``), releases everything and starts again holding
the streams it now knows it needs, taken in sorted order before it reads anything. Every wait
is then for a key larger than all the waiter holds, so no cycle of waits can form. A command may
also name the streams it will read (``Application.run(..., streams=...)``), so that it takes
them in order from the first try.

Locks exist only while held or awaited: the last release drops the entry, so the table never
holds more entries than commands in flight times the streams each reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class OutOfOrder(Exception):
    """An attempt needs ``stream_id``, which sorts before a stream it holds and is busy: it must
    start again with its locks taken in order."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.stream_id = stream_id


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holders and waiters: the entry is dropped when this falls to 0


class StreamLocks:
    """One lock per stream id, created on first use and dropped when nobody needs it."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def acquire(self, stream_id: str) -> None:
        """Wait for the stream's lock (first come, first served)."""
        entry = self._entries.get(stream_id)
        if entry is None:
            entry = self._entries[stream_id] = _Entry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:  # cancelled while waiting: it is not held
            self._leave(stream_id, entry)
            raise

    async def try_acquire(self, stream_id: str) -> bool:
        """Take the stream's lock if nobody holds or awaits it; never waits (a new lock is
        taken without suspending, so nobody can come between the check and the take)."""
        if stream_id in self._entries:
            return False
        await self.acquire(stream_id)
        return True

    def release(self, stream_id: str) -> None:
        entry = self._entries[stream_id]
        entry.lock.release()
        self._leave(stream_id, entry)

    def _leave(self, stream_id: str, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._entries[stream_id]


class Held:
    """The locks one attempt holds, taken by the rule above; released all at once."""

    __slots__ = ("_held", "_locks", "_top")

    def __init__(self, locks: StreamLocks) -> None:
        self._locks = locks
        self._held: list[str] = []
        self._top = ""  # the largest stream id held

    @property
    def streams(self) -> list[str]:
        return list(self._held)

    async def take(self, stream_id: str) -> None:
        """Hold ``stream_id``'s lock: wait for it if it sorts after every lock held, else take
        it only if free (``OutOfOrder`` if not)."""
        if stream_id in self._held:
            return
        if not self._held or stream_id > self._top:
            await self._locks.acquire(stream_id)
            self._top = stream_id
        elif not await self._locks.try_acquire(stream_id):
            raise OutOfOrder(stream_id)
        self._held.append(stream_id)

    async def take_all(self, stream_ids: Iterable[str]) -> None:
        """Hold several (streams read in one go, or known before the first read) in sorted
        order, by ``take``'s rule."""
        for stream_id in sorted(set(stream_ids)):
            await self.take(stream_id)

    def release(self) -> None:
        for stream_id in reversed(self._held):
            self._locks.release(stream_id)
        self._held.clear()
        self._top = ""
