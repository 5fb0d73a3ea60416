"""Bad input is refused with a named error before anything is queued or written."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from eventstore import (
    NO_STREAM,
    EventStore,
    InvalidEvent,
    InvalidStreamId,
    NewEvent,
    SerializationError,
    StoreClosedError,
)
from tests.contract.backends import Backend


@pytest.mark.parametrize(
    "data",
    [
        {"tags": {"a", "b"}},
        {"when": datetime(2024, 1, 1, tzinfo=UTC)},
        {"amount": math.nan},
        {"nested": [{"amount": math.inf}]},
        {1: "integer key"},
        {"huge": 2**70},
        {"object": object()},
    ],
    ids=["set", "datetime", "nan", "nested-infinity", "int-key", "huge-int", "object"],
)
async def test_data_that_is_not_json_is_refused(store: EventStore, data: Any) -> None:
    """Nothing that would read back differently, or not at all, is stored."""
    with pytest.raises(SerializationError):
        await store.append("s", [NewEvent("Created", data)], NO_STREAM)

    assert await store.head_position() == 0


async def test_a_null_that_is_really_null_is_kept(store: EventStore) -> None:
    """The NaN guard does not refuse an honest None."""
    (recorded,) = await store.append("s", [NewEvent("Created", {"waybill": None})], NO_STREAM)

    assert recorded.data == {"waybill": None}


@pytest.mark.parametrize("data", [["a", "list"], "text", None])
async def test_data_must_be_a_json_object(store: EventStore, data: Any) -> None:
    """Event data is an object, so that events can grow fields."""
    with pytest.raises(InvalidEvent):
        await store.append("s", [NewEvent("Created", data)], NO_STREAM)


@pytest.mark.parametrize("stream_id", ["", None, 42, "line\nbreak", "x" * 256])
async def test_a_bad_stream_id_is_refused(store: EventStore, stream_id: Any) -> None:
    """Empty, non-text, control characters or over 255 characters: InvalidStreamId."""
    with pytest.raises(InvalidStreamId):
        await store.append(stream_id, [NewEvent("Created", {})], NO_STREAM)

    assert await store.head_position() == 0


@pytest.mark.parametrize(
    "event",
    [
        NewEvent("", {}),
        NewEvent("Tab\tbed", {}),
        NewEvent("Created", {}, event_id=""),
        NewEvent("Created", {}, metadata="not an object"),  # type: ignore[arg-type]
    ],
    ids=["empty-type", "control-in-type", "empty-id", "metadata-not-object"],
)
async def test_a_malformed_event_is_refused(store: EventStore, event: NewEvent) -> None:
    """Types and ids are names; metadata is an object."""
    with pytest.raises(InvalidEvent):
        await store.append("s", [event], NO_STREAM)


async def test_an_append_without_events_is_refused(store: EventStore) -> None:
    """An empty append would move nothing and hide a caller's bug."""
    with pytest.raises(ValueError, match="no events"):
        await store.append("s", [], NO_STREAM)


async def test_an_expected_version_below_any_is_refused(store: EventStore) -> None:
    """Only a version, NO_STREAM (0) or ANY (-1) make sense."""
    with pytest.raises(ValueError, match="expected version"):
        await store.append("s", [NewEvent("Created", {})], -2)


async def test_a_bad_event_fails_alone_among_concurrent_appends(store: EventStore) -> None:
    """Validation happens in the caller: the good appends around a bad one are written."""
    import asyncio

    results = await asyncio.gather(
        store.append("good-1", [NewEvent("Created", {})], NO_STREAM),
        store.append("bad", [NewEvent("Created", {"x": {1, 2}})], NO_STREAM),
        store.append("good-2", [NewEvent("Created", {})], NO_STREAM),
        return_exceptions=True,
    )

    assert isinstance(results[1], SerializationError)
    assert {e.stream_id async for e in store.read_all()} == {"good-1", "good-2"}


async def test_a_closed_store_refuses_work(backend: Backend) -> None:
    """After close, appends and reads raise StoreClosedError instead of hanging."""
    store = await backend.open()
    await store.close()

    with pytest.raises(StoreClosedError):
        await store.append("s", [NewEvent("Created", {})], NO_STREAM)
    with pytest.raises(StoreClosedError):
        await store.head_position()
    await store.close()  # closing twice is harmless
