"""The audit commands run as an operator would: ``python -m service history | rebuild | verify |
backup`` in a subprocess, on a database the real app populated.

Tampering goes behind the store's back: a raw ``sqlite3`` connection drops the log's guard
triggers and then edits, deletes, reorders or appends rows; ``verify`` must then exit 1 and name
the exact first position that no longer matches its hash chain. The backup is taken while an app
in this process keeps writing to the same file.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from eventstore import NO_STREAM
from eventstore.records import chain_hash
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite.schema import GUARD_TRIGGERS
from service.app import create_app
from service.domain.events import BalanceToppedUp
from service.progress import Progress
from service.records import encode
from service.storage.sqlite import views_check
from service.views.sqlite import all_projectors
from tests.credentials import bearer
from tests.dumps import sqlite_view_text
from tests.integration.api import Client, call, checkout_body
from tests.integration.cli import TIMEOUT, environment, run_cli
from tests.integration.populated import BUYER, Clock, Populated, app_config

Row = tuple[Any, ...]


# -- running the command line ----------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run the command line in (no config.yaml: defaults and --db)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


# -- a populated database --------------------------------------------------------------------


@pytest.fixture
def populated(final_states_template: tuple[Path, Populated], tmp_path: Path) -> Path:
    """A private copy of the populated database."""
    path = tmp_path / "populated.db"
    shutil.copy(final_states_template[0], path)
    return path


@pytest.fixture
def made(final_states_template: tuple[Path, Populated]) -> Populated:
    return final_states_template[1]


def events(database: Path) -> dict[int, Row]:
    """Every row of the log by position."""
    conn = sqlite3.connect(database)
    try:
        return {row[0]: row for row in conn.execute("SELECT * FROM events ORDER BY position")}
    finally:
        conn.close()


# -- history ---------------------------------------------------------------------------------


def test_history_prints_a_readable_timeline(
    workdir: Path, populated: Path, made: Populated
) -> None:
    """A header naming the invoice, then one line per event: its position, type and actor."""
    invoice = made.invoices["mixed"]
    result = run_cli(workdir, "--db", str(populated), "history", invoice)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert invoice in header
    assert "ONMARKET" in header
    assert "XENDIT" in header
    assert BUYER in header
    assert "40,200" in header
    expected = made.histories["mixed"]
    assert len(lines) == len(expected), result.stdout
    for line, event in zip(lines, expected, strict=True):
        assert f"#{event['position']} " in line, line
        assert event["type"] in line, line
        assert f"by {event['actor']}" in line, line
        assert event["recorded_at"] in line, line
    assert [event["actor"] for event in expected] == [
        BUYER,
        "gateway",
        "onmarket",
        "onmarket",
        "system:refund-worker",
    ]
    assert "AUD-2" in lines[3], lines[3]  # the refunded store and amount, readably
    assert "amount 25,100" in lines[3], lines[3]


def test_history_shows_a_payment_of_the_wrong_amount_and_the_right_one_after_it(
    workdir: Path, populated: Path, made: Populated
) -> None:
    """The wrong amount kept as the buyer's money is in the timeline, with its amount and id."""
    result = run_cli(workdir, "--db", str(populated), "history", made.invoices["mismatched"])
    assert result.returncode == 0, result.stderr
    _, created, mismatched, paid = result.stdout.splitlines()
    assert "InvoiceCreated" in created
    assert "MismatchedPaymentReceived" in mismatched
    assert "amount 15,000, expected 15,100" in mismatched
    assert "aud-wrong" in mismatched
    assert "InvoicePaid" in paid
    assert "amount 15,100" in paid


