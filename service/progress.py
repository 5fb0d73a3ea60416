"""Progress of long commands: a bar with events/s and ETA on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
PLAIN_EVERY_SECONDS = 5.0


class Progress:
    """Call with ``(done, total)`` as work advances; ``finish()`` at the end."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self._what = what
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._started = time.monotonic()
        self._last_line = 0.0
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        self._done = done
        now = time.monotonic()
        elapsed = max(now - self._started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        share = done / total if total else 1.0
        if self._tty:
            filled = int(share * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self._stream.write(
                f"\r{self._what} [{bar}] {share:6.1%} {done:,}/{total:,}"
                f" {rate:,.0f}/s ETA {eta:4.0f}s "
            )
            self._stream.flush()
        elif now - self._last_line >= PLAIN_EVERY_SECONDS or done == total:
            self._last_line = now
            print(
                f"{self._what}: {done:,} of {total:,} ({share:.0%}), {rate:,.0f}/s,"
                f" about {eta:.0f}s left",
                file=self._stream,
            )

    def finish(self) -> float:
        """End the bar's line; return the elapsed seconds."""
        if self._tty:
            self._stream.write("\n")
        return time.monotonic() - self._started
