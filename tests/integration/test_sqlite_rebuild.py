"""The SQLite store's rebuild: views replaced table by table, their indexes built after the
replay, later projectors replayed in worker processes, and the pages checkpointed into the file
in the background. These tests read the file behind the store's back."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from eventstore import NO_STREAM, NewEvent, RebuildWorkerError, RecordedEvent
from tests.contract.backends import WANTED, append_mixed
from tests.contract.backends.sqlite import SQLiteBackend, SQLiteOffered


class Wanted:
    """The events ``WANTED`` selects, with the process that applied each. Fails every apply
    while the file ``poison`` exists, which a test creates after the live appends."""

    name = "wanted"
    reads = WANTED
    tables = ("wanted",)

    def __init__(self, poison: Path | None = None) -> None:
        self.poison = poison

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS wanted"
            " (position INTEGER PRIMARY KEY, type TEXT NOT NULL, pid INTEGER NOT NULL)"
        )

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM wanted")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        if self.poison is not None and self.poison.exists():
            raise RuntimeError("poisoned view")
        conn.executemany(
            "INSERT INTO wanted VALUES (?, ?, ?)",
            [
                (event.position, event.type, os.getpid())
                for event in events
                if event.type in WANTED.types or event.stream_id.startswith("keep-")
            ],
        )


def rows(backend: SQLiteBackend, query: str) -> list[tuple[object, ...]]:
    conn = backend.raw()
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("workers", "parallel_from", "in_worker"), [(1, 1, True), (0, 1, False), (1, 13, False)]
)
async def test_later_projectors_of_a_long_log_are_rebuilt_in_a_worker_process(
    backend: SQLiteBackend, workers: int, parallel_from: int, in_worker: bool
) -> None:
    """With a worker allowed and a log at least ``parallel_from`` long, the second projector is
    replayed in another process and its table copied in; otherwise here. The views are the
    same either way."""
    options = {"rebuild_workers": workers, "rebuild_parallel_from": parallel_from}
    wanted = await append_mixed(backend, projectors=[SQLiteOffered(), Wanted()])
    live = rows(backend, "SELECT position, type FROM wanted ORDER BY position")

    async with await backend.open(projectors=[SQLiteOffered(), Wanted()], **options) as store:
        await store.rebuild_projections()

    rebuilt = rows(backend, "SELECT position, type, pid FROM wanted ORDER BY position")
    assert [(position, kind) for position, kind, _ in rebuilt] == live
    assert [position for position, _, _ in rebuilt] == wanted
    assert {pid != os.getpid() for _, _, pid in rebuilt} == {in_worker}
    assert not list(backend.path.parent.glob(f".{backend.path.name}.rebuild-*"))


async def test_a_failing_worker_rolls_the_whole_rebuild_back(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    """The worker's error reaches the caller; no view changed, no scratch file is left, and
    the store goes on working."""
    poison = tmp_path / "poison"
    projectors = [SQLiteOffered(), Wanted(poison)]
    options = {"rebuild_workers": 1, "rebuild_parallel_from": 1}
    await append_mixed(backend, projectors=projectors)
    before = rows(backend, "SELECT * FROM wanted"), rows(backend, "SELECT * FROM offered")
    poison.touch()

    async with await backend.open(projectors=projectors, **options) as store:
        with pytest.raises(RebuildWorkerError, match="poisoned view"):
            await store.rebuild_projections()
        assert (
            rows(backend, "SELECT * FROM wanted"),
            rows(backend, "SELECT * FROM offered"),
        ) == before
        assert not list(backend.path.parent.glob(f".{backend.path.name}.rebuild-*"))

        poison.unlink()
        await store.append("keep-late", [NewEvent("Other", {})], NO_STREAM)
        assert await store.rebuild_projections() == 13
    assert len(rows(backend, "SELECT * FROM wanted")) == 6


class Unpicklable(Wanted):
    """``Wanted`` holding something no worker can be handed (a lock, as the totals view holds)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


