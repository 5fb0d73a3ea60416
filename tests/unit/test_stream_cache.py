"""The cache of folded stream states: most recently used kept, never moved backwards."""

from __future__ import annotations

import pytest

from service.stream_cache import FoldedStates


def count(state: int | None, event: object) -> int:
    return (state or 0) + 1


def last(state: object, event: object) -> object:
    return event


def test_an_unknown_stream_starts_from_nothing() -> None:
    assert FoldedStates().get("s", count) == (None, 0)


def test_a_state_is_kept_per_stream_and_fold() -> None:
    states = FoldedStates()
    states.put("s", count, 3, 3)
    states.put("s", last, "E3", 3)

    assert states.get("s", count) == (3, 3)
    assert states.get("s", last) == ("E3", 3)
    assert states.get("t", count) == (None, 0)


def test_an_older_version_never_replaces_a_newer_one() -> None:
    """Two loads of one stream may finish in either order; the later version stays."""
    states = FoldedStates()
    states.put("s", count, 5, 5)
    states.put("s", count, 4, 4)

    assert states.get("s", count) == (5, 5)


def test_the_least_recently_used_state_is_dropped_beyond_the_size() -> None:
    states = FoldedStates(size=2)
    states.put("a", count, 1, 1)
    states.put("b", count, 1, 1)
    states.get("a", count)  # a is now more recent than b
    states.put("c", count, 1, 1)

    assert len(states) == 2
    assert states.get("b", count) == (None, 0)
    assert states.get("a", count) == (1, 1)


def test_the_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FoldedStates(size=0)
