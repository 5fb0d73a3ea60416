"""Processes for the HTTP benchmark: the service, the bare app and the floor app, started as users
start them.

Each server is its own process (``python -m service serve`` with ``INVOICE_*`` settings,
``python -m bench.bare_app`` or ``python -m bench.floor_app``), its stdout and stderr in a log
file, ready once ``GET /health`` answers 200. Its CPU time and peak memory are read from
``/proc/<pid>``; the peak (``VmHWM``) is reset before each measurement by writing ``5`` to
``/proc/<pid>/clear_refs``. ``stop`` ends it (SIGINT, aiohttp's graceful shutdown; SIGKILL if
that takes too long) and is safe to call twice.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0


class ServerFailed(RuntimeError):
    """A server did not start, or exited while it was needed."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """This environment without ``INVOICE_*`` settings, plus ``extra``; the project importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("INVOICE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class Server:
    """A server process, its port and its log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, log: Path):
        self.name, self.port, self.log_path = name, port, log
        self._log: IO[bytes] = log.open("ab")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=5) as answer:
            return json.load(answer)

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Wait for ``GET /health`` to answer 200; the seconds it took."""
        started = time.monotonic()
        while True:
            self.check_alive()
            try:
                self.get_json("/health")
                return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() - started > timeout:
                raise ServerFailed(f"{self.name} not ready after {timeout:.0f}s\n{self.log_tail()}")
            time.sleep(0.1)

    def wait_settled(
        self, timeout: float, idle_share: float = 0.05, interval: float = 0.5
    ) -> float:
        """Wait until the server idles (under ``idle_share`` of a core for two ``interval``s in
        a row): its start-up work (a subscription catching up on the log, say) must not run
        during a measurement. The seconds it took."""
        started = time.monotonic()
        quiet = 0
        before = self.cpu_seconds()
        while quiet < 2 and time.monotonic() - started < timeout:
            time.sleep(interval)
            self.check_alive()
            now = self.cpu_seconds()
            quiet = quiet + 1 if now - before < idle_share * interval else 0
            before = now
        return time.monotonic() - started

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerFailed(
                f"{self.name} exited with status {self.process.returncode}\n{self.log_tail()}"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process, all its threads."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak_rss(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0); False if that is not allowed here."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def peak_rss_kib(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(f"  {self.name} | {line}" for line in text[-lines:])


def start_service(
    name: str,
    database: Path | str,
    log: Path,
    *,
    token_secret: str,
    synchronous: str,
    workers: int = 1,
    settings: dict[str, str] | None = None,
) -> Server:
    """``python -m service serve`` as a user runs it (from the project folder, so it reads
    ``config.yaml``), in development mode with the sandbox gateway, logging JSON at INFO; with
    ``workers`` > 1, ``serve --workers N`` (the pid is then the supervisor's); ``settings``
    are more of its settings (``{"metrics": "false"}``)."""
    port = free_port()
    env = child_environment(
        {
            "INVOICE_MODE": "development",
            "INVOICE_GATEWAY": "sandbox",
            "INVOICE_HOST": "127.0.0.1",
            "INVOICE_PORT": str(port),
            "INVOICE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "INVOICE_DATABASE": str(database),
            "INVOICE_SYNCHRONOUS": synchronous,
            "INVOICE_TOKEN_SECRET": token_secret,
            "INVOICE_LOG_LEVEL": "INFO",
            "INVOICE_LOG_FORMAT": "json",
            **{f"INVOICE_{name.upper()}": value for name, value in (settings or {}).items()},
        }
    )
    argv = [sys.executable, "-m", "service", "serve", "--workers", str(workers)]
    return Server(name, argv, env, port, log)


def start_bare(log: Path, get_body: Path) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.bare_app",
        "--port",
        str(port),
        "--get-body",
        str(get_body),
    ]
    return Server("bare app", argv, child_environment({}), port, log)


def start_floor(
    log: Path, database: Path, get_body: Path, *, token_secret: str, synchronous: str
) -> Server:
    port = free_port()
    argv = [
        *[sys.executable, "-m", "bench.floor_app", "--port", str(port)],
        *["--database", str(database), "--token-secret", token_secret],
        *["--synchronous", synchronous, "--get-body", str(get_body)],
    ]
    return Server("floor app", argv, child_environment({}), port, log)


def log_summary(path: Path) -> tuple[int, Counter[str]]:
    """(lines, count of each level) of a server's JSON-lines log; other lines count as 'text'."""
    levels: Counter[str] = Counter()
    lines = 0
    with path.open("rb") as log:
        for line in log:
            lines += 1
            try:
                levels[str(json.loads(line).get("level", "?"))] += 1
            except (ValueError, AttributeError):
                levels["text"] += 1
    return lines, levels
