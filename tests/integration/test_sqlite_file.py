"""The event store on a real SQLite file.

Covers abrupt stops, files it must refuse, schema versions, pragmas, tamper evidence, the
append-only guards and lock contention. These tests reach the file behind the store's back (raw
connections, another process) the way an operator, a crash or an attacker would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import eventstore.sqlite.store as store_module
from eventstore import (
    ANY,
    NO_STREAM,
    EventStore,
    NewEvent,
    NotADatabaseError,
    SchemaTooNewError,
    StoreWriteError,
    VerifyReport,
    apply_migrations,
    verify_store,
)
from eventstore.records import chain_hash
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.schema import EVENTSTORE_MIGRATIONS
from eventstore.sqlite.turns import turns_file

if TYPE_CHECKING:
    from tests.contract.backends.sqlite import SQLiteBackend

REPO_ROOT = Path(__file__).resolve().parents[2]
CRASH_WRITER = Path(__file__).with_name("crash_writer.py")

APPEND_ONLY_TRIGGERS = ("events_are_append_only_update", "events_are_append_only_delete")
CONTIGUITY_TRIGGER = "events_versions_are_contiguous"

LOG_SIZE = 20
STREAMS = 4


# -- helpers ---------------------------------------------------------------------------------


def _writer_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "eventstore-writer"}


@contextlib.asynccontextmanager
async def _writer_threads_joined() -> AsyncIterator[None]:
    """On the way out, wait for the writer threads started inside to end.

    A failed ``SQLiteEventStore.open`` raises before its writer thread has finished (see
    ``test_a_failed_open_has_closed_its_connection_when_it_raises``); if the test's event loop
    closed first, that thread would die on "Event loop is closed" and fail a later test.
    """
    before = _writer_threads()
    try:
        yield
    finally:
        for thread in _writer_threads() - before:
            await asyncio.to_thread(thread.join, 10.0)
            assert not thread.is_alive(), "an eventstore writer thread did not stop"


def _contents(path: Path) -> dict[str, Any]:
    """Every schema object and every row of every table in the file at ``path``."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        rows = {
            name: conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall()
            for type_, name, _, _ in objects
            if type_ == "table"
        }
    return {"schema": objects, "rows": rows}


def _entries(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir())


def _events(backend: SQLiteBackend) -> list[tuple[Any, ...]]:
    with contextlib.closing(backend.raw()) as conn:
        return conn.execute("SELECT * FROM events ORDER BY position").fetchall()


def _literal(value: object) -> str:
    """``value`` as an SQL literal, for the statements handed to ``backend.tamper``."""
    if isinstance(value, int):
        return str(value)
    assert isinstance(value, str)
    return "'" + value.replace("'", "''") + "'"


def _insert_sql(row: tuple[Any, ...]) -> str:
    return f"INSERT INTO events VALUES ({', '.join(map(_literal, row))})"


async def _build_log(store: EventStore) -> None:
    """``LOG_SIZE`` events round-robin over ``STREAMS`` streams; event i has amount 100 + i."""
    for i in range(LOG_SIZE):
        event = NewEvent("AmountAdded", {"amount": 100 + i}, {"seq": i})
        await store.append(f"invoice-{i % STREAMS}", [event], i // STREAMS)


# -- 1. abrupt stops -------------------------------------------------------------------------

ACKS_PER_RUN = 200
CRASH_RUNS = 3
RUN_TIMEOUT = 60.0


async def _run_writer_until_killed(path: Path, run_tag: str) -> dict[str, int]:
    """Start ``crash_writer.py``, SIGKILL it after ``ACKS_PER_RUN`` acks; return every ack."""
    pythonpath = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CRASH_WRITER),
        str(path),
        run_tag,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)},
    )
    assert process.stdout is not None
    acked: dict[str, int] = {}
    rest = b""

    def note(line: bytes) -> None:
        event_id, position = line.decode().split()
        acked[event_id] = int(position)

    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            while len(acked) < ACKS_PER_RUN:
                line = await process.stdout.readline()
                if not line.endswith(b"\n"):  # EOF: the writer died by itself
                    _, stderr = await process.communicate()
                    pytest.fail(f"crash writer exited early:\n{stderr.decode()}")
                note(line)
            os.kill(process.pid, signal.SIGKILL)  # mid-stream: its tasks are still appending
            # Acks written before the kill may still be in the pipe: they count too.
            rest, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    for line in rest.splitlines(keepends=True):
        if line.endswith(b"\n"):  # a write cut short by the kill acknowledged nothing
            note(line)
    assert process.returncode == -signal.SIGKILL
    return acked


