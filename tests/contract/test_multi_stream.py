"""Atomic multi-stream appends: all streams change together, or none does."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import NO_STREAM, ConcurrencyError, EventStore, NewEvent, StreamAppend


def event(type_: str) -> list[NewEvent]:
    return [NewEvent(type_, {})]


async def test_several_streams_are_appended_in_one_transaction(store: EventStore) -> None:
    """Each stream gets its own versions; positions follow the order given."""
    invoice, balance = await store.append_streams(
        [
            StreamAppend("invoice-1", NO_STREAM, event("InvoiceCreated")),
            StreamAppend("balance-u1", NO_STREAM, [NewEvent("Debited", {}), NewEvent("X", {})]),
        ]
    )

    assert [(e.stream_id, e.version, e.position) for e in invoice + balance] == [
        ("invoice-1", 1, 1),
        ("balance-u1", 1, 2),
        ("balance-u1", 2, 3),
    ]
    assert len({e.recorded_at for e in invoice + balance}) == 1


async def test_a_conflict_on_one_stream_writes_nothing_on_any(store: EventStore) -> None:
    """The balance stream moved on: the invoice and the reservation are not written either."""
    await store.append("balance-u1", event("Credited"), NO_STREAM)

    with pytest.raises(ConcurrencyError) as raised:
        await store.append_streams(
            [
                StreamAppend("invoice-2", NO_STREAM, event("InvoiceCreated")),
                StreamAppend("reservation-INV-1", NO_STREAM, event("Reserved")),
                StreamAppend("balance-u1", NO_STREAM, event("Debited")),
            ]
        )

    assert raised.value.stream_id == "balance-u1"
    assert [e.stream_id async for e in store.read_all()] == ["balance-u1"]
    assert await store.stream_version("invoice-2") == 0


async def test_a_failed_caller_does_not_fail_the_others_in_its_batch(store: EventStore) -> None:
    """In one group commit, only the conflicting multi-stream append fails."""
    await store.append("shared", event("Taken"), NO_STREAM)

    results = await asyncio.gather(
        *(
            store.append_streams(
                [
                    StreamAppend(f"invoice-{i}", NO_STREAM, event("Created")),
                    StreamAppend("shared" if i == 3 else f"own-{i}", NO_STREAM, event("Reserved")),
                ]
            )
            for i in range(8)
        ),
        return_exceptions=True,
    )

    failed = [i for i, result in enumerate(results) if isinstance(result, Exception)]
    assert failed == [3]
    assert isinstance(results[3], ConcurrencyError)
    streams = {e.stream_id async for e in store.read_all()}
    assert "invoice-3" not in streams
    assert {f"invoice-{i}" for i in range(8) if i != 3} <= streams
    assert [e.position async for e in store.read_all()] == list(range(1, 16))


async def test_two_appends_to_one_stream_in_one_request_are_refused(store: EventStore) -> None:
    """Naming a stream twice is ambiguous: refused before anything is queued."""
    with pytest.raises(ValueError, match="twice"):
        await store.append_streams(
            [StreamAppend("s", NO_STREAM, event("A")), StreamAppend("s", 1, event("B"))]
        )

    assert await store.head_position() == 0
