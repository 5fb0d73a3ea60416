"""Browser fixtures: the real service on a real TCP port, and Debian's Chromium via Playwright.

Playwright's Python package brings its driver but not a browser: it drives the Chromium that
Debian's ``chromium`` package installs at ``/usr/bin/chromium`` (``.ci/run`` installs it; never
``playwright install``). Without that browser, or without Playwright, the tests are skipped with
the reason, except in CI (``CI`` set), where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from service.app import create_app
from service.config import Config, load_config
from tests.credentials import bearer
from tests.e2e.conftest import ROLES, FakeClock, clock, template_db  # noqa: F401

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
# As root, in a machine whose network is closed: no sandbox, and none of Chromium's own
# background connections (each would be refused, some at every start).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: the browser tests must run in CI")
    pytest.skip(reason)


def require_browser() -> None:
    """Skip (fail in CI) unless Playwright and Debian's Chromium are both here."""
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        _missing(f"no Chromium at {CHROMIUM}: apt-get install chromium")


@dataclass(frozen=True)
class Server:
    """The service listening on 127.0.0.1; ``base_url`` is also its public_base_url."""

    base_url: str
    config: Config
    clock: FakeClock

    def bearer(self, username: str) -> dict[str, str]:
        return bearer(self.config, self.clock, username, *ROLES.get(username, ("buyer", None)))


@contextlib.asynccontextmanager
async def serve(
    folder: Path, template: Path, app_clock: FakeClock, **settings: Any
) -> AsyncIterator[Server]:
    """The real app on a real port, on a copy of ``template``, with ``settings`` over the
    tests' own. The socket is bound first, so the app can be created with its own origin as
    public_base_url (the sandbox gateway builds payment_url from it)."""
    database = folder / "invoices.db"
    shutil.copy(template, database)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = load_config(
        None,
        {},
        database=str(database),
        public_base_url=base_url,
        refund_delay_seconds=0,
        expiry_interval_seconds=0.05,
        log_format="json",
        **settings,
    )
    runner = web.AppRunner(create_app(config, clock=app_clock))
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield Server(base_url, config, app_clock)
    finally:
        await runner.cleanup()
        sock.close()


@pytest.fixture
async def server(
    tmp_path: Path,
    template_db: Path,  # noqa: F811
    clock: FakeClock,  # noqa: F811
) -> AsyncIterator[Server]:
    """The real app on a real port (``serve``), with the tests' settings."""
    async with serve(tmp_path, template_db, clock) as served:
        yield served


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium, driven by Playwright."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()
