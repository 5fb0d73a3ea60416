"""JSON log lines stay whole when several processes share one stderr, as the workers of
``serve --workers N`` do: each line is one write, so a log collector reads every line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.cli import REPO_ROOT

LINES = 3000
PROCESSES = 3

WRITER = f"""
import structlog
from service.logging import configure_logging

configure_logging("INFO", "json")
log = structlog.get_logger("test")
for number in range({LINES}):
    log.info("request", path="/payment-checkout", number=number, padding="x" * 200)
"""


def test_processes_sharing_stderr_write_whole_lines(tmp_path: Path) -> None:
    shared = tmp_path / "shared.log"
    with shared.open("ab") as stderr:
        writers = [
            subprocess.Popen([sys.executable, "-c", WRITER], cwd=REPO_ROOT, stderr=stderr)
            for _ in range(PROCESSES)
        ]
        for writer in writers:
            assert writer.wait(60) == 0

    lines = shared.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # a line two writes met in does not parse
    assert len(entries) == LINES * PROCESSES
    assert sorted(entry["number"] for entry in entries) == sorted(list(range(LINES)) * PROCESSES)
