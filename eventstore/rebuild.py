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
while this process replays the rest: each worker sets up a scratch database with the
projector's own ``setup``, replays the log into it with the projector's own ``apply``, and the
tables are then copied in with ``INSERT INTO main.t SELECT * FROM scratch.t``, which SQLite
performs as a transfer of whole records into the new, empty table. The rebuild holds the write
lock from before the workers start until it commits, so every worker reads the very log this
process replays: no other writer can commit in between, and each worker reads positions up to
the head this transaction read.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from eventstore.errors import RebuildWorkerError
from eventstore.projections import EventSelection, Projector, Replayer
from eventstore.records import EVENT_COLUMNS, decode_rows
from eventstore.transaction import Head, Row

Progress = Callable[[int, int], None]

# SQLite's page cache for a rebuild's connections (its default is 2 MiB). A view's indexes take
# their entries in no particular order, and once an index outgrows the cache nearly every insert
# reads a page back in: measured on a 1,000,000-event log, 16 MiB replays the ledger in two
# thirds of the time 2 MiB took. A fixed size, so memory still does not grow with the log.
REBUILD_CACHE_KIB = 16 * 1024


@dataclass(slots=True)
class RebuildOperation:
    """Replay the whole log into every view, emptied or replaced, in one transaction."""

    projectors: Sequence[Projector]
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
        here = [TableReplacement.begin(conn, table, here=True) for table in _tables(local)]
        there = {
            table: TableReplacement.begin(conn, table, here=False) for table in _tables(offloaded)
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
                for table in _tables([job.projector]):
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
        local: Sequence[Projector],
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

    def _offloaded(self, events: int) -> list[Projector]:
        if self.database is None or events < self.parallel_from:
            return []
        candidates = [p for p in self.projectors[1:] if getattr(p, "tables", None)]
        return [p for p in candidates if _can_hand_over(p)][: self.workers]

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


def replay(
    source: sqlite3.Connection,
    target: sqlite3.Connection,
    projectors: Sequence[Projector],
    up_to: int,
    page_size: int,
    progress: Progress | None,
) -> None:
    """Read the events ``projectors`` read from ``source`` up to position ``up_to``, in pages,
    and apply each page to every projector on ``target``."""
    if not projectors:  # nothing to replay into: no need to read the log
        if progress is not None:
            progress(up_to, up_to)
        return
    where, parameters = _selection(projectors)
    query = (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? AND position <= ?{where}"
        " ORDER BY position LIMIT ?"
    )
    replayers = [_replayer(projector) for projector in projectors]
    position = 0
    while position < up_to:
        rows = source.execute(query, (position, up_to, *parameters, page_size)).fetchall()
        if not rows:
            break
        events = decode_rows(rows)
        for replayer in replayers:
            replayer.apply(target, events)
        position = events[-1].position
        if progress is not None:
            progress(position, up_to)
    for replayer in replayers:
        finish = getattr(replayer, "finish", None)
        if finish is not None:
            finish(target)
    if progress is not None and position < up_to:
        progress(up_to, up_to)  # the log ends with events no projector reads


@contextmanager
def indexes_built_after(
    conn: sqlite3.Connection, projectors: Sequence[Projector]
) -> Iterator[None]:
    """Drop the indexes of the tables ``projectors`` name (``Projector.tables``) and create
    them again once the block has replayed into those tables, in ``conn``'s transaction (not if
    it raises): a worker's scratch database, whose tables ``setup`` made with their indexes,
    gets them as ``TableReplacement`` gives them to the tables replayed here. Only indexes made
    by ``CREATE INDEX``: those of a ``UNIQUE`` or ``PRIMARY KEY`` constraint stay."""
    tables = _tables(projectors)
    marks = ", ".join("?" * len(tables))
    indexes = (
        conn.execute(
            "SELECT name, sql FROM main.sqlite_schema"
            f" WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({marks}) ORDER BY name",
            tables,
        ).fetchall()
        if tables
        else []
    )
    for name, _ in indexes:
        conn.execute(f'DROP INDEX main."{name}"')
    yield
    for _, sql in indexes:
        conn.execute(sql)


def _replayer(projector: Projector) -> Replayer:
    """What replays ``projector``'s view: a new one of its own, or the projector itself."""
    make: Callable[[], Replayer] | None = getattr(projector, "replayer", None)
    return projector if make is None else make()


def _selection(projectors: Sequence[Projector]) -> tuple[str, list[object]]:
    """The SQL condition for the events any of ``projectors`` reads: all when one of them
    does not say."""
    union = EventSelection()
    for projector in projectors:
        selection: EventSelection | None = getattr(projector, "reads", None)
        if selection is None:
            return "", []
        union = union.union(selection)
    where, parameters = union.where()
    return f" AND {where}", parameters


@dataclass(frozen=True, slots=True)
class ScratchReplay:
    """A worker's job: replay the log of ``database`` up to ``up_to`` into a new database at
    ``scratch`` that holds only ``projector``'s view."""

    database: Path
    scratch: Path
    projector: Projector
    up_to: int
    page_size: int

    def run(self) -> None:
        source = sqlite3.connect(self.database, isolation_level=None)
        target = sqlite3.connect(self.scratch, isolation_level=None)
        try:
            source.execute("PRAGMA query_only = ON")
            # A scratch file: if this process dies, the rebuild fails and the file is deleted.
            target.execute("PRAGMA journal_mode = OFF")
            target.execute("PRAGMA synchronous = OFF")
            target.execute(f"PRAGMA cache_size = -{REBUILD_CACHE_KIB}")
            self.projector.setup(target)
            source.execute("BEGIN")  # one snapshot for every page
            target.execute("BEGIN")
            with indexes_built_after(target, [self.projector]):
                replay(source, target, [self.projector], self.up_to, self.page_size, None)
            target.execute("COMMIT")
            source.execute("COMMIT")
        finally:
            source.close()
            target.close()


# The job file's first line is this process's import path, so that the worker finds the modules
# (the projector's class) exactly where this process found them; then comes the pickled job.
_WORKER = (
    "import json, sys; job = open(sys.argv[1], 'rb'); sys.path[:] = json.loads(job.readline());"
    " import eventstore.rebuild as rebuild; rebuild.run_worker(job)"
)


def start_worker(job: ScratchReplay) -> subprocess.Popen[bytes]:
    """Run ``job`` in a new interpreter, handed over in a file beside its scratch database. A
    new interpreter rather than ``multiprocessing``, which would import the caller's main script
    again in the worker: a script without a main guard would not survive it. Isolated mode
    (``-I``): the worker's path is this process's, not one taken from the environment."""
    handover = job.scratch.with_suffix(".job")
    handover.write_bytes(json.dumps(sys.path).encode() + b"\n" + pickle.dumps(job))
    return subprocess.Popen(
        [sys.executable, "-I", "-c", _WORKER, str(handover)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_worker(handover: BinaryIO) -> None:
    job = pickle.load(handover)
    job.run()


def _can_hand_over(projector: Projector) -> bool:
    """Whether a worker can rebuild ``projector``: it pickles, and its class is importable there
    (a class of the caller's main script is not; such a projector is replayed here)."""
    if type(projector).__module__ == "__main__":
        return False
    try:
        pickle.dumps(projector)
    except Exception:
        return False
    return True


def wait_for(worker: subprocess.Popen[bytes]) -> None:
    """Wait for ``worker`` to end; ``RebuildWorkerError`` with its last line of error output
    (the exception) if it failed."""
    _, output = worker.communicate()
    if worker.returncode != 0:
        errors = output.decode(errors="replace").strip().splitlines()
        last = errors[-1] if errors else f"exit status {worker.returncode}"
        raise RebuildWorkerError(f"a rebuild worker failed: {last}")


def _tables(projectors: Sequence[Projector]) -> list[str]:
    """The tables ``projectors`` name (``Projector.tables``), in order, each once."""
    names = (table for projector in projectors for table in getattr(projector, "tables", ()))
    return list(dict.fromkeys(names))


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