async def test_a_projector_no_worker_can_take_is_rebuilt_here(backend: SQLiteBackend) -> None:
    options = {"rebuild_workers": 1, "rebuild_parallel_from": 1}
    wanted = await append_mixed(backend, projectors=[SQLiteOffered(), Unpicklable()])

    async with await backend.open(projectors=[SQLiteOffered(), Unpicklable()], **options) as store:
        await store.rebuild_projections()

    rebuilt = rows(backend, "SELECT position, pid FROM wanted ORDER BY position")
    assert rebuilt == [(position, os.getpid()) for position in wanted]


class Counted:
    """Keeps the number of events in one row: live appends add each batch's count, while a
    rebuild counts with a replayer of its own and writes the total once, in ``finish``, and
    notes each finish in ``finishes``."""

    name = "counted"
    tables = ("counted", "finishes")

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS counted (events INTEGER NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS finishes (pid INTEGER NOT NULL)")
        if conn.execute("SELECT COUNT(*) FROM counted").fetchone() == (0,):
            conn.execute("INSERT INTO counted VALUES (0)")

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM counted")
        conn.execute("DELETE FROM finishes")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        conn.execute("UPDATE counted SET events = events + ?", (len(events),))

    def replayer(self) -> CountedReplay:
        return CountedReplay()


class CountedReplay:
    def __init__(self) -> None:
        self.events = 0

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        self.events += len(events)

    def finish(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM counted")  # a worker's scratch view starts with setup's row
        conn.execute("INSERT INTO counted VALUES (?)", (self.events,))
        conn.execute("INSERT INTO finishes VALUES (?)", (os.getpid(),))


@pytest.mark.parametrize("workers", [0, 1])
async def test_a_projector_with_a_replayer_is_rebuilt_by_a_new_one_each_time(
    backend: SQLiteBackend, workers: int
) -> None:
    """Live appends go through ``apply``; each rebuild through a new replayer, here or in a
    worker, whose ``finish`` runs once after the last page."""
    options = {"rebuild_workers": workers, "rebuild_parallel_from": 1, "page_size": 5}
    await append_mixed(backend, projectors=[SQLiteOffered(), Counted()])
    assert rows(backend, "SELECT * FROM counted") == [(12,)]
    assert rows(backend, "SELECT * FROM finishes") == []

    async with await backend.open(projectors=[SQLiteOffered(), Counted()], **options) as store:
        await store.rebuild_projections()
        assert rows(backend, "SELECT * FROM counted") == [(12,)]
        await store.append("keep-late", [NewEvent("Other", {})], NO_STREAM)
        assert rows(backend, "SELECT * FROM counted") == [(13,)]
        await store.rebuild_projections()

    assert rows(backend, "SELECT * FROM counted") == [(13,)]  # not 12 + 13: a new replayer
    finishes = [pid for (pid,) in rows(backend, "SELECT pid FROM finishes")]
    assert len(finishes) == 1  # the second rebuild's: a rebuild empties the table first
    assert (finishes[0] != os.getpid()) == bool(workers)


def file_rows(backend: SQLiteBackend, query: str) -> list[tuple[object, ...]]:
    """Rows of the database file alone: ``immutable=1`` reads no WAL."""
    conn = sqlite3.connect(f"{backend.path.resolve().as_uri()}?immutable=1", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


async def test_a_rebuilds_pages_reach_the_database_file_in_the_background(
    backend: SQLiteBackend,
) -> None:
    """The rebuild returns once committed; its pages are checkpointed from the WAL into the
    file by a connection of the store's own while appends go on, and ``checkpointed`` waits."""
    wanted = await append_mixed(backend, projectors=[SQLiteOffered()])
    # Live appends offered every event; the file has them once the store closed.
    assert [p for (p,) in file_rows(backend, "SELECT position FROM offered")] == list(range(1, 13))

    async with await backend.open(projectors=[SQLiteOffered()]) as store:
        await store.rebuild_projections()
        await store.append("drop-late", [NewEvent("Other", {})], NO_STREAM)  # not held up
        await store.checkpointed()
        in_file = [p for (p,) in file_rows(backend, "SELECT position FROM offered")]
        assert in_file in (wanted, [*wanted, 13])  # the append's row, if it came before

        # A second rebuild's checkpoint runs after the first's, however soon it comes.
        await store.append("keep-late", [NewEvent("Other", {})], NO_STREAM)
        await store.rebuild_projections()
        await store.rebuild_projections()
        await store.checkpointed()
        in_file = [p for (p,) in file_rows(backend, "SELECT position FROM offered")]
        assert in_file == [*wanted, 14]  # 13 is not selected, 14 is

    assert [p for (p,) in file_rows(backend, "SELECT position FROM offered")] == [*wanted, 14]


class Indexed:
    """A view with an index of its own and one of a ``UNIQUE`` constraint; each row notes the
    indexes its table had when ``apply`` wrote it."""

    name = "indexed"
    tables = ("indexed",)

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS indexed (position INTEGER PRIMARY KEY,"
            " type TEXT NOT NULL, stream TEXT NOT NULL UNIQUE, indexes TEXT NOT NULL)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS indexed_by_type ON indexed (type, position)")

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM indexed")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        names = conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'indexed'"
            " ORDER BY name"
        ).fetchall()
        indexes = ",".join(name for (name,) in names)
        conn.executemany(
            "INSERT INTO indexed VALUES (?, ?, ?, ?)",
            [(event.position, event.type, event.stream_id, indexes) for event in events],
        )


@pytest.mark.parametrize("workers", [0, 1])
async def test_a_rebuild_creates_a_views_own_indexes_after_its_replay(
    backend: SQLiteBackend, workers: int
) -> None:
    """The view's ``CREATE INDEX`` indexes are dropped for the replay and created again after
    it, here or in a worker, the same as before; the index of a ``UNIQUE`` constraint stays."""
    options = {"rebuild_workers": workers, "rebuild_parallel_from": 1, "page_size": 5}
    await append_mixed(backend, projectors=[SQLiteOffered(), Indexed()])
    schema = "SELECT name, sql FROM sqlite_schema WHERE tbl_name = 'indexed' ORDER BY name"
    before = rows(backend, schema)
    assert {i for (i,) in rows(backend, "SELECT indexes FROM indexed")} == {
        "indexed_by_type,sqlite_autoindex_indexed_1"
    }

    async with await backend.open(projectors=[SQLiteOffered(), Indexed()], **options) as store:
        await store.rebuild_projections()

    replayed = rows(backend, "SELECT position, indexes FROM indexed ORDER BY position")
    assert replayed == [(position, "sqlite_autoindex_indexed_1") for position in range(1, 13)]
    assert rows(backend, schema) == before
    assert rows(backend, "PRAGMA integrity_check") == [("ok",)]  # each index matches its table
    plan = rows(backend, "EXPLAIN QUERY PLAN SELECT position FROM indexed WHERE type = 'Other'")
    assert "indexed_by_type" in str(plan)


class SecureDeleteSeen:
    """Turns ``secure_delete`` on for the writer's connection (``setup`` runs on it) and notes,
    for each event it is offered, the setting ``apply`` ran under."""

    name = "secure-delete-seen"

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("CREATE TABLE IF NOT EXISTS seen (position INTEGER, secure_delete INTEGER)")

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM seen")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        (setting,) = conn.execute("PRAGMA secure_delete").fetchone()
        conn.executemany("INSERT INTO seen VALUES (?, ?)", [(e.position, setting) for e in events])


async def test_a_rebuild_empties_its_views_without_overwriting_their_pages(
    backend: SQLiteBackend,
) -> None:
    """A rebuild turns ``secure_delete`` off for its transaction (the rows it deletes are all
    in the log) and gives the connection its own setting back for the appends after it."""
    async with await backend.open(projectors=[SecureDeleteSeen()]) as store:
        await store.append("a", [NewEvent("Other", {})], NO_STREAM)
        await store.rebuild_projections()
        await store.append("b", [NewEvent("Other", {})], NO_STREAM)

    assert rows(backend, "SELECT * FROM seen ORDER BY position") == [(1, 0), (2, 1)]


class FailingIndexed(Indexed):
    """``Indexed`` whose replay fails at the first page once ``fail`` is set."""

    fail = False

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        if self.fail:
            raise RuntimeError("failed replay")
        super().apply(conn, events)


async def test_a_failed_rebuild_leaves_a_views_indexes_as_they_were(
    backend: SQLiteBackend,
) -> None:
    """The indexes dropped for the replay come back with the rollback, and stay in use."""
    view = FailingIndexed()
    await append_mixed(backend, projectors=[view])
    schema = "SELECT name, sql FROM sqlite_schema WHERE tbl_name = 'indexed' ORDER BY name"
    before = rows(backend, schema), rows(backend, "SELECT * FROM indexed")
    view.fail = True

    async with await backend.open(projectors=[view], rebuild_workers=0) as store:
        with pytest.raises(RuntimeError, match="failed replay"):
            await store.rebuild_projections()
        assert (rows(backend, schema), rows(backend, "SELECT * FROM indexed")) == before
        view.fail = False
        await store.append("keep-late", [NewEvent("Other", {})], NO_STREAM)

    assert len(rows(backend, "SELECT * FROM indexed")) == 13
    assert rows(backend, "PRAGMA integrity_check") == [("ok",)]


class Guarded:
    """A view table with a trigger of its own (its rows are never updated) and an SQL view
    over it, both of which a rebuild must leave working on the rebuilt table."""

    name = "guarded"
    tables = ("guarded",)

    def setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS guarded (position INTEGER PRIMARY KEY, type TEXT NOT NULL)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS guarded_by_type ON guarded (type)")
        conn.execute(
            "CREATE TRIGGER IF NOT EXISTS guarded_never_updated BEFORE UPDATE ON guarded"
            " BEGIN SELECT RAISE(ABORT, 'guarded rows are never updated'); END"
        )
        conn.execute(
            "CREATE VIEW IF NOT EXISTS guarded_types AS SELECT type, COUNT(*) AS events"
            " FROM guarded GROUP BY type"
        )

    def reset(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM guarded")

    def apply(self, conn: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
        conn.executemany(
            "INSERT INTO guarded VALUES (?, ?)", [(e.position, e.type) for e in events]
        )


@pytest.mark.parametrize("workers", [0, 1])
async def test_a_rebuild_over_filled_views_leaves_their_schema_as_it_was(
    backend: SQLiteBackend, workers: int
) -> None:
    """A view's tables are rebuilt as new tables of their names, the old ones dropped at the
    end: the schema is the same after (indexes, triggers, SQL views over the tables), nothing
    of the old tables is left, and the database's free pages are used again next time."""
    options = {"rebuild_workers": workers, "rebuild_parallel_from": 1, "page_size": 5}
    await append_mixed(backend, projectors=[SQLiteOffered(), Guarded()])
    schema = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name"
    before = rows(backend, schema), rows(backend, "SELECT * FROM guarded ORDER BY position")

    async with await backend.open(projectors=[SQLiteOffered(), Guarded()], **options) as store:
        await store.rebuild_projections()
        await store.rebuild_projections()  # over the views the first one filled

    assert (
        rows(backend, schema),
        rows(backend, "SELECT * FROM guarded ORDER BY position"),
    ) == before
    assert rows(backend, "SELECT * FROM guarded_types ORDER BY type") == [
        ("Other", 10),
        ("Wanted", 2),
    ]
    assert rows(backend, "PRAGMA integrity_check") == [("ok",)]
    conn = backend.raw()
    try:
        with pytest.raises(sqlite3.IntegrityError, match="never updated"):
            conn.execute("UPDATE guarded SET type = 'x'")
    finally:
        conn.close()