async def test_reopening_after_repeated_kill_9_keeps_every_acknowledged_event(
    tmp_path: Path,
) -> None:
    """Each of 3 SIGKILLs mid-append loses no acked event and leaves a gap-free, valid chain."""
    path = tmp_path / "events.db"
    acked: dict[str, int] = {}
    for run in range(CRASH_RUNS):
        acked |= await _run_writer_until_killed(path, f"run{run}")
        assert path.with_name(path.name + "-wal").exists(), "the writer did not stop abruptly"

        store = await SQLiteEventStore.open(path)
        try:
            log = [event async for event in store.read_all()]
            report = await store.verify()
        finally:
            await store.close()

        assert [event.position for event in log] == list(range(1, len(log) + 1))
        stored = {event.event_id: event.position for event in log}
        lost = {event_id for event_id in acked if event_id not in stored}
        assert not lost, f"run {run}: {len(lost)} acknowledged events lost"
        moved = {eid for eid, position in acked.items() if stored[eid] != position}
        assert not moved, f"run {run}: events not at their acknowledged position"
        versions: dict[str, list[int]] = {}
        for event in log:
            versions.setdefault(event.stream_id, []).append(event.version)
        assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
        assert report == VerifyReport(ok=True, events_checked=len(log), head_position=len(log))
        assert len(log) >= ACKS_PER_RUN * (run + 1)


# -- 2, 3. files the store must refuse -------------------------------------------------------


async def test_open_refuses_a_file_that_is_not_a_database_and_leaves_it_untouched(
    tmp_path: Path,
) -> None:
    """Random bytes raise NotADatabaseError; the file keeps its bytes and gains no sidecars."""
    path = tmp_path / "ledger.db"
    content = b"not an SQLite file\n" + random.Random(20240601).randbytes(8192)
    path.write_bytes(content)

    async with _writer_threads_joined():
        with pytest.raises(NotADatabaseError):
            await SQLiteEventStore.open(path)

    assert path.read_bytes() == content
    assert _entries(tmp_path) == [path.name]


async def test_open_refuses_a_schema_from_a_newer_release_and_writes_nothing(
    backend: SQLiteBackend,
) -> None:
    """schema_migrations at eventstore version 99 raises SchemaTooNewError; no row changes."""
    store = await backend.open()
    try:
        await _build_log(store)
        await store.save_checkpoint("mailer", 7)
    finally:
        await store.close()
    with contextlib.closing(backend.raw()) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (component, version, name, applied_at)"
            " VALUES ('eventstore', 99, 'from the future', '2099-01-01T00:00:00.000000Z')"
        )
    before = _contents(backend.path)

    async with _writer_threads_joined():
        with pytest.raises(SchemaTooNewError, match="99"):
            await backend.open()

    after = _contents(backend.path)
    assert after["schema"] == before["schema"]
    assert {name: len(rows) for name, rows in after["rows"].items()} == {
        name: len(rows) for name, rows in before["rows"].items()
    }
    assert after == before


# -- 4, 5. migrations and pragmas ------------------------------------------------------------