@pytest.mark.parametrize("name", ["mixed", "balance", "canceled", "mismatched", "late"])
def test_history_json_equals_the_apis_events(
    workdir: Path, populated: Path, made: Populated, name: str
) -> None:
    """--json prints the very entries GET /invoice/history answers, for each kind of invoice."""
    result = run_cli(workdir, "--db", str(populated), "history", made.invoices[name], "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    expected = made.histories[name]
    assert [(e["position"], e["type"], e["actor"]) for e in printed] == [
        (e["position"], e["type"], e["actor"]) for e in expected
    ]
    assert [e["data"] for e in printed] == [e["data"] for e in expected]
    assert printed == expected


def test_history_of_an_unknown_invoice_exits_1(workdir: Path, populated: Path) -> None:
    """No such invoice: exit 1 with a message naming it, and nothing on stdout."""
    result = run_cli(workdir, "--db", str(populated), "history", "OM0000000000000")
    assert result.returncode == 1
    assert "OM0000000000000" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_history_of_a_missing_database_exits_2(workdir: Path, tmp_path: Path) -> None:
    """No database file: exit 2, and no file is created."""
    missing = tmp_path / "missing.db"
    result = run_cli(workdir, "--db", str(missing), "history", "OM0000000000000")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert not missing.exists()


# -- rebuild ---------------------------------------------------------------------------------


def test_rebuild_off_a_terminal_prints_plain_progress_and_a_summary(
    workdir: Path, populated: Path
) -> None:
    """stderr (a pipe) gets plain lines, no bar; stdout the summary; the views are unchanged."""
    before = sqlite_view_text(populated)
    count = len(events(populated))
    result = run_cli(workdir, "--db", str(populated), "rebuild")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert "ETA" not in result.stderr
    progress = result.stderr.splitlines()
    assert progress, "no progress line"
    assert progress[-1].startswith(f"rebuilding views: {count} of {count} (100%), ")
    assert progress[-1].endswith("s left")
    assert "/s" in progress[-1]
    assert result.stdout.startswith(f"rebuilt the views from {count} events in ")
    assert sqlite_view_text(populated) == before


def test_rebuild_on_a_terminal_draws_a_bar(workdir: Path, populated: Path) -> None:
    """stderr on a pseudo-terminal gets a bar redrawn in place with %, events/s and ETA."""
    count = len(events(populated))
    controller, terminal = pty.openpty()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "service", "--db", str(populated), "rebuild"],
            cwd=workdir,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=TIMEOUT,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if terminal != -1:
            os.close(terminal)
        os.close(controller)
    assert completed.returncode == 0, drawn
    bar = drawn.decode()
    assert bar.startswith("\rrebuilding views ["), bar
    assert "#" * 30 in bar, bar  # full at the end
    assert "100.0%" in bar, bar
    assert f"{count}/{count}" in bar, bar
    assert "/s ETA" in bar, bar
    assert completed.stdout.decode().startswith(f"rebuilt the views from {count} events")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_one_bar() -> None:
    """Each call redraws the bar in place with share, done/total, events/s and ETA."""
    stream = FakeTerminal()
    progress = Progress("rebuilding views", stream)
    progress(250, 1000)
    progress(1000, 1000)
    elapsed = progress.finish()
    drawn = stream.getvalue()
    first, second = drawn.split("\r")[1:]
    assert first.startswith("rebuilding views [" + "#" * 7 + "-" * 23 + "]  25.0% 250/1,000 ")
    assert second.startswith("rebuilding views [" + "#" * 30 + "] 100.0% 1,000/1,000 ")
    for frame in (first, second):
        assert "%" in frame
        assert "/s ETA " in frame
    assert second.rstrip().endswith("ETA    0s")
    assert drawn.endswith("\n")
    assert drawn.count("\n") == 1
    assert elapsed >= 0


def test_progress_off_a_terminal_prints_a_line_now_and_then_and_at_the_end() -> None:
    """Plain lines: the first call, then at most one per interval, and always the last."""
    stream = io.StringIO()
    progress = Progress("rebuilding views", stream)
    progress(1, 100)
    progress(2, 100)  # too soon after the first for another line
    progress(100, 100)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("rebuilding views: 1 of 100 (1%), ")
    assert lines[1].startswith("rebuilding views: 100 of 100 (100%), ")
    assert all("/s, about " in line and line.endswith("s left") for line in lines)
    assert "\r" not in stream.getvalue()


# -- verify ----------------------------------------------------------------------------------


