"""Rebuilding the inline views: empty them and replay the whole log into them.

A rebuild is one transaction, so readers see the old views until the new ones are complete. It
reads the log in pages of ``page_size`` events and only the events some projector reads
(``Projector.reads``); the others are never decoded. Each page goes to the projector's own
replayer if it makes one (``Projector.replayer``), else to its ``apply``. The indexes a view made
with ``CREATE INDEX`` on the tables it names are dropped for its replay and built after it.

A view that names its tables (``Projector.tables``) is not emptied but rebuilt in new tables
of the same names, made from its stored schema, while the old tables, renamed away, are dropped
only at the end (``TableReplacement``); other views are emptied with their ``reset``.

On a long log (``parallel_from`` events or more) the projectors after the first that name their
tables (``Projector.tables``) and can be pickled are replayed by worker processes, one each,
while this process replays the rest (``eventstore.sqlite.replay``): each worker sets up a
scratch database with the projector's own ``setup``, replays the log into it with the
projector's own ``apply``, and the tables are then copied in with ``INSERT INTO main.t SELECT *
FROM scratch.t``, which SQLite performs as a transfer of whole records into the new, empty
table. The rebuild holds the write lock from before the workers start until it commits, so every
worker reads the very log this process replays: no other writer can commit in between, and each
worker reads positions up to the head this transaction read.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eventstore.sqlite.projection import SQLiteProjector, view_tables
from eventstore.sqlite.replay import (
    REBUILD_CACHE_KIB,
    Progress,
    ScratchReplay,
    can_hand_over,
    replay,
    start_worker,
    wait_for,
)
from eventstore.sqlite.transaction import Head, Row


@dataclass(slots=True)
class RebuildOperation:
    """Replay the whole log into every view, emptied or replaced, in one transaction."""

    projectors: Sequence[SQLiteProjector]
    page_size: int
    progress: Progress | None
    database: Path | None = None  # the store's file; without it, no workers
    workers: int = 0  # at most this many worker processes
    parallel_from: int = 50_000  # the log's length from which workers pay for their start
    batchable = False
    _scratch: Path | None = field(default=None, init=False)
    _settings: dict[str, int] = field(default_factory=dict, init=False)  # pragma: value before

    def apply(self, conn: sqlite3.Connection, head: Head) -> int:
        """Replay; return the number of events in the log replayed (its head position)."""
        self._set(conn, "cache_size", -REBUILD_CACHE_KIB)
        # The commit leaves the WAL's pages (every view, hundreds of MiB on a long log) for
        # the store to checkpoint from a connection of its own: done in the commit, on this
        # connection, it would hold up every append queued behind the rebuild.
        self._set(conn, "wal_autocheckpoint", 0)
        # SQLite built with SECURE_DELETE (Debian's is) overwrites with zeros every page that
        # dropping or emptying the old views frees (at 1M events, 420 MiB of zeros to the WAL).
        # Every row of a view is in the log anyway.
        self._set(conn, "secure_delete", 0)
        # Renaming a view's table away must not take other tables' foreign keys, triggers or
        # SQL views with it: the old table is dropped at the end.
        self._set(conn, "legacy_alter_table", 1)
        offloaded = self._offloaded(head.position)
        local = [projector for projector in self.projectors if projector not in offloaded]
        for projector in self.projectors:
            if not getattr(projector, "tables", None):
                projector.reset(conn)
        here = [TableReplacement.begin(conn, table, here=True) for table in view_tables(local)]
        there = {
            table: TableReplacement.begin(conn, table, here=False)
            for table in view_tables(offloaded)
        }
        if not offloaded:
            self._replay_here(conn, head, local, here)
            _drop_replaced(conn, here)
            return head.position
        assert self.database is not None  # _offloaded is empty without one
        self._scratch = Path(
            tempfile.mkdtemp(prefix=f".{self.database.name}.rebuild-", dir=self.database.parent)
        )
        workers = []
        try:
            for number, projector in enumerate(offloaded):
                target = self._scratch / f"view-{number}.db"
                job = ScratchReplay(self.database, target, projector, head.position, self.page_size)
                workers.append((job, start_worker(job)))
            self._replay_here(conn, head, local, here)
            for number, (job, worker) in enumerate(workers):
                wait_for(worker)  # a worker's failure is raised here and rolls the rebuild back
                scratch = f"rebuild_{number}"
                conn.execute(f"ATTACH DATABASE ? AS {scratch}", (str(job.scratch),))
                for table in view_tables([job.projector]):
                    there[table].copy_from(conn, scratch)
                    there[table].finish(conn)
            _drop_replaced(conn, [*here, *there.values()])
        finally:
            for _, worker in workers:
                if worker.returncode is None:  # this process failed first: not needed any more
                    worker.kill()
                    worker.communicate()
        return head.position

    def _replay_here(
        self,
        conn: sqlite3.Connection,
        head: Head,
        local: Sequence[SQLiteProjector],
        replaced: Sequence[TableReplacement],
    ) -> None:
        """Replay ``local`` on this connection, then give their new tables their indexes."""
        replay(conn, conn, local, head.position, self.page_size, self.progress)
        for replacement in replaced:
            replacement.finish(conn)

    def _set(self, conn: sqlite3.Connection, name: str, value: int) -> None:
        """Set the connection's ``PRAGMA name`` for the rebuild; ``release`` sets it back."""
        (self._settings[name],) = conn.execute(f"PRAGMA {name}").fetchone()
        conn.execute(f"PRAGMA {name} = {value}")

    def _offloaded(self, events: int) -> list[SQLiteProjector]:
        if self.database is None or events < self.parallel_from:
            return []
        candidates = [p for p in self.projectors[1:] if getattr(p, "tables", None)]
        return [p for p in candidates if can_hand_over(p)][: self.workers]

    def release(self, conn: sqlite3.Connection) -> None:
        """Once the transaction has ended: give the connection back every setting ``_set``
        changed, detach the scratch databases (SQLite refuses that inside a transaction) and
        delete them."""
        for name, value in self._settings.items():
            conn.execute(f"PRAGMA {name} = {value}")
        self._settings.clear()
        if self._scratch is None:
            return
        for _, name, _ in conn.execute("PRAGMA database_list").fetchall():
            if name.startswith("rebuild_"):
                conn.execute(f"DETACH DATABASE {name}")
        shutil.rmtree(self._scratch, ignore_errors=True)
        self._scratch = None

    def recover(self, conn: sqlite3.Connection, error: Exception) -> int:
        raise error

    def prepare(self, conn: sqlite3.Connection, head: Head) -> list[Row]:
        raise NotImplementedError("a rebuild runs alone")

    def complete(self, conn: sqlite3.Connection, head: Head, rows: list[Row]) -> int:
        raise NotImplementedError("a rebuild runs alone")


