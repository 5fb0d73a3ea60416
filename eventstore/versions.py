"""Expected-version markers for optimistic concurrency.

Stream versions start at 1, so a stream with no events is at version 0: ``NO_STREAM`` is that
version, and ``ANY`` skips the check.
"""

from __future__ import annotations

from typing import Final

NO_STREAM: Final = 0
ANY: Final = -1


def describe(expected: int) -> str:
    """The expected version in words, for error messages."""
    if expected == NO_STREAM:
        return "no stream"
    if expected == ANY:
        return "any version"
    return str(expected)
