"""``python -m service serve --port N``: the sandbox's payment links point at port N.

When ``public_base_url`` is not set, it is derived from the address the service listens on, so
a real ``serve`` process on a free port answers a checkout with a ``payment_url`` on that port,
and that URL opens the sandbox's payment page.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli import REPO_ROOT, environment

READY_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _request(url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """The answer's status and body (JSON when it is JSON, text otherwise)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text, kind = response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as error:
        status, text, kind = error.code, error.read().decode(), error.headers
    return status, json.loads(text) if kind.get_content_type() == "application/json" else text


@pytest.fixture(params=["repo-config", "no-config"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """``serve --port <free port>`` on a fresh database, with the repository's config.yaml (as
    ``make run`` uses it) or with no settings file at all; the port it listens on."""
    config = ["--config", str(REPO_ROOT / "config.yaml")] if request.param == "repo-config" else []
    for _ in range(3):  # another program may take the free port before the service binds it
        port = _free_port()
        log = tmp_path / f"serve-{port}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "service", "serve", *config),
                    *("--port", str(port), "--db", str(tmp_path / "invoices.db")),
                ],
                cwd=tmp_path,  # no config.yaml here: only --config names one
                env={**environment(), "INVOICE_LOG_FORMAT": "json"},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            if _ready(process, port):
                yield port
                return
        finally:
            process.terminate()
            process.wait(timeout=10)
        if "address already in use" not in log.read_text().lower():
            break
    raise AssertionError(f"the service did not start:\n{log.read_text()}")


def _ready(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if _request(f"http://127.0.0.1:{port}/health")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def test_payment_url_names_the_port_serve_listens_on(served: int) -> None:
    """A checkout's payment_url is on --port, and GET of it answers the sandbox's page."""
    base = f"http://127.0.0.1:{served}"
    status, login = _request(f"{base}/auth", {"username": "usernew1", "password": "usernew1"})
    assert status == 200, login
    checkout = {
        "total_amount": 15100,
        "service": "ONMARKET",
        "source": "XENDIT",
        "transaction": [
            {
                "amount": 10000,
                "freight_charge": 5000,
                "insurance_amount": 100,
                "commission_onmarket": 1000,
                "seller_username": "seller1",
                "invoice_onmarket": "INV/ONM/PORT-1",
            }
        ],
    }
    headers = {"Authorization": f"Bearer {login['token']}"}
    status, created = _request(f"{base}/payment-checkout", checkout, headers)
    assert status == 200, created
    assert created["payment_url"] == f"{base}/sandbox/checkout/{created['xendit_invoice']}"
    status, page = _request(created["payment_url"])
    assert status == 200
    assert created["xendit_invoice"] in page
