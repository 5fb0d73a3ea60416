"""The one helper every command goes through (``Application.run``), against a real SQLite log:
what it appends, at which versions, how it retries a lost race (until a deadline, or for a
patient command until it wins), and how commands of one process on one stream take turns.

Each race here is really lost: another writer appends to the stream through the store between an
attempt's read and its append, or the attempt stages event ids the log partly holds already. What
was decided is checked in the log itself, never in a record of the calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    Checkpoint,
    ConcurrencyError,
    DuplicateEventError,
    RecordedEvent,
)
from eventstore.sqlite import SQLiteEventStore
from service.application import Conflict
from service.application.handling import Application, Attempt
from service.domain.balance import Balance, evolve_balance
from service.domain.events import BalanceToppedUp
from service.gateway.port import Gateway
from service.records import decode, encode
from service.views.sqlite import SQLiteReadModel

NOW = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)
STREAM = "balance-usernew1"
MINE = 1  # what the command under test tops up
THEIRS = 100  # what another writer tops up meanwhile
STORED_ID = "stored-by-a-twin"  # an event id a concurrent twin stored first


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    opened = await SQLiteEventStore.open(tmp_path / "events.db")
    try:
        yield opened
    finally:
        await opened.close()


def application(store: SQLiteEventStore, conflict_timeout: float = 5.0) -> Application:
    return Application(
        store,
        SQLiteReadModel(store),
        cast(Gateway, None),
        clock=lambda: NOW,
        invoice_ttl=timedelta(hours=1),
        idempotency_ttl=timedelta(hours=1),
        conflict_timeout=timedelta(seconds=conflict_timeout),
    )


def topped_up(amount: int) -> BalanceToppedUp:
    return BalanceToppedUp("usernew1", amount, "admin", NOW)


async def write(
    store: SQLiteEventStore,
    stream_id: str,
    *events: BalanceToppedUp,
    event_ids: list[str] | None = None,
) -> None:
    """Another writer's append, straight to the store."""
    ids: list[str | None] = [*event_ids] if event_ids else [None] * len(events)
    await store.append(stream_id, [encode(e, {}, i) for e, i in zip(events, ids, strict=True)], ANY)


async def logged(store: SQLiteEventStore, stream_id: str) -> list[RecordedEvent]:
    return [recorded async for recorded in store.read_stream(stream_id)]


async def amounts(store: SQLiteEventStore, stream_id: str) -> list[int]:
    """The amounts of the top-ups the log holds in ``stream_id``, oldest first."""
    return [cast(BalanceToppedUp, decode(e)).amount for e in await logged(store, stream_id)]


async def stored_ids(store: SQLiteEventStore) -> set[str]:
    return {recorded.event_id async for recorded in store.read_all()}


async def top_up_by(amount: int, tx: Attempt) -> int:
    """A command's attempt: read the balance, append a top-up at the version read."""
    balance = await tx.load(STREAM, evolve_balance)
    tx.append(STREAM, [topped_up(amount)], {"actor": "admin"})
    return (balance or Balance("usernew1", 0)).amount + amount


Racing = Callable[[Attempt], Awaitable[int]]


def losing(
    store: SQLiteEventStore, kind: type[Exception], losses: int, tries: list[Attempt]
) -> Racing:
    """A top-up of ``MINE`` that really loses its race its first ``losses`` times, noting every
    try in ``tries``: with ``ConcurrencyError``, another writer appends to the stream after the
    read; with ``DuplicateEventError``, it stages ids of which the twin's is stored already."""

    async def attempt(tx: Attempt) -> int:
        tries.append(tx)
        loses = len(tries) <= losses
        if kind is ConcurrencyError:
            answer = await top_up_by(MINE, tx)
            if loses:
                await write(store, STREAM, topped_up(THEIRS))
            return answer
        balance = await tx.load(STREAM, evolve_balance)
        ids = [STORED_ID, f"mine-{len(tries)}"] if loses else [f"mine-{len(tries)}"]
        tx.append(STREAM, [topped_up(MINE)] * len(ids), {}, event_ids=ids)
        return (balance or Balance("usernew1", 0)).amount + MINE

    return attempt


