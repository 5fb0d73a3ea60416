"""Unit tests for the one helper every command goes through (``Application.run``): what it
appends, at which versions, and how it retries a lost race.

The store is a fake that keeps streams in memory and can be told to lose the next appends; the
real store's concurrency is the contract suite's and the e2e race tests' business.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    Checkpoint,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    RecordedEvent,
    StreamAppend,
)
from service.application import Conflict
from service.application.handling import MAX_ATTEMPTS, Application, Attempt
from service.domain.balance import Balance, evolve_balance
from service.domain.events import BalanceToppedUp
from service.gateway.port import Gateway
from service.records import encode
from service.views import ReadModel

NOW = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)
STREAM = "balance-usernew1"


def topped_up(amount: int) -> BalanceToppedUp:
    return BalanceToppedUp("usernew1", amount, "admin", NOW)


class FakeStore:
    """Streams in memory; ``lose`` makes the next appends fail as a lost race would."""

    def __init__(self) -> None:
        self.streams: dict[str, list[RecordedEvent]] = {}
        self.appended: list[tuple[list[StreamAppend], Checkpoint | None]] = []
        self.lose: list[Exception] = []

    def write(self, stream_id: str, *events: BalanceToppedUp) -> None:
        for event in events:
            self._record(stream_id, encode(event, {}).data, type(event).__name__)

    def _record(self, stream_id: str, data: dict[str, Any], kind: str) -> None:
        stream = self.streams.setdefault(stream_id, [])
        position = sum(map(len, self.streams.values())) + 1
        row = (position, f"id{position}", stream_id, len(stream) + 1, kind)
        stream.append(RecordedEvent(*row, _json(data), "{}", NOW.isoformat(), "h"))

    async def stream_tail(
        self, stream_id: str, after_version: int, limit: int = 100
    ) -> list[RecordedEvent]:
        return self.streams.get(stream_id, [])[after_version : after_version + limit]

    async def last_events(self, stream_ids: Sequence[str]) -> dict[str, RecordedEvent]:
        return {s: self.streams[s][-1] for s in stream_ids if self.streams.get(s)}

    async def append_streams(
        self, appends: Sequence[StreamAppend], *, checkpoint: Checkpoint | None = None
    ) -> list[list[RecordedEvent]]:
        self.appended.append((list(appends), checkpoint))
        if self.lose:
            raise self.lose.pop(0)
        for append in appends:
            version = len(self.streams.get(append.stream_id, []))
            if append.expected_version not in (ANY, version):
                raise ConcurrencyError(append.stream_id, append.expected_version, version)
            for event in append.events:
                self._record(append.stream_id, event.data, event.type)
        return []


def lost(kind: type[Exception]) -> Exception:
    """The error of a race lost to another request."""
    if kind is ConcurrencyError:
        return ConcurrencyError(STREAM, 1, 2)
    return kind("an event id is stored already")


def _json(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


def application(store: FakeStore) -> Application:
    return Application(
        cast(EventStore, store),
        cast(ReadModel, None),
        cast(Gateway, None),
        clock=lambda: NOW,
        invoice_ttl=timedelta(hours=1),
        idempotency_ttl=timedelta(hours=1),
    )


async def top_up_by(amount: int, tx: Attempt) -> int:
    """A command's attempt: read the balance, append a top-up at the version read."""
    balance = await tx.load(STREAM, evolve_balance)
    tx.append(STREAM, [topped_up(amount)], {"actor": "admin"})
    return (balance or Balance("usernew1", 0)).amount + amount


async def test_what_an_attempt_stages_is_appended_at_the_version_it_read() -> None:
    store = FakeStore()
    store.write(STREAM, topped_up(10), topped_up(5))

    answer = await application(store).run(lambda tx: top_up_by(7, tx))

    assert answer == 22
    ((appends, checkpoint),) = store.appended
    assert [(a.stream_id, a.expected_version, len(a.events)) for a in appends] == [(STREAM, 2, 1)]
    assert checkpoint is None


async def test_a_lost_race_is_decided_again_from_the_new_state() -> None:
    store = FakeStore()
    store.write(STREAM, topped_up(10))
    app = application(store)
    racing = [True]

    async def attempt(tx: Attempt) -> int:
        answer = await top_up_by(1, tx)
        if racing:  # another request appends between this read and this append
            racing.pop()
            store.write(STREAM, topped_up(100))
        return answer

    assert await app.run(attempt) == 111
    assert [appends[0].expected_version for appends, _ in store.appended] == [1, 2]
    assert len(store.streams[STREAM]) == 3


@pytest.mark.parametrize("kind", [ConcurrencyError, DuplicateEventError])
async def test_a_race_lost_too_often_answers_conflict(kind: type[Exception]) -> None:
    store = FakeStore()
    store.lose = [lost(kind)] * MAX_ATTEMPTS

    with pytest.raises(Conflict) as refused:
        await application(store).run(lambda tx: top_up_by(1, tx))

    assert refused.value.code == "CONFLICT"
    assert len(store.appended) == MAX_ATTEMPTS
    assert STREAM not in store.streams


async def test_the_last_attempt_may_still_win() -> None:
    store = FakeStore()
    store.lose = [lost(ConcurrencyError), lost(DuplicateEventError)] * (MAX_ATTEMPTS // 2)
    store.lose = store.lose[: MAX_ATTEMPTS - 1]

    assert await application(store).run(lambda tx: top_up_by(1, tx)) == 1
    assert len(store.appended) == MAX_ATTEMPTS


async def test_a_refusal_is_not_retried() -> None:
    store = FakeStore()
    calls = []

    async def refuse(tx: Attempt) -> None:
        calls.append(tx)
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await application(store).run(refuse)
    assert len(calls) == 1
    assert store.appended == []


async def test_nothing_decided_appends_nothing_but_the_checkpoint_still_moves() -> None:
    store = FakeStore()
    app = application(store)

    async def nothing(tx: Attempt) -> bool:
        await tx.load(STREAM, evolve_balance)
        tx.append(STREAM, [], {})
        return False

    assert await app.run(nothing) is False
    assert store.appended == []

    assert await app.run(nothing, checkpoint=Checkpoint("worker", 7)) is False
    assert store.appended == [([], Checkpoint("worker", 7))]


async def test_streams_read_together_are_appended_at_their_versions() -> None:
    store = FakeStore()
    store.write("onmarket-A", topped_up(1))

    async def claim(tx: Attempt) -> None:
        await tx.last_events(["onmarket-A", "onmarket-B"])
        tx.append("onmarket-A", [topped_up(2)], {})
        tx.append("onmarket-B", [topped_up(3)], {})
        tx.append("invoice-X", [topped_up(4)], {}, expected=NO_STREAM)

    await application(store).run(claim)

    ((appends, _),) = store.appended
    assert [(a.stream_id, a.expected_version) for a in appends] == [
        ("onmarket-A", 1),
        ("onmarket-B", 0),
        ("invoice-X", NO_STREAM),
    ]


async def test_an_append_to_a_stream_not_read_must_name_its_expected_version() -> None:
    async def careless(tx: Attempt) -> None:
        tx.append(STREAM, [topped_up(1)], {})

    with pytest.raises(ValueError, match="was not read"):
        await application(FakeStore()).run(careless)


async def test_given_event_ids_are_kept() -> None:
    store = FakeStore()

    async def idempotent(tx: Attempt) -> None:
        tx.append(STREAM, [topped_up(1), topped_up(2)], {}, expected=ANY, event_ids=["a", "b"])

    await application(store).run(idempotent)

    ((appends, _),) = store.appended
    assert [event.event_id for event in appends[0].events] == ["a", "b"]