@dataclass(frozen=True, slots=True)
class TableReplacement:
    """A view's table rebuilt as a new table of its name, made from its stored schema, while
    the old one, renamed away, is dropped only at the end of the rebuild.

    Emptying the old table instead would free its pages in the rebuild's transaction, and
    SQLite reads back every page it takes from the freelist that its own transaction freed:
    on a 1,000,000-event log with its views filled, that made the copy of the worker's ledger
    2.4-2.7 s instead of 1.2-1.6 s. The old table's indexes and triggers are dropped at once
    (their names are the new table's to take). A table replayed ``here`` gets its triggers at
    once (the replay fires them, as appends do) and its ``CREATE INDEX`` indexes in ``finish``,
    built from the full table by one sort rather than taking its rows one at a time in no
    particular order (the indexes of ``UNIQUE`` and ``PRIMARY KEY`` constraints come with the
    table and check each row as it comes). A table a worker replays gets its indexes at once,
    so that the copy transfers their records too, and its triggers in ``finish``, after the
    copy: no trigger may see it, and SQLite transfers whole records only into a table without
    one."""

    table: str
    old: str
    later: tuple[str, ...]  # the indexes (here) or the triggers (a worker's) that ``finish`` makes

    @classmethod
    def begin(cls, conn: sqlite3.Connection, table: str, here: bool) -> TableReplacement:
        schema = conn.execute(
            "SELECT type, name, sql FROM main.sqlite_schema WHERE tbl_name = ? AND sql IS NOT NULL"
            " ORDER BY type = 'table' DESC, rowid",
            (table,),
        ).fetchall()
        for kind, item, _ in schema:
            if kind in ("index", "trigger"):
                conn.execute(f'DROP {kind.upper()} main."{item}"')
        old = f"{table}__replaced"
        conn.execute(f'ALTER TABLE main."{table}" RENAME TO "{old}"')
        deferred = "index" if here else "trigger"
        for kind, _, sql in schema:  # the table first
            if kind != deferred:
                conn.execute(sql)
        return cls(table, old, tuple(sql for kind, _, sql in schema if kind == deferred))

    def copy_from(self, conn: sqlite3.Connection, scratch: str) -> None:
        """Copy in the rows of the attached database ``scratch``'s table of this name (a
        transfer of whole records into the empty table)."""
        conn.execute(f'INSERT INTO main."{self.table}" SELECT * FROM {scratch}."{self.table}"')

    def finish(self, conn: sqlite3.Connection) -> None:
        """Once the new table has its rows: make what ``begin`` left for later."""
        for sql in self.later:
            conn.execute(sql)


def _drop_replaced(conn: sqlite3.Connection, replaced: Sequence[TableReplacement]) -> None:
    for replacement in replaced:
        conn.execute(f'DROP TABLE main."{replacement.old}"')