async def test_what_an_attempt_stages_is_appended_at_the_version_it_read(
    store: SQLiteEventStore,
) -> None:
    """The staged top-up follows the two events read: version 3, position 3, one attempt."""
    await write(store, STREAM, topped_up(10), topped_up(5))

    answer = await application(store).run(lambda tx: top_up_by(7, tx))

    assert answer == 22
    assert [(e.version, e.position) for e in await logged(store, STREAM)] == [
        (1, 1),
        (2, 2),
        (3, 3),
    ]
    assert await amounts(store, STREAM) == [10, 5, 7]
    assert await store.stream_version(STREAM) == 3


async def test_a_lost_race_is_decided_again_from_the_new_state(store: SQLiteEventStore) -> None:
    """Another writer appends between the read and the append once: the second try counts it."""
    await write(store, STREAM, topped_up(10))
    tries: list[Attempt] = []

    answer = await application(store).run(losing(store, ConcurrencyError, 1, tries))

    assert answer == 10 + THEIRS + MINE
    assert len(tries) == 2
    assert await amounts(store, STREAM) == [10, THEIRS, MINE]
    assert await store.stream_version(STREAM) == 3


@pytest.mark.parametrize("kind", [ConcurrencyError, DuplicateEventError])
async def test_a_race_lost_until_the_deadline_answers_conflict(
    store: SQLiteEventStore, kind: type[Exception]
) -> None:
    """A command that loses every race is tried again, with pauses, until conflict_timeout
    has passed, then answers Conflict having written nothing of its own."""
    await write(store, STREAM, topped_up(THEIRS), event_ids=[STORED_ID])
    tries: list[Attempt] = []
    started = time.monotonic()

    with pytest.raises(Conflict) as refused:
        await application(store, 0.3).run(losing(store, kind, 10**6, tries))

    assert refused.value.code == "CONFLICT"
    assert 0.1 < time.monotonic() - started < 1.5
    assert len(tries) > 2
    rivals = len(tries) if kind is ConcurrencyError else 0
    assert await amounts(store, STREAM) == [THEIRS] * (1 + rivals)
    assert not any(event_id.startswith("mine-") for event_id in await stored_ids(store))
    # Each try lost with ``kind``: the last one's append, given to the log again, still does.
    with pytest.raises(kind):
        await store.append_streams(tries[-1].appends)


@pytest.mark.parametrize("kind", [ConcurrencyError, DuplicateEventError])
async def test_a_patient_command_is_retried_past_the_deadline_until_it_wins(
    store: SQLiteEventStore, kind: type[Exception]
) -> None:
    """With no time at all to retry, a command that loses once answers Conflict; a patient
    one (a gateway's callback) losing 12 times still appends its top-up."""
    await write(store, STREAM, topped_up(THEIRS), event_ids=[STORED_ID])
    app = application(store, 0)
    with pytest.raises(Conflict):
        await app.run(losing(store, kind, 1, []))
    tries: list[Attempt] = []

    answer = await app.run(losing(store, kind, 12, tries), patient=True)

    assert len(tries) == 13
    # The other writer's top-ups: the first, and with ConcurrencyError one for each race lost
    # (once by the impatient command, 12 times by the patient one).
    rivals = 1 + 12 if kind is ConcurrencyError else 0
    assert await amounts(store, STREAM) == [THEIRS] * (1 + rivals) + [MINE]
    assert answer == THEIRS * (1 + rivals) + MINE
    mine = {event_id for event_id in await stored_ids(store) if event_id.startswith("mine-")}
    assert mine == ({"mine-13"} if kind is DuplicateEventError else set())