async def test_open_records_the_eventstore_migrations_once(backend: SQLiteBackend) -> None:
    """A new file records every eventstore migration; a second open applies nothing more."""
    query = (
        "SELECT component, version, name, applied_at FROM schema_migrations"
        " ORDER BY component, version"
    )
    await (await backend.open()).close()
    with contextlib.closing(backend.raw()) as conn:
        first = conn.execute(query).fetchall()
    assert [row[:3] for row in first] == [
        ("eventstore", migration.version, migration.name) for migration in EVENTSTORE_MIGRATIONS
    ]

    await (await backend.open()).close()
    with contextlib.closing(backend.raw()) as conn:
        assert conn.execute(query).fetchall() == first  # same rows, same applied_at
        assert apply_migrations(conn, "eventstore", EVENTSTORE_MIGRATIONS) == []
        assert conn.execute(query).fetchall() == first


async def test_open_puts_the_file_in_wal_mode(backend: SQLiteBackend) -> None:
    """journal_mode is 'wal' on the open store's file, and stays so after it closes."""
    store = await backend.open(synchronous="NORMAL")
    try:
        await store.append("invoice-1", [NewEvent("Opened", {})], NO_STREAM)
        with contextlib.closing(backend.raw()) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        await store.close()
    with contextlib.closing(backend.raw()) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("OFF", 0), ("NORMAL", 1), ("normal", 1), ("FULL", 2), ("EXTRA", 3), (None, 2)],
)
async def test_the_writer_connection_uses_the_synchronous_mode_asked_for(
    backend: SQLiteBackend,
    monkeypatch: pytest.MonkeyPatch,
    requested: str | None,
    expected: int,
) -> None:
    """PRAGMA synchronous on the store's own write connection is the mode given (FULL default)."""
    # synchronous is per connection, so this captures the writer's connection through the private
    # ``eventstore.sqlite.store._connect_writer`` seam (monkeypatch raises if it is renamed).
    writers: list[sqlite3.Connection] = []

    def connect_writer(path: Path, busy_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=busy_timeout, check_same_thread=False
        )
        writers.append(conn)
        return conn

    monkeypatch.setattr(store_module, "_connect_writer", connect_writer)
    options = {} if requested is None else {"synchronous": requested}
    store = await backend.open(**options)
    try:
        (writer,) = writers
        # The writer thread is idle, waiting on its queue: a read of the pragma is safe.
        assert writer.execute("PRAGMA synchronous").fetchone() == (expected,)
    finally:
        await store.close()


@pytest.mark.parametrize("mode", ["SOMETIMES", "", "FULL; DROP TABLE events"])
async def test_open_refuses_an_unknown_synchronous_mode_before_creating_the_file(
    tmp_path: Path, mode: str
) -> None:
    """An invalid synchronous mode raises ValueError and no file is created."""
    with pytest.raises(ValueError, match="synchronous"):
        await SQLiteEventStore.open(tmp_path / "events.db", synchronous=mode)
    assert _entries(tmp_path) == []


# -- 6, 7. tamper evidence -------------------------------------------------------------------

Rows = dict[int, tuple[Any, ...]]
FORGED_HASH = hashlib.sha256(b"forged").hexdigest()


def _edit_data(rows: Rows) -> list[str]:
    return ["""UPDATE events SET data = '{"amount":1000000}' WHERE position = 7"""]


def _edit_data_and_rehash_it(rows: Rows) -> list[str]:
    """Event 7 edited and its own hash recomputed: the chain then breaks at event 8."""
    edited = (*rows[7][:5], '{"amount":1000000}', *rows[7][6:8])
    rehashed = chain_hash(rows[6][8], edited)
    return ["DELETE FROM events WHERE position = 7", _insert_sql((*edited, rehashed))]


def _delete_middle(rows: Rows) -> list[str]:
    return ["DELETE FROM events WHERE position = 10"]


def _swap_data(rows: Rows) -> list[str]:
    return [
        f"UPDATE events SET data = {_literal(rows[6][5])} WHERE position = 5",
        f"UPDATE events SET data = {_literal(rows[5][5])} WHERE position = 6",
    ]


