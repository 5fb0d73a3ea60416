"""The service as a real process for the fuzzer: its own port, a copy of a seeded database.

``python -m service serve`` runs in development mode on a fresh copy of a template database
(the development accounts, a few invoices in every state), so each run starts from the same
data and leaves nothing behind. The fuzzer signs in as the real accounts: a Bearer token from
``POST /auth`` for the buyer ``usernew1``, Basic credentials of ``onmarket`` (platform) and
``admin``, and the callback token from the configuration.

How many requests were made, and what they answered, is printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from service.config import load_config
from tests.credentials import basic
from tests.integration.cli import environment

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
PAID_POOL = 12


@dataclass
class Seeded:
    """Invoices the seeding made, for the fuzzer to aim at."""

    invoices: list[dict[str, Any]] = field(default_factory=list)

    def tagged(self, tag: str) -> dict[str, Any]:
        return next(invoice for invoice in self.invoices if invoice["tag"] == tag)


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path
    callback_token: str
    bearer: str
    seeded: Seeded

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def errors_logged(self) -> list[str]:
        """Log lines of unhandled errors (each with its traceback)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "unhandled error":
                found.append(line)
        return found


@dataclass
class Stats:
    """What the fuzzer sent and what came back."""

    started: float = field(default_factory=time.perf_counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)

    def by_operation(self) -> str:
        operations = sorted({operation for operation, _ in self.statuses})
        return "\n".join(
            f"  {operation}: "
            + ", ".join(
                f"{status}×{n}"
                for (op, status), n in sorted(self.statuses.items())
                if op == operation
            )
            for operation in operations
        )

    def summary(self) -> str:
        by_status: Counter[int] = Counter()
        for (_, status), n in self.statuses.items():
            by_status[status] += n
        return (
            f"fuzz: {self.requests} requests in {time.perf_counter() - self.started:.1f} s;"
            f" 5xx: {self.server_errors()}; failing checks: {sum(self.failures.values())}"
            f" {dict(self.failures)}; statuses: {dict(sorted(by_status.items()))}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(folder: Path, database: Path, port: int) -> tuple[subprocess.Popen[bytes], Path, Path]:
    config = folder / "config.yaml"
    config.write_text(
        "mode: development\n"
        f"database: {database}\n"
        f"public_base_url: http://127.0.0.1:{port}\n"
        "refund_delay_seconds: 0\n"
        "log_format: json\n"
        "log_level: INFO\n"
    )
    log = folder / "server.log"
    env = environment()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log, config


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            if requests.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start in {START_TIMEOUT} s:\n{log.read_text()}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _checkout(base_url: str, bearer: str, source: str, tag: str) -> dict[str, Any]:
    lines = [
        {
            "amount": 10000,
            "freight_charge": 5000,
            "insurance_amount": 100,
            "commission_onmarket": 1000,
            "seller_username": "seller1",
            "invoice_onmarket": f"INV/FUZZ/{tag}-{n}",
        }
        for n in (1, 2)
    ]
    body: dict[str, Any] = {
        "total_amount": 30200,
        "service": "ONMARKET",
        "source": source,
        "transaction": lines,
    }
    answer = requests.post(
        f"{base_url}/payment-checkout",
        json=body,
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )
    answer.raise_for_status()
    created: dict[str, Any] = answer.json()
    return {
        "tag": tag,
        "invoice": created["invoice"],
        "reference": created["xendit_invoice"],
        "amount": 30200,
        "source": source,
        "invoice_onmarket": [line["invoice_onmarket"] for line in lines],
    }


def _seed(base_url: str, bearer: str) -> Seeded:
    """Invoices in every state: PENDING (XENDIT, QRIS; one kept for the sweep's mark-paid),
    PAID, marked paid, partly completed, refunding, canceled, and paid from the balance; and a
    pool of PAID ones for the fuzzer to complete and refund."""

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        requests.post(
            f"{base_url}{path}", json=body, headers=headers, timeout=30
        ).raise_for_status()

    post("/balance/topup", {"username": "usernew1", "amount": 10**9}, basic("admin"))
    seeded = Seeded()
    for tag, source in (
        ("pending", "XENDIT"),
        ("qris", "QRIS"),
        ("balance", "BALANCE"),
        ("to-mark", "XENDIT"),
        ("marked", "XENDIT"),
    ):
        seeded.invoices.append(_checkout(base_url, bearer, source, tag))
    marked = {"platform": "ONMARKET", "reference": "FUZZ-TRF-1", "reason": "bank transfer"}
    post(
        "/invoice/mark-paid",
        {**marked, "invoice_id": seeded.tagged("marked")["invoice"]},
        basic("onmarket"),
    )
    paid_pool = tuple(f"paid-{n}" for n in range(PAID_POOL))
    for tag in ("paid", "done", "refund", "canceled", *paid_pool):
        invoice = _checkout(base_url, bearer, "XENDIT", tag)
        seeded.invoices.append(invoice)
        if tag == "canceled":
            body = {"platform": "ONMARKET", "invoice_id": invoice["invoice"]}
            post("/invoice/cancel", body, basic("onmarket"))
            continue
        post(f"/sandbox/invoices/{invoice['reference']}/pay", {}, {})
        first = {
            "platform": "ONMARKET",
            "invoice_id": invoice["invoice"],
            "invoice_onmarket": invoice["invoice_onmarket"][0],
        }
        if tag == "done":
            post("/invoice/done", first, basic("onmarket"))
        elif tag == "refund":
            post("/invoice/cancel", {**first, "buyer_username": "usernew1"}, basic("onmarket"))
    return seeded


@pytest.fixture(scope="session")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service on a copy of a seeded database, for the whole fuzzing session."""
    template = tmp_path_factory.mktemp("fuzz-template")
    port = _free_port()
    process, log, config_path = _start(template, template / "invoices.db", port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base_url, process, log)
        bearer = _login(base_url)
        seeded = _seed(base_url, bearer)
    finally:
        _stop(process)

    run = tmp_path_factory.mktemp("fuzz-run")
    for name in ("invoices.db", "invoices.db-wal"):
        if (template / name).exists():
            shutil.copy(template / name, run / name)
    port = _free_port()
    process, log, config_path = _start(run, run / "invoices.db", port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base_url, process, log)
        config = load_config(config_path, {})
        yield Server(base_url, process, log, config.callback_token, _login(base_url), seeded)
    finally:
        _stop(process)


def _login(base_url: str) -> str:
    answer = requests.post(
        f"{base_url}/auth", json={"username": "usernew1", "password": "usernew1"}, timeout=30
    )
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


@pytest.fixture(scope="session")
def fuzz_stats(request: pytest.FixtureRequest) -> Stats:
    stats = Stats()
    request.config.stash[STATS_KEY] = stats
    return stats


STATS_KEY = pytest.StashKey[Stats]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    stats = config.stash.get(STATS_KEY, None)
    if stats is not None and stats.requests:
        terminalreporter.write_line(stats.summary())
        if config.get_verbosity() > 0:
            terminalreporter.write_line(stats.by_operation())
        report = os.environ.get("FUZZ_REPORT")
        if report:
            Path(report).write_text(stats.summary() + "\n")
