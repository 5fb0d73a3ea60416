"""Event ids make retries safe: a stored id is never stored twice, however late the retry."""

from __future__ import annotations

import pytest

from eventstore import ANY, NO_STREAM, DuplicateEventError, EventStore, NewEvent, StreamAppend
from tests.contract.backends import Backend


async def test_a_retried_append_returns_the_stored_events_and_writes_nothing(
    store: EventStore,
) -> None:
    """The same events again (a client retry) answer as the first time did."""
    batch = [NewEvent("Created", {"a": 1}), NewEvent("Paid", {"b": 2})]
    first = await store.append("s", batch, NO_STREAM)

    again = await store.append("s", batch, NO_STREAM)
    with_any = await store.append("s", batch, ANY)

    assert again == first
    assert with_any == first
    assert await store.head_position() == 2


async def test_a_retry_after_a_restart_is_still_a_no_op(backend: Backend) -> None:
    """Idempotency lives in the log itself, not in a cache that a restart forgets."""
    event = NewEvent("Created", {"a": 1})
    async with await backend.open() as store:
        first = await store.append("s", [event], NO_STREAM)
    async with await backend.open() as store:
        again = await store.append("s", [event], NO_STREAM)
        assert await store.head_position() == 1

    assert again == first


async def test_a_retried_multi_stream_append_returns_every_stream(store: EventStore) -> None:
    """A retry of an atomic append to two streams returns both, unchanged."""
    appends = [
        StreamAppend("invoice", NO_STREAM, [NewEvent("Created", {})]),
        StreamAppend("balance", NO_STREAM, [NewEvent("Debited", {})]),
    ]
    first = await store.append_streams(appends)

    assert await store.append_streams(appends) == first
    assert await store.head_position() == 2


async def test_mixing_stored_and_new_ids_is_refused(store: EventStore) -> None:
    """Half a retry is not a retry: nothing of it is written."""
    stored = NewEvent("Created", {})
    await store.append("s", [stored], NO_STREAM)

    with pytest.raises(DuplicateEventError, match="1 of the 2"):
        await store.append("s", [stored, NewEvent("Paid", {})], ANY)

    assert await store.head_position() == 1


async def test_an_id_stored_in_another_stream_is_refused(store: EventStore) -> None:
    """Reusing an event id for a different stream is a bug, not a retry."""
    event = NewEvent("Created", {})
    await store.append("first", [event], NO_STREAM)

    with pytest.raises(DuplicateEventError, match="first"):
        await store.append("second", [event], NO_STREAM)

    assert await store.stream_version("second") == 0


async def test_one_id_twice_in_one_append_is_refused(store: EventStore) -> None:
    """Two events with one id cannot both be stored."""
    event = NewEvent("Created", {})

    with pytest.raises(DuplicateEventError):
        await store.append("s", [event, event], NO_STREAM)
    with pytest.raises(DuplicateEventError):
        await store.append_streams(
            [StreamAppend("a", NO_STREAM, [event]), StreamAppend("b", NO_STREAM, [event])]
        )

    assert await store.head_position() == 0
