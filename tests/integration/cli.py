"""Running ``python -m service`` as a user would, for the command-line tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0


def environment() -> dict[str, str]:
    """This process's environment without INVOICE_* settings, with the repository importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("INVOICE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def run_cli(
    workdir: Path, *args: str, stdin: str = "", timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """The command's exit code and output; ``stdin`` is all it can read."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=workdir,
        env=environment(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