def test_verify_passes_on_a_good_database(workdir: Path, populated: Path) -> None:
    """Exit 0: chain intact, guards in place, views equal to a replay."""
    result = run_cli(workdir, "--db", str(populated), "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"log ok: {len(events(populated)):,} events" in result.stdout
    assert "views ok" in result.stdout
    assert "FAILED" not in result.stdout


async def _top_up(database: Path, times: int) -> None:
    """Append ``times`` top-ups of one buyer's balance, through the store and its views."""
    top_ups = [
        encode(BalanceToppedUp("filler", 1000, "admin", datetime.now(UTC)), {"actor": "admin"})
        for _ in range(times)
    ]
    async with await SQLiteEventStore.open(database, projectors=all_projectors()) as store:
        await store.append("balance-filler", top_ups, NO_STREAM)


def test_verify_and_backup_count_a_long_log_with_thousands_separators(
    workdir: Path, populated: Path, tmp_path: Path
) -> None:
    """Past 999 events both commands print the count as 1,234, as rebuild does."""
    asyncio.run(_top_up(populated, 1000))
    count = len(events(populated))
    assert count > 1000
    verified = run_cli(workdir, "--db", str(populated), "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"log ok: {count:,} events" in verified.stdout
    backup = run_cli(workdir, "--db", str(populated), "backup", str(tmp_path / "copy.db"))
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert f": {count:,} events, verified; head position {count}," in backup.stdout


Statements = list[tuple[str, tuple[Any, ...]]]
Tampering = Callable[[dict[int, Row]], tuple[Statements, int]]
FORGED_HASH = hashlib.sha256(b"forged").hexdigest()
COLUMNS = "position, event_id, stream_id, version, type, data, metadata, recorded_at, hash"


def _first_of(rows: dict[int, Row], event_type: str) -> Row:
    return next(row for row in rows.values() if row[4] == event_type)


def _changed_amount(rows: dict[int, Row]) -> tuple[Statements, int]:
    """The amount of a payment in the middle of the log, raised by one."""
    row = _first_of(rows, "InvoicePaid")
    data = json.loads(row[5])
    data["amount"] += 1
    edited = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return [("UPDATE events SET data = ? WHERE position = ?", (edited, row[0]))], row[0]


def _changed_actor(rows: dict[int, Row]) -> tuple[Statements, int]:
    """Who did it: the actor in a completion's metadata, rewritten."""
    row = _first_of(rows, "TransactionCompleted")
    metadata = json.loads(row[6])
    metadata["actor"] = "admin"
    edited = json.dumps(metadata, sort_keys=True, separators=(",", ":"))
    return [("UPDATE events SET metadata = ? WHERE position = ?", (edited, row[0]))], row[0]


def _deleted(rows: dict[int, Row]) -> tuple[Statements, int]:
    """An event in the middle of the log, deleted."""
    middle = len(rows) // 2
    return [("DELETE FROM events WHERE position = ?", (middle,))], middle


def _data_swapped(rows: dict[int, Row]) -> tuple[Statements, int]:
    """The type and data of two neighbouring events exchanged."""
    first = _first_of(rows, "TransactionCompleted")[0]
    a, b = rows[first], rows[first + 1]
    assert (a[4], a[5]) != (b[4], b[5])
    sql = "UPDATE events SET type = ?, data = ? WHERE position = ?"
    return [(sql, (b[4], b[5], a[0])), (sql, (a[4], a[5], b[0]))], first


def _rows_reordered(rows: dict[int, Row]) -> tuple[Statements, int]:
    """Two whole rows moved into each other's position (through a temporary table)."""
    i = len(rows) // 3
    j = i + 3
    return [
        ("CREATE TEMP TABLE moved AS SELECT * FROM events WHERE position IN (?, ?)", (i, j)),
        ("DELETE FROM events WHERE position IN (?, ?)", (i, j)),
        (
            f"INSERT INTO events ({COLUMNS}) SELECT CASE position WHEN ? THEN ? ELSE ? END,"
            " event_id, stream_id, version, type, data, metadata, recorded_at, hash FROM moved",
            (i, j, i),
        ),
        ("DROP TABLE moved", ()),
    ], i


def _forged_append(rows: dict[int, Row]) -> tuple[Statements, int]:
    """A top-up appended at the end, with a made-up hash."""
    head = max(rows)
    last = rows[head]
    topup = _first_of(rows, "BalanceToppedUp")
    version = max(row[3] for row in rows.values() if row[2] == topup[2]) + 1
    forged = (head + 1, "forged-event", topup[2], version, topup[4], topup[5], topup[6], last[7])
    marks = ", ".join("?" * 9)
    return [(f"INSERT INTO events ({COLUMNS}) VALUES ({marks})", (*forged, FORGED_HASH))], head + 1


def _inserted_in_the_middle(rows: dict[int, Row]) -> tuple[Statements, int]:
    """A forged event slipped in the middle, the events after it moved one position on."""
    k = len(rows) // 2
    model = rows[k]
    forged = (k + 1, "slipped-in", "balance-usernew1-forged", 1, *model[4:8], FORGED_HASH)
    marks = ", ".join("?" * 9)
    return [
        ("UPDATE events SET position = -(position + 1) WHERE position > ?", (k,)),
        ("UPDATE events SET position = -position WHERE position < 0", ()),
        (f"INSERT INTO events ({COLUMNS}) VALUES ({marks})", forged),
    ], k + 1


def _rehashed_edit(rows: dict[int, Row]) -> tuple[Statements, int]:
    """An edited payment whose own hash was recomputed: the next event no longer chains."""
    row = _first_of(rows, "InvoicePaid")
    data = json.loads(row[5])
    data["amount"] += 1
    edited = (*row[:5], json.dumps(data, sort_keys=True, separators=(",", ":")), *row[6:8])
    rehashed = chain_hash(rows[row[0] - 1][8], edited)
    sql = "UPDATE events SET data = ?, hash = ? WHERE position = ?"
    return [(sql, (edited[5], rehashed, row[0]))], row[0] + 1


TAMPERINGS: dict[str, Tampering] = {
    "changed-amount": _changed_amount,
    "changed-actor": _changed_actor,
    "deleted-event": _deleted,
    "swapped-data": _data_swapped,
    "reordered-rows": _rows_reordered,
    "forged-append": _forged_append,
    "inserted-in-the-middle": _inserted_in_the_middle,
    "rehashed-edit": _rehashed_edit,
}


def tamper(database: Path, statements: Statements) -> None:
    """Run ``statements`` on a raw connection with the log's guard triggers dropped."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        for trigger in GUARD_TRIGGERS:
            conn.execute(f"DROP TRIGGER {trigger}")
        for sql, parameters in statements:
            conn.execute(sql, parameters)
    finally:
        conn.close()


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_verify_names_the_first_tampered_position(
    workdir: Path, populated: Path, kind: str
) -> None:
    """Each kind of raw edit: exit 1, and the one FAILED line names the exact position."""
    before = events(populated)
    statements, first_bad = TAMPERINGS[kind](before)
    assert 1 < first_bad <= len(before) + 1
    tamper(populated, statements)
    assert events(populated) != before

    result = run_cli(workdir, "--db", str(populated), "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1, result.stdout
    assert f"at position {first_bad}:" in failures[0], failures[0]
    assert "views ok" not in result.stdout
    assert "Traceback" not in result.stderr


async def test_views_check_is_not_fooled_by_a_write_after_its_snapshot(
    workdir: Path, populated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write landing just after the snapshot (a running service) is not a view difference."""
    take_snapshot = views_check._backup

    def snapshot_then_write(source: Path, target: Path) -> None:
        take_snapshot(source, target)
        if source != populated:  # only the live database has a service writing to it
            return
        command = ["users", "add", "--role", "buyer", "written-meanwhile"]
        added = subprocess.run(
            [sys.executable, "-m", "service", "--db", str(source), *command],
            cwd=workdir,
            env=environment(),
            input="a-long-password\n",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert added.returncode == 0, added.stderr

    monkeypatch.setattr(views_check, "_backup", snapshot_then_write)
    assert await views_check.compare_views_with_replay(populated) == []


# -- backup ----------------------------------------------------------------------------------


async def _keep_checking_out(
    client: Client, headers: dict[str, str], under_way: asyncio.Event, stop: asyncio.Event
) -> int:
    """Checkouts until ``stop`` (``under_way`` set after ten); how many were made."""
    made = 0
    while not stop.is_set():
        body = checkout_body("ONMARKET", "XENDIT", [f"LOAD-{made}-A", f"LOAD-{made}-B"])
        await call(client, "POST", "/payment-checkout", json=body, headers=headers)
        made += 1
        if made == 10:
            under_way.set()
    return made


async def test_backup_under_write_load_is_a_verified_consistent_prefix(
    workdir: Path, populated: Path, tmp_path: Path
) -> None:
    """Under writes, the copy is one file holding exactly positions 1..N, and it verifies."""
    copy = tmp_path / "backups" / "copy.db"
    copy.parent.mkdir()
    config, clock = app_config(populated), Clock()
    under_way, stop = asyncio.Event(), asyncio.Event()
    async with TestClient(TestServer(create_app(config, clock=clock))) as client:
        headers = bearer(config, clock, BUYER)
        writer = asyncio.create_task(_keep_checking_out(client, headers, under_way, stop))
        await asyncio.wait_for(under_way.wait(), TIMEOUT)
        head_before = max(events(populated))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "--db",
            str(populated),
            "backup",
            str(copy),
            cwd=workdir,
            env=environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
        head_after = max(events(populated))
        stop.set()
        checkouts = await writer
    assert process.returncode == 0, err.decode()
    assert head_after > head_before, "nothing was written while the backup ran"
    assert checkouts > 0

    assert copy.exists()
    assert sorted(path.name for path in copy.parent.iterdir()) == ["copy.db"]  # no -wal, -shm
    conn = sqlite3.connect(copy)
    try:
        (journal_mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    assert journal_mode == "delete"

    copied, live = events(copy), events(populated)
    n = len(copied)
    assert sorted(copied) == list(range(1, n + 1))
    assert head_before <= n <= head_after
    assert copied == {position: live[position] for position in range(1, n + 1)}
    assert f"{n:,} events, verified; head position {n}, head hash {live[n][8]}" in out.decode()

    verified = run_cli(workdir, "verify", "--db", str(copy))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"log ok: {n:,} events" in verified.stdout
    assert "views ok" in verified.stdout


def test_backup_refuses_an_existing_path(workdir: Path, populated: Path, tmp_path: Path) -> None:
    """The target exists: exit 2, and the file there is left as it was."""
    target = tmp_path / "taken.db"
    target.write_bytes(b"keep me")
    result = run_cli(workdir, "--db", str(populated), "backup", str(target))
    assert result.returncode == 2
    assert "exists" in result.stderr
    assert target.read_bytes() == b"keep me"
    assert "Traceback" not in result.stderr


def test_backup_of_a_missing_database_exits_2(workdir: Path, tmp_path: Path) -> None:
    """No source: exit 2, and no copy is written."""
    target = tmp_path / "copy.db"
    result = run_cli(workdir, "--db", str(tmp_path / "missing.db"), "backup", str(target))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert not target.exists()


def test_backup_of_a_tampered_database_keeps_no_copy(
    workdir: Path, populated: Path, tmp_path: Path
) -> None:
    """The copy does not verify: exit 1 naming the failure, and nothing is left at the path."""
    statements, _ = _changed_amount(events(populated))
    tamper(populated, statements)
    target = tmp_path / "copy.db"
    result = run_cli(workdir, "--db", str(populated), "backup", str(target))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "does not verify" in result.stderr
    assert "hash does not match" in result.stderr
    assert [path.name for path in tmp_path.iterdir() if "copy" in path.name] == []


def test_verify_leaves_a_backup_as_it_was(workdir: Path, populated: Path, tmp_path: Path) -> None:
    """Checking a backup reads it: the file is byte for byte the same and stays a single file."""
    folder = tmp_path / "backups"
    folder.mkdir()
    copy = folder / "copy.db"
    made = run_cli(workdir, "--db", str(populated), "backup", str(copy))
    assert made.returncode == 0, made.stderr
    before = hashlib.sha256(copy.read_bytes()).hexdigest()

    verified = run_cli(workdir, "verify", "--db", str(copy))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert sorted(path.name for path in folder.iterdir()) == ["copy.db"]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == before


def test_backup_into_a_missing_folder_is_a_usage_error(
    workdir: Path, populated: Path, tmp_path: Path
) -> None:
    """PATH's folder does not exist: exit 2 with a message naming it, no traceback."""
    target = tmp_path / "no-such-folder" / "copy.db"
    result = run_cli(workdir, "--db", str(populated), "backup", str(target))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2
    assert "no-such-folder" in result.stderr
    assert not target.parent.exists()
