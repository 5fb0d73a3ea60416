"""The command line, run as an operator would: ``python -m service …`` in a folder of its own.

Each test runs the real entry point in a subprocess, in a temporary folder holding a copy of the
repository's ``config.yaml`` (so relative paths such as ``data/invoices.db`` land there), with
bounded timeouts. Databases the commands work on are populated by the real app over HTTP.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.config import Config, load_config
from service.security import verify_password
from service.storage.sqlite.views_check import VIEW_TABLES
from tests.credentials import basic, bearer
from tests.dumps import sqlite_view_text
from tests.integration.api import Client, call, checkout_body
from tests.integration.cli import REPO_ROOT, environment, run_cli

CONFIG_YAML = REPO_ROOT / "config.yaml"
START = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


# -- running the command line --------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder to run the command line in, with a copy of the repository's config.yaml."""
    folder = tmp_path / "work"
    folder.mkdir()
    shutil.copy(CONFIG_YAML, folder / "config.yaml")
    # config.yaml's database is data/invoices.db; see test_users_add_works_on_a_fresh_install.
    (folder / "data").mkdir()
    return folder


def run_all(
    calls: list[tuple[Path, list[str], str]],
) -> list[subprocess.CompletedProcess[str]]:
    """Several independent command lines at once (each one mostly waits on imports)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run_cli, cwd, *args, stdin=stdin) for cwd, args, stdin in calls]
        return [future.result() for future in futures]


# -- a populated database ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _app_config(database: Path, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "refund_delay_seconds": 0,
        "expiry_interval_seconds": 0.05,
        "log_level": "WARNING",
        **overrides,
    }
    return load_config(None, {}, database=str(database), **settings)


async def _wait_for_status(
    client: Client, headers: dict[str, str], invoice: str, status: str
) -> None:
    for _ in range(200):
        body = await call(
            client, "GET", "/invoice/detail", params={"invoice": invoice}, headers=headers
        )
        if body["status"] == status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{invoice} never became {status}")


async def populate(database: Path) -> None:
    """Every kind of event through the real app: top-ups, checkouts of each source, payments,
    a done, a refund, a cancel, an expiry and a late payment, and webhook messages with their
    (failed) attempts."""
    config, clock = _app_config(database), Clock()
    buyer = bearer(config, clock, "usernew1")
    async with TestClient(TestServer(create_app(config, clock=clock))) as client:
        await call(
            client,
            "POST",
            "/balance/topup",
            json={"username": "usernew1", "amount": 500000},
            headers=basic("admin"),
        )

        # A webhook endpoint nobody listens at: messages, and failed attempts, in the log.
        await call(
            client,
            "POST",
            "/webhooks/endpoints",
            expect=201,
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["invoice.created"]},
            headers=basic("onmarket"),
        )

        async def checkout(body: dict[str, Any]) -> dict[str, Any]:
            return await call(client, "POST", "/payment-checkout", json=body, headers=buyer)

        async def pay(reference: str) -> None:
            await call(client, "POST", f"/sandbox/invoices/{reference}/pay", json={})

        async def platform(action: str, service: str = "ONMARKET", **body: Any) -> None:
            await call(
                client,
                "POST",
                f"/invoice/{action}",
                json={"platform": service, **body},
                headers=basic(service.lower()),
            )

        mixed = await checkout(checkout_body("ONMARKET", "XENDIT", ["CLI-1", "CLI-2"]))
        await pay(mixed["xendit_invoice"])
        clock.now += timedelta(seconds=5)
        await platform("done", invoice_id=mixed["invoice"], invoice_onmarket="CLI-1")
        await platform(
            "cancel",
            invoice_id=mixed["invoice"],
            invoice_onmarket="CLI-2",
            buyer_username="usernew1",
        )
        await _wait_for_status(client, buyer, mixed["invoice"], "COMPLETED")

        qris = await checkout(checkout_body("ONTICKET", "QRIS", ["CLI-3"]))
        await pay(qris["xendit_invoice"])
        await platform("done", service="ONTICKET", invoice_id=qris["invoice"])

        await checkout(checkout_body("ONMARKET", "BALANCE", ["CLI-4"]))

        delivery = await checkout(
            checkout_body("ONDELIVERY", "XENDIT", ["CLI-5"], waybill_number="OND-CLI-5")
        )
        await pay(delivery["xendit_invoice"])

        canceled = await checkout(checkout_body("ONMARKET", "XENDIT", ["CLI-6"]))
        await platform("cancel", invoice_id=canceled["invoice"])

        late = await checkout(checkout_body("ONMARKET", "XENDIT", ["CLI-7"]))
        clock.now += timedelta(hours=3)
        await _wait_for_status(client, buyer, late["invoice"], "EXPIRED")
        await pay(late["xendit_invoice"])  # kept as the buyer's money


@pytest.fixture(scope="session")
def populated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("populated") / "invoices.db"
    asyncio.run(populate(path))
    return path


@pytest.fixture
def populated(populated_template: Path, tmp_path: Path) -> Path:
    """A private copy of the populated database."""
    path = tmp_path / "populated.db"
    shutil.copy(populated_template, path)
    return path


def execute(database: Path, *statements: str, parameters: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement, parameters if "?" in statement else ())
    finally:
        conn.close()


def scalar(database: Path, sql: str) -> Any:
    conn = sqlite3.connect(database)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


# -- users add -----------------------------------------------------------------------------------


async def _can_log_in(database: Path, username: str, password: str) -> bool:
    """POST /auth on an app (production mode, so no dev accounts) over ``database``."""
    config = load_config(
        None,
        {},
        database=str(database),
        mode="production",
        token_secret="t" * 32,
        callback_token="c" * 32,
        webhook_secret_key="w" * 32,
        log_level="WARNING",
    )
    async with TestClient(TestServer(create_app(config))) as client:
        response = await client.post("/auth", json={"username": username, "password": password})
        await response.read()
        return response.status == 200


async def test_users_add_creates_an_account_that_can_log_in(workdir: Path) -> None:
    """The password is read from stdin; the account logs in with it and with nothing else."""
    password = "correct horse battery"
    result = await asyncio.to_thread(
        run_cli, workdir, "users", "add", "--role", "buyer", "alice", stdin=password + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout
    assert password not in result.stdout + result.stderr

    database = workdir / "data" / "invoices.db"  # config.yaml's relative path, in the cwd
    assert database.exists()
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute(
            "SELECT role, platform, password_hash FROM users WHERE username = 'alice'"
        ).fetchall()
    finally:
        conn.close()
    assert len(rows) == 1
    role, platform, password_hash = rows[0]
    assert (role, platform) == ("buyer", None)
    assert password not in password_hash
    assert password_hash.startswith("scrypt$")
    assert verify_password(password, password_hash)

    assert await _can_log_in(database, "alice", password)
    assert not await _can_log_in(database, "alice", "wrong password")


async def test_users_add_a_platform_account_for_its_service(workdir: Path) -> None:
    """--role platform --platform ONMARKET makes an account whose Basic login works."""
    result = await asyncio.to_thread(
        run_cli,
        workdir,
        "users",
        "add",
        "--role",
        "platform",
        "--platform",
        "ONMARKET",
        "market2",
        stdin="market2-secret\n",
    )
    assert result.returncode == 0, result.stderr
    database = workdir / "data" / "invoices.db"
    assert scalar(database, "SELECT platform FROM users WHERE username = 'market2'") == "ONMARKET"
    assert await _can_log_in(database, "market2", "market2-secret")


def test_users_add_refuses_a_name_taken(workdir: Path) -> None:
    """A second add of the same name exits non-zero, says so, and keeps the first password."""
    first = run_cli(workdir, "users", "add", "--role", "buyer", "bob", stdin="first-password\n")
    assert first.returncode == 0, first.stderr
    again = run_cli(workdir, "users", "add", "--role", "admin", "bob", stdin="second-password\n")
    assert again.returncode != 0
    assert "bob" in again.stderr
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    database = workdir / "data" / "invoices.db"
    stored = scalar(database, "SELECT password_hash FROM users WHERE username = 'bob'")
    assert verify_password("first-password", stored)
    assert scalar(database, "SELECT role FROM users WHERE username = 'bob'") == "buyer"


def test_users_add_refuses_bad_arguments_with_exit_2(workdir: Path) -> None:
    """--platform missing for a platform account (or given for another), or a password under
    8 characters: exit 2 with a message naming the problem, and no account is created."""
    cases = {
        "platform without --platform": (["--role", "platform", "p1"], "long-enough", "--platform"),
        "buyer with --platform": (
            ["--role", "buyer", "--platform", "ONMARKET", "p2"],
            "long-enough",
            "--platform",
        ),
        "7 characters": (["--role", "buyer", "p3"], "1234567", "8 characters"),
        "empty password": (["--role", "buyer", "p4"], "", "8 characters"),
    }
    results = run_all(
        [
            (workdir, ["users", "add", *args], password + "\n")
            for args, password, _ in cases.values()
        ]
    )
    for (case, (_, password, message)), result in zip(cases.items(), results, strict=True):
        assert result.returncode == 2, (case, result.stderr)
        assert message in result.stderr, (case, result.stderr)
        assert "Traceback" not in result.stderr, case
        if password:
            assert password not in result.stdout + result.stderr, case
    database = workdir / "data" / "invoices.db"
    if database.exists():
        assert scalar(database, "SELECT COUNT(*) FROM users") == 0


def test_users_add_works_on_a_fresh_install(workdir: Path) -> None:
    """The first command of a production install (no data/ folder yet) creates the account."""
    (workdir / "data").rmdir()
    result = run_cli(workdir, "users", "add", "--role", "admin", "root", stdin="root-password\n")
    assert result.returncode == 0, result.stderr
    assert scalar(workdir / "data" / "invoices.db", "SELECT role FROM users") == "admin"


# -- users disable / enable ----------------------------------------------------------------------


def user_events(database: Path, username: str) -> list[tuple[str, str]]:
    """The type and recorded actor of each event of the account's stream, in order."""
    conn = sqlite3.connect(database)
    try:
        rows = conn.execute(
            "SELECT type, metadata FROM events WHERE stream_id = ? ORDER BY version",
            (f"user-{username}",),
        ).fetchall()
    finally:
        conn.close()
    return [(kind, json.loads(metadata)["actor"]) for kind, metadata in rows]


