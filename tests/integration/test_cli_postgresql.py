"""The command line on a PostgreSQL database, run as an operator would: a log the real app made
on SQLite is moved into PostgreSQL with ``migrate-store`` and every command then works there as
it does on the file; ``verify`` finds a changed view or event, ``backup`` keeps only a dump that
restores and verifies, and the log moves back to SQLite unchanged."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.dumps import read_log, sqlite_view_rows
from tests.integration.cli import run_cli
from tests.integration.populated import Populated
from tests.pgdb import ADMIN_URL, database_url


@pytest.fixture
def source(final_states_template: tuple[Path, Populated], tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    shutil.copy(final_states_template[0], path)
    return path


@pytest.fixture
def database(source: Path, tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL database holding the source's log, moved there by ``migrate-store``."""
    name = f"cli_{uuid.uuid4().hex}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        url = database_url(name)
        moved = run_cli(tmp_path, "migrate-store", str(source), url)
        assert moved.returncode == 0, moved.stderr
        yield url
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin_execute(statement: str) -> None:
    execute(ADMIN_URL, statement)


def execute(url: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def test_the_log_moves_to_postgresql_and_back_unchanged(
    source: Path, database: str, tmp_path: Path
) -> None:
    back = tmp_path / "back.db"

    moved = run_cli(tmp_path, "migrate-store", database, str(back))

    assert moved.returncode == 0, moved.stderr
    assert "postgresql://postgres@" in moved.stdout
    events = read_log(source)
    assert read_log(database) == events
    assert read_log(back) == events
    assert sqlite_view_rows(back) == sqlite_view_rows(source)


def test_verify_passes_and_history_reads_as_on_the_file(
    source: Path, database: str, final_states_template: tuple[Path, Populated], tmp_path: Path
) -> None:
    verified = run_cli(tmp_path, "verify", "--db", database)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "views ok" in verified.stdout
    for invoice in final_states_template[1].invoices.values():
        on_postgresql = run_cli(tmp_path, "history", invoice, "--db", database)
        on_file = run_cli(tmp_path, "history", invoice, "--db", str(source))
        assert on_postgresql.returncode == 0, on_postgresql.stderr
        assert on_postgresql.stdout == on_file.stdout


def test_verify_finds_a_view_that_differs_and_rebuild_mends_it(
    database: str, tmp_path: Path
) -> None:
    execute(
        database,
        "UPDATE account_balances SET balance = balance + 1 WHERE account = 'buyer:usernew1'",
    )

    found = run_cli(tmp_path, "verify", "--db", database)

    assert found.returncode == 1
    assert "view account_balances differs from a replay" in found.stdout
    rebuilt = run_cli(tmp_path, "rebuild", "--db", database)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert run_cli(tmp_path, "verify", "--db", database).returncode == 0


def test_verify_names_an_edited_event(database: str, tmp_path: Path) -> None:
    execute(
        database,
        "ALTER TABLE events DISABLE TRIGGER USER",
        "UPDATE events SET data = replace(data, '0', '1') WHERE position = 5",
        "ALTER TABLE events ENABLE TRIGGER USER",
    )

    found = run_cli(tmp_path, "verify", "--db", database)

    assert found.returncode == 1
    assert "at position 5" in found.stdout


def test_backup_keeps_a_dump_that_restores_and_verifies(database: str, tmp_path: Path) -> None:
    target = tmp_path / "invoices.dump"

    made = run_cli(tmp_path, "backup", str(target), "--db", database)

    assert made.returncode == 0, made.stderr
    head = read_log(database)[-1]
    assert f"head position {head.position}, head hash {head.hash}" in made.stdout
    assert target.stat().st_size > 0
    again = run_cli(tmp_path, "backup", str(target), "--db", database)
    assert again.returncode == 2
    assert "exists" in again.stderr


def test_accounts_and_reconcile_work_on_postgresql(database: str, tmp_path: Path) -> None:
    added = run_cli(
        tmp_path,
        "users",
        "add",
        "--role",
        "buyer",
        "newbuyer",
        "--db",
        database,
        stdin="a long password\n",
    )
    assert added.returncode == 0, added.stderr
    disabled = run_cli(tmp_path, "users", "disable", "newbuyer", "--db", database)
    assert disabled.returncode == 0, disabled.stderr
    assert "account 'newbuyer' disabled" in disabled.stdout
    assert read_log(database)[-1].type == "UserDisabled"
    reconciled = run_cli(tmp_path, "reconcile", "--db", database)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert run_cli(tmp_path, "verify", "--db", database).returncode == 0


def test_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/no_such_database_here"

    for command in (["verify"], ["history", "X"], ["rebuild"]):
        done = run_cli(tmp_path, *command, "--db", url)
        assert done.returncode == 2, (command, done.stderr)
        assert "error:" in done.stderr
        assert "Traceback" not in done.stderr
