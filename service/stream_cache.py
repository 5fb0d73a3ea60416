"""A small cache of folded stream states, so a decision reads only what it has not seen.

Each entry is a stream's state and the version it was folded to. The log is append-only (the
database refuses UPDATE and DELETE, and ``verify`` proves the chain), so a cached state of the
first ``n`` events stays true forever: a load reads just the events after ``n`` and folds them
on. Nothing is decided on the cache alone: every append still names the version it was decided
on, and a stale read loses with ``ConcurrencyError`` as any other race does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

Fold = Callable[[Any, Any], Any]


class FoldedStates:
    """The most recently used ``size`` (stream, fold) states, least recently used dropped."""

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._states: OrderedDict[tuple[str, Hashable], tuple[Any, int]] = OrderedDict()

    def get(self, stream_id: str, fold: Fold) -> tuple[Any, int]:
        """The cached state and its version; ``(None, 0)`` for a stream not cached."""
        key = (stream_id, fold)
        entry = self._states.get(key)
        if entry is None:
            return None, 0
        self._states.move_to_end(key)
        return entry

    def put(self, stream_id: str, fold: Fold, state: Any, version: int) -> None:
        """Remember ``state`` at ``version`` unless a later version is already cached (two
        concurrent loads may finish in either order)."""
        key = (stream_id, fold)
        cached = self._states.get(key)
        if cached is not None and cached[1] >= version:
            return
        self._states[key] = (state, version)
        self._states.move_to_end(key)
        if len(self._states) > self._size:
            self._states.popitem(last=False)

    def __len__(self) -> int:
        return len(self._states)