def _swap_whole_rows(rows: Rows) -> list[str]:
    """Events 5 and 6 trade places, each keeping its own content and hash."""
    return [
        "DELETE FROM events WHERE position IN (5, 6)",
        _insert_sql((5, *rows[6][1:])),
        _insert_sql((6, *rows[5][1:])),
    ]


def _append_forged(rows: Rows) -> list[str]:
    last = rows[LOG_SIZE]
    forged = (
        LOG_SIZE + 1,
        "00000000-0000-7000-8000-000000000001",
        last[2],
        last[3] + 1,
        "AmountAdded",
        '{"amount":1000000}',
        "{}",
        last[7],
        FORGED_HASH,
    )
    return [_insert_sql(forged)]


TAMPERINGS: dict[str, tuple[Callable[[Rows], list[str]], int]] = {
    "edited_data": (_edit_data, 7),
    "edited_data_rehashed": (_edit_data_and_rehash_it, 8),
    "deleted_in_the_middle": (_delete_middle, 10),
    "data_swapped": (_swap_data, 5),
    "rows_reordered": (_swap_whole_rows, 5),
    "appended_with_forged_hash": (_append_forged, LOG_SIZE + 1),
}


@pytest.mark.parametrize("kind", list(TAMPERINGS))
async def test_verify_reports_the_first_tampered_position(
    backend: SQLiteBackend, store: EventStore, kind: str
) -> None:
    """A raw edit, delete, reorder or forged append makes verify() fail at its exact position."""
    await _build_log(store)
    assert (await store.verify()).ok
    tamper, first_bad = TAMPERINGS[kind]

    backend.tamper(*tamper({row[0]: row for row in _events(backend)}))

    report = await store.verify()
    assert not report.ok
    assert report.first_bad_position == first_bad
    assert report.events_checked == first_bad - 1
    assert report.reason


@pytest.mark.parametrize(
    "dropped",
    [APPEND_ONLY_TRIGGERS, APPEND_ONLY_TRIGGERS[:1], APPEND_ONLY_TRIGGERS[1:]],
    ids=["both", "update", "delete"],
)
async def test_verify_reports_missing_append_only_triggers(
    backend: SQLiteBackend, store: EventStore, dropped: tuple[str, ...]
) -> None:
    """With the log intact but an append-only trigger dropped, verify() is not ok and names it."""
    await _build_log(store)
    with contextlib.closing(backend.raw()) as conn:
        for trigger in dropped:
            conn.execute(f"DROP TRIGGER {trigger}")

    report = await store.verify()

    assert not report.ok
    assert report.first_bad_position is None
    assert report.events_checked == LOG_SIZE
    assert report.reason is not None
    assert "trigger" in report.reason
    for trigger in APPEND_ONLY_TRIGGERS:
        assert (trigger in report.reason) == (trigger in dropped)


async def test_verify_reports_a_missing_contiguity_trigger(
    backend: SQLiteBackend, store: EventStore
) -> None:
    """With the version-contiguity trigger dropped, verify() is not ok and names it."""
    await _build_log(store)
    with contextlib.closing(backend.raw()) as conn:
        conn.execute(f"DROP TRIGGER {CONTIGUITY_TRIGGER}")

    report = await store.verify()

    assert not report.ok
    assert report.reason is not None
    assert CONTIGUITY_TRIGGER in report.reason


