"""Wake-up hints from other processes: LISTEN on a dedicated connection.

An append's ``pg_notify`` is delivered when it commits; the listener then wakes this store's
subscriptions at once instead of at their next poll. It is only a hint: a notice can be lost
with its connection, so subscriptions still poll every ``poll_interval``, and after every
(re)connection the listener wakes them to read again whatever they may have missed meanwhile.
The connection holds no transaction and runs no query of its own: it only waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg

from eventstore.errors import EventStoreError
from eventstore.postgresql.schema import NOTIFY_CHANNEL


class Listener:
    """Keeps one listening connection, reconnecting after ``retry`` seconds when it is lost."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        wake: Callable[[int], None],
        retry: float,
    ) -> None:
        self._connect = connect
        self._wake = wake
        self._retry = retry
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="eventstore-listener")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            # Any failure to connect or to listen is retried: the listener is only a hint. A
            # session the server ended can leave asyncpg's protocol mid-operation, and the next
            # query on it raise InternalClientError ("another operation is in progress"): that
            # too is a lost connection, not an end of the listener (nor an error at close).
            with contextlib.suppress(
                OSError,
                EventStoreError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ):
                await self._listen()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._retry)

    async def _listen(self) -> None:
        conn = await self._connect()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
            self._wake(0)  # read again: commits made while nobody listened sent no notice
            stop = asyncio.ensure_future(self._stop.wait())
            gone = asyncio.ensure_future(lost.wait())
            await asyncio.wait([stop, gone], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            gone.cancel()
        finally:
            if not conn.is_closed():
                await conn.close()

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        self._wake(int(str(payload)) if str(payload).isdigit() else 0)