async def test_users_disable_and_enable_are_events_with_the_operator_and_gate_logins(
    workdir: Path,
) -> None:
    """disable: an event naming the operator, no login; again: no event; enable: an event, the
    login works again; the views still equal a replay."""
    database = workdir / "data" / "invoices.db"
    password = "carol-password"
    added = run_cli(workdir, "users", "add", "--role", "buyer", "carol", stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    operator = f"cli:{getpass.getuser()}"

    disabled = run_cli(workdir, "users", "disable", "carol")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.strip() == "account 'carol' disabled"
    assert not await _can_log_in(database, "carol", password)
    again = run_cli(workdir, "users", "disable", "carol")
    assert again.returncode == 0, again.stderr
    assert "already disabled" in again.stdout
    assert scalar(database, "SELECT enabled FROM users WHERE username = 'carol'") == 0

    enabled = run_cli(workdir, "users", "enable", "carol")
    assert enabled.returncode == 0, enabled.stderr
    assert await _can_log_in(database, "carol", password)
    assert user_events(database, "carol") == [
        ("UserRegistered", operator),
        ("UserDisabled", operator),
        ("UserEnabled", operator),
    ]
    verified = run_cli(workdir, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_users_disable_of_an_unknown_account_exits_1_and_writes_nothing(workdir: Path) -> None:
    """A name nobody registered is a clear error, and the log stays as it was."""
    run_cli(workdir, "users", "add", "--role", "admin", "root", stdin="root-password\n")
    database = workdir / "data" / "invoices.db"
    before = scalar(database, "SELECT COUNT(*) FROM events")
    for action in ("disable", "enable"):
        result = run_cli(workdir, "users", action, "nobody")
        assert result.returncode == 1
        assert "no user 'nobody'" in result.stderr
    assert scalar(database, "SELECT COUNT(*) FROM events") == before


# -- rebuild -------------------------------------------------------------------------------------


def test_rebuild_leaves_the_views_identical(workdir: Path, populated: Path) -> None:
    """Dropping the views and replaying the log gives back every row, exactly."""
    before = sqlite_view_text(populated)
    assert all(before[table] != "[]" for table in VIEW_TABLES), before
    events = scalar(populated, "SELECT COUNT(*) FROM events")

    result = run_cli(workdir, "--db", str(populated), "rebuild")
    assert result.returncode == 0, result.stderr
    assert f"rebuilt the views from {events} events" in result.stdout

    after = sqlite_view_text(populated)
    for table in VIEW_TABLES:
        assert after[table] == before[table], table
    assert scalar(populated, "SELECT SUM(balance) FROM account_balances") == 0


def test_rebuild_repairs_an_edited_view(workdir: Path, populated: Path) -> None:
    """A view row edited behind the service's back is put right by a rebuild."""
    before = sqlite_view_text(populated)
    execute(
        populated,
        "UPDATE account_balances SET balance = balance + 1 WHERE account = 'buyer:usernew1'",
        "DELETE FROM invoice_waybills",
        "UPDATE users SET role = 'admin' WHERE username = 'usernew1'",
    )
    assert sqlite_view_text(populated) != before
    result = run_cli(workdir, "--db", str(populated), "rebuild")
    assert result.returncode == 0, result.stderr
    assert sqlite_view_text(populated) == before


def test_db_may_follow_the_command(workdir: Path, populated: Path) -> None:
    """`python -m service verify --db FILE` (as the README writes it) works."""
    results = run_all(
        [
            (workdir, ["verify", "--db", str(populated)], ""),
            (workdir, ["rebuild", "--db", str(populated)], ""),
        ]
    )
    for result in results:
        assert result.returncode == 0, result.stderr


# -- verify --------------------------------------------------------------------------------------


def test_verify_passes_on_a_good_database(workdir: Path, populated: Path) -> None:
    """Exit 0: the chain is intact and the views equal a replay."""
    result = run_cli(workdir, "--db", str(populated), "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "log ok" in result.stdout
    assert "views ok" in result.stdout
    assert "FAILED" not in result.stdout


def test_verify_finds_an_edited_event_and_names_its_position(
    workdir: Path, populated: Path
) -> None:
    """An event edited with the guard dropped: exit 1, and the output names its position."""
    conn = sqlite3.connect(populated)
    try:
        position, data = conn.execute(
            "SELECT position, data FROM events WHERE type = 'BalanceToppedUp' ORDER BY position"
        ).fetchone()
    finally:
        conn.close()
    edited = json.loads(data)
    edited["amount"] += 1_000_000
    execute(
        populated,
        "DROP TRIGGER events_are_append_only_update",
        "UPDATE events SET data = ? WHERE position = ?",
        parameters=(json.dumps(edited), position),
    )
    result = run_cli(workdir, "--db", str(populated), "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"position {position}" in result.stdout
    assert "views ok" not in result.stdout
    assert "Traceback" not in result.stderr


def test_verify_finds_a_missing_guard(workdir: Path, populated: Path) -> None:
    """Only the guard dropped, nothing edited: exit 1, naming the trigger."""
    execute(populated, "DROP TRIGGER events_are_append_only_delete")
    result = run_cli(workdir, "--db", str(populated), "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "events_are_append_only_delete" in result.stdout


VIEW_EDITS = {
    "account_balances": (
        "UPDATE account_balances SET balance = balance + 1 WHERE account = 'buyer:usernew1'"
    ),
    "invoice_view": "UPDATE invoice_view SET status = 'PAID' WHERE status = 'CANCELED'",
    "ledger_entries": (
        "DELETE FROM ledger_entries WHERE rowid = (SELECT MAX(rowid) FROM ledger_entries)"
    ),
    "users": "UPDATE users SET role = 'admin' WHERE username = 'usernew1'",
    "invoice_waybills": "DELETE FROM invoice_waybills",
    "webhook_endpoints": "UPDATE webhook_endpoints SET disabled = 1",
    "webhook_messages": "UPDATE webhook_messages SET status = 'delivered'",
    "webhook_attempts": "DELETE FROM webhook_attempts",
}


def test_verify_finds_an_edited_view_and_names_the_table(workdir: Path, populated: Path) -> None:
    """A view row that no longer equals the replay: exit 1, and the output names the table.

    One edit in each view table; verify names every one of them, and nothing else.
    """
    assert set(VIEW_EDITS) == set(VIEW_TABLES)
    execute(populated, *VIEW_EDITS.values())
    result = run_cli(workdir, "--db", str(populated), "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "log ok" in result.stdout
    assert "views ok" not in result.stdout
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    named = {table for table in VIEW_TABLES for line in failures if f"view {table} " in line}
    assert named == set(VIEW_TABLES), failures
    assert len(failures) == len(VIEW_TABLES), failures


def test_verify_names_the_one_edited_view(workdir: Path, populated: Path) -> None:
    """The brief's case on its own: one balance nudged by 1, only account_balances named."""
    execute(populated, VIEW_EDITS["account_balances"])
    result = run_cli(workdir, "--db", str(populated), "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1, failures
    assert "account_balances" in failures[0]
    assert "buyer:usernew1" in failures[0]


def test_verify_on_a_missing_file_exits_2(workdir: Path, tmp_path: Path) -> None:
    """No such database: exit 2 with a message, and no file is created."""
    missing = tmp_path / "nowhere" / "missing.db"
    result = run_cli(workdir, "--db", str(missing), "verify")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert not missing.exists()


# -- serve ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`python -m service serve --port N` running in ``workdir``; killed if a test leaves it."""
    port = _free_port()
    log = workdir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port)],
            cwd=workdir,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _get_health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_serve_answers_health_and_stops_cleanly(
    served: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    """The service starts, answers /health within 10 s, and exits 0 within 5 s of SIGTERM."""
    process, port, log = served
    deadline = time.monotonic() + 10
    health = None
    while health is None and time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        health = _get_health(port)
        if health is None:
            time.sleep(0.1)
    assert health is not None, log.read_text()
    assert health["status"] == "ok"
    assert health["head_position"] >= 6  # the development accounts

    process.terminate()
    assert process.wait(timeout=5) == 0, log.read_text()
    output = log.read_text()
    assert "Traceback" not in output
    assert '"event": "request"' in output or "request" in output