# -- 8, 9. the guards in the schema ----------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        """UPDATE events SET data = '{"amount":0}' WHERE position = 3""",
        f"UPDATE events SET hash = '{FORGED_HASH}'",
        "DELETE FROM events WHERE position = 3",
        "DELETE FROM events",
        """INSERT INTO events SELECT position, event_id, stream_id, version, type,
           '{"amount":0}', metadata, recorded_at, hash FROM events WHERE position = 3
           ON CONFLICT DO UPDATE SET data = excluded.data""",
    ],
    ids=["update_one", "update_all", "delete_one", "delete_all", "upsert"],
)
async def test_triggers_refuse_update_and_delete_from_a_raw_connection(
    backend: SQLiteBackend, store: EventStore, statement: str
) -> None:
    """A raw UPDATE or DELETE of an event fails with 'append-only' and changes no row."""
    await _build_log(store)
    before = _events(backend)

    with (
        contextlib.closing(backend.raw()) as conn,
        pytest.raises(sqlite3.IntegrityError, match="append-only"),
    ):
        conn.execute(statement)

    assert _events(backend) == before
    assert (await store.verify()).ok


@pytest.mark.parametrize("verb", ["INSERT OR REPLACE", "REPLACE"])
async def test_triggers_refuse_replacing_an_event_from_a_raw_connection(
    backend: SQLiteBackend, store: EventStore, verb: str
) -> None:
    """A raw INSERT OR REPLACE over a stored event is refused and changes no row."""
    await _build_log(store)
    before = _events(backend)

    with (
        contextlib.closing(backend.raw()) as conn,
        pytest.raises(sqlite3.IntegrityError, match="append-only"),
    ):
        conn.execute(
            f"""{verb} INTO events SELECT position, event_id, stream_id, version, type,
            '{{"amount":0}}', metadata, recorded_at, hash FROM events WHERE position = 3"""
        )

    assert _events(backend) == before