async def test_commands_on_one_stream_in_one_process_take_turns(store: SQLiteEventStore) -> None:
    """50 top-ups of one balance at once, each pausing between its read and its append: each
    reads the one before it, so all 50 win at their first try; no lock is left behind."""
    app = application(store, 0)  # any lost race would answer Conflict
    tries: list[Attempt] = []

    async def slow_top_up(tx: Attempt) -> int:
        tries.append(tx)
        balance = await tx.load(STREAM, evolve_balance)
        await asyncio.sleep(0.001)
        tx.append(STREAM, [topped_up(MINE)], {})
        return (balance or Balance("usernew1", 0)).amount + MINE

    answers = await asyncio.gather(*(app.run(slow_top_up) for _ in range(50)))

    assert sorted(answers) == list(range(1, 51))
    assert len(tries) == 50
    assert len(app.locks) == 0


async def test_streams_read_in_opposite_orders_do_not_deadlock(store: SQLiteEventStore) -> None:
    """Commands reading A then B and B then A, all at once, each pausing between its reads:
    all finish (one reading out of order starts again with its locks taken in order), each
    appends to both streams at the versions it read, and no lock is left behind."""
    app = application(store, 0)
    a, b = "balance-a", "balance-b"

    def both(first: str, second: str) -> Callable[[Attempt], Awaitable[None]]:
        async def attempt(tx: Attempt) -> None:
            await tx.load(first, evolve_balance)
            await asyncio.sleep(0.001)
            await tx.load(second, evolve_balance)
            tx.append(first, [topped_up(1)], {})
            tx.append(second, [topped_up(1)], {})

        return attempt

    orders = [both(a, b) if i % 2 else both(b, a) for i in range(20)]
    await asyncio.wait_for(asyncio.gather(*(app.run(order) for order in orders)), 10)

    assert await amounts(store, a) == [1] * 20
    assert await amounts(store, b) == [1] * 20
    assert len(app.locks) == 0


async def test_a_refused_command_releases_its_locks(store: SQLiteEventStore) -> None:
    """A command that raises releases the streams it read: the next one on them goes ahead."""
    app = application(store, 0)

    async def refuse(tx: Attempt) -> None:
        await tx.load(STREAM, evolve_balance)
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await app.run(refuse)
    assert len(app.locks) == 0
    assert await asyncio.wait_for(app.run(lambda tx: top_up_by(7, tx)), 1) == 7


async def test_events_staged_once_found_stored_by_a_twin_are_a_lost_race(
    store: SQLiteEventStore,
) -> None:
    """Events staged ``once`` whose ids a twin (another request: other metadata) stored after
    the read are decided again, and the new decision sees them; stored by the same request,
    they are its own retry and the first decision stands."""
    tries: list[str] = []

    def pay(request: str, twin: str, event_id: str) -> Callable[[Attempt], Awaitable[str]]:
        async def attempt(tx: Attempt) -> str:
            balance = await tx.load(event_id, evolve_balance)
            if balance is not None:
                tries.append("saw it")
                return "duplicate"
            tries.append("decided")
            if len(tries) == 1:  # the twin gets there between this read and this append
                await write_with(store, event_id, {"request_id": twin})
            tx.append(
                event_id, [topped_up(1)], {"request_id": request}, event_ids=[event_id], once=True
            )
            return "paid"

        return attempt

    assert await application(store).run(pay("mine", "twin", "pay-1")) == "duplicate"
    assert tries == ["decided", "saw it"]
    tries.clear()
    assert await application(store).run(pay("mine", "mine", "pay-2")) == "paid"
    assert tries == ["decided"]
    assert await amounts(store, "pay-1") == [1]
    assert await amounts(store, "pay-2") == [1]


async def write_with(store: SQLiteEventStore, stream: str, metadata: dict[str, str]) -> None:
    await store.append(stream, [encode(topped_up(1), metadata, stream)], ANY)


