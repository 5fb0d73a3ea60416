"""The PostgreSQL event store: ``eventstore.EventStore`` on one PostgreSQL database, for several
processes and nodes at once.

The appends, the reads passed straight to ``LogReads`` and the subscription loop are
``eventstore.logstore.LogStore``'s, shared with the SQLite store. Writes go through one
:class:`GroupCommitWriter` per store (its own connection); reads use a
pool of their own (``pool``, which a read model kept in the same database may use too); a
:class:`Listener` on one more connection turns other processes' commits into wake-ups.
Everything a caller passes is validated and serialised before it is queued, so a bad event fails
alone and early, and nothing is written. Every connection of the store ends a transaction left
idle for ``idle_timeout`` seconds (PostgreSQL's ``idle_in_transaction_session_timeout``), so a
stuck client cannot hold the log's lock or its snapshot for ever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg

from eventstore.errors import EventStoreError, StoreClosedError
from eventstore.interface import Progress
from eventstore.logstore import LogStore, utc_now
from eventstore.model import Checkpoint, RecordedEvent, VerifyReport
from eventstore.postgresql.appending import AppendOperation
from eventstore.postgresql.importing import ImportOperation
from eventstore.postgresql.listener import Listener
from eventstore.postgresql.projection import PostgreSQLProjector
from eventstore.postgresql.reads import LogReads
from eventstore.postgresql.rebuild import RebuildOperation
from eventstore.postgresql.schema import EVENTSTORE_MIGRATIONS, apply_migrations
from eventstore.postgresql.verification import verify_log
from eventstore.postgresql.writer import GroupCommitWriter
from eventstore.records import EncodedStream


async def _reset_reader(conn: asyncpg.Connection) -> None:
    """What a reader connection needs on its way back to the pool: only a transaction left
    open rolled back. asyncpg's default reset (advisory unlocks, ``CLOSE ALL``, ``UNLISTEN *``,
    ``RESET ALL``) costs one more round trip after every read, for state these connections
    never take: the store's advisory locks, LISTEN and settings live on connections of their
    own (the writer, the listener), never on the pool's."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgreSQLEventStore(LogStore):
    """An append-only log of events in one PostgreSQL database. Open with :meth:`open`."""

    _writer: GroupCommitWriter

    def __init__(
        self,
        url: str,
        *,
        projectors: Sequence[PostgreSQLProjector],
        clock: Callable[[], datetime],
        max_batch: int,
        page_size: int,
        poll_interval: float,
        readers: int,
        idle_timeout: float,
        on_batch: Callable[[int], None] | None,
    ) -> None:
        super().__init__(poll_interval)
        self.url = url
        self._projectors = tuple(projectors)
        self._page_size = page_size
        self._readers = readers
        self._settings = {
            "idle_in_transaction_session_timeout": str(int(idle_timeout * 1000)),
            "application_name": "eventstore",
        }
        self._pool: asyncpg.Pool | None = None
        self._reads: LogReads | None = None
        self._writer = GroupCommitWriter(
            self._connect,
            clock=clock,
            max_batch=max_batch,
            projectors=self._projectors,
            on_commit=self._note_commit,
            on_batch=on_batch,
        )
        self._listener = Listener(self._connect, self._note_commit, poll_interval)

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        projectors: Sequence[PostgreSQLProjector] = (),
        readers: int = 4,
        max_batch: int = 512,
        page_size: int = 250,
        poll_interval: float = 0.5,
        idle_timeout: float = 60.0,
        clock: Callable[[], datetime] = utc_now,
        on_batch: Callable[[int], None] | None = None,
    ) -> PostgreSQLEventStore:
        """Open the store in the database at ``url`` (``postgresql://user@host:port/db``) and
        bring its schema up to date; the database itself must exist.

        ``readers`` is the size of the reader pool; ``max_batch`` the most appends one
        transaction takes; ``page_size`` how many events a read or a rebuild takes at a time;
        ``poll_interval`` how often subscriptions look for other processes' commits when no
        notice woke them; ``idle_timeout`` the seconds after which PostgreSQL ends a transaction
        of one of the store's connections left idle; ``on_batch`` is told the number of appends
        of each committed group commit (for a metric).
        """
        if readers < 1 or max_batch < 1 or page_size < 1:
            raise ValueError("readers, max_batch and page_size must be at least 1")
        if poll_interval <= 0 or idle_timeout <= 0:
            raise ValueError("poll_interval and idle_timeout must be positive")
        store = cls(
            url,
            projectors=projectors,
            clock=clock,
            max_batch=max_batch,
            page_size=page_size,
            poll_interval=poll_interval,
            readers=readers,
            idle_timeout=idle_timeout,
            on_batch=on_batch,
        )
        await store._open()
        return store

    async def _open(self) -> None:
        self._head_position = await self._writer.start(self._prepare)
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._readers,
                server_settings=self._settings,
                reset=_reset_reader,
            )
        except BaseException:
            await self.close()
            raise
        self._reads = LogReads(self._pool, self._page_size)
        self._listener.start()

    async def _connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(self.url, server_settings=self._settings)
        except (OSError, asyncpg.PostgresError) as error:
            raise EventStoreError(f"cannot open event store at {self.url!r}: {error}") from error

    async def _prepare(self, conn: asyncpg.Connection) -> int:
        """Migrate, set the views up; return the head position."""
        await apply_migrations(conn, "eventstore", EVENTSTORE_MIGRATIONS)
        for projector in self._projectors:
            await projector.setup(conn)
        return int(await conn.fetchval("SELECT COALESCE(MAX(position), 0) FROM events"))

    @property
    def pool(self) -> asyncpg.Pool:
        """The reader pool: for a read model's queries on views kept in the same database."""
        if self._pool is None or self._closed:
            raise StoreClosedError("the event store is closed")
        return self._pool

    async def close(self) -> None:
        """Finish queued appends, end subscriptions, and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._committed.set()  # wake subscriptions so they see the store is closed
        await self._writer.close()
        await self._listener.close()
        if self._reads is not None:
            self._reads.close()
        if self._pool is not None:
            await self._pool.close()

    # -- writing -----------------------------------------------------------------------------

    def _append_operation(
        self, streams: list[EncodedStream], checkpoint: Checkpoint | None
    ) -> AppendOperation:
        return AppendOperation(streams, checkpoint)

    async def import_events(self, events: Sequence[RecordedEvent]) -> int:
        """Store events of another log unchanged, if they continue this one (under the lock)."""
        if not events:
            return await self.head_position()
        head: int = await self._submit(ImportOperation(tuple(events)))
        self._note_commit(head)
        return head

    async def rebuild_projections(self, progress: Progress | None = None) -> int:
        """Empty every inline view and replay the whole log into it, in one transaction under
        the log's lock; return the events replayed."""
        operation = RebuildOperation(self._projectors, self._page_size, progress)
        replayed: int = await self._submit(operation)
        return replayed

    async def checkpointed(self) -> None:
        """Nothing to wait for: a rebuild's rows are in place once it commits."""

    # -- reading -----------------------------------------------------------------------------

    def _log(self) -> LogReads:
        if self._reads is None or self._closed:
            raise StoreClosedError("the event store is closed")
        return self._reads

    async def stream_tail(
        self, stream_id: str, after_version: int, limit: int = 100
    ) -> list[RecordedEvent]:
        """At most ``limit`` events of one stream after ``after_version``: one index range."""
        return await self._log().stream_tail(stream_id, after_version, limit)

    async def last_events(self, stream_ids: Sequence[str]) -> dict[str, RecordedEvent]:
        """The last event of each stream in ``stream_ids`` that exists, in one query per
        ``LAST_EVENTS_CHUNK`` streams."""
        return await self._log().last_events(stream_ids)

    async def head_position(self) -> int:
        """The position of the last committed event; 0 for an empty log."""
        return await self._log().head_position()

    async def verify(self) -> VerifyReport:
        """Walk the hash chain from the first event on one snapshot; report the first position
        that fails, or a missing guard."""
        async with self.pool.acquire() as conn:
            return await verify_log(conn, self._page_size)
