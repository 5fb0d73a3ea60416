"""Replaying the log into views: page by page on one connection, or in a worker process.

``replay`` reads the log in pages of the events the projectors select (``Projector.reads``) and
hands each page to every projector's replayer (``Projector.replayer``) or its ``apply``.
``ScratchReplay`` is a worker process's job in a parallel rebuild (``eventstore.sqlite.rebuild``):
replay one projector into a scratch database of its own, set up with the projector's ``setup``,
with the indexes it made with ``CREATE INDEX`` built after the replay.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from eventstore.errors import RebuildWorkerError
from eventstore.projections import EventSelection
from eventstore.records import decode_rows
from eventstore.sqlite.projection import (
    SQLiteProjector,
    SQLiteReplayer,
    selection_sql,
    view_tables,
)
from eventstore.sqlite.schema import EVENT_COLUMNS

Progress = Callable[[int, int], None]

# SQLite's page cache for a rebuild's connections (its default is 2 MiB). A view's indexes take
# their entries in no particular order, and once an index outgrows the cache nearly every insert
# reads a page back in: measured on a 1,000,000-event log, 16 MiB replays the ledger in two
# thirds of the time 2 MiB took. A fixed size, so memory still does not grow with the log.
REBUILD_CACHE_KIB = 16 * 1024


def replay(
    source: sqlite3.Connection,
    target: sqlite3.Connection,
    projectors: Sequence[SQLiteProjector],
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
    conn: sqlite3.Connection, projectors: Sequence[SQLiteProjector]
) -> Iterator[None]:
    """Drop the indexes of the tables ``projectors`` name (``Projector.tables``) and create
    them again once the block has replayed into those tables, in ``conn``'s transaction (not if
    it raises): a worker's scratch database, whose tables ``setup`` made with their indexes,
    gets them as ``TableReplacement`` gives them to the tables replayed here. Only indexes made
    by ``CREATE INDEX``: those of a ``UNIQUE`` or ``PRIMARY KEY`` constraint stay."""
    tables = view_tables(projectors)
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


def _replayer(projector: SQLiteProjector) -> SQLiteReplayer:
    """What replays ``projector``'s view: a new one of its own, or the projector itself."""
    make: Callable[[], SQLiteReplayer] | None = getattr(projector, "replayer", None)
    return projector if make is None else make()


def _selection(projectors: Sequence[SQLiteProjector]) -> tuple[str, list[object]]:
    """The SQL condition for the events any of ``projectors`` reads: all when one of them
    does not say."""
    union = EventSelection()
    for projector in projectors:
        selection: EventSelection | None = getattr(projector, "reads", None)
        if selection is None:
            return "", []
        union = union.union(selection)
    where, parameters = selection_sql(union)
    return f" AND {where}", parameters


@dataclass(frozen=True, slots=True)
class ScratchReplay:
    """A worker's job: replay the log of ``database`` up to ``up_to`` into a new database at
    ``scratch`` that holds only ``projector``'s view."""

    database: Path
    scratch: Path
    projector: SQLiteProjector
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
    " import eventstore.sqlite.replay as replay; replay.run_worker(job)"
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


def can_hand_over(projector: SQLiteProjector) -> bool:
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