@pytest.mark.parametrize(
    ("stream_id", "version"),
    [("invoice-1", LOG_SIZE // STREAMS + 2), ("invoice-1", 99), ("invoice-new", 2)],
    ids=["skips_one", "far_ahead", "new_stream_not_at_1"],
)
async def test_contiguity_trigger_refuses_a_raw_insert_with_a_version_gap(
    backend: SQLiteBackend, store: EventStore, stream_id: str, version: int
) -> None:
    """A raw INSERT whose version skips one in its stream fails with 'version gap'."""
    await _build_log(store)
    before = _events(backend)
    row = (
        LOG_SIZE + 1,
        "00000000-0000-7000-8000-000000000002",
        stream_id,
        version,
        "AmountAdded",
        "{}",
        "{}",
        before[-1][7],
        FORGED_HASH,
    )

    with (
        contextlib.closing(backend.raw()) as conn,
        pytest.raises(sqlite3.IntegrityError, match="stream version gap"),
    ):
        conn.execute(_insert_sql(row))

    assert _events(backend) == before


# -- 10. lock contention ---------------------------------------------------------------------

LOCK_HELD = 0.3


async def test_append_waits_for_a_write_lock_held_elsewhere_then_succeeds(
    backend: SQLiteBackend,
) -> None:
    """While a raw connection holds BEGIN IMMEDIATE, an append waits, then commits once freed."""
    store = await backend.open(busy_timeout=5.0)
    try:
        with contextlib.closing(backend.raw()) as blocker:
            blocker.execute("BEGIN IMMEDIATE")
            try:
                append = asyncio.create_task(
                    store.append("invoice-1", [NewEvent("Opened", {"n": 1})], NO_STREAM)
                )
                await asyncio.sleep(LOCK_HELD)
                assert not append.done(), "the append did not wait for the lock"
                assert await store.head_position() == 0  # readers are not blocked meanwhile
            finally:
                blocker.execute("ROLLBACK")
            async with asyncio.timeout(5.0):
                (recorded,) = await append
        assert (recorded.position, recorded.version) == (1, 1)
        assert [event.event_id async for event in store.read_all()] == [recorded.event_id]
    finally:
        await store.close()


async def test_append_fails_when_the_lock_outlasts_busy_timeout_and_the_store_recovers(
    backend: SQLiteBackend,
) -> None:
    """An append that outwaits busy_timeout fails, writes nothing; the store then works again."""
    store = await backend.open(busy_timeout=0.1)
    try:
        with contextlib.closing(backend.raw()) as blocker:
            blocker.execute("BEGIN IMMEDIATE")
            try:
                started = time.monotonic()
                async with asyncio.timeout(5.0):
                    with pytest.raises(StoreWriteError, match="lock"):
                        await store.append("invoice-1", [NewEvent("Opened", {})], NO_STREAM)
                assert time.monotonic() - started >= 0.05  # it did wait
            finally:
                blocker.execute("ROLLBACK")
        (recorded,) = await store.append("invoice-1", [NewEvent("Opened", {})], NO_STREAM)
        assert (recorded.position, recorded.version) == (1, 1)
        assert await store.head_position() == 1
        assert (await store.verify()).ok
    finally:
        await store.close()


async def test_two_stores_on_one_file_interleave_appends_without_gaps(
    backend: SQLiteBackend,
) -> None:
    """Two writers on one file (as two processes would be) keep positions gap-free and chained."""
    first, second = await backend.open(), await backend.open()
    try:

        async def append_many(store: EventStore, stream_id: str) -> None:
            for n in range(25):
                await store.append(stream_id, [NewEvent("Counted", {"n": n})], ANY)

        await asyncio.gather(
            append_many(first, "left"),
            append_many(second, "right"),
            append_many(first, "left-2"),
            append_many(second, "right-2"),
        )
        log = [event async for event in second.read_all()]
        assert [event.position for event in log] == list(range(1, 101))
        assert await first.verify() == VerifyReport(ok=True, events_checked=100, head_position=100)
    finally:
        await first.close()
        await second.close()


# -- bugs found on the way -------------------------------------------------------------------


class _SlowClosingConnection(sqlite3.Connection):
    """A connection whose close takes a while, as a WAL checkpoint on a slow disk can."""

    finished_closing = False

    def close(self) -> None:
        time.sleep(0.3)
        super().close()
        self.finished_closing = True


async def test_a_failed_open_has_closed_its_connection_when_it_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When open() raises NotADatabaseError, its writer connection is already closed."""
    path = tmp_path / "ledger.db"
    path.write_bytes(b"not an SQLite file\n" * 100)
    writers: list[_SlowClosingConnection] = []

    def connect_writer(path: Path, busy_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=busy_timeout, factory=_SlowClosingConnection
        )
        writers.append(conn)
        return conn

    monkeypatch.setattr(store_module, "_connect_writer", connect_writer)
    async with _writer_threads_joined():
        with pytest.raises(NotADatabaseError):
            await SQLiteEventStore.open(path)
        closed_when_raised = [conn.finished_closing for conn in writers]

    assert closed_when_raised == [True]


async def test_closing_the_store_checkpoints_and_removes_the_wal(backend: SQLiteBackend) -> None:
    """After close, the database is one self-contained file: the WAL was folded into it. Beside
    it stays only the empty file its writers take turns on (``eventstore.sqlite.turns``)."""
    store = await backend.open()
    for n in range(50):
        await store.append(f"invoice-{n}", [NewEvent("Opened", {"n": n})], NO_STREAM)
    await store.close()

    turns = turns_file(backend.path)
    assert sorted(path.name for path in backend.path.parent.iterdir()) == sorted(
        [backend.path.name, turns.name]
    )
    assert turns.stat().st_size == 0


async def test_verify_store_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """Verifying a closed SQLite file reads it only: its bytes stay the same (a backup must not
    be changed by checking it; SQLite's read-only reader of a WAL file may leave its empty
    ``-wal`` and ``-shm`` beside it, as it always did)."""
    path = tmp_path / "events.db"
    async with await SQLiteEventStore.open(path) as store:
        await store.append("s", [NewEvent("E", {"n": 1})], NO_STREAM)
    before = path.read_bytes()

    report = await verify_store(path)

    assert (report.ok, report.events_checked) == (True, 1)
    assert path.read_bytes() == before