async def test_a_refusal_is_not_retried_and_writes_nothing(store: SQLiteEventStore) -> None:
    """An attempt that raises something other than a lost race runs once; its staged top-up
    is not appended."""
    await write(store, STREAM, topped_up(10))
    tries: list[Attempt] = []

    async def refuse(tx: Attempt) -> None:
        tries.append(tx)
        await top_up_by(MINE, tx)
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await application(store).run(refuse)
    assert len(tries) == 1
    assert await amounts(store, STREAM) == [10]
    assert await store.head_position() == 1


async def test_nothing_decided_appends_nothing_but_the_checkpoint_still_moves(
    store: SQLiteEventStore,
) -> None:
    """An attempt that stages no events writes nothing; a checkpoint given still moves."""
    await write(store, STREAM, topped_up(10), topped_up(5))
    app = application(store)

    async def nothing(tx: Attempt) -> bool:
        await tx.load(STREAM, evolve_balance)
        tx.append(STREAM, [], {})
        return False

    assert await app.run(nothing) is False
    assert await store.head_position() == 2
    assert await store.load_checkpoint("worker") == 0

    assert await app.run(nothing, checkpoint=Checkpoint("worker", 2)) is False
    assert await store.head_position() == 2
    assert await store.load_checkpoint("worker") == 2


async def test_streams_read_together_are_appended_at_their_versions(
    store: SQLiteEventStore,
) -> None:
    """Streams read with last_events (one missing: version 0) and a new one (NO_STREAM) are
    appended in one commit, each after the version it had."""
    await write(store, "onmarket-A", topped_up(1))

    async def claim(tx: Attempt) -> None:
        await tx.last_events(["onmarket-A", "onmarket-B"])
        tx.append("onmarket-A", [topped_up(2)], {})
        tx.append("onmarket-B", [topped_up(3)], {})
        tx.append("invoice-X", [topped_up(4)], {}, expected=NO_STREAM)

    await application(store).run(claim)

    log = [(e.stream_id, e.version, e.position) async for e in store.read_all()]
    assert log == [
        ("onmarket-A", 1, 1),
        ("onmarket-A", 2, 2),
        ("onmarket-B", 1, 3),
        ("invoice-X", 1, 4),
    ]


async def test_a_stream_read_missing_is_held_to_version_0(store: SQLiteEventStore) -> None:
    """A stream last_events found missing, created by another writer before the append, makes
    the attempt lose its race and decide again."""
    await write(store, "onmarket-A", topped_up(1))
    tries: list[Attempt] = []

    async def claim(tx: Attempt) -> None:
        tries.append(tx)
        await tx.last_events(["onmarket-A", "onmarket-B"])
        tx.append("onmarket-B", [topped_up(MINE)], {})
        if len(tries) == 1:
            await write(store, "onmarket-B", topped_up(THEIRS))

    await application(store).run(claim)

    assert len(tries) == 2
    assert await amounts(store, "onmarket-B") == [THEIRS, MINE]


async def test_an_append_to_a_stream_not_read_must_name_its_expected_version(
    store: SQLiteEventStore,
) -> None:
    """Staging events for a stream never read, without an expected version, is a ValueError;
    nothing is written."""

    async def careless(tx: Attempt) -> None:
        tx.append(STREAM, [topped_up(1)], {})

    with pytest.raises(ValueError, match="was not read"):
        await application(store).run(careless)
    assert await store.head_position() == 0


async def test_given_event_ids_are_kept(store: SQLiteEventStore) -> None:
    """Events staged with event ids are stored under those ids."""

    async def idempotent(tx: Attempt) -> None:
        tx.append(STREAM, [topped_up(1), topped_up(2)], {}, expected=ANY, event_ids=["a", "b"])

    await application(store).run(idempotent)

    assert [(e.event_id, e.version) for e in await logged(store, STREAM)] == [("a", 1), ("b", 2)]
